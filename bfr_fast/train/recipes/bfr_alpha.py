"""``bfr-alpha``: Table 4, the LFR's noise-mixing range α, and the baselines' noise scales.

On the ``bfr`` recipe's base, pool and inversion cache, trains one LFR per α in :data:`ALPHAS`, one
noise-injection refiner per σ_d in :data:`SIGMAS` and one FMRefiner per σ_f in :data:`SIGMAS` (13 refiners:
about three times the ``bfr`` recipe's refiner budget), and evaluates each (LFR at 1 and 10 NFE, baselines at
1 NFE) against the base on the same noise. Rows carry ``"alpha"``, ``"sigma_d"`` or ``"sigma_f"``.
"""

from __future__ import annotations

from typing import Any

from bfr_fast.models import UNet
from bfr_fast.pipelines.refinement import (
    evaluate_refiners,
    inversion_cache,
    sample_pool,
    summarize,
    table_columns,
    train_refiner,
)
from bfr_fast.refiners import FMRefiner, LatentFlowRefiner, NoiseInjectionRefiner, Refiner
from bfr_fast.report import markdown_table
from bfr_fast.train.recipes.base import Recipe, RunContext, RunResult
from bfr_fast.train.recipes.bfr_setup import READS, prepare

ALPHAS = (0.0, 0.1, 0.2, 0.3, 0.5)
SIGMAS = (0.01, 0.05, 0.1, 0.2)


def run(ctx: RunContext) -> RunResult:
    setup = prepare(ctx)
    ws, task = ctx.workspace, setup.task
    pool = sample_pool(ws, task)
    cache = inversion_cache(ws, task)
    data, budget = task.data, task.budget
    x_real, y = data.train_x, task.labels_or_none
    z1, z1_labels = cache.latents.cpu(), None if cache.labels is None else cache.labels.cpu()

    def network() -> UNet:
        return budget.refiner_network(data.image_shape[0], task.num_classes)

    trained: list[tuple[str, dict[str, Any], Refiner]] = []
    for i, alpha in enumerate(ALPHAS):
        lfr = LatentFlowRefiner(network(), alpha=alpha)
        refiner = train_refiner(ws, task, f"lfr-alpha{alpha}", lfr, lfr.training_loss(), z1, z1_labels, 10 + i)
        trained.append(("lfr", {"alpha": alpha}, refiner))
    for i, sigma in enumerate(SIGMAS):
        ni = NoiseInjectionRefiner(network(), sigma_d=sigma)
        refiner = train_refiner(ws, task, f"noise_injection-sigma{sigma}", ni, ni.training_loss(pool), x_real, y,
                                20 + i)
        trained.append(("noise_injection", {"sigma_d": sigma}, refiner))
        fm = FMRefiner(network(), sigma_f=sigma, sigma_z=0.1)
        refiner = train_refiner(ws, task, f"fmrefiner-sigma{sigma}", fm, fm.training_loss(), x_real, y, 30 + i)
        trained.append(("fmrefiner", {"sigma_f": sigma}, refiner))
    if setup.scorer is None:  # every rank trains; the main process alone evaluates and writes
        return RunResult({}, "")
    extractor, reference = setup.scorer
    rows = evaluate_refiners(ws, task, {}, extractor, reference)
    for method, extra, refiner in trained:
        prefix = "-".join(f"{k}{v}" for k, v in extra.items()) + "-"
        rows += evaluate_refiners(ws, task, {method: refiner}, extractor, reference, grid_prefix=prefix,
                                  extra=extra, include_base=False)
    keys = ("method", "alpha", "sigma_d", "sigma_f", "solver", "nfe_base", "nfe_refiner", "teacher_nfe")
    for row in rows:
        for key in keys:
            row.setdefault(key, None)
    title = (
        f"LFR α and baseline σ sweeps on `{data.name}`: Euler {task.generator.num_steps}-step base, "
        f"scored with `{extractor.name}`"
    )
    metrics = {"recipe": "bfr-alpha", "dataset": data.name, "extractor": extractor.name,
               "inversion_error": cache.error_summary(), "rows": rows}
    columns = table_columns(extractor.name)
    columns = columns[:1] + [("alpha", "α"), ("sigma_d", "σ_d"), ("sigma_f", "σ_f")] + columns[1:]
    return RunResult(metrics, f"## {title}\n\n" + markdown_table(summarize(rows, keys), columns))


RECIPE = Recipe("bfr-alpha", "Table 4: LFR over alpha in {0, .1, .2, .3, .5}; sigma_d / sigma_f sweeps", run,
                reads=READS)
