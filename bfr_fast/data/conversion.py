"""Conversion between the library's image convention (float, [-1, 1]) and 8-bit pixels.

One place for it, because metrics and image grids must agree on the mapping: a sample scored by FID and the
same sample saved as a PNG go through the same bytes.
"""

import torch

__all__ = ["from_uint8", "to_uint8"]


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    r"""Map float images in [-1, 1] to 8-bit pixels by rounding.

    .. math::
        p = \operatorname{clamp}\big(\lfloor 127.5\,(x + 1) + \tfrac12 \rfloor,\ 0,\ 255\big)

    so -1 maps to 0, 1 to 255, and each value goes to the nearest pixel level (halves round up), never
    truncated: a value whose exact level is 254.6 becomes 255, not 254. Values outside [-1, 1], which generated
    samples often have, saturate at 0 or 255. The arithmetic runs in float32 whatever the input dtype, so
    ``to_uint8(from_uint8(p)) == p`` for every pixel value.

    Args:
        images: a floating-point tensor of any shape (layout is not touched).

    Returns:
        A ``torch.uint8`` tensor of the same shape, on the same device.

    Raises:
        ValueError: if ``images`` is not a floating-point tensor or holds NaN or infinite values
            (a diverged sampler should be reported, not silently turned into black or white pixels).
    """
    if not isinstance(images, torch.Tensor) or not images.is_floating_point():
        raise ValueError(f"images: expected a floating-point torch.Tensor, got {_describe(images)}")
    levels = images.to(torch.float32).add(1.0).mul_(127.5)
    if not bool(torch.isfinite(levels).all()):
        bad = int((~torch.isfinite(levels)).sum())
        raise ValueError(f"images: expected finite values, found {bad} NaN or infinite of {levels.numel()}")
    return levels.add_(0.5).floor_().clamp_(0.0, 255.0).to(torch.uint8)


def from_uint8(pixels: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    r"""Map 8-bit pixels to float images in [-1, 1]: :math:`x = p / 127.5 - 1`.

    Args:
        pixels: a ``torch.uint8`` tensor of any shape.
        dtype: floating-point dtype of the result.

    Returns:
        A tensor of ``dtype`` with the same shape, on the same device; 0 maps to -1 and 255 to 1.

    Raises:
        ValueError: if ``pixels`` is not a ``torch.uint8`` tensor or ``dtype`` is not floating point.
    """
    if not isinstance(pixels, torch.Tensor) or pixels.dtype != torch.uint8:
        raise ValueError(f"pixels: expected a torch.uint8 tensor, got {_describe(pixels)}")
    if not dtype.is_floating_point:
        raise ValueError(f"dtype: expected a floating-point dtype, got {dtype}")
    return pixels.to(torch.float32).div_(127.5).sub_(1.0).to(dtype)


def _describe(value: object) -> str:
    if isinstance(value, torch.Tensor):
        return f"a {value.dtype} tensor"
    return type(value).__name__
