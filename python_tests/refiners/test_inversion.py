"""The inversion cache: exact on an exactly invertible base, honest errors on an inexact one, saved and reloaded."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bfr_fast.refiners import FrozenGenerator, InversionCache, build_inversion_cache


def test_inverting_an_exactly_invertible_base_gives_the_analytic_latents(straight_flow):
    means = torch.randn(3, 1, 8, 8)
    base = straight_flow(means, scale=0.7)
    x, y = torch.randn(40, 1, 8, 8), torch.arange(40) % 3  # any data, not necessarily the base's samples
    cache = build_inversion_cache(FrozenGenerator(base, method="euler", num_steps=20, batch_size=16), x, y)
    torch.testing.assert_close(cache.latents, base.inverse(x, y), rtol=0, atol=1e-5)
    assert torch.equal(cache.labels, y) and cache.method == "euler" and cache.num_steps == 20
    assert float(cache.errors.max()) < 1e-5
    assert base.calls == 2 * 20 * 3  # invert, then reconstruct: 20 Euler steps on each of 3 batches


class Swirl(nn.Module):
    """A curved velocity field: Euler's error shrinks with the step count but is not zero."""

    def forward(self, x, t, y=None):
        return torch.stack([-x[:, 1], x[:, 0]], dim=1) * 2 + torch.sin(3 * x)


def test_errors_measure_the_reconstruction_rms():
    x = torch.randn(64, 2)
    coarse = build_inversion_cache(FrozenGenerator(Swirl(), num_steps=4), x)
    fine = build_inversion_cache(FrozenGenerator(Swirl(), num_steps=64), x)
    generator = FrozenGenerator(Swirl(), num_steps=4)
    reconstruction, _ = generator.sample(coarse.latents)
    torch.testing.assert_close(coarse.errors, (reconstruction - x).pow(2).mean(dim=1).sqrt())
    assert float(fine.errors.mean()) < 0.2 * float(coarse.errors.mean()) and float(fine.errors.mean()) > 0


def test_error_summary():
    cache = InversionCache(torch.zeros(101, 2), None, torch.arange(101.0), "euler", 10)
    assert cache.error_summary() == {"mean": 50.0, "median": 50.0, "p95": 95.0, "max": 100.0}


def test_save_and_load(tmp_path, straight_flow):
    base = straight_flow(torch.randn(2, 3), scale=1.5)
    cache = build_inversion_cache(FrozenGenerator(base, num_steps=3), torch.randn(10, 3), torch.arange(10) % 2)
    loaded = InversionCache.load(cache.save(tmp_path / "inversion.pt"))
    assert torch.equal(loaded.latents, cache.latents) and torch.equal(loaded.errors, cache.errors)
    assert torch.equal(loaded.labels, cache.labels) and (loaded.method, loaded.num_steps) == ("euler", 3)
    assert loaded.generator == cache.generator == FrozenGenerator(base, num_steps=3).fingerprint()
    torch.save({"latents": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not an inversion cache"):
        InversionCache.load(tmp_path / "other.pt")


def test_mismatched_fields_are_rejected():
    with pytest.raises(ValueError, match="like the latents"):
        InversionCache(torch.zeros(4, 2), None, torch.zeros(3), "euler", 1)


def test_a_generator_that_inverts_to_nan_is_named():
    class Blows(nn.Module):  # finite forwards, NaN backwards: t runs 1 -> 0 when inverting
        def forward(self, x, t, y=None):
            return x * torch.where(t < 0.9, float("nan"), 1.0)[:, None]

    generator = FrozenGenerator(Blows(), num_steps=4, name="--generator mine:make")
    with pytest.raises(ValueError, match=r"^--generator mine:make gave NaN or infinite values in 5 of 5 inverted "):
        build_inversion_cache(generator, torch.randn(5, 2))
