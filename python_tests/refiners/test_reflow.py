"""Reflow: fixed (source, k-step output) pairs straighten a curved refiner so one Euler step follows its ODE."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from bfr_fast.data import InfiniteLoader
from bfr_fast.models import MLP
from bfr_fast.refiners import LatentFlowRefiner, ReflowLoss, reflow_pairs, student_of
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
    for other in (9, 11):  # the comparison tells the step counts apart
        assert (pairs[:, 1] - teacher.refine(z, num_steps=other)).abs().max() > 1e-2
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


@pytest.mark.parametrize("start_fraction", [1.0, 0.5])
def test_start_fraction_trains_that_share_of_pairs_at_t0(start_fraction):
    seen = {}

    class Spy(nn.Module):
        def forward(self, x, t, y=None):
            seen.update(x=x, t=t)
            return torch.zeros_like(x)

    torch.manual_seed(0)
    pairs = torch.randn(4000, 2, 3)
    ReflowLoss(start_fraction)(Spy(), pairs)
    at_start = seen["t"] == 0
    assert abs(at_start.float().mean().item() - start_fraction) < 0.03
    assert torch.equal(seen["x"][at_start], pairs[at_start, 0])  # t = 0: the student sees the source itself
    for bad in (-0.1, 1.5, True, "1"):
        with pytest.raises(ValueError, match="start_fraction"):
            ReflowLoss(bad)


def test_student_is_a_trainable_copy_that_leaves_the_teacher_alone():
    teacher = LatentFlowRefiner(MLP(2, 16, 1, 8), alpha=0.3, conditional=False).eval().requires_grad_(False)
    student = student_of(teacher)
    assert type(student) is LatentFlowRefiner and student.config() == teacher.config()
    assert student.training and all(p.requires_grad for p in student.parameters())
    with torch.no_grad():
        next(student.parameters()).add_(1.0)
    assert not torch.equal(next(student.parameters()), next(teacher.parameters()))
    assert not any(p.requires_grad for p in teacher.parameters())


@pytest.mark.parametrize("start_fraction", [0.0, 1.0])
def test_distilled_student_beats_the_teachers_one_step_on_a_curved_flow(start_fraction):
    """The 1-NFE error of a student warm-started from a curved teacher falls far below the teacher's own."""
    torch.manual_seed(0)
    teacher = LatentFlowRefiner(Rotation(), conditional=False)
    pairs = reflow_pairs(teacher, torch.randn(4096, 2), num_steps=20)
    student = LatentFlowRefiner(MLP(2, 64, 2, 32), conditional=False)
    batches = InfiniteLoader(pairs, torch.zeros(4096, dtype=torch.int64), 256, torch.Generator().manual_seed(1))
    loss = ReflowLoss(start_fraction)
    config = TrainConfig(steps=300, lr=3e-3, warmup_steps=20, ema_decay=0.0, log_every=1000)
    Trainer(student, lambda m, x, y: loss(m, x), batches, config).fit()
    z = torch.randn(2000, 2)
    target = teacher.refine(z, num_steps=20)
    teacher_error = (teacher.refine(z, num_steps=1) - target).norm(dim=1).mean()
    student_error = (student.eval().refine(z, num_steps=1) - target).norm(dim=1).mean()
    assert student_error < 0.25 * teacher_error
