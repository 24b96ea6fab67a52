r"""The frozen base generator of BFR: a pretrained velocity model with a fixed-step sampler.

:math:`G(z)` integrates the base ODE from noise (t=0) to data (t=1); :math:`G^{-1}(x)` integrates it back on the same
grid (:meth:`ODESolver.invert <bfr_fast.solvers.ODESolver.invert>`). Refiners meet the base only through this
object, and only while their training data is made (a pool of generated samples, an inversion cache) or, for the
LFR, when the refined latent is decoded.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from bfr_fast.checks import positive_int
from bfr_fast.progress import progress_bar
from bfr_fast.solvers import TABLEAUX, ODESolver
from bfr_fast.solvers.ode_solver import VelocityModel


class FrozenGenerator:
    """A base velocity model ``model(x, t, y=None)`` sampled (and inverted) with one fixed-step method.

    The model is only called, never trained or put in another mode: give it in eval mode (e.g. an EMA copy), and
    wrap it in :class:`~bfr_fast.models.ClassifierFreeGuidance` first for guided sampling. A DDPM plugs in as
    :class:`~bfr_fast.paths.ProbabilityFlowVelocity`.

    Args:
        model: The base velocity model.
        method: ``"euler"``, ``"midpoint"``, ``"heun"`` or ``"rk4"``.
        num_steps: Steps over [0, 1].
        batch_size: Samples per solver call (memory bound only: results do not depend on it).

    Raises:
        ValueError: Unknown ``method``, or a non-positive ``num_steps`` or ``batch_size``.
    """

    def __init__(self, model: VelocityModel, method: str = "euler", num_steps: int = 20, batch_size: int = 500) -> None:
        positive_int("num_steps", num_steps)
        positive_int("batch_size", batch_size)
        self.solver = ODESolver(model, method=method)
        self.model = model
        self.method = method
        self.num_steps = num_steps
        self.batch_size = batch_size

    @property
    def nfe(self) -> int:
        """Base-model calls per sample for one :meth:`sample` (or :meth:`invert`): steps × stages."""
        return self.num_steps * TABLEAUX[self.method].num_stages

    def sample(
        self, noise: torch.Tensor, y: torch.Tensor | None = None, progress: bool = False
    ) -> tuple[torch.Tensor, int]:
        """:math:`G(z)`: integrates from ``noise`` at t=0 to t=1, in batches, without gradients.

        Args:
            noise: ``(N, ...)`` starting points.
            y: ``(N,)`` class labels for a conditional model, or None.
            progress: Show a progress bar over the batches (when stderr is a terminal).

        Returns:
            ``(samples, nfe)``: samples in ``noise``'s shape (not clamped) and the base NFE per sample.
        """
        return self._run(self.solver.sample, noise, y, progress, "generate")

    def invert(
        self, x: torch.Tensor, y: torch.Tensor | None = None, progress: bool = False
    ) -> tuple[torch.Tensor, int]:
        """:math:`G^{-1}(x)`: integrates from ``x`` at t=1 back to t=0 on the sampling grid (same arguments)."""
        return self._run(self.solver.invert, x, y, progress, "invert")

    def _run(
        self, integrate: Callable[..., tuple[torch.Tensor, int]], x: torch.Tensor, y: torch.Tensor | None,
        progress: bool, label: str,
    ) -> tuple[torch.Tensor, int]:
        if not isinstance(x, torch.Tensor) or x.dim() < 1 or x.shape[0] == 0:
            raise ValueError(f"expected a non-empty (N, ...) tensor, got {getattr(x, 'shape', type(x).__name__)}")
        if y is not None and (not isinstance(y, torch.Tensor) or y.shape != (x.shape[0],)):
            raise ValueError(f"y must be a ({x.shape[0]},) tensor of labels, got {getattr(y, 'shape', y)!r}")
        outputs, nfe = [], 0
        starts = range(0, x.shape[0], self.batch_size)
        for start in progress_bar(starts, enabled=progress, desc=label, dynamic_ncols=True):
            extras = {} if y is None else {"y": y[start : start + self.batch_size]}
            chunk = x[start : start + self.batch_size]
            out, nfe = integrate(chunk, num_steps=self.num_steps, return_nfe=True, **extras)
            outputs.append(out)
        return torch.cat(outputs), nfe
