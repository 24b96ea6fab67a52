"""Scheduled sampling (SDSS, MDSS): the simulated steps without gradient, then the static target at t_e."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from bfr_fast.losses import ScheduledSamplingLoss
from bfr_fast.paths import LinearPath, VPInterpolant


@pytest.mark.parametrize("steps", [1, 4])
def test_simulated_steps_and_the_static_target(recording_model, steps):
    x1 = torch.randn(6, 1, 3, 3)
    model = recording_model()
    loss_fn = ScheduledSamplingLoss(steps, coupling="independent")
    torch.manual_seed(0)
    loss, _ = loss_fn(model, x1)
    torch.manual_seed(0)
    eps, t = torch.randn_like(x1), torch.rand(6)
    times = [t]
    for _ in range(steps):
        times.append(times[-1] + (1 - times[-1]) * torch.rand(6))
    assert len(model.calls) == steps + 1 == loss_fn.forward_passes.total
    x_hat = (1 - t.view(-1, 1, 1, 1)) * eps + t.view(-1, 1, 1, 1) * x1
    for k, call in enumerate(model.calls):
        torch.testing.assert_close(call.t, times[k])
        torch.testing.assert_close(call.x, x_hat)
        assert call.grad_enabled == (k == steps)
        if k < steps:
            x_hat = x_hat + (times[k + 1] - times[k]).view(-1, 1, 1, 1) * call.out.detach()
    assert (torch.stack(times).diff(dim=0) >= 0).all()
    torch.testing.assert_close(loss, (model.calls[-1].out - (x1 - eps)).pow(2).mean())
    loss.backward()
    assert model.calls[-1].out_grad is not None and model.a.grad is not None


def test_mdss_takes_one_real_step_then_three_analytical_ones(recording_model):
    x1 = torch.randn(6, 1, 3, 3)
    model = recording_model()
    loss_fn = ScheduledSamplingLoss(4, real_steps=1, coupling="independent")
    torch.manual_seed(1)
    loss, _ = loss_fn(model, x1)
    torch.manual_seed(1)
    eps, t = torch.randn_like(x1), torch.rand(6)
    times = [t]
    for _ in range(4):
        times.append(times[-1] + (1 - times[-1]) * torch.rand(6))
    assert len(model.calls) == 2 == loss_fn.forward_passes.total
    real, final = model.calls
    x_s = (1 - t.view(-1, 1, 1, 1)) * eps + t.view(-1, 1, 1, 1) * x1
    torch.testing.assert_close(real.x, x_s)
    assert not real.grad_enabled and final.grad_enabled
    # one real step to τ1, then three that hold its velocity: x̂ = x̂_1 + (τ4 - τ1) v(x_s, t_s)
    x_1 = x_s + (times[1] - times[0]).view(-1, 1, 1, 1) * real.out
    torch.testing.assert_close(final.x, x_1 + (times[4] - times[1]).view(-1, 1, 1, 1) * real.out)
    torch.testing.assert_close(final.t, times[4])
    torch.testing.assert_close(loss, (final.out - (x1 - eps)).pow(2).mean())
    assert loss_fn.settings == {"coupling": "independent", "steps": "1/4 real", "timesteps": "random"}


def test_every_call_of_a_sample_gets_its_one_dropped_label(recording_model):
    model = recording_model(num_classes=4)
    ScheduledSamplingLoss(4, label_dropout=0.5, null_class=4)(model, torch.randn(64, 3), torch.arange(64) % 4)
    labels = [call.y for call in model.calls]
    assert all(torch.equal(labels[0], other) for other in labels[1:])
    assert 0 < (labels[0] == 4).sum() < 64


def vp_coefficients(t: torch.Tensor, beta_min: float = 0.1, beta_max: float = 20.0):
    """alpha, sigma of the SBDM-VP path and their t-derivatives by central differences, in float64:
    alpha(t) = exp(-(1-t)^2 (beta_max - beta_min) / 4 - (1-t) beta_min / 2), sigma = sqrt(1 - alpha^2)."""

    def alpha(t):
        s = 1 - t
        return torch.exp(-0.25 * s**2 * (beta_max - beta_min) - 0.5 * s * beta_min)

    def sigma(t):
        return torch.sqrt(1 - alpha(t) ** 2)

    t, h = t.double(), 1e-6
    return (alpha(t), sigma(t), (alpha(t + h) - alpha(t - h)) / (2 * h), (sigma(t + h) - sigma(t - h)) / (2 * h))


def test_equal_timesteps_and_the_static_target_on_the_vp_path(recording_model):
    model = recording_model()
    vp = VPInterpolant()
    x1 = torch.randn(5, 2, generator=torch.Generator().manual_seed(4))
    torch.manual_seed(3)
    loss, _ = ScheduledSamplingLoss(2, "equal_fixed", coupling="independent", interpolant=vp)(model, x1)
    torch.manual_seed(3)
    eps = torch.randn_like(x1)  # the loss's first draw
    t = model.calls[0].t
    times = [t, t + (vp.t_max - t) / 3, t + 2 * (vp.t_max - t) / 3]
    torch.testing.assert_close(model.calls[-1].t, times[2])
    # The simulation starts on the VP path: x_t = alpha(t) x1 + sigma(t) eps, and takes two Euler steps.
    alpha, sigma, _, _ = vp_coefficients(t)
    x_hat = alpha[:, None] * x1.double() + sigma[:, None] * eps.double()
    torch.testing.assert_close(model.calls[0].x.double(), x_hat, rtol=1e-5, atol=1e-6)
    for k in range(2):
        x_hat = x_hat + (times[k + 1] - times[k]).double()[:, None] * model.calls[k].out.detach().double()
    torch.testing.assert_close(model.calls[-1].x.double(), x_hat, rtol=1e-5, atol=1e-5)
    # The static target at t_e: the path's velocity alpha'(t_e) x1 + sigma'(t_e) eps, not the linear x1 - eps.
    _, _, d_alpha, d_sigma = vp_coefficients(times[2])
    target = d_alpha[:, None] * x1.double() + d_sigma[:, None] * eps.double()
    expected = (model.calls[-1].out.detach().double() - target).pow(2).mean()
    torch.testing.assert_close(loss.detach().double(), expected, rtol=1e-4, atol=1e-6)
    linear = (model.calls[-1].out.detach().double() - (x1 - eps).double()).pow(2).mean()
    assert abs(float(linear - expected)) > 0.1 * float(expected)  # the two targets are told apart here


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(steps=0), "steps must be a positive int"),
        (dict(steps=1.0), "steps must be a positive int"),
        (dict(timesteps="cosine"), "timesteps must be one of"),
        (dict(interpolant=LinearPath(0.1)), "noise-free path"),
        (dict(coupling="sinkhorn"), "coupling"),
        (dict(steps=4, real_steps=0), "real_steps must be"),
        (dict(steps=4, real_steps=5), "real_steps must be"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ScheduledSamplingLoss(**kwargs)


@pytest.mark.parametrize(("steps", "real_steps"), [(np.int64(4), np.int64(1)), (np.int64(2), None)])
def test_numpy_step_counts_are_kept_as_python_ints(steps, real_steps):
    # real_steps was kept as given (and, when None, fell back to the unchecked steps): NumPy counts made the loss's
    # forward passes NumPy integers, which a run's metrics.json could not hold.
    loss = ScheduledSamplingLoss(steps, real_steps=real_steps)
    assert type(loss.steps) is int and type(loss.real_steps) is int
    passes = loss.forward_passes
    assert (passes.total, passes.with_grad) == (loss.real_steps + 1, 1)
    json.dumps(passes._asdict())
    assert loss.settings["steps"] == f"{loss.real_steps}/{loss.steps} real"
