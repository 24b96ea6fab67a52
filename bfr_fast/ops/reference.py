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


def fc_weighted_mse_reference(
    pred: torch.Tensor, target: torch.Tensor, source: torch.Tensor, gamma: float = 1.0, eps: float = 1e-6
) -> torch.Tensor:
    r"""Per-sample frequency-compensated MSE of ``(B, C, *spatial)`` tensors, ``(B,)``.

    :math:`\mathrm{loss}_b = \frac{1}{CP}\sum_{c,p} w_p (\mathrm{pred}_{c,p} - \mathrm{target}_{c,p})^2`,
    :math:`w_p = 1 + \gamma\, s_p / (\bar s + \epsilon)`, :math:`s_p = \sum_c |\mathrm{source}_{c,p}|` (source may
    have its own channel count), :math:`\bar s = \frac1P \sum_p s_p`. ``source`` is detached: a constant. float32
    (float64 for float64 input).
    """
    dtype = accumulation_dtype(pred.dtype)
    s = source.detach().to(dtype).abs().sum(dim=1, keepdim=True)
    s_mean = s.flatten(1).mean(dim=1).reshape((-1,) + (1,) * (s.dim() - 1))
    weight = 1 + gamma * s / (s_mean + eps)
    return (weight * (pred.to(dtype) - target.to(dtype)).square()).flatten(1).mean(dim=1)
