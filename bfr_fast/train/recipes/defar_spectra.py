"""``defar-spectra``: DEFAR's Figures 3 and 5: PFR of the predicted velocity and of the exposure bias, and FEL of
the plain and the FC-reweighted loss, against t (50 uniform timesteps), for a flow-matching and a DEFAR network.

Trains ``fm-seed<k>`` and ``defar-seed<k>`` exactly as the ``defar`` recipe does (same names, losses, steps and
seed ``k = --seed``), or loads them on ``--resume``: to analyse the networks of a ``defar`` run, copy its
``checkpoints/fm-seed0.pt`` and ``checkpoints/defar-seed0.pt`` into ``<out>/checkpoints/`` and pass ``--resume
--out <out>`` (the ``--steps`` must match theirs). Then :func:`~bfr_fast.pipelines.spectra.spectral_curves` runs each EMA
network on the held-out test images (up to ``--num-samples``), with DEFAR's default FC settings (exposure-bias
weight, γ = 1) and the simulated step Δ = 1/50; each model's curves go to ``spectra-<model>.json`` and
``spectra-<model>.png``, and ``metrics.json`` holds one row per (model, t).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from bfr_fast.losses import DEFARLoss
from bfr_fast.metrics.spectral import CURVE_NAMES
from bfr_fast.report import markdown_table
from bfr_fast.report.spectral_plots import plot_spectral_curves, write_spectral_curves
from bfr_fast.pipelines.comparison import METHODS, defar_budget
from bfr_fast.pipelines.presets import image_preset
from bfr_fast.pipelines.spectra import spectral_curves
from bfr_fast.pipelines.training import label_dropout, train_flow
from bfr_fast.train.recipes.base import Recipe, RunContext, RunResult
from bfr_fast.train.recipes.common import batch_size, load_data, optimisation, steps

MODELS = ("fm", "defar")
NUM_T = 50  # the paper's 50 uniform timesteps
SPECTRA_SAMPLES = 500  # test images per curve point (digits has 359)
SHOWN_T = (0.01, 0.25, 0.49, 0.75, 0.99)  # the table's times (curve points nearest to them)


def _summary(model: str, curves: dict[str, Any]) -> list[dict[str, Any]]:
    t = np.asarray(curves["t"])
    rows = []
    for wanted in SHOWN_T:
        i = int(np.abs(t - wanted).argmin())
        rows.append({"model": model, "t": float(t[i]), **{k: float(curves[k][i]) for k in CURVE_NAMES}})
    return rows


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def run(ctx: RunContext) -> RunResult:
    data = load_data(ctx)
    preset = image_preset(data.image_shape)
    train_steps = steps(ctx, defar_budget(data.image_shape).steps)
    config, size = optimisation(ctx, train_steps, preset.lr), batch_size(ctx, preset.batch_size)
    seed = ctx.workspace.seed
    n = min(ctx.options.num_samples or SPECTRA_SAMPLES, data.test_x.shape[0])
    x1 = data.test_x[:n].to(ctx.device)
    y = data.test_y[:n].to(ctx.device) if data.is_labelled else None
    rows: list[dict[str, Any]] = []
    shown: list[dict[str, Any]] = []
    figures = []
    for model_name in MODELS:
        trained = train_flow(
            ctx.workspace, data,
            lambda m, name=model_name: METHODS[name](label_dropout=label_dropout(data), null_class=m.null_class),
            f"{model_name}-seed{seed}", config, size, seed,
        )
        if not ctx.dist.is_main:
            continue
        curves = spectral_curves(trained.model, x1, y, loss=DEFARLoss(), num_t=NUM_T, seed=seed)
        write_spectral_curves(curves, ctx.folder.root / f"spectra-{model_name}.json")
        plot_spectral_curves(curves, ctx.folder.root / f"spectra-{model_name}.png")
        figures.append(f"spectra-{model_name}.png")
        for i, t in enumerate(curves["t"]):
            rows.append({"model": model_name, "train_steps": trained.trainer.step, "t": float(t),
                         **{k: _finite_or_none(float(curves[k][i])) for k in CURVE_NAMES}})
        shown.extend(_summary(model_name, curves))
    if not ctx.dist.is_main:
        return RunResult({}, "")
    columns = [("model", "model"), ("t", "t"), ("pfr_velocity", "PFR velocity"),
               ("pfr_exposure_bias", "PFR exposure bias"), ("fel_plain", "FEL plain"),
               ("fel_reweighted", "FEL reweighted")]
    title = (
        f"Spectral diagnostics on `{data.name}`: {n} held-out test images, {NUM_T} uniform times, networks of "
        f"{train_steps} training steps (seed {seed}); PFR/FEL cutoff 0.5, FC weight from the exposure bias, γ = 1"
    )
    body = markdown_table(shown, columns) + "\n" + "\n".join(f"![{f}]({f})" for f in figures) + "\n"
    metrics = {"recipe": "defar-spectra", "dataset": data.name, "train_steps": train_steps, "seed": seed,
               "num_samples": n, "num_t": NUM_T, "figures": figures, "rows": rows}
    return RunResult(metrics, f"## {title}\n\n{body}")


RECIPE = Recipe("defar-spectra", "DEFAR Fig. 3/5: PFR and FEL against t for an FM and a DEFAR network", run,
                reads=frozenset({"data_root"}))
