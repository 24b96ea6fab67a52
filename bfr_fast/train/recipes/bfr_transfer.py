"""``bfr-transfer``: Table 7, refiners trained on a well-trained base applied unchanged to a less-trained one.

Trains the ``bfr`` recipe's base (the "strong" base) and, from the same seed, a second base with a quarter of its
steps (the "weak" base, ``checkpoints/base-weak.pt``). The pool, inversion cache and the four refiners are built on
the strong base only (as in ``bfr``). Both bases are then evaluated alone and with every refiner, from the same
noise and labels; on the weak base the DFR and baselines refine the weak base's samples and the LFR's refined
latents are decoded by the weak base. Rows carry ``"base": "strong" | "weak"``.
"""

from __future__ import annotations

from dataclasses import replace

from bfr_fast.pipelines.presets import image_preset
from bfr_fast.pipelines.refinement import (
    evaluate_refiners,
    inversion_cache,
    sample_pool,
    summarize,
    table_columns,
    train_refiners,
)
from bfr_fast.pipelines.sampling import SamplerSpec
from bfr_fast.pipelines.training import train_base_flow
from bfr_fast.report import markdown_table
from bfr_fast.train.recipes.base import Recipe, RunContext, RunResult
from bfr_fast.train.recipes.bfr_setup import READS, prepare
from bfr_fast.train.recipes.common import batch_size, optimisation

WEAK_FRACTION = 4  # the weak base trains for base_steps // WEAK_FRACTION steps


def run(ctx: RunContext) -> RunResult:
    setup = prepare(ctx)
    ws, strong, data = ctx.workspace, setup.task, setup.data
    preset = image_preset(data.image_shape)
    weak_steps = max(setup.base_steps // WEAK_FRACTION, 1)
    weak_model = train_base_flow(ws, data, optimisation(ctx, weak_steps, preset.lr),
                                 batch_size(ctx, preset.batch_size), name="base-weak")
    weak = replace(strong, generator=SamplerSpec("euler", strong.generator.num_steps).generator(weak_model))
    pool = sample_pool(ws, strong)
    cache = inversion_cache(ws, strong)
    refiners = train_refiners(ws, strong, pool, cache)
    if setup.scorer is None:  # every rank trains; the main process alone evaluates and writes
        return RunResult({}, "")
    extractor, reference = setup.scorer
    rows = []
    for name, task in (("strong", strong), ("weak", weak)):
        rows += evaluate_refiners(ws, task, refiners, extractor, reference, grid_prefix=f"{name}-",
                                  extra={"base": name})
    keys = ("base", "method", "solver", "nfe_base", "nfe_refiner", "teacher_nfe")
    title = (
        f"BFR transfer on `{data.name}`: refiners trained on the strong base, applied to a weak base "
        f"({weak_steps} training steps); Euler {strong.generator.num_steps} steps, scored with `{extractor.name}`"
    )
    metrics = {"recipe": "bfr-transfer", "dataset": data.name, "extractor": extractor.name,
               "weak_base_steps": weak_steps, "inversion_error": cache.error_summary(), "rows": rows}
    body = markdown_table(summarize(rows, keys), table_columns(extractor.name, (("base", "base"),)))
    return RunResult(metrics, f"## {title}\n\n{body}")


RECIPE = Recipe("bfr-transfer", "Table 7: refiners trained on a well-trained base applied to a less-trained base", run,
                reads=READS)
