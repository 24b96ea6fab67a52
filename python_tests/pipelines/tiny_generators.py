"""Untrained users' generators on 8x8 images, importable as ``tiny_generators:<name>`` by the CLIs under test
(the ``tiny_generators`` fixture puts this folder on ``sys.path``): velocity models ``model(x, t, y=None)`` and
factories that fail the ways a user's can."""

from __future__ import annotations

import torch
from torch import nn


class Tiny(nn.Module):
    """A velocity model on 8x8 images: model(x, t, y=None)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(65, 64), nn.SiLU(), nn.Linear(64, 64))

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(torch.cat([x.flatten(1), t[:, None]], 1)).view_as(x)


class TenClasses(Tiny):
    """Class-conditional, with an embedding of 10 classes."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, 64)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return super().forward(x, t) + self.embed(y).view_as(x)


class IgnoresLabels(Tiny):
    """Takes y, and ignores it."""


class ReturnsNaN(Tiny):
    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return super().forward(x, t) * float("nan")


def make() -> Tiny:
    return Tiny()


def broken() -> nn.Module:
    raise RuntimeError("no weights here")


def not_a_module() -> int:
    return 3
