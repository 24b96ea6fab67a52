"""Toy base generators with known flow maps, shared by the refiner tests."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bfr_fast.data import InfiniteLoader
from bfr_fast.engine.trainer import TrainConfig, Trainer


class StraightAffineFlow(nn.Module):
    r"""A base velocity whose flow map is known in closed form: :math:`G(z) = m_y + s z`.

    Every trajectory is the straight line :math:`x_t = z + t (m_y + (s - 1) z)`, travelled at the constant velocity
    :math:`m_y + (s-1) z` with :math:`z = (x - t m_y) / (1 + t (s - 1))`. Euler steps land exactly on it at any step
    count, forwards and backwards, so :math:`G^{-1}(x) = (x - m_y) / s` exactly (up to rounding).

    Args:
        means: ``(K, ...)`` per-class offsets :math:`m_y` (K = 1 for an unconditional base).
        scale: The scale :math:`s > 0`.
    """

    def __init__(self, means: torch.Tensor, scale: float) -> None:
        super().__init__()
        self.register_buffer("means", means)
        self.scale = scale
        self.calls = 0

    def offset(self, y: torch.Tensor | None, n: int) -> torch.Tensor:
        return self.means[y] if y is not None else self.means[0].expand(n, *self.means.shape[1:])

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        self.calls += 1
        m = self.offset(y, x.shape[0])
        tb = t.reshape((-1,) + (1,) * (x.dim() - 1)).to(x.dtype)
        z = (x - tb * m) / (1 + tb * (self.scale - 1))
        return m + (self.scale - 1) * z

    def flow_map(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.offset(y, z.shape[0]) + self.scale * z

    def inverse(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return (x - self.offset(y, x.shape[0])) / self.scale


@pytest.fixture
def straight_flow():
    return StraightAffineFlow


def _energy_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Sample energy distance 2E|A-B| - E|A-A'| - E|B-B'| (0 iff the distributions agree)."""
    a, b = a.flatten(1).double(), b.flatten(1).double()
    return float(2 * torch.cdist(a, b).mean() - torch.cdist(a, a).mean() - torch.cdist(b, b).mean())


@pytest.fixture
def class_energy_distance():
    """Energy distance between two labelled sets, averaged over the classes."""

    def distance(a: torch.Tensor, y_a: torch.Tensor, b: torch.Tensor, y_b: torch.Tensor) -> float:
        classes = torch.unique(y_b).tolist()
        return sum(_energy_distance(a[y_a == c], b[y_b == c]) for c in classes) / len(classes)

    return distance


class TwoClassProblem:
    """2-D real data: class c ~ N(mu_c, 0.3^2 I), mu = (-2, 0) and (2, 0); 512 training and 512 test points per class.

    ``biased_base(shift, scale)`` is a deliberately wrong base generator, G(z) = mu_y + shift + scale z.
    """

    means = torch.tensor([[-2.0, 0.0], [2.0, 0.0]])
    std = 0.3

    def __init__(self) -> None:
        generator = torch.Generator().manual_seed(0)
        self.train_y = torch.arange(2).repeat_interleave(512)
        self.test_y = self.train_y.clone()
        self.train_x = self.means[self.train_y] + self.std * torch.randn(1024, 2, generator=generator)
        self.test_x = self.means[self.test_y] + self.std * torch.randn(1024, 2, generator=generator)

    def biased_base(self, shift: float, scale: float) -> StraightAffineFlow:
        return StraightAffineFlow(self.means + shift, scale)


@pytest.fixture(scope="session")
def two_class_problem():
    return TwoClassProblem()


@pytest.fixture
def train_refiner():
    """Trains a refiner with the library's Trainer (no EMA, no checkpoints) and returns it in eval mode."""

    def train(refiner, loss, x: torch.Tensor, y: torch.Tensor, steps: int, batch_size: int = 256, lr: float = 3e-3):
        batches = InfiniteLoader(x, y, batch_size, torch.Generator().manual_seed(1))
        config = TrainConfig(steps=steps, lr=lr, warmup_steps=20, ema_decay=0.0, log_every=steps)
        torch.manual_seed(2)
        Trainer(refiner, loss, batches, config).fit()
        return refiner.eval()

    return train
