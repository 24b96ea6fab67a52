"""``flow``: train a flow-matching model on real images and evaluate it at several solvers and NFE.

Trains a class-conditional OT-CFM UNet (unconditional on unlabelled data), samples the same seeds with Euler at
4, 10 and 50 steps and Heun at 5 steps (10 NFE), and scores each set against the held-out test split. A row of
real training images scored the same way shows the floor that the metric reaches on this data.
"""

from __future__ import annotations

from bfr_fast.metrics import metric_label
from bfr_fast.pipelines.evaluation import evaluate_row
from bfr_fast.pipelines.presets import image_preset
from bfr_fast.pipelines.sampling import SamplerSpec, balanced_labels, source_noise
from bfr_fast.pipelines.training import train_base_flow
from bfr_fast.report import markdown_table
from bfr_fast.train.recipes.base import Recipe, RunContext, RunResult
from bfr_fast.train.recipes.common import batch_size, load_data, optimisation, scorer, steps

SAMPLERS = (SamplerSpec("euler", 4), SamplerSpec("euler", 10), SamplerSpec("euler", 50), SamplerSpec("heun", 5))


def run(ctx: RunContext) -> RunResult:
    data = load_data(ctx)
    score = scorer(ctx, data)
    preset = image_preset(data.image_shape)
    model = train_base_flow(ctx.workspace, data, optimisation(ctx, steps(ctx, preset.steps), preset.lr),
                            batch_size(ctx, preset.batch_size))
    if score is None:  # every rank trains; the main process alone evaluates and writes
        return RunResult({}, "")
    extractor, reference = score
    n = ctx.options.num_samples or preset.num_samples

    rows = [
        evaluate_row(
            ctx.workspace,
            {"method": "real", "sampler": "training images", "nfe": 0, "seed": ctx.options.seed},
            data.train_x[:n],
            reference,
            extractor,
            "real",
        )
    ]
    noise = source_noise(n, data.image_shape, ctx.options.seed, ctx.device)
    labels = balanced_labels(n, data.num_classes, ctx.device)
    for spec in SAMPLERS:
        samples, nfe = spec.generator(model).sample(noise, labels)
        row = {"method": "fm", "sampler": spec.label, "nfe": nfe, "seed": ctx.options.seed}
        rows.append(evaluate_row(ctx.workspace, row, samples, reference, extractor, f"fm-{spec.method}-{spec.steps}"))

    name = extractor.name
    columns = [("method", "method"), ("sampler", "sampler"), ("nfe", "NFE")] + [
        (key, metric_label(key, name)) for key in ("fd", "kid", "is", "sfid", "precision", "recall")
    ]
    title = (
        f"Flow matching on `{data.name}` ({data.train_x.shape[0]} training images), {n} samples per row, "
        f"scored against the {data.test_x.shape[0]} held-out test images with `{name}`"
    )
    metrics = {
        "recipe": "flow",
        "dataset": data.name,
        "extractor": name,
        "extractor_test_accuracy": getattr(extractor, "test_accuracy", None),
        "rows": rows,
    }
    return RunResult(metrics, f"## {title}\n\n" + markdown_table(rows, columns))


RECIPE = Recipe("flow", "train a flow-matching UNet on real images, sample at several NFE, score FD/KID/IS", run,
                reads=frozenset({"inception", "data_root"}))
