"""A small velocity model that records every call: inputs, output, grad mode, and the gradient its output gets."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from torch import nn


@dataclass
class Call:
    x: torch.Tensor
    t: torch.Tensor
    y: torch.Tensor | None
    out: torch.Tensor
    grad_enabled: bool
    out_grad: torch.Tensor | None = None


class RecordingModel(nn.Module):
    """v = a x + b tanh(x) + c t (+ label offset): nonlinear, so no two calls give parallel outputs by accident."""

    def __init__(self, num_classes: int = 0) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.tensor(0.7))
        self.b = nn.Parameter(torch.tensor(-0.4))
        self.c = nn.Parameter(torch.tensor(0.3))
        self.label = nn.Parameter(0.1 * torch.arange(num_classes + 1, dtype=torch.float32))
        self.calls: list[Call] = []

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        t_b = t.reshape((-1,) + (1,) * (x.dim() - 1))
        out = self.a * x + self.b * torch.tanh(x) + self.c * t_b
        if y is not None:
            out = out + self.label[y].reshape(t_b.shape)
        call = Call(x.detach().clone(), t.detach().clone(), y, out, torch.is_grad_enabled())
        self.calls.append(call)
        if out.requires_grad:
            out.register_hook(lambda grad: setattr(call, "out_grad", grad))
        return out


@pytest.fixture
def recording_model():
    return RecordingModel
