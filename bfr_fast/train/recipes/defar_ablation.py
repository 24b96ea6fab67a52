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

from functools import partial
from typing import Any

from bfr_fast.losses import DEFARLoss, FlowMatchingLoss
from bfr_fast.metrics import metric_label
from bfr_fast.paths import GVPInterpolant, Interpolant, LinearPath, VPInterpolant
from bfr_fast.pipelines.comparison import (
    COUPLING,
    ComparisonBudget,
    ComparisonSetup,
    EvalSampler,
    LossVariant,
    run_variants,
)
from bfr_fast.pipelines.presets import image_preset
from bfr_fast.pipelines.refinement import METRICS
from bfr_fast.report import markdown_table
from bfr_fast.train.recipes.base import Recipe, RunContext, RunResult
from bfr_fast.train.recipes.common import comparison_budget, load_data, scorer, select

TABLE_NFE = 10  # Euler NFE of the tables that do not vary the sampler
NFE_SWEEP = (5, 10, 20, 50)
INTERPOLANT_NFE = 50
INTERPOLANTS: dict[str, type[Interpolant]] = {"linear": LinearPath, "gvp": GVPInterpolant, "vp": VPInterpolant}


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


def run(ctx: RunContext) -> RunResult:
    data = load_data(ctx)
    available = tables()
    chosen = select(ctx, list(available), {name.split("-")[0]: name for name in available})
    setup = ComparisonSetup.create(ctx.workspace, data, comparison_budget(ctx, ablation_budget(data.image_shape)),
                                   scorer(ctx, data))
    rows: list[dict[str, Any]] = []
    for table in chosen:
        rows.extend(run_variants(ctx.workspace, setup, available[table], extra={"table": table}))
    if setup.scorer is None:  # every rank trains; the main process alone evaluates and writes
        return RunResult({}, "")

    name = setup.scorer.extractor.name
    steps, seeds, n = setup.steps, list(setup.seeds), setup.num_samples
    columns = [("method", "variant"), ("seed", "train seed"), ("sampler", "sampler"), ("nfe", "NFE"),
               ("forward_passes", "passes/step")] + [(k, metric_label(k, name)) for k in METRICS]
    sections = [
        f"## DEFAR ablations on `{data.name}`: {steps} training steps per network, training seeds {seeds}, "
        f"{n} samples per row from one fixed noise set, scored against the {data.test_x.shape[0]} held-out test "
        f"images with `{name}`. A small budget: only differences well beyond the seed spread of the `defar` "
        "recipe mean anything."
    ]
    for table in chosen:
        sections.append(f"### {table}\n\n" + markdown_table([r for r in rows if r["table"] == table], columns))
    metrics = {"recipe": "defar-ablation", "dataset": data.name, "extractor": name, "train_steps": steps,
               "seeds": seeds, "num_samples": n, "tables": chosen, "eval_noise_seed": setup.eval_seed, "rows": rows}
    return RunResult(metrics, "\n\n".join(sections) + "\n")


RECIPE = Recipe("defar-ablation", "DEFAR Tables 4 (NFE), 5 (interpolants, ODE/SDE), 6-9 (ADR/FC ablations); "
                "--select tables", run, reads=frozenset({"select", "seeds", "inception", "data_root"}))
