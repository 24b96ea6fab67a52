r"""Simulated sampling steps inside a training step (scheduled sampling, DEFAR): the times and the Euler steps.

From :math:`x_{t_s}` on the path of :math:`(\epsilon, x_1)`, the model takes ``n`` Euler steps of its own, without
gradient, over times :math:`t_s = \tau_0 < \tau_1 < \dots < \tau_n = t_e`:

.. math::
    \hat x_{k+1} = \hat x_k + (\tau_{k+1} - \tau_k)\, \mathrm{sg}[v_\theta(\hat x_k, \tau_k)],
    \qquad \hat x_0 = x_{t_s},

each step one :func:`bfr_fast.ops.lincomb` with per-sample coefficients. :math:`\hat x = \hat x_n` is where the
model would be at :math:`t_e` had it sampled from :math:`x_{t_s}`; its gap to :math:`x_{t_e}` is the exposure bias.

Times, within :math:`[0, t_\max]` (:math:`t_\max` the interpolant's, 1 for the linear path):

- ``"random"`` (recursive): :math:`\tau_k \sim U(\tau_{k-1}, t_\max)`. For one step this is DEFAR's
  :math:`t_e \sim U(t_s, 1)`; with ``n`` steps :math:`E[t_\max - t_e] = (t_\max - t_s)/2^n`.
- ``"equal"``: :math:`[t_s, t_\max]` partitioned into ``n + 1`` equal parts, the ``n`` steps taking the first ``n``:
  :math:`\tau_k = t_s + k (t_\max - t_s)/(n+1)`. The ``n``-th step ends short of :math:`t_\max`, where the
  rectified velocity is still used by a sampler: with ``n`` parts, :math:`t_e` would always be :math:`t_\max`,
  a time an Euler sampler never evaluates. For one step, :math:`t_e` is the midpoint, the mean of ``"random"``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from bfr_fast.ops import lincomb
from bfr_fast.paths import Interpolant, LinearPath

TIMESTEP_STRATEGIES: tuple[str, ...] = ("random", "equal")


def check_simulation(steps: object, timesteps: object, interpolant: Interpolant) -> int:
    """Validates the simulation settings of a loss; returns ``steps``.

    Raises:
        ValueError: ``steps`` not a positive int, an unknown ``timesteps``, or a path with noise (the simulated
            and the true state must lie on one noise-free path of ``(ε, x1)``).
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    if timesteps not in TIMESTEP_STRATEGIES:
        raise ValueError(f"timesteps must be one of {TIMESTEP_STRATEGIES}, got {timesteps!r}")
    if isinstance(interpolant, LinearPath) and interpolant.sigma > 0:
        raise ValueError("interpolant: simulated steps need a noise-free path; got LinearPath with sigma > 0")
    return steps


def simulation_times(t_start: torch.Tensor, steps: int, strategy: str, t_max: float = 1.0) -> torch.Tensor:
    r"""The times :math:`\tau_0 = t_s, \dots, \tau_n = t_e` of ``steps`` simulated steps (module docstring).

    Args:
        t_start: ``(B,)`` float start times :math:`t_s \in [0, t_\max)`.
        steps: Number of steps :math:`n \ge 1`.
        strategy: ``"random"`` (draws ``steps`` uniforms, ``torch.rand``) or ``"equal"`` (no random numbers).
        t_max: Upper end of the times.

    Returns:
        ``(steps + 1, B)`` times in ``t_start``'s dtype, non-decreasing down each column, row 0 ``t_start``.
    """
    times = [t_start]
    for k in range(1, steps + 1):
        previous = times[-1]
        if strategy == "random":
            times.append(previous + (t_max - previous) * torch.rand_like(previous))
        else:
            times.append(t_start + (k / (steps + 1)) * (t_max - t_start))
    return torch.stack(times)


def simulate(
    model: Callable[..., torch.Tensor],
    x_start: torch.Tensor,
    times: torch.Tensor,
    y: torch.Tensor | None = None,
    first_velocity: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""Takes the Euler steps :math:`\hat x_{k+1} = \hat x_k + (\tau_{k+1} - \tau_k)\,\mathrm{sg}[v_\theta(\hat x_k,
    \tau_k)]` without gradient.

    Args:
        model: ``model(x, t, y)``.
        x_start: ``(B, ...)`` state at ``times[0]``.
        times: ``(n + 1, B)`` times from :func:`simulation_times`.
        y: Labels for every call.
        first_velocity: :math:`v_\theta(x_{t_s}, t_s)` when the caller already has it (it is detached here), so
            that the first step costs no model call.

    Returns:
        The detached ``(B, ...)`` state at ``times[-1]``, in ``x_start``'s dtype. Model calls:
        ``n - 1`` with ``first_velocity``, ``n`` without, all under ``torch.no_grad``.
    """
    x = x_start.detach()
    with torch.no_grad():
        for k in range(times.shape[0] - 1):
            if k == 0 and first_velocity is not None:
                velocity = first_velocity.detach()
            else:
                velocity = model(x, times[k], y)
            x = lincomb(x, [velocity.to(x.dtype)], [times[k + 1] - times[k]])
    return x
