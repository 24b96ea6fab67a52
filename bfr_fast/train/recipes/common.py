"""Steps shared by the image recipes: data, base flow training, feature extractor, evaluation of sample sets."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import torch
from torch import nn

from bfr_fast.checkpoint import load
from bfr_fast.data import ImageDataset, InfiniteLoader, load_dataset
from bfr_fast.losses import FlowMatchingLoss, PathLoss
from bfr_fast.metrics import ClassifierExtractor, FeatureExtractor, ImageFeatures, InceptionExtractor, evaluate_images
from bfr_fast.report import save_image_grid
from bfr_fast.train.options import default_cache_dir
from bfr_fast.train.recipes.base import RunContext
from bfr_fast.train.recipes.presets import image_preset
from bfr_fast.train.trainer import TrainConfig, Trainer

log = logging.getLogger("bfr_fast")

LABEL_DROPOUT = 0.1  # classifier-free guidance training, as in the usual conditional flow-matching recipes


def load_data(ctx: RunContext, default: str = "digits") -> ImageDataset:
    """The data set named by ``--data`` (``default`` otherwise), from ``--data-root`` when it needs files."""
    name = ctx.options.data or default
    root = str(ctx.options.data_root) if ctx.options.data_root is not None else None
    return load_dataset(name, root=root)


def select(ctx: RunContext, available: Sequence[str], aliases: dict[str, str] | None = None) -> list[str]:
    """The parts named by ``--select`` (comma-separated, in ``available``'s order), or all of ``available``.

    Args:
        ctx: The run.
        available: The recipe's parts.
        aliases: Other accepted names, each mapped to a part (e.g. ``"table6"`` -> ``"table6-normalisation"``).

    Raises:
        ValueError: A name that is neither in ``available`` nor an alias.
    """
    if ctx.options.select is None:
        return list(available)
    aliases = aliases or {}
    wanted = {aliases.get(p.strip(), p.strip()) for p in ctx.options.select.split(",") if p.strip()}
    unknown = sorted(wanted - set(available))
    if unknown:
        raise ValueError(
            f"--select: unknown {unknown} for recipe {ctx.options.recipe!r}; choose from {list(available)}"
        )
    return [name for name in available if name in wanted]


def ema_decay(steps: int) -> float:
    """EMA decay for a run of ``steps``: 0.999, lowered for short runs so that the early weights keep little mass.

    An EMA started from the first weights keeps a weight :math:`d^{steps}` on them; at 0.999 that is 8% after 2500
    steps but 27% after 1300 and 74% after 300 (measured: a 1300-step digits base scored FD 17.6 with 0.999). With
    :math:`d = \\min(0.999, 1 - 2.5/steps)` it stays at about :math:`e^{-2.5}` = 8% for any budget.
    """
    return min(0.999, max(0.0, 1.0 - 2.5 / steps))


class OptimBudget(Protocol):
    """What :func:`train_config` reads from a preset: its default steps and learning rate."""

    steps: int
    lr: float


def base_context(ctx: RunContext) -> RunContext:
    """``ctx`` as the base generator of a refiner recipe sees it: ``--base-steps``, when given, as its ``--steps``.

    The refiners are cheap next to their base (the papers train them for a fraction of its steps), so a short run
    can shrink the refiners with ``--steps`` and keep a better-trained base with ``--base-steps``.
    """
    steps = ctx.options.base_steps
    return ctx if steps is None else replace(ctx, options=replace(ctx.options, steps=steps))


def train_config(ctx: RunContext, preset: OptimBudget, steps: int | None = None) -> TrainConfig:
    """The preset's optimisation settings with the CLI's overrides applied."""
    o = ctx.options
    total = o.steps or steps or preset.steps
    return TrainConfig(
        steps=total,
        lr=o.lr or preset.lr,
        warmup_steps=min(200, total // 10),
        ema_decay=ema_decay(total),
        precision=o.precision,
        checkpoint_every=max(total // 5, 1),
        log_every=max(total // 50, 1),
    )


LossFactory = Callable[[nn.Module], PathLoss]
"""Builds a training loss for a freshly built network (which knows its null class for label dropout)."""


class TrainedFlow(NamedTuple):
    """A trained network: its EMA copy (eval mode, no gradients), its trainer (``step``, config) and its loss."""

    model: nn.Module
    trainer: Trainer
    loss: Callable[..., tuple[torch.Tensor, dict[str, torch.Tensor]]]


def fit_network(
    ctx: RunContext,
    name: str,
    model: nn.Module,
    loss: Callable[..., tuple[torch.Tensor, dict[str, torch.Tensor]]],
    x: torch.Tensor,
    y: torch.Tensor | None,
    config: TrainConfig,
    batch_size: int,
    offset: int = 0,
    start_from: Path | None = None,
) -> TrainedFlow:
    """Trains ``model`` with ``loss(model, x, y)`` on minibatches of ``(x, y)``; returns its EMA copy, frozen.

    Samples may have any shape (images, flat vectors); ``y`` None means unlabelled (the loss gets None).
    ``--batch-size`` overrides ``batch_size``; batches are seeded with ``--seed`` + ``offset`` (+ rank), so that
    the networks of one run see different orders. The trainer checkpoint is ``checkpoints/<name>.pt``; with
    ``--resume`` training continues from it (a finished network loads without training). Otherwise, with
    ``start_from`` (another trainer checkpoint of the same architecture and data), training continues from that
    state: weights, EMA, optimiser, step, batch position and RNG, so that two networks started from one checkpoint
    see the same batches; only ``loss`` and ``config`` are this call's.
    """
    labelled = y is not None
    targets = y if labelled else torch.zeros(x.shape[0], dtype=torch.int64)
    asked = ctx.options.batch_size or batch_size
    batch_size = min(asked, x.shape[0])
    if batch_size < asked:
        log.warning("%s: batch size %d exceeds the %d training samples; batches of %d", name, asked, x.shape[0],
                    batch_size)
    ctx.networks[name] = {"batch_size": batch_size, "steps": config.steps, "lr": config.lr}
    generator = torch.Generator().manual_seed(ctx.options.seed + offset + ctx.dist.rank)
    batches = InfiniteLoader(x, targets, batch_size, generator, device=ctx.device)

    def loss_fn(m: nn.Module, xb: torch.Tensor, yb: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return loss(m, xb, yb if labelled else None)

    trainer = Trainer(model.to(ctx.device), loss_fn, batches, config, ctx.folder.checkpoint(name), ctx.dist,
                      description=name)
    resumed = ctx.options.resume and trainer.resume()
    if not resumed and start_from is not None:
        trainer.load_state_dict(load(start_from, map_location=ctx.device))
    trainer.fit()
    ema = trainer.ema_model.eval()
    ema.requires_grad_(False)
    return TrainedFlow(ema, trainer, loss)


def train_flow(
    ctx: RunContext,
    data: ImageDataset,
    make_loss: LossFactory,
    name: str,
    steps: int | None = None,
    seed: int | None = None,
    config: TrainConfig | None = None,
    start_from: Path | None = None,
) -> TrainedFlow:
    """Trains the preset's (class-conditional when the data is labelled) UNet with any path loss.

    With ``seed`` given, the global torch RNG is re-seeded first, so that every loss trained with the same seed
    starts from the same initial weights and sees the same minibatches (and the same first random draws); without
    it the run's ``--seed`` state carries on, as it always did for the base flow.

    Args:
        ctx: The run.
        data: Training images (and labels).
        make_loss: ``make_loss(network) -> loss`` with ``loss(model, x1, y) -> (scalar, logs)``.
        name: Checkpoint name (``--resume`` continues or loads it) and progress-bar label.
        steps: Training steps (``--steps`` overrides; default the preset's).
        seed: Training seed (default ``--seed``, without re-seeding the global RNG).
        config: Optimisation settings (default :func:`train_config` of the preset with ``steps``).
        start_from: A trainer checkpoint to continue from (:func:`fit_network`).

    Returns:
        The EMA network in eval mode without gradients, the trainer and the loss.
    """
    preset = image_preset(data.image_shape)
    if seed is not None:
        torch.manual_seed(seed + ctx.dist.rank)
    model = preset.build(data.image_shape[0], data.num_classes).to(ctx.device)
    loss = make_loss(model)
    offset = 0 if seed is None else seed - ctx.options.seed  # batches seeded with `seed` (+ rank)
    return fit_network(ctx, name, model, loss, data.train_x, data.train_y if data.is_labelled else None,
                       config or train_config(ctx, preset, steps), preset.batch_size, offset, start_from)


def label_dropout(data: ImageDataset) -> float:
    """Classifier-free guidance label dropout: :data:`LABEL_DROPOUT` on labelled data, 0 otherwise."""
    return LABEL_DROPOUT if data.is_labelled else 0.0


def train_base_flow(ctx: RunContext, data: ImageDataset, name: str = "base", steps: int | None = None) -> nn.Module:
    """Trains a (class-conditional when the data is labelled) OT-CFM UNet; returns its EMA network in eval mode."""

    def make_loss(model: nn.Module) -> PathLoss:
        return FlowMatchingLoss(coupling="ot", label_dropout=label_dropout(data), null_class=model.null_class)

    return train_flow(ctx, data, make_loss, name, steps).model


def build_extractor(ctx: RunContext, data: ImageDataset) -> FeatureExtractor:
    """Inception from ``--inception`` when given, else the classifier trained (and cached) on ``data``."""
    if ctx.options.inception is not None:
        return InceptionExtractor(ctx.options.inception, device=ctx.device)
    if not data.is_labelled:
        raise ValueError(
            f"data set {data.name!r} has no labels, so no classifier can be trained as a feature extractor; "
            "pass --inception PATH to clean-fid's inception-2015-12-05.pt"
        )
    extractor = ClassifierExtractor.load_or_train(
        ctx.options.cache_dir or default_cache_dir(),
        data.name,
        data.train_x,
        data.train_y,
        data.test_x,
        data.test_y,
        device=ctx.device,
        progress=ctx.dist.is_main,
    )
    log.info("feature extractor %s: test accuracy %.4f", extractor.name, extractor.test_accuracy)
    return extractor


def evaluate_row(
    ctx: RunContext,
    row: dict[str, Any],
    samples: torch.Tensor,
    reference: ImageFeatures,
    extractor: FeatureExtractor,
    grid_name: str,
) -> dict[str, Any]:
    """Scores ``samples`` against the reference features, saves the first 100 as a grid, and returns the row."""
    metrics = evaluate_images(samples, reference, extractor, kid_subset_size=min(1000, samples.shape[0]))
    scale = max(1, 64 // samples.shape[-1])
    save_image_grid(samples[:100], ctx.folder.samples(grid_name), nrow=10, scale=scale)
    row = {**row, **metrics, "grid": f"samples/{grid_name}.png"}
    log.info("%s", row)
    return row
