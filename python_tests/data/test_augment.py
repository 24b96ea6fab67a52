"""Refiner augmentation: the blur really blurs (per sample), the noise has its std, probabilities, seeding, errors."""

from __future__ import annotations

import pytest
import torch

from bfr_fast.data import RefinerAugmentation, gaussian_blur
from bfr_fast.ops import band_energy

CUTOFF = 0.5  # half the Nyquist radius: the "high band" of the checks below


def high_band_fraction(before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
    """Per-sample high-band energy after / before."""
    return band_energy(after, CUTOFF)[:, 1] / band_energy(before, CUTOFF)[:, 1]


@pytest.mark.parametrize(("sigma", "bound"), [(0.5, 0.45), (1.0, 0.05), (2.0, 0.03)])
def test_blur_removes_most_high_frequency_energy(sigma, bound):
    x = torch.randn(256, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    fraction = high_band_fraction(x, gaussian_blur(x, torch.full((256,), sigma)))
    # The lowest σ of the default range keeps well under half of the white-noise high band, σ >= 1 almost none.
    assert float(fraction.mean()) < bound
    assert float(fraction.max()) < 0.6  # and every single sample loses a good part of it


def test_blur_preserves_the_mean_and_constant_images():
    x = torch.randn(4, 3, 9, 7)
    blurred = gaussian_blur(x, torch.full((4,), 1.5))
    flat = torch.full((2, 1, 8, 8), 0.3)
    torch.testing.assert_close(gaussian_blur(flat, torch.tensor([0.7, 2.0])), flat)  # normalised kernel, reflected
    assert float((blurred - x).abs().max()) > 0.1  # and not the identity
    torch.testing.assert_close(blurred.mean(dim=(2, 3)), x.mean(dim=(2, 3)), atol=0.15, rtol=0)


def test_blur_applies_each_samples_own_sigma():
    x = torch.randn(1, 2, 8, 8).expand(3, -1, -1, -1).contiguous()
    sigma = torch.tensor([0.5, 1.0, 2.0])
    out = gaussian_blur(x, sigma)
    for i in range(3):  # each row equals blurring that row alone
        torch.testing.assert_close(out[i : i + 1], gaussian_blur(x[i : i + 1], sigma[i : i + 1]))
    energies = band_energy(out, CUTOFF)[:, 1]
    assert energies[0] > 2 * energies[1] > 0  # larger sigma, less high-frequency energy


def test_augmentation_draws_a_sigma_per_sample():
    x = torch.randn(1, 1, 8, 8).expand(64, -1, -1, -1).contiguous()
    out = RefinerAugmentation(blur_prob=1.0, blur_sigma=(0.5, 2.0), noise_prob=0.0)(x, torch.Generator().manual_seed(0))
    high = band_energy(out, CUTOFF)[:, 1]
    assert float(high.std() / high.mean()) > 0.2  # identical inputs, different blurs
    assert bool((high < band_energy(x, CUTOFF)[:, 1] * 0.45).all())  # every one blurred


def test_probability_zero_is_the_identity_and_draws_nothing():
    x = torch.randn(8, 1, 8, 8)
    generator = torch.Generator().manual_seed(3)
    state = generator.get_state()
    assert RefinerAugmentation(blur_prob=0.0, noise_prob=0.0)(x, generator) is x
    assert torch.equal(generator.get_state(), state)


def test_probabilities_select_a_fraction_of_samples():
    x = torch.randn(4000, 1, 8, 8)
    out = RefinerAugmentation(blur_prob=0.3, noise_prob=0.0)(x, torch.Generator().manual_seed(0))
    changed = (out != x).flatten(1).any(dim=1).float().mean()
    assert abs(float(changed) - 0.3) < 0.03
    out = RefinerAugmentation(blur_prob=0.0, noise_prob=0.7, noise_std=0.1)(x, torch.Generator().manual_seed(0))
    changed = (out != x).flatten(1).any(dim=1).float().mean()
    assert abs(float(changed) - 0.7) < 0.03


def test_noise_has_the_requested_per_sample_std():
    x = torch.zeros(512, 256)  # flat vectors: noise only
    out = RefinerAugmentation(blur_prob=0.0, noise_prob=1.0, noise_std=(0.0, 0.2))(x, torch.Generator().manual_seed(0))
    std = out.std(dim=1)
    assert 0.0 <= float(std.min()) < 0.02 and 0.18 < float(std.max()) <= 0.23
    assert abs(float(std.mean()) - 0.1) < 0.01  # U(0, 0.2) has mean 0.1
    fixed = RefinerAugmentation(blur_prob=0.0, noise_prob=1.0, noise_std=0.05)(x)
    torch.testing.assert_close(fixed.std(dim=1), torch.full((512,), 0.05), atol=0.01, rtol=0)


def test_seeded_draws_are_reproducible():
    x = torch.randn(16, 3, 8, 8)
    augment = RefinerAugmentation(blur_prob=0.5, noise_prob=0.5)
    a = augment(x, torch.Generator().manual_seed(7))
    b = augment(x, torch.Generator().manual_seed(7))
    c = augment(x, torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_blur_on_flat_vectors_is_an_error():
    with pytest.raises(ValueError, match="blur applies to"):
        RefinerAugmentation(blur_prob=0.5)(torch.randn(4, 10))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"blur_prob": 1.5}, "blur_prob"),
        ({"noise_prob": -0.1}, "noise_prob"),
        ({"blur_sigma": (0.0, 1.0)}, "blur_sigma"),
        ({"blur_sigma": (2.0, 1.0)}, "blur_sigma"),
        ({"noise_std": -0.1}, "noise_std"),
        ({"kernel_size": 4}, "kernel_size"),
    ],
)
def test_bad_settings_are_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RefinerAugmentation(**kwargs)


def test_blur_rejects_images_too_small_for_the_kernel():
    with pytest.raises(ValueError, match="larger than 2 pixels"):
        gaussian_blur(torch.randn(2, 1, 2, 8), torch.ones(2))
