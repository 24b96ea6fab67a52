"""``defar-ablation``: DEFAR's ablation tables, each a list of loss configurations trained at one budget.

Tables (``--select`` takes a comma-separated subset of the names, or their ``tableN`` prefixes, e.g.
``--select table6,table9``; default all):

- ``table4-nfe``: fm and DEFAR sampled with Euler at 5, 10, 20 and 50 NFE (robustness to NFE, Table 4 right).
- ``table5-interpolants``: fm and DEFAR on the Linear, GVP and SBDM-VP interpolants, each sampled by the
  probability-flow ODE (Euler) and by the SDE (Euler–Maruyama, :math:`D = \\sigma`) at 50 NFE.
- ``table6-normalisation``: ADR comparing normalised directions (default) or the raw vectors, and ADR summed over a
  sample's elements instead of averaged (``adr_reduction=sum``: the scale of this project's tables before the fix,
  D times stronger).
- ``table7-weight-sources``: the FC weight from the exposure bias (default), the low-pass, high-pass or plain
  image, or the noise.
- ``table8-strengths``: λ_ADR ∈ {1, 5, 10, 20}, γ ∈ {0.5, 1, 2}, β_FC ∈ {0.5, 1, 2}, one at a time around
  the defaults (10, 1, 1).
- ``table9-multistep``: ADR after 1, 2 or 3 simulated steps, with ``"random"`` or ``"equal"`` timesteps (the
  paper's: a random time within each of n equal parts), and 2 equal steps with the gradient through the simulated
  state (``grad_through_simulation``).

- ``fc-variants`` (``--select fc``; not run by default): the FC variants of issue 28 (build item 3), chosen on a
  validation split (``--data mnist5k-val``, never the test split) in the **fine-tuning setting**: an ``fm``
  network trained at the ``defar`` recipe's budget (:func:`~bfr_fast.pipelines.comparison.defar_budget`; mnist5k:
  4000 steps, EMA at most 0.995, raw weights scored too) is continued for the budget's fine-tuning steps (mnist5k:
  1000) with each loss, from its full trainer state, so with the same batches (:func:`fc_variants`). Rows:
  ``fm-start`` (the start, not fine-tuned), ``finetune-fm`` (the baseline), ``finetune-defar`` (today's weight),
  ``finetune-defar.bias_lowpass_cutoff=0.5`` (δ low-passed before |·|), ``finetune-defar.fc_until=0.57`` (the
  weight switched off past the time where δ stops being low-frequency dominant, :data:`FC_UNTIL_MNIST5K`),
  ``finetune-defar.gamma=`` 0.25, 0.5 and 2 (γ 1 is today's), and ``finetune-defar_no_adr`` (FC alone). Each
  scored at 10 and 50 NFE, with its FD's ratio to ``finetune-fm``'s (same seed, same NFE). One training seed
  unless ``--seeds``.

  Cost per training step, model calls (with gradient) and compute in forward-pass units (a backward = two
  forwards): ``finetune-fm`` 1 (1) = 3; every ``finetune-defar*`` row 3 (2) = 7 (the low-pass adds two FFTs of
  the batch, the switch-off nothing: δ is computed for the whole batch); ``finetune-defar_no_adr`` 3 (1) = 5.
  On mnist5k at batch 64 on the 2-core CPU (fm 0.30 s/step, defar 0.80 s/step measured; FC alone scaled by
  5/7, about 0.57 s/step): the start 4000 × 0.30 s = 20 min, the fine-tunings 1000 × (0.30 + 6 × 0.80 + 0.57) s
  = 95 min, and sampling and scoring 9 networks, EMA and raw weights, 120 NFE per network on 1000 samples (the
  curve measured 2.2 min per 70 NFE with features, ``docs/results/defar-mnist5k-curve``), about 34 min, plus the
  ``mnist5k-valnet`` classifier trained once (cached): about 2.5 hours in all, 2.2 with the start's checkpoint
  reused. The start's checkpoint is ``checkpoints/fm-start-seed<k>.pt`` (not ``fm``: the
  tables train their own ``fm`` at the ablation budget): copy an ``fm-seed<k>.pt`` of ``--recipe defar`` on the
  same data (the same budget and training) there and pass ``--resume``; only a network trained on the
  validation split's training images, never one of ``mnist5k`` (it has seen the validation images). A stopped
  run continues with ``--resume`` (finished networks load; a training continues from its last checkpoint, saved
  every fifth of its steps and on SIGTERM; networks already scored keep their rows, ``scored/`` of the run
  folder, :func:`~bfr_fast.pipelines.comparison.run_variants`), so it runs in parts of any length.

Every table also has the ``fm`` row as its reference; the ``defar`` row is DEFAR's defaults (the corrected loss of
:mod:`bfr_fast.losses.defar`). Every loss uses the ``defar`` recipe's coupling (independent, as the paper's tables).
A configuration that appears in several tables (fm, defar) is trained once per seed and its rows are shared. Variant
names say what differs from the defaults (``defar.lambda_adr=5``); they are also the checkpoint stems, so
``--resume`` picks up finished trainings across tables and across ``--select`` runs in the same ``--out``.

**The default budget is small**: on digits 300 steps per network, one training seed, 500 samples per row — enough
to see large effects only; differences below the seed spread of the ``defar`` recipe (``docs/results/defar-digits.md``) are
noise. All six tables are 25 distinct trainings, each up to three forward passes per step; run them piecewise.
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial
from typing import Any

from bfr_fast.data import ImageDataset
from bfr_fast.losses import DEFARLoss, FlowMatchingLoss
from bfr_fast.metrics import metric_label
from bfr_fast.paths import GVPInterpolant, Interpolant, LinearPath, VPInterpolant
from bfr_fast.pipelines.comparison import (
    COUPLING,
    METHODS,
    ComparisonBudget,
    ComparisonSetup,
    DefarBudget,
    EvalSampler,
    LossVariant,
    defar_budget,
    run_variants,
)
from bfr_fast.pipelines.evaluation import Scorer
from bfr_fast.pipelines.presets import image_preset
from bfr_fast.pipelines.refinement import METRICS
from bfr_fast.report import markdown_table, summarize
from bfr_fast.train.recipes.base import Recipe, RunContext, RunResult
from bfr_fast.train.recipes.common import comparison_budget, load_data, scorer, select

TABLE_NFE = 10  # Euler NFE of the tables that do not vary the sampler
NFE_SWEEP = (5, 10, 20, 50)
INTERPOLANT_NFE = 50
INTERPOLANTS: dict[str, type[Interpolant]] = {"linear": LinearPath, "gvp": GVPInterpolant, "vp": VPInterpolant}

FC_PART = "fc-variants"
"""The FC-variant sweep's ``--select`` name (alias ``fc``): not a table of the paper, and not run by default."""
FC_NFES = (10, 50)
FC_START = "fm-start"
"""Name (and checkpoint stem) of the ``fm`` network the FC variants continue."""
FC_LOWPASS_CUTOFF = 0.5
"""Radius (of Nyquist) of the low-pass applied to δ before |·|: the cutoff at which mnist5k's spectra show δ
low-frequency dominant (at 0.25 the pattern fades, ``docs/results/defar-spectra-mnist5k``)."""
FC_GAMMAS = (0.25, 0.5, 2.0)
"""γ besides today's 1."""
FC_UNTIL_MNIST5K = 0.57
"""The switch-off time of the FC weight (``DEFARLoss(fc_until=...)``): where the exposure bias stops being
low-frequency dominant on mnist5k, measured, not guessed.

From ``docs/results/defar-spectra-mnist5k/metrics.json`` (the 4000-step fm network of the curve, EMA weights; 500
held-out images, 50 times t = 0.01, 0.03, ..., 0.99; δ after one Euler step of 1/50 ending at t): at cutoff 0.5
of Nyquist, the target's PFR is 1.263 at every t, and δ's PFR, above it from t = 0.01 on (3.05; peak 10.2 at
t = 0.19-0.25), is 1.411 at t = 0.55 and 1.247 at t = 0.57, the first time below the target's and below it at
every later time (0.22 at t = 0.89). Linear interpolation puts the crossing at
0.55 + 0.02 · (1.411 − 1.263) / (1.411 − 1.247) = 0.568, rounded to 0.57. (δ's PFR falls below 1, the
other reading of "low-frequency dominant", at t = 0.61: 0.993. At cutoff 0.25, where the premise fades, δ's PFR
never reaches 1 and lies above the target's 0.735 only for t = 0.11-0.27, peak 0.92; the same rule would give
0.28 there.) The measurement used the network trained on all of mnist5k's training images, run on 500 of its
test images; the sweep runs on the validation split, with a network trained on fewer images."""


def ablation_budget(image_shape: tuple[int, int, int]) -> ComparisonBudget:
    """Small on 8x8 digits (300 steps, 1 seed, 500 samples); the preset's steps on larger images."""
    side = max(image_shape[1:])
    if side <= 16:
        return ComparisonBudget(steps=300, seeds=1, num_samples=500)
    preset = image_preset(image_shape)
    return ComparisonBudget(steps=preset.steps, seeds=1, num_samples=preset.num_samples)


def _defar(samplers: tuple[EvalSampler, ...], **settings: Any) -> LossVariant:
    """DEFAR with ``settings`` changed from its defaults, named after them (``defar`` for none)."""
    name = "defar" + "".join(f".{k}={v}" for k, v in settings.items())
    return LossVariant(name, partial(DEFARLoss, coupling=COUPLING, **settings), samplers, dict(settings))


def _fm(samplers: tuple[EvalSampler, ...]) -> LossVariant:
    return LossVariant("fm", partial(FlowMatchingLoss, coupling=COUPLING), samplers)


def _interpolant_variants() -> list[LossVariant]:
    out = []
    for path_name, path_cls in INTERPOLANTS.items():
        samplers = tuple(EvalSampler(INTERPOLANT_NFE, sde, path_cls()) for sde in (False, True))
        suffix = "" if path_name == "linear" else f".path={path_name}"
        settings = {"path": path_name}
        for name, loss in (("fm", FlowMatchingLoss), ("defar", DEFARLoss)):
            build = partial(loss, coupling=COUPLING, interpolant=path_cls())
            out.append(LossVariant(f"{name}{suffix}", build, samplers, settings))
    return out


def tables() -> dict[str, list[LossVariant]]:
    """Table name -> its variants (in row order)."""
    one = (EvalSampler(TABLE_NFE),)
    sweep = tuple(EvalSampler(nfe) for nfe in NFE_SWEEP)
    return {
        "table4-nfe": [_fm(sweep), _defar(sweep)],
        "table5-interpolants": _interpolant_variants(),
        "table6-normalisation": [_fm(one), _defar(one), _defar(one, adr_normalize=False),
                                 _defar(one, adr_reduction="sum")],
        "table7-weight-sources": [_fm(one), _defar(one)] + [
            _defar(one, weight_source=s) for s in ("lowpass_image", "highpass_image", "image", "noise")
        ],
        "table8-strengths": [_fm(one), _defar(one)]
        + [_defar(one, lambda_adr=v) for v in (1.0, 5.0, 20.0)]
        + [_defar(one, gamma=v) for v in (0.5, 2.0)]
        + [_defar(one, beta_fc=v) for v in (0.5, 2.0)],
        "table9-multistep": [_fm(one), _defar(one)]
        + [
            _defar(one, steps=n, timesteps=s)
            for n in (1, 2, 3)
            for s in ("random", "equal")
            if (n, s) != (1, "random")
        ]
        + [_defar(one, steps=2, timesteps="equal", grad_through_simulation=True)],
    }


def fc_budget(image_shape: tuple[int, int, int]) -> DefarBudget:
    """The FC sweep's budget: the ``defar`` recipe's (its start network and fine-tuning length), one seed."""
    return replace(defar_budget(image_shape), seeds=1)


def fc_variants(extra_steps: int) -> list[LossVariant]:
    """The FC sweep's fine-tunings of :data:`FC_START` for ``extra_steps`` (module docstring), named
    ``finetune-<variant>``, each with a ``change`` row field saying what it changes."""
    samplers = tuple(EvalSampler(nfe) for nfe in FC_NFES)

    def finetune(variant: LossVariant, change: str) -> LossVariant:
        return replace(variant, name=f"finetune-{variant.name}", settings={**variant.settings, "change": change},
                       start_from=FC_START, extra_steps=extra_steps)

    return [
        finetune(_fm(samplers), "flow matching (the baseline)"),
        finetune(_defar(samplers), "DEFAR's defaults: today's FC weight, γ 1"),
        finetune(_defar(samplers, bias_lowpass_cutoff=FC_LOWPASS_CUTOFF),
                 f"δ low-passed at {FC_LOWPASS_CUTOFF:g} of Nyquist before |·|"),
        finetune(_defar(samplers, fc_until=FC_UNTIL_MNIST5K), f"FC weight for t_s ≤ {FC_UNTIL_MNIST5K:g} only"),
        *(finetune(_defar(samplers, gamma=gamma), f"γ {gamma:g}") for gamma in FC_GAMMAS),
        finetune(LossVariant("defar_no_adr", METHODS["defar_no_adr"], samplers), "FC alone (no ADR), γ 1"),
    ]


def with_fd_ratios(rows: list[dict[str, Any]], baseline: str = "finetune-fm") -> list[dict[str, Any]]:
    """``rows`` with ``fd_ratio`` (and ``raw_fd_ratio`` where both have raw scores): the row's FD over
    ``baseline``'s of the same seed and NFE."""
    base = {(r["seed"], r["nfe"]): r for r in rows if r["method"] == baseline}
    out = []
    for row in rows:
        ref = base.get((row["seed"], row["nfe"]))
        extra: dict[str, Any] = {}
        if ref is not None:
            extra["fd_ratio"] = row["fd"] / ref["fd"]
            if "raw_fd" in row and "raw_fd" in ref:
                extra["raw_fd_ratio"] = row["raw_fd"] / ref["raw_fd"]
        out.append({**row, **extra})
    return out


def run_fc_variants(ctx: RunContext, data: ImageDataset, scores: Scorer | None) -> dict[str, Any] | None:
    """Trains (or loads) :data:`FC_START` and its fine-tunings, and scores them (module docstring).

    Returns:
        On the main process: ``{"start_steps", "finetune_steps", "seeds", "num_samples", "eval_noise_seed",
        "fc_until", "rows"}`` (the rows long, one per network, seed and NFE, with ``fd_ratio``), ``None`` elsewhere.
    """
    budget = fc_budget(data.image_shape)
    setup = ComparisonSetup.create(ctx.workspace, data, comparison_budget(ctx, budget), scores, budget.optimiser)
    extra_steps = budget.finetune_length(ctx.options.steps)
    start = LossVariant(FC_START, METHODS["fm"], tuple(EvalSampler(nfe) for nfe in FC_NFES),
                        {"change": "the start: fm, not fine-tuned"})
    rows = run_variants(ctx.workspace, setup, [start], extra={"table": FC_PART, "stage": "start"})
    rows += run_variants(ctx.workspace, setup, fc_variants(extra_steps),
                         extra={"table": FC_PART, "stage": "finetune", "start_steps": setup.steps})
    if setup.scorer is None:
        return None
    return {"start_steps": setup.steps, "finetune_steps": extra_steps, "seeds": list(setup.seeds),
            "num_samples": setup.num_samples, "eval_noise_seed": setup.eval_seed, "fc_until": FC_UNTIL_MNIST5K,
            "rows": with_fd_ratios(rows)}


def fc_section(sweep: dict[str, Any], data: ImageDataset, extractor: str) -> str:
    """The FC sweep's results: one line per network (mean ± std over seeds when several), FD at each NFE of
    :data:`FC_NFES` and its ratio to ``finetune-fm``'s."""
    wide: dict[tuple[str, int], dict[str, Any]] = {}
    for r in sweep["rows"]:
        line = wide.setdefault((r["method"], r["seed"]), {
            "method": r["method"], "change": r.get("change"),
            "passes": f"{r['forward_passes']} ({r['forward_passes_with_grad']})", "steps": r["train_steps"]})
        for key in ("fd", "fd_ratio", "raw_fd", "raw_fd_ratio"):
            if key in r:
                line[f"{key}_nfe{r['nfe']}"] = r[key]
    fd = metric_label("fd", extractor)
    metrics = [f"{k}_nfe{n}" for n in FC_NFES for k in ("fd", "fd_ratio", "raw_fd_ratio")]
    columns = [("method", "variant"), ("change", "what it changes"), ("passes", "calls/step (grad)"),
               ("steps", "steps"), ("seeds", "seeds")]
    for n in FC_NFES:
        columns += [(f"fd_nfe{n}", f"{fd} {n} NFE"), (f"fd_ratio_nfe{n}", "÷ finetune-fm"),
                    (f"raw_fd_ratio_nfe{n}", "raw weights ÷")]
    summary = summarize(list(wide.values()), ("method", "change", "passes", "steps"), metrics)
    caution = "" if data.name.endswith("-val") else (
        f" **`{data.name}` is not a validation split: choose no default from this table** (run it on "
        f"`{data.name}-val`).")
    return (
        f"## FC variants, fine-tuning on `{data.name}`\n\n"
        f"fm trained {sweep['start_steps']} steps, then {sweep['finetune_steps']} more steps with each loss from its "
        f"full trainer state (same batches); training seeds {sweep['seeds']}; Euler, {sweep['num_samples']} samples "
        f"per row from one fixed noise set, scored against the {data.test_x.shape[0]} held-out images of "
        f"`{data.name}` with `{extractor}`. Ratios: FD over finetune-fm's, same seed and NFE (< 1: better than "
        f"plain fine-tuning).{caution}\n\n" + markdown_table(summary, columns)
    )


def run(ctx: RunContext) -> RunResult:
    data = load_data(ctx)
    available = tables()
    parts = [*available, FC_PART]
    chosen = (select(ctx, parts, {name.split("-")[0]: name for name in parts}) if ctx.options.select is not None
              else list(available))
    scores = scorer(ctx, data)
    rows: list[dict[str, Any]] = []
    chosen_tables = [table for table in chosen if table in available]
    setup = None
    if chosen_tables:
        setup = ComparisonSetup.create(ctx.workspace, data,
                                       comparison_budget(ctx, ablation_budget(data.image_shape)), scores)
        for table in chosen_tables:
            rows.extend(run_variants(ctx.workspace, setup, available[table], extra={"table": table}))
    sweep = run_fc_variants(ctx, data, scores) if FC_PART in chosen else None
    if scores is None:  # every rank trains; the main process alone evaluates and writes
        return RunResult({}, "")

    name = scores.extractor.name
    metrics: dict[str, Any] = {"recipe": "defar-ablation", "dataset": data.name, "extractor": name,
                               "tables": chosen}
    sections = []
    if setup is not None:
        steps, seeds, n = setup.steps, list(setup.seeds), setup.num_samples
        columns = [("method", "variant"), ("seed", "train seed"), ("sampler", "sampler"), ("nfe", "NFE"),
                   ("forward_passes", "passes/step")] + [(k, metric_label(k, name)) for k in METRICS]
        sections.append(
            f"## DEFAR ablations on `{data.name}`: {steps} training steps per network, training seeds {seeds}, "
            f"{n} samples per row from one fixed noise set, scored against the {data.test_x.shape[0]} held-out "
            f"test images with `{name}`. A small budget: only differences well beyond the seed spread of the "
            "`defar` recipe mean anything."
        )
        for table in chosen_tables:
            sections.append(f"### {table}\n\n" + markdown_table([r for r in rows if r["table"] == table], columns))
        metrics.update(train_steps=steps, seeds=seeds, num_samples=n, eval_noise_seed=setup.eval_seed)
    if sweep is not None:
        sections.append(fc_section(sweep, data, name))
        rows += sweep.pop("rows")
        metrics["fc_variants"] = sweep
    metrics["rows"] = rows
    return RunResult(metrics, "\n\n".join(sections) + "\n")


RECIPE = Recipe("defar-ablation", "DEFAR Tables 4 (NFE), 5 (interpolants, ODE/SDE), 6-9 (ADR/FC ablations), and "
                "the FC variants fine-tuning a converged fm (--select fc, on --data mnist5k-val); --select tables",
                run, reads=frozenset({"select", "seeds", "inception", "data_root"}))
