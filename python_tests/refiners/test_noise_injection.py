"""The noise-injection refiner: sigma_d noise on the generated source at training and at inference."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bfr_fast.refiners import NoiseInjectionRefiner, SamplePool


class Recorder(nn.Module):
    def forward(self, x, t, y=None):
        self.x, self.t = x, t
        return torch.zeros_like(x)


def test_training_sources_carry_sigma_d_noise():
    torch.manual_seed(0)
    recorder = Recorder()
    refiner = NoiseInjectionRefiner(recorder, sigma_d=0.2, coupling="independent")
    pool = SamplePool(torch.zeros(16, 64))
    x_real = torch.zeros(512, 64)
    refiner.training_loss(pool)(refiner, x_real)
    t = recorder.t[:, None]
    sources = (recorder.x - t * x_real) / (1 - t)  # x_t = (1 - t) (x_hat + sigma_d eps) + t x_real
    assert abs(float(sources.std()) - 0.2) < 0.01
    torch.testing.assert_close(sources.std(dim=1), torch.full((512,), 0.2), atol=0.06, rtol=0)  # every sample


def test_inference_starts_from_a_noised_sample():
    refiner = NoiseInjectionRefiner(Recorder(), sigma_d=0.05)  # zero velocity: the output is the source
    x = torch.randn(256, 32)
    out, nfe = refiner.refine(x, 1, return_nfe=True, generator=torch.Generator().manual_seed(0))
    assert nfe == 1
    assert abs(float((out - x).std()) - 0.05) < 0.003
    again = refiner.refine(x, 1, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, again)
    assert not torch.equal(out, refiner.refine(x, 1, generator=torch.Generator().manual_seed(1)))


@pytest.mark.parametrize("sigma_d", [0.0, -0.1, float("inf"), True])
def test_sigma_d_must_be_positive(sigma_d):
    with pytest.raises(ValueError, match="sigma_d"):
        NoiseInjectionRefiner(Recorder(), sigma_d=sigma_d)
