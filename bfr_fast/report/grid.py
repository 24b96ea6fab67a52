"""Image grids saved as PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from bfr_fast.checkpoint import atomic_write
from bfr_fast.checks import non_negative_int, positive_int
from bfr_fast.data import to_uint8


def image_grid(images: torch.Tensor, nrow: int = 10, padding: int = 1, scale: int = 1) -> np.ndarray:
    """Tiles ``(N, C, H, W)`` images in [-1, 1] into one ``(rows*H', nrow*W', C)`` uint8 array.

    Pixels are converted by rounding (:func:`bfr_fast.data.to_uint8`), grayscale stays one channel, and each
    image is enlarged ``scale`` times by pixel repetition so 8x8 digits are visible.
    """
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images must be (N, 1 or 3, H, W), got shape {tuple(images.shape)}")
    positive_int("nrow", nrow)
    positive_int("scale", scale)
    non_negative_int("padding", padding)
    pixels = to_uint8(images.detach().cpu().float())
    if scale > 1:
        pixels = pixels.repeat_interleave(scale, dim=2).repeat_interleave(scale, dim=3)
    n, c, h, w = pixels.shape
    rows = (n + nrow - 1) // nrow
    grid = np.full((rows * (h + padding) + padding, nrow * (w + padding) + padding, c), 255, dtype=np.uint8)
    for i in range(n):
        r, col = divmod(i, nrow)
        top, left = padding + r * (h + padding), padding + col * (w + padding)
        grid[top : top + h, left : left + w] = pixels[i].permute(1, 2, 0).numpy()
    return grid


def save_image_grid(images: torch.Tensor, path: str | Path, nrow: int = 10, scale: int = 1) -> Path:
    """Writes :func:`image_grid` of ``images`` to a PNG file atomically (:func:`~bfr_fast.checkpoint.atomic_write`)
    and returns its path."""
    grid = image_grid(images, nrow=nrow, scale=scale)
    image = Image.fromarray(grid[..., 0] if grid.shape[2] == 1 else grid)
    return atomic_write(path, lambda f: image.save(f, format="PNG"))
