"""DDPM ε-prediction loss: zero for the exact noise, the noise's variance for a zero predictor, labels passed on."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bfr_fast.losses import EpsPredictionLoss
from bfr_fast.paths import DDPMSchedule


class ExactNoise(nn.Module):
    """The true ε of a data set that is the single point ``c``: ε = (x_t − √ᾱ c) / √(1 − ᾱ)."""

    def __init__(self, schedule: DDPMSchedule, c: torch.Tensor) -> None:
        super().__init__()
        self.schedule, self.c = schedule, c

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        alpha_bar = self.schedule.alpha_bar(t.double())[:, None]
        return ((x.double() - alpha_bar.sqrt() * self.c) / (1 - alpha_bar).sqrt()).float()


class Zero(nn.Module):
    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        self.seen_y = y
        return torch.zeros_like(x)


def test_exact_noise_gives_zero_and_zero_predictor_gives_unit_loss():
    torch.manual_seed(0)
    schedule = DDPMSchedule(num_steps=100)
    c = torch.linspace(-1, 1, 6)
    x1 = c.repeat(4096, 1)
    loss = EpsPredictionLoss(schedule)
    exact, _ = loss(ExactNoise(schedule, c.double()), x1)
    assert float(exact) < 1e-4
    zero, logs = loss(Zero(), x1)
    assert logs == {} and float(zero) == pytest.approx(1.0, abs=0.02)


def test_labels_reach_the_model_and_schedule_is_checked():
    model = Zero()
    EpsPredictionLoss(DDPMSchedule(num_steps=10))(model, torch.randn(8, 3), torch.arange(8))
    assert torch.equal(model.seen_y, torch.arange(8))
    with pytest.raises(ValueError, match="schedule"):
        EpsPredictionLoss("linear")
