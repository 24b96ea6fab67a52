r"""Explicit Runge–Kutta methods as Butcher tableaux.

A step of size :math:`h` from :math:`(x, t)` evaluates the stages

.. math::
    k_j = v\Big(x + h \sum_{l<j} a_{jl} k_l,\; t + c_j h\Big), \qquad j = 1, \dots, s,

and updates :math:`x \leftarrow x + h \sum_j b_j k_j`. Each stage input and the update is one
:func:`bfr_fast.ops.lincomb` call, so a step reads every tensor once per combination.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ButcherTableau:
    """Coefficients of an explicit Runge–Kutta method.

    Attributes:
        order: Global order of convergence :math:`p` (error :math:`O(h^p)`).
        c: Stage times as fractions of the step, one per stage.
        a: Row :math:`j` holds :math:`a_{jl}` for :math:`l < j` (the first row is empty).
        b: Weights of the final update, one per stage.
    """

    order: int
    c: tuple[float, ...]
    a: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]

    @property
    def num_stages(self) -> int:
        """Velocity evaluations (NFE) per step."""
        return len(self.c)


TABLEAUX: dict[str, ButcherTableau] = {
    "euler": ButcherTableau(order=1, c=(0.0,), a=((),), b=(1.0,)),
    "midpoint": ButcherTableau(order=2, c=(0.0, 0.5), a=((), (0.5,)), b=(0.0, 1.0)),
    "heun": ButcherTableau(order=2, c=(0.0, 1.0), a=((), (1.0,)), b=(0.5, 0.5)),
    "rk4": ButcherTableau(
        order=4,
        c=(0.0, 0.5, 0.5, 1.0),
        a=((), (0.5,), (0.0, 0.5), (0.0, 0.0, 1.0)),
        b=(1 / 6, 1 / 3, 1 / 3, 1 / 6),
    ),
    # Kutta's 3/8 rule: torchdiffeq's (and so flow_matching's) "rk4", here so their outputs can be reproduced.
    "rk4_38": ButcherTableau(
        order=4,
        c=(0.0, 1 / 3, 2 / 3, 1.0),
        a=((), (1 / 3,), (-1 / 3, 1.0), (1.0, -1.0, 1.0)),
        b=(1 / 8, 3 / 8, 3 / 8, 1 / 8),
    ),
}
