"""Fixed-step samplers: the Runge–Kutta ODE solver (sampling and inversion) and the Euler–Maruyama SDE sampler.

Time runs from noise (t=0) to data (t=1). Every state update is one fused :func:`bfr_fast.ops.lincomb`.
"""

from bfr_fast.solvers.ode_solver import ODESolver
from bfr_fast.solvers.runge_kutta import TABLEAUX, ButcherTableau
from bfr_fast.solvers.sde_solver import SDESolver
from bfr_fast.solvers.time_grid import resolve_time_grid

__all__ = ["TABLEAUX", "ButcherTableau", "ODESolver", "SDESolver", "resolve_time_grid"]
