"""DDPM: schedules in continuous time, the exact derivative, the ε target, and the probability-flow velocity."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bfr_fast.paths import DDPMSchedule, ProbabilityFlowVelocity
from bfr_fast.solvers import ODESolver

KINDS = ["linear", "sigmoid"]


@pytest.fixture(scope="module", params=KINDS)
def schedule(request) -> DDPMSchedule:
    return DDPMSchedule(num_steps=1000, kind=request.param)


def test_alpha_bar_is_monotone_from_noise_to_data(schedule):
    t = torch.linspace(0, 1, 100001, dtype=torch.float64)  # ~100 points per discrete step
    alpha_bar = schedule.alpha_bar(t)
    assert (alpha_bar.diff() > 0).all()
    assert (schedule.log_alpha_bar_derivative(t) > 0).all()
    assert alpha_bar[0].item() < 1e-4  # t=0: noise
    assert alpha_bar[-1].item() == pytest.approx(1 - schedule.betas[0].item(), abs=1e-12)  # t=1: data, ᾱ_0
    assert alpha_bar[-1].item() > 0.999
    assert (schedule.betas.diff() >= 0).all() and (schedule.alphas_cumprod.diff() < 0).all()


def test_continuous_schedule_equals_discrete_one_at_every_index(schedule):
    index = torch.arange(schedule.num_steps)
    t = 1 - index.double() / (schedule.num_steps - 1)
    torch.testing.assert_close(schedule.alpha_bar(t), schedule.alphas_cumprod, rtol=1e-12, atol=0)
    torch.testing.assert_close(schedule.index(schedule.time(index)), index.float(), rtol=0, atol=1e-3)
    expected = torch.cumprod(1 - schedule.betas, dim=0)
    torch.testing.assert_close(schedule.alphas_cumprod, expected, rtol=1e-12, atol=0)


def test_derivative_is_exact_against_finite_differences(schedule):
    t = torch.rand(2000, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 0.998 + 0.001
    h = 1e-6
    central = (schedule.log_alpha_bar(t + h) - schedule.log_alpha_bar(t - h)) / (2 * h)
    torch.testing.assert_close(schedule.log_alpha_bar_derivative(t), central, rtol=1e-6, atol=1e-6)


def test_float32_times_are_evaluated_in_float64():
    schedule = DDPMSchedule()
    t = torch.tensor([0.0, 0.37, 1.0])
    value, derivative = schedule.log_alpha_bar_and_derivative(t)
    assert value.dtype == derivative.dtype == torch.float64
    assert schedule.alpha_bar(t).dtype == torch.float32


class PathNoiseOracle(nn.Module):
    """Returns the ε of one fixed path x_t = a(t) x1 + s(t) ε: the velocity must be that path's derivative."""

    def __init__(self, eps: torch.Tensor) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, x, t, y=None):
        return self.eps


def test_probability_flow_velocity_is_the_derivative_of_the_noising_path(schedule):
    generator = torch.Generator().manual_seed(0)
    x1 = torch.randn(6, 3, dtype=torch.float64, generator=generator)
    eps = torch.randn(6, 3, dtype=torch.float64, generator=generator)
    t = torch.tensor([0.0, 0.1, 0.35, 0.6, 0.9, 1.0], dtype=torch.float64).clamp(1e-6, 1 - 1e-6)

    def point(time):
        alpha_bar = schedule.alpha_bar(time)[:, None]
        return alpha_bar.sqrt() * x1 + (1 - alpha_bar).sqrt() * eps

    h = 1e-6
    finite_difference = (point(t + h) - point(t - h)) / (2 * h)
    velocity = ProbabilityFlowVelocity(PathNoiseOracle(eps), schedule)(point(t), t.float())
    torch.testing.assert_close(velocity, finite_difference, rtol=1e-4, atol=1e-4)


def test_gaussian_eps_oracle_transports_noise_to_the_data_gaussian():
    # Data N(mu, diag(sd^2)); the exact ε-predictor is E[ε | x_t] = s (x - a mu) / (a^2 sd^2 + s^2).
    schedule = DDPMSchedule()
    mu, sd = torch.tensor([1.5, -0.5, 0.0]), torch.tensor([0.5, 2.0, 1.0])

    def oracle(x, t, y=None):
        alpha_bar = schedule.alpha_bar(t)[:, None]
        a, s = alpha_bar.sqrt(), (1 - alpha_bar).sqrt()
        return s * (x - a * mu) / (alpha_bar * sd**2 + s**2)

    noise = torch.randn(1000, 3, generator=torch.Generator().manual_seed(0))
    noise = (noise - noise.mean(0)) / noise.std(0)  # the flow is affine per dim: no sampling error left
    solver = ODESolver(ProbabilityFlowVelocity(oracle, schedule), "rk4")
    data, nfe = solver.sample(noise, num_steps=20, return_nfe=True)
    assert nfe == 80
    torch.testing.assert_close(data.mean(0), mu, rtol=0, atol=0.02)
    torch.testing.assert_close(data.std(0), sd, rtol=0.01, atol=0)
    torch.testing.assert_close(solver.invert(data, num_steps=20), noise, rtol=0, atol=1e-3)


def test_eps_training_sample():
    schedule = DDPMSchedule(num_steps=50, kind="sigmoid")
    x1 = torch.randn(512, 2, 3)
    sample = schedule.eps_training_sample(x1, generator=torch.Generator().manual_seed(0))
    assert sample.index.dtype == torch.int64 and sample.t.dtype == torch.float32
    assert sample.index.min() == 0 and sample.index.max() == 49  # uniform over all indices
    alpha_bar = schedule.alphas_cumprod[sample.index].float()[:, None, None]
    torch.testing.assert_close(sample.x_t, alpha_bar.sqrt() * x1 + (1 - alpha_bar).sqrt() * sample.eps)
    torch.testing.assert_close(sample.t, 1 - sample.index.float() / 49)
    torch.testing.assert_close(schedule.alpha_bar(sample.t.double()), alpha_bar.flatten().double(), rtol=1e-5, atol=0)
    again = schedule.eps_training_sample(x1, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again.x_t, sample.x_t)
    low = schedule.eps_training_sample(x1.bfloat16())
    assert low.x_t.dtype == low.eps.dtype == torch.bfloat16


class RecordingEps(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[torch.Tensor, torch.Tensor | None]] = []

    def forward(self, x, t, y=None):
        self.seen.append((t, y))
        return torch.zeros_like(x)


@pytest.mark.parametrize(("model_time", "expected"), [("t", [0.0, 0.5, 1.0]), ("index", [9.0, 4.5, 0.0])])
def test_eps_model_receives_its_time_and_labels(model_time, expected):
    eps_model = RecordingEps()
    velocity = ProbabilityFlowVelocity(eps_model, DDPMSchedule(num_steps=10), model_time=model_time)
    y = torch.tensor([3, 1, 2])
    out = velocity(torch.ones(3, 2, dtype=torch.bfloat16), torch.tensor([0.0, 0.5, 1.0]), y=y)
    assert out.dtype == torch.bfloat16
    t, labels = eps_model.seen[0]
    assert t.dtype == torch.float32 and labels is y
    torch.testing.assert_close(t, torch.tensor(expected))
    velocity(torch.ones(3, 2), torch.tensor([0.0, 0.5, 1.0]))
    assert eps_model.seen[1][1] is None


def test_schedule_stays_float64_through_model_casts_and_is_not_saved():
    velocity = ProbabilityFlowVelocity(nn.Identity(), DDPMSchedule(num_steps=10))
    t = torch.tensor([0.0, 0.123, 1.0])
    before = velocity.schedule.alpha_bar(t.double())
    velocity.to(torch.bfloat16).half().float()
    assert all(buffer.dtype == torch.float64 for buffer in velocity.schedule.buffers())
    torch.testing.assert_close(velocity.schedule.alpha_bar(t.double()), before, rtol=0, atol=0)
    assert velocity.state_dict() == {}


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(num_steps=1), "num_steps"),
        (dict(num_steps=10.0), "num_steps"),
        (dict(kind="cosine"), "kind"),
        (dict(beta_start=0.0), "beta_start"),
        (dict(beta_start=0.1, beta_end=0.01), "beta_start"),
        (dict(beta_end=1.0), "beta_end"),
    ],
)
def test_bad_schedule_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DDPMSchedule(**kwargs)


def test_bad_velocity_arguments():
    with pytest.raises(ValueError, match="model_time"):
        ProbabilityFlowVelocity(nn.Identity(), DDPMSchedule(), model_time="seconds")
    with pytest.raises(ValueError, match="x1"):
        DDPMSchedule().eps_training_sample(torch.ones(3, dtype=torch.int64))
