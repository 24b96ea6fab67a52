"""``defar``: DEFAR's Table 1/2 comparison at equal training steps, over several training seeds.

Seven losses train the same class-conditional UNet (the preset of the data's image size) with the same steps,
batches and seed (:mod:`~bfr_fast.train.recipes.loss_comparison`): plain flow matching ``fm``, input perturbation
``ip`` (0.1), scheduled sampling ``sdss`` (one simulated step) and ``mdss`` (four), and DEFAR without FC
(``defar_no_fc``: ADR + plain FM), without ADR (``defar_no_adr``: FC-weighted FM) and full ``defar`` (λ_ADR = 10,
β_FC = 1, γ = 1, exposure-bias weight), all OT-coupled with 10% label dropout. Each is sampled with Euler at 10 and
50 NFE from one fixed set of noise and balanced labels and scored (FD/KID/IS/sFID/precision/recall in the
extractor's feature space) against the held-out test split. ``--seeds`` training seeds (``--seed``, ``--seed`` + 1,
...) repeat every training; ``results.md`` gives mean ± std over them, the per-row values, and each method's FD
difference to ``fm`` paired by seed. ``--select`` runs a subset of the methods.

Cost per training step (forward passes, with gradient): fm 1 (1), ip 1 (1), sdss 2 (1), mdss 5 (1),
defar_no_fc 2 (2), defar_no_adr 3 (1), defar 3 (2): at equal steps, DEFAR spends about 2.3 times FM's compute.

Budget on ``digits`` (8x8, 1438 training images): see :func:`defar_budget`; the measured wall time of the
reported run is in ``docs/results/defar-digits/README-section.md``. On ``mnist5k`` the 28x28 preset's 4000 steps
per training make 21 trainings a GPU job; ``--steps``, ``--seeds`` and ``--select`` shrink it (the README's
``--steps 500 --seeds 1 --select fm,defar --num-samples 500`` took 21:42 on an idle 2-core CPU).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from functools import partial
from typing import Any

from bfr_fast.losses import DEFARLoss, FlowMatchingLoss, InputPerturbationLoss, PathLoss, ScheduledSamplingLoss
from bfr_fast.metrics import metric_label
from bfr_fast.report import markdown_table, tables
from bfr_fast.train.recipes.base import Recipe, RunContext, RunResult
from bfr_fast.train.recipes.bfr import METRICS
from bfr_fast.train.recipes.common import evaluate_row, load_data, select
from bfr_fast.train.recipes.loss_comparison import (
    ComparisonBudget,
    ComparisonSetup,
    EvalSampler,
    LossVariant,
    run_variants,
)
from bfr_fast.train.recipes.presets import image_preset

NFES = (10, 50)
METHODS: dict[str, Callable[..., PathLoss]] = {
    "fm": partial(FlowMatchingLoss, coupling="ot"),
    "ip": partial(InputPerturbationLoss, perturbation=0.1),
    "sdss": partial(ScheduledSamplingLoss, steps=1),
    "mdss": partial(ScheduledSamplingLoss, steps=4),
    "defar_no_fc": partial(DEFARLoss, fc=False),
    "defar_no_adr": partial(DEFARLoss, adr=False),
    "defar": DEFARLoss,
}
"""Method name -> ``build(label_dropout=..., null_class=...)`` of its loss (DEFARLoss defaults: DESIGN.md §5)."""


def defar_budget(image_shape: tuple[int, int, int]) -> ComparisonBudget:
    """The budget for images of ``(C, H, W)``.

    On 8x8 digits: 21 trainings of 200 steps (batch 128) and 42 rows of 500 samples, sized from the measured cost
    of a training step on 2 threads (fm 0.14 s, ip 0.13, sdss 0.18, mdss 0.30, defar_no_fc 0.26, defar_no_adr
    0.22, defar 0.31) and of sampling (3.3 s per 1000 samples and 10 NFE) to take about half an hour on an idle
    2-core CPU: the reported run took 27:40. Larger images take the preset's steps and samples (a GPU job).
    """
    side = max(image_shape[1:])
    if side <= 16:
        return ComparisonBudget(steps=200, seeds=3, num_samples=500)
    preset = image_preset(image_shape)
    return ComparisonBudget(steps=preset.steps, seeds=3, num_samples=preset.num_samples)


def variants(methods: list[str]) -> list[LossVariant]:
    """The named methods as variants, each sampled with Euler at every NFE of :data:`NFES`."""
    samplers = tuple(EvalSampler(nfe) for nfe in NFES)
    return [LossVariant(name, METHODS[name], samplers) for name in methods]


def paired_fd_differences(rows: list[dict[str, Any]], baseline: str = "fm") -> list[dict[str, Any]]:
    """Per method and NFE: FD(method) - FD(baseline) for each training seed (same init, same batches), mean ± std.

    Pairing by seed removes the part of the spread that the seed gives every method alike.
    """
    base = {(r["seed"], r["nfe"]): r["fd"] for r in rows if r["method"] == baseline}
    groups: dict[tuple[str, int], list[float]] = {}
    for r in rows:
        if r["method"] != baseline and (r["seed"], r["nfe"]) in base:
            groups.setdefault((r["method"], r["nfe"]), []).append(r["fd"] - base[(r["seed"], r["nfe"])])
    out = []
    for (method, nfe), diffs in groups.items():
        mean = statistics.fmean(diffs)
        spread = f" ± {statistics.stdev(diffs):.2g}" if len(diffs) > 1 else ""
        out.append({"method": method, "nfe": nfe, "seeds": len(diffs), "fd_minus_fm": f"{mean:.4g}{spread}",
                    "better_seeds": sum(d < 0 for d in diffs)})
    return out


def _by_nfe_then_method(row: dict[str, Any]) -> tuple[int, int]:
    return row["nfe"], list(METHODS).index(row["method"])


def run(ctx: RunContext) -> RunResult:
    data = load_data(ctx)
    setup = ComparisonSetup.create(ctx, data, defar_budget(data.image_shape))
    rows = run_variants(ctx, setup, variants(select(ctx, list(METHODS))))
    extractor, reference = setup.extractor, setup.reference
    if not ctx.dist.is_main or extractor is None or reference is None:
        return RunResult({}, "")
    steps, seeds, n = setup.steps, setup.seeds, setup.num_samples
    real = evaluate_row(ctx, {"method": "real", "seed": None}, data.train_x[:n], reference, extractor, "real")

    name = extractor.name
    keys = ("method", "forward_passes", "train_steps", "nfe")
    summary_columns = [("method", "method"), ("forward_passes", "passes/step"), ("train_steps", "steps"),
                       ("nfe", "NFE"), ("seeds", "seeds")] + [(k, metric_label(k, name)) for k in METRICS]
    row_columns = [("method", "method"), ("seed", "train seed"), ("nfe", "NFE"),
                   ("train_seconds", "train s")] + [(k, metric_label(k, name)) for k in METRICS]
    diff_columns = [("method", "method"), ("nfe", "NFE"), ("seeds", "seeds"),
                    ("fd_minus_fm", f"{metric_label('fd', name)} − fm's (same seed)"),
                    ("better_seeds", "seeds better than fm")]
    title = (
        f"DEFAR and its baselines on `{data.name}` ({data.train_x.shape[0]} training images) at equal training "
        f"steps ({steps} per network, batch {ctx.options.batch_size or image_preset(data.image_shape).batch_size}); "
        f"Euler sampling, {n} samples per row from one fixed noise set, scored against the "
        f"{data.test_x.shape[0]} held-out test images with `{name}`; mean ± std over {len(seeds)} training seeds"
    )
    floor = (
        f"The floor of these metrics on this data: {min(n, data.train_x.shape[0])} real training images score "
        + ", ".join(f"{metric_label(k, name)} {real[k]:.4g}" for k in ("fd", "kid", "is")) + "."
    )
    summary = sorted(tables.summarize(rows, keys, METRICS), key=_by_nfe_then_method)
    sections = [
        f"## {title}\n\n" + markdown_table(summary, summary_columns),
        floor,
        "### FD difference to fm, paired by training seed\n\n" + markdown_table(paired_fd_differences(rows),
                                                                               diff_columns),
        "### Every row\n\n" + markdown_table(rows, row_columns),
    ]
    metrics = {
        "recipe": "defar",
        "dataset": data.name,
        "extractor": name,
        "extractor_test_accuracy": getattr(extractor, "test_accuracy", None),
        "train_steps": steps,
        "seeds": list(seeds),
        "num_samples": n,
        "eval_noise_seed": setup.eval_seed,
        "real": real,
        "rows": rows,
    }
    return RunResult(metrics, "\n\n".join(sections) + "\n")


RECIPE = Recipe("defar", "DEFAR Table 1/2: fm, ip, sdss, mdss, DEFAR w/o FC or ADR, DEFAR at equal steps; "
                "10/50 NFE; --seeds", run)
