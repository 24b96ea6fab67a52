"""``bfr``: the Table-1 experiment of Bi-stage Flow Refinement on real images.

Steps (each network checkpointed in the run folder; ``--resume`` loads what is finished instead of redoing it):

1. train the base flow (:func:`~bfr_fast.train.recipes.common.train_base_flow`, OT-CFM, class-conditional on
   labelled data) and freeze its EMA network as :math:`G` = Euler with ``sampler_steps`` steps;
2. build a pool of base samples, one per training image and of its class (:func:`~bfr_fast.refiners.build_pool`),
   and the inversion cache of the training set through :math:`G` (its RMS reconstruction-error summary goes to
   ``metrics.json`` as ``"inversion_error"``);
3. train four small UNet refiners: noise injection (σ_d = 0.1), FMRefiner (σ_f = σ_z = 0.1), DFR (blur + noise
   augmentation, per-class OT pairs) on the pool, LFR (α = 0.1, amplitude mixing, per-class OT) on the cache;
4. distil the DFR and the LFR into 1-NFE students (:func:`distill_refiners`: reflow on the teacher's 10-step map;
   the DFR's sources are fresh base samples, the LFR's fresh noise);
5. evaluate, from the same noise and labels for every row (the LFRs refine that noise, the others refine the base
   samples made from it), the rows of :data:`ROWS` after the base, each with FD/KID/IS/sFID/precision/recall in
   the data set's classifier's feature space (Inception with ``--inception``) against the held-out test split,
   for ``eval_seeds`` seeds. Rows carry the NFE of the base, of the refiner and of a student's teacher.

Budgets: :func:`bfr_budget`; the distillation defaults were chosen on ``--data digits-val`` (a validation split of
the training images), and the measured wall times of the main job are in ``docs/results/bfr-digits``.
``--steps`` sets every network's steps (the students' too), ``--base-steps`` the base's alone (over ``--steps``),
``--sampler-steps`` the base sampler.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch

from bfr_fast.data import VALIDATION_SUFFIX, ImageDataset
from bfr_fast.metrics import FeatureExtractor, ImageFeatures, metric_label
from bfr_fast.models import UNet
from bfr_fast.refiners import (
    DataFlowRefiner,
    FMRefiner,
    FrozenGenerator,
    InversionCache,
    LatentFlowRefiner,
    NoiseInjectionRefiner,
    Refiner,
    ReflowLoss,
    SamplePool,
    build_inversion_cache,
    build_pool,
    reflow_pairs,
    student_of,
)
from bfr_fast.checkpoint import atomic_save, load
from bfr_fast.report import markdown_table, tables
from bfr_fast.train.recipes.base import Recipe, RunContext, RunResult
from bfr_fast.train.recipes.common import (
    base_context,
    build_extractor,
    evaluate_row,
    fit_network,
    load_data,
    train_base_flow,
    train_config,
)
from bfr_fast.train.recipes.presets import image_preset
from bfr_fast.train.sampling import SamplerSpec, balanced_labels, source_noise
from bfr_fast.train.trainer import TrainConfig

log = logging.getLogger("bfr_fast")

METRICS = ("fd", "kid", "is", "sfid", "precision", "recall")
ROWS: dict[str, tuple[tuple[str, int], ...]] = {
    "noise_injection": (("euler", 1), ("euler", 10)),
    "fmrefiner": (("euler", 1), ("euler", 10)),
    "dfr": (("euler", 1), ("euler", 10), ("rk4", 1)),
    "dfr_reflow": (("euler", 1),),
    "lfr": (("euler", 1), ("euler", 10), ("rk4", 1)),
    "lfr_reflow": (("euler", 1),),
}
"""Refiner method -> its table rows, each ``(solver, steps)``, in the table's order. The baselines run at 1 NFE
and at 10 (where the paper evaluates them); DFR and LFR at 1 and 10 Euler steps and at one RK4 step (4 NFE: the
authors' notebooks' "1-NFE" protocol); their reflowed students at 1 NFE."""
POOL_SEED_OFFSET = 1000  # the pool's noise must not be the evaluation noise
PAIRS_SEED_OFFSET = 2000  # nor the distillation sources'


@dataclass(frozen=True)
class BfrBudget:
    """Network sizes and training budget of the BFR recipes for one image size.

    Attributes:
        base_steps: Training steps of the base flow.
        refiner_steps: Training steps of each refiner.
        sampler_steps: Euler steps of the base sampler :math:`G` (pool, inversion, evaluation, LFR decoding).
        refiner_channels: Base width of each refiner UNet.
        refiner_mult: Channel multipliers of each refiner UNet (no attention).
        batch_size: Refiner training batch size.
        eval_seeds: Evaluation seeds (``--seed``, ``--seed`` + 1, ...): every row is scored once per seed.
        teacher_steps: Euler steps of a refiner when it makes its student's pairs (the teacher's NFE).
        distill_steps: Fine-tuning steps of each 1-NFE student (:func:`distill_refiner`).
        distill_pairs: Pairs per class (in all, for unlabelled data) for each student; the DFR's sources are fresh
            base samples, so this also sets the base NFE the stage spends.
        distill_start_fraction: :class:`~bfr_fast.refiners.ReflowLoss`'s share of pairs trained at t = 0.

    The distillation defaults (10-step teacher, 300 pairs per class, 400 steps, plain reflow) were measured on
    the validation split: as good as 1000 pairs and 600 steps (``docs/results/bfr-digits-val``).
    """

    base_steps: int
    refiner_steps: int
    sampler_steps: int
    refiner_channels: int
    refiner_mult: tuple[int, ...]
    batch_size: int
    eval_seeds: int
    teacher_steps: int = 10
    distill_steps: int = 400
    distill_pairs: int = 300
    distill_start_fraction: float = 0.0

    def refiner_network(self, channels: int, num_classes: int | None) -> UNet:
        return UNet(
            channels, self.refiner_channels, channel_mult=self.refiner_mult, num_res_blocks=1,
            attention_resolutions=(), num_classes=num_classes,
        )


def bfr_budget(image_shape: tuple[int, int, int]) -> BfrBudget:
    """The budget for images of ``(C, H, W)``: sized for the 10-minute main job on 8x8 digits."""
    side = max(image_shape[1:])
    if side <= 16:
        return BfrBudget(1300, 300, 20, 16, (1, 2), 128, 2)
    if side <= 28:
        return BfrBudget(4000, 1500, 20, 32, (1, 2, 2), 64, 3)
    return BfrBudget(50_000, 20_000, 20, 64, (1, 2, 2), 128, 1)


@dataclass
class BfrSetup:
    """What the BFR recipes share: data, budget, the frozen base with its sampler and the steps it trained."""

    data: ImageDataset
    budget: BfrBudget
    generator: FrozenGenerator
    base_steps: int

    @property
    def labels_or_none(self) -> torch.Tensor | None:
        return self.data.train_y if self.data.is_labelled else None


def prepare(ctx: RunContext) -> BfrSetup:
    """Loads the data and trains (or, on resume, loads) the base; returns it frozen with its sampler."""
    data = load_data(ctx)
    budget = bfr_budget(data.image_shape)
    base_ctx = base_context(ctx)
    base = train_base_flow(base_ctx, data, steps=budget.base_steps)
    steps = ctx.options.sampler_steps or budget.sampler_steps
    return BfrSetup(data, budget, SamplerSpec("euler", steps).generator(base),
                    base_ctx.options.steps or budget.base_steps)


def sample_pool(ctx: RunContext, setup: BfrSetup, name: str = "pool") -> SamplePool:
    """One base sample per training image (per class: the largest class's count), cached in the run folder."""
    data = setup.data
    per_class = int(data.class_counts().max()) if data.is_labelled else data.train_x.shape[0]
    return cached_pool(ctx, setup.generator, data.image_shape, per_class, data.num_classes, name)


def cached_pool(
    ctx: RunContext, generator: FrozenGenerator, sample_shape: tuple[int, ...], per_class: int,
    num_classes: int | None, name: str = "pool", seed_offset: int = POOL_SEED_OFFSET,
) -> SamplePool:
    """:func:`~bfr_fast.refiners.build_pool` of samples of any shape, cached as ``checkpoints/<name>.pt``.

    With ``--resume`` an existing file is loaded instead of generating again. The pool's noise is seeded with
    ``--seed`` + ``seed_offset`` (:data:`POOL_SEED_OFFSET`), so it never repeats the evaluation noise.
    """
    path = ctx.folder.checkpoint(name)
    if ctx.options.resume and path.is_file():
        log.info("pool: loaded %s", path)
        return SamplePool.load(path, ctx.device)
    pool = build_pool(
        generator, sample_shape, per_class, num_classes, seed=ctx.options.seed + seed_offset,
        device=ctx.device, progress=ctx.dist.is_main,
    )
    pool.save(path)
    return pool


def inversion_cache(ctx: RunContext, setup: BfrSetup, name: str = "inversion") -> InversionCache:
    """The training set inverted through the base sampler, cached in the run folder."""
    return cached_inversion(ctx, setup.generator, setup.data.train_x, setup.labels_or_none, name)


def cached_inversion(
    ctx: RunContext, generator: FrozenGenerator, x: torch.Tensor, y: torch.Tensor | None, name: str = "inversion"
) -> InversionCache:
    """:func:`~bfr_fast.refiners.build_inversion_cache` of ``x`` (any sample shape), cached as
    ``checkpoints/<name>.pt`` and loaded instead of rebuilt with ``--resume``."""
    path = ctx.folder.checkpoint(name)
    if ctx.options.resume and path.is_file():
        log.info("inversion cache: loaded %s", path)
        return InversionCache.load(path, ctx.device)
    cache = build_inversion_cache(
        generator, x.to(ctx.device), None if y is None else y.to(ctx.device), progress=ctx.dist.is_main
    )
    cache.save(path)
    return cache


def train_refiner(
    ctx: RunContext,
    setup: BfrSetup,
    name: str,
    refiner: Refiner,
    loss: Callable[..., tuple[torch.Tensor, dict[str, torch.Tensor]]],
    x: torch.Tensor,
    y: torch.Tensor | None,
    offset: int,
) -> Refiner:
    """Trains ``refiner`` on ``(x, y)`` with the image budget of ``setup`` (see :func:`fit_refiner`)."""
    budget = setup.budget
    config = train_config(ctx, image_preset(setup.data.image_shape), budget.refiner_steps)
    return fit_refiner(ctx, name, refiner, loss, x, y, offset, config, budget.batch_size)


def fit_refiner(
    ctx: RunContext,
    name: str,
    refiner: Refiner,
    loss: Callable[..., tuple[torch.Tensor, dict[str, torch.Tensor]]],
    x: torch.Tensor,
    y: torch.Tensor | None,
    offset: int,
    config: TrainConfig,
    batch_size: int,
) -> Refiner:
    """Trains ``refiner`` with ``loss`` on minibatches of ``(x, y)`` (any sample shape); returns its EMA copy, frozen.

    Training is :func:`~bfr_fast.train.recipes.common.fit_network` (``--batch-size`` overrides ``batch_size``;
    batches seeded with ``--seed`` + ``offset``). The trainer checkpoint is ``checkpoints/<name>.pt`` (resumed with
    ``--resume``: a finished refiner is loaded, not retrained); the EMA refiner is also written as
    ``checkpoints/<name>-refiner.pt`` by :meth:`Refiner.save`, the portable file for applying it elsewhere.
    """
    ema = fit_network(ctx, name, refiner, loss, x, y, config, batch_size, offset).model
    if ctx.dist.is_main:
        ema.save(ctx.folder.checkpoint(f"{name}-refiner"), metadata={"steps": config.steps})
    return ema


def train_refiners(
    ctx: RunContext, setup: BfrSetup, pool: SamplePool, cache: InversionCache, alpha: float = 0.1,
    sigma_d: float = 0.1, sigma_f: float = 0.1, prefix: str = "",
) -> dict[str, Refiner]:
    """Trains the noise-injection, FMRefiner, DFR and LFR refiners; keyed by method name."""
    data, budget = setup.data, setup.budget
    channels, classes = data.image_shape[0], data.num_classes
    y = setup.labels_or_none

    def network() -> UNet:
        return budget.refiner_network(channels, classes)

    x_real = data.train_x
    refiners: dict[str, Refiner] = {}
    ni = NoiseInjectionRefiner(network(), sigma_d=sigma_d)
    refiners["noise_injection"] = train_refiner(ctx, setup, f"{prefix}noise_injection", ni, ni.training_loss(pool),
                                                x_real, y, 1)
    fm = FMRefiner(network(), sigma_f=sigma_f, sigma_z=0.1)
    refiners["fmrefiner"] = train_refiner(ctx, setup, f"{prefix}fmrefiner", fm, fm.training_loss(), x_real, y, 2)
    dfr = DataFlowRefiner(network())
    refiners["dfr"] = train_refiner(ctx, setup, f"{prefix}dfr", dfr, dfr.training_loss(pool), x_real, y, 3)
    lfr = LatentFlowRefiner(network(), alpha=alpha)
    refiners["lfr"] = train_refiner(ctx, setup, f"{prefix}lfr", lfr, lfr.training_loss(), cache.latents.cpu(),
                                    None if cache.labels is None else cache.labels.cpu(), 4)
    return refiners


class Distilled(NamedTuple):
    """A 1-NFE student and what it cost (:func:`distill_refiner`)."""

    refiner: Refiner
    cost: dict[str, Any]


def distill_refiner(
    ctx: RunContext,
    setup: BfrSetup,
    name: str,
    teacher: Refiner,
    sources: torch.Tensor,
    y: torch.Tensor | None,
    offset: int,
) -> Distilled:
    r"""Distils ``teacher`` into a 1-NFE student: reflow on the teacher's own multi-step map.

    One Euler step of a flow-matching refiner returns :math:`E[x_1 - x_0 \mid x_0]` under its training coupling,
    a conditional mean (the LFR collapses, the DFR blurs). The teacher's ``teacher_steps``-step ODE is a
    deterministic map :math:`R_K`; a warm-started copy (:func:`~bfr_fast.refiners.student_of`) fine-tuned by
    :class:`~bfr_fast.refiners.ReflowLoss` on the fixed pairs :math:`(s, R_K(s))` learns that map's straight
    version, which one step follows.

    The pairs are cached as ``checkpoints/<name>-pairs.pt`` (with their cost) and the student's trainer as
    ``checkpoints/<name>.pt``; ``--resume`` loads either instead of redoing it.

    Args:
        ctx: The run.
        setup: Data and budget (``teacher_steps``, ``distill_steps``, ``distill_start_fraction``).
        name: Checkpoint name of the student.
        teacher: The trained refiner.
        sources: ``(N, ...)`` states the student will start from at inference: fresh base samples for a
            data-space refiner, fresh N(0, I) noise for the LFR (never the evaluation's).
        y: ``(N,)`` their labels, or None.
        offset: Seed offset of the student's minibatches.

    Returns:
        The frozen EMA student and its cost: ``teacher_nfe`` (teacher calls per pair), ``pairs``,
        ``teacher_calls`` (their product, network calls on a batch of one), ``pairs_seconds``, ``train_steps``
        and ``train_seconds`` (this process's wall time; after ``--resume`` only what was left).
    """
    budget = setup.budget
    path = ctx.folder.checkpoint(f"{name}-pairs")
    if ctx.options.resume and path.is_file():
        payload = load(path, map_location="cpu")
        pairs, pairs_seconds = payload["pairs"], payload["seconds"]
        log.info("%s: loaded %d pairs from %s", name, pairs.shape[0], path)
    else:
        start = time.perf_counter()
        pairs = reflow_pairs(teacher, sources.to(ctx.device), None if y is None else y.to(ctx.device),
                             num_steps=budget.teacher_steps, batch_size=1000).cpu()
        pairs_seconds = time.perf_counter() - start
        if ctx.dist.is_main:
            atomic_save({"pairs": pairs, "seconds": pairs_seconds, "teacher_nfe": budget.teacher_steps}, path)
    config = train_config(ctx, image_preset(setup.data.image_shape), budget.distill_steps)
    start = time.perf_counter()
    student = fit_refiner(ctx, name, student_of(teacher), ReflowLoss(budget.distill_start_fraction), pairs,
                          None if y is None else y.cpu(), offset, config, budget.batch_size)
    cost = {
        "teacher_nfe": budget.teacher_steps,
        "pairs": pairs.shape[0],
        "teacher_calls": pairs.shape[0] * budget.teacher_steps,
        "pairs_seconds": round(pairs_seconds, 2),
        "train_steps": config.steps,
        "train_seconds": round(time.perf_counter() - start, 2),
        "start_fraction": budget.distill_start_fraction,
    }
    log.info("%s: %s", name, cost)
    return Distilled(student, cost)


def distill_refiners(ctx: RunContext, setup: BfrSetup, refiners: dict[str, Refiner]) -> dict[str, Distilled]:
    """1-NFE students of the DFR and the LFR (:func:`distill_refiner`), keyed ``dfr_reflow`` / ``lfr_reflow``.

    Sources, ``distill_pairs`` per class (balanced labels; in all, for unlabelled data): the DFR's are fresh base
    samples (``checkpoints/dfr_reflow-sources.pt``, base NFE reported in the cost as ``base_nfe`` per source),
    the LFR's fresh N(0, I) latents; both seeded apart from the pool and the evaluation noise.
    """
    data, budget = setup.data, setup.budget
    per_class = budget.distill_pairs
    students: dict[str, Distilled] = {}
    if "dfr" in refiners:
        sources = cached_pool(ctx, setup.generator, data.image_shape, per_class, data.num_classes,
                              "dfr_reflow-sources", PAIRS_SEED_OFFSET)
        distilled = distill_refiner(ctx, setup, "dfr_reflow", refiners["dfr"], sources.x, sources.y, 5)
        distilled.cost["base_nfe"] = setup.generator.num_steps
        students["dfr_reflow"] = distilled
    if "lfr" in refiners:
        count = per_class * (data.num_classes or 1)
        z = source_noise(count, data.image_shape, ctx.options.seed + PAIRS_SEED_OFFSET, ctx.device)
        labels = balanced_labels(count, data.num_classes, ctx.device)
        students["lfr_reflow"] = distill_refiner(ctx, setup, "lfr_reflow", refiners["lfr"], z, labels, 6)
    return students


@torch.no_grad()
def evaluate_refiners(
    ctx: RunContext,
    setup: BfrSetup,
    refiners: dict[str, Refiner],
    extractor: FeatureExtractor,
    reference: ImageFeatures,
    grid_prefix: str = "",
    extra: dict[str, Any] | None = None,
    include_base: bool = True,
    teacher_nfe: dict[str, int] | None = None,
) -> list[dict[str, Any]]:
    """Scores the base and every refiner on the same noise and labels, for each evaluation seed.

    Rows: ``base`` (unless ``include_base`` is False), then each refiner's :data:`ROWS`, in that order, seed by
    seed. Each row carries ``extra``'s fields, ``method``, ``solver`` (the refiner's; ``None`` for the base),
    ``nfe_base``, ``nfe_refiner``, ``teacher_nfe`` (``teacher_nfe[method]`` for a distilled student, else
    ``None``), ``seed`` and the metrics. A grid of the first 100 samples is saved per row and seed.
    """
    data = setup.data
    n = ctx.options.num_samples or image_preset(data.image_shape).num_samples
    labels = balanced_labels(n, data.num_classes, ctx.device)
    teacher_nfe = teacher_nfe or {}
    rows: list[dict[str, Any]] = []
    for k in range(setup.budget.eval_seeds):
        seed = ctx.options.seed + k
        noise = source_noise(n, data.image_shape, seed, ctx.device)
        for candidate in table_candidates(setup.generator, refiners, noise, labels, seed, include_base,
                                          ctx.dist.is_main):
            samples, nfe_b, nfe_r = candidate.make()
            row = {**(extra or {}), "method": candidate.method, "solver": candidate.solver, "nfe_base": nfe_b,
                   "nfe_refiner": nfe_r, "teacher_nfe": teacher_nfe.get(candidate.method), "seed": seed}
            grid = f"{grid_prefix}{candidate.tag}-seed{seed}"
            rows.append(evaluate_row(ctx, row, samples, reference, extractor, grid))
    return rows


class Candidate(NamedTuple):
    """A table row for one noise draw, made on demand (one set of samples in memory at a time).

    Attributes:
        method: ``"base"`` or a key of :data:`ROWS`.
        solver: The refiner's solver (``None`` for the base).
        steps: The refiner's steps (0 for the base).
        make: ``make() -> (samples, nfe_base, nfe_refiner)``.
    """

    method: str
    solver: str | None
    steps: int
    make: Callable[[], tuple[torch.Tensor, int, int]]

    @property
    def tag(self) -> str:
        """File-name label: ``base``, ``dfr-10nfe``, ``dfr-1step-rk4``."""
        if self.solver is None:
            return self.method
        if self.solver == "euler":
            return f"{self.method}-{self.steps}nfe"
        return f"{self.method}-{self.steps}step-{self.solver}"


def table_candidates(
    generator: FrozenGenerator,
    refiners: dict[str, Refiner],
    noise: torch.Tensor,
    labels: torch.Tensor | None,
    seed: int,
    include_base: bool = True,
    progress: bool = False,
) -> list[Candidate]:
    """The rows of a Table-1-shaped table for one noise draw, each made on demand.

    ``base`` (unless ``include_base`` is False) is :math:`\\hat x = G(z)`, generated here once; every refiner in
    ``refiners`` (in :data:`ROWS`'s order; unknown keys are an error) contributes its :data:`ROWS`: a latent-space
    refiner (:class:`~bfr_fast.refiners.LatentFlowRefiner`) refines the noise itself and decodes it with
    ``generator``, the others refine :math:`\\hat x`. Works for samples of any shape (images, flat coordinate
    vectors). Noise injection draws its inference noise from ``seed``.

    Raises:
        ValueError: A key of ``refiners`` that is not in :data:`ROWS`.
    """
    unknown = sorted(set(refiners) - set(ROWS))
    if unknown:
        raise ValueError(f"refiners: no table rows for {unknown}; known methods: {list(ROWS)}")
    x_hat, nfe_base = generator.sample(noise, labels, progress=progress)
    candidates: list[Candidate] = []
    if include_base:
        candidates.append(Candidate("base", None, 0, lambda: (x_hat, nfe_base, 0)))
    for method, rows in ROWS.items():
        if method not in refiners:
            continue
        refiner = refiners[method]
        for solver, steps in rows:
            if isinstance(refiner, LatentFlowRefiner):
                make = _refine_latent(refiner, generator, noise, labels, steps, solver)
            else:
                make = _refine_data(refiner, x_hat, labels, steps, solver, nfe_base, seed)
            candidates.append(Candidate(method, solver, steps, make))
    return candidates


def _refine_data(
    refiner: Refiner, x_hat: torch.Tensor, labels: torch.Tensor | None, steps: int, solver: str, nfe_base: int,
    seed: int,
) -> Callable[[], tuple[torch.Tensor, int, int]]:
    def make() -> tuple[torch.Tensor, int, int]:
        noise = torch.Generator().manual_seed(seed)  # noise injection's inference noise, fixed per seed
        x, nfe_refiner = refiner.refine(x_hat, num_steps=steps, method=solver, y=labels, return_nfe=True,
                                        batch_size=500, generator=noise)
        return x, nfe_base, nfe_refiner

    return make


def _refine_latent(
    refiner: LatentFlowRefiner, generator: FrozenGenerator, noise: torch.Tensor, labels: torch.Tensor | None,
    steps: int, solver: str,
) -> Callable[[], tuple[torch.Tensor, int, int]]:
    def make() -> tuple[torch.Tensor, int, int]:
        out = refiner.sample(noise, generator, labels, num_steps=steps, method=solver)
        return out.samples, out.nfe_base, out.nfe_refiner

    return make


def summarize(rows: list[dict[str, Any]],
              keys: tuple[str, ...] = ("method", "solver", "nfe_base", "nfe_refiner", "teacher_nfe")) -> list[
    dict[str, Any]
]:
    """One row per distinct ``keys``: each of :data:`METRICS` as ``mean ± std`` over the evaluation seeds."""
    return tables.summarize(rows, keys, METRICS)


def table_columns(extractor_name: str, first: tuple[tuple[str, str], ...] = ()) -> list[tuple[str, str]]:
    return [*first, ("method", "method"), ("solver", "refiner solver"), ("nfe_base", "NFE base"),
            ("nfe_refiner", "NFE refiner"), ("teacher_nfe", "teacher NFE"), ("seeds", "seeds")] + [
        (key, metric_label(key, extractor_name)) for key in METRICS]


def run(ctx: RunContext) -> RunResult:
    setup = prepare(ctx)
    pool = sample_pool(ctx, setup)
    cache = inversion_cache(ctx, setup)
    refiners = train_refiners(ctx, setup, pool, cache)
    students = distill_refiners(ctx, setup, refiners)
    if not ctx.dist.is_main:  # every rank trains; the main process alone evaluates and writes
        return RunResult({}, "")
    data = setup.data
    extractor = build_extractor(ctx, data)
    reference = extractor.extract(data.test_x)
    refiners |= {name: student.refiner for name, student in students.items()}
    teacher_nfe = {name: student.cost["teacher_nfe"] for name, student in students.items()}
    rows = evaluate_refiners(ctx, setup, refiners, extractor, reference, teacher_nfe=teacher_nfe)
    n = ctx.options.num_samples or image_preset(data.image_shape).num_samples
    real = evaluate_row(ctx, {"method": "real", "seed": None}, data.train_x[:n], reference, extractor, "real")
    error = cache.error_summary()
    steps = {"base": setup.base_steps, "refiner": ctx.options.steps or setup.budget.refiner_steps}
    held_out = "validation" if data.name.endswith(VALIDATION_SUFFIX) else "test"
    title = (
        f"BFR on `{data.name}` ({data.train_x.shape[0]} training images): base trained {steps['base']} steps, "
        f"each refiner {steps['refiner']}; base sampler = Euler {setup.generator.num_steps} "
        f"steps; {n} samples per row and seed, scored against the {data.test_x.shape[0]} held-out {held_out} images "
        f"with `{extractor.name}`; mean ± std over {setup.budget.eval_seeds} seeds"
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
        "base_sampler": {"method": setup.generator.method, "steps": setup.generator.num_steps},
        "train_steps": steps,
        "distillation": {name: student.cost for name, student in students.items()},
        "inversion_error": error,
        "real": real,
        "rows": rows,
    }
    body = markdown_table(summarize(rows), table_columns(extractor.name))
    return RunResult(metrics, f"## {title}\n\n{body}\n{note}\n\n{distillation_note(students)}\n\n{floor}\n")


def distillation_note(students: dict[str, Distilled]) -> str:
    """One sentence per 1-NFE student: its teacher's NFE, pairs, and the stage's cost."""
    parts = []
    for name, student in students.items():
        c = student.cost
        base = f" (sources: base samples, {c['base_nfe']} base NFE each)" if "base_nfe" in c else ""
        parts.append(
            f"`{name}`: {c['train_steps']} steps warm-started from its teacher on {c['pairs']} pairs of its "
            f"{c['teacher_nfe']}-step Euler map{base}, {c['teacher_calls']} teacher calls in {c['pairs_seconds']:.0f} s, "
            f"training {c['train_seconds']:.0f} s, share at t = 0: {c['start_fraction']:g}."
        )
    return "Distillation (rows `*_reflow`, 1 NFE): " + " ".join(parts) if parts else ""


READS = frozenset({"base_steps", "sampler_steps", "inception", "data_root"})
"""The recipe-specific options the BFR recipes read (the others are refused, not silently ignored)."""

RECIPE = Recipe("bfr", "Table 1: base, baselines, DFR and LFR at 1/10 NFE and one RK4 step, their 1-NFE reflow students",
                run, reads=READS)
