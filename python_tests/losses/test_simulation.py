"""Simulated steps: the time strategies and the detached Euler steps."""

from __future__ import annotations

import torch

from bfr_fast.losses import simulate, simulation_times


def test_random_times_are_drawn_recursively_towards_t_max():
    t_start = torch.tensor([0.0, 0.5, 0.9])
    torch.manual_seed(0)
    times = simulation_times(t_start, 3, "random", t_max=0.95)
    torch.manual_seed(0)
    expected = [t_start]
    for _ in range(3):
        expected.append(expected[-1] + (0.95 - expected[-1]) * torch.rand(3))
    torch.testing.assert_close(times, torch.stack(expected))
    assert (times.diff(dim=0) >= 0).all() and (times <= 0.95).all()


def test_equal_times_partition_the_rest_of_the_interval():
    t_start = torch.tensor([0.0, 0.2, 0.6])
    times = simulation_times(t_start, 4, "equal")
    parts = (1 - t_start) / 5  # n + 1 equal parts; the n steps take the first n
    torch.testing.assert_close(times.diff(dim=0), parts.expand(4, 3))
    torch.testing.assert_close(times[-1] + parts, torch.ones(3))
    torch.testing.assert_close(simulation_times(t_start, 1, "equal")[1], (1 + t_start) / 2)


def test_simulate_takes_detached_euler_steps_and_reuses_the_first_velocity(recording_model):
    model = recording_model()
    x = torch.randn(3, 4, requires_grad=True)
    times = torch.tensor([[0.1, 0.2, 0.3], [0.4, 0.5, 0.9], [0.8, 0.9, 0.95]])
    first = torch.randn(3, 4, requires_grad=True)
    x_hat = simulate(model, x, times, first_velocity=first)
    assert not x_hat.requires_grad and len(model.calls) == 1 and not model.calls[0].grad_enabled
    step1 = x.detach() + (times[1] - times[0])[:, None] * first.detach()
    torch.testing.assert_close(model.calls[0].x, step1)
    torch.testing.assert_close(model.calls[0].t, times[1])
    torch.testing.assert_close(x_hat, step1 + (times[2] - times[1])[:, None] * model.calls[0].out)
    assert len(model.calls) == 1
    simulate(model, x, times)
    assert len(model.calls) == 3  # without a first velocity, one call per step
