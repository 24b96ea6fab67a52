"""Flow-matching loss: the regression target, coupling and label handling, label dropout."""

from __future__ import annotations

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


def test_ot_coupling_keeps_labels_with_targets_and_lowers_the_cost():
    torch.manual_seed(1)
    x1 = torch.randn(64, 2) + 5 * torch.arange(64).remainder(2)[:, None]
    y = torch.arange(64).remainder(2)
    model = Recorder()
    FlowMatchingLoss(coupling="ot")(model, x1, y)
    assert torch.equal(model.y, y)  # x1 is not permuted, so its labels must arrive unchanged
    # x_t = (1-t) x0 + t x1: recover x0 and check the pairing is cheaper than a random one.
    t = model.t[:, None]
    x0 = (model.x - t * x1) / (1 - t)
    paired = (x0 - x1).pow(2).sum()
    shuffled = (x0[torch.randperm(64)] - x1).pow(2).sum()
    assert paired < shuffled


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
        (dict(label_dropout=1.5), r"label_dropout must be in \[0, 1\]"),
        (dict(label_dropout=0.1), "null_class is required"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        FlowMatchingLoss(**kwargs)
