r"""Interpolants :math:`x_t = \alpha(t)\, x_1 + \sigma(t)\, \epsilon` (t=0 noise, t=1 data), their velocity targets,
the score of a velocity model, and the SDE that samples with it.

**Paths.** With :math:`\epsilon \sim N(0, I)` the source and :math:`x_1` the data, an interpolant is fixed by
:math:`\alpha` (increasing from :math:`\approx 0` to 1) and :math:`\sigma` (decreasing from :math:`\approx 1` to 0);
its conditional velocity target is :math:`u_t = \alpha'(t)\, x_1 + \sigma'(t)\, \epsilon`. The three of SiT (Ma et
al., 2024), which uses the same time convention:

- **Linear** (:class:`~bfr_fast.paths.LinearPath`): :math:`\alpha = t`, :math:`\sigma = 1 - t`,
  :math:`u = x_1 - \epsilon`.
- **GVP** (:class:`GVPInterpolant`): :math:`\alpha = \sin(\pi t/2)`, :math:`\sigma = \cos(\pi t/2)`.
- **SBDM-VP** (:class:`VPInterpolant`): the variance-preserving SDE of Song et al. (2021) with the linear schedule
  :math:`\beta(s) = \beta_\min + s(\beta_\max - \beta_\min)` in diffusion time :math:`s = 1 - t` (s=0 data, s=1 noise).
  Its mean coefficient is :math:`\exp(-\tfrac12\int_0^s \beta)`, so in our time

  .. math::
      \log\alpha(t) = -\tfrac14 (1-t)^2 (\beta_\max - \beta_\min) - \tfrac12 (1-t)\, \beta_\min, \qquad
      \sigma = \sqrt{1 - \alpha^2}, \qquad \alpha' = \tfrac12 \beta(1-t)\, \alpha,
      \qquad \sigma' = -\alpha\alpha'/\sigma.

  :math:`\alpha(0) = e^{-(\beta_\min + \beta_\max)/4}` (0.0066 for SiT's 0.1 and 20), not 0: the path starts a
  hair off pure noise. :math:`\sigma'` diverges at t=1 like :math:`(1-t)^{-1/2}`, so training draws t from
  :math:`[0, t_\max]` with :math:`t_\max = 1 - 10^{-5}` (SiT's ``train_eps``); SiT integrates VP samplers to
  :math:`1 - 10^{-3}`.

**Score from velocity.** Write :math:`\hat x_1 = E[x_1 \mid x_t = x]`, :math:`\hat\epsilon = E[\epsilon \mid x_t = x]`.
The marginal velocity is :math:`v = \alpha' \hat x_1 + \sigma' \hat\epsilon`, the score is
:math:`s = \nabla \log p_t = -\hat\epsilon/\sigma`, and :math:`x = \alpha \hat x_1 + \sigma \hat\epsilon`.
Eliminating :math:`\hat x_1 = (x - \sigma\hat\epsilon)/\alpha`:
:math:`\alpha v = \alpha' x + (\alpha\sigma' - \sigma\alpha')\hat\epsilon`, hence

.. math::
    s(x, t) = \frac{\alpha' x - \alpha v}{\sigma\,(\alpha\sigma' - \sigma\alpha')}

(SiT's ``get_score_from_velocity``, rearranged). The bracket is negative for every interpolant here
(linear: :math:`-1`; GVP: :math:`-\pi/2`; VP: :math:`-\alpha'/\sigma`); at t=0 of the linear path :math:`s = -x`,
the score of N(0, I).

**SDE.** For any :math:`w(t) \ge 0`, :math:`dx = [v + \tfrac12 w\, s]\, dt + \sqrt{w}\, dW` has the marginals of the
ODE :math:`dx = v\, dt` (the added Fokker–Planck terms :math:`-\nabla\cdot(p\,\tfrac12 w \nabla\log p) + \tfrac12 w
\Delta p` cancel). SiT writes :math:`w = 2D` with diffusion forms :math:`D(t)` scaled by a ``norm``; we keep its
names so that settings carry over (:data:`DIFFUSION_FORMS`):
``"sigma"`` :math:`D = \sigma` (SiT's default), ``"sbdm"`` :math:`D = (\alpha'/\alpha)\sigma^2 - \sigma\sigma'`
(the forward SDE's own diffusion: :math:`\beta/2` for VP, :math:`(1-t)/t` for the linear path),
``"constant"`` :math:`D = 1`, ``"linear"`` :math:`D = 1 - t`, ``"decreasing"`` :math:`D = \tfrac14(\cos\pi t + 1)^2`,
``"increasing-decreasing"`` :math:`D = \sin^2 \pi t`. The drift is evaluated as
:math:`v + c\,(\alpha' x - \alpha v)` with :math:`c = D / (\sigma(\alpha\sigma' - \sigma\alpha'))`, simplified in
closed form for ``"sigma"`` (:math:`c = 1/(\alpha\sigma' - \sigma\alpha')`, finite at t=1) and ``"sbdm"``
(:math:`c = -1/\alpha`, infinite at t=0 for linear and GVP: start those grids at t > 0).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import NamedTuple

import torch

from bfr_fast.checks import choice, finite_float, non_negative_float
from bfr_fast.ops.reference import per_sample

DIFFUSION_FORMS: tuple[str, ...] = ("sigma", "sbdm", "constant", "linear", "decreasing", "increasing-decreasing")


class PathCoefficients(NamedTuple):
    r""":math:`\alpha(t)`, :math:`\sigma(t)` and their time derivatives, each shaped like ``t``."""

    alpha: torch.Tensor
    sigma: torch.Tensor
    d_alpha: torch.Tensor
    d_sigma: torch.Tensor


def _check_pair(a: object, b: object, t: object, names: tuple[str, str] = ("x0", "x1")) -> None:
    """Checks two ``(B, ...)`` tensors of one shape, dtype and device and ``(B,)`` float times."""
    first, second = names
    if not isinstance(a, torch.Tensor) or not isinstance(b, torch.Tensor):
        raise ValueError(f"{first} and {second} must be tensors")
    if a.shape != b.shape or a.dtype != b.dtype or a.device != b.device or a.dim() < 1:
        raise ValueError(
            f"{first} and {second} must be (B, ...) tensors of one shape, dtype and device, got {tuple(a.shape)} "
            f"{a.dtype} {a.device} and {tuple(b.shape)} {b.dtype} {b.device}"
        )
    if not isinstance(t, torch.Tensor) or not t.is_floating_point() or t.shape != (a.shape[0],):
        raise ValueError(f"t must be a ({a.shape[0]},) float tensor, got {getattr(t, 'shape', t)!r}")


class Interpolant(ABC):
    r"""A path :math:`x_t = \alpha(t)\, x_1 + \sigma(t)\, x_0` from the source :math:`x_0` (t=0) to :math:`x_1` (t=1).

    Subclasses define :meth:`coefficients`. Every method computes in float32 (float64 for float64 samples),
    whatever the samples' dtype, and returns the samples' dtype.

    Attributes:
        t_max: Largest time at which the velocity target is finite; training draws t from ``[0, t_max]``.
    """

    t_max: float = 1.0

    @abstractmethod
    def coefficients(self, t: torch.Tensor) -> PathCoefficients:
        r"""Returns :math:`(\alpha, \sigma, \alpha', \sigma')` at the times ``t``, in ``t``'s dtype."""

    def _coefficients_like(self, t: torch.Tensor, x: torch.Tensor) -> tuple[torch.dtype, PathCoefficients]:
        """The compute dtype for ``x`` and the coefficients at ``t`` in it, broadcast over ``x``'s non-batch dims."""
        compute = torch.promote_types(x.dtype, torch.float32)
        coefficients = self.coefficients(t.to(device=x.device, dtype=compute))
        return compute, PathCoefficients(*(per_sample(c, x) for c in coefficients))

    def point(self, x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        r"""The point :math:`x_t = \alpha(t)\, x_1 + \sigma(t)\, x_0` (no path noise).

        Args:
            x0: ``(B, ...)`` source samples (t=0).
            x1: ``(B, ...)`` target samples (t=1), same shape, dtype and device.
            t: ``(B,)`` float times.

        Returns:
            ``(B, ...)`` in ``x0``'s dtype.

        Raises:
            ValueError: Mismatched shapes, dtypes or devices, or a ``t`` that is not a ``(B,)`` float tensor.
        """
        _check_pair(x0, x1, t)
        compute, (alpha, sigma, _, _) = self._coefficients_like(t, x0)
        return (alpha * x1.to(compute) + sigma * x0.to(compute)).to(x0.dtype)

    def velocity(self, x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        r"""The conditional velocity target :math:`u_t = \alpha'(t)\, x_1 + \sigma'(t)\, x_0` (arguments as in
        :meth:`point`)."""
        _check_pair(x0, x1, t)
        compute, (_, _, d_alpha, d_sigma) = self._coefficients_like(t, x0)
        return (d_alpha * x1.to(compute) + d_sigma * x0.to(compute)).to(x0.dtype)

    def sample(
        self, x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns the training pair ``(x_t, u_t)`` of :meth:`point` and :meth:`velocity`.

        Args:
            x0: ``(B, ...)`` source samples (t=0).
            x1: ``(B, ...)`` target samples (t=1), same shape, dtype and device.
            t: ``(B,)`` float times, broadcast over the non-batch dims.
            generator: Source of path noise, for interpolants that add some.

        Returns:
            ``(x_t, u_t)``, both ``(B, ...)`` in ``x0``'s dtype.

        Raises:
            ValueError: Mismatched shapes, dtypes or devices, or a ``t`` that is not a ``(B,)`` float tensor.
        """
        x_t, u = self._sample_in_compute_dtype(x0, x1, t)
        return x_t.to(x0.dtype), u.to(x0.dtype)

    def _sample_in_compute_dtype(
        self, x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`sample` before the cast back to the samples' dtype (subclasses add path noise here)."""
        _check_pair(x0, x1, t)
        compute, (alpha, sigma, d_alpha, d_sigma) = self._coefficients_like(t, x0)
        x0c, x1c = x0.to(compute), x1.to(compute)
        return alpha * x1c + sigma * x0c, d_alpha * x1c + d_sigma * x0c

    def direction_towards(self, x: torch.Tensor, x1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        r""":math:`\sigma(t)` times the velocity at ``x`` of the path member that passes through ``x`` at t and ends at
        ``x1``.

        That member has noise :math:`\hat\epsilon = (x - \alpha x_1)/\sigma`, so its velocity is
        :math:`\alpha' x_1 + \sigma'\hat\epsilon` and

        .. math::
            d = (\sigma\alpha' - \alpha\sigma')\, x_1 + \sigma' x,

        a positive multiple of that velocity which stays finite as :math:`\sigma \to 0`. For the linear path
        :math:`d = x_1 - x`; for GVP and VP (:math:`\alpha^2 + \sigma^2 = 1`) :math:`d \propto x_1 - \alpha x`.
        If ``x`` lies on the path of ``(x0, x1)``, :math:`d = \sigma\, u_t`: parallel to the velocity target.

        Args:
            x: ``(B, ...)`` states at time ``t``.
            x1: ``(B, ...)`` end points, same shape, dtype and device.
            t: ``(B,)`` float times.

        Returns:
            ``(B, ...)`` in ``x``'s dtype.
        """
        _check_pair(x, x1, t, ("x", "x1"))
        compute, (alpha, sigma, d_alpha, d_sigma) = self._coefficients_like(t, x)
        return ((sigma * d_alpha - alpha * d_sigma) * x1.to(compute) + d_sigma * x.to(compute)).to(x.dtype)

    def score_from_velocity(self, v: torch.Tensor, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        r"""The score :math:`s = (\alpha' x - \alpha v)/(\sigma(\alpha\sigma' - \sigma\alpha'))` of the marginal
        whose velocity field is ``v`` (derived in the module docstring); infinite where :math:`\sigma = 0`.

        Args:
            v: ``(B, ...)`` marginal velocity at ``(x, t)``.
            x: ``(B, ...)`` states, same shape, dtype and device.
            t: ``(B,)`` float times.

        Returns:
            ``(B, ...)`` in ``x``'s dtype.
        """
        _check_pair(v, x, t, ("v", "x"))
        compute, (alpha, sigma, d_alpha, d_sigma) = self._coefficients_like(t, x)
        score = (d_alpha * x.to(compute) - alpha * v.to(compute)) / (sigma * (alpha * d_sigma - sigma * d_alpha))
        return score.to(x.dtype)


class GVPInterpolant(Interpolant):
    r"""The generalised variance-preserving path :math:`\alpha = \sin(\pi t/2)`, :math:`\sigma = \cos(\pi t/2)`:
    :math:`u_t = \tfrac\pi2 (\cos(\pi t/2)\, x_1 - \sin(\pi t/2)\, \epsilon)`, finite everywhere."""

    def coefficients(self, t: torch.Tensor) -> PathCoefficients:
        angle = (math.pi / 2) * t
        sin, cos = torch.sin(angle), torch.cos(angle)
        return PathCoefficients(sin, cos, (math.pi / 2) * cos, -(math.pi / 2) * sin)


class VPInterpolant(Interpolant):
    r"""The SBDM variance-preserving path with a linear β schedule (formulas in the module docstring).

    Args:
        beta_min: :math:`\beta` at the data end (t=1), > 0.
        beta_max: :math:`\beta` at the noise end (t=0), >= ``beta_min``.
        t_max: Largest training time, in (0, 1): :math:`\sigma'` diverges at t=1.

    Raises:
        ValueError: A bad argument; the message names it.
    """

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0, t_max: float = 1.0 - 1e-5) -> None:
        if not 0.0 < beta_min <= beta_max < math.inf:
            raise ValueError(f"need 0 < beta_min <= beta_max < inf, got beta_min={beta_min}, beta_max={beta_max}")
        finite_float("t_max", t_max, low=0.0, high=1.0, low_open=True, high_open=True)
        self.beta_min = float(beta_min)
        self.beta_max = float(beta_max)
        self.t_max = float(t_max)

    def coefficients(self, t: torch.Tensor) -> PathCoefficients:
        s = 1 - t  # diffusion time
        log_alpha = -0.25 * s * s * (self.beta_max - self.beta_min) - 0.5 * s * self.beta_min
        alpha = log_alpha.exp()
        sigma = torch.sqrt(-torch.expm1(2 * log_alpha))  # sqrt(1 - α²), accurate near t=1
        d_alpha = 0.5 * (self.beta_min + s * (self.beta_max - self.beta_min)) * alpha
        return PathCoefficients(alpha, sigma, d_alpha, -alpha * d_alpha / sigma)


VelocityModel = Callable[..., torch.Tensor]

# D(t) of the forms that do not depend on the path (before ``norm``).
_DIFFUSION_SHAPES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "constant": torch.ones_like,
    "linear": lambda t: 1 - t,
    "decreasing": lambda t: 0.25 * (torch.cos(math.pi * t) + 1) ** 2,
    "increasing-decreasing": lambda t: torch.sin(math.pi * t) ** 2,
}


def sde_drift_and_diffusion(
    model: VelocityModel, interpolant: Interpolant, diffusion: str = "sigma", norm: float = 1.0
) -> tuple[Callable[..., torch.Tensor], Callable[[torch.Tensor], torch.Tensor]]:
    r"""The drift and diffusion of :math:`dx = [v + D s]\, dt + \sqrt{2D}\, dW` for a velocity model, for
    :class:`~bfr_fast.solvers.SDESolver`.

    ``SDESolver().sample(torch.randn(...), *sde_drift_and_diffusion(model, GVPInterpolant()), num_steps=100)``
    samples with Euler–Maruyama (one NFE per step). The score :math:`s` comes from the model's velocity by
    :meth:`Interpolant.score_from_velocity`; the SDE has the ODE's marginals for every form (module docstring).
    The solver draws noise on every step, the last included; its standard deviation there is
    :math:`\sqrt{2D(t_{N-1})h}`, which vanishes with the step for ``"sigma"`` and ``"linear"`` (SiT instead
    ends with a noise-free step, which a caller can take with the returned drift).

    Args:
        model: Velocity model ``model(x, t, **model_extras)`` trained on ``interpolant``.
        interpolant: The path the model was trained on.
        diffusion: One of :data:`DIFFUSION_FORMS`.
        norm: Scale of :math:`D`, >= 0 (0 is the probability-flow ODE, sampled by Euler).

    Returns:
        ``(drift_fn, diffusion_fn)``: ``drift_fn(x, t, **model_extras)`` in ``x``'s dtype and
        ``diffusion_fn(t)`` = :math:`\sqrt{2D(t)}` as a ``(B,)`` float32 tensor.

    Raises:
        ValueError: Unknown ``diffusion``, or a negative or non-finite ``norm``.
    """
    choice("diffusion", diffusion, DIFFUSION_FORMS)
    norm = non_negative_float("norm", norm)

    def form(t: torch.Tensor, c: PathCoefficients) -> tuple[torch.Tensor, torch.Tensor]:
        """:math:`D(t)` and the drift factor :math:`c = D/(\\sigma(\\alpha\\sigma' - \\sigma\\alpha'))`."""
        bracket = c.alpha * c.d_sigma - c.sigma * c.d_alpha
        if diffusion == "sigma":
            return norm * c.sigma, norm / bracket
        if diffusion == "sbdm":
            return norm * (c.d_alpha / c.alpha * c.sigma**2 - c.sigma * c.d_sigma), -norm / c.alpha
        d = norm * _DIFFUSION_SHAPES[diffusion](t)
        return d, d / (c.sigma * bracket)

    def drift_fn(x: torch.Tensor, t: torch.Tensor, **model_extras: object) -> torch.Tensor:
        v = model(x, t, **model_extras)
        compute = torch.promote_types(x.dtype, torch.float32)
        tc = t.to(device=x.device, dtype=compute)
        c = interpolant.coefficients(tc)
        _, factor = form(tc, c)
        # v + factor (α' x - α v) = (1 - factor α) v + factor α' x
        drift = per_sample(1 - factor * c.alpha, x) * v.to(compute) + per_sample(factor * c.d_alpha, x) * x.to(compute)
        return drift.to(x.dtype)

    def diffusion_fn(t: torch.Tensor) -> torch.Tensor:
        t64 = t.to(torch.float64)
        d, _ = form(t64, interpolant.coefficients(t64))
        return torch.sqrt(2 * d).to(torch.float32)

    return drift_fn, diffusion_fn
