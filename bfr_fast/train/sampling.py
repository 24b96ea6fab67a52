"""Generating evaluation samples with a fixed-step solver, with seeds shared across the rows of a table."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from bfr_fast.solvers import TABLEAUX, ODESolver


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


def balanced_labels(n: int, num_classes: int | None, device: torch.device) -> torch.Tensor | None:
    """Labels 0, 1, ..., K-1, 0, 1, ... (every class equally often), or None for an unconditional model."""
    if num_classes is None:
        return None
    return torch.arange(n, device=device) % num_classes


def source_noise(n: int, shape: tuple[int, ...], seed: int, device: torch.device) -> torch.Tensor:
    """The N(0, I) starting points for seed ``seed``: identical across rows and devices (drawn on the CPU)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn((n, *shape), generator=generator).to(device)


@torch.no_grad()
def generate(
    model: nn.Module,
    spec: SamplerSpec,
    noise: torch.Tensor,
    labels: torch.Tensor | None,
    batch_size: int = 500,
) -> tuple[torch.Tensor, int]:
    """Integrates ``model`` from ``noise`` (t=0) to t=1 in batches.

    Returns:
        ``(samples, nfe)``: samples in ``noise``'s shape (not clamped: the metrics see what the model made) and
        the honest number of model evaluations per sample, as counted by the solver.
    """
    solver = ODESolver(model, method=spec.method)
    outputs, nfe = [], 0
    for start in range(0, noise.shape[0], batch_size):
        extras = {} if labels is None else {"y": labels[start : start + batch_size]}
        x, nfe = solver.sample(noise[start : start + batch_size], num_steps=spec.steps, return_nfe=True, **extras)
        outputs.append(x)
    return torch.cat(outputs), nfe
