"""The frozen generator's fingerprint (what a cache made from it records) and its finiteness check."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from bfr_fast.refiners import FrozenGenerator


class Scaled(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(3))

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.scale * x


class ScaledTwice(Scaled):  # the same weights, other code
    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return 2 * self.scale * x


def test_the_fingerprint_follows_weights_code_and_sampler_only():
    net = Scaled()
    fingerprint = FrozenGenerator(net, num_steps=3).fingerprint()
    assert FrozenGenerator(copy.deepcopy(net), num_steps=3, batch_size=7, name="x").fingerprint() == fingerprint
    assert FrozenGenerator(net.double(), num_steps=3).fingerprint() != fingerprint
    net.float()
    assert FrozenGenerator(net, num_steps=3).fingerprint() == fingerprint
    assert FrozenGenerator(net, num_steps=4).fingerprint() != fingerprint
    assert FrozenGenerator(net, method="heun", num_steps=3).fingerprint() != fingerprint
    twice = ScaledTwice()
    twice.load_state_dict(net.state_dict())
    assert FrozenGenerator(twice, num_steps=3).fingerprint() != fingerprint
    with torch.no_grad():
        net.scale[0] += 1e-6
    assert FrozenGenerator(net, num_steps=3).fingerprint() != fingerprint


def test_require_finite_names_the_generator_and_counts_the_rows():
    generator = FrozenGenerator(Scaled(), name="--generator mine:make")
    x = torch.zeros(4, 3)
    assert generator.require_finite(x, "samples") is x
    x[1, 0], x[3, 2] = float("nan"), float("inf")
    with pytest.raises(ValueError, match=r"^--generator mine:make gave NaN or infinite values in 2 of 4 samples;"):
        generator.require_finite(x, "samples")
