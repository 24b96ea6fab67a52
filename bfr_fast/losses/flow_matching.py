r"""Conditional flow matching (I-CFM and OT-CFM), with label dropout for classifier-free guidance.

With source :math:`x_0 \sim N(0, I)`, data :math:`x_1`, :math:`t \sim U(0, 1)` and the linear path
:math:`x_t = (1 - t) x_0 + t x_1`, the loss is :math:`E \| v_\theta(x_t, t, y) - (x_1 - x_0) \|^2`.
OT-CFM first re-pairs the minibatch by exact optimal transport (within each class when labels are given).
"""

from __future__ import annotations

import torch
from torch import nn

from bfr_fast.paths import LinearPath, independent_coupling, ot_coupling

COUPLINGS = {"independent": independent_coupling, "ot": ot_coupling}


def drop_labels(y: torch.Tensor | None, probability: float, null_class: int | None) -> torch.Tensor | None:
    """Replaces each label by ``null_class`` with the given probability (classifier-free guidance training)."""
    if y is None or probability == 0.0:
        return y
    if null_class is None:
        raise ValueError("null_class is required when label_dropout > 0")
    drop = torch.rand(y.shape, device=y.device) < probability
    return torch.where(drop, torch.full_like(y, null_class), y)


class FlowMatchingLoss(nn.Module):
    """The flow-matching loss ``loss(model, x1, y=None) -> (scalar, logs)``.

    Args:
        coupling: ``"independent"`` (I-CFM) or ``"ot"`` (OT-CFM, exact minibatch OT per class).
        sigma: Path noise of :class:`bfr_fast.paths.LinearPath`.
        label_dropout: Probability of training a sample unconditionally (label set to ``null_class``).
        null_class: The model's null label (e.g. ``UNet.null_class``); needed when ``label_dropout > 0``.
    """

    def __init__(
        self, coupling: str = "ot", sigma: float = 0.0, label_dropout: float = 0.0, null_class: int | None = None
    ) -> None:
        super().__init__()
        if coupling not in COUPLINGS:
            raise ValueError(f"coupling must be one of {sorted(COUPLINGS)}, got {coupling!r}")
        if not 0.0 <= label_dropout <= 1.0:
            raise ValueError(f"label_dropout must be in [0, 1], got {label_dropout}")
        if label_dropout > 0 and null_class is None:
            raise ValueError("null_class is required when label_dropout > 0")
        self.coupling = coupling
        self.path = LinearPath(sigma)
        self.label_dropout = label_dropout
        self.null_class = null_class

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
        x0 = torch.randn_like(x1) if x0 is None else x0
        x0, x1, y = COUPLINGS[self.coupling](x0, x1, y)
        t = torch.rand(x1.shape[0], device=x1.device)
        x_t, u = self.path.sample(x0, x1, t)
        pred = model(x_t, t, drop_labels(y, self.label_dropout, self.null_class))
        loss = (pred.float() - u.float()).pow(2).mean()
        return loss, {}
