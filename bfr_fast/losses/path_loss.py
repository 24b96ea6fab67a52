r"""What every path-based training loss shares: the noise, the coupling, the times, the labels.

A batch is drawn in one fixed order, so that losses built on it see the same random numbers as
:class:`~bfr_fast.losses.FlowMatchingLoss` for the same seed: the source :math:`\epsilon \sim N(0, I)`
(``torch.randn_like(x1)``), the coupling, the times :math:`t \sim U(0, t_\max)` (``t_max * torch.rand(B)``, with
:math:`t_\max` the interpolant's, 1 for the linear path), then the label dropout.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import nn

from bfr_fast.checks import choice, probability
from bfr_fast.paths import Interpolant, LinearPath, independent_coupling, ot_coupling

COUPLINGS = {"independent": independent_coupling, "ot": ot_coupling}


def drop_labels(y: torch.Tensor | None, probability: float, null_class: int | None) -> torch.Tensor | None:
    """Replaces each label by ``null_class`` with the given probability (classifier-free guidance training)."""
    if y is None or probability == 0.0:
        return y
    if null_class is None:
        raise ValueError("null_class is required when label_dropout > 0")
    drop = torch.rand(y.shape, device=y.device) < probability
    return torch.where(drop, torch.full_like(y, null_class), y)


def velocity_mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error over every element, in float32 (or wider) whatever the model's output dtype."""
    compute = torch.promote_types(pred.dtype, torch.float32)
    return (pred.to(compute) - target.to(compute)).pow(2).mean()


class ForwardPasses(NamedTuple):
    """The cost of one training step: model calls on the batch, and how many of them record a graph."""

    total: int
    with_grad: int

    @property
    def compute(self) -> int:
        """The step's compute in forward-pass units: a backward pass costs about two forwards, so
        ``total + 2 * with_grad`` (plain flow matching: 3; DEFAR with ADR and FC: 7, i.e. 2.33 times FM)."""
        return self.total + 2 * self.with_grad


class PathBatch(NamedTuple):
    """One drawn training batch.

    Attributes:
        x0: ``(B, ...)`` sources, reordered by the coupling.
        x1: ``(B, ...)`` data.
        y: ``(B,)`` labels after dropout, or ``None``.
        t: ``(B,)`` float32 times in ``[0, t_max)``.
    """

    x0: torch.Tensor
    x1: torch.Tensor
    y: torch.Tensor | None
    t: torch.Tensor


class PathLoss(nn.Module):
    """Base of the losses ``loss(model, x1, y=None) -> (scalar, logs)`` trained along an interpolant.

    Args:
        coupling: ``"independent"`` (I-CFM) or ``"ot"`` (OT-CFM, exact minibatch OT per class).
        interpolant: The path (default :class:`~bfr_fast.paths.LinearPath`).
        label_dropout: Probability of training a sample unconditionally (label set to ``null_class``).
        null_class: The model's null label (e.g. ``UNet.null_class``); needed when ``label_dropout > 0``.

    Raises:
        ValueError: A bad argument; the message names it.
    """

    def __init__(
        self,
        coupling: str = "ot",
        interpolant: Interpolant | None = None,
        label_dropout: float = 0.0,
        null_class: int | None = None,
    ) -> None:
        super().__init__()
        choice("coupling", coupling, sorted(COUPLINGS))
        if interpolant is not None and not isinstance(interpolant, Interpolant):
            raise ValueError(f"interpolant must be a bfr_fast.paths.Interpolant, got {type(interpolant).__name__}")
        probability("label_dropout", label_dropout)
        if label_dropout > 0 and null_class is None:
            raise ValueError("null_class is required when label_dropout > 0")
        self.coupling = coupling
        self.interpolant = LinearPath() if interpolant is None else interpolant
        self.label_dropout = label_dropout
        self.null_class = null_class

    @property
    def forward_passes(self) -> ForwardPasses:
        """Model calls per training step (one, with gradient, unless a subclass says otherwise)."""
        return ForwardPasses(1, 1)

    @property
    def settings(self) -> dict[str, Any]:
        """The switches that tell this loss's variant apart (subclasses add theirs), e.g. for a table's rows."""
        return {"coupling": self.coupling}

    def draw(self, x1: torch.Tensor, y: torch.Tensor | None = None, x0: torch.Tensor | None = None) -> PathBatch:
        """Draws sources (unless ``x0`` is given), pairs them with ``x1``, draws times and drops labels, in the
        order of the module doc."""
        x0 = torch.randn_like(x1) if x0 is None else x0
        x0, x1, y = COUPLINGS[self.coupling](x0, x1, y)
        t = self.interpolant.t_max * torch.rand(x1.shape[0], device=x1.device)
        return PathBatch(x0, x1, drop_labels(y, self.label_dropout, self.null_class), t)
