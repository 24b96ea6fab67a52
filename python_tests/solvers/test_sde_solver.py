"""SDESolver (Euler–Maruyama): Ornstein–Uhlenbeck statistics, the noise-free limit, seeds, per-sample diffusion."""

from __future__ import annotations

import math

import pytest
import torch

from bfr_fast.solvers import ODESolver, SDESolver

THETA, SIGMA = 2.0, 0.8


def ou_drift(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return -THETA * x


def test_ornstein_uhlenbeck_moments():
    # dX = -θ X dt + σ dW from X_0 = 1: E X_1 = e^{-θ}, Var X_1 = σ²(1 - e^{-2θ}) / (2θ).
    x0 = torch.ones(40000, 1)
    x1 = SDESolver().sample(x0, ou_drift, lambda t: SIGMA, num_steps=100, generator=torch.Generator().manual_seed(0))
    mean, var = math.exp(-THETA), SIGMA**2 * (1 - math.exp(-2 * THETA)) / (2 * THETA)
    assert x1.mean().item() == pytest.approx(mean, abs=0.01)  # EM bias O(h) plus sampling error
    assert x1.var().item() == pytest.approx(var, rel=0.05)


def test_zero_diffusion_is_the_euler_ode():
    x0 = torch.randn(5, 3)
    sde = SDESolver().sample(x0, ou_drift, lambda t: 0.0, num_steps=7)
    ode = ODESolver(ou_drift, "euler").sample(x0, num_steps=7)
    torch.testing.assert_close(sde, ode)


def test_paths_are_reproducible_from_a_seed():
    x0 = torch.zeros(4, 3)

    def run(seed):
        generator = torch.Generator().manual_seed(seed)
        return SDESolver().sample(x0, ou_drift, lambda t: 1.0, num_steps=5, generator=generator)

    torch.testing.assert_close(run(3), run(3), rtol=0, atol=0)
    assert not torch.allclose(run(3), run(4))


def test_per_sample_diffusion_and_drift_arguments():
    calls = []

    def drift(x, t, y=None):
        calls.append((t.dtype, t.shape, y))
        return -x

    def diffusion(t):  # per sample: only the middle one is noisy
        return torch.tensor([0.0, 1.0, 0.0]) * t

    x0 = torch.ones(3, 2, dtype=torch.bfloat16)
    y = torch.tensor([1, 2, 3])
    x1 = SDESolver().sample(x0, drift, diffusion, time_grid=[0.0, 0.5, 1.0], y=y)
    assert x1.dtype == torch.bfloat16 and len(calls) == 2
    assert all(dtype == torch.float32 and shape == (3,) and labels is y for dtype, shape, labels in calls)
    noiseless = torch.full((2,), 0.25, dtype=torch.bfloat16)  # (1 - 1/2)^2: two Euler steps of dx/dt = -x
    torch.testing.assert_close(x1[0], noiseless)
    torch.testing.assert_close(x1[2], noiseless)
    assert not torch.allclose(x1[1], noiseless)


def test_bad_arguments():
    with pytest.raises(ValueError, match="backend"):
        SDESolver(backend="cuda")
    with pytest.raises(ValueError, match="2-point time_grid"):
        SDESolver().sample(torch.zeros(2, 1), ou_drift, lambda t: 1.0, time_grid=[0.0, 1.0])
    with pytest.raises(ValueError, match="shape"):
        SDESolver().sample(torch.zeros(2, 3), lambda x, t: x[:, :1], lambda t: 1.0, num_steps=2)
