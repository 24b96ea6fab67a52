r"""The BFR workflow for any frozen generator: pool, inversion cache, refiners, 1-NFE students, scored rows.

Given a frozen base :math:`G` (:class:`~bfr_fast.refiners.FrozenGenerator`: any velocity model with a fixed-step
sampler, a DDPM through :class:`~bfr_fast.paths.ProbabilityFlowVelocity`), the data it imitates and a
:class:`RefinementBudget`, :func:`refine` runs, each stage checkpointed in the workspace's run folder and loaded
instead of recomputed when the workspace resumes (what was made from the generator, only if its
:meth:`~bfr_fast.refiners.FrozenGenerator.fingerprint` is unchanged; else that stage and every later one is
recomputed):

1. a pool of base samples, one per training sample and of its class (:func:`sample_pool`), and the inversion
   cache of the training set through :math:`G` (:func:`inversion_cache`);
2. the refiners of :data:`~bfr_fast.refiners.registry.REGISTRY` (:func:`train_refiners`), each with its class's
   default settings: noise injection (:math:`\sigma_d` = 0.1), FMRefiner (:math:`\sigma_f = \sigma_z` = 0.1),
   DFR (blur + noise augmentation, per-class OT pairs) on the pool, LFR (:math:`\alpha` = 0.1, amplitude mixing,
   per-class OT) on the cache;
3. the 1-NFE students of those that have one, the DFR and the LFR (:func:`distill_refiners`: reflow on the
   teacher's multi-step map);
4. the rows of :data:`ROWS` after the base, all from the same noise and labels (the LFRs refine that noise, the
   others the base samples made from it), scored against the held-out split (:func:`evaluate_refiners`).

Samples may be images or flat vectors (the molecule recipes use the stages one by one); :func:`refine` itself
works on image data sets.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from bfr_fast.checkpoint import atomic_save, load
from bfr_fast.checks import choice, positive_float, positive_int, probability
from bfr_fast.data import ImageDataset
from bfr_fast.engine.trainer import PRECISIONS, TrainConfig
from bfr_fast.metrics import FeatureExtractor, ImageFeatures, metric_label
from bfr_fast.models import UNet
from bfr_fast.pipelines.evaluation import Scorer, evaluate_row
from bfr_fast.pipelines.presets import image_preset
from bfr_fast.pipelines.sampling import balanced_labels, source_noise
from bfr_fast.pipelines.training import Loss, fit_network, train_config
from bfr_fast.pipelines.workspace import Workspace
from bfr_fast.progress import timed_stage
from bfr_fast.refiners import (
    FrozenGenerator,
    InversionCache,
    LatentFlowRefiner,
    Refiner,
    RefinerData,
    ReflowLoss,
    SamplePool,
    build_inversion_cache,
    build_pool,
    reflow_pairs,
    registry,
    student_of,
)
from bfr_fast.report import markdown_table, tables

log = logging.getLogger("bfr_fast")

METRICS = ("fd", "kid", "is", "sfid", "precision", "recall")
REFINERS = registry.names()
"""The refiners :func:`train_refiners` can train (:data:`~bfr_fast.refiners.registry.REGISTRY`), in the table's
order."""
ROWS = registry.table_rows()
"""Refiner method -> its table rows, each ``(solver, steps)``, in the table's order: every registered refiner's
rows (the baselines at 1 NFE and at 10, where the paper evaluates them; DFR and LFR at 1 and 10 Euler steps and at
one RK4 step, 4 NFE: the authors' notebooks' "1-NFE" protocol), each followed by its reflowed student's (1 NFE)."""
POOL_SEED_OFFSET = 1000  # the pool's noise must not be the evaluation noise
PAIRS_SEED_OFFSET = 2000  # nor the distillation sources'


@dataclass(frozen=True)
class RefinementBudget:
    """Refiner networks, their training, the distillation and the evaluation of one refinement run.

    Attributes:
        refiner_steps: Training steps of each refiner.
        refiner_channels: Base width of each refiner UNet.
        refiner_mult: Channel multipliers of each refiner UNet (no attention).
        batch_size: Refiner (and student) training batch size.
        lr: Peak learning rate of every refiner and student.
        eval_seeds: Evaluation seeds (the workspace's seed, + 1, ...): every row is scored once per seed.
        num_samples: Samples per row and evaluation seed.
        precision: Autocast precision of the training (``"fp32"``, ``"bf16"``, ``"fp16"``).
        teacher_steps: Euler steps of a refiner when it makes its student's pairs (the teacher's NFE).
        distill_steps: Fine-tuning steps of each 1-NFE student (:func:`distill_refiner`).
        distill_pairs: Pairs per class (in all, for unconditional refinement) for each student; the DFR's sources
            are fresh base samples, so this also sets the base NFE the stage spends.
        distill_start_fraction: :class:`~bfr_fast.refiners.ReflowLoss`'s share of pairs trained at t = 0.

    The distillation defaults (10-step teacher, 300 pairs per class, 400 steps, plain reflow) were measured on
    the validation split of digits: as good as 1000 pairs and 600 steps (``docs/results/bfr-digits-val``).
    """

    refiner_steps: int
    refiner_channels: int
    refiner_mult: tuple[int, ...]
    batch_size: int
    lr: float
    eval_seeds: int
    num_samples: int
    precision: str = "fp32"
    teacher_steps: int = 10
    distill_steps: int = 400
    distill_pairs: int = 300
    distill_start_fraction: float = 0.0

    def __post_init__(self) -> None:
        for name in ("refiner_steps", "refiner_channels", "batch_size", "eval_seeds", "num_samples", "teacher_steps",
                     "distill_steps", "distill_pairs"):
            positive_int(name, getattr(self, name))
        positive_float("lr", self.lr)
        choice("precision", self.precision, PRECISIONS)
        probability("distill_start_fraction", self.distill_start_fraction)

    def refiner_network(self, channels: int, num_classes: int | None) -> UNet:
        """A fresh refiner UNet for ``channels``-channel images (class-conditional with ``num_classes``)."""
        return UNet(
            channels, self.refiner_channels, channel_mult=self.refiner_mult, num_res_blocks=1,
            attention_resolutions=(), num_classes=num_classes,
        )

    def with_overrides(self, **overrides: Any) -> RefinementBudget:
        """This budget with the given fields replaced; a value of None keeps the field's (a CLI's "not given").

        Raises:
            TypeError: A name that is not a field.
        """
        return replace(self, **{name: value for name, value in overrides.items() if value is not None})

    def config(self, steps: int | None = None) -> TrainConfig:
        """Optimisation settings of a refiner (``steps`` None: :attr:`refiner_steps`)."""
        return train_config(steps or self.refiner_steps, self.lr, self.precision)

    def distillation(self) -> Distillation:
        """The settings of :func:`distill_refiners` this budget stands for."""
        return Distillation(self.teacher_steps, self.distill_pairs, self.distill_start_fraction,
                            self.config(self.distill_steps), self.batch_size)


@dataclass(frozen=True)
class Distillation:
    """How the 1-NFE students are made (:func:`distill_refiner`), for samples of any kind.

    Attributes:
        teacher_steps: Euler steps of a refiner when it makes its student's pairs (the teacher's NFE).
        pairs: Pairs per class (in all, for unconditional refinement) for each student.
        start_fraction: :class:`~bfr_fast.refiners.ReflowLoss`'s share of pairs trained at t = 0.
        config: The students' optimisation (its ``steps`` are the fine-tuning steps).
        batch_size: Student training batch size.
    """

    teacher_steps: int
    pairs: int
    start_fraction: float
    config: TrainConfig
    batch_size: int


def refinement_budget(image_shape: tuple[int, int, int]) -> RefinementBudget:
    """The default budget for images of ``(C, H, W)``: sized for the 10-minute main job on 8x8 digits."""
    preset = image_preset(image_shape)
    side = max(image_shape[1:])
    if side <= 16:
        return RefinementBudget(300, 16, (1, 2), 128, preset.lr, 2, preset.num_samples)
    if side <= 28:
        return RefinementBudget(1500, 32, (1, 2, 2), 64, preset.lr, 3, preset.num_samples)
    return RefinementBudget(20_000, 64, (1, 2, 2), 128, preset.lr, 1, preset.num_samples)


@dataclass(frozen=True)
class RefinementTask:
    """What is refined: a frozen generator, the data it imitates, and the budget.

    Attributes:
        data: The data set: its training split is the DFR's targets and the LFR's inversion source, its held-out
            split the evaluation's reference.
        budget: Refiners, distillation and evaluation.
        generator: The frozen base :math:`G` with its sampler.
        conditional: Whether the generator (and so every refiner) takes class labels; needs labelled data.
    """

    data: ImageDataset
    budget: RefinementBudget
    generator: FrozenGenerator
    conditional: bool

    def __post_init__(self) -> None:
        if self.conditional and not self.data.is_labelled:
            raise ValueError(f"a class-conditional generator needs labelled data; {self.data.name!r} has no labels")

    @property
    def num_classes(self) -> int | None:
        """The classes refiners and samples are conditioned on (None: unconditional)."""
        return self.data.num_classes if self.conditional else None

    @property
    def labels_or_none(self) -> torch.Tensor | None:
        """The training labels when conditional, else None."""
        return self.data.train_y if self.conditional else None


def sample_pool(ws: Workspace, task: RefinementTask, name: str = "pool") -> SamplePool:
    """One base sample per training image (per class: the largest class's count), cached in the run folder."""
    data = task.data
    per_class = int(data.class_counts().max()) if task.conditional else data.train_x.shape[0]
    return cached_pool(ws, task.generator, data.image_shape, per_class, task.num_classes, name)


def cached_pool(
    ws: Workspace, generator: FrozenGenerator, sample_shape: tuple[int, ...], per_class: int,
    num_classes: int | None, name: str = "pool", seed_offset: int = POOL_SEED_OFFSET,
) -> SamplePool:
    """:func:`~bfr_fast.refiners.build_pool` of samples of any shape, cached as ``checkpoints/<name>.pt``.

    When the workspace resumes, an existing file is loaded instead of generating again, if the same generator made
    it (:func:`made_by`). The pool's noise is seeded with the workspace's seed + ``seed_offset``
    (:data:`POOL_SEED_OFFSET`), so it never repeats the evaluation noise.

    Raises:
        ValueError: The generator sampled a NaN or infinite value (nothing is saved).
    """
    path = ws.folder.checkpoint(name)
    if ws.resume and path.is_file():
        pool = SamplePool.load(path, ws.device)
        if made_by(ws, path, pool.generator, generator):
            log.info("pool: loaded %s", path)
            return pool
    pool = build_pool(
        generator, sample_shape, per_class, num_classes, seed=ws.seed + seed_offset, device=ws.device,
        progress=ws.is_main,
    )
    pool.save(path)
    return pool


def made_by(ws: Workspace, path: Path, fingerprint: str | None, generator: FrozenGenerator) -> bool:
    """Whether the cache at ``path``, made by the generator of ``fingerprint``, was made by ``generator``.

    When it was not (the user changed the network's weights or code since, or it predates fingerprints), the
    workspace stops resuming (:meth:`~bfr_fast.pipelines.workspace.Workspace.stop_resuming`): the refiners trained
    on the old cache are as stale as the cache.
    """
    if fingerprint == generator.fingerprint():
        return True
    ws.stop_resuming(f"{path} was made by another generator (the weights or code of {generator.name} changed "
                     "since)")
    return False


def inversion_cache(ws: Workspace, task: RefinementTask, name: str = "inversion") -> InversionCache:
    """The training set inverted through the base sampler, cached in the run folder."""
    return cached_inversion(ws, task.generator, task.data.train_x, task.labels_or_none, name)


def cached_inversion(
    ws: Workspace, generator: FrozenGenerator, x: torch.Tensor, y: torch.Tensor | None, name: str = "inversion"
) -> InversionCache:
    """:func:`~bfr_fast.refiners.build_inversion_cache` of ``x`` (any sample shape), cached as
    ``checkpoints/<name>.pt`` and loaded instead of rebuilt when the workspace resumes, if the same generator made
    it (:func:`made_by`).

    Raises:
        ValueError: The generator gave a NaN or infinite latent or reconstruction (nothing is saved).
    """
    path = ws.folder.checkpoint(name)
    if ws.resume and path.is_file():
        cache = InversionCache.load(path, ws.device)
        if made_by(ws, path, cache.generator, generator):
            log.info("inversion cache: loaded %s", path)
            return cache
    cache = build_inversion_cache(
        generator, x.to(ws.device), None if y is None else y.to(ws.device), progress=ws.is_main
    )
    cache.save(path)
    return cache


def fit_refiner(
    ws: Workspace,
    name: str,
    refiner: Refiner,
    loss: Loss,
    x: torch.Tensor,
    y: torch.Tensor | None,
    offset: int,
    config: TrainConfig,
    batch_size: int,
) -> Refiner:
    """Trains ``refiner`` with ``loss`` on minibatches of ``(x, y)`` (any sample shape); returns its EMA copy, frozen.

    Training is :func:`~bfr_fast.pipelines.training.fit_network` (batches seeded with the workspace's seed +
    ``offset``). The trainer checkpoint is ``checkpoints/<name>.pt`` (a finished refiner is loaded, not retrained,
    when the workspace resumes); the EMA refiner is also written as ``checkpoints/<name>-refiner.pt`` by
    :meth:`Refiner.save`, the portable file for applying it elsewhere.
    """
    ema = fit_network(ws, name, refiner, loss, x, y, config, batch_size, offset).model
    if not isinstance(ema, Refiner):  # the trainer's EMA is a copy of the module it trained
        raise TypeError(f"{name}: the trained network is a {type(ema).__name__}, not a Refiner")
    if ws.is_main:
        ema.save(ws.folder.checkpoint(f"{name}-refiner"), metadata={"steps": config.steps})
    return ema


def train_refiner(
    ws: Workspace, task: RefinementTask, name: str, refiner: Refiner, loss: Loss, x: torch.Tensor,
    y: torch.Tensor | None, offset: int,
) -> Refiner:
    """Trains ``refiner`` on ``(x, y)`` with the task's budget (see :func:`fit_refiner`)."""
    return fit_refiner(ws, name, refiner, loss, x, y, offset, task.budget.config(), task.budget.batch_size)


def train_refiners(
    ws: Workspace, task: RefinementTask, pool: SamplePool, cache: InversionCache,
    methods: Sequence[str] = REFINERS, prefix: str = "", **settings: Any,
) -> dict[str, Refiner]:
    """:func:`fit_refiners` of the task's UNet refiners on its training images (and labels when conditional)."""
    budget, channels = task.budget, task.data.image_shape[0]
    return fit_refiners(
        ws, task.data.train_x, task.labels_or_none, pool, cache,
        lambda: budget.refiner_network(channels, task.num_classes), budget.config(), budget.batch_size, methods,
        prefix=prefix, **settings,
    )


def fit_refiners(
    ws: Workspace,
    x: torch.Tensor,
    y: torch.Tensor | None,
    pool: SamplePool,
    cache: InversionCache,
    network: Callable[[], nn.Module],
    config: TrainConfig,
    batch_size: int,
    methods: Sequence[str] = REFINERS,
    prefix: str = "",
    **settings: Any,
) -> dict[str, Refiner]:
    """Trains the refiners named in ``methods`` (of :data:`REFINERS`, in that order) on samples of any shape.

    Each is its registered class (:data:`~bfr_fast.refiners.registry.REGISTRY`) around a fresh ``network()``, with
    its defaults but for the ``settings`` its constructor takes, trained with ``config`` on what its
    :meth:`~bfr_fast.refiners.Refiner.training_set` takes of the real samples, the pool and the cache
    (:func:`fit_refiner`, checkpoint ``<prefix><method>``, batches seeded with its registered offset).

    Args:
        ws: The run.
        x: ``(N, ...)`` real training samples.
        y: ``(N,)`` their labels for class-conditional refiners, or None.
        pool: Base samples, the sources of the refiners that map generated samples to real ones.
        cache: The training set inverted through the base, the latent-space refiner's targets.
        network: Builds a fresh velocity network ``net(x, t, y=None)`` of the samples' shape.
        config: Optimisation settings of every refiner.
        batch_size: Minibatch size of every refiner.
        methods: The refiners to train.
        prefix: Checkpoint-name prefix.
        **settings: Hyper-parameters by name, each given to the refiners whose constructor takes it (``alpha``,
            ``sigma_d``, ``sigma_f``, ``augmentation``: the DFR's source augmentation, ...).

    Returns:
        The frozen EMA refiners, keyed by method name.

    Raises:
        ValueError: No name, a name not in :data:`REFINERS`, or a setting no registered refiner takes.
    """
    methods = registry.check_names(methods)
    unused = sorted(set(settings) - set().union(*(entry.settings for entry in registry.REGISTRY.values())))
    if unused:
        raise ValueError(f"refiner settings: no refiner takes {unused}")
    data = RefinerData(x, y, pool, cache)
    refiners: dict[str, Refiner] = {}
    for method in methods:
        entry = registry.REGISTRY[method]
        refiner = entry.build(network(), settings)
        loss, samples, labels = refiner.training_set(data)
        with timed_stage(f"refiner {prefix}{method}"):
            refiners[method] = fit_refiner(ws, f"{prefix}{method}", refiner, loss, samples, labels,
                                           entry.seed_offset, config, batch_size)
    return refiners


class Distilled(NamedTuple):
    """A 1-NFE student and what it cost (:func:`distill_refiner`)."""

    refiner: Refiner
    cost: dict[str, Any]


def distill_refiner(
    ws: Workspace,
    plan: Distillation,
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
    ``checkpoints/<name>.pt``; a resuming workspace loads either instead of redoing it.

    Args:
        ws: The run.
        plan: Teacher steps, the students' optimisation and batch size, ReflowLoss's start fraction.
        name: Checkpoint name of the student.
        teacher: The trained refiner.
        sources: ``(N, ...)`` states the student will start from at inference: fresh base samples for a
            data-space refiner, fresh N(0, I) noise for the LFR (never the evaluation's).
        y: ``(N,)`` their labels, or None.
        offset: Seed offset of the student's minibatches.

    Returns:
        The frozen EMA student and its cost: ``teacher_nfe`` (teacher calls per pair), ``pairs``,
        ``teacher_calls`` (their product, network calls on a batch of one), ``pairs_seconds``, ``train_steps``
        and ``train_seconds`` (this process's wall time; after a resume only what was left).
    """
    path = ws.folder.checkpoint(f"{name}-pairs")
    if ws.resume and path.is_file():
        payload = load(path, map_location="cpu")
        pairs, pairs_seconds = payload["pairs"], payload["seconds"]
        log.info("%s: loaded %d pairs from %s", name, pairs.shape[0], path)
    else:
        start = time.perf_counter()
        pairs = reflow_pairs(teacher, sources.to(ws.device), None if y is None else y.to(ws.device),
                             num_steps=plan.teacher_steps, batch_size=1000).cpu()
        pairs_seconds = time.perf_counter() - start
        if ws.is_main:
            atomic_save({"pairs": pairs, "seconds": pairs_seconds, "teacher_nfe": plan.teacher_steps}, path)
    start = time.perf_counter()
    student = fit_refiner(ws, name, student_of(teacher), ReflowLoss(plan.start_fraction), pairs,
                          None if y is None else y.cpu(), offset, plan.config, plan.batch_size)
    cost = {
        "teacher_nfe": plan.teacher_steps,
        "pairs": pairs.shape[0],
        "teacher_calls": pairs.shape[0] * plan.teacher_steps,
        "pairs_seconds": round(pairs_seconds, 2),
        "train_steps": plan.config.steps,
        "train_seconds": round(time.perf_counter() - start, 2),
        "start_fraction": plan.start_fraction,
    }
    log.info("%s: %s", name, cost)
    return Distilled(student, cost)


def distill_refiners(ws: Workspace, generator: FrozenGenerator, refiners: dict[str, Refiner],
                     sample_shape: tuple[int, ...], num_classes: int | None,
                     plan: Distillation) -> dict[str, Distilled]:
    """1-NFE students (:func:`distill_refiner`) of the refiners in ``refiners`` that have one in the registry (the
    DFR and the LFR), keyed by their names (:func:`~bfr_fast.refiners.registry.student_name`).

    Sources, ``plan.pairs`` per class (balanced labels; in all, when ``num_classes`` is None), of samples of
    ``sample_shape`` (images, flat coordinate vectors): a latent-space refiner's are fresh N(0, I) latents, a
    data-space refiner's fresh samples of ``generator`` (``checkpoints/<student>-sources.pt``, base NFE reported in
    the cost as ``base_nfe`` per source); both seeded apart from the pool and the evaluation noise.
    """
    students: dict[str, Distilled] = {}
    for method, entry in registry.REGISTRY.items():
        if method not in refiners or entry.student_seed_offset is None:
            continue
        name, teacher = registry.student_name(method), refiners[method]
        latent = isinstance(teacher, LatentFlowRefiner)
        with timed_stage(f"distillation {name}"):
            if latent:
                count = plan.pairs * (num_classes or 1)
                sources = source_noise(count, sample_shape, ws.seed + PAIRS_SEED_OFFSET, ws.device)
                labels = balanced_labels(count, num_classes, ws.device)
            else:
                pool = cached_pool(ws, generator, sample_shape, plan.pairs, num_classes, f"{name}-sources",
                                   PAIRS_SEED_OFFSET)
                sources, labels = pool.x, pool.y
            distilled = distill_refiner(ws, plan, name, teacher, sources, labels, entry.student_seed_offset)
        if not latent:
            distilled.cost["base_nfe"] = generator.nfe
        students[name] = distilled
    return students


@torch.no_grad()
def evaluate_refiners(
    ws: Workspace,
    task: RefinementTask,
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
    data, n = task.data, task.budget.num_samples
    labels = balanced_labels(n, task.num_classes, ws.device)
    teacher_nfe = teacher_nfe or {}
    rows: list[dict[str, Any]] = []
    for k in range(task.budget.eval_seeds):
        seed = ws.seed + k
        noise = source_noise(n, data.image_shape, seed, ws.device)
        for candidate in table_candidates(task.generator, refiners, noise, labels, seed, include_base, ws.is_main):
            samples, nfe_b, nfe_r = candidate.make()
            row = {**(extra or {}), "method": candidate.method, "solver": candidate.solver, "nfe_base": nfe_b,
                   "nfe_refiner": nfe_r, "teacher_nfe": teacher_nfe.get(candidate.method), "seed": seed}
            grid = f"{grid_prefix}{candidate.tag}-seed{seed}"
            rows.append(evaluate_row(ws, row, samples, reference, extractor, grid))
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
        """File-name label: ``base``, ``<method>-10nfe``, ``<method>-1step-rk4``."""
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


ROW_KEYS = ("method", "solver", "nfe_base", "nfe_refiner", "teacher_nfe")


def summarize(rows: list[dict[str, Any]], keys: tuple[str, ...] = ROW_KEYS) -> list[dict[str, Any]]:
    """One row per distinct ``keys``: each of :data:`METRICS` as ``mean ± std`` over the evaluation seeds."""
    return tables.summarize(rows, keys, METRICS)


def table_columns(extractor_name: str, first: tuple[tuple[str, str], ...] = ()) -> list[tuple[str, str]]:
    """Markdown columns of a refinement table: ``first``, the row keys, the seed count and :data:`METRICS`."""
    return [*first, ("method", "method"), ("solver", "refiner solver"), ("nfe_base", "NFE base"),
            ("nfe_refiner", "NFE refiner"), ("teacher_nfe", "teacher NFE"), ("seeds", "seeds")] + [
        (key, metric_label(key, extractor_name)) for key in METRICS]


def distillation_note(costs: dict[str, dict[str, Any]]) -> str:
    """One sentence per 1-NFE student (its cost, :func:`distill_refiner`): its teacher's NFE, pairs, the stage's
    cost."""
    parts = []
    for name, c in costs.items():
        base = f" (sources: base samples, {c['base_nfe']} base NFE each)" if "base_nfe" in c else ""
        parts.append(
            f"`{name}`: {c['train_steps']} steps warm-started from its teacher on {c['pairs']} pairs of its "
            f"{c['teacher_nfe']}-step Euler map{base}, {c['teacher_calls']} teacher calls in {c['pairs_seconds']:.0f} s, "
            f"training {c['train_seconds']:.0f} s, share at t = 0: {c['start_fraction']:g}."
        )
    return "Distillation (rows `*_reflow`, 1 NFE): " + " ".join(parts) if parts else ""


@dataclass
class Refinement:
    """What :func:`refine` produced.

    Attributes:
        refiners: The trained refiners and the students, by method name (frozen EMA copies).
        distillation: Each student's cost (:func:`distill_refiner`), by name.
        rows: The scored rows (:func:`evaluate_refiners`); empty on ranks other than the main one.
        inversion_error: The inversion cache's RMS reconstruction-error summary.
    """

    refiners: dict[str, Refiner]
    distillation: dict[str, dict[str, Any]]
    rows: list[dict[str, Any]]
    inversion_error: dict[str, float]

    def table(self, extractor_name: str) -> str:
        """The rows as a markdown table, each metric ``mean ± std`` over the evaluation seeds."""
        return markdown_table(summarize(self.rows), table_columns(extractor_name))


def refine(
    ws: Workspace,
    task: RefinementTask,
    scorer: Scorer | None,
    methods: Sequence[str] = REFINERS,
    distill: bool = True,
) -> Refinement:
    """The BFR workflow (module docstring): refiners of ``task.generator``, their students, and the scored table.

    Args:
        ws: The run: every stage is cached in its folder and loaded instead of recomputed when it resumes.
        task: The frozen generator, the data and the budget.
        scorer: The metrics' feature space and reference (None on ranks other than the main one: they train only).
        methods: The refiners to train, of :data:`REFINERS`.
        distill: Also distil the DFR and the LFR (when trained) into 1-NFE students (rows ``*_reflow``).

    Returns:
        The refiners, the students' costs, the rows (base first) and the inversion error.
    """
    with timed_stage("pool"):
        pool = sample_pool(ws, task)
    with timed_stage("inversion cache"):
        cache = inversion_cache(ws, task)
    refiners = train_refiners(ws, task, pool, cache, methods)  # a timed log line per refiner and per student
    students = distill_refiners(ws, task.generator, refiners, task.data.image_shape, task.num_classes,
                                task.budget.distillation()) if distill else {}
    refiners |= {name: student.refiner for name, student in students.items()}
    rows: list[dict[str, Any]] = []
    if scorer is not None and ws.is_main:  # every rank trains; the main process alone evaluates
        teacher_nfe = {name: student.cost["teacher_nfe"] for name, student in students.items()}
        with timed_stage("evaluation"):
            rows = evaluate_refiners(ws, task, refiners, scorer.extractor, scorer.reference, teacher_nfe=teacher_nfe)
    return Refinement(refiners, {name: s.cost for name, s in students.items()}, rows, cache.error_summary())
