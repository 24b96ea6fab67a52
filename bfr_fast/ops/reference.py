"""Eager PyTorch references of every fused op.

These define what each op computes. They are written for clarity, not speed, use only differentiable torch
operations, and accumulate in float32 (or float64 where stated); tests compare the fused kernels against them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """float64 for float64 inputs, float32 for every other floating dtype."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def per_sample(coeff: float | torch.Tensor, like: torch.Tensor) -> float | torch.Tensor:
    """Broadcasts a scalar or a ``(B,)`` coefficient over the non-batch dims of ``like``."""
    if isinstance(coeff, torch.Tensor):
        return coeff.reshape((-1,) + (1,) * (like.dim() - 1))
    return float(coeff)


def lincomb_reference(
    x: torch.Tensor, ks: Sequence[torch.Tensor], coeffs: Sequence[float | torch.Tensor]
) -> torch.Tensor:
    r"""Returns :math:`x + \sum_i c_i k_i`, accumulated in float32 (float64 for float64 ``x``), cast to ``x.dtype``.

    Each :math:`c_i` is a Python float or a ``(B,)`` tensor applied per sample (broadcast over the non-batch dims).
    """
    acc_dtype = accumulation_dtype(x.dtype)
    acc = x.to(acc_dtype)
    for c, k in zip(coeffs, ks, strict=True):
        c = c.to(acc_dtype) if isinstance(c, torch.Tensor) else c
        acc = acc + per_sample(c, x) * k.to(acc_dtype)
    return acc.to(x.dtype)
