"""Resolution of the solver's grid arguments into one validated, increasing time grid.

The rule, shared by :meth:`ODESolver.sample <bfr_fast.solvers.ODESolver.sample>` and
:meth:`ODESolver.invert <bfr_fast.solvers.ODESolver.invert>`:

- ``time_grid`` absent: exactly one of ``num_steps`` (uniform steps over ``[0, 1]``) or ``step_size`` (steps of
  that size from 0, the last one ending at 1) must be given.
- ``time_grid`` with 3 or more points: it is the grid; ``num_steps`` and ``step_size`` must be absent.
- ``time_grid`` with exactly 2 points ``[t_start, t_end]``: it gives the interval only, and exactly one of
  ``num_steps`` or ``step_size`` must subdivide it (``step_size`` only for a shared ``(2,)`` grid, since per-sample
  intervals of different lengths would need different step counts). A bare ``[0, 1]`` is an error, never a silent
  single step: ask for one step with ``num_steps=1``.

Grids are ``(S,)`` (shared by the batch) or ``(B, S)`` (one row per sample), strictly increasing along the last
dim and finite. Validation reads the grid on the host once, before any step is taken.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from bfr_fast.checks import positive_float, positive_int

# Slack when dividing an interval by a step size, so that 1 / 0.1 gives 10 steps and not 11.
_STEP_COUNT_SLACK = 1e-6

GridLike = torch.Tensor | Sequence[float] | Sequence[Sequence[float]]


def _check_step_size(step_size: object, span: float) -> float:
    step_size = positive_float("step_size", step_size)
    if step_size > span * (1 + _STEP_COUNT_SLACK):
        raise ValueError(f"step_size must be in (0, {span:g}] (the interval's length), got {step_size!r}")
    return step_size


def _stepped_grid(t_start: float, t_end: float, step_size: float) -> torch.Tensor:
    """``t_start, t_start + h, ..., t_end``: steps of size ``h``, the last one ending exactly at ``t_end``."""
    num_steps = max(1, math.ceil((t_end - t_start) / step_size - _STEP_COUNT_SLACK))
    points = [t_start + i * step_size for i in range(num_steps)] + [t_end]
    return torch.tensor(points, dtype=torch.float64)


def _uniform_grid(interval: torch.Tensor, num_steps: int) -> torch.Tensor:
    """Subdivides ``(..., 2)`` intervals into ``num_steps`` equal steps: ``(..., num_steps + 1)``."""
    fractions = torch.linspace(0.0, 1.0, num_steps + 1, dtype=torch.float64)
    start, end = interval[..., :1], interval[..., 1:]
    grid = start + (end - start) * fractions
    grid[..., -1] = interval[..., 1]  # land exactly on the end point
    return grid


def _as_grid(time_grid: GridLike, batch_size: int) -> torch.Tensor:
    """Checks a user grid and returns it as a float64 CPU tensor (one host read)."""
    if isinstance(time_grid, torch.Tensor):
        if not (time_grid.is_floating_point() or time_grid.dtype in (torch.int32, torch.int64)):
            raise ValueError(f"time_grid must hold real numbers, got dtype {time_grid.dtype}")
        grid = time_grid.detach().to("cpu", torch.float64)
    else:
        try:
            grid = torch.as_tensor(time_grid, dtype=torch.float64)
        except (TypeError, ValueError) as error:
            raise ValueError(f"time_grid must be a tensor or a sequence of floats ({error})") from None
    if grid.dim() not in (1, 2):
        raise ValueError(f"time_grid must be (S,) or (B, S), got shape {tuple(grid.shape)}")
    if grid.dim() == 2 and grid.shape[0] != batch_size:
        raise ValueError(f"a per-sample time_grid must have {batch_size} rows (the batch), got {tuple(grid.shape)}")
    if grid.shape[-1] < 2:
        raise ValueError(f"time_grid needs at least 2 points, got shape {tuple(grid.shape)}")
    if not bool(torch.isfinite(grid).all()):
        raise ValueError("time_grid must be finite")
    if not bool((grid.diff(dim=-1) > 0).all()):
        raise ValueError("time_grid must be strictly increasing (along its last dim); invert() runs it backwards")
    return grid


def resolve_time_grid(
    num_steps: int | None, step_size: float | None, time_grid: GridLike | None, batch_size: int
) -> torch.Tensor:
    """Turns the solver's grid arguments into one increasing grid, following the module's rule.

    Args:
        num_steps: Number of uniform steps, or None.
        step_size: Step size, or None.
        time_grid: ``(S,)`` or ``(B, S)`` increasing grid (tensor or nested sequence), or None.
        batch_size: ``B``, the number of rows a per-sample grid must have.

    Returns:
        A float64 CPU tensor ``(S,)`` or ``(B, S)``, strictly increasing along the last dim, ``S >= 2``.

    Raises:
        ValueError: The arguments break the rule or a value is invalid; the message says which.
    """
    if time_grid is None:
        if (num_steps is None) == (step_size is None):
            raise ValueError(
                "give exactly one of num_steps or step_size (or a time_grid): "
                f"got num_steps={num_steps!r}, step_size={step_size!r}"
            )
        if num_steps is not None:
            return _uniform_grid(torch.tensor([0.0, 1.0], dtype=torch.float64), positive_int("num_steps", num_steps))
        return _stepped_grid(0.0, 1.0, _check_step_size(step_size, 1.0))

    grid = _as_grid(time_grid, batch_size)
    if grid.shape[-1] > 2:
        if num_steps is not None or step_size is not None:
            raise ValueError(
                f"a time_grid of {grid.shape[-1]} points is the grid itself: num_steps and step_size must be None"
            )
        return grid
    if (num_steps is None) == (step_size is None):
        raise ValueError(
            "a 2-point time_grid gives only the interval: subdivide it with exactly one of num_steps or step_size "
            "(num_steps=1 for a single step)"
        )
    if num_steps is not None:
        return _uniform_grid(grid, positive_int("num_steps", num_steps))
    if grid.dim() == 2:
        raise ValueError("step_size cannot subdivide a per-sample (B, 2) time_grid; use num_steps")
    t_start, t_end = grid.tolist()
    return _stepped_grid(t_start, t_end, _check_step_size(step_size, t_end - t_start))
