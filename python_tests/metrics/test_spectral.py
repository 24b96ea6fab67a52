"""PFR and FEL against closed forms and brute force; the spectral curves on a tiny model."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from bfr_fast.losses import DEFARLoss
from bfr_fast.metrics import CURVE_NAMES, fc_weight_map, fel, fel_region_masks, pfr
from bfr_fast.pipelines.spectra import exposure_bias_maps, spectral_curves
from bfr_fast.ops import fc_weighted_mse
from bfr_fast.ops.reference import radial_frequency_radius

BACKENDS = ("auto", "eager")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", [(2, 3, 32, 32), (2, 1, 28, 28), (1, 1, 7, 5)])
def test_pfr_of_a_constant_field_is_inf_and_of_zero_nan(shape, backend):
    constant = torch.full(shape, 0.73)
    assert torch.isinf(pfr(constant, 0.5, backend=backend)).all()
    assert torch.isnan(pfr(torch.zeros(shape), 0.5, backend=backend)).all()
    # A band-limited sinusoid is resolved as no high band either (the rounding floor), while a field with a
    # small but real high band keeps a finite PFR.
    w = shape[-1]
    sinusoid = torch.sin(2 * math.pi * torch.arange(w) / w).expand(shape).contiguous()
    assert torch.isinf(pfr(sinusoid, 0.5, backend=backend)).all()
    checker = (-1.0) ** (torch.arange(shape[-2])[:, None] + torch.arange(w)[None, :])
    assert torch.isfinite(pfr(sinusoid + 1e-3 * checker, 0.5, backend=backend)).all()


@pytest.mark.parametrize("cutoff", [0.3, 0.5, 0.8])
def test_pfr_of_white_noise_is_the_ratio_of_band_areas(cutoff):
    # E|X_k|^2 is the same at every bin, so E_low / E_high -> (#low bins) / (#high bins); the smallest band here
    # has ~1700 independent real degrees of freedom per sample: a relative spread of ~2.5%.
    x = torch.randn(8, 3, 128, 128, generator=torch.Generator().manual_seed(1))
    low = radial_frequency_radius(128, 128) <= cutoff
    expected = low.sum().item() / (~low).sum().item()
    got = pfr(x, cutoff)
    assert got.shape == (8,)
    np.testing.assert_allclose(got.numpy(), expected, rtol=0.1)
    np.testing.assert_allclose(got.double().mean().item(), expected, rtol=0.03)


def test_pfr_of_a_smooth_field_is_large_and_of_a_rough_one_small():
    h = w = 32
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    bump = torch.exp(-((yy - 15.5) ** 2 + (xx - 12.0) ** 2) / (2 * 4.0**2))
    noise = torch.randn(2, 3, h, w, generator=torch.Generator().manual_seed(2))
    smooth = pfr(bump.expand(2, 3, h, w) + 1e-3 * noise, 0.5)
    assert torch.isfinite(smooth).all() and (smooth > 100).all()
    checker = (-1.0) ** (yy + xx).float()
    assert (pfr(checker.expand(2, 3, h, w) + 1e-3 * noise, 0.5) < 1e-3).all()


def _brute_force_masks(u: np.ndarray, cutoff: float, kind: str, q: float) -> np.ndarray:
    fy, fx = 2 * np.fft.fftfreq(u.shape[-2]), 2 * np.fft.fftfreq(u.shape[-1])
    keep = np.hypot(fy[:, None], fx[None, :]) <= cutoff
    keep = keep if kind == "low" else ~keep
    filtered = np.real(np.fft.ifft2(np.fft.fft2(u) * keep))
    magnitude = np.abs(filtered).sum(axis=1)
    return np.stack([m >= np.quantile(m, q) for m in magnitude])


def _brute_force_fel(v, u, m_low, m_high, w=None):
    e = ((v - u) ** 2).sum(axis=1)
    w = np.ones_like(e) if w is None else w.reshape(e.shape)
    out = []
    for b in range(e.shape[0]):
        num = sum(w[b, i, j] * e[b, i, j] for i, j in zip(*np.nonzero(m_low[b]), strict=True))
        den = sum(w[b, i, j] * e[b, i, j] for i, j in zip(*np.nonzero(m_high[b]), strict=True))
        out.append(num / den)
    return np.array(out)


@pytest.mark.parametrize("backend", BACKENDS)
def test_fel_equals_brute_force_with_explicit_masks(backend):
    g = torch.Generator().manual_seed(3)
    pred, target = torch.randn(3, 2, 16, 12, generator=g), torch.randn(3, 2, 16, 12, generator=g)
    u64, v64 = target.double().numpy(), pred.double().numpy()
    m_low = _brute_force_masks(u64, 0.3, "low", 0.8)
    m_high = _brute_force_masks(u64, 0.6, "high", 0.75)

    got_low, got_high = fel_region_masks(target, 0.3, 0.6, backend=backend)
    np.testing.assert_array_equal(got_low.numpy(), m_low)
    np.testing.assert_array_equal(got_high.numpy(), m_high)
    assert got_low.float().mean().item() == pytest.approx(0.2, abs=1 / 192)
    assert got_high.float().mean().item() == pytest.approx(0.25, abs=1 / 192)

    expected = _brute_force_fel(v64, u64, m_low, m_high)
    np.testing.assert_allclose(fel(pred, target, 0.3, 0.6, backend=backend).numpy(), expected, rtol=1e-5)
    weight = torch.rand(3, 1, 16, 12, generator=g) + 0.5
    expected_w = _brute_force_fel(v64, u64, m_low, m_high, weight.double().numpy())
    got_w = fel(pred, target, 0.3, 0.6, weight=weight, backend=backend)
    np.testing.assert_allclose(got_w.numpy(), expected_w, rtol=1e-5)
    assert not np.allclose(expected_w, expected)


def test_weighted_fel_with_unit_weight_equals_unweighted():
    g = torch.Generator().manual_seed(4)
    pred, target = torch.randn(4, 3, 8, 8, generator=g), torch.randn(4, 3, 8, 8, generator=g)
    plain = fel(pred, target, 0.4, 0.4)
    for weight in (torch.ones(4, 1, 8, 8), torch.ones(4, 8, 8)):
        torch.testing.assert_close(fel(pred, target, 0.4, 0.4, weight=weight), plain)


def test_fel_zero_error_policy():
    target = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(5))
    assert torch.isnan(fel(target, target, 0.5, 0.5)).all()


def test_fc_weight_map_is_the_weight_of_fc_weighted_mse():
    g = torch.Generator().manual_seed(6)
    pred, target, source = (torch.randn(3, 2, 8, 8, generator=g) for _ in range(3))
    weight = fc_weight_map(source, gamma=1.5, eps=1e-6)
    assert weight.shape == (3, 1, 8, 8)
    manual = (weight * (pred - target) ** 2).mean(dim=(1, 2, 3))
    torch.testing.assert_close(manual, fc_weighted_mse(pred, target, source, 1.5, 1e-6), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(fc_weight_map(source, gamma=0.0), torch.ones(3, 1, 8, 8))


def test_bad_arguments_raise_value_errors_naming_them():
    x = torch.randn(2, 1, 8, 8)
    with pytest.raises(ValueError, match="velocity"):
        pfr(torch.randn(2, 8, 8))
    with pytest.raises(ValueError, match="rtol"):
        pfr(x, rtol=-1.0)
    with pytest.raises(ValueError, match="target"):
        fel(x, torch.randn(2, 1, 8, 4), 0.5, 0.5)
    with pytest.raises(ValueError, match="weight"):
        fel(x, x, 0.5, 0.5, weight=torch.ones(2, 2, 8, 8))
    with pytest.raises(ValueError, match="low_quantile"):
        fel(x, x, 0.5, 0.5, low_quantile=1.5)
    with pytest.raises(ValueError, match="eps"):
        fc_weight_map(x, eps=0.0)
    with pytest.raises(ValueError, match="num_t"):
        spectral_curves(TinyVelocity(), x, num_t=0)
    with pytest.raises(ValueError, match="loss"):
        spectral_curves(TinyVelocity(), x, loss=object())


class TinyVelocity(nn.Module):
    """A nonlinear conv velocity model with time and label inputs."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(1, 1, 3, padding=1)
        self.label = nn.Embedding(num_classes, 1)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        out = torch.tanh(self.conv(x)) + t[:, None, None, None] * x
        return out if y is None else out + self.label(y)[:, :, None, None]


class TimeOnlyVelocity(nn.Module):
    """v = t * pattern: blind to x, so the simulated state gives the same velocity: no exposure bias."""

    def __init__(self) -> None:
        super().__init__()
        self.pattern = nn.Parameter(torch.randn(1, 1, 8, 8, generator=torch.Generator().manual_seed(7)))

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return t[:, None, None, None] * self.pattern.expand_as(x)


def test_spectral_curves_on_a_tiny_model(digits_data):
    x1, y = digits_data.train_x[:6], digits_data.train_y[:6]
    model = TinyVelocity().train()
    curves = spectral_curves(model, x1, y, batch_size=64)[0.5]
    assert model.training  # mode restored
    t = curves["t"]
    assert t.shape == (50,) and (t > 0).all() and (t < 1).all()
    np.testing.assert_allclose(np.diff(t), 1 / 50)
    for name in CURVE_NAMES:
        assert curves[name].shape == (50,) and np.isfinite(curves[name]).all(), name
    assert curves["settings"]["num_samples"] == 6 and curves["settings"]["step"] == pytest.approx(1 / 50)
    # The FC weight reshapes which region carries the loss.
    assert not np.allclose(curves["fel_plain"], curves["fel_reweighted"])

    # Chunking only regroups rows: another batch size gives the same pooled curves.
    again = spectral_curves(model, x1, y, batch_size=7)[0.5]
    for name in CURVE_NAMES:
        np.testing.assert_allclose(again[name], curves[name], rtol=1e-5)


def test_spectral_curves_reweighting_and_exposure_bias_limits(digits_data):
    x1 = digits_data.train_x[:4]
    plain_weight = spectral_curves(TinyVelocity(), x1, loss=DEFARLoss(gamma=0.0), num_t=5)[0.5]
    for name in ("fel_reweighted", "fel_reweighted_as_trained"):
        np.testing.assert_allclose(plain_weight[name], plain_weight["fel_plain"], rtol=1e-6)
    blind = spectral_curves(TimeOnlyVelocity(), x1, num_t=5)[0.5]
    assert np.isnan(blind["pfr_exposure_bias"]).all()  # delta == 0: 0/0 by the policy
    assert np.isfinite(blind["pfr_velocity"]).all()
    # delta == 0 at every t_e too: a weight of 1, the plain loss.
    np.testing.assert_allclose(blind["fel_reweighted_as_trained"], blind["fel_plain"], rtol=1e-6)


def test_spectral_curves_of_several_cutoffs_equal_one_call_per_cutoff(digits_data):
    x1, y = digits_data.train_x[:5], digits_data.train_y[:5]
    both = spectral_curves(TinyVelocity(), x1, y, num_t=4, cutoffs=(0.5, 0.25))
    assert list(both) == [0.5, 0.25]
    for cutoff in (0.5, 0.25):
        alone = spectral_curves(TinyVelocity(), x1, y, num_t=4, cutoffs=(cutoff,))[cutoff]
        assert both[cutoff]["settings"] == alone["settings"] and alone["settings"]["cutoff"] == cutoff
        for name in CURVE_NAMES:
            np.testing.assert_allclose(both[cutoff][name], alone[name], rtol=1e-6)
    assert not np.allclose(both[0.5]["pfr_target"], both[0.25]["pfr_target"])
    with pytest.raises(ValueError, match="cutoffs"):
        spectral_curves(TinyVelocity(), x1, y, cutoffs=(0.5, 0.5))


def _bands(x: np.ndarray, cutoff: float) -> tuple[np.ndarray, np.ndarray]:
    """The low- and high-pass parts of each (H, W) plane by a radial mask on its FFT (1 = Nyquist), in numpy."""
    fy, fx = 2 * np.fft.fftfreq(x.shape[-2]), 2 * np.fft.fftfreq(x.shape[-1])
    keep = np.hypot(fy[:, None], fx[None, :]) <= cutoff
    spectrum = np.fft.fft2(x)
    return np.real(np.fft.ifft2(spectrum * keep)), np.real(np.fft.ifft2(spectrum * ~keep))


def _fc_weight(bias: np.ndarray, gamma: float, eps: float) -> np.ndarray:
    s = np.abs(bias).sum(axis=1)
    return 1 + gamma * s / (s.mean(axis=(1, 2), keepdims=True) + eps)


def _as_trained_weight(model, noise, x1, y, t, lift, gamma, eps, planted_bug=False) -> np.ndarray:
    """The FC weight as DEFARLoss applies it to the loss at t_s = t: delta at t_e = t + (1 - t) lift after one Euler
    step from x_t, written out per sample. ``planted_bug`` takes the velocity on the path at t_s instead of t_e
    for delta's second half, a mix-up of the two times that the test must catch."""
    t_s = torch.full((x1.shape[0],), float(t))
    t_e = t_s + (1 - t_s) * lift
    x_s = (1 - t) * noise + t * x1
    v_s = model(x_s, t_s, y)
    column = t_e[:, None, None, None]
    x_hat = x_s + (column - t) * v_s
    on_path = v_s if planted_bug else model((1 - column) * noise + column * x1, t_e, y)
    return _fc_weight((model(x_hat, t_e, y) - on_path).double().numpy(), gamma, eps)


def test_spectral_curve_points_equal_an_independent_computation(digits_data):
    # Every point of the six curves, rebuilt from the definitions (docs/design.md §5, the spectral_curves docstring)
    # with numpy FFTs and brute-force masks, the model called directly; pooled over the batch as ratios of sums.
    x1, y = digits_data.train_x[:5], digits_data.train_y[:5]
    model, num_t, seed = TinyVelocity(), 4, 3
    loss = DEFARLoss(coupling="independent", gamma=1.5)
    curves = spectral_curves(model, x1, y, loss=loss, num_t=num_t, cutoffs=(0.5,), fel_cutoff_low=0.3,
                             fel_cutoff_high=0.6, seed=seed)[0.5]
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(x1.shape, generator=generator)
    lift = torch.rand(num_t, 5, generator=generator)  # t_e's uniforms, drawn after the sources
    np.testing.assert_allclose(curves["t"], [0.125, 0.375, 0.625, 0.875])
    step = 1 / num_t

    def at(time: float) -> torch.Tensor:
        return torch.full((5,), float(time))

    def pooled_pfr(field: np.ndarray) -> float:
        low, high = _bands(field, 0.5)
        return np.square(low).sum() / np.square(high).sum()

    bugged = []
    with torch.no_grad():
        for i, t in enumerate(curves["t"]):
            x_t = (1 - t) * noise + t * x1
            u = (x1 - noise).double().numpy()
            v = model(x_t, at(t), y)
            t_s = max(t - step, 0.0)
            x_s = (1 - t_s) * noise + t_s * x1
            x_hat = x_s + (t - t_s) * model(x_s, at(t_s), y)
            bias = (model(x_hat, at(t), y) - v).double().numpy()
            v = v.double().numpy()
            error = ((v - u) ** 2).sum(axis=1)
            m_low = _brute_force_masks(u, 0.3, "low", 0.8)
            m_high = _brute_force_masks(u, 0.6, "high", 0.75)
            weight = _fc_weight(bias, 1.5, loss.eps)
            trained = _as_trained_weight(model, noise, x1, y, t, lift[i], 1.5, loss.eps)
            expected = {
                "pfr_velocity": pooled_pfr(v),
                "pfr_target": pooled_pfr(u),
                "pfr_exposure_bias": pooled_pfr(bias),
                "fel_plain": (error * m_low).sum() / (error * m_high).sum(),
                "fel_reweighted": (weight * error * m_low).sum() / (weight * error * m_high).sum(),
                "fel_reweighted_as_trained": (trained * error * m_low).sum() / (trained * error * m_high).sum(),
            }
            for name, value in expected.items():
                assert curves[name][i] == pytest.approx(value, rel=1e-4), (name, t)
            wrong = _as_trained_weight(model, noise, x1, y, t, lift[i], 1.5, loss.eps, planted_bug=True)
            bugged.append((wrong * error * m_low).sum() / (wrong * error * m_high).sum())
    # The planted bug moves the as-trained curve far beyond the tolerance above: the comparison has the power to
    # catch it.
    assert np.abs(np.array(bugged) / curves["fel_reweighted_as_trained"] - 1).max() > 1e-2


def test_exposure_bias_maps_are_the_single_time_bias_in_the_images_order(digits_data):
    x1, y = digits_data.train_x[:6], digits_data.train_y[:6]
    model, loss = TinyVelocity(), DEFARLoss(coupling="independent")
    maps = exposure_bias_maps(model, x1, y, (0.3, 0.9), loss=loss, step=0.1, batch_size=4, seed=2)
    assert maps.shape == (6, 2, 8, 8)
    noise = torch.randn(x1.shape, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        for k, t in enumerate((0.3, 0.9)):
            at = torch.full((6,), t)
            x_s = (1 - (t - 0.1)) * noise + (t - 0.1) * x1
            x_hat = x_s + 0.1 * model(x_s, at - 0.1, y)
            bias = model(x_hat, at, y) - model((1 - t) * noise + t * x1, at, y)
            torch.testing.assert_close(maps[:, k], bias.abs().sum(1), rtol=1e-5, atol=1e-6)
    assert torch.equal(exposure_bias_maps(TimeOnlyVelocity(), x1[:, :, :8, :8], None, (0.5,)), torch.zeros(6, 1, 8, 8))


@pytest.mark.skipif(not torch.cuda.is_available(),
                    reason="no CUDA device here: the CUDA case is not run (a GPU machine runs it)")
def test_cuda_matches_cpu(digits_data):
    g = torch.Generator().manual_seed(8)
    pred, target = torch.randn(3, 2, 16, 16, generator=g), torch.randn(3, 2, 16, 16, generator=g)
    torch.testing.assert_close(pfr(pred.cuda(), 0.4).cpu(), pfr(pred, 0.4), rtol=1e-4, atol=0)
    torch.testing.assert_close(fel(pred.cuda(), target.cuda(), 0.3, 0.6).cpu(), fel(pred, target, 0.3, 0.6),
                               rtol=1e-4, atol=0)
    x1, y = digits_data.train_x[:4].cuda(), digits_data.train_y[:4].cuda()
    curves = spectral_curves(TinyVelocity().cuda(), x1, y, num_t=5)[0.5]
    for name in CURVE_NAMES:
        assert curves[name].shape == (5,) and np.isfinite(curves[name]).all(), name
