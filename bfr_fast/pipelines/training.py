"""Training networks inside a run: optimisation settings from a budget, checkpointed fitting, flow bases."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn

from bfr_fast.checkpoint import load
from bfr_fast.data import ImageDataset, InfiniteLoader
from bfr_fast.engine.trainer import TrainConfig, Trainer
from bfr_fast.losses import FlowMatchingLoss, PathLoss
from bfr_fast.models import UNet
from bfr_fast.pipelines.presets import image_preset
from bfr_fast.pipelines.workspace import Workspace

log = logging.getLogger("bfr_fast")

LABEL_DROPOUT = 0.1  # classifier-free guidance training, as in the usual conditional flow-matching recipes

Loss = Callable[..., tuple[torch.Tensor, dict[str, torch.Tensor]]]
"""``loss(model, x, y) -> (scalar, logs)``."""

LossFactory = Callable[[UNet], PathLoss]
"""Builds a training loss for a freshly built network (which knows its null class for label dropout)."""


def ema_decay(steps: int) -> float:
    """EMA decay for a run of ``steps``: 0.999, lowered for short runs so that the early weights keep little mass.

    An EMA started from the first weights keeps a weight :math:`d^{steps}` on them; at 0.999 that is 8% after 2500
    steps but 27% after 1300 and 74% after 300. With :math:`d = \\min(0.999, 1 - 2.5/steps)` it stays at about
    :math:`e^{-2.5}` = 8% for any budget.
    """
    return min(0.999, max(0.0, 1.0 - 2.5 / steps))


def train_config(steps: int, lr: float, precision: str = "fp32") -> TrainConfig:
    """The optimisation settings of a network trained for ``steps`` at peak learning rate ``lr``.

    Linear warm-up over a tenth of the steps (at most 200), an EMA sized by :func:`ema_decay`, five checkpoints and
    fifty log lines per run.
    """
    return TrainConfig(
        steps=steps,
        lr=lr,
        warmup_steps=min(200, steps // 10),
        ema_decay=ema_decay(steps),
        precision=precision,
        checkpoint_every=max(steps // 5, 1),
        log_every=max(steps // 50, 1),
    )


class TrainedFlow(NamedTuple):
    """A trained network: its EMA copy (eval mode, no gradients), its trainer (``step``, config) and its loss."""

    model: nn.Module
    trainer: Trainer
    loss: Loss


def fit_network(
    ws: Workspace,
    name: str,
    model: nn.Module,
    loss: Loss,
    x: torch.Tensor,
    y: torch.Tensor | None,
    config: TrainConfig,
    batch_size: int,
    offset: int = 0,
    start_from: Path | None = None,
) -> TrainedFlow:
    """Trains ``model`` with ``loss(model, x, y)`` on minibatches of ``(x, y)``; returns its EMA copy, frozen.

    Samples may have any shape (images, flat vectors); ``y`` None means unlabelled (the loss gets None). A
    ``batch_size`` above the number of samples is clipped to it (``ws.networks`` records what ran). Batches are
    seeded with ``ws.seed`` + ``offset`` (+ rank), so that the networks of one run see different orders. The
    trainer checkpoint is ``checkpoints/<name>.pt``; with ``ws.resume`` training continues from it (a finished
    network loads without training). Otherwise, with ``start_from`` (another trainer checkpoint of the same
    architecture and data), training continues from that state: weights, EMA, optimiser, step, batch position and
    RNG, so that two networks started from one checkpoint see the same batches; only ``loss`` and ``config`` are
    this call's.
    """
    labelled = y is not None
    targets = y if y is not None else torch.zeros(x.shape[0], dtype=torch.int64)
    clipped = min(batch_size, x.shape[0])
    if clipped < batch_size:
        log.warning("%s: batch size %d exceeds the %d training samples; batches of %d", name, batch_size,
                    x.shape[0], clipped)
    ws.networks[name] = {"batch_size": clipped, "steps": config.steps, "lr": config.lr}
    generator = torch.Generator().manual_seed(ws.seed + offset + ws.dist.rank)
    batches = InfiniteLoader(x, targets, clipped, generator, device=ws.device)

    def loss_fn(
        m: nn.Module, xb: torch.Tensor, yb: torch.Tensor | None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return loss(m, xb, yb if labelled else None)

    trainer = Trainer(model.to(ws.device), loss_fn, batches, config, ws.folder.checkpoint(name), ws.dist,
                      description=name)
    resumed = ws.resume and trainer.resume()
    if not resumed and start_from is not None:
        trainer.load_state_dict(load(start_from, map_location=ws.device))
    trainer.fit()
    ema = trainer.ema_model.eval()
    ema.requires_grad_(False)
    return TrainedFlow(ema, trainer, loss)


def train_flow(
    ws: Workspace,
    data: ImageDataset,
    make_loss: LossFactory,
    name: str,
    config: TrainConfig,
    batch_size: int | None = None,
    seed: int | None = None,
    start_from: Path | None = None,
) -> TrainedFlow:
    """Trains the preset's (class-conditional when the data is labelled) UNet with any path loss.

    With ``seed`` given, the global torch RNG is re-seeded first, so that every loss trained with the same seed
    starts from the same initial weights and sees the same minibatches (and the same first random draws); without
    it the run's RNG state carries on, as it does for a base flow.

    Args:
        ws: The run.
        data: Training images (and labels).
        make_loss: ``make_loss(network) -> loss`` with ``loss(model, x1, y) -> (scalar, logs)``.
        name: Checkpoint name (``ws.resume`` continues or loads it) and progress-bar label.
        config: Optimisation settings (:func:`train_config`).
        batch_size: Minibatch size (default the preset's).
        seed: Training seed (default ``ws.seed``, without re-seeding the global RNG).
        start_from: A trainer checkpoint to continue from (:func:`fit_network`).

    Returns:
        The EMA network in eval mode without gradients, the trainer and the loss.
    """
    preset = image_preset(data.image_shape)
    if seed is not None:
        torch.manual_seed(seed + ws.dist.rank)
    model = preset.build(data.image_shape[0], data.num_classes).to(ws.device)
    loss = make_loss(model)
    offset = 0 if seed is None else seed - ws.seed  # batches seeded with `seed` (+ rank)
    return fit_network(ws, name, model, loss, data.train_x, data.train_y if data.is_labelled else None, config,
                       batch_size or preset.batch_size, offset, start_from)


def label_dropout(data: ImageDataset) -> float:
    """Classifier-free guidance label dropout: :data:`LABEL_DROPOUT` on labelled data, 0 otherwise."""
    return LABEL_DROPOUT if data.is_labelled else 0.0


def train_base_flow(
    ws: Workspace, data: ImageDataset, config: TrainConfig, batch_size: int | None = None, name: str = "base"
) -> nn.Module:
    """Trains a (class-conditional when the data is labelled) OT-CFM UNet; returns its EMA network in eval mode."""

    def make_loss(model: UNet) -> PathLoss:
        return FlowMatchingLoss(coupling="ot", label_dropout=label_dropout(data), null_class=model.null_class)

    return train_flow(ws, data, make_loss, name, config, batch_size).model
