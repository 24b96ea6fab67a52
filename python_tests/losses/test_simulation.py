"""Simulated steps: the time strategies and the detached Euler steps."""

from __future__ import annotations

import json

import numpy as np
import torch

from bfr_fast.losses import DEFARLoss, simulate, simulation_times
from bfr_fast.losses.simulation import check_simulation
from bfr_fast.paths import LinearPath


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


def test_equal_fixed_times_partition_the_rest_of_the_interval():
    t_start = torch.tensor([0.0, 0.2, 0.6])
    times = simulation_times(t_start, 4, "equal_fixed")
    parts = (1 - t_start) / 5  # n + 1 equal parts; the n steps take the first n
    torch.testing.assert_close(times.diff(dim=0), parts.expand(4, 3))
    torch.testing.assert_close(times[-1] + parts, torch.ones(3))
    torch.testing.assert_close(simulation_times(t_start, 1, "equal_fixed")[1], (1 + t_start) / 2)


def test_equal_times_are_random_within_their_parts_of_the_interval():
    t_start = torch.tensor([0.0, 0.2, 0.6, 0.95])
    torch.manual_seed(1)
    times = simulation_times(t_start, 3, "equal")
    torch.manual_seed(1)
    part = (1 - t_start) / 3
    expected = [t_start] + [t_start + (k - 1 + torch.rand(4)) * part for k in range(1, 4)]
    torch.testing.assert_close(times, torch.stack(expected))
    for k in range(1, 4):  # inside the k-th of 3 equal parts of [t_s, 1]
        assert (times[k] >= t_start + (k - 1) * part).all() and (times[k] <= t_start + k * part).all()
    assert (times.diff(dim=0) >= 0).all()
    again = simulation_times(t_start, 3, "equal")
    assert not torch.equal(again[1:], times[1:])  # a new draw, new times
    torch.manual_seed(2)
    one = simulation_times(t_start, 1, "equal")
    torch.manual_seed(2)
    torch.testing.assert_close(one, simulation_times(t_start, 1, "random"))  # one part: U(t_s, 1), as "random"


def test_analytical_steps_hold_the_last_real_velocity(recording_model):
    model = recording_model()
    x = torch.randn(3, 4)
    times = torch.tensor([[0.1, 0.2, 0.3], [0.3, 0.4, 0.5], [0.5, 0.6, 0.7], [0.6, 0.8, 0.9], [0.9, 0.9, 0.95]])
    for real in (1, 2):
        model.calls.clear()
        x_hat = simulate(model, x, times, real_steps=real)
        assert len(model.calls) == real
        x_before = x if real == 1 else x + (times[1] - times[0])[:, None] * model.calls[0].out  # x̂_{r-1}
        last = model.calls[-1].out  # v_{r-1}
        torch.testing.assert_close(model.calls[-1].x, x_before)
        x_real = x_before + (times[real] - times[real - 1])[:, None] * last  # x̂_r, the last real step
        torch.testing.assert_close(x_hat, x_real + (times[-1] - times[real])[:, None] * last)  # the closed form
    first = torch.randn(3, 4)
    model.calls.clear()
    x_hat = simulate(model, x, times, first_velocity=first, real_steps=1)
    assert not model.calls  # the one real step used the given velocity
    torch.testing.assert_close(x_hat, x + (times[-1] - times[0])[:, None] * first)


def test_simulate_with_grad_keeps_the_graph_of_every_real_step(recording_model):
    model = recording_model()
    x = torch.randn(3, 4)
    times = torch.tensor([[0.1, 0.2, 0.3], [0.4, 0.5, 0.9], [0.8, 0.9, 0.95]])
    first = model(x, times[0])
    x_hat = simulate(model, x, times, first_velocity=first, grad=True)
    assert x_hat.requires_grad and model.calls[-1].grad_enabled
    x_hat.sum().backward()
    assert model.calls[0].out_grad is not None and model.calls[1].out_grad is not None
    with torch.no_grad():  # the caller's no_grad still holds
        assert not simulate(model, x, times, grad=True).requires_grad


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


def test_check_simulation_returns_steps_as_a_python_int():
    # It returned steps as given: a NumPy count made a loss's forward passes NumPy integers, which the run's
    # metrics.json could not hold.
    steps = check_simulation(np.int64(3), "random", LinearPath())
    assert steps == 3 and type(steps) is int
    loss = DEFARLoss(steps=np.int64(3))
    assert type(loss.steps) is int
    json.dumps(loss.forward_passes._asdict())
