"""resolve_time_grid: the one rule that turns num_steps / step_size / time_grid into a grid, and its errors."""

from __future__ import annotations

import pytest
import torch

from bfr_fast.solvers import resolve_time_grid


def test_num_steps_alone_is_uniform_on_unit_interval():
    grid = resolve_time_grid(4, None, None, batch_size=3)
    torch.testing.assert_close(grid, torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0], dtype=torch.float64))


@pytest.mark.parametrize(
    ("step_size", "expected"),
    [
        (0.1, [i / 10 for i in range(11)]),
        (0.25, [0.0, 0.25, 0.5, 0.75, 1.0]),
        (0.3, [0.0, 0.3, 0.6, 0.9, 1.0]),
        (1.0, [0.0, 1.0]),
    ],
)
def test_step_size_alone_ends_exactly_at_one(step_size, expected):
    grid = resolve_time_grid(None, step_size, None, batch_size=3)
    torch.testing.assert_close(grid, torch.tensor(expected, dtype=torch.float64))


def test_grid_of_three_or_more_points_is_used_as_given():
    grid = resolve_time_grid(None, None, [0.0, 0.2, 1.0], batch_size=3)
    torch.testing.assert_close(grid, torch.tensor([0.0, 0.2, 1.0], dtype=torch.float64))
    per_sample = torch.tensor([[0.0, 0.5, 1.0], [0.1, 0.2, 0.9]])
    torch.testing.assert_close(resolve_time_grid(None, None, per_sample, batch_size=2), per_sample.double())


def test_two_point_grid_is_subdivided():
    torch.testing.assert_close(
        resolve_time_grid(3, None, torch.tensor([0.2, 0.8]), batch_size=1),
        torch.tensor([0.2, 0.4, 0.6, 0.8], dtype=torch.float64),
    )
    torch.testing.assert_close(
        resolve_time_grid(None, 0.25, [0.5, 1.0], batch_size=1), torch.tensor([0.5, 0.75, 1.0], dtype=torch.float64)
    )
    per_sample = resolve_time_grid(2, None, torch.tensor([[0.0, 1.0], [0.5, 1.0]]), batch_size=2)
    torch.testing.assert_close(per_sample, torch.tensor([[0.0, 0.5, 1.0], [0.5, 0.75, 1.0]], dtype=torch.float64))


@pytest.mark.parametrize(
    ("num_steps", "step_size", "time_grid", "match"),
    [
        (None, None, torch.tensor([0.0, 1.0]), "2-point time_grid"),  # the bare [0, 1]: never a silent single step
        (None, None, None, "exactly one"),
        (4, 0.25, None, "exactly one"),
        (4, 0.25, [0.0, 1.0], "2-point time_grid"),
        (4, None, [0.0, 0.5, 1.0], "num_steps and step_size must be None"),
        (None, 0.5, [0.0, 0.5, 1.0], "num_steps and step_size must be None"),
        (None, 0.5, torch.tensor([[0.0, 1.0], [0.0, 1.0]]), "per-sample"),
        (0, None, None, "num_steps"),
        (True, None, None, "num_steps"),
        (2.0, None, None, "num_steps"),
        (None, 0.0, None, "step_size"),
        (None, 1.5, None, "step_size"),
        (None, float("nan"), None, "step_size"),
        (None, None, [0.0, 0.5, 0.5, 1.0], "strictly increasing"),
        (None, None, [1.0, 0.5, 0.0], "strictly increasing"),
        (None, None, [0.0, float("inf"), 1.0], "finite"),
        (None, None, [0.5], "at least 2"),
        (None, None, torch.zeros(2, 2, 3), r"\(S,\) or \(B, S\)"),
        (None, None, torch.rand(3, 4).sort(dim=1).values, "2 rows"),
        (None, None, "0 to 1", "time_grid"),
    ],
)
def test_bad_arguments(num_steps, step_size, time_grid, match):
    with pytest.raises(ValueError, match=match):
        resolve_time_grid(num_steps, step_size, time_grid, batch_size=2)
