"""Eager PyTorch references of every fused op.

These define what each op computes. They are written for clarity, not speed, use only differentiable torch
operations, and accumulate in float32 (or float64 where stated); tests compare the fused kernels against them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, overload

import torch


def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """float64 for float64 inputs, float32 for every other floating dtype."""
    return torch.float64 if dtype == torch.float64 else torch.float32


@overload
def per_sample(coeff: torch.Tensor, like: torch.Tensor) -> torch.Tensor: ...


@overload
def per_sample(coeff: float, like: torch.Tensor) -> float: ...


def per_sample(coeff: float | torch.Tensor, like: torch.Tensor) -> float | torch.Tensor:
    """Broadcasts a scalar or a ``(B,)`` coefficient over the non-batch dims of ``like`` (a tensor stays a tensor,
    a number a float)."""
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


def radial_frequency_radius(height: int, width: int, device: torch.device | str = "cpu") -> torch.Tensor:
    r"""Normalised radius of every bin of the (unshifted) 2-D FFT grid, ``(H, W)`` float64.

    :math:`r = \sqrt{(2 f_y)^2 + (2 f_x)^2}` with :math:`f` from ``torch.fft.fftfreq`` (cycles/sample), so the
    Nyquist radius along an axis is 1 and the corner of the grid is :math:`\sqrt 2`. Computed in float64 as separate
    multiplies and one add, the roundings the fused kernels reproduce.
    """
    fy = 2 * torch.fft.fftfreq(height, dtype=torch.float64, device=device)
    fx = 2 * torch.fft.fftfreq(width, dtype=torch.float64, device=device)
    return torch.sqrt(fy[:, None] * fy[:, None] + fx[None, :] * fx[None, :])


def frequency_filter_reference(x: torch.Tensor, cutoff: float, kind: str = "low") -> torch.Tensor:
    r"""Keeps the frequencies of each ``(H, W)`` plane with radius :math:`r \le` ``cutoff`` (``"low"``) or
    :math:`r >` ``cutoff`` (``"high"``): :math:`\mathrm{Re}\,\mathcal F^{-1}(M \cdot \mathcal F x)` with the full
    2-D FFT and an explicit 0/1 mask :math:`M`. Computed in float32 (float64 for float64 input), cast back.
    """
    low = radial_frequency_radius(x.shape[-2], x.shape[-1], x.device) <= cutoff
    mask = low if kind == "low" else ~low
    spectrum = torch.fft.fft2(x.to(accumulation_dtype(x.dtype)))
    return torch.fft.ifft2(spectrum * mask.to(spectrum.real.dtype)).real.to(x.dtype)


def band_energy_reference(x: torch.Tensor, cutoff: float) -> torch.Tensor:
    r"""Per-sample ``(low, high)`` energies :math:`\sum_{c,p} \mathrm{low}(x)^2` and :math:`\sum_{c,p}
    \mathrm{high}(x)^2` of ``(B, C, H, W)`` input, ``(B, 2)``, by Parseval on the full 2-D FFT:
    :math:`\frac{1}{HW}\sum_{c,k} M_k |X_{c,k}|^2`. float32 (float64 for float64 input).
    """
    low = radial_frequency_radius(x.shape[-2], x.shape[-1], x.device) <= cutoff
    power = torch.fft.fft2(x.to(accumulation_dtype(x.dtype))).abs().square() / (x.shape[-2] * x.shape[-1])
    low_energy = (power * low).sum(dim=(1, 2, 3))
    high_energy = (power * ~low).sum(dim=(1, 2, 3))
    return torch.stack([low_energy, high_energy], dim=1)


def fc_weight_reference(source: torch.Tensor, gamma: float = 1.0, eps: float = 1e-6) -> torch.Tensor:
    r"""The frequency-compensation weight map of ``(B, Cs, *spatial)`` ``source``, ``(B, 1, *spatial)``.

    :math:`w_p = 1 + \gamma\, s_p / (\bar s + \epsilon)`, :math:`s_p = \sum_c |\mathrm{source}_{c,p}|`,
    :math:`\bar s = \frac1P \sum_p s_p`. ``source`` is detached: a constant. float32 (float64 for float64 input).
    """
    s = source.detach().to(accumulation_dtype(source.dtype)).abs().sum(dim=1, keepdim=True)
    s_mean = s.flatten(1).mean(dim=1).reshape((-1,) + (1,) * (s.dim() - 1))
    return 1 + gamma * s / (s_mean + eps)


def fc_weighted_mse_reference(
    pred: torch.Tensor, target: torch.Tensor, source: torch.Tensor, gamma: float = 1.0, eps: float = 1e-6
) -> torch.Tensor:
    r"""Per-sample frequency-compensated MSE of ``(B, C, *spatial)`` tensors, ``(B,)``.

    :math:`\mathrm{loss}_b = \frac{1}{CP}\sum_{c,p} w_p (\mathrm{pred}_{c,p} - \mathrm{target}_{c,p})^2` with
    :math:`w` the map of :func:`fc_weight_reference` (source may have its own channel count). float32 (float64
    for float64 input).
    """
    dtype = accumulation_dtype(pred.dtype)
    weight = fc_weight_reference(source, gamma, eps).to(dtype)
    return (weight * (pred.to(dtype) - target.to(dtype)).square()).flatten(1).mean(dim=1)


class RMSDMinima(NamedTuple):
    """Nearest neighbours between two sets of conformations under RMSD (see :func:`bfr_fast.ops.rmsd_min`).

    Attributes:
        row_min: ``(N,)`` RMSD from each X frame to its nearest Y frame.
        row_argmin: ``(N,)`` int64 index of that Y frame (the smallest index among ties).
        col_min: ``(M,)`` RMSD from each Y frame to its nearest X frame.
        col_argmin: ``(M,)`` int64 index of that X frame (the smallest index among ties).
    """

    row_min: torch.Tensor
    row_argmin: torch.Tensor
    col_min: torch.Tensor
    col_argmin: torch.Tensor


def pairwise_rmsd_reference(X: torch.Tensor, Y: torch.Tensor, max_pairs_per_chunk: int = 1 << 20) -> torch.Tensor:
    r"""RMSD after optimal rigid superposition of every pair, by Kabsch's SVD in float64 (independent of QCP).

    With centred frames :math:`x, y \in \mathbb{R}^{A \times 3}`, :math:`H = x^\top y` and its singular values
    :math:`\sigma_1 \ge \sigma_2 \ge \sigma_3`, the best proper rotation attains
    :math:`\max_R \sum_a x_a \cdot R y_a = \sigma_1 + \sigma_2 + d\,\sigma_3` with :math:`d = \operatorname{sign}\det H`
    (Kabsch's reflection correction), so

    .. math:: \mathrm{RMSD}^2 = \big(\|x\|^2 + \|y\|^2 - 2(\sigma_1 + \sigma_2 + d\,\sigma_3)\big) / A.

    Args:
        X: ``(N, A, 3)`` frames.
        Y: ``(M, A, 3)`` frames.
        max_pairs_per_chunk: Pairs whose 3x3 matrices are decomposed at once (bounds the memory).

    Returns:
        ``(N, M)`` RMSDs in ``X.dtype``.
    """
    x = X.double() - X.double().mean(dim=1, keepdim=True)
    y = Y.double() - Y.double().mean(dim=1, keepdim=True)
    gx, gy = x.square().sum(dim=(1, 2)), y.square().sum(dim=(1, 2))
    rows = max(1, max_pairs_per_chunk // y.shape[0])
    chunks = []
    for start in range(0, x.shape[0], rows):
        h = torch.einsum("nai,maj->nmij", x[start : start + rows], y)
        s = torch.linalg.svdvals(h)
        best = s[..., 0] + s[..., 1] + torch.sign(torch.linalg.det(h)) * s[..., 2]
        msd = (gx[start : start + rows, None] + gy[None, :] - 2.0 * best) / x.shape[1]
        chunks.append(msd.clamp_min(0.0).sqrt())
    return torch.cat(chunks).to(X.dtype)


def rmsd_min_reference(X: torch.Tensor, Y: torch.Tensor) -> RMSDMinima:
    """Row and column minima (ties to the smallest index) of the full :func:`pairwise_rmsd_reference` matrix."""
    d = pairwise_rmsd_reference(X, Y)
    row_min, row_argmin = d.min(dim=1)
    col_min, col_argmin = d.min(dim=0)
    return RMSDMinima(row_min, row_argmin, col_min, col_argmin)
