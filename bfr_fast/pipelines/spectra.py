r"""The spectral diagnostics of exposure bias against t (DEFAR's Figures 3 and 5) for a trained network: an
experiment driver over the PFR and FEL of :mod:`bfr_fast.metrics.spectral` and the DEFAR loss's path, coupling and
FC weight."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from bfr_fast.checks import non_negative_float, positive_float, positive_int, probability
from bfr_fast.losses.defar import DEFARLoss
from bfr_fast.losses.path_loss import COUPLINGS
from bfr_fast.losses.simulation import simulate
from bfr_fast.metrics.spectral import (
    CURVE_NAMES,
    PFR_RTOL,
    check_image,
    fc_weight_map,
    fel_region_masks,
    fel_sums,
    guarded_ratio,
)
from bfr_fast.ops import band_energy
from bfr_fast.ops.reference import accumulation_dtype


@torch.no_grad()
def spectral_curves(
    model: nn.Module | Callable[..., torch.Tensor],
    x1: torch.Tensor,
    y: torch.Tensor | None = None,
    *,
    loss: DEFARLoss | None = None,
    num_t: int = 50,
    cutoff: float = 0.5,
    fel_cutoff_low: float | None = None,
    fel_cutoff_high: float | None = None,
    low_quantile: float = 0.8,
    high_quantile: float = 0.75,
    step: float | None = None,
    batch_size: int = 256,
    seed: int = 0,
    backend: str = "auto",
) -> dict[str, object]:
    r"""PFR of the predicted velocity and of the exposure bias, and FEL of the plain and the FC-reweighted loss,
    against t (DEFAR's Figures 3 and 5), on a batch of real data.

    The path, coupling and FC settings are ``loss``'s (default :class:`~bfr_fast.losses.DEFARLoss`: linear path,
    OT coupling, exposure-bias source, :math:`\gamma = 1`). One source :math:`\epsilon` per image
    (``torch.Generator`` seeded by ``seed``), paired with ``x1`` by the loss's coupling once, is used at every t.
    For each of ``num_t`` times :math:`t_i = t_\max (i + \tfrac12)/N` (uniform in :math:`(0, t_\max)`):

    - :math:`x_t`, :math:`u` = the path point and velocity target; :math:`v = v_\theta(x_t, t)`.
    - One-step simulation from :math:`t_s = \max(t - \Delta, 0)`:
      :math:`\hat x = x_{t_s} + (t - t_s)\, v_\theta(x_{t_s}, t_s)`; exposure bias
      :math:`\delta = v_\theta(\hat x, t) - v_\theta(x_t, t)` (docs/design.md §5.6 with :math:`t_e = t`).
      :math:`\Delta` (``step``) defaults to :math:`t_\max/N`, the step of an N-step Euler sampler, so
      :math:`\delta` is the drift one such step adds; where :math:`t < \Delta` (the first time, by default) the
      step starts at 0 and is :math:`t` long.
    - ``pfr_velocity`` = PFR of :math:`v`, ``pfr_exposure_bias`` = PFR of :math:`\delta`, ``fel_plain`` = FEL of
      :math:`e = (v - u)^2`, ``fel_reweighted`` = FEL of :math:`W e` with :math:`W` the FC weight of
      ``loss.fc_source`` (:math:`\delta` for the exposure-bias source).

    Each value is pooled over the batch, a ratio of sums (:math:`\sum_b E_\mathrm{low} / \sum_b E_\mathrm{high}`,
    likewise for FEL), so that one sample with a tiny denominator does not dominate; zero denominators follow the
    module's policy. Three model calls per (t, image), in chunks of ``batch_size`` rows, without gradient, the model
    in eval mode (its mode restored after).

    Args:
        model: ``model(x, t, y)``.
        x1: ``(B, C, H, W)`` real data.
        y: ``(B,)`` labels or ``None``.
        loss: The :class:`~bfr_fast.losses.DEFARLoss` whose interpolant, coupling, ``gamma``, ``eps`` and
            ``fc_source`` to use.
        num_t: Number of times N (the paper: 50).
        cutoff: PFR band radius :math:`r_c`.
        fel_cutoff_low, fel_cutoff_high: FEL filter radii (default ``cutoff``).
        low_quantile, high_quantile: FEL region quantiles (top 20% and 25%).
        step: :math:`\Delta > 0` of the simulation (default :math:`t_\max/N`).
        batch_size: Rows per model call (> 0).
        seed: Seed of the sources.
        backend: Of the spectral ops.

    Returns:
        ``{"t": (N,), "pfr_velocity": (N,), "pfr_exposure_bias": (N,), "fel_plain": (N,),
        "fel_reweighted": (N,)}`` float64 numpy arrays, and ``"settings"``: a dict of the scalars above plus
        ``num_samples`` and the loss's ``weight_source`` and ``gamma``.

    Raises:
        ValueError: On a bad argument; the message names it.
    """
    x1 = check_image("x1", x1)
    if x1.shape[0] == 0:
        raise ValueError("x1 must hold at least one image")
    if y is not None and (not isinstance(y, torch.Tensor) or y.shape != (x1.shape[0],) or y.device != x1.device):
        got = f"{tuple(y.shape)} on {y.device}" if isinstance(y, torch.Tensor) else type(y).__name__
        raise ValueError(f"y must be a ({x1.shape[0]},) tensor on x1's device {x1.device} or None, got {got}")
    loss = DEFARLoss() if loss is None else loss
    if not isinstance(loss, DEFARLoss):
        raise ValueError(f"loss must be a bfr_fast.losses.DEFARLoss or None, got {type(loss).__name__}")
    positive_int("num_t", num_t)
    positive_int("batch_size", batch_size)
    non_negative_float("cutoff", cutoff)
    fel_cutoff_low = cutoff if fel_cutoff_low is None else non_negative_float("fel_cutoff_low", fel_cutoff_low)
    fel_cutoff_high = cutoff if fel_cutoff_high is None else non_negative_float("fel_cutoff_high", fel_cutoff_high)
    probability("low_quantile", low_quantile)
    probability("high_quantile", high_quantile)
    path = loss.interpolant
    step = path.t_max / num_t if step is None else positive_float("step", step)

    generator = torch.Generator(device=x1.device).manual_seed(seed)
    x0 = torch.randn(x1.shape, generator=generator, device=x1.device, dtype=x1.dtype)
    x0, x1, y = COUPLINGS[loss.coupling](x0, x1, y)
    n = x1.shape[0]
    times = path.t_max * (torch.arange(num_t, dtype=torch.float64) + 0.5) / num_t
    # Rows are (t, image) pairs, t-major; each chunk's sums are added into its times' totals.
    totals = torch.zeros(len(CURVE_NAMES), num_t, 2, dtype=torch.float64)
    was_training = model.training if isinstance(model, nn.Module) else None
    if was_training is not None:
        model.eval()
    dtype = accumulation_dtype(x1.dtype)
    try:
        for start in range(0, num_t * n, batch_size):
            rows = torch.arange(start, min(start + batch_size, num_t * n), device=x1.device)
            t_index, image = rows // n, rows % n
            t = times.to(x1.device)[t_index].float()
            t_start = (t - step).clamp_min(0.0)
            a, b = x0[image], x1[image]
            labels = None if y is None else y[image]
            x_t, u = path.sample(a, b, t)
            v = model(x_t, t, labels)
            x_hat = simulate(model, path.point(a, b, t_start), torch.stack([t_start, t]), labels)
            bias = model(x_hat, t, labels).to(dtype) - v.to(dtype)
            weight = fc_weight_map(loss.fc_source(a.to(dtype), b.to(dtype), bias), loss.gamma, loss.eps)
            masks = fel_region_masks(u, fel_cutoff_low, fel_cutoff_high, low_quantile, high_quantile, backend)
            parts = (
                band_energy(v, cutoff, backend),
                band_energy(bias, cutoff, backend),
                fel_sums(v, u, masks, None),
                fel_sums(v, u, masks, weight),
            )
            for k, part in enumerate(parts):
                totals[k].index_add_(0, t_index.cpu(), part.double().cpu())
    finally:
        if was_training is not None:
            model.train(was_training)

    curves: dict[str, object] = {"t": times.numpy()}
    for k, name in enumerate(CURVE_NAMES):
        rtol = PFR_RTOL if name.startswith("pfr") else 0.0
        curves[name] = guarded_ratio(totals[k, :, 0], totals[k, :, 1], rtol).numpy().astype(np.float64)
    curves["settings"] = {
        "num_t": num_t,
        "num_samples": n,
        "cutoff": float(cutoff),
        "fel_cutoff_low": float(fel_cutoff_low),
        "fel_cutoff_high": float(fel_cutoff_high),
        "low_quantile": float(low_quantile),
        "high_quantile": float(high_quantile),
        "step": float(step),
        "weight_source": loss.weight_source,
        "gamma": float(loss.gamma),
        "seed": seed,
    }
    return curves
