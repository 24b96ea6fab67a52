r"""DDPM ε-prediction loss: the training objective of a diffusion base that is sampled through its probability-flow
ODE (:class:`~bfr_fast.paths.ProbabilityFlowVelocity`).

Per sample, a discrete index :math:`k` is drawn uniformly, :math:`x^{(k)} = \sqrt{\bar\alpha_k}\, x_1 +
\sqrt{1-\bar\alpha_k}\,\epsilon` (:meth:`DDPMSchedule.eps_training_sample
<bfr_fast.paths.DDPMSchedule.eps_training_sample>`), and the network regresses the noise:

.. math::
    L = \mathbb{E}\, \lVert \hat\epsilon_\theta(x^{(k)}, t_k) - \epsilon \rVert^2 / D,

with :math:`t_k = 1 - k/(N-1)` the library's time (t=0 noise, t=1 data) and :math:`D` the values per sample.
"""

from __future__ import annotations

import torch
from torch import nn

from bfr_fast.paths import DDPMSchedule


class EpsPredictionLoss:
    """``loss(model, x1, y=None) -> (loss, {})`` for an ε-prediction network ``model(x_t, t[, y])``.

    Indices and noise come from the global RNG (which the trainer's checkpoints save), so resumed runs repeat.

    Args:
        schedule: The β schedule; sample the trained network with
            ``ProbabilityFlowVelocity(network, schedule)``.

    Raises:
        ValueError: ``schedule`` is not a :class:`~bfr_fast.paths.DDPMSchedule`.
    """

    def __init__(self, schedule: DDPMSchedule) -> None:
        if not isinstance(schedule, DDPMSchedule):
            raise ValueError(f"schedule must be a DDPMSchedule, got {type(schedule).__name__}")
        self.schedule = schedule

    def __call__(
        self, model: nn.Module, x1: torch.Tensor, y: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        sample = self.schedule.eps_training_sample(x1)
        pred = model(sample.x_t, sample.t) if y is None else model(sample.x_t, sample.t, y)
        return (pred.float() - sample.eps.float()).pow(2).mean(), {}
