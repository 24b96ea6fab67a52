r"""Conditional flow matching (I-CFM and OT-CFM), with label dropout for classifier-free guidance.

With source :math:`x_0 \sim N(0, I)`, data :math:`x_1`, :math:`t \sim U(0, 1)` and the linear path
:math:`x_t = (1 - t) x_0 + t x_1`, the loss is :math:`E \| v_\theta(x_t, t, y) - (x_1 - x_0) \|^2`; along another
interpolant :math:`x_t = \alpha x_1 + \sigma x_0` the target is :math:`\alpha' x_1 + \sigma' x_0`.
OT-CFM first re-pairs the minibatch by exact optimal transport (within each class when labels are given).
"""

from __future__ import annotations

import torch
from torch import nn

from bfr_fast.losses.path_loss import PathLoss, velocity_mse
from bfr_fast.paths import Interpolant, LinearPath


class FlowMatchingLoss(PathLoss):
    """The flow-matching loss ``loss(model, x1, y=None) -> (scalar, logs)``; one forward pass, with gradient.

    Args:
        coupling: ``"independent"`` (I-CFM) or ``"ot"`` (OT-CFM, exact minibatch OT per class).
        sigma: Path noise of :class:`bfr_fast.paths.LinearPath` (only without an ``interpolant``).
        label_dropout: Probability of training a sample unconditionally (label set to ``null_class``).
        null_class: The model's null label (e.g. ``UNet.null_class``); needed when ``label_dropout > 0``.
        interpolant: The path (default ``LinearPath(sigma)``).

    Raises:
        ValueError: A bad argument, or both ``sigma > 0`` and an ``interpolant``.
    """

    def __init__(
        self,
        coupling: str = "ot",
        sigma: float = 0.0,
        label_dropout: float = 0.0,
        null_class: int | None = None,
        interpolant: Interpolant | None = None,
    ) -> None:
        if interpolant is not None and sigma != 0.0:
            raise ValueError("sigma: path noise belongs to LinearPath; pass interpolant=LinearPath(sigma) instead")
        super().__init__(coupling, LinearPath(sigma) if interpolant is None else interpolant, label_dropout, null_class)

    def forward(
        self, model: nn.Module, x1: torch.Tensor, y: torch.Tensor | None = None, x0: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Loss of one minibatch.

        Args:
            model: Velocity model, called as ``model(x_t, t, y)``.
            x1: ``(B, ...)`` targets (data, t=1).
            y: Optional ``(B,)`` labels of the targets.
            x0: ``(B, ...)`` sources (t=0); default fresh :math:`N(0, I)` noise. A refiner passes its own sources
                (e.g. generated samples), which the coupling then re-pairs like noise.

        Returns:
            ``(loss, logs)``.
        """
        x0, x1, y, t = self.draw(x1, y, x0)
        x_t, u = self.interpolant.sample(x0, x1, t)
        return velocity_mse(model(x_t, t, y), u), {}
