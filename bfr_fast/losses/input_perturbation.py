r"""Input perturbation (IP; Ning et al., 2023) for flow matching: train on slightly wrong inputs, the right target.

The model's input is built from a perturbed source, its target from the clean one:

.. math::
    x_t = \alpha(t)\, x_1 + \sigma(t)\,(\epsilon + p\,\xi), \qquad
    L = E\,\| v_\theta(x_t, t) - (\alpha'(t)\, x_1 + \sigma'(t)\, \epsilon) \|^2,

with :math:`\xi \sim N(0, I)` independent of :math:`\epsilon` and :math:`p = 0.1`; on the linear path the target is
:math:`x_1 - \epsilon`. The perturbation imitates the error of the model's own previous steps at sampling time.
One forward pass, with gradient.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from bfr_fast.checks import non_negative_float
from bfr_fast.losses.path_loss import PathLoss, velocity_mse
from bfr_fast.paths import Interpolant


class InputPerturbationLoss(PathLoss):
    """IP: flow matching with the input's source perturbed by ``perturbation * ξ``.

    ξ is drawn after the batch (see :mod:`bfr_fast.losses.path_loss` for the order).

    Args:
        perturbation: :math:`p \\ge 0` (0 is plain flow matching).
        coupling: ``"independent"`` or ``"ot"`` (pairs ε with x1 before the perturbation).
        interpolant: The path (default linear).
        label_dropout: Probability of training a sample unconditionally.
        null_class: The model's null label; needed when ``label_dropout > 0``.

    Raises:
        ValueError: A bad argument; the message names it.
    """

    def __init__(
        self,
        perturbation: float = 0.1,
        coupling: str = "ot",
        interpolant: Interpolant | None = None,
        label_dropout: float = 0.0,
        null_class: int | None = None,
    ) -> None:
        super().__init__(coupling, interpolant, label_dropout, null_class)
        self.perturbation = non_negative_float("perturbation", perturbation)

    @property
    def settings(self) -> dict[str, Any]:
        """The coupling and the perturbation scale."""
        return {**super().settings, "perturbation": self.perturbation}

    def forward(
        self, model: nn.Module, x1: torch.Tensor, y: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        x0, x1, y, t = self.draw(x1, y)
        x_t, _ = self.interpolant.sample(x0 + self.perturbation * torch.randn_like(x0), x1, t)
        return velocity_mse(model(x_t, t, y), self.interpolant.velocity(x0, x1, t)), {}
