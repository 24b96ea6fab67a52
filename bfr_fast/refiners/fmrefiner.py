r"""FMRefiner (baseline): a refiner trained on real data only, then applied to generated samples.

Training source :math:`x_1 = x + \sigma_f \epsilon` (a noised real sample), target the real :math:`x`, on the
bridge

.. math::
    x_t = t\, x + (1 - t)\, x_1 + \sigma_z\, t (1 - t)\, z, \qquad z, \epsilon \sim N(0, I),

whose velocity (the regression target) is its time derivative

.. math::
    u_t = \frac{d x_t}{dt} = x - x_1 + \sigma_z (1 - 2t)\, z .

The bridge noise vanishes at both ends, so the path still runs from :math:`x_1` exactly to :math:`x`. At inference
the refiner ODE starts from a generated :math:`\hat x` (t: 0 → 1) with no noise: the refiner never saw a
generated sample, which is what separates it from the DFR.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from bfr_fast.checks import non_negative_float
from bfr_fast.ops.reference import per_sample
from bfr_fast.refiners.base import Refiner, RefinerData, TrainingSet


def bridge_path(
    x_real: torch.Tensor, x_source: torch.Tensor, z: torch.Tensor, t: torch.Tensor, sigma_z: float
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""The FMRefiner bridge: returns :math:`x_t` and :math:`u_t = dx_t/dt` (see the module docstring).

    Args:
        x_real: ``(B, ...)`` real samples (t=1).
        x_source: ``(B, ...)`` sources (t=0), e.g. ``x_real + sigma_f * eps``.
        z: ``(B, ...)`` bridge noise.
        t: ``(B,)`` times.
        sigma_z: Bridge noise scale.
    """
    tb = per_sample(t.to(x_real.dtype), x_real)
    x_t = tb * x_real + (1 - tb) * x_source + sigma_z * tb * (1 - tb) * z
    u_t = x_real - x_source + sigma_z * (1 - 2 * tb) * z
    return x_t, u_t


class FMRefinerLoss:
    """``loss(model, x_real, y) -> (loss, logs)``: flow matching on the FMRefiner bridge (global RNG).

    Args:
        sigma_f: Std of the source noise added to the real samples.
        sigma_z: Scale of the bridge noise.
    """

    def __init__(self, sigma_f: float, sigma_z: float) -> None:
        self.sigma_f = non_negative_float("sigma_f", sigma_f)
        self.sigma_z = non_negative_float("sigma_z", sigma_z)

    def __call__(
        self, model: nn.Module, x_real: torch.Tensor, y: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        x_source = x_real + self.sigma_f * torch.randn_like(x_real)
        z = torch.randn_like(x_real)
        t = torch.rand(x_real.shape[0], device=x_real.device)
        x_t, u_t = bridge_path(x_real, x_source, z, t, self.sigma_z)
        pred = model(x_t, t, y)
        return (pred.float() - u_t.float()).pow(2).mean(), {}


class FMRefiner(Refiner):
    """FMRefiner: trained on noised real data, applied to generated samples.

    Args:
        network: The refiner's velocity network ``network(x, t, y=None)``.
        sigma_f: Std of the training source noise :math:`\\sigma_f` (default 0.1).
        sigma_z: Bridge noise :math:`\\sigma_z` (default 0.1).
        conditional: Whether the network takes labels (None: from ``network.num_classes``).

    Raises:
        ValueError: A negative or non-finite ``sigma_f`` or ``sigma_z``.
    """

    kind = "fmrefiner"

    def __init__(
        self, network: nn.Module, sigma_f: float = 0.1, sigma_z: float = 0.1, conditional: bool | None = None
    ) -> None:
        super().__init__(network, conditional)
        self.sigma_f = non_negative_float("sigma_f", sigma_f)
        self.sigma_z = non_negative_float("sigma_z", sigma_z)

    def config(self) -> dict[str, Any]:
        return {**super().config(), "sigma_f": self.sigma_f, "sigma_z": self.sigma_z}

    def training_loss(self) -> FMRefinerLoss:
        """The loss ``loss(model, x_real, y)`` that trains this refiner on real data."""
        return FMRefinerLoss(self.sigma_f, self.sigma_z)

    def training_set(self, data: RefinerData) -> TrainingSet:
        """The real samples alone: its sources are noised real samples, never the base's."""
        return TrainingSet(self.training_loss(), data.x, data.y)
