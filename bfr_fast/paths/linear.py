r"""The linear (conditional optimal-transport) probability path between a source and a target sample.

.. math::
    x_t = (1 - t)\, x_0 + t\, x_1 + \sigma \epsilon, \qquad u_t = x_1 - x_0, \qquad \epsilon \sim \mathcal{N}(0, I),

with :math:`x_0` the source (noise) at t=0 and :math:`x_1` the target (data) at t=1. With :math:`\sigma > 0` this is
I-CFM's Gaussian-smoothed path of constant width σ (Tong et al., 2023): the noise does not change the target
velocity, which stays :math:`x_1 - x_0`. σ = 0 (the default) is the plain rectified-flow / CondOT path.
"""

from __future__ import annotations

import torch


class LinearPath:
    r"""Samples points and target velocities of the linear path :math:`x_t = (1-t) x_0 + t x_1 (+ \sigma \epsilon)`.

    Args:
        sigma: Standard deviation of the path noise, >= 0.

    Raises:
        ValueError: ``sigma`` negative or not finite.
    """

    def __init__(self, sigma: float = 0.0) -> None:
        if not isinstance(sigma, (int, float)) or not 0.0 <= float(sigma) < float("inf"):
            raise ValueError(f"sigma must be a finite float >= 0, got {sigma!r}")
        self.sigma = float(sigma)

    def sample(
        self, x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns the point :math:`x_t` and the target velocity :math:`u_t = x_1 - x_0`.

        Args:
            x0: ``(B, ...)`` source samples (t=0).
            x1: ``(B, ...)`` target samples (t=1), same shape, dtype and device.
            t: ``(B,)`` times, broadcast over the non-batch dims; computed in float32 (or wider) whatever the
                samples' dtype.
            generator: Source of the path noise when ``sigma > 0``.

        Returns:
            ``(x_t, u_t)``, both ``(B, ...)`` in ``x0``'s dtype.

        Raises:
            ValueError: Mismatched shapes, dtypes or devices, or a ``t`` that is not a ``(B,)`` float tensor.
        """
        if not isinstance(x0, torch.Tensor) or not isinstance(x1, torch.Tensor):
            raise ValueError("x0 and x1 must be tensors")
        if x0.shape != x1.shape or x0.dtype != x1.dtype or x0.device != x1.device or x0.dim() < 1:
            raise ValueError(
                f"x0 and x1 must be (B, ...) tensors of one shape, dtype and device, got {tuple(x0.shape)} "
                f"{x0.dtype} {x0.device} and {tuple(x1.shape)} {x1.dtype} {x1.device}"
            )
        if not isinstance(t, torch.Tensor) or not t.is_floating_point() or t.shape != (x0.shape[0],):
            raise ValueError(f"t must be a ({x0.shape[0]},) float tensor, got {getattr(t, 'shape', t)!r}")
        compute = torch.promote_types(x0.dtype, torch.float32)
        u = x1.to(compute) - x0.to(compute)
        t_b = t.to(device=x0.device, dtype=compute).reshape((-1,) + (1,) * (x0.dim() - 1))
        x_t = x0.to(compute) + t_b * u
        if self.sigma > 0:
            noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=compute)
            x_t = x_t + self.sigma * noise
        return x_t.to(x0.dtype), u.to(x0.dtype)
