"""Interpolants (linear, GVP, VP): end points, velocity = d/dt of the path, the score of a velocity field, the
direction towards an end point, and SDE/ODE sampling with exact mixture-of-Gaussians velocities."""

from __future__ import annotations

import math

import pytest
import torch
from scipy.stats import ks_2samp

from bfr_fast.paths import (
    DIFFUSION_FORMS,
    GVPInterpolant,
    LinearPath,
    VPInterpolant,
    sde_drift_and_diffusion,
)
from bfr_fast.solvers import ODESolver, SDESolver

INTERPOLANTS = {"linear": LinearPath(), "gvp": GVPInterpolant(), "vp": VPInterpolant()}


class MixtureOracle(torch.nn.Module):
    r"""The exact marginal velocity of an interpolant for data whose coordinates are i.i.d. 1-D Gaussian mixtures.

    Component k, N(μ_k, s_k²), gives x_t | k ~ N(α μ_k, V_k), V_k = α² s_k² + σ², and
    E[α' x_1 + σ' ε | x, k] = α' μ_k + (α α' s_k² + σ σ') (x - α μ_k) / V_k; the velocity mixes these with the
    posterior responsibilities of the components, the score mixes -(x - α μ_k) / V_k.
    """

    def __init__(self, interpolant, weights, means, stds):
        super().__init__()
        self.interpolant = interpolant
        self.weights, self.means, self.stds = (torch.tensor(v, dtype=torch.float64) for v in (weights, means, stds))

    def _parts(self, x, t):
        a, s, da, ds = (c.view(-1, *([1] * x.dim())) for c in self.interpolant.coefficients(t.double()))
        x = x.double()[..., None]  # (B, ..., K)
        var = a**2 * self.stds**2 + s**2
        centred = x - a * self.means
        log_resp = self.weights.log() - 0.5 * (centred**2 / var + var.log())
        resp = torch.softmax(log_resp, dim=-1)
        velocity = (resp * (da * self.means + (a * da * self.stds**2 + s * ds) * centred / var)).sum(-1)
        score = (resp * (-centred / var)).sum(-1)
        return velocity, score

    def forward(self, x, t, y=None):
        return self._parts(x, t)[0].to(x.dtype)

    def score(self, x, t):
        return self._parts(x, t)[1].to(x.dtype)

    def sample(self, n, generator):
        component = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        noise = torch.randn(n, generator=generator, dtype=torch.float64)
        return self.means[component] + self.stds[component] * noise


def pair(shape=(6, 3), dtype=torch.float64):
    generator = torch.Generator().manual_seed(0)
    return torch.randn(shape, generator=generator, dtype=dtype), torch.randn(shape, generator=generator, dtype=dtype)


@pytest.mark.parametrize("name", ["linear", "gvp"])
def test_end_points_are_the_noise_and_the_data(name):
    x0, x1 = pair()
    path = INTERPOLANTS[name]
    torch.testing.assert_close(path.point(x0, x1, torch.zeros(6)), x0)
    torch.testing.assert_close(path.point(x0, x1, torch.ones(6)), x1)


def test_vp_starts_a_hair_off_the_noise_and_ends_at_the_data():
    x0, x1 = pair()
    vp = VPInterpolant(beta_min=0.1, beta_max=20.0)
    alpha0 = math.exp(-(0.1 + 20.0) / 4)  # exp(-½ ∫_0^1 β) with β linear from 0.1 to 20
    expected = alpha0 * x1 + math.sqrt(1 - alpha0**2) * x0
    torch.testing.assert_close(vp.point(x0, x1, torch.zeros(6, dtype=torch.float64)), expected)
    torch.testing.assert_close(vp.point(x0, x1, torch.ones(6)), x1)
    assert 0.006 < alpha0 < 0.007


@pytest.mark.parametrize("name", sorted(INTERPOLANTS))
def test_velocity_is_the_time_derivative_of_the_path(name):
    x0, x1 = pair()
    t = torch.tensor([0.0, 0.1, 0.3, 0.5, 0.8, 0.99], dtype=torch.float64) * 0.999 + 5e-4
    path, h = INTERPOLANTS[name], 1e-6
    derivative = (path.point(x0, x1, t + h) - path.point(x0, x1, t - h)) / (2 * h)
    torch.testing.assert_close(path.velocity(x0, x1, t), derivative, rtol=1e-6, atol=1e-6)
    x_t, u_t = path.sample(x0, x1, t)
    torch.testing.assert_close(x_t, path.point(x0, x1, t))
    torch.testing.assert_close(u_t, path.velocity(x0, x1, t))


@pytest.mark.parametrize("name", ["gvp", "vp"])
def test_gvp_and_vp_preserve_variance(name):
    t = torch.linspace(0, 1, 101, dtype=torch.float64)
    c = INTERPOLANTS[name].coefficients(t)
    torch.testing.assert_close(c.alpha**2 + c.sigma**2, torch.ones_like(t))
    assert (c.d_alpha > 0).all() and (c.d_sigma[1:-1] < 0).all()


def test_the_linear_path_velocity_is_the_difference():
    x0, x1 = pair()
    torch.testing.assert_close(LinearPath().velocity(x0, x1, torch.rand(6)), x1 - x0)


@pytest.mark.parametrize("name", sorted(INTERPOLANTS))
def test_score_from_the_exact_velocity_is_the_exact_score(name):
    path = INTERPOLANTS[name]
    oracle = MixtureOracle(path, [0.3, 0.7], [-1.0, 2.0], [0.3, 0.6])
    x = 3 * torch.randn(8, 4, dtype=torch.float64)
    t = torch.tensor([0.0, 0.05, 0.2, 0.4, 0.6, 0.8, 0.9, 0.97], dtype=torch.float64)
    torch.testing.assert_close(path.score_from_velocity(oracle(x, t), x, t), oracle.score(x, t))
    if name == "linear":  # at t=0 the marginal is N(0, I)
        torch.testing.assert_close(path.score_from_velocity(oracle(x, t), x, t)[0], -x[0])


@pytest.mark.parametrize("name", sorted(INTERPOLANTS))
def test_direction_towards_the_end_point(name):
    path = INTERPOLANTS[name]
    x0, x1 = pair()
    x = torch.randn_like(x0)
    t = torch.linspace(0.05, 0.95, 6, dtype=torch.float64)
    c = path.coefficients(t)
    on_path = path.point(x0, x1, t)
    # On the path: σ times the velocity target.
    torch.testing.assert_close(path.direction_towards(on_path, x1, t), c.sigma[:, None] * path.velocity(x0, x1, t))
    # Off the path: σ times the velocity of the member through x that ends at x1 (its noise (x - α x1)/σ).
    noise = (x - c.alpha[:, None] * x1) / c.sigma[:, None]
    expected = c.sigma[:, None] * path.velocity(noise, x1, t)
    torch.testing.assert_close(path.direction_towards(x, x1, t), expected)
    if name == "linear":
        torch.testing.assert_close(path.direction_towards(x, x1, torch.ones(6)), x1 - x)


def _end_samples(path, oracle, diffusion, n=10000, steps=100, seed=0):
    """Samples from N(0, I) at t=0 to the end: t=1, or SiT's 1 - 1e-3 for VP, whose velocity is singular at 1."""
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(n, 1, generator=generator, dtype=torch.float64)
    interval = [0.0, 1.0 - 1e-3 if isinstance(path, VPInterpolant) else 1.0]
    if diffusion is None:
        return ODESolver(oracle, "heun").sample(noise, time_grid=interval, num_steps=steps // 2)
    drift, g = sde_drift_and_diffusion(oracle, path, diffusion)
    return SDESolver().sample(noise, drift, g, time_grid=interval, num_steps=steps, generator=generator)


@pytest.mark.parametrize("name", sorted(INTERPOLANTS))
@pytest.mark.parametrize("diffusion", [None, "sigma"])
def test_sampling_carries_the_noise_to_the_data_gaussian(name, diffusion):
    path = INTERPOLANTS[name]
    oracle = MixtureOracle(path, [1.0], [1.5], [0.5])
    x = _end_samples(path, oracle, diffusion)
    assert x.mean().item() == pytest.approx(1.5, abs=0.025)  # 5 standard errors
    assert x.var().item() == pytest.approx(0.25, rel=0.05)


@pytest.mark.parametrize("name", sorted(INTERPOLANTS))
def test_ode_and_sde_agree_in_distribution_on_a_mixture(name):
    path = INTERPOLANTS[name]
    oracle = MixtureOracle(path, [0.3, 0.7], [-1.0, 2.0], [0.3, 0.6])
    ode = _end_samples(path, oracle, None, n=5000, seed=1).flatten()
    sde = _end_samples(path, oracle, "sigma", n=5000, seed=2).flatten()
    data = oracle.sample(5000, torch.Generator().manual_seed(3))
    assert ks_2samp(ode.numpy(), sde.numpy()).statistic < 0.04
    assert ks_2samp(sde.numpy(), data.numpy()).statistic < 0.04


@pytest.mark.parametrize("diffusion", DIFFUSION_FORMS)
def test_every_diffusion_form_keeps_the_marginals(diffusion):
    vp = INTERPOLANTS["vp"]  # α(0) > 0, so the SBDM form is finite from t=0
    oracle = MixtureOracle(vp, [1.0], [1.5], [0.5])
    x = _end_samples(vp, oracle, diffusion, n=8000)
    assert x.mean().item() == pytest.approx(1.5, abs=0.03)
    assert x.var().item() == pytest.approx(0.25, rel=0.08)


def test_diffusion_forms_follow_their_formulas():
    path = GVPInterpolant()
    t = torch.tensor([0.1, 0.5, 0.9])
    c = path.coefficients(t.double())
    expected = {
        "sigma": c.sigma,
        "sbdm": c.d_alpha / c.alpha * c.sigma**2 - c.sigma * c.d_sigma,
        "constant": torch.ones(3, dtype=torch.float64),
        "linear": 1 - t.double(),
        "decreasing": 0.25 * (torch.cos(math.pi * t.double()) + 1) ** 2,
        "increasing-decreasing": torch.sin(math.pi * t.double()) ** 2,
    }
    for form, d in expected.items():
        _, g = sde_drift_and_diffusion(lambda x, t: x, path, form, norm=0.5)
        torch.testing.assert_close(g(t), torch.sqrt(2 * 0.5 * d).float())
    # SBDM of VP is β itself: w = 2D = β(1 - t).
    _, g = sde_drift_and_diffusion(lambda x, t: x, VPInterpolant(0.1, 20.0), "sbdm")
    torch.testing.assert_close(g(t), torch.sqrt(0.1 + (1 - t) * 19.9))


def test_zero_norm_is_the_probability_flow_ode():
    path = GVPInterpolant()
    oracle = MixtureOracle(path, [1.0], [1.5], [0.5])
    drift, g = sde_drift_and_diffusion(oracle, path, "constant", norm=0.0)
    x, t = torch.randn(5, 2, dtype=torch.float64), torch.rand(5)
    torch.testing.assert_close(drift(x, t), oracle(x, t))
    assert (g(t) == 0).all()


def test_drift_passes_model_extras_and_keeps_the_dtype():
    seen = {}

    def model(x, t, y=None):
        seen["y"], seen["t"] = y, t
        return torch.zeros_like(x)

    drift, _ = sde_drift_and_diffusion(model, LinearPath())
    x = torch.ones(3, 2, dtype=torch.bfloat16)
    out = drift(x, torch.full((3,), 0.5), y=torch.tensor([1, 2, 3]))
    assert out.dtype == torch.bfloat16 and seen["t"].dtype == torch.float32
    assert seen["y"].tolist() == [1, 2, 3]
    torch.testing.assert_close(out, -x)  # linear, "sigma": (1 + t) v - x with v = 0


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: sde_drift_and_diffusion(lambda x, t: x, LinearPath(), "cosine"), "diffusion must be one of"),
        (lambda: sde_drift_and_diffusion(lambda x, t: x, LinearPath(), norm=-1.0), "norm"),
        (lambda: VPInterpolant(beta_min=0.0), "beta_min"),
        (lambda: VPInterpolant(beta_min=2.0, beta_max=1.0), "beta_min <= beta_max"),
        (lambda: VPInterpolant(t_max=1.0), "t_max"),
        (lambda: GVPInterpolant().point(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(3)), r"\(2,\) float"),
        (lambda: GVPInterpolant().velocity(torch.zeros(2, 3), torch.zeros(2, 4), torch.zeros(2)), "one shape"),
    ],
)
def test_bad_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()
