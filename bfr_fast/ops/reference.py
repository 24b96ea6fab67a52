"""Eager PyTorch references of every fused op.

These define what each op computes. They are written for clarity, not speed, use only differentiable torch
operations, and accumulate in float32 (or float64 where stated); tests compare the fused kernels against them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def per_sample(coeff: float | torch.Tensor, like: torch.Tensor) -> float | torch.Tensor:
    """Broadcasts a scalar or a ``(B,)`` coefficient over the non-batch dims of ``like``."""
    if isinstance(coeff, torch.Tensor):
        return coeff.float().reshape((-1,) + (1,) * (like.dim() - 1))
    return float(coeff)


def lincomb_reference(
    x: torch.Tensor, ks: Sequence[torch.Tensor], coeffs: Sequence[float | torch.Tensor]
) -> torch.Tensor:
    r"""Returns :math:`x + \sum_i c_i k_i`, accumulated in float32 and cast back to ``x.dtype``.

    Each :math:`c_i` is a Python float or a ``(B,)`` tensor applied per sample (broadcast over the non-batch dims).
    """
    acc = x.float()
    for c, k in zip(coeffs, ks, strict=True):
        acc = acc + per_sample(c, x) * k.float()
    return acc.to(x.dtype)
