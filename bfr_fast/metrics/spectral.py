r"""Spectral diagnostics of exposure bias (DEFAR's Figures 3 and 5): PFR and FEL against the time t.

**PFR** (power frequency ratio) of a velocity field :math:`v`, per sample, with the bands of
:func:`bfr_fast.ops.frequency_filter` at radius :math:`r_c` (1 = Nyquist of an axis):

.. math::
    \mathrm{PFR} = E_\mathrm{low} / E_\mathrm{high},\qquad
    E_\mathrm{low} = \sum_{c,p} \mathrm{low}(v)^2,\quad E_\mathrm{high} = \sum_{c,p} \mathrm{high}(v)^2,

both from one FFT (:func:`bfr_fast.ops.band_energy`).

**FEL** (frequency error localisation, (R)) of a prediction :math:`v` against a target :math:`u`, per sample:
the loss map :math:`e_p = \sum_c (v_{c,p} - u_{c,p})^2`; the region masks
:math:`M_\mathrm{low} = [a_p \ge Q_{q_\mathrm{low}}(a)]` with :math:`a_p = \sum_c |\mathrm{low}(u)_{c,p}|` and
:math:`M_\mathrm{high} = [b_p \ge Q_{q_\mathrm{high}}(b)]` with :math:`b_p = \sum_c |\mathrm{high}(u)_{c,p}|`
(:math:`Q_q` the per-sample q-quantile, linear interpolation, so the defaults 0.8 and 0.75 select the top 20% and
25% of positions); and

.. math::
    \mathrm{FEL} = \frac{\sum_p W_p e_p M_{\mathrm{low},p}}{\sum_p W_p e_p M_{\mathrm{high},p}},

with :math:`W \equiv 1` for the plain loss and the FC weight map :math:`W = 1 + \gamma s/(\bar s + \varepsilon)`
(:func:`fc_weight_map`) for the reweighted one. FEL > 1 means the loss concentrates where the target has its
low-frequency structure.

**Zero-denominator policy** (both ratios): a denominator of 0 gives ``inf`` when the numerator is positive and
``nan`` when it is 0 too. For PFR, :math:`E_\mathrm{high} \le` ``rtol`` :math:`\cdot (E_\mathrm{low} +
E_\mathrm{high})` counts as 0 (default 1e-10): rounding leaves a residue on a band-limited float32 field (a
constant plane or a low sinusoid keeps 1e-16 to 1e-13 of its energy in the high band), so PFR saturates to ``inf``
above ``1/rtol`` instead of reporting rounding noise. NaN inputs propagate as NaN.
"""

from __future__ import annotations

import math

import torch

from bfr_fast.checks import non_negative_float, positive_float, probability
from bfr_fast.ops import band_energy, frequency_filter
from bfr_fast.ops.reference import accumulation_dtype, fc_weight_reference

__all__ = [
    "CURVE_NAMES",
    "fc_weight_map",
    "fel",
    "fel_region_masks",
    "fel_sums",
    "guarded_ratio",
    "pfr",
]

CURVE_NAMES: tuple[str, ...] = ("pfr_velocity", "pfr_target", "pfr_exposure_bias", "fel_plain", "fel_reweighted",
                                "fel_reweighted_as_trained")
"""The curves :func:`bfr_fast.pipelines.spectra.spectral_curves` returns, each an array against ``"t"``."""

PFR_RTOL = 1e-10
"""Default relative floor of :math:`E_\\mathrm{high}` (module docstring): PFR above 1e10 is reported as inf."""


def check_image(name: str, x: object) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or not x.is_floating_point():
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name} must be a (B, C, H, W) float tensor, got {shape}")
    return x


def guarded_ratio(num: torch.Tensor, den: torch.Tensor, rtol: float = 0.0) -> torch.Tensor:
    """``num / den`` with the module's zero-denominator policy: ``den <= rtol * (num + den)`` counts as 0, giving
    ``inf`` for ``num > 0`` and ``nan`` for ``num == 0``."""
    zero = den <= rtol * (num + den)
    fill = torch.where(num > 0, torch.full_like(num, math.inf), torch.full_like(num, math.nan))
    return torch.where(zero, fill, num / torch.where(zero, torch.ones_like(den), den))


def pfr(velocity: torch.Tensor, cutoff: float = 0.5, rtol: float = PFR_RTOL, backend: str = "auto") -> torch.Tensor:
    r"""Per-sample PFR :math:`E_\mathrm{low}/E_\mathrm{high}` of a velocity field (module docstring).

    Args:
        velocity: ``(B, C, H, W)`` float field.
        cutoff: Band radius :math:`r_c \ge 0` of :func:`bfr_fast.ops.frequency_filter`.
        rtol: Relative floor below which :math:`E_\mathrm{high}` counts as 0 (zero-denominator policy).
        backend: Of :func:`bfr_fast.ops.band_energy`.

    Returns:
        ``(B,)`` float32 (float64 for float64 input): finite, ``inf`` (no resolvable high band) or ``nan``
        (a zero field).

    Raises:
        ValueError: On a bad argument; the message names it.
    """
    rtol = non_negative_float("rtol", rtol)
    energies = band_energy(check_image("velocity", velocity), cutoff, backend)
    return guarded_ratio(energies[:, 0], energies[:, 1], rtol)


def fc_weight_map(source: torch.Tensor, gamma: float = 1.0, eps: float = 1e-6) -> torch.Tensor:
    r"""The FC weight :math:`W = 1 + \gamma\, s/(\bar s + \varepsilon)` of :func:`bfr_fast.ops.fc_weighted_mse`.

    :math:`s_p = \sum_c |\mathrm{source}_{c,p}|`, :math:`\bar s` its per-sample mean over positions; so
    ``fc_weighted_mse(pred, target, source) == (W * (pred - target)**2).mean((1, 2, 3))``. Use
    :meth:`bfr_fast.losses.DEFARLoss.fc_source` to build the source that DEFAR's FC term uses.

    Args:
        source: ``(B, Cs, *spatial)`` float tensor; detached (a constant).
        gamma: FC strength :math:`\gamma \ge 0`.
        eps: :math:`\varepsilon > 0`.

    Returns:
        ``(B, 1, *spatial)`` float32 (float64 for float64 input).

    Raises:
        ValueError: On a bad argument; the message names it.
    """
    if not isinstance(source, torch.Tensor) or source.dim() < 2 or not source.is_floating_point():
        raise ValueError(f"source must be a (B, Cs, *spatial) float tensor, got {getattr(source, 'shape', source)!r}")
    gamma = non_negative_float("gamma", gamma)
    eps = positive_float("eps", eps)
    return fc_weight_reference(source, gamma, eps)


def fel_region_masks(
    target: torch.Tensor,
    cutoff_low: float,
    cutoff_high: float,
    low_quantile: float = 0.8,
    high_quantile: float = 0.75,
    backend: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""FEL's region masks :math:`M_\mathrm{low}`, :math:`M_\mathrm{high}` of a target velocity (module docstring).

    Args:
        target: ``(B, C, H, W)`` target velocity :math:`u`.
        cutoff_low: Radius of the low-pass whose magnitude selects :math:`M_\mathrm{low}`.
        cutoff_high: Radius of the high-pass whose magnitude selects :math:`M_\mathrm{high}`.
        low_quantile: Per-sample quantile threshold of :math:`M_\mathrm{low}` (0.8: top 20% of positions).
        high_quantile: Per-sample quantile threshold of :math:`M_\mathrm{high}` (0.75: top 25%).
        backend: Of :func:`bfr_fast.ops.frequency_filter`.

    Returns:
        Two ``(B, H, W)`` bool masks. Ties at the threshold are all included.

    Raises:
        ValueError: On a bad argument; the message names it.
    """
    target = check_image("target", target)
    low_quantile = probability("low_quantile", low_quantile)
    high_quantile = probability("high_quantile", high_quantile)
    dtype = accumulation_dtype(target.dtype)
    masks = []
    for cutoff, kind, q in ((cutoff_low, "low", low_quantile), (cutoff_high, "high", high_quantile)):
        magnitude = frequency_filter(target, cutoff, kind, backend).to(dtype).abs().sum(dim=1)
        threshold = torch.quantile(magnitude.flatten(1), q, dim=1)
        masks.append(magnitude >= threshold.reshape(-1, 1, 1))
    return masks[0], masks[1]


def fel_sums(
    pred: torch.Tensor,
    target: torch.Tensor,
    masks: tuple[torch.Tensor, torch.Tensor],
    weight: torch.Tensor | None,
) -> torch.Tensor:
    """``(B, 2)``: the numerator and denominator of FEL per sample."""
    dtype = accumulation_dtype(pred.dtype)
    error = (pred.to(dtype) - target.to(dtype)).square().sum(dim=1)
    if weight is not None:
        error = error * weight.to(dtype).reshape(error.shape)
    return torch.stack([(error * m).sum(dim=(1, 2)) for m in masks], dim=1)


def _check_weight(weight: object, pred: torch.Tensor) -> torch.Tensor | None:
    if weight is None:
        return None
    b, _, h, w = pred.shape
    if not isinstance(weight, torch.Tensor) or tuple(weight.shape) not in ((b, 1, h, w), (b, h, w)):
        shape = tuple(weight.shape) if isinstance(weight, torch.Tensor) else type(weight).__name__
        raise ValueError(f"weight must be a ({b}, 1, {h}, {w}) or ({b}, {h}, {w}) tensor, got {shape}")
    return weight


def fel(
    pred: torch.Tensor,
    target: torch.Tensor,
    cutoff_low: float,
    cutoff_high: float,
    low_quantile: float = 0.8,
    high_quantile: float = 0.75,
    weight: torch.Tensor | None = None,
    backend: str = "auto",
) -> torch.Tensor:
    r"""Per-sample FEL :math:`\sum W e M_\mathrm{low} / \sum W e M_\mathrm{high}` (module docstring).

    Args:
        pred: ``(B, C, H, W)`` predicted velocity :math:`v`.
        target: Same shape: the target velocity :math:`u`, which also sets the region masks.
        cutoff_low, cutoff_high, low_quantile, high_quantile, backend: As in :func:`fel_region_masks`.
        weight: The loss weight :math:`W`, ``(B, 1, H, W)`` (as :func:`fc_weight_map` returns) or ``(B, H, W)``;
            ``None`` for the plain loss (:math:`W \equiv 1`).

    Returns:
        ``(B,)`` float32 (float64 for float64 input), with the module's zero-denominator policy (no floor).

    Raises:
        ValueError: On a bad argument; the message names it.
    """
    pred, target = check_image("pred", pred), check_image("target", target)
    if pred.shape != target.shape:
        raise ValueError(f"target must have pred's shape {tuple(pred.shape)}, got {tuple(target.shape)}")
    weight = _check_weight(weight, pred)
    masks = fel_region_masks(target, cutoff_low, cutoff_high, low_quantile, high_quantile, backend)
    sums = fel_sums(pred, target, masks, weight)
    return guarded_ratio(sums[:, 0], sums[:, 1])
