"""Input perturbation: the input is built from ε + p ξ, the target from ε alone."""

from __future__ import annotations

import pytest
import torch

from bfr_fast.losses import FlowMatchingLoss, InputPerturbationLoss
from bfr_fast.paths import GVPInterpolant


def test_input_uses_the_perturbed_noise_and_the_target_the_clean_one(recording_model):
    x1 = torch.randn(8, 2, 3, 3)
    model = recording_model()
    torch.manual_seed(0)
    loss, logs = InputPerturbationLoss(0.1, coupling="independent")(model, x1)
    torch.manual_seed(0)
    eps, t = torch.randn_like(x1), torch.rand(8)
    xi = torch.randn_like(x1)
    t_b = t.view(-1, 1, 1, 1)
    (call,) = model.calls
    torch.testing.assert_close(call.x, (1 - t_b) * (eps + 0.1 * xi) + t_b * x1)
    torch.testing.assert_close(call.t, t)
    torch.testing.assert_close(loss, (call.out - (x1 - eps)).pow(2).mean())
    assert logs == {} and InputPerturbationLoss().forward_passes == (1, 1)


def test_gvp_target_is_the_gvp_velocity_of_the_clean_noise(recording_model):
    x1, path = torch.randn(8, 5), GVPInterpolant()
    model = recording_model()
    torch.manual_seed(1)
    loss, _ = InputPerturbationLoss(0.3, coupling="independent", interpolant=path)(model, x1)
    torch.manual_seed(1)
    eps, t = torch.randn_like(x1), torch.rand(8)
    xi = torch.randn_like(x1)
    torch.testing.assert_close(model.calls[0].x, path.point(eps + 0.3 * xi, x1, t))
    torch.testing.assert_close(loss, (model.calls[0].out - path.velocity(eps, x1, t)).pow(2).mean())


def test_zero_perturbation_is_flow_matching(recording_model):
    x1, y = torch.randn(8, 4), torch.arange(8) % 3
    values = []
    for loss_fn in (InputPerturbationLoss(0.0), FlowMatchingLoss()):
        torch.manual_seed(2)
        values.append(loss_fn(recording_model(3), x1, y)[0])
    torch.testing.assert_close(values[0], values[1], rtol=0, atol=0)


@pytest.mark.parametrize("perturbation", [-0.1, float("nan"), True, "0.1"])
def test_bad_perturbation(perturbation):
    with pytest.raises(ValueError, match="perturbation"):
        InputPerturbationLoss(perturbation)
