r"""Fixed-step ODE solver for velocity models: sampling (t: 0 → 1) and inversion (t: 1 → 0).

Integrates :math:`\frac{dx}{dt} = v_\theta(x, t)` with an explicit Runge–Kutta method
(:mod:`bfr_fast.solvers.runge_kutta`). Every stage input and every update is one fused
:func:`bfr_fast.ops.lincomb`; the grid, the stage times and the step coefficients are built once before the loop,
so the loop itself never synchronises with the device (no ``.item()``, no branching on tensor values).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, overload

import torch

from bfr_fast.checks import choice
from bfr_fast.ops import BACKENDS, lincomb
from bfr_fast.ops._checks import FLOAT_DTYPES
from bfr_fast.ops._extension import use_fused
from bfr_fast.ops.reference import lincomb_reference
from bfr_fast.solvers.runge_kutta import TABLEAUX, ButcherTableau
from bfr_fast.solvers.time_grid import GridLike, resolve_time_grid

VelocityModel = Callable[..., torch.Tensor]


class _StepPlan:
    """Everything the step loop needs, precomputed from the grid and the tableau before the first step.

    ``times[i * stages + j]`` is the model's ``(B,)`` float32 time at stage ``j`` of step ``i`` (a view of one
    contiguous ``(S-1, stages, B)`` tensor, whatever the state's dtype). ``stage_coeffs[i][j]`` and
    ``update_coeffs[i]`` hold the coefficients ``m * h`` of the stage inputs and of the update, one per nonzero
    tableau entry, in the order of ``stage_terms[j]`` and ``update_terms`` (the indices of the ks they multiply).
    A shared ``(S,)`` grid gives Python-float coefficients; a per-sample ``(B, S)`` grid gives ``(B,)`` float32
    tensors (per-sample coefficients). With ``fused``, each coefficient list comes as the fused op's
    ``(scalars, vectors)`` pair instead, as :func:`bfr_fast.ops.lincomb` would build it.
    """

    def __init__(
        self, grid: torch.Tensor, tableau: ButcherTableau, batch_size: int, device: torch.device, fused: bool
    ) -> None:
        steps = grid.diff(dim=-1)  # float64: (S-1,) or (B, S-1), negative when integrating backwards
        fractions = torch.tensor(tableau.c, dtype=torch.float64)
        self.num_steps = steps.shape[-1]
        self.num_stages = tableau.num_stages
        self.stage_terms = [tuple(l for l, m in enumerate(row) if m) for row in tableau.a]
        self.update_terms = tuple(l for l, m in enumerate(tableau.b) if m)
        multipliers = [tuple(m for m in row if m) for row in tableau.a] + [tuple(m for m in tableau.b if m)]
        coefficients: list[list]  # [step][stage, then the update]: a coefficient list or a (scalars, vectors) pair
        if grid.dim() == 1:
            stage_times = (grid[:-1, None] + steps[:, None] * fractions)[..., None].expand(-1, -1, batch_size)
            if fused:
                vectors = [[None] * len(ms) for ms in multipliers]
                coefficients = [
                    [([m * h for m in ms], v) for ms, v in zip(multipliers, vectors, strict=True)] for h in steps.tolist()
                ]
            else:
                coefficients = [[[m * h for m in ms] for ms in multipliers] for h in steps.tolist()]
        else:
            stage_times = (grid[:, :-1, None] + steps[..., None] * fractions).permute(1, 2, 0)
            distinct = {m for ms in multipliers for m in ms}
            scaled = {m: (steps * m).T.to(device=device, dtype=torch.float32).contiguous().unbind(0) for m in distinct}
            if fused:
                ones = [[1.0] * len(ms) for ms in multipliers]
                coefficients = [
                    [(o, [scaled[m][i] for m in ms]) for ms, o in zip(multipliers, ones, strict=True)]
                    for i in range(self.num_steps)
                ]
            else:
                coefficients = [[[scaled[m][i] for m in ms] for ms in multipliers] for i in range(self.num_steps)]
        # (S-1, stages, B): each [i, j] is a contiguous (B,) float32 view, whatever the state's dtype.
        self.times_tensor = stage_times.to(device=device, dtype=torch.float32).contiguous()
        self.times = self.times_tensor.flatten(0, 1).unbind(0)
        self.stage_coeffs = [per_step[:-1] for per_step in coefficients]
        self.update_coeffs = [per_step[-1] for per_step in coefficients]


class ODESolver:
    r"""Fixed-step Runge–Kutta solver of :math:`\frac{dx}{dt} = v(x, t)` for any velocity model.

    Time runs from noise (t=0) to data (t=1): :meth:`sample` integrates forward along the grid,
    :meth:`invert` backward along the same grid reversed, so ``invert(sample(x))`` returns ``x`` up to the method's
    error :math:`O(h^p)` (p = 1 Euler, 2 midpoint and Heun, 4 RK4).

    Args:
        velocity_model: Any callable (typically an ``nn.Module``) called as ``velocity_model(x, t, **model_extras)``
            with ``x`` the state (the solver's dtype) and ``t`` a ``(B,)`` float32 tensor on ``x``'s device
            (float32 even for a bfloat16/float16 state); it returns the velocity with ``x``'s shape (cast to
            ``x``'s dtype if it differs).
        method: ``"euler"`` (1 NFE per step), ``"midpoint"`` (2), ``"heun"`` (2), ``"rk4"`` (4) or ``"rk4_38"``
            (4; Kutta's 3/8 rule, which torchdiffeq calls ``"rk4"``).
        backend: ``lincomb`` backend for the state updates: ``"auto"``, ``"fused"`` or ``"eager"``.

    Raises:
        ValueError: Unknown ``method`` or ``backend``, or a ``velocity_model`` that is not callable.

    The solver leaves the model's train/eval mode as it finds it.

    Example::

        solver = ODESolver(model, method="heun")
        x1, nfe = solver.sample(torch.randn(16, 3, 32, 32), num_steps=10, return_nfe=True, y=labels)  # nfe == 20
        z = solver.invert(x1, num_steps=10, y=labels)  # back to (approximately) the noise
    """

    def __init__(self, velocity_model: VelocityModel, method: str = "euler", backend: str = "auto") -> None:
        if not callable(velocity_model):
            raise ValueError(f"velocity_model must be callable as model(x, t, **extras), got {type(velocity_model)}")
        choice("method", method, sorted(TABLEAUX))
        choice("backend", backend, BACKENDS)
        self.velocity_model = velocity_model
        self.method = method
        self.tableau = TABLEAUX[method]
        self.backend = backend

    @overload
    def sample(
        self,
        x_init: torch.Tensor,
        num_steps: int | None = ...,
        step_size: float | None = ...,
        time_grid: GridLike | None = ...,
        return_intermediates: bool = ...,
        enable_grad: bool = ...,
        return_nfe: Literal[False] = ...,
        **model_extras: object,
    ) -> torch.Tensor: ...

    @overload
    def sample(
        self,
        x_init: torch.Tensor,
        num_steps: int | None = ...,
        step_size: float | None = ...,
        time_grid: GridLike | None = ...,
        return_intermediates: bool = ...,
        enable_grad: bool = ...,
        *,
        return_nfe: Literal[True],
        **model_extras: object,
    ) -> tuple[torch.Tensor, int]: ...

    @overload
    def sample(
        self,
        x_init: torch.Tensor,
        num_steps: int | None = ...,
        step_size: float | None = ...,
        time_grid: GridLike | None = ...,
        return_intermediates: bool = ...,
        enable_grad: bool = ...,
        return_nfe: bool = ...,
        **model_extras: object,
    ) -> torch.Tensor | tuple[torch.Tensor, int]: ...

    def sample(
        self,
        x_init: torch.Tensor,
        num_steps: int | None = None,
        step_size: float | None = None,
        time_grid: GridLike | None = None,
        return_intermediates: bool = False,
        enable_grad: bool = False,
        return_nfe: bool = False,
        **model_extras: object,
    ) -> torch.Tensor | tuple[torch.Tensor, int]:
        r"""Integrates from the grid's first time to its last (by default t: 0 → 1).

        The grid is given by exactly one of ``num_steps``, ``step_size`` or a ``time_grid`` of 3 or more points, or
        by a 2-point ``time_grid`` subdivided by ``num_steps`` (or ``step_size``); a bare ``[0, 1]`` grid is an
        error (see :mod:`bfr_fast.solvers.time_grid` for the full rule).

        Args:
            x_init: ``(B, ...)`` initial state (e.g. noise), float32, float64, bfloat16 or float16. Not modified.
            num_steps: Number of uniform steps over ``[0, 1]`` (or over a 2-point ``time_grid``).
            step_size: Step size from 0; the last step ends at 1 (it is shorter when ``1 / step_size`` is not whole).
            time_grid: Strictly increasing ``(S,)`` grid shared by the batch, or ``(B, S)`` with one grid per sample
                (then the model's ``t`` and the step sizes differ per sample).
            return_intermediates: Return the states at every grid point, ``(S, B, ...)``, the first being
                ``x_init`` and the last the result, instead of the final state only.
            enable_grad: Record the computation for autograd; by default it runs under ``torch.no_grad``.
            return_nfe: Also return the number of velocity-model calls.
            **model_extras: Passed to every model call, e.g. ``y=labels``.

        Returns:
            The final state ``(B, ...)`` (or the ``(S, B, ...)`` states with ``return_intermediates``), in
            ``x_init``'s dtype; with ``return_nfe`` the tuple ``(that, nfe)``, ``nfe`` an int equal to
            steps × stages.

        Raises:
            ValueError: Bad grid arguments, a non-float ``x_init``, or a model output of the wrong shape.
        """
        grid = resolve_time_grid(num_steps, step_size, time_grid, _batch_size(x_init))
        return self._integrate(x_init, grid, return_intermediates, enable_grad, return_nfe, model_extras)

    @overload
    def invert(
        self,
        x: torch.Tensor,
        num_steps: int | None = ...,
        step_size: float | None = ...,
        time_grid: GridLike | None = ...,
        return_intermediates: bool = ...,
        enable_grad: bool = ...,
        return_nfe: Literal[False] = ...,
        **model_extras: object,
    ) -> torch.Tensor: ...

    @overload
    def invert(
        self,
        x: torch.Tensor,
        num_steps: int | None = ...,
        step_size: float | None = ...,
        time_grid: GridLike | None = ...,
        return_intermediates: bool = ...,
        enable_grad: bool = ...,
        *,
        return_nfe: Literal[True],
        **model_extras: object,
    ) -> tuple[torch.Tensor, int]: ...

    @overload
    def invert(
        self,
        x: torch.Tensor,
        num_steps: int | None = ...,
        step_size: float | None = ...,
        time_grid: GridLike | None = ...,
        return_intermediates: bool = ...,
        enable_grad: bool = ...,
        return_nfe: bool = ...,
        **model_extras: object,
    ) -> torch.Tensor | tuple[torch.Tensor, int]: ...

    def invert(
        self,
        x: torch.Tensor,
        num_steps: int | None = None,
        step_size: float | None = None,
        time_grid: GridLike | None = None,
        return_intermediates: bool = False,
        enable_grad: bool = False,
        return_nfe: bool = False,
        **model_extras: object,
    ) -> torch.Tensor | tuple[torch.Tensor, int]:
        """Integrates backwards, from the grid's last time to its first (by default t: 1 → 0).

        Takes the same arguments as :meth:`sample`, and resolves them to the same increasing grid, which it then
        runs in reverse: ``invert(sample(x0, **kw), **kw)`` retraces the forward steps. Intermediates are ordered
        along the backward integration (the first is ``x``).
        """
        grid = resolve_time_grid(num_steps, step_size, time_grid, _batch_size(x)).flip(-1)
        return self._integrate(x, grid, return_intermediates, enable_grad, return_nfe, model_extras)

    def _integrate(
        self,
        x: torch.Tensor,
        grid: torch.Tensor,
        return_intermediates: bool,
        enable_grad: bool,
        return_nfe: bool,
        model_extras: dict[str, object],
    ) -> torch.Tensor | tuple[torch.Tensor, int]:
        combine, fused = self._combiner(x, enable_grad)
        plan = _StepPlan(grid, self.tableau, x.shape[0], x.device, fused)
        stage_terms, update_terms, num_stages = plan.stage_terms, plan.update_terms, plan.num_stages
        stage_coeffs, update_coeffs, times = plan.stage_coeffs, plan.update_coeffs, plan.times
        velocity = self._velocity
        states = [x] if return_intermediates else []
        with torch.set_grad_enabled(enable_grad):
            for step in range(plan.num_steps):
                coeffs, first = stage_coeffs[step], step * num_stages
                ks: list[torch.Tensor] = []
                for stage, terms in enumerate(stage_terms):
                    x_stage = combine(x, [ks[l] for l in terms], coeffs[stage]) if terms else x
                    ks.append(velocity(x_stage, times[first + stage], model_extras))
                x = combine(x, [ks[l] for l in update_terms], update_coeffs[step])
                if return_intermediates:
                    states.append(x)
        result = torch.stack(states) if return_intermediates else x
        return (result, plan.num_steps * num_stages) if return_nfe else result

    def _combiner(self, x: torch.Tensor, enable_grad: bool) -> tuple[Callable[..., torch.Tensor], bool]:
        """Chooses, once per call, how the loop computes ``x + sum_i c_i k_i``: ``(combine(x, ks, c), fused)``,
        where ``c`` is the fused op's ``(scalars, vectors)`` pair when ``fused`` and a coefficient list otherwise.

        The state was checked once (:func:`_batch_size`) and every k is checked as the model returns it
        (:meth:`_velocity`: shape, device, dtype), so the loop skips :func:`bfr_fast.ops.lincomb`'s per-call
        checks. Without autograd the fused op runs below the autograd dispatch key: under ``torch.no_grad`` its
        Python autograd kernel would only pass the call on, at several microseconds a call. With autograd, under
        ``torch.compile``, or for a dtype the op does not take, every update goes through ``lincomb`` itself.
        """
        backend = self.backend
        if x.dtype not in FLOAT_DTYPES or torch.compiler.is_compiling():
            return (lambda x, ks, coeffs: lincomb(x, ks, coeffs, backend=backend)), False
        if not use_fused(backend, x.device, "lincomb"):
            return lincomb_reference, False
        if enable_grad:
            return (lambda x, ks, coeffs: lincomb(x, ks, coeffs, backend="fused")), False
        op, below_autograd = torch.ops.bfr_fast.lincomb.default, torch._C._AutoDispatchBelowAutograd

        def combine(x: torch.Tensor, ks: list[torch.Tensor], fused: tuple[list[float], list]) -> torch.Tensor:
            with below_autograd():
                return op(x.contiguous(), ks, fused[0], fused[1])

        return combine, True

    def _velocity(self, x: torch.Tensor, t: torch.Tensor, model_extras: dict[str, object]) -> torch.Tensor:
        velocity = self.velocity_model(x, t, **model_extras)
        if not isinstance(velocity, torch.Tensor) or velocity.shape != x.shape:
            got = tuple(velocity.shape) if isinstance(velocity, torch.Tensor) else type(velocity).__name__
            raise ValueError(f"velocity_model must return a tensor of the state's shape {tuple(x.shape)}, got {got}")
        if velocity.device != x.device:
            raise ValueError(
                f"velocity_model must return a tensor on the state's device {x.device}, got {velocity.device}"
            )
        return (velocity if velocity.dtype == x.dtype else velocity.to(x.dtype)).contiguous()


def _batch_size(x: torch.Tensor) -> int:
    """Checks the solver's state argument and returns its batch size."""
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.dim() < 1:
        raise ValueError(f"the state must be a floating (B, ...) tensor, got {getattr(x, 'shape', type(x).__name__)}")
    return x.shape[0]
