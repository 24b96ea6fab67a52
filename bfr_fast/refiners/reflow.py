r"""Reflow: straighten a trained refiner so that one Euler step does what many did.

A flow-matching refiner trained on a non-deterministic coupling (independent pairs, or minibatch OT in many
dimensions) learns :math:`r(x, 0) = E[x_1 - x_0 \mid x_0 = x]`, so its 1-step output :math:`x + r(x, 0)` is a
conditional *mean* of the targets: measured on digits, the LFR at 1 NFE collapses towards one sample per class
(recall 0.23) while its 10-step ODE is fine. Rectified-flow *reflow* (Liu et al., 2022) fixes the coupling:
draw sources :math:`x_0`, integrate the trained refiner :math:`\hat x_1 = R_k(x_0)` with k steps, and fine-tune
(a copy of) it by flow matching on the fixed pairs :math:`(x_0, \hat x_1)`. The pairs' straight interpolation
:math:`x_t = (1 - t) x_0 + t \hat x_1` crosses far less, so one step lands near :math:`\hat x_1` (measured:
1-NFE LFR FD-digitsnet 2.5-2.8 -> 0.9-1.0 on three training seeds, `docs/results/bfr-digits/findings.md`).

Pairs are stored stacked, ``(N, 2, ...)`` with ``[:, 0]`` the sources and ``[:, 1]`` the targets, so that any
minibatch loader of ``(x, y)`` serves them.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from bfr_fast.checks import integer, probability
from bfr_fast.losses.path_loss import velocity_mse
from bfr_fast.paths import LinearPath
from bfr_fast.refiners.base import Refiner


@torch.no_grad()
def reflow_pairs(
    refiner: Refiner,
    sources: torch.Tensor,
    y: torch.Tensor | None = None,
    num_steps: int = 10,
    method: str = "euler",
    batch_size: int | None = None,
) -> torch.Tensor:
    """The fixed coupling of one reflow: each source stacked with the refiner's k-step output.

    Args:
        refiner: The trained refiner (the teacher).
        sources: ``(N, ...)`` states the refiner starts from: fresh N(0, I) noise for an LFR, base samples for
            a data-space refiner. Use other draws than the evaluation's.
        y: ``(N,)`` labels (for a conditional refiner), or None.
        num_steps: Steps of the teacher's ODE (its own best NFE, e.g. 10).
        method: The teacher's solver method.
        batch_size: Integrate in chunks of this many sources.

    Returns:
        ``(N, 2, ...)``: ``[:, 0]`` the sources, ``[:, 1]`` the teacher's outputs.

    Raises:
        ValueError: ``num_steps`` < 2 (a 1-step teacher's pairs would teach its own collapsed map), or what
            :meth:`Refiner.refine` rejects.
    """
    integer("num_steps", num_steps, low=2, why="the teacher's multi-step ODE")
    targets = refiner.refine(sources, num_steps=num_steps, method=method, y=y, batch_size=batch_size)
    return torch.stack([sources, targets], dim=1)


class ReflowLoss:
    r"""``loss(model, pairs, y) -> (loss, logs)``: flow matching on fixed ``(source, target)`` pairs.

    The pairs *are* the coupling, so they are used as given (no re-pairing). Times: with probability
    ``start_fraction`` a sample is trained at :math:`t = 0` exactly, otherwise at :math:`t \sim U(0, 1)`; the
    loss is :math:`\mathrm{mean}\,(r(x_t, t) - (x_1 - x_0))^2` over every element either way. At
    ``start_fraction = 0`` this is rectified-flow reflow (the whole straightened ODE is learnt); at 1 it is
    one-step distillation, :math:`x_0 + r(x_0, 0) \approx x_1`, which is all that a 1-NFE student ever
    evaluates; values in between keep the student a usable multi-step flow while weighting its first step.

    Args:
        start_fraction: Probability in [0, 1] of a sample's time being exactly 0.

    Raises:
        ValueError: ``start_fraction`` outside [0, 1].
    """

    def __init__(self, start_fraction: float = 0.0) -> None:
        self.start_fraction = probability("start_fraction", start_fraction)
        self.path = LinearPath()

    def __call__(
        self, model: nn.Module, pairs: torch.Tensor, y: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if pairs.dim() < 2 or pairs.shape[1] != 2:
            raise ValueError(f"pairs must be (B, 2, ...) stacked (source, target) pairs, got {tuple(pairs.shape)}")
        x0, x1 = pairs[:, 0], pairs[:, 1]
        t = torch.rand(x0.shape[0], device=x0.device)
        if self.start_fraction > 0:
            at_start = torch.rand(x0.shape[0], device=x0.device) < self.start_fraction
            t = torch.where(at_start, torch.zeros_like(t), t)
        x_t, u = self.path.sample(x0, x1, t)
        return velocity_mse(model(x_t, t, y), u), {}


def student_of(teacher: Refiner) -> Refiner:
    """A trainable copy of ``teacher`` (same kind, config and weights): the warm start of its 1-NFE student."""
    student = copy.deepcopy(teacher)
    student.train().requires_grad_(True)
    return student
