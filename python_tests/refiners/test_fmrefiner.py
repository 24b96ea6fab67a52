"""FMRefiner: the bridge's target velocity is its time derivative, and the loss regresses onto it."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bfr_fast.refiners import FMRefiner, bridge_path


def test_target_velocity_is_the_derivative_of_the_path():
    torch.manual_seed(0)
    x_real, x_source, z = (torch.randn(16, 3, 4, 4, dtype=torch.float64) for _ in range(3))
    t, h = torch.rand(16, dtype=torch.float64) * 0.98 + 0.01, 1e-6
    _, u = bridge_path(x_real, x_source, z, t, sigma_z=0.3)
    ahead, _ = bridge_path(x_real, x_source, z, t + h, sigma_z=0.3)
    behind, _ = bridge_path(x_real, x_source, z, t - h, sigma_z=0.3)
    torch.testing.assert_close(u, (ahead - behind) / (2 * h), rtol=0, atol=1e-8)


def test_bridge_runs_from_the_source_to_the_real_sample():
    x_real, x_source, z = torch.randn(4, 5), torch.randn(4, 5), torch.randn(4, 5)
    start, _ = bridge_path(x_real, x_source, z, torch.zeros(4), sigma_z=0.1)
    end, _ = bridge_path(x_real, x_source, z, torch.ones(4), sigma_z=0.1)
    torch.testing.assert_close(start, x_source)
    torch.testing.assert_close(end, x_real)
    middle, _ = bridge_path(x_real, x_source, z, torch.full((4,), 0.5), sigma_z=0.1)
    torch.testing.assert_close(middle, 0.5 * (x_real + x_source) + 0.025 * z)


class Recorder(nn.Module):
    def forward(self, x, t, y=None):
        self.x, self.t, self.y = x, t, y
        return torch.zeros_like(x)


def test_loss_regresses_onto_the_bridge_velocity_of_noised_real_data():
    x_real, y = torch.randn(32, 6), torch.arange(32) % 2
    recorder = Recorder()
    refiner = FMRefiner(recorder, sigma_f=0.3, sigma_z=0.1, conditional=True)
    torch.manual_seed(0)
    loss, _ = refiner.training_loss()(refiner, x_real, y)
    torch.manual_seed(0)  # the loss's draws, in its order: source noise, bridge noise, time
    x_source = x_real + 0.3 * torch.randn_like(x_real)
    z = torch.randn_like(x_real)
    t = torch.rand(32)
    x_t, u = bridge_path(x_real, x_source, z, t, 0.1)
    torch.testing.assert_close(recorder.x, x_t)
    torch.testing.assert_close(recorder.t, t)
    assert torch.equal(recorder.y, y)
    torch.testing.assert_close(loss, u.pow(2).mean())


@pytest.mark.parametrize("kwargs", [{"sigma_f": -0.1}, {"sigma_z": float("nan")}])
def test_noise_scales_are_checked(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        FMRefiner(Recorder(), **kwargs)
