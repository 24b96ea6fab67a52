r"""Classifier-free guidance as a velocity model.

:math:`v_w(x, t, y) = v(x, t, \varnothing) + s\,(v(x, t, y) - v(x, t, \varnothing))` with guidance scale
:math:`s` (1: plain conditional, 0: unconditional). The conditional and unconditional halves run as one batched
call of the network, so one guided evaluation is one NFE on a doubled batch.
"""

from __future__ import annotations

import torch
from torch import nn

from bfr_fast.checks import non_negative_float


class ClassifierFreeGuidance(nn.Module):
    """Wraps a class-conditional velocity model with a null class.

    Args:
        model: ``model(x, t, y)`` trained with label dropout to its ``null_class``.
        scale: Guidance scale :math:`s \\ge 0`.
        null_class: The null label; defaults to ``model.null_class``.
    """

    def __init__(self, model: nn.Module, scale: float, null_class: int | None = None) -> None:
        super().__init__()
        null_class = getattr(model, "null_class", None) if null_class is None else null_class
        if null_class is None:
            raise ValueError("null_class: the model has no null class; pass null_class or use a conditional model")
        self.model = model
        self.scale = non_negative_float("scale", scale)
        self.null_class = int(null_class)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if y is None:
            raise ValueError("y: classifier-free guidance needs class labels")
        both = self.model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([y, torch.full_like(y, self.null_class)]))
        cond, uncond = both.chunk(2)
        return uncond + self.scale * (cond - uncond)
