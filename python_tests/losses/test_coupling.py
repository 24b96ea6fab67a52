"""Independent coupling in every path loss: the sources stay paired with the data in the order they were drawn."""

from __future__ import annotations

import pytest
import torch

from bfr_fast.losses import DEFARLoss, FlowMatchingLoss, InputPerturbationLoss, ScheduledSamplingLoss

LOSSES = {
    "fm": FlowMatchingLoss,
    "ip": lambda coupling: InputPerturbationLoss(perturbation=0.0, coupling=coupling),
    "sdss": lambda coupling: ScheduledSamplingLoss(1, coupling=coupling),
    "mdss": lambda coupling: ScheduledSamplingLoss(4, real_steps=1, coupling=coupling),
    "defar": lambda coupling: DEFARLoss(coupling=coupling),
}


@pytest.mark.parametrize("name", list(LOSSES))
def test_independent_coupling_keeps_the_drawn_pairs_and_ot_repairs_them(recording_model, name):
    # Data far apart: OT, which maximises the summed x0·x1, re-orders the sources; independent keeps the drawn order.
    x1 = torch.arange(8.0).view(8, 1, 1, 1).expand(8, 1, 2, 2) * 10
    inputs = {}
    for coupling in ("independent", "ot"):
        model = recording_model()
        loss_fn = LOSSES[name](coupling=coupling)
        torch.manual_seed(0)
        loss, _ = loss_fn(model, x1)
        assert torch.isfinite(loss) and loss_fn.settings["coupling"] == coupling
        inputs[coupling] = model.calls[0]
    torch.manual_seed(0)
    eps, t = torch.randn_like(x1), torch.rand(8)
    first = inputs["independent"]
    t_b = t.view(-1, 1, 1, 1)
    torch.testing.assert_close(first.t, t)
    torch.testing.assert_close(first.x, (1 - t_b) * eps + t_b * x1)
    assert not torch.allclose(inputs["ot"].x, first.x)
