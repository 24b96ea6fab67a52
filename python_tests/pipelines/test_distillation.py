"""Distillation: the students' pairs are their teachers' outputs at exactly ``teacher_steps`` Euler steps."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from bfr_fast.checkpoint import load
from bfr_fast.pipelines import refinement
from bfr_fast.pipelines.refinement import Distillation, distill_refiners
from bfr_fast.pipelines.workspace import Workspace
from bfr_fast.refiners import DataFlowRefiner, FrozenGenerator, LatentFlowRefiner
from bfr_fast.engine.run_folder import RunFolder
from bfr_fast.engine.trainer import TrainConfig

TEACHER_STEPS = 4


class ClassRotation(nn.Module):
    r"""A trainable velocity :math:`v(x, t, y) = (1 + y) A x`, A a 90-degree rotation generator.

    Its paths are circles, so every Euler step count lands somewhere else, and class 1 turns twice as fast as
    class 0, so a teacher that lost its labels is seen too.
    """

    num_classes = 2

    def __init__(self) -> None:
        super().__init__()
        self.generator = nn.Parameter(torch.tensor([[0.0, -math.pi / 2], [math.pi / 2, 0.0]]))

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        speed = 1.0 if y is None else 1.0 + y.to(x.dtype)[:, None]
        return speed * (x @ self.generator.T)


class ShiftedBase(nn.Module):
    """A base velocity ``y + 0.5 - x``: G(z) of class y lies between z and y + 0.5."""

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return y.to(x.dtype)[:, None] + 0.5 - x


def test_the_students_pairs_are_the_teachers_output_at_teacher_steps(tmp_path, monkeypatch):
    """Each student is fine-tuned on (source, R_K(source)) with R_K its teacher's K-step Euler map, K as planned.

    Both teachers as :func:`distill_refiners` uses them: the DFR on fresh base samples, the LFR on fresh noise,
    each with the sources' labels; the teachers are curved, so another K (or lost labels) gives other targets.
    """
    trained_on = {}  # what each student is fine-tuned on: its pairs and their labels
    real_fit_refiner = refinement.fit_refiner

    def recording_fit_refiner(ws, name, refiner, loss, x, y, *args, **kwargs):
        trained_on[name] = (x.clone(), y.clone())
        return real_fit_refiner(ws, name, refiner, loss, x, y, *args, **kwargs)

    monkeypatch.setattr(refinement, "fit_refiner", recording_fit_refiner)
    ws = Workspace(RunFolder(tmp_path))
    teachers = {
        "dfr": DataFlowRefiner(ClassRotation(), augmentation=None).eval().requires_grad_(False),
        "lfr": LatentFlowRefiner(ClassRotation()).eval().requires_grad_(False),
    }
    config = TrainConfig(steps=2, lr=1e-3, warmup_steps=0, ema_decay=0.0, log_every=2)
    plan = Distillation(teacher_steps=TEACHER_STEPS, pairs=16, start_fraction=0.0, config=config, batch_size=8)
    students = distill_refiners(ws, FrozenGenerator(ShiftedBase(), num_steps=2), teachers, (2,), 2, plan)

    assert sorted(students) == ["dfr_reflow", "lfr_reflow"]
    pool = load(ws.folder.checkpoint("dfr_reflow-sources"))
    for teacher_name, name in (("dfr", "dfr_reflow"), ("lfr", "lfr_reflow")):
        teacher = teachers[teacher_name]
        pairs, y = trained_on[name]
        assert pairs.shape == (32, 2, 2) and torch.equal(y.bincount(), torch.tensor([16, 16]))
        assert torch.equal(load(ws.folder.checkpoint(f"{name}-pairs"))["pairs"], pairs)  # the cached pairs too
        sources, targets = pairs[:, 0], pairs[:, 1]
        torch.testing.assert_close(targets, teacher.refine(sources, num_steps=TEACHER_STEPS, y=y),
                                   rtol=1e-6, atol=1e-6)
        for other in (1, 2, TEACHER_STEPS - 1, TEACHER_STEPS + 1):  # the check tells step counts apart
            assert (targets - teacher.refine(sources, num_steps=other, y=y)).abs().max() > 1e-2
        assert (targets - teacher.refine(sources, num_steps=TEACHER_STEPS)).abs().max() > 1e-2  # and labels
        assert students[name].cost["teacher_nfe"] == TEACHER_STEPS
    # the data-space teacher refines fresh base samples, the latent-space one fresh N(0, I) noise
    dfr_sources, lfr_sources = trained_on["dfr_reflow"][0][:, 0], trained_on["lfr_reflow"][0][:, 0]
    assert torch.equal(dfr_sources, pool["x"]) and torch.equal(trained_on["dfr_reflow"][1], pool["y"])
    assert not torch.allclose(lfr_sources, dfr_sources)


@pytest.mark.parametrize("steps", [1, 0])
def test_a_teacher_below_two_steps_is_refused(tmp_path, steps):
    ws = Workspace(RunFolder(tmp_path))
    teacher = LatentFlowRefiner(ClassRotation()).eval().requires_grad_(False)
    plan = Distillation(steps, 4, 0.0, TrainConfig(steps=1, warmup_steps=0, ema_decay=0.0), 4)
    with pytest.raises(ValueError, match="num_steps"):
        distill_refiners(ws, FrozenGenerator(ShiftedBase(), num_steps=1), {"lfr": teacher}, (2,), 2, plan)
