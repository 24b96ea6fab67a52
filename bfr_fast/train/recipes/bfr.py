"""``bfr``: the Table-1 experiment of Bi-stage Flow Refinement on real images.

Steps (each network checkpointed in the run folder; ``--resume`` loads what is finished instead of redoing it):

1. train the base flow (:func:`~bfr_fast.train.recipes.common.train_base_flow`, OT-CFM, class-conditional on
   labelled data) and freeze its EMA network as :math:`G` = Euler with ``sampler_steps`` steps;
2. build a pool of base samples, one per training image and of its class (:func:`~bfr_fast.refiners.build_pool`),
   and the inversion cache of the training set through :math:`G` (its RMS reconstruction-error summary goes to
   ``metrics.json`` as ``"inversion_error"``);
3. train four small UNet refiners: noise injection (σ_d = 0.1), FMRefiner (σ_f = σ_z = 0.1), DFR (blur + noise
   augmentation, per-class OT pairs) on the pool, LFR (α = 0.1, amplitude mixing, per-class OT) on the cache;
4. evaluate, from the same noise and labels for every row (the LFR refines that noise, the others refine the base
   samples made from it): base, +noise injection (1 NFE), +FMRefiner (1 NFE), +DFR (1 and 10 NFE),
   +LFR (1 and 10 NFE), each with FD/KID/IS/sFID/precision/recall in the digits classifier's feature space
   (Inception with ``--inception``) against the held-out test split, for ``eval_seeds`` seeds.

Budget on ``digits`` (8x8, 1438 training images), measured with one thread on a 2-core CPU whose other core ran
a test suite: base 1300 steps of the default digits UNet (5:35), pool and inversion cache at Euler 20 steps
(1:17), four refiners of 300 steps each, UNet 16 channels (1:50 together), evaluation of 7 rows x 3 seeds x 1000
samples plus the real-image floor (3:00): 12:00 in all (10:45 in an earlier run), over the 10-minute target on
that contended machine; an idle one should be faster (not measured). ``mnist5k`` (28x28, 4000
training images) uses the 28x28 preset base (4000 steps) and 1500 refiner steps, UNet 32 channels. Measured rates
on the same CPU: base 1.26 s/step, refiner 1.3 s/step, 10 ms per image and base call (pool, inversion, sampling):
about 85 min base, 40 min pool and inversion, 2 h refiners, 30 min evaluation, roughly 4.5 h in all; run it on
a GPU. (A smoke run, ``--steps 20 --sampler-steps 2 --num-samples 200``, took 9 min, the mnist5k classifier
included; the README's reduced run, ``--base-steps 1600 --steps 400 --sampler-steps 10 --num-samples 500``,
43:44 on the idle CPU with 2 threads.) ``--steps`` sets every network's steps, ``--base-steps`` the base's alone (over ``--steps``),
``--sampler-steps`` the base sampler.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from bfr_fast.data import ImageDataset
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
    SamplePool,
    build_inversion_cache,
    build_pool,
)
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
REFINER_NFES = (1, 10)  # DFR and LFR rows
BASELINE_NFE = 1  # noise injection and FMRefiner rows: compared with the 1-NFE DFR/LFR
POOL_SEED_OFFSET = 1000  # the pool's noise must not be the evaluation noise


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
    """

    base_steps: int
    refiner_steps: int
    sampler_steps: int
    refiner_channels: int
    refiner_mult: tuple[int, ...]
    batch_size: int
    eval_seeds: int

    def refiner_network(self, channels: int, num_classes: int | None) -> UNet:
        return UNet(
            channels, self.refiner_channels, channel_mult=self.refiner_mult, num_res_blocks=1,
            attention_resolutions=(), num_classes=num_classes,
        )


def bfr_budget(image_shape: tuple[int, int, int]) -> BfrBudget:
    """The budget for images of ``(C, H, W)``: sized for the 10-minute main job on 8x8 digits."""
    side = max(image_shape[1:])
    if side <= 16:
        return BfrBudget(1300, 300, 20, 16, (1, 2), 128, 3)
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
    num_classes: int | None, name: str = "pool",
) -> SamplePool:
    """:func:`~bfr_fast.refiners.build_pool` of samples of any shape, cached as ``checkpoints/<name>.pt``.

    With ``--resume`` an existing file is loaded instead of generating again. The pool's noise is seeded with
    ``--seed`` + :data:`POOL_SEED_OFFSET`, so it never repeats the evaluation noise.
    """
    path = ctx.folder.checkpoint(name)
    if ctx.options.resume and path.is_file():
        log.info("pool: loaded %s", path)
        return SamplePool.load(path, ctx.device)
    pool = build_pool(
        generator, sample_shape, per_class, num_classes, seed=ctx.options.seed + POOL_SEED_OFFSET,
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
) -> list[dict[str, Any]]:
    """Scores the base and every refiner on the same noise and labels, for each evaluation seed.

    Rows: ``base`` (unless ``include_base`` is False); ``noise_injection`` and ``fmrefiner`` at
    :data:`BASELINE_NFE`; ``dfr`` and ``lfr`` at each of :data:`REFINER_NFES`; in that order, seed by seed; each row
    carries ``extra``'s fields. A grid of the first 100 samples is saved per row and
    seed.
    """
    data = setup.data
    n = ctx.options.num_samples or image_preset(data.image_shape).num_samples
    labels = balanced_labels(n, data.num_classes, ctx.device)
    rows: list[dict[str, Any]] = []
    for k in range(setup.budget.eval_seeds):
        seed = ctx.options.seed + k
        noise = source_noise(n, data.image_shape, seed, ctx.device)
        candidates = table_candidates(setup.generator, refiners, noise, labels, seed, include_base, ctx.dist.is_main)
        for method, nfe, make in candidates:
            samples, nfe_b, nfe_r = make()
            row = {**(extra or {}), "method": method, "nfe_base": nfe_b, "nfe_refiner": nfe_r, "seed": seed}
            grid = f"{grid_prefix}{method}" + (f"-{nfe}nfe" if method != "base" else "") + f"-seed{seed}"
            rows.append(evaluate_row(ctx, row, samples, reference, extractor, grid))
    return rows


Candidate = tuple[str, int, Callable[[], tuple[torch.Tensor, int, int]]]
"""``(method, nfe, make)``: a table row's method, its refiner NFE, and ``make() -> (samples, nfe_base,
nfe_refiner)``."""


def table_candidates(
    generator: FrozenGenerator,
    refiners: dict[str, Refiner],
    noise: torch.Tensor,
    labels: torch.Tensor | None,
    seed: int,
    include_base: bool = True,
    progress: bool = False,
) -> list[Candidate]:
    """The rows of a Table-1-shaped table for one noise draw, each made on demand (one set in memory at a time).

    ``base`` (unless ``include_base`` is False) is :math:`\\hat x = G(z)`, generated here once; the
    ``noise_injection`` and ``fmrefiner`` refiners refine it at :data:`BASELINE_NFE`, ``dfr`` at each of
    :data:`REFINER_NFES`; ``lfr`` refines the noise itself at each of :data:`REFINER_NFES` and decodes it with
    ``generator``. Methods missing from ``refiners`` are skipped; the order is the table's. Works for samples of
    any shape (images, flat coordinate vectors). Noise injection draws its inference noise from ``seed``.
    """
    x_hat, nfe_base = generator.sample(noise, labels, progress=progress)
    candidates: list[Candidate] = []
    if include_base:
        candidates.append(("base", 0, lambda: (x_hat, nfe_base, 0)))
    for method in ("noise_injection", "fmrefiner", "dfr"):
        if method not in refiners:
            continue
        for nfe in (BASELINE_NFE,) if method != "dfr" else REFINER_NFES:
            candidates.append((method, nfe, _refine_data(refiners[method], x_hat, labels, nfe, nfe_base, seed)))
    if "lfr" in refiners:
        for nfe in REFINER_NFES:
            candidates.append(("lfr", nfe, _refine_latent(refiners["lfr"], generator, noise, labels, nfe)))
    return candidates


def _refine_data(
    refiner: Refiner, x_hat: torch.Tensor, labels: torch.Tensor | None, nfe: int, nfe_base: int, seed: int
) -> Callable[[], tuple[torch.Tensor, int, int]]:
    def make() -> tuple[torch.Tensor, int, int]:
        noise = torch.Generator().manual_seed(seed)  # noise injection's inference noise, fixed per seed
        x, nfe_refiner = refiner.refine(x_hat, num_steps=nfe, y=labels, return_nfe=True, batch_size=500,
                                        generator=noise)
        return x, nfe_base, nfe_refiner

    return make


def _refine_latent(
    refiner: LatentFlowRefiner, generator: FrozenGenerator, noise: torch.Tensor, labels: torch.Tensor | None, nfe: int
) -> Callable[[], tuple[torch.Tensor, int, int]]:
    def make() -> tuple[torch.Tensor, int, int]:
        out = refiner.sample(noise, generator, labels, num_steps=nfe)
        return out.samples, out.nfe_base, out.nfe_refiner

    return make


def summarize(rows: list[dict[str, Any]], keys: tuple[str, ...] = ("method", "nfe_base", "nfe_refiner")) -> list[
    dict[str, Any]
]:
    """One row per distinct ``keys``: each of :data:`METRICS` as ``mean ± std`` over the evaluation seeds."""
    return tables.summarize(rows, keys, METRICS)


def table_columns(extractor_name: str, first: tuple[tuple[str, str], ...] = ()) -> list[tuple[str, str]]:
    return [*first, ("method", "method"), ("nfe_base", "NFE base"), ("nfe_refiner", "NFE refiner"),
            ("seeds", "seeds")] + [(key, metric_label(key, extractor_name)) for key in METRICS]


def run(ctx: RunContext) -> RunResult:
    setup = prepare(ctx)
    pool = sample_pool(ctx, setup)
    cache = inversion_cache(ctx, setup)
    refiners = train_refiners(ctx, setup, pool, cache)
    if not ctx.dist.is_main:  # every rank trains; the main process alone evaluates and writes
        return RunResult({}, "")
    data = setup.data
    extractor = build_extractor(ctx, data)
    reference = extractor.extract(data.test_x)
    rows = evaluate_refiners(ctx, setup, refiners, extractor, reference)
    n = ctx.options.num_samples or image_preset(data.image_shape).num_samples
    real = evaluate_row(ctx, {"method": "real", "seed": None}, data.train_x[:n], reference, extractor, "real")
    error = cache.error_summary()
    steps = {"base": setup.base_steps, "refiner": ctx.options.steps or setup.budget.refiner_steps}
    title = (
        f"BFR on `{data.name}` ({data.train_x.shape[0]} training images): base trained {steps['base']} steps, "
        f"each refiner {steps['refiner']}; base sampler = Euler {setup.generator.num_steps} "
        f"steps; {n} samples per row and seed, scored against the {data.test_x.shape[0]} held-out test images "
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
        "inversion_error": error,
        "real": real,
        "rows": rows,
    }
    body = markdown_table(summarize(rows), table_columns(extractor.name))
    return RunResult(metrics, f"## {title}\n\n{body}\n{note}\n\n{floor}\n")


RECIPE = Recipe("bfr", "Table 1: base flow, noise-injection/FMRefiner baselines, DFR and LFR at 1 and 10 NFE", run)
