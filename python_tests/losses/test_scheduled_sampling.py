"""Scheduled sampling (SDSS, MDSS): the simulated steps without gradient, then the static target at t_e."""

from __future__ import annotations

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


def test_equal_timesteps_and_other_interpolants(recording_model):
    model = recording_model()
    vp = VPInterpolant()
    torch.manual_seed(3)
    loss, _ = ScheduledSamplingLoss(2, "equal_fixed", coupling="independent", interpolant=vp)(model, torch.randn(5, 2))
    t = model.calls[0].t
    torch.testing.assert_close(model.calls[-1].t, t + 2 * (vp.t_max - t) / 3)
    assert torch.isfinite(loss)


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
