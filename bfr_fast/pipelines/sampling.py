"""Evaluation sampling: fixed-step sampler specs, and the noise and labels shared by every row of a table.

The sampling itself is :class:`~bfr_fast.refiners.FrozenGenerator` (see :meth:`SamplerSpec.generator`)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from bfr_fast.refiners import FrozenGenerator
from bfr_fast.solvers import TABLEAUX
from bfr_fast.solvers.ode_solver import VelocityModel


@dataclass(frozen=True)
class SamplerSpec:
    """A fixed-step ODE sampler: the method and its number of steps.

    Attributes:
        method: ``"euler"``, ``"midpoint"``, ``"heun"`` or ``"rk4"``.
        steps: Number of steps on the uniform grid of [0, 1].
    """

    method: str
    steps: int

    def __post_init__(self) -> None:
        if self.method not in TABLEAUX:
            raise ValueError(f"method must be one of {sorted(TABLEAUX)}, got {self.method!r}")
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")

    @property
    def nfe(self) -> int:
        """Velocity-model calls per sample: steps times the method's stages."""
        return self.steps * TABLEAUX[self.method].num_stages

    @property
    def label(self) -> str:
        return f"{self.method}, {self.steps} steps"

    def generator(self, model: VelocityModel, batch_size: int = 500) -> FrozenGenerator:
        """``model`` sampled (and inverted) with this sampler."""
        return FrozenGenerator(model, method=self.method, num_steps=self.steps, batch_size=batch_size)


def balanced_labels(n: int, num_classes: int | None, device: torch.device) -> torch.Tensor | None:
    """Labels 0, 1, ..., K-1, 0, 1, ... (every class equally often), or None for an unconditional model."""
    if num_classes is None:
        return None
    return torch.arange(n, device=device) % num_classes


def source_noise(n: int, shape: tuple[int, ...], seed: int, device: torch.device) -> torch.Tensor:
    """The N(0, I) starting points for seed ``seed``: identical across rows and devices (drawn on the CPU)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn((n, *shape), generator=generator).to(device)
