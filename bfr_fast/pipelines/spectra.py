r"""The spectral diagnostics of exposure bias against t (DEFAR's Figures 3 and 5) for a trained network: an
experiment driver over the PFR and FEL of :mod:`bfr_fast.metrics.spectral` and the DEFAR loss's path, coupling and
FC weight."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

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
from bfr_fast.paths import Interpolant

SpectralCurves = dict[str, Any]
"""One cutoff's curves from :func:`spectral_curves`: ``"t"`` and each of ``CURVE_NAMES`` map to an ``(N,)`` float64
numpy array, ``"settings"`` to a dict of scalars (values typed ``Any``: the arrays and the dict share the mapping)."""


@contextmanager
def _eval_mode(model: nn.Module | Callable[..., torch.Tensor]) -> Iterator[None]:
    """A module in eval mode inside the block, its training flag restored after (even on an error); a plain callable
    as it is."""
    if not isinstance(model, nn.Module):
        yield
        return
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _exposure_bias(
    model: nn.Module | Callable[..., torch.Tensor],
    path: Interpolant,
    x0: torch.Tensor,
    x1: torch.Tensor,
    labels: torch.Tensor | None,
    t_start: torch.Tensor,
    t_end: torch.Tensor,
    v_start: torch.Tensor | None = None,
    v_end: torch.Tensor | None = None,
) -> torch.Tensor:
    r""":math:`\delta = v_\theta(\hat x, t_e) - v_\theta(x_{t_e}, t_e)` after one Euler step
    :math:`\hat x = x_{t_s} + (t_e - t_s)\, v_\theta(x_{t_s}, t_s)` (the DEFAR loss's exposure bias), in the
    accumulation dtype; ``v_start`` / ``v_end`` are :math:`v_\theta(x_{t_s}, t_s)` / :math:`v_\theta(x_{t_e}, t_e)`
    when the caller has them (each saves a model call)."""
    dtype = accumulation_dtype(x1.dtype)
    x_hat = simulate(model, path.point(x0, x1, t_start), torch.stack([t_start, t_end]), labels, first_velocity=v_start)
    if v_end is None:
        v_end = model(path.point(x0, x1, t_end), t_end, labels)
    return model(x_hat, t_end, labels).to(dtype) - v_end.to(dtype)


def _sources(
    x1: torch.Tensor, y: torch.Tensor | None, loss: DEFARLoss, seed: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Generator]:
    """One source per image from a generator seeded by ``seed``, paired with ``x1`` by the loss's coupling; the
    generator, for the draws that follow."""
    generator = torch.Generator(device=x1.device).manual_seed(seed)
    x0 = torch.randn(x1.shape, generator=generator, device=x1.device, dtype=x1.dtype)
    x0, x1, y = COUPLINGS[loss.coupling](x0, x1, y)
    return x0, x1, y, generator


def _check_inputs(x1: object, y: object, loss: object) -> tuple[torch.Tensor, DEFARLoss]:
    x1 = check_image("x1", x1)
    if x1.shape[0] == 0:
        raise ValueError("x1 must hold at least one image")
    if y is not None and (not isinstance(y, torch.Tensor) or y.shape != (x1.shape[0],) or y.device != x1.device):
        got = f"{tuple(y.shape)} on {y.device}" if isinstance(y, torch.Tensor) else type(y).__name__
        raise ValueError(f"y must be a ({x1.shape[0]},) tensor on x1's device {x1.device} or None, got {got}")
    loss = DEFARLoss() if loss is None else loss
    if not isinstance(loss, DEFARLoss):
        raise ValueError(f"loss must be a bfr_fast.losses.DEFARLoss or None, got {type(loss).__name__}")
    return x1, loss


@torch.no_grad()
def spectral_curves(
    model: nn.Module | Callable[..., torch.Tensor],
    x1: torch.Tensor,
    y: torch.Tensor | None = None,
    *,
    loss: DEFARLoss | None = None,
    num_t: int = 50,
    cutoffs: Sequence[float] = (0.5,),
    fel_cutoff_low: float | None = None,
    fel_cutoff_high: float | None = None,
    low_quantile: float = 0.8,
    high_quantile: float = 0.75,
    step: float | None = None,
    batch_size: int = 256,
    seed: int = 0,
    backend: str = "auto",
) -> dict[float, SpectralCurves]:
    r"""PFR of the predicted velocity, of its target and of the exposure bias, and FEL of the plain and the
    FC-reweighted loss, the weight taken at a single time and as training takes it, against t (DEFAR's Figures 3
    and 5), on a batch of real data, for each band radius of ``cutoffs``.

    The path, coupling and FC settings are ``loss``'s (default :class:`~bfr_fast.losses.DEFARLoss`: linear path,
    OT coupling, exposure-bias source, :math:`\gamma = 1`; pass the loss the network was trained with). One source
    :math:`\epsilon` per image (``torch.Generator`` seeded by ``seed``), paired with ``x1`` by the loss's coupling
    once, is used at every t. For each of ``num_t`` times :math:`t_i = t_\max (i + \tfrac12)/N` (uniform in
    :math:`(0, t_\max)`):

    - :math:`x_t`, :math:`u` = the path point and velocity target; :math:`v = v_\theta(x_t, t)`.
    - Single time: one-step simulation from :math:`t_s = \max(t - \Delta, 0)`:
      :math:`\hat x = x_{t_s} + (t - t_s)\, v_\theta(x_{t_s}, t_s)`; exposure bias
      :math:`\delta = v_\theta(\hat x, t) - v_\theta(x_t, t)` (docs/design.md §5 with :math:`t_e = t`).
      :math:`\Delta` (``step``) defaults to :math:`t_\max/N`, the step of an N-step Euler sampler, so
      :math:`\delta` is the drift one such step adds; where :math:`t < \Delta` (the first time, by default) the
      step starts at 0 and is :math:`t` long. The weight :math:`W` from :math:`\delta` reweights the loss at the
      time :math:`\delta` ends, t.
    - As trained (:class:`~bfr_fast.losses.DEFARLoss`'s one-step draw): the loss at :math:`t_s = t`, and
      :math:`t_e \sim U(t, t_\max)`, one draw per (t, image) from the same generator; one Euler step from
      :math:`x_t` with :math:`v` to :math:`\hat x` at :math:`t_e`,
      :math:`\delta_\mathrm{tr} = v_\theta(\hat x, t_e) - v_\theta(x_{t_e}, t_e)`, and its weight
      :math:`W_\mathrm{tr}` on the loss :math:`(v - u)^2` at t. (The loss's ``steps`` and ``timesteps`` are not
      used: this is the one-step draw of the default DEFAR.)
    - ``pfr_velocity``, ``pfr_target``, ``pfr_exposure_bias``: PFR of :math:`v`, :math:`u` and :math:`\delta`;
      ``fel_plain``: FEL of :math:`e = (v - u)^2`; ``fel_reweighted``: of :math:`W e`;
      ``fel_reweighted_as_trained``: of :math:`W_\mathrm{tr} e`. :math:`W` is the FC weight of
      ``loss.fc_source`` (:math:`\delta` for the exposure-bias source) without the mean-1 normalisation, which
      cancels in FEL.

    Each value is pooled over the batch, a ratio of sums (:math:`\sum_b E_\mathrm{low} / \sum_b E_\mathrm{high}`,
    likewise for FEL), so that one sample with a tiny denominator does not dominate; zero denominators follow the
    module's policy. Five model calls per (t, image), in chunks of ``batch_size`` rows, shared by every cutoff,
    without gradient, the model in eval mode (its mode restored after).

    Args:
        model: ``model(x, t, y)``.
        x1: ``(B, C, H, W)`` real data.
        y: ``(B,)`` labels or ``None``.
        loss: The :class:`~bfr_fast.losses.DEFARLoss` whose interpolant, coupling, ``gamma``, ``eps`` and
            ``fc_source`` to use.
        num_t: Number of times N (the paper: 50).
        cutoffs: Band radii :math:`r_c` of PFR and FEL (1 = Nyquist), one set of curves each.
        fel_cutoff_low, fel_cutoff_high: FEL filter radii for every cutoff (default: the cutoff).
        low_quantile, high_quantile: FEL region quantiles (top 20% and 25%).
        step: :math:`\Delta > 0` of the single-time simulation (default :math:`t_\max/N`).
        batch_size: Rows per model call (> 0).
        seed: Seed of the sources and of the as-trained :math:`t_e`.
        backend: Of the spectral ops.

    Returns:
        For each cutoff, ``{"t": (N,), "<curve>": (N,) for each of CURVE_NAMES}`` float64 numpy arrays, and
        ``"settings"``: a dict of the scalars above (with that ``cutoff``) plus ``num_samples`` and the loss's
        ``weight_source``, ``gamma`` and ``coupling``.

    Raises:
        ValueError: On a bad argument; the message names it.
    """
    x1, loss = _check_inputs(x1, y, loss)
    positive_int("num_t", num_t)
    positive_int("batch_size", batch_size)
    cutoffs = [non_negative_float("cutoff", c) for c in cutoffs]
    if not cutoffs or len(set(cutoffs)) != len(cutoffs):
        raise ValueError(f"cutoffs must be distinct and at least one, got {cutoffs}")
    fel_radii = {c: (c if fel_cutoff_low is None else non_negative_float("fel_cutoff_low", fel_cutoff_low),
                     c if fel_cutoff_high is None else non_negative_float("fel_cutoff_high", fel_cutoff_high))
                 for c in cutoffs}
    probability("low_quantile", low_quantile)
    probability("high_quantile", high_quantile)
    path = loss.interpolant
    step = path.t_max / num_t if step is None else positive_float("step", step)

    x0, x1, y, generator = _sources(x1, y, loss, seed)
    n = x1.shape[0]
    # t_e of the as-trained weight: drawn for every row before the loop, so that chunking only regroups rows.
    lift = torch.rand(num_t, n, generator=generator, device=x1.device)
    times = path.t_max * (torch.arange(num_t, dtype=torch.float64) + 0.5) / num_t
    # Rows are (t, image) pairs, t-major; each chunk's sums are added into its times' totals.
    totals = {c: torch.zeros(len(CURVE_NAMES), num_t, 2, dtype=torch.float64) for c in cutoffs}
    dtype = accumulation_dtype(x1.dtype)
    with _eval_mode(model):
        for start in range(0, num_t * n, batch_size):
            rows = torch.arange(start, min(start + batch_size, num_t * n), device=x1.device)
            t_index, image = rows // n, rows % n
            t = times.to(x1.device)[t_index].float()
            a, b = x0[image], x1[image]
            labels = None if y is None else y[image]
            x_t, u = path.sample(a, b, t)
            v = model(x_t, t, labels)
            bias = _exposure_bias(model, path, a, b, labels, (t - step).clamp_min(0.0), t, v_end=v)
            t_end = t + (path.t_max - t) * lift[t_index, image]
            trained = _exposure_bias(model, path, a, b, labels, t, t_end, v_start=v)
            weights = [fc_weight_map(loss.fc_source(a.to(dtype), b.to(dtype), d), loss.gamma, loss.eps)
                       for d in (bias, trained)]
            for cutoff in cutoffs:
                masks = fel_region_masks(u, *fel_radii[cutoff], low_quantile, high_quantile, backend)
                parts = (
                    band_energy(v, cutoff, backend),
                    band_energy(u, cutoff, backend),
                    band_energy(bias, cutoff, backend),
                    fel_sums(v, u, masks, None),
                    *(fel_sums(v, u, masks, w) for w in weights),
                )
                for k, part in enumerate(parts):
                    totals[cutoff][k].index_add_(0, t_index.cpu(), part.double().cpu())

    out: dict[float, SpectralCurves] = {}
    for cutoff in cutoffs:
        curves: SpectralCurves = {"t": times.numpy()}
        for k, name in enumerate(CURVE_NAMES):
            rtol = PFR_RTOL if name.startswith("pfr") else 0.0
            curves[name] = guarded_ratio(totals[cutoff][k, :, 0], totals[cutoff][k, :, 1], rtol).numpy()
        curves["settings"] = {
            "num_t": num_t,
            "num_samples": n,
            "cutoff": float(cutoff),
            "fel_cutoff_low": float(fel_radii[cutoff][0]),
            "fel_cutoff_high": float(fel_radii[cutoff][1]),
            "low_quantile": float(low_quantile),
            "high_quantile": float(high_quantile),
            "step": float(step),
            "weight_source": loss.weight_source,
            "gamma": float(loss.gamma),
            "coupling": loss.coupling,
            "seed": seed,
        }
        out[cutoff] = curves
    return out


@torch.no_grad()
def exposure_bias_maps(
    model: nn.Module | Callable[..., torch.Tensor],
    x1: torch.Tensor,
    y: torch.Tensor | None,
    times: Sequence[float],
    *,
    loss: DEFARLoss | None = None,
    step: float = 1 / 50,
    batch_size: int = 256,
    seed: int = 0,
) -> torch.Tensor:
    r"""Maps :math:`|\delta|` (summed over channels) of the single-time exposure bias of :func:`spectral_curves`
    at each of ``times``, for the heat maps of DEFAR's Fig. 3c.

    The sources are those of :func:`spectral_curves` with the same ``x1``, ``loss`` and ``seed``, and the
    coupling keeps the order of ``x1`` only for the independent coupling, so pass the loss's ``"independent"``
    coupling to show a map next to its image.

    Args:
        model: ``model(x, t, y)``.
        x1: ``(B, C, H, W)`` real data.
        y: ``(B,)`` labels or ``None``.
        times: The times t in :math:`(0, t_\max]`.
        loss: Its interpolant and coupling (default :class:`~bfr_fast.losses.DEFARLoss`).
        step: :math:`\Delta > 0` of the simulation, as in :func:`spectral_curves`.
        batch_size: Rows per model call (> 0).
        seed: Seed of the sources.

    Returns:
        ``(B, len(times), H, W)`` float32 (float64 for float64 input), rows in the order of the pairing.

    Raises:
        ValueError: On a bad argument; the message names it.
    """
    x1, loss = _check_inputs(x1, y, loss)
    positive_float("step", step)
    positive_int("batch_size", batch_size)
    x0, x1, y, _ = _sources(x1, y, loss, seed)
    path = loss.interpolant
    maps = []
    with _eval_mode(model):
        for when in times:
            chunks = []
            for i in range(0, x1.shape[0], batch_size):
                a, b = x0[i:i + batch_size], x1[i:i + batch_size]
                labels = None if y is None else y[i:i + batch_size]
                t = torch.full((a.shape[0],), float(when), device=x1.device)
                chunks.append(_exposure_bias(model, path, a, b, labels, (t - step).clamp_min(0.0), t).abs().sum(1))
            maps.append(torch.cat(chunks))
    return torch.stack(maps, dim=1)
