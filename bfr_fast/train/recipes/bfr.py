"""``bfr``: the Table-1 experiment of Bi-stage Flow Refinement on real images.

Steps (each network checkpointed in the run folder; ``--resume`` loads what is finished instead of redoing it):

1. train the base flow (:func:`~bfr_fast.pipelines.training.train_base_flow`, OT-CFM, class-conditional on
   labelled data) and freeze its EMA network as :math:`G` = Euler with ``sampler_steps`` steps
   (:func:`~bfr_fast.train.recipes.bfr_setup.prepare`);
2. refine it with :func:`~bfr_fast.pipelines.refinement.refine`: a pool of base samples and the inversion cache of
   the training set through :math:`G`; noise injection, FMRefiner, DFR and LFR; the DFR's and LFR's 1-NFE reflow
   students; and the rows of :data:`~bfr_fast.pipelines.refinement.ROWS` after the base, from the same noise and
   labels, scored with FD/KID/IS/sFID/precision/recall in the data set's classifier's feature space (Inception
   with ``--inception``) against the held-out split, for ``eval_seeds`` seeds;
3. score real training images the same way: the floor of the metrics on this data.

Budgets: :func:`~bfr_fast.train.recipes.bfr_setup.base_budget` and
:func:`~bfr_fast.pipelines.refinement.refinement_budget`; the distillation defaults were chosen on
``--data digits-val`` (a validation split of the training images), and the measured wall times of the main job are
in ``docs/results/bfr-digits-seeds``. ``--steps`` sets every refiner's and student's steps (and the base's, unless
``--base-steps``), ``--sampler-steps`` the base sampler.
"""

from __future__ import annotations

from bfr_fast.data import VALIDATION_SUFFIX
from bfr_fast.metrics import metric_label
from bfr_fast.pipelines.evaluation import evaluate_row
from bfr_fast.pipelines.refinement import distillation_note, refine
from bfr_fast.train.recipes.base import Recipe, RunContext, RunResult
from bfr_fast.train.recipes.bfr_setup import READS, prepare


def run(ctx: RunContext) -> RunResult:
    setup = prepare(ctx)
    result = refine(ctx.workspace, setup.task, setup.scorer)
    if setup.scorer is None:  # every rank trains; the main process alone evaluates and writes
        return RunResult({}, "")
    task, data, (extractor, reference) = setup.task, setup.data, setup.scorer
    n = task.budget.num_samples
    real = evaluate_row(ctx.workspace, {"method": "real", "seed": None}, data.train_x[:n], reference, extractor,
                        "real")
    error = result.inversion_error
    steps = {"base": setup.base_steps, "refiner": task.budget.refiner_steps}
    held_out = "validation" if data.name.endswith(VALIDATION_SUFFIX) else "test"
    title = (
        f"BFR on `{data.name}` ({data.train_x.shape[0]} training images): base trained {steps['base']} steps, "
        f"each refiner {steps['refiner']}; base sampler = Euler {task.generator.num_steps} "
        f"steps; {n} samples per row and seed, scored against the {data.test_x.shape[0]} held-out {held_out} images "
        f"with `{extractor.name}`; mean ± std over {task.budget.eval_seeds} seeds"
    )
    note = (
        f"Inversion of the training set through the base sampler: RMS reconstruction error (pixels in [-1, 1]) "
        f"mean {error['mean']:.3g}, median {error['median']:.3g}, p95 {error['p95']:.3g}, max {error['max']:.3g}."
    )
    floor = (
        f"The floor of these metrics on this data: {min(n, data.train_x.shape[0])} real training images score "
        + ", ".join(f"{metric_label(k, extractor.name)} {real[k]:.4g}" for k in ("fd", "kid", "is"))
        + " (samples/real.png)."
    )
    metrics = {
        "recipe": "bfr",
        "dataset": data.name,
        "extractor": extractor.name,
        "extractor_test_accuracy": getattr(extractor, "test_accuracy", None),
        "base_sampler": {"method": task.generator.method, "steps": task.generator.num_steps},
        "train_steps": steps,
        "distillation": result.distillation,
        "inversion_error": error,
        "real": real,
        "rows": result.rows,
    }
    body = result.table(extractor.name)
    return RunResult(metrics, f"## {title}\n\n{body}\n{note}\n\n{distillation_note(result.distillation)}\n\n{floor}\n")


RECIPE = Recipe("bfr", "Table 1: base, baselines, DFR and LFR at 1/10 NFE and one RK4 step, their 1-NFE reflow students",
                run, reads=READS)
