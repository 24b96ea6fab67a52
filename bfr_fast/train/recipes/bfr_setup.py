"""What the BFR recipes (``bfr``, ``bfr-alpha``, ``bfr-transfer``) share: their base, trained from the options, and
the refinement task on it."""

from __future__ import annotations

from dataclasses import dataclass

from bfr_fast.data import ImageDataset
from bfr_fast.pipelines.evaluation import Scorer
from bfr_fast.pipelines.presets import image_preset
from bfr_fast.pipelines.refinement import RefinementBudget, RefinementTask, refinement_budget
from bfr_fast.pipelines.sampling import SamplerSpec
from bfr_fast.pipelines.training import train_base_flow
from bfr_fast.train.recipes.base import RunContext
from bfr_fast.train.recipes.common import base_steps, batch_size, load_data, optimisation, scorer


@dataclass(frozen=True)
class BaseBudget:
    """The base generator of the BFR recipes: its training steps and the Euler steps of its sampler."""

    steps: int
    sampler_steps: int


def base_budget(image_shape: tuple[int, int, int]) -> BaseBudget:
    """The default base for images of ``(C, H, W)``: sized for the 10-minute main job on 8x8 digits."""
    side = max(image_shape[1:])
    if side <= 16:
        return BaseBudget(1300, 20)
    if side <= 28:
        return BaseBudget(4000, 20)
    return BaseBudget(50_000, 20)


def resolved_budget(ctx: RunContext, data: ImageDataset) -> RefinementBudget:
    """The refinement budget of ``data`` with the options applied: ``--steps`` sets every refiner's and student's
    steps, ``--batch-size``, ``--lr``, ``--precision`` and ``--num-samples`` theirs."""
    o = ctx.options
    return refinement_budget(data.image_shape).with_overrides(
        refiner_steps=o.steps, distill_steps=o.steps, batch_size=o.batch_size, lr=o.lr, precision=o.precision,
        num_samples=o.num_samples)


@dataclass(frozen=True)
class BfrSetup:
    """What the BFR recipes share: the refinement task (data, budget, frozen base) and the steps the base trained."""

    task: RefinementTask
    base_steps: int
    scorer: Scorer | None

    @property
    def data(self) -> ImageDataset:
        return self.task.data


def prepare(ctx: RunContext) -> BfrSetup:
    """Loads the data, builds the scorer, trains (or, when resuming, loads) the base; returns the task."""
    data = load_data(ctx)
    score = scorer(ctx, data)
    base = base_budget(data.image_shape)
    preset = image_preset(data.image_shape)
    steps = base_steps(ctx, base.steps)
    model = train_base_flow(ctx.workspace, data, optimisation(ctx, steps, preset.lr),
                            batch_size(ctx, preset.batch_size))
    generator = SamplerSpec("euler", ctx.options.sampler_steps or base.sampler_steps).generator(model)
    task = RefinementTask(data, resolved_budget(ctx, data), generator, conditional=data.is_labelled)
    return BfrSetup(task, steps, score)


READS = frozenset({"base_steps", "sampler_steps", "inception", "data_root"})
"""The recipe-specific options the BFR recipes read (the others are refused, not silently ignored)."""
