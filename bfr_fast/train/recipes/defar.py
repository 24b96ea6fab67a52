"""``defar``: DEFAR's Table 1/2 comparison over several training seeds, its convergence curve and its fine-tuning
test.

Parts, chosen with ``--select`` (comma-separated; default :data:`DEFAULT_METHODS`, ``fm`` and ``defar``, which also
runs ``fm`` at equal compute):

- **Methods** (from scratch at equal steps): seven losses train the same class-conditional UNet (the preset of the
  data's image size) with the same steps, batches and seed (:mod:`~bfr_fast.pipelines.comparison`):
  plain flow matching ``fm``, input perturbation ``ip`` (0.1), scheduled sampling ``sdss`` (one simulated step)
  and ``mdss`` (one real step and three analytical ones, as the DEFAR paper ran it), and DEFAR without FC
  (``defar_no_fc``: ADR + plain FM), without ADR (``defar_no_adr``: FC-weighted FM) and full ``defar``
  (λ_ADR = 10, β_FC = 1, γ = 1, exposure-bias weight). Every loss uses **independent coupling**, as the paper's main
  tables (SiT), and DEFAR the corrected loss (:mod:`bfr_fast.losses.defar`'s default variant: ADR as a per-element
  mean, FC weight of mean 1, no gradient through x̂), all with 10% label dropout.
- ``curve``: ``fm`` trained once (seed ``--seed``), its FD measured every ``curve_every`` steps up to
  ``curve_steps`` (:class:`DefarBudget`), for the EMA weights at :data:`CURVE_NFE` and :data:`CURVE_EXTRA_NFES` NFE
  and the raw weights at :data:`CURVE_NFE`; written to ``curve-fm.json`` (after every point) and ``curve-fm.png``.
  It finds the budget at which FM has converged. A stopped curve continues with ``--resume`` (the recorded points
  kept, training from its checkpoint; :func:`run_curve`). The EMA's decay is that of a ``curve_steps`` run, so early
  EMA points lag behind a run of that length; the raw column does not.
- ``finetune``: from each seed's ``fm`` network at the comparison's steps (trained here, or shared with the methods'
  ``fm``), ``finetune_steps`` more steps with ``fm`` and with ``defar`` (:data:`FINETUNE_METHODS`), both from the
  full trainer state, so with the same batches; rows ``finetune-fm`` and ``finetune-defar``. The paper's claim is
  about the exposure bias of a well-trained model: this tests it where FM has converged.
- ``finetune-ablation``: the fine-tuning with DEFAR's two terms apart as well (:data:`FINETUNE_ABLATIONS`,
  ``defar_no_fc`` and ``defar_no_adr``): which term moves a converged network, at a fraction of the from-scratch
  ablation's cost.
- ``paper-optim``: not a part but a switch: every training of the run uses the paper's optimiser (Adam, constant
  lr 1e-4, clipping at 0.2; :mod:`~bfr_fast.pipelines.comparison`) instead of the preset's AdamW;
  checkpoints get a ``-paper-optim`` suffix.

Every network is sampled with Euler at each NFE of :data:`NFES` from one fixed set of noise and balanced labels and
scored (FD/KD/IS/sFD/precision/recall in the extractor's feature space) against the held-out test split.
``--seeds`` training seeds (``--seed``, ``--seed`` + 1, ...) repeat every training; ``results.md`` gives
mean ± std over them, the per-row values, and each method's FD difference to ``fm`` paired by seed (for the
fine-tuning, ``finetune-defar``'s to ``finetune-fm``'s). Rows of ``metrics.json`` carry ``method``, ``variant``
(the loss's settings: coupling, ADR form and reduction, FC normalisation, simulation), ``optimiser``, ``stage``
(``scratch`` or ``finetune``), ``seed``, ``nfe``, ``train_steps`` and the metrics.

Cost per training step (forward passes, with gradient): fm 1 (1), ip 1 (1), sdss 2 (1), mdss 2 (1),
defar_no_fc 2 (2), defar_no_adr 3 (1), defar 3 (2): at equal steps, DEFAR spends about 2.3 times FM's compute.

``--steps S`` replaces the comparison's steps and rescales the other stages by ``S / steps``: the curve keeps its
number of points, the fine-tuning its share of the base's steps. Results of the recipe before the loss fix (OT
coupling, ADR summed over elements, FC weight of mean 2, four real MDSS steps, 10/50 NFE) are in
``docs/results/defar-digits`` and ``docs/results/defar-mnist5k`` (``CHANGES.md`` there).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import replace
from typing import Any

from bfr_fast.metrics import evaluate_images, metric_label
from bfr_fast.pipelines.comparison import (
    COUPLING,
    METHODS,
    ComparisonSetup,
    DefarBudget,
    EvalSampler,
    LossVariant,
    defar_budget,
    describe,
    run_variants,
)
from bfr_fast.pipelines.evaluation import evaluate_row
from bfr_fast.pipelines.presets import image_preset
from bfr_fast.pipelines.refinement import METRICS
from bfr_fast.pipelines.training import label_dropout, train_flow
from bfr_fast.report import markdown_table, plot_training_curve, tables
from bfr_fast.train.recipes.base import Recipe, RunContext, RunResult
from bfr_fast.train.recipes.common import comparison_budget, load_data, scorer, select

log = logging.getLogger("bfr_fast")

NFES = (5, 10, 50)
CURVE_NFE = 10
"""The curve's main NFE: its EMA and raw weights are scored there."""
CURVE_EXTRA_NFES = (50,)
"""Further NFEs at which the curve scores the EMA weights (not the raw ones: each costs a sampling per point)."""
DEFAULT_METHODS = ("fm", "defar")
"""What the recipe runs without ``--select`` (with ``fm_equal_compute``, which any selection of both adds): DEFAR
against FM at equal steps and at equal compute over three seeds, the comparison that must fit in 45 minutes on a
2-core CPU. ``ip``, ``sdss``, ``mdss``, the two DEFAR ablations, ``finetune`` and ``curve`` are selectable (with
``ip`` and ``finetune`` the run takes about a third longer)."""

FINETUNE_METHODS = ("fm", "defar")
FINETUNE_ABLATIONS = ("defar_no_fc", "defar_no_adr")
STAGES = ("curve", "finetune", "finetune-ablation")
PAPER_OPTIM = "paper-optim"


def variants(methods: list[str], **fields: Any) -> list[LossVariant]:
    """The named methods as variants, each sampled with Euler at every NFE of :data:`NFES`; ``fields`` go to every
    :class:`LossVariant`."""
    samplers = tuple(EvalSampler(nfe) for nfe in NFES)
    return [LossVariant(name, METHODS[name], samplers, **fields) for name in methods]


EQUAL_COMPUTE = "fm_equal_compute"


def equal_compute_variant(steps: int) -> LossVariant:
    """``fm`` continued until it has spent what ``defar`` spends in ``steps`` steps, named :data:`EQUAL_COMPUTE`.

    Compute is counted in forward-pass units (:attr:`~bfr_fast.losses.path_loss.ForwardPasses.compute`: a
    backward costs two forwards), so the continuation is ``steps * (7 / 3 - 1)`` more steps with the default
    DEFAR; measured wall times per step agree (the ``train_seconds`` of the rows).
    """
    ratio = (METHODS["defar"](label_dropout=0.0).forward_passes.compute
             / METHODS["fm"](label_dropout=0.0).forward_passes.compute)
    return LossVariant(EQUAL_COMPUTE, METHODS["fm"], tuple(EvalSampler(nfe) for nfe in NFES), start_from="fm",
                       extra_steps=max(round(steps * (ratio - 1)), 1))


def finetune_variants(extra_steps: int, ablation: bool = False) -> list[LossVariant]:
    """:data:`FINETUNE_METHODS` (and with ``ablation`` :data:`FINETUNE_ABLATIONS`) continuing ``fm``'s network for
    ``extra_steps``, named ``finetune-<method>``."""
    methods = [*FINETUNE_METHODS, *(FINETUNE_ABLATIONS if ablation else ())]
    return [replace(v, name=f"finetune-{v.name}") for v in
            variants(methods, start_from="fm", extra_steps=extra_steps)]


def parts(ctx: RunContext) -> list[str]:
    """The methods and stages to run (and :data:`PAPER_OPTIM` when asked): ``--select``'s, or
    :data:`DEFAULT_METHODS`; a selection of :data:`PAPER_OPTIM` alone runs those defaults under the paper's
    optimiser."""
    default = list(DEFAULT_METHODS)
    if ctx.options.select is None:
        return default
    chosen = select(ctx, [*METHODS, *STAGES, PAPER_OPTIM])
    return [*default, PAPER_OPTIM] if chosen == [PAPER_OPTIM] else chosen


def paired_fd_differences(rows: list[dict[str, Any]], baseline: str = "fm") -> list[dict[str, Any]]:
    """Per method and NFE: FD(method) - FD(baseline) and FD(method) / FD(baseline) for each training seed (same
    init, same batches), mean ± std over seeds; the ratio of the raw weights' FDs too where the rows have them.

    Pairing by seed removes the part of the spread that the seed gives every method alike.
    """
    base = {(r["seed"], r["nfe"]): r for r in rows if r["method"] == baseline}
    groups: dict[tuple[str, int], list[tuple[dict[str, Any], dict[str, Any]]]] = {}
    for r in rows:
        if r["method"] != baseline and (r["seed"], r["nfe"]) in base:
            groups.setdefault((r["method"], r["nfe"]), []).append((r, base[(r["seed"], r["nfe"])]))

    out = []
    for (method, nfe), pairs in groups.items():
        diffs = [r["fd"] - b["fd"] for r, b in pairs]
        entry = {"method": method, "nfe": nfe, "seeds": len(pairs),
                 "fd_minus_baseline": tables.mean_std(diffs, ".4g", ".2g"),
                 "fd_ratio": tables.mean_std([r["fd"] / b["fd"] for r, b in pairs], ".4g", ".2g"),
                 "better_seeds": sum(d < 0 for d in diffs)}
        if all("raw_fd" in r and "raw_fd" in b for r, b in pairs):
            entry["raw_fd_ratio"] = tables.mean_std([r["raw_fd"] / b["raw_fd"] for r, b in pairs], ".4g", ".2g")
        out.append(entry)
    return out


def _recorded_points(ctx: RunContext, curve: dict[str, Any]) -> list[dict[str, Any]]:
    """The points of an earlier part of this curve (``curve-fm.json``, written after every point), on ``--resume``;
    ``[]`` on a fresh run or when the file describes another curve (method, seed, samples, schedule)."""
    path = ctx.folder.root / "curve-fm.json"
    if not ctx.workspace.resume or not path.is_file():
        return []
    earlier = json.loads(path.read_text())
    same = all(earlier.get(key) == curve[key] for key in ("method", "seed", "nfe", "extra_nfes", "num_samples",
                                                           "schedule"))
    return earlier["points"] if same else []


def run_curve(ctx: RunContext, setup: ComparisonSetup, budget: DefarBudget) -> dict[str, Any] | None:
    """Trains ``fm`` to each step of the curve's schedule in turn (each leg continues the last one's checkpoint,
    exactly as one uninterrupted run) and scores its EMA weights at :data:`CURVE_NFE` and :data:`CURVE_EXTRA_NFES`
    NFE and its raw weights at :data:`CURVE_NFE`.

    ``curve-fm.json`` is rewritten after every point, so a long curve runs in parts: stop it (Ctrl-C or SIGTERM;
    the trainer saves its checkpoint) and run the same command with ``--resume``, which keeps the recorded points
    and continues from the checkpoint, the same weights as one uninterrupted run.

    Returns:
        ``{"method", "variant", "optimiser", "seed", "nfe", "extra_nfes", "num_samples", "schedule", "steps": [...],
        "points": [{"step", "train_seconds", "ema": metrics, "raw": metrics, "ema_nfe<n>": metrics}]}`` on the
        main process (``ema`` and ``raw`` at :data:`CURVE_NFE`); ``None`` elsewhere.
    """
    schedule = budget.curve_schedule(ctx.options.steps)
    seed, data = ctx.workspace.seed, setup.data
    fresh = replace(ctx.workspace, resume=False)  # each leg continues the last one through start_from
    name = setup.stem("curve-fm", seed)
    checkpoint = ctx.folder.checkpoint(name)
    config = setup.config(schedule[-1])
    curve: dict[str, Any] = {"method": "fm", "variant": describe(METHODS["fm"](label_dropout=0.0).settings),
                             "optimiser": setup.optimiser, "seed": seed, "nfe": CURVE_NFE,
                             "extra_nfes": list(CURVE_EXTRA_NFES), "num_samples": setup.num_samples,
                             "schedule": schedule}
    points = _recorded_points(ctx, curve)  # on every rank, so that all skip the same legs
    done = {p["step"] for p in points}
    seconds = points[-1]["train_seconds"] if points else 0.0
    samplers = {"ema": [EvalSampler(n) for n in (CURVE_NFE, *CURVE_EXTRA_NFES)], "raw": [EvalSampler(CURVE_NFE)]}
    for k, step in enumerate(schedule):
        if step in done:
            continue
        start = time.perf_counter()
        model, trainer, _ = train_flow(
            fresh, data, lambda m: METHODS["fm"](label_dropout=label_dropout(data), null_class=m.null_class),
            name, replace(config, steps=step), setup.budget.batch_size, seed=seed,
            start_from=checkpoint if (k > 0 or ctx.workspace.resume) and checkpoint.is_file() else None,
        )
        seconds += time.perf_counter() - start
        if setup.scorer is None:  # every rank trains; the main process alone evaluates
            continue
        point: dict[str, Any] = {"step": trainer.step, "train_seconds": round(seconds, 1)}
        for kind, network in (("ema", model), ("raw", trainer.model.eval())):
            for sampler in samplers[kind]:
                samples = sampler.sample(network, setup.noise, setup.labels, setup.eval_seed)
                scores = evaluate_images(samples, setup.scorer.reference, setup.scorer.extractor,
                                         kid_subset_size=min(1000, samples.shape[0]))
                key = kind if sampler.steps == CURVE_NFE else f"{kind}_nfe{sampler.steps}"
                point[key] = {metric: scores[metric] for metric in METRICS if metric in scores}
        points.append(point)
        log.info("curve fm step %d (%.0f s): FD ema %.4g (%d NFE), %s, raw %.4g", trainer.step, seconds,
                 point["ema"]["fd"], CURVE_NFE,
                 ", ".join(f"{point[f'ema_nfe{n}']['fd']:.4g} ({n} NFE)" for n in CURVE_EXTRA_NFES),
                 point["raw"]["fd"])
        curve.update(steps=[p["step"] for p in points], points=points)
        ctx.folder.write_json(ctx.folder.root / "curve-fm.json", curve)
    if not points or setup.scorer is None:  # on ranks other than the main one, points resumed from the file too
        return None
    curve.update(steps=[p["step"] for p in points], points=points)
    label = metric_label("fd", setup.scorer.extractor.name)
    series = {f"EMA, {CURVE_NFE} NFE": [p["ema"]["fd"] for p in points],
              **{f"EMA, {n} NFE": [p[f"ema_nfe{n}"]["fd"] for p in points] for n in CURVE_EXTRA_NFES},
              f"raw, {CURVE_NFE} NFE": [p["raw"]["fd"] for p in points]}
    plot_training_curve(curve["steps"], series, ctx.folder.root / "curve-fm.png", label,
                        f"fm on {data.name}, seed {seed}, {setup.num_samples} samples, Euler")
    return curve


def _by_nfe_then_method(row: dict[str, Any]) -> tuple[int, int]:
    order = [*METHODS, EQUAL_COMPUTE, *(f"finetune-{m}" for m in (*FINETUNE_METHODS, *FINETUNE_ABLATIONS))]
    return row["nfe"], order.index(row["method"])


def run(ctx: RunContext) -> RunResult:
    data = load_data(ctx)
    budget = defar_budget(data.image_shape)
    chosen = parts(ctx)
    setup = ComparisonSetup.create(ctx.workspace, data, comparison_budget(ctx, budget), scorer(ctx, data),
                                   "paper" if PAPER_OPTIM in chosen else budget.optimiser)
    ws = ctx.workspace
    methods = [p for p in chosen if p in METHODS]
    rows = run_variants(ws, setup, variants(methods), extra={"stage": "scratch"})
    equal_compute: list[dict[str, Any]] = []
    if "fm" in methods and "defar" in methods:
        equal_compute = run_variants(ws, setup, [equal_compute_variant(setup.steps)], extra={"stage": "scratch"})
    finetune: list[dict[str, Any]] = []
    if "finetune" in chosen or "finetune-ablation" in chosen:
        start = run_variants(ws, setup, variants(["fm"]), extra={"stage": "scratch"})
        rows += [] if "fm" in methods else start
        extra_steps = budget.finetune_length(ctx.options.steps)
        finetune = start + run_variants(ws, setup, finetune_variants(extra_steps, "finetune-ablation" in chosen),
                                        extra={"stage": "finetune", "start_steps": setup.steps})
    curve = run_curve(ctx, setup, budget) if "curve" in chosen else None
    if setup.scorer is None:  # every rank trains; the main process alone evaluates and writes
        return RunResult({}, "")
    extractor, reference = setup.scorer
    steps, seeds, n = setup.steps, setup.seeds, setup.num_samples
    real = evaluate_row(ws, {"method": "real", "seed": None}, data.train_x[:n], reference, extractor, "real")

    name = extractor.name
    keys = ("method", "forward_passes", "train_steps", "nfe")
    summary_columns = [("method", "method"), ("forward_passes", "passes/step"), ("train_steps", "steps"),
                       ("nfe", "NFE"), ("seeds", "seeds")] + [(k, metric_label(k, name)) for k in METRICS]
    row_columns = [("method", "method"), ("seed", "train seed"), ("nfe", "NFE"), ("train_steps", "steps"),
                   ("train_seconds", "train s")] + [(k, metric_label(k, name)) for k in METRICS]
    if setup.budget.score_raw:
        row_columns += [("raw_fd", f"{metric_label('fd', name)} raw weights"),
                        ("raw_kid", f"{metric_label('kid', name)} raw weights")]

    def diff_columns(baseline: str) -> list[tuple[str, str]]:
        return [("method", "method"), ("nfe", "NFE"), ("seeds", "seeds"),
                ("fd_minus_baseline", f"{metric_label('fd', name)} − {baseline}'s (same seed)"),
                ("fd_ratio", f"÷ {baseline}'s"), ("better_seeds", f"seeds better than {baseline}")] + (
                    [("raw_fd_ratio", f"raw weights: ÷ {baseline}'s")] if setup.budget.score_raw else [])

    batch = setup.budget.batch_size or image_preset(data.image_shape).batch_size
    optimiser = "the paper's optimiser (Adam, lr 1e-4, clip 0.2)" if setup.optimiser == "paper" else \
        "the preset's optimiser"
    sections = [
        f"# DEFAR and its baselines on `{data.name}` ({data.train_x.shape[0]} training images)\n\n"
        f"Euler sampling, {n} samples per row from one fixed noise set, scored against the {data.test_x.shape[0]} "
        f"held-out test images with `{name}`; batch {batch}, {optimiser}, {COUPLING} coupling; mean ± std over "
        f"{len(seeds)} training seeds. The floor of these metrics on this data: {min(n, data.train_x.shape[0])} real "
        "training images score " + ", ".join(f"{metric_label(k, name)} {real[k]:.4g}" for k in ("fd", "kid", "is"))
        + ". The loss variants of every method are in `metrics.json` (`variant`)."
    ]
    table = [r for r in rows if r["method"] in methods]
    if table:
        summary = sorted(tables.summarize(table, keys, METRICS), key=_by_nfe_then_method)
        sections += [
            f"## From scratch at equal training steps ({steps} per network)\n\n"
            + markdown_table(summary, summary_columns),
            "### FD difference to fm, paired by training seed\n\n"
            + markdown_table(paired_fd_differences(table), diff_columns("fm")),
        ]
    if equal_compute:
        pair = equal_compute + [r for r in table if r["method"] == "defar"]
        summary = sorted(tables.summarize(pair, keys, METRICS), key=_by_nfe_then_method)
        sections += [
            f"## From scratch at equal compute: defar's {steps} steps against fm's "
            f"{equal_compute[0]['train_steps']} (forward-pass units, a backward counted as two forwards)\n\n"
            + markdown_table(summary, summary_columns),
            f"### FD difference to {EQUAL_COMPUTE}, paired by training seed\n\n"
            + markdown_table(paired_fd_differences(pair, EQUAL_COMPUTE), diff_columns(EQUAL_COMPUTE)),
        ]
    if finetune:
        summary = sorted(tables.summarize(finetune, keys, METRICS), key=_by_nfe_then_method)
        sections += [
            f"## Fine-tuning: fm at {steps} steps, then {finetune[-1]['train_steps'] - steps} more steps with each "
            "loss (same start, same batches)\n\n" + markdown_table(summary, summary_columns),
            "### FD difference to finetune-fm, paired by training seed\n\n"
            + markdown_table(paired_fd_differences([r for r in finetune if r["stage"] == "finetune"], "finetune-fm"),
                             diff_columns("finetune-fm")),
        ]
    if curve is not None:
        scored = ["ema", *(f"ema_nfe{n}" for n in CURVE_EXTRA_NFES), "raw"]
        points = [{"step": p["step"], "train_seconds": p["train_seconds"],
                   **{f"{kind}_{k}": p[kind].get(k) for kind in scored for k in ("fd", "kid")}}
                  for p in curve["points"]]
        fd, kd = metric_label("fd", name), metric_label("kid", name)
        heads = {"ema": f"EMA {CURVE_NFE} NFE", **{f"ema_nfe{n}": f"EMA {n} NFE" for n in CURVE_EXTRA_NFES},
                 "raw": f"raw {CURVE_NFE} NFE"}
        sections.append(
            f"## Convergence of fm (seed {curve['seed']})\n\n![curve](curve-fm.png)\n\n"
            + markdown_table(points, [("step", "step"), ("train_seconds", "train s"),
                                      *((f"{kind}_fd", f"{fd} {heads[kind]}") for kind in scored),
                                      *((f"{kind}_kid", f"{kd} {heads[kind]}") for kind in scored)])
        )
    every_row = rows + equal_compute + [r for r in finetune if r["stage"] == "finetune"]
    sections.append("## Every row\n\n" + markdown_table(every_row, row_columns))
    metrics = {
        "recipe": "defar",
        "dataset": data.name,
        "extractor": name,
        "extractor_test_accuracy": getattr(extractor, "test_accuracy", None),
        "train_steps": steps,
        "seeds": list(seeds),
        "num_samples": n,
        "optimiser": setup.optimiser,
        "coupling": COUPLING,
        "parts": chosen,
        "eval_noise_seed": setup.eval_seed,
        "real": real,
        "rows": every_row,
        "curve": curve,
    }
    return RunResult(metrics, "\n\n".join(sections) + "\n")


RECIPE = Recipe("defar", "DEFAR Table 1/2 at equal steps (independent coupling, corrected loss), its fine-tuning "
                "from converged FM (with its terms apart), and FM's convergence curve; 5/10/50 NFE; --seeds, --select "
                "methods,curve,finetune,finetune-ablation",
                run, reads=frozenset({"select", "seeds", "inception", "data_root"}))
