"""Classifier-free guidance: scale 1 is the conditional model, 0 the unconditional one, linear in between."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bfr_fast.models import ClassifierFreeGuidance


class LabelShift(nn.Module):
    null_class = 3

    def forward(self, x, t, y=None):
        return x + y.float()[:, None] + t[:, None]


def test_guidance_interpolates_and_extrapolates():
    model = LabelShift()
    x, t, y = torch.randn(4, 2), torch.rand(4), torch.tensor([0, 1, 2, 1])
    cond, uncond = model(x, t, y), model(x, t, torch.full_like(y, 3))
    torch.testing.assert_close(ClassifierFreeGuidance(model, 1.0)(x, t, y), cond)
    torch.testing.assert_close(ClassifierFreeGuidance(model, 0.0)(x, t, y), uncond)
    torch.testing.assert_close(ClassifierFreeGuidance(model, 2.5)(x, t, y), uncond + 2.5 * (cond - uncond))


def test_guidance_errors():
    with pytest.raises(ValueError, match="null_class"):
        ClassifierFreeGuidance(nn.Identity(), 1.0)
    with pytest.raises(ValueError, match="scale must be"):
        ClassifierFreeGuidance(LabelShift(), -1.0)
    with pytest.raises(ValueError, match="y: classifier-free guidance needs class labels"):
        ClassifierFreeGuidance(LabelShift(), 1.0)(torch.zeros(1, 2), torch.zeros(1))
