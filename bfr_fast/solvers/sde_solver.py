r"""Euler–Maruyama sampler of an SDE :math:`dX = f(X, t)\,dt + g(t)\,dW` on t: 0 → 1.

One step of size :math:`h` from :math:`(x_i, t_i)`:

.. math::
    x_{i+1} = x_i + h\, f(x_i, t_i) + g(t_i) \sqrt{h}\, \xi_i, \qquad \xi_i \sim \mathcal{N}(0, I),

computed by one fused :func:`bfr_fast.ops.lincomb`. Weak order 1, strong order 1/2 (additive noise: strong 1).
For stochastic-interpolant sampling the caller supplies the drift (velocity plus the score correction) and the
diffusion coefficient.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from bfr_fast.checks import choice
from bfr_fast.ops import BACKENDS, lincomb
from bfr_fast.solvers.time_grid import GridLike, resolve_time_grid

DriftFn = Callable[..., torch.Tensor]
DiffusionFn = Callable[[torch.Tensor], float | torch.Tensor]


class SDESolver:
    """Euler–Maruyama integration of :math:`dX = f(X, t) dt + g(t) dW`, forward in time.

    Args:
        backend: ``lincomb`` backend for the updates: ``"auto"``, ``"fused"`` or ``"eager"``.

    Raises:
        ValueError: Unknown ``backend``.
    """

    def __init__(self, backend: str = "auto") -> None:
        choice("backend", backend, BACKENDS)
        self.backend = backend

    def sample(
        self,
        x_init: torch.Tensor,
        drift_fn: DriftFn,
        diffusion_fn: DiffusionFn,
        num_steps: int | None = None,
        step_size: float | None = None,
        time_grid: GridLike | None = None,
        generator: torch.Generator | None = None,
        enable_grad: bool = False,
        **model_extras: object,
    ) -> torch.Tensor:
        """Simulates one path per sample from ``x_init`` along the grid.

        The grid follows the rule of :class:`~bfr_fast.solvers.ODESolver` (:mod:`bfr_fast.solvers.time_grid`):
        ``num_steps`` or ``step_size`` over ``[0, 1]``, or a ``time_grid`` (``(S,)`` or per-sample ``(B, S)``).

        Args:
            x_init: ``(B, ...)`` initial state, floating. Not modified.
            drift_fn: ``drift_fn(x, t, **model_extras)`` -> :math:`f(x, t)` with ``x``'s shape; ``t`` is a ``(B,)``
                float32 tensor.
            diffusion_fn: ``diffusion_fn(t)`` -> :math:`g(t)`, a float or a ``(B,)`` tensor (per sample).
            num_steps: Number of uniform steps.
            step_size: Step size (the last step ends at the grid's end).
            time_grid: Increasing ``(S,)`` or ``(B, S)`` grid.
            generator: Source of the Gaussian increments (on ``x_init``'s device), for reproducible paths.
            enable_grad: Record the computation for autograd; by default it runs under ``torch.no_grad``.
            **model_extras: Passed to every ``drift_fn`` call, e.g. ``y=labels``.

        Returns:
            The final state, ``(B, ...)`` in ``x_init``'s dtype.

        Raises:
            ValueError: Bad grid arguments, a non-float ``x_init``, or a drift of the wrong shape.
        """
        if not isinstance(x_init, torch.Tensor) or not x_init.is_floating_point() or x_init.dim() < 1:
            raise ValueError(f"x_init must be a floating (B, ...) tensor, got {getattr(x_init, 'shape', x_init)!r}")
        grid = resolve_time_grid(num_steps, step_size, time_grid, x_init.shape[0])
        steps = grid.diff(dim=-1)
        times = grid[..., :-1].T if grid.dim() == 2 else grid[:-1, None].expand(-1, x_init.shape[0])
        times = times.to(device=x_init.device, dtype=torch.float32).contiguous()  # (S-1, B)
        if grid.dim() == 1:
            step_sizes: list[float] | torch.Tensor = steps.tolist()
            noise_scales: list[float] | torch.Tensor = [math.sqrt(h) for h in step_sizes]
        else:
            step_sizes = steps.T.to(device=x_init.device, dtype=torch.float32).contiguous()
            noise_scales = step_sizes.sqrt()

        x = x_init
        with torch.set_grad_enabled(enable_grad):
            for step in range(times.shape[0]):
                t = times[step]
                drift = drift_fn(x, t, **model_extras)
                if not isinstance(drift, torch.Tensor) or drift.shape != x.shape:
                    got = tuple(drift.shape) if isinstance(drift, torch.Tensor) else type(drift).__name__
                    raise ValueError(f"drift_fn must return a tensor of the state's shape {tuple(x.shape)}, got {got}")
                noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
                x = lincomb(
                    x,
                    [drift.to(x.dtype), noise],
                    [step_sizes[step], diffusion_fn(t) * noise_scales[step]],
                    backend=self.backend,
                )
        return x
