"""``defar-spectra``: DEFAR's Figures 3 and 5: PFR of the predicted velocity, of its target and of the exposure bias,
and FEL of the plain and the FC-reweighted loss (the weight at a single time and as training applies it), against t
(50 uniform timesteps), at the band radii 0.5 and 0.25 of Nyquist, with |δ| heat maps beside the images, for a
flow-matching and a DEFAR network.

Trains ``fm-seed<k>`` and ``defar-seed<k>`` exactly as the ``defar`` recipe does (same names, losses, steps and
seed ``k = --seed``), or loads them on ``--resume``: to analyse the networks of a ``defar`` run, copy its
``checkpoints/fm-seed0.pt`` and ``checkpoints/defar-seed0.pt`` into ``<out>/checkpoints/`` and pass ``--resume
--out <out>`` (the ``--steps`` must match theirs); ``--select fm`` or ``--select defar`` analyses one of them. Then
:func:`~bfr_fast.pipelines.spectra.spectral_curves` runs each EMA network on the held-out test images (up to
``--num-samples``) with the loss the ``defar`` recipe trains DEFAR with (independent coupling, exposure-bias
weight, γ = 1) and the single-time step Δ = 1/50; each model's curves go to ``spectra-<model>-cutoff<r>.json``
and ``.png``, its heat maps (:func:`~bfr_fast.pipelines.spectra.exposure_bias_maps`) to
``exposure-bias-<model>.png``, and ``metrics.json`` holds one row per (model, cutoff, t) and, per (model, t) of
the maps, the mean over the images of the Pearson correlation between |δ| and the image's distance to its class
mean |x₁ − μ_y| (μ_y over the training images of its class).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from bfr_fast.losses import DEFARLoss, PathLoss
from bfr_fast.metrics.spectral import CURVE_NAMES
from bfr_fast.models import UNet
from bfr_fast.pipelines.comparison import METHODS, defar_budget
from bfr_fast.pipelines.presets import image_preset
from bfr_fast.pipelines.spectra import exposure_bias_maps, spectral_curves
from bfr_fast.pipelines.training import label_dropout, train_flow
from bfr_fast.report import markdown_table
from bfr_fast.report.spectral_plots import plot_exposure_bias_maps, plot_spectral_curves, write_spectral_curves
from bfr_fast.train.recipes.base import Recipe, RunContext, RunResult
from bfr_fast.train.recipes.common import batch_size, load_data, optimisation, select, steps

MODELS = ("fm", "defar")
NUM_T = 50  # the paper's 50 uniform timesteps
CUTOFFS = (0.5, 0.25)  # of Nyquist; the paper's value is missing from its text
SPECTRA_SAMPLES = 500  # test images per curve point (digits has 359)
SHOWN_T = (0.01, 0.25, 0.49, 0.75, 0.99)  # the table's times (curve points nearest to them)
MAP_TIMES = (0.1, 0.25, 0.5, 0.75)  # the heat maps' times
MAP_IMAGES = 8  # images shown in the heat maps (the correlation uses every analysed image)
ROWS = 128  # rows per model call: the CPU's cache (bfr_fast.pipelines.comparison.SAMPLE_ROWS)


def _summary(model: str, cutoff: float, curves: dict[str, Any]) -> list[dict[str, Any]]:
    t = np.asarray(curves["t"])
    rows = []
    for wanted in SHOWN_T:
        i = int(np.abs(t - wanted).argmin())
        values = {k: float(curves[k][i]) for k in CURVE_NAMES}
        rows.append({"model": model, "cutoff": cutoff, "t": float(t[i]), **values,
                     "single_change": values["fel_reweighted"] / values["fel_plain"] - 1,
                     "trained_change": values["fel_reweighted_as_trained"] / values["fel_plain"] - 1})
    return rows


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _pearson(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-row Pearson correlation of two ``(B, ...)`` tensors over their other dimensions."""
    a, b = a.flatten(1).double(), b.flatten(1).double()
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp_min(1e-300)


def run(ctx: RunContext) -> RunResult:
    data = load_data(ctx)
    preset = image_preset(data.image_shape)
    train_steps = steps(ctx, defar_budget(data.image_shape).steps)
    config, size = optimisation(ctx, train_steps, preset.lr), batch_size(ctx, preset.batch_size)
    seed = ctx.workspace.seed
    n = min(ctx.options.num_samples or SPECTRA_SAMPLES, data.test_x.shape[0])
    x1 = data.test_x[:n].to(ctx.device)
    y = data.test_y[:n].to(ctx.device) if data.is_labelled else None
    # The loss DEFAR trains with in the defar recipe: its coupling and the FC weight's settings.
    loss = METHODS["defar"](label_dropout=0.0)
    if not isinstance(loss, DEFARLoss):  # METHODS holds its losses as the PathLoss base class
        raise TypeError(f"METHODS['defar'] builds a {type(loss).__name__}, not the DEFARLoss the spectra need")
    if y is not None and data.num_classes is not None:  # y: the labels of a labelled data set
        means = torch.stack([data.train_x[data.train_y == c].mean(0) for c in range(data.num_classes)]).to(x1.device)
        reference = (x1 - means[y]).abs().sum(1)
    else:  # no classes: the distance to the mean image
        reference = (x1 - data.train_x.mean(0).to(x1.device)).abs().sum(1)
    rows: list[dict[str, Any]] = []
    shown: list[dict[str, Any]] = []
    correlations: list[dict[str, Any]] = []
    figures = []
    for model_name in select(ctx, list(MODELS)):
        def make_loss(m: UNet, name: str = model_name) -> PathLoss:
            return METHODS[name](label_dropout=label_dropout(data), null_class=m.null_class)

        trained = train_flow(ctx.workspace, data, make_loss, f"{model_name}-seed{seed}", config, size, seed)
        if not ctx.dist.is_main:
            continue
        by_cutoff = spectral_curves(trained.model, x1, y, loss=loss, num_t=NUM_T, cutoffs=CUTOFFS,
                                    batch_size=ROWS, seed=seed)
        for cutoff, curves in by_cutoff.items():
            stem = f"spectra-{model_name}-cutoff{cutoff:g}"
            write_spectral_curves(curves, ctx.folder.root / f"{stem}.json")
            plot_spectral_curves(curves, ctx.folder.root / f"{stem}.png")
            figures.append(f"{stem}.png")
            for i, t in enumerate(curves["t"]):
                rows.append({"model": model_name, "train_steps": trained.trainer.step, "cutoff": cutoff,
                             "t": float(t), **{k: _finite_or_none(float(curves[k][i])) for k in CURVE_NAMES}})
            shown.extend(_summary(model_name, cutoff, curves))
        maps = exposure_bias_maps(trained.model, x1, y, MAP_TIMES, loss=loss, step=1 / NUM_T, batch_size=ROWS,
                                  seed=seed)
        for k, t in enumerate(MAP_TIMES):
            r = _pearson(maps[:, k], reference)
            correlations.append({"model": model_name, "t": t, "pearson_mean": float(r.mean()),
                                 "pearson_std": float(r.std()) if n > 1 else 0.0})
        figure = f"exposure-bias-{model_name}.png"
        plot_exposure_bias_maps(
            x1[:MAP_IMAGES, 0].cpu().numpy(), reference[:MAP_IMAGES].cpu().numpy(), maps[:MAP_IMAGES].cpu().numpy(),
            MAP_TIMES, ctx.folder.root / figure,
            f"{model_name}: |δ| after one Euler step of 1/{NUM_T} ending at t (channel-summed, each map to its max)",
        )
        figures.append(figure)
    if not ctx.dist.is_main:
        return RunResult({}, "")
    columns = [("model", "model"), ("cutoff", "cutoff"), ("t", "t"), ("pfr_velocity", "PFR v"),
               ("pfr_target", "PFR u"), ("pfr_exposure_bias", "PFR δ"), ("fel_plain", "FEL plain"),
               ("fel_reweighted", "FEL reweighted, single time"),
               ("fel_reweighted_as_trained", "FEL reweighted, as trained"),
               ("single_change", "single / plain − 1"), ("trained_change", "as trained / plain − 1")]
    title = (
        f"Spectral diagnostics on `{data.name}`: {n} held-out test images, {NUM_T} uniform times, networks of "
        f"{train_steps} training steps (seed {seed}); PFR/FEL cutoffs {', '.join(f'{c:g}' for c in CUTOFFS)} of "
        f"Nyquist, FC weight from the exposure bias, γ = {loss.gamma:g}, {loss.coupling} coupling"
    )
    body = (markdown_table(shown, columns) + "\n\n### |δ| against |x₁ − class mean| (Pearson, mean ± std over the "
            f"{n} images)\n\n" + markdown_table(correlations, [("model", "model"), ("t", "t"),
                                                               ("pearson_mean", "mean r"), ("pearson_std", "std")])
            + "\n" + "\n".join(f"![{f}]({f})" for f in figures) + "\n")
    metrics = {"recipe": "defar-spectra", "dataset": data.name, "train_steps": train_steps, "seed": seed,
               "num_samples": n, "num_t": NUM_T, "cutoffs": list(CUTOFFS), "figures": figures, "rows": rows,
               "exposure_bias_correlation": correlations}
    return RunResult(metrics, f"## {title}\n\n{body}")


RECIPE = Recipe("defar-spectra", "DEFAR Fig. 3/5: PFR and FEL against t (cutoffs 0.5, 0.25; FEL single-time and as "
                "trained) and |δ| heat maps for an FM and a DEFAR network; --select fm,defar", run,
                reads=frozenset({"data_root", "select"}))
