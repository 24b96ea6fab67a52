"""The latent-space refiner: noise mixing, separate NFE of refiner and base, and an end-to-end correction."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import bfr_fast.refiners.lfr as lfr_module
from bfr_fast.models import MLP
from bfr_fast.refiners import FrozenGenerator, LatentFlowRefiner, build_inversion_cache, mix_latents


@pytest.mark.parametrize(("mixing", "a"), [("amplitude", 0.6), ("variance", 0.36)])
def test_mixing_formulas(mixing, a):
    # Both choices of a give the coefficients (0.8, 0.6): amplitude (sqrt(1 - a^2), a), variance (sqrt(1 - a), sqrt a).
    z1 = torch.full((20000, 4), 2.0)
    mixed = mix_latents(z1, torch.randn(20000, 4), torch.full((20000,), a), mixing)
    assert abs(float(mixed.mean()) - 2.0 * 0.8) < 0.02
    assert abs(float(mixed.var()) - 0.6**2) < 0.02


@pytest.mark.parametrize("mixing", ["amplitude", "variance"])
def test_mixing_keeps_unit_variance_and_alpha_zero_is_exact(mixing):
    z1, xi = torch.randn(20000, 8), torch.randn(20000, 8)
    a = torch.rand(20000)
    assert abs(float(mix_latents(z1, xi, a, mixing).var()) - 1.0) < 0.02
    assert torch.equal(mix_latents(z1, xi, torch.zeros(20000), mixing), z1)


def test_mixing_rejects_unknown_variants():
    with pytest.raises(ValueError, match="mixing"):
        mix_latents(torch.zeros(2, 2), torch.zeros(2, 2), torch.zeros(2), "cosine")
    with pytest.raises(ValueError, match="alpha"):
        LatentFlowRefiner(MLP(2, 8, 1, 4), alpha=1.5)


class Recorder(nn.Module):
    def forward(self, x, t, y=None):
        self.x, self.t, self.y = x, t, y
        return torch.zeros_like(x)


def test_loss_draws_a_per_sample_and_fresh_independent_noise(monkeypatch):
    calls = {}

    def spy(z1, xi, a, mixing):
        calls.update(z1=z1, xi=xi, a=a, mixing=mixing)
        calls["target"] = mix_latents(z1, xi, a, mixing)
        return calls["target"]

    monkeypatch.setattr(lfr_module, "mix_latents", spy)
    recorder = Recorder()
    refiner = LatentFlowRefiner(recorder, alpha=0.3, mixing="variance", coupling="independent", conditional=True)
    z1, y = torch.randn(4096, 16), torch.arange(4096) % 3
    refiner.training_loss()(refiner, z1, y)
    a = calls["a"]
    assert calls["mixing"] == "variance" and calls["z1"] is z1 and torch.equal(recorder.y, y)
    assert 0 <= float(a.min()) < 0.01 and 0.29 < float(a.max()) <= 0.3 and abs(float(a.mean()) - 0.15) < 0.01
    t = recorder.t[:, None]
    source = (recorder.x - t * calls["target"]) / (1 - t)  # x_t = (1 - t) z + t z1_alpha
    keep = recorder.t < 0.9
    assert abs(float(source[keep].std()) - 1.0) < 0.02  # the source is N(0, I) ...
    correlation = torch.corrcoef(torch.stack([source[keep].flatten(), calls["xi"][keep].flatten()]))[0, 1]
    assert abs(float(correlation)) < 0.02  # ... drawn independently of the mixing noise


def test_alpha_zero_trains_on_the_latents_themselves(monkeypatch):
    targets = []

    def spy(*args):
        targets.append(mix_latents(*args))
        return targets[-1]

    monkeypatch.setattr(lfr_module, "mix_latents", spy)
    refiner = LatentFlowRefiner(Recorder(), alpha=0.0, mixing="amplitude")
    z1 = torch.randn(64, 5)
    refiner.training_loss()(refiner, z1)
    assert torch.equal(targets[0], z1)


class CountingNet(nn.Module):
    num_classes = None

    def __init__(self):
        super().__init__()
        self.bias = nn.Parameter(torch.tensor(0.25))
        self.calls = 0

    def forward(self, x, t, y=None):
        self.calls += 1
        return torch.full_like(x, float(self.bias))


@pytest.mark.parametrize("steps", [1, 10])
def test_sample_refines_then_decodes_and_reports_each_nfe(straight_flow, steps):
    base = straight_flow(torch.randn(2, 3), scale=0.5)
    net = CountingNet()
    generator = FrozenGenerator(base, method="heun", num_steps=3)
    noise, y = torch.randn(8, 3), torch.arange(8) % 2
    out = LatentFlowRefiner(net).sample(noise, generator, y=y, num_steps=steps)
    assert out.nfe_refiner == net.calls == steps and out.nfe_base == base.calls == 6
    torch.testing.assert_close(out.latents, noise + 0.25)  # constant velocity, integrated over [0, 1]
    torch.testing.assert_close(out.samples, base.flow_map(out.latents, y))


def test_lfr_reproduces_the_data_better_than_the_base(two_class_problem, train_refiner, class_energy_distance):
    p = two_class_problem
    generator = FrozenGenerator(p.biased_base(shift=0.8, scale=0.6), num_steps=4)
    cache = build_inversion_cache(generator, p.train_x, p.train_y)
    assert float(cache.errors.max()) < 1e-5
    refiner = LatentFlowRefiner(MLP(2, hidden=64, depth=2, time_embed_dim=32, num_classes=2), alpha=0.1)
    train_refiner(refiner, refiner.training_loss(), cache.latents, cache.labels, steps=200)

    noise = torch.randn(1024, 2, generator=torch.Generator().manual_seed(3))
    x_base, _ = generator.sample(noise, p.test_y)
    base_distance = class_energy_distance(x_base, p.test_y, p.test_x, p.test_y)
    for steps in (1, 10):
        out = refiner.sample(noise, generator, y=p.test_y, num_steps=steps)
        assert (out.nfe_refiner, out.nfe_base) == (steps, 4)
        assert class_energy_distance(out.samples, p.test_y, p.test_x, p.test_y) < 0.1 * base_distance

    # Transfer: the same refined latents, decoded by another base: its closed-form flow map G'(R(z)).
    other_base = p.biased_base(shift=0.5, scale=0.4)
    moved = refiner.sample(noise, FrozenGenerator(other_base, num_steps=2), y=p.test_y)
    refined = refiner.sample(noise, generator, y=p.test_y)  # 1 step, as the transfer
    torch.testing.assert_close(moved.latents, refined.latents)  # the refiner's part does not depend on the base
    torch.testing.assert_close(moved.samples, other_base.flow_map(refined.latents, p.test_y), rtol=1e-5, atol=1e-5)
    assert (moved.nfe_refiner, moved.nfe_base) == (1, 2)
    assert (moved.samples - refined.samples).abs().max() > 0.1  # the other base decoded them, not the first
