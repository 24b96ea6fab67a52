"""Reflow: fixed (source, k-step output) pairs straighten a curved refiner so one Euler step follows its ODE."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from bfr_fast.data import InfiniteLoader
from bfr_fast.models import MLP
from bfr_fast.refiners import LatentFlowRefiner, ReflowLoss, reflow_pairs
from bfr_fast.train import TrainConfig, Trainer


class Rotation(nn.Module):
    """v(z, t) = A z with A a rotation generator: the flow map rotates by 90 degrees, along curved paths."""

    num_classes = None

    def forward(self, z, t, y=None):
        return (math.pi / 2) * torch.stack([-z[:, 1], z[:, 0]], dim=1)


def test_pairs_stack_sources_with_the_teachers_multistep_output():
    teacher = LatentFlowRefiner(Rotation(), conditional=False)
    z = torch.randn(64, 2)
    pairs = reflow_pairs(teacher, z, num_steps=10)
    assert pairs.shape == (64, 2, 2) and torch.equal(pairs[:, 0], z)
    assert torch.equal(pairs[:, 1], teacher.refine(z, num_steps=10))
    with pytest.raises(ValueError, match="num_steps"):
        reflow_pairs(teacher, z, num_steps=1)


def test_loss_uses_the_pairs_as_given():
    seen = {}

    class Spy(nn.Module):
        def forward(self, x, t, y=None):
            seen.update(x=x, t=t)
            return torch.zeros_like(x)

    pairs = torch.randn(32, 2, 3)
    loss, _ = ReflowLoss()(Spy(), pairs)
    t = seen["t"][:, None]
    assert torch.allclose(seen["x"], (1 - t) * pairs[:, 0] + t * pairs[:, 1], atol=1e-6)  # no re-pairing
    assert torch.allclose(loss, (pairs[:, 1] - pairs[:, 0]).square().mean(), atol=1e-6)
    with pytest.raises(ValueError, match="pairs"):
        ReflowLoss()(Spy(), torch.randn(8, 3))


def test_reflowed_student_matches_the_teachers_ode_in_one_step():
    torch.manual_seed(0)
    teacher = LatentFlowRefiner(Rotation(), conditional=False)
    pairs = reflow_pairs(teacher, torch.randn(4096, 2), num_steps=20)
    student = LatentFlowRefiner(MLP(2, 64, 2, 32), conditional=False)
    batches = InfiniteLoader(pairs, torch.zeros(4096, dtype=torch.int64), 256, torch.Generator().manual_seed(1))
    loss = ReflowLoss()
    config = TrainConfig(steps=400, lr=3e-3, warmup_steps=20, ema_decay=0.0, log_every=1000)
    Trainer(student, lambda m, x, y: loss(m, x), batches, config).fit()
    z = torch.randn(2000, 2)
    target = teacher.refine(z, num_steps=20)
    teacher_error = (teacher.refine(z, num_steps=1) - target).norm(dim=1).mean()
    student_error = (student.eval().refine(z, num_steps=1) - target).norm(dim=1).mean()
    # one step along a quarter turn: the teacher misses by about |z| * |(1 + i pi/2) - i| ~ 1.6; the reflowed
    # student's straight path must land close to the teacher's ODE endpoint
    assert teacher_error > 1.0 and student_error < 0.25 * teacher_error
