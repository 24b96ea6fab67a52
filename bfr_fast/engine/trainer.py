"""The training loop: AdamW with warm-up, EMA, clipping after unscaling, autocast, atomic checkpoints, resume.

Usable from Python with any model and any loss ``loss_fn(model, x, y) -> (loss, logs)``; the CLI recipes use it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from bfr_fast.checkpoint import atomic_save, load
from bfr_fast.engine.distributed import DistributedContext
from bfr_fast.progress import progress_bar

log = logging.getLogger("bfr_fast")

LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor | None], tuple[torch.Tensor, dict[str, torch.Tensor]]]
AUTOCAST_DTYPES: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
"""Each training precision's autocast dtype (``None``: no autocast); ``"fp16"`` also scales the gradients."""
PRECISIONS: tuple[str, ...] = tuple(AUTOCAST_DTYPES)


class BatchStream(Protocol):
    """An endless minibatch iterator whose position can be saved (e.g. :class:`bfr_fast.data.InfiniteLoader`)."""

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@dataclass
class TrainConfig:
    """Optimisation settings.

    Attributes:
        steps: Optimizer steps in total (a resumed run continues up to this number).
        lr: Peak learning rate of AdamW, reached linearly after ``warmup_steps``.
        weight_decay: AdamW's decoupled weight decay.
        warmup_steps: Steps of linear learning-rate warm-up from 0.
        ema_decay: Decay of the exponential moving average of the weights (0 disables EMA: the EMA is the model).
        grad_clip: Max global gradient norm, applied after unscaling (0 disables clipping).
        precision: ``"fp32"``, ``"bf16"`` (autocast) or ``"fp16"`` (autocast + gradient scaling).
        checkpoint_every: Steps between checkpoints (a final one is always written).
        log_every: Steps between log lines (each costs one host synchronisation).
    """

    steps: int = 2000
    lr: float = 2e-3
    weight_decay: float = 0.0
    warmup_steps: int = 100
    ema_decay: float = 0.999
    grad_clip: float = 1.0
    precision: str = "fp32"
    checkpoint_every: int = 1000
    log_every: int = 100

    def __post_init__(self) -> None:
        for name in ("steps", "checkpoint_every", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a positive number, got {self.lr}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.grad_clip < 0:
            raise ValueError(f"grad_clip must be >= 0, got {self.grad_clip}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")


class Trainer:
    """Trains ``model`` on ``batches`` by minimising ``loss_fn``; checkpoints to ``checkpoint_path``.

    A checkpoint holds the model, its EMA, optimizer, scheduler, gradient scaler, the batch stream's position and
    every RNG state, so that a resumed run continues exactly as the uninterrupted one would have.

    Args:
        model: The network being trained (unwrapped; DDP wrapping happens here when ``dist`` is enabled).
        loss_fn: ``loss_fn(model, x, y) -> (scalar loss, dict of logged scalars)``.
        batches: Endless ``(x, y)`` stream with ``state_dict``/``load_state_dict``.
        config: Optimisation settings.
        checkpoint_path: Where checkpoints go (``None``: never written).
        dist: Distributed context (default: single process on the model's device).
        description: Label of the progress bar and log lines.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        batches: BatchStream,
        config: TrainConfig,
        checkpoint_path: Path | None = None,
        dist: DistributedContext | None = None,
        description: str = "train",
    ) -> None:
        self.model = model
        self.loss_fn = loss_fn
        self.batches = batches
        self.config = config
        self.checkpoint_path = checkpoint_path
        self.device = next(model.parameters()).device
        self.dist = dist or DistributedContext(device=self.device)
        self.description = description
        self.step = 0
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        warmup = max(config.warmup_steps, 1)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda s: min(1.0, (s + 1) / warmup))
        self.ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay), use_buffers=True)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=config.precision == "fp16")
        # The first step whose loss or gradient norm was not finite (0: none yet), kept on the device so that a
        # step never waits for the host; read where the loop synchronises anyway (logging, checkpoints).
        self._first_nonfinite_step = torch.zeros((), dtype=torch.long, device=self.device)
        self.trained_model: nn.Module = (
            DistributedDataParallel(model, device_ids=[self.device] if self.device.type == "cuda" else None)
            if self.dist.enabled
            else model
        )

    @property
    def ema_model(self) -> nn.Module:
        """The averaged network (the model itself when ``ema_decay`` is 0)."""
        return self.ema.module if self.config.ema_decay > 0 else self.model

    def _autocast(self):
        dtype = AUTOCAST_DTYPES[self.config.precision]
        return nullcontext() if dtype is None else torch.autocast(self.device.type, dtype=dtype)

    def state_dict(self) -> dict[str, Any]:
        """Everything needed for an exact resume."""
        state = {
            "step": self.step,
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "batches": self.batches.state_dict(),
            "rng_cpu": torch.get_rng_state(),
            "config": asdict(self.config),
        }
        if torch.cuda.is_available():
            state["rng_cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores a :meth:`state_dict` (the model architecture and data must match)."""
        self.model.load_state_dict(state["model"])
        self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.batches.load_state_dict(state["batches"])
        torch.set_rng_state(state["rng_cpu"])
        if "rng_cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng_cuda"])
        self.step = int(state["step"])

    def _diverged(self, what: str) -> FloatingPointError:
        """The error that stops a diverged training: what happened, what is on disk, what to change."""
        path = self.checkpoint_path
        kept = f"the last checkpoint {path} is kept" if path is not None and path.is_file() else "no checkpoint"
        return FloatingPointError(f"{self.description}: {what}; {kept}; lower the learning rate "
                                  f"(now {self.config.lr:g})")

    def _raise_if_diverged(self) -> None:
        """Raises FloatingPointError, naming the step, once a loss or a gradient norm was not finite."""
        step = int(self._first_nonfinite_step)
        if step:
            raise self._diverged(f"training diverged at step {step} (the loss or the gradient norm is not finite)")

    def save_checkpoint(self) -> Path | None:
        """Writes the checkpoint atomically (main process only) and returns its path.

        A finite checkpoint is never replaced by a diverged one.

        Raises:
            FloatingPointError: the training diverged (see :meth:`_raise_if_diverged`) or the weights or their
                EMA hold NaN or inf; the file on disk is left as it was.
        """
        if self.checkpoint_path is None or not self.dist.is_main:
            return None
        self._raise_if_diverged()
        state = self.state_dict()
        for name in ("model", "ema"):
            if not all(v.isfinite().all() for v in state[name].values() if v.is_floating_point()):
                raise self._diverged(f"the {name} weights are not finite at step {self.step}")
        return atomic_save(state, self.checkpoint_path)

    def resume(self) -> bool:
        """Loads ``checkpoint_path`` if it exists. Returns whether it did.

        Raises:
            ValueError: naming the file, when it is unreadable or was written for another network or data.
        """
        if self.checkpoint_path is None or not self.checkpoint_path.is_file():
            return False
        state = load(self.checkpoint_path, map_location=self.device)
        try:
            self.load_state_dict(state)
        except (RuntimeError, KeyError, ValueError, TypeError) as error:  # torch's is a page of key mismatches
            detail = " ".join(line.strip() for line in str(error).splitlines()[:2]) or type(error).__name__
            raise ValueError(
                f"{self.checkpoint_path} does not fit this network ({detail[:200]}); it was written for another "
                "model, data set or recipe: resume with the options it was trained with, or delete it to retrain"
            ) from None
        log.info("%s: resumed from %s at step %d", self.description, self.checkpoint_path, self.step)
        return True

    def _train_step(self, x: torch.Tensor, y: torch.Tensor | None) -> dict[str, torch.Tensor]:
        self.optimizer.zero_grad(set_to_none=True)
        with self._autocast():
            loss, logs = self.loss_fn(self.trained_model, x, y)
        self.scaler.scale(loss).backward()
        # Clipping must see the true gradients: unscale first (a no-op unless fp16 scaling is on).
        self.scaler.unscale_(self.optimizer)
        nonfinite = ~loss.detach().isfinite()
        if self.config.grad_clip > 0:
            logs["grad_norm"] = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
            # Under fp16 scaling an inf norm is a skipped step, routine; otherwise the gradients overflowed
            # (clipping would zero them and the run would drift on momentum alone).
            if not self.scaler.is_enabled():
                nonfinite |= ~logs["grad_norm"].isfinite()
        first = self._first_nonfinite_step
        self._first_nonfinite_step = torch.where(nonfinite & (first == 0), self.step + 1, first)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        if self.config.ema_decay > 0:
            self.ema.update_parameters(self.model)
        logs["loss"] = loss.detach()
        return logs

    def _step_start_state(self) -> dict[str, Any]:
        """The batch stream's position and the RNG states as a step begins (a few kB, copied on the host)."""
        state = {"batches": self.batches.state_dict(), "rng_cpu": torch.get_rng_state()}
        if torch.cuda.is_available():
            state["rng_cuda"] = torch.cuda.get_rng_state_all()
        return state

    def _rewind_to(self, state: dict[str, Any]) -> None:
        """Puts the batch stream and the RNGs back where :meth:`_step_start_state` found them."""
        self.batches.load_state_dict(state["batches"])
        torch.set_rng_state(state["rng_cpu"])
        if "rng_cuda" in state:
            torch.cuda.set_rng_state_all(state["rng_cuda"])

    def fit(self) -> dict[str, float]:
        """Trains until ``config.steps``; on Ctrl-C saves a checkpoint first, then re-raises.

        The checkpoint holds the last whole step: a step that Ctrl-C interrupts is redone on resume with the same
        batch and random draws (the stream and RNGs are rewound to its start), so the resumed run is the straight
        one. (Only an interrupt in the few statements between the optimizer's update and the step count would
        have the resumed run redo an applied update.)

        Returns:
            The last logged values (floats).

        Raises:
            FloatingPointError: at the first logging step or checkpoint after a non-finite loss or gradient norm
                (or weights), naming the step; no checkpoint is written from then on.
        """
        self.model.train()
        last: dict[str, float] = {}
        progress = progress_bar(
            enabled=self.dist.is_main, total=self.config.steps, initial=self.step, desc=self.description,
            dynamic_ncols=True,
        )
        step_start = None
        try:
            while self.step < self.config.steps:
                step_start = self._step_start_state()
                x, y = next(self.batches)
                logs = self._train_step(x, y)
                self.step += 1
                step_start = None
                progress.update(1)
                if self.step % self.config.log_every == 0 or self.step == self.config.steps:
                    last = {k: float(v) for k, v in logs.items()}
                    progress.set_postfix({k: f"{v:.4g}" for k, v in last.items()})
                    log.info("%s step %d: %s", self.description, self.step,
                             ", ".join(f"{k}={v:.5g}" for k, v in last.items()))
                    self._raise_if_diverged()
                if self.step % self.config.checkpoint_every == 0:
                    self.save_checkpoint()
        except KeyboardInterrupt:
            if step_start is not None:  # inside a step: the checkpoint resumes by redoing it, batch and draws alike
                self._rewind_to(step_start)
            path = self.save_checkpoint()
            log.warning("%s: interrupted at step %d; checkpoint saved to %s", self.description, self.step, path)
            raise
        finally:
            progress.close()
        self.save_checkpoint()
        self.model.eval()
        return last

