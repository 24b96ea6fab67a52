"""Where a pipeline writes and computes: the run folder, the device and ranks, the seed, and whether to resume."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import torch

from bfr_fast.engine.distributed import DistributedContext
from bfr_fast.engine.run_folder import RunFolder

log = logging.getLogger("bfr_fast")


@dataclass
class Workspace:
    """The run a pipeline works in; every other setting reaches a pipeline as an explicit argument.

    Attributes:
        folder: The run folder: checkpoints, caches and sample grids go under it.
        device: Where networks train and sample.
        dist: This process's rank in a ``torchrun`` job (a plain launch is rank 0 of 1).
        seed: The run's seed: minibatch orders, pools and evaluation noise are drawn from it plus fixed offsets.
        resume: Load what the folder already holds (finished networks, caches) instead of recomputing it.
        networks: What each trained network ran with (batch size, steps, learning rate), by name, after every
            default and clipping: ``metrics.json`` records it.
    """

    folder: RunFolder
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    dist: DistributedContext = field(default_factory=DistributedContext)
    seed: int = 0
    resume: bool = False
    networks: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def is_main(self) -> bool:
        """Only the main process writes files, evaluates and shows progress."""
        return self.dist.is_main

    def stop_resuming(self, reason: str) -> None:
        """Recomputes the current stage and every later one although the run resumes: what the folder holds was
        made from other inputs (a generator whose weights or code changed), so neither it nor anything trained
        on it may be loaded.

        Args:
            reason: Why, logged as a warning (the log and the terminal).
        """
        log.warning("%s: recomputing it and every later stage", reason)
        self.resume = False
