r"""Scheduled sampling for flow matching: SDSS (one simulated step) and MDSS (four), with the static target.

From :math:`x_{t_s}` the model simulates its own steps to :math:`\hat x` at :math:`t_e`
(:mod:`bfr_fast.losses.simulation`), and is trained there towards the target of the original pair:

.. math::
    L = E\,\| v_\theta(\hat x, t_e) - (\alpha'(t_e)\, x_1 + \sigma'(t_e)\, \epsilon) \|^2,

:math:`x_1 - \epsilon` on the linear path: the target does not follow the drifted state (it is "static").
SDSS is ``steps=1`` (:math:`t_e \sim U(t_s, 1)`). MDSS as the DEFAR paper ran it (its Appendix E) is ``steps=4,
real_steps=1``: one real simulated step, then three analytical steps that hold its velocity (the closed form and
the reconstruction are in :mod:`bfr_fast.losses.simulation`); ``steps=4`` alone is the earlier reading, four real
recursive steps.

Cost: ``r + 1`` forward passes per training step (``r = real_steps``, default ``steps``): ``r`` for the simulation
without gradient, then :math:`v_\theta(\hat x, t_e)` with gradient.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from bfr_fast.losses.path_loss import ForwardPasses, PathLoss, velocity_mse
from bfr_fast.losses.simulation import check_simulation, simulate, simulation_times
from bfr_fast.paths import Interpolant


class ScheduledSamplingLoss(PathLoss):
    """SDSS (``steps=1``) or MDSS (``steps=4, real_steps=1``): the flow-matching target at the model's own simulated
    state.

    Args:
        steps: Simulated steps (>= 1).
        timesteps: One of :data:`~bfr_fast.losses.simulation.TIMESTEP_STRATEGIES`.
        real_steps: Steps that call the model, in ``[1, steps]``; the rest are analytical. ``None``: all.
        coupling: ``"independent"`` or ``"ot"``.
        interpolant: The path (default linear; no path noise).
        label_dropout: Probability of training a sample unconditionally (every call of a sample gets the same label).
        null_class: The model's null label; needed when ``label_dropout > 0``.

    Raises:
        ValueError: A bad argument; the message names it.
    """

    def __init__(
        self,
        steps: int = 1,
        timesteps: str = "random",
        real_steps: int | None = None,
        coupling: str = "ot",
        interpolant: Interpolant | None = None,
        label_dropout: float = 0.0,
        null_class: int | None = None,
    ) -> None:
        super().__init__(coupling, interpolant, label_dropout, null_class)
        self.steps = check_simulation(steps, timesteps, self.interpolant, real_steps)
        self.timesteps = timesteps
        # Python ints, as check_simulation returns steps: a NumPy count would make forward_passes NumPy integers,
        # which a run's metrics.json cannot hold. real_steps is an integer in [1, steps] (checked above).
        self.real_steps = self.steps if real_steps is None else int(real_steps)

    @property
    def forward_passes(self) -> ForwardPasses:
        """``real_steps`` simulation calls without gradient, one call with."""
        return ForwardPasses(self.real_steps + 1, 1)

    @property
    def settings(self) -> dict[str, Any]:
        """The coupling, the simulated steps (real of total) and their times."""
        return {**super().settings, "steps": f"{self.real_steps}/{self.steps} real", "timesteps": self.timesteps}

    def forward(
        self, model: nn.Module, x1: torch.Tensor, y: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        x0, x1, y, t_start = self.draw(x1, y)
        times = simulation_times(t_start, self.steps, self.timesteps, self.interpolant.t_max)
        x_hat = simulate(model, self.interpolant.point(x0, x1, t_start), times, y, real_steps=self.real_steps)
        t_end = times[-1]
        return velocity_mse(model(x_hat, t_end, y), self.interpolant.velocity(x0, x1, t_end)), {}
