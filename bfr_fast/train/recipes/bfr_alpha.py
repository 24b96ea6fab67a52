"""``bfr-alpha``: Table 4, the LFR's noise-mixing range α, and the baselines' noise scales.

On the ``bfr`` recipe's base, pool and inversion cache, trains one LFR per α in :data:`ALPHAS`, one
noise-injection refiner per σ_d in :data:`SIGMAS` and one FMRefiner per σ_f in :data:`SIGMAS` (13 refiners:
about three times the ``bfr`` recipe's refiner budget), and evaluates each (LFR at 1 and 10 NFE, baselines at
1 NFE) against the base on the same noise. Rows carry ``"alpha"``, ``"sigma_d"`` or ``"sigma_f"``. Each swept
setting trains the registered refiner that takes it (:func:`~bfr_fast.refiners.registry.taking`), checkpointed as
``<refiner>-<label><value>``.
"""

from __future__ import annotations

from typing import Any

from bfr_fast.pipelines.refinement import (
    evaluate_refiners,
    inversion_cache,
    sample_pool,
    summarize,
    table_columns,
    train_refiner,
)
from bfr_fast.refiners import Refiner, RefinerData, registry
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
    sources = RefinerData(data.train_x, task.labels_or_none, pool, cache)
    trained: list[tuple[str, dict[str, Any], Refiner]] = []

    def sweep(setting: str, value: float, label: str, offset: int) -> None:
        entry = registry.taking(setting)
        refiner = entry.build(budget.refiner_network(data.image_shape[0], task.num_classes), {setting: value})
        loss, x, y = refiner.training_set(sources)
        trained.append((entry.name, {setting: value},
                        train_refiner(ws, task, f"{entry.name}-{label}{value}", refiner, loss, x, y, offset)))

    for i, alpha in enumerate(ALPHAS):
        sweep("alpha", alpha, "alpha", 10 + i)
    for i, sigma in enumerate(SIGMAS):
        sweep("sigma_d", sigma, "sigma", 20 + i)
        sweep("sigma_f", sigma, "sigma", 30 + i)
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
