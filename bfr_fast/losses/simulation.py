r"""Simulated sampling steps inside a training step (scheduled sampling, DEFAR): the times and the Euler steps.

From :math:`x_{t_s}` on the path of :math:`(\epsilon, x_1)`, the model takes ``n`` Euler steps of its own over
times :math:`t_s = \tau_0 < \tau_1 < \dots < \tau_n = t_e`:

.. math::
    \hat x_{k+1} = \hat x_k + (\tau_{k+1} - \tau_k)\, \mathrm{sg}[v_k], \qquad \hat x_0 = x_{t_s},

each step one :func:`bfr_fast.ops.lincomb` with per-sample coefficients. The first ``r`` steps are real,
:math:`v_k = v_\theta(\hat x_k, \tau_k)`; the other ``n - r`` are analytical approximations that hold the last real
velocity, :math:`v_k = v_{r-1}` for :math:`k \ge r`, so that in closed form

.. math::
    \hat x_n = \hat x_r + (\tau_n - \tau_r)\, \mathrm{sg}[v_{r-1}]

(``real_steps = r``; default ``r = n``, every step real). The analytical steps are the reconstruction (R) of MDSS in
the DEFAR paper's Appendix E, "one single-step inference, then the remaining three steps accumulated with the
current trajectory formulation as an analytical approximation": on the linear path, the state the model's last
prediction implies at :math:`\tau` is :math:`(1 - \tau)\hat\epsilon + \tau \hat x_1` with
:math:`\hat\epsilon = \hat x_{r-1} - \tau_{r-1} v_{r-1}`, :math:`\hat x_1 = \hat x_{r-1} + (1 - \tau_{r-1}) v_{r-1}`,
which is the formula above; summing the per-step velocity error :math:`v_{r-1} - (x_1 - \epsilon)` over the
remaining steps gives it too. On the linear path with ``r = 1`` it is one Euler step from :math:`t_s` to
:math:`\tau_n`: such an MDSS differs from SDSS only in where :math:`t_e` falls. :math:`\hat x = \hat x_n` is where the
model would be at :math:`t_e` had it sampled from :math:`x_{t_s}`; its gap to :math:`x_{t_e}` is the exposure bias.

By default the steps run without gradient (:math:`\mathrm{sg}`, the state is a constant); ``grad=True`` keeps the
velocities' graphs, so that a loss at :math:`\hat x` back-propagates through every real step.

Times, within :math:`[0, t_\max]` (:math:`t_\max` the interpolant's, 1 for the linear path):

- ``"random"`` (recursive): :math:`\tau_k \sim U(\tau_{k-1}, t_\max)`. For one step this is DEFAR's
  :math:`t_e \sim U(t_s, 1)`; with ``n`` steps :math:`E[t_\max - t_e] = (t_\max - t_s)/2^n`.
- ``"equal"`` (the DEFAR paper's, Appendix B.4): :math:`[t_s, t_\max]` partitioned into ``n`` equal parts of
  length :math:`h = (t_\max - t_s)/n`, step ``k`` ending at a uniform time inside part ``k``:
  :math:`\tau_k \sim U(t_s + (k-1)h,\ t_s + kh)`, so the times increase and spread evenly over the interval. For
  one step this is ``"random"``.
- ``"equal_fixed"`` (this project's earlier ``"equal"``, kept for the ablation): no random numbers;
  :math:`[t_s, t_\max]` partitioned into ``n + 1`` equal parts, the ``n`` steps taking the first ``n``:
  :math:`\tau_k = t_s + k (t_\max - t_s)/(n+1)`, so :math:`t_e` stops one part short of :math:`t_\max` (a time an Euler
  sampler never evaluates).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from bfr_fast.checks import choice, integer, positive_int
from bfr_fast.ops import lincomb
from bfr_fast.paths import Interpolant, LinearPath

TIMESTEP_STRATEGIES: tuple[str, ...] = ("random", "equal", "equal_fixed")


def check_simulation(
    steps: object, timesteps: object, interpolant: Interpolant, real_steps: object = None
) -> int:
    """Validates the simulation settings of a loss; returns ``steps`` as a Python ``int``.

    Raises:
        ValueError: ``steps`` not a positive int, ``real_steps`` neither None nor an int in ``[1, steps]``, an
            unknown ``timesteps``, or a path with noise (the simulated and the true state must lie on one noise-free
            path of ``(ε, x1)``).
    """
    count = positive_int("steps", steps)
    if real_steps is not None:
        integer("real_steps", real_steps, low=1, high=count, why="at most steps, or None")
    choice("timesteps", timesteps, TIMESTEP_STRATEGIES)
    if isinstance(interpolant, LinearPath) and interpolant.sigma > 0:
        raise ValueError("interpolant: simulated steps need a noise-free path; got LinearPath with sigma > 0")
    return count


def simulation_times(t_start: torch.Tensor, steps: int, strategy: str, t_max: float = 1.0) -> torch.Tensor:
    r"""The times :math:`\tau_0 = t_s, \dots, \tau_n = t_e` of ``steps`` simulated steps (module docstring).

    Args:
        t_start: ``(B,)`` float start times :math:`t_s \in [0, t_\max)`.
        steps: Number of steps :math:`n \ge 1`.
        strategy: ``"random"`` or ``"equal"`` (each draws ``steps`` uniforms of shape ``(B,)`` with
            ``torch.rand_like``, one per step in order), or ``"equal_fixed"`` (no random numbers).
        t_max: Upper end of the times.

    Returns:
        ``(steps + 1, B)`` times in ``t_start``'s dtype, non-decreasing down each column, row 0 ``t_start``.
    """
    times = [t_start]
    part = (t_max - t_start) / steps
    for k in range(1, steps + 1):
        previous = times[-1]
        if strategy == "random":
            times.append(previous + (t_max - previous) * torch.rand_like(previous))
        elif strategy == "equal":
            times.append(t_start + (k - 1 + torch.rand_like(t_start)) * part)
        else:
            times.append(t_start + (k / (steps + 1)) * (t_max - t_start))
    return torch.stack(times)


def simulate(
    model: Callable[..., torch.Tensor],
    x_start: torch.Tensor,
    times: torch.Tensor,
    y: torch.Tensor | None = None,
    first_velocity: torch.Tensor | None = None,
    real_steps: int | None = None,
    grad: bool = False,
) -> torch.Tensor:
    r"""Takes the steps :math:`\hat x_{k+1} = \hat x_k + (\tau_{k+1} - \tau_k)\, v_k` of the module docstring.

    Args:
        model: ``model(x, t, y)``.
        x_start: ``(B, ...)`` state at ``times[0]``.
        times: ``(n + 1, B)`` times from :func:`simulation_times`.
        y: Labels for every call.
        first_velocity: :math:`v_\theta(x_{t_s}, t_s)` when the caller already has it, so that the first step
            costs no model call (detached unless ``grad``).
        real_steps: Steps ``r`` that call the model; the remaining ``n - r`` hold the last real velocity (MDSS's
            analytical approximation). ``None``: all ``n``.
        grad: Keep the graph: velocities are not detached and the calls run in the caller's grad mode. Else every
            call runs under ``torch.no_grad`` and the result is detached.

    Returns:
        The ``(B, ...)`` state at ``times[-1]``, in ``x_start``'s dtype. Model calls: ``r - 1`` with
        ``first_velocity``, ``r`` without.
    """
    steps = times.shape[0] - 1
    real = steps if real_steps is None else real_steps
    x = x_start if grad else x_start.detach()
    with torch.set_grad_enabled(grad and torch.is_grad_enabled()):
        for k in range(steps):
            if k < real:
                velocity = first_velocity if k == 0 and first_velocity is not None else model(x, times[k], y)
                velocity = velocity if grad else velocity.detach()
            # steps k >= real are analytical: they keep the last real velocity
            x = lincomb(x, [velocity.to(x.dtype)], [times[k + 1] - times[k]])
    return x
