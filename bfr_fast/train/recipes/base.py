"""What a recipe is: a named experiment run by the CLI inside a run folder."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from bfr_fast.engine.distributed import DistributedContext
from bfr_fast.engine.run_folder import RunFolder
from bfr_fast.pipelines.workspace import Workspace
from bfr_fast.train.options import RunOptions


@dataclass(frozen=True)
class RunContext:
    """Everything a recipe needs: the CLI's options, which it resolves into a pipeline's settings, and the
    workspace (run folder, device, ranks, seed, resume) that the pipelines work in."""

    options: RunOptions
    workspace: Workspace

    @property
    def folder(self) -> RunFolder:
        return self.workspace.folder

    @property
    def device(self) -> torch.device:
        return self.workspace.device

    @property
    def dist(self) -> DistributedContext:
        return self.workspace.dist

    @property
    def networks(self) -> dict[str, dict[str, Any]]:
        """What each trained network ran with (:attr:`~bfr_fast.pipelines.Workspace.networks`)."""
        return self.workspace.networks


@dataclass(frozen=True)
class RunResult:
    """What a recipe produced: the ``metrics.json`` payload (with its ``"rows"``) and the ``results.md`` text."""

    metrics: dict[str, Any]
    results_md: str


SPECIFIC_OPTIONS = frozenset({"select", "seeds", "base_steps", "sampler_steps", "inception", "data_root", "topology",
                              "selection", "energy_constraints", "coordinates"})
"""Options that only some recipes read; one given to a recipe that declares it does not read it is refused."""


@dataclass(frozen=True)
class Recipe:
    """A named experiment.

    Attributes:
        name: The ``--recipe`` value.
        summary: One line for ``--help``.
        run: Runs the experiment (writing checkpoints and sample grids into the run folder) and returns its
            results, which the CLI writes to ``metrics.json`` and ``results.md``.
        reads: Which of :data:`SPECIFIC_OPTIONS` the recipe reads (``None``: not declared, none refused).
    """

    name: str
    summary: str
    run: Callable[[RunContext], RunResult]
    reads: frozenset[str] | None = None

    def check_options(self, options: RunOptions) -> None:
        """Refuses a recipe-specific option that this recipe would ignore (``config.json`` would record a lie).

        Raises:
            ValueError: naming the option and the recipes that read it.
        """
        if self.reads is None:
            return
        for name in sorted(SPECIFIC_OPTIONS - self.reads):
            if getattr(options, name) is not None:
                flag = f"--{name.replace('_', '-')}"
                raise ValueError(f"{flag}: the {self.name} recipe does not use it; drop {flag}")
