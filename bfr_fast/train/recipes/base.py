"""What a recipe is: a named experiment run by the CLI inside a run folder."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from bfr_fast.train.distributed import DistributedContext
from bfr_fast.train.options import RunOptions
from bfr_fast.train.run_folder import RunFolder


@dataclass
class RunContext:
    """Everything a recipe needs: the options, where to write, and where to compute."""

    options: RunOptions
    folder: RunFolder
    device: torch.device
    dist: DistributedContext


@dataclass(frozen=True)
class RunResult:
    """What a recipe produced: the ``metrics.json`` payload (with its ``"rows"``) and the ``results.md`` text."""

    metrics: dict[str, Any]
    results_md: str


@dataclass(frozen=True)
class Recipe:
    """A named experiment.

    Attributes:
        name: The ``--recipe`` value.
        summary: One line for ``--help``.
        run: Runs the experiment (writing checkpoints and sample grids into the run folder) and returns its
            results, which the CLI writes to ``metrics.json`` and ``results.md``.
    """

    name: str
    summary: str
    run: Callable[[RunContext], RunResult]
