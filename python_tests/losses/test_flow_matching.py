"""Flow-matching loss: the regression target, coupling and label handling, label dropout."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch import nn

from bfr_fast.losses import FlowMatchingLoss, drop_labels


class Recorder(nn.Module):
    """Returns zeros and remembers its inputs."""

    def forward(self, x, t, y=None):
        self.x, self.t, self.y = x, t, y
        return torch.zeros_like(x)


def test_independent_loss_is_mse_to_the_path_velocity():
    x1 = torch.randn(16, 3)
    torch.manual_seed(0)
    model = Recorder()
    loss, _ = FlowMatchingLoss(coupling="independent")(model, x1)
    torch.manual_seed(0)
    x0, t = torch.randn_like(x1), torch.rand(16)
    torch.testing.assert_close(model.x, (1 - t[:, None]) * x0 + t[:, None] * x1)
    torch.testing.assert_close(model.t, t)
    torch.testing.assert_close(loss, (x1 - x0).pow(2).mean())


def _cheapest(cost: np.ndarray, rows: list[int]) -> tuple[float, tuple[int, ...]]:
    """The least total cost of pairing targets ``rows`` with sources ``rows`` over every permutation (brute force):
    ``cost[s, r]`` is the cost of source s with target r; returns the cost and the source of each target."""
    perms = np.array(list(itertools.permutations(rows)))
    totals = cost[perms, np.array(rows)].sum(axis=1)
    return float(totals.min()), tuple(perms[totals.argmin()])


def test_ot_coupling_is_the_brute_force_optimum_within_each_class():
    # Two classes of 4 on a batch small enough to try every permutation; the targets of class 1 are far away.
    y = torch.tensor([0, 1, 1, 0, 1, 0, 0, 1])
    x1 = torch.randn(8, 3, generator=torch.Generator().manual_seed(1)) + 3.0 * y[:, None]
    model = Recorder()
    torch.manual_seed(2)
    FlowMatchingLoss(coupling="ot")(model, x1, y)
    torch.manual_seed(2)
    noise = torch.randn(8, 3)  # the loss's first draw: the sources, before the coupling re-pairs them
    assert torch.equal(model.y, y)  # the targets are not permuted, so neither are their labels
    # x_t = (1-t) x0 + t x1: recover the source the loss paired with each target, as a row of the drawn noise.
    t = model.t[:, None].double()
    x0 = (model.x.double() - t * x1.double()) / (1 - t)
    sources = torch.cdist(x0, noise.double()).argmin(dim=1)
    torch.testing.assert_close(x0, noise[sources].double(), rtol=1e-4, atol=1e-4)

    cost = torch.cdist(noise.double(), x1.double()).square().numpy()
    expected = list(range(8))
    best = 0.0
    for label in (0, 1):
        rows = (y == label).nonzero().flatten().tolist()
        class_cost, chosen = _cheapest(cost, rows)
        best += class_cost
        for source, target in zip(chosen, rows, strict=True):
            expected[target] = source
    assert sources.tolist() == expected
    # The test can tell: ignoring the classes, or keeping the drawn pairs, is clearly cheaper or dearer.
    unconstrained, _ = _cheapest(cost, list(range(8)))
    assert unconstrained < best - 1.0
    assert np.trace(cost) > best + 1.0


def test_label_dropout_replaces_labels_by_the_null_class():
    y = torch.zeros(10_000, dtype=torch.long)
    dropped = drop_labels(y, 0.25, null_class=10)
    assert set(dropped.unique().tolist()) == {0, 10}
    assert abs((dropped == 10).float().mean().item() - 0.25) < 0.02
    assert torch.equal(drop_labels(y, 1.0, 10), torch.full_like(y, 10))
    assert drop_labels(None, 0.5, 10) is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(coupling="sinkhorn"), "coupling must be one of"),
        (dict(label_dropout=1.5), r"label_dropout must be a finite float in \[0, 1\]"),
        (dict(label_dropout=0.1), "null_class is required"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        FlowMatchingLoss(**kwargs)
