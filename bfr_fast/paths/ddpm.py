r"""DDPM in the library's time convention: β schedules, the ε-prediction target, and the probability-flow ODE.

**Discrete DDPM** (Ho et al., 2020). Betas :math:`\beta_k`, :math:`k = 0, \dots, N-1`;
:math:`\bar\alpha_k = \prod_{i \le k} (1 - \beta_i)`; the noised sample at index :math:`k` is
:math:`x^{(k)} = \sqrt{\bar\alpha_k}\, x_1 + \sqrt{1 - \bar\alpha_k}\, \epsilon`, the model is trained to predict
:math:`\epsilon`, and :math:`k = N-1` is the noisiest index.

**Continuous time, t=0 noise and t=1 data.** Index and time map affinely onto each other,

.. math::
    t = 1 - \frac{k}{N-1}, \qquad k(t) = (N-1)(1-t),

so t=0 is the noisiest training index :math:`N-1` (:math:`\bar\alpha \approx 0`) and t=1 the least noisy one,
index 0 (:math:`\bar\alpha = 1 - \beta_0 \approx 1`, a residual noise of standard deviation
:math:`\sqrt{\beta_0}`, 0.01 for the default schedule). The model is never queried outside its training range, and
the velocity below stays finite at t=1. Between indices, :math:`\log\bar\alpha(t)` is the cubic spline (not-a-knot)
through the points :math:`(k, \log\bar\alpha_k)`: twice continuously differentiable, equal to the discrete
schedule at every training index, and with an exact derivative (the spline's own).

**Probability-flow ODE.** Write :math:`x_t = a(t)\, x_1 + s(t)\, \epsilon` with :math:`a = \sqrt{\bar\alpha}`,
:math:`s = \sqrt{1-\bar\alpha}` and :math:`L = \log\bar\alpha`. The velocity that carries the marginals of
:math:`x_t` is :math:`v(x, t) = \mathbb{E}[\dot a\, x_1 + \dot s\, \epsilon \mid x_t = x]`. Substituting
:math:`\mathbb{E}[x_1 \mid x] = (x - s\, \hat\epsilon(x, t)) / a` with the model's prediction
:math:`\hat\epsilon \approx \mathbb{E}[\epsilon \mid x_t = x]`, and :math:`\dot a / a = L'/2`,
:math:`\dot s = -\bar\alpha L' / (2 s)`, so that :math:`\dot s - s \dot a / a = -L' (\bar\alpha + s^2)/(2s) = -L'/(2s)`:

.. math::
    v(x, t) = \frac{L'(t)}{2} \left( x - \frac{\hat\epsilon(x, t)}{\sqrt{1 - \bar\alpha(t)}} \right).

This is the VP probability-flow ODE of Song et al. (2021), :math:`dx/ds = -\tfrac12 \beta(s) (x - \hat\epsilon/\sigma)`,
with diffusion time :math:`s = 1 - t` and :math:`\beta = L'`. Integrating it with
:class:`~bfr_fast.solvers.ODESolver` from t=0 to 1 samples the DDPM; integrating back inverts it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from scipy.interpolate import CubicSpline
from torch import nn

from bfr_fast.checks import choice, integer
from bfr_fast.ops.reference import per_sample

ScheduleKind = Literal["linear", "sigmoid"]
ModelTime = Literal["t", "index"]


def _betas(kind: str, num_steps: int, beta_start: float, beta_end: float) -> np.ndarray:
    """The discrete betas of a schedule kind, float64."""
    if kind == "linear":
        return np.linspace(beta_start, beta_end, num_steps, dtype=np.float64)
    if kind == "sigmoid":
        # The sigmoid schedule of GeoDiff (Xu et al., 2022): sigmoid(linspace(-6, 6)) rescaled to [start, end].
        ramp = 1.0 / (1.0 + np.exp(-np.linspace(-6.0, 6.0, num_steps, dtype=np.float64)))
        return ramp * (beta_end - beta_start) + beta_start
    raise ValueError(f"kind must be 'linear' or 'sigmoid', got {kind!r}")


# A dataclass, not a NamedTuple: the field ``index`` would hide the method ``tuple.index`` of a tuple.
@dataclass(frozen=True)
class EpsTrainingSample:
    r"""One noised batch for ε-prediction training: regress ``model(x_t, t or index)`` onto ``eps``.

    Attributes:
        x_t: ``(B, ...)`` noised samples :math:`\sqrt{\bar\alpha_k} x_1 + \sqrt{1-\bar\alpha_k}\epsilon`.
        eps: ``(B, ...)`` the noise :math:`\epsilon`, the regression target.
        t: ``(B,)`` float32 continuous times :math:`1 - k/(N-1)` (the input of a model trained in our convention).
        index: ``(B,)`` int64 discrete DDPM indices :math:`k` (the input of a model trained on indices).
    """

    x_t: torch.Tensor
    eps: torch.Tensor
    t: torch.Tensor
    index: torch.Tensor


class DDPMSchedule(nn.Module):
    r"""A DDPM β schedule with continuous-time access in the convention t=0 noise, t=1 data.

    See the module docstring for the index ↔ time map and the spline interpolation of :math:`\log\bar\alpha`.
    A module so that its tables follow ``.to(device)``; they stay float64 through dtype casts of the model, and,
    being derived from the arguments, are not saved in a ``state_dict``.

    Args:
        num_steps: Number of discrete steps :math:`N` (>= 2).
        kind: ``"linear"`` (β linear in k) or ``"sigmoid"`` (β a sigmoid of linspace(-6, 6), rescaled).
        beta_start: :math:`\beta_0`, in (0, 1).
        beta_end: :math:`\beta_{N-1}`, in [beta_start, 1).

    Attributes:
        betas: ``(N,)`` float64.
        alphas_cumprod: ``(N,)`` float64, :math:`\bar\alpha_k`.

    Raises:
        ValueError: A bad argument; the message names it.
    """

    betas: torch.Tensor
    alphas_cumprod: torch.Tensor
    spline: torch.Tensor

    def __init__(
        self, num_steps: int = 1000, kind: ScheduleKind = "linear", beta_start: float = 1e-4, beta_end: float = 2e-2
    ) -> None:
        super().__init__()
        integer("num_steps", num_steps, low=2)
        if not 0.0 < beta_start <= beta_end < 1.0:
            raise ValueError(f"need 0 < beta_start <= beta_end < 1, got beta_start={beta_start}, beta_end={beta_end}")
        betas = _betas(kind, num_steps, beta_start, beta_end)
        log_alphas_cumprod = np.cumsum(np.log1p(-betas))
        spline = CubicSpline(np.arange(num_steps, dtype=np.float64), log_alphas_cumprod, bc_type="not-a-knot")
        self.num_steps = num_steps
        self.kind = kind
        self.register_buffer("betas", torch.from_numpy(betas), persistent=False)
        self.register_buffer("alphas_cumprod", torch.from_numpy(np.exp(log_alphas_cumprod)), persistent=False)
        # (N-1, 4): on [k, k+1], log ᾱ = c0 + c1 u + c2 u² + c3 u³ with u = κ - k (scipy lists the cubic first).
        self.register_buffer("spline", torch.from_numpy(np.ascontiguousarray(spline.c[::-1].T)), persistent=False)
        self._float64_tables = {name: buffer.clone() for name, buffer in self.named_buffers()}

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True) -> DDPMSchedule:
        # A cast of the whole model (``.half()``, ``.to(torch.bfloat16)``) must not round the schedule: its tables
        # follow the model's device but stay float64.
        super()._apply(fn, recurse)
        for name, table in self._float64_tables.items():
            setattr(self, name, table.to(getattr(self, name).device))
        return self

    def index(self, t: torch.Tensor) -> torch.Tensor:
        """The fractional DDPM index :math:`k(t) = (N-1)(1-t)` of continuous times (same dtype as ``t``)."""
        return (self.num_steps - 1) * (1 - t)

    def time(self, index: torch.Tensor) -> torch.Tensor:
        """The continuous time :math:`t = 1 - k/(N-1)` of DDPM indices, float32."""
        return 1 - index.to(torch.float32) / (self.num_steps - 1)

    def log_alpha_bar_and_derivative(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        r"""Returns :math:`\log\bar\alpha(t)` and :math:`\frac{d}{dt}\log\bar\alpha(t)`, both float64.

        Times are clamped to [0, 1]; the derivative is the spline's own, exact up to float64 rounding.
        """
        kappa = self.index(t.to(torch.float64)).clamp(0, self.num_steps - 1)
        segment = kappa.floor().clamp(max=self.num_steps - 2).long()
        u = kappa - segment
        c0, c1, c2, c3 = self.spline[segment].unbind(-1)
        value = ((c3 * u + c2) * u + c1) * u + c0
        d_dkappa = (3 * c3 * u + 2 * c2) * u + c1
        return value, -(self.num_steps - 1) * d_dkappa  # dκ/dt = -(N-1)

    def log_alpha_bar(self, t: torch.Tensor) -> torch.Tensor:
        r""":math:`\log\bar\alpha(t)` for times in [0, 1] (clamped), in ``t``'s dtype."""
        return self.log_alpha_bar_and_derivative(t)[0].to(t.dtype)

    def log_alpha_bar_derivative(self, t: torch.Tensor) -> torch.Tensor:
        r""":math:`\frac{d}{dt}\log\bar\alpha(t)` (>= 0: ᾱ grows towards the data), in ``t``'s dtype."""
        return self.log_alpha_bar_and_derivative(t)[1].to(t.dtype)

    def alpha_bar(self, t: torch.Tensor) -> torch.Tensor:
        r""":math:`\bar\alpha(t)`, increasing from :math:`\bar\alpha_{N-1}` at t=0 to :math:`1 - \beta_0` at t=1."""
        return self.log_alpha_bar_and_derivative(t)[0].exp().to(t.dtype)

    def eps_training_sample(self, x1: torch.Tensor, generator: torch.Generator | None = None) -> EpsTrainingSample:
        """Noises a data batch at uniformly drawn discrete indices, for ε-prediction training.

        Args:
            x1: ``(B, ...)`` data samples (t=1), floating.
            generator: Source of the indices and the noise (on ``x1``'s device).

        Returns:
            An :class:`EpsTrainingSample` of ``x_t``, ``eps``, ``t`` and ``index``; ``x_t`` and ``eps`` in ``x1``'s
            dtype.
        """
        if not isinstance(x1, torch.Tensor) or not x1.is_floating_point() or x1.dim() < 1:
            raise ValueError(f"x1 must be a floating (B, ...) tensor, got {getattr(x1, 'shape', x1)!r}")
        index = torch.randint(0, self.num_steps, (x1.shape[0],), generator=generator, device=x1.device)
        eps = torch.randn(x1.shape, generator=generator, device=x1.device, dtype=x1.dtype)
        alpha_bar = self.alphas_cumprod.to(x1.device)[index]
        x_t = per_sample(alpha_bar.sqrt(), x1) * x1 + per_sample((1 - alpha_bar).sqrt(), x1) * eps
        return EpsTrainingSample(x_t.to(x1.dtype), eps, self.time(index), index)


class ProbabilityFlowVelocity(nn.Module):
    r"""The probability-flow ODE velocity of an ε-prediction model, as a velocity model for the ODE solver.

    .. math::
        v(x, t) = \frac{1}{2} \frac{d\log\bar\alpha}{dt}(t)
            \left( x - \frac{\hat\epsilon(x, t)}{\sqrt{1-\bar\alpha(t)}} \right)

    (derived in the module docstring), so ``ODESolver(ProbabilityFlowVelocity(eps_model, schedule))`` samples the
    DDPM with ``sample`` and inverts it with ``invert``, like any flow.

    Args:
        eps_model: The ε-prediction network, called as ``eps_model(x, model_t)`` or ``eps_model(x, model_t, y=y)``.
        schedule: The schedule it was trained with.
        model_time: What the network takes as time: ``"t"``, our continuous time (float32), or ``"index"``, the
            fractional DDPM index :math:`(N-1)(1-t)` as float32 (for networks trained on discrete indices).

    Raises:
        ValueError: Unknown ``model_time``.
    """

    def __init__(self, eps_model: nn.Module, schedule: DDPMSchedule, model_time: ModelTime = "t") -> None:
        super().__init__()
        choice("model_time", model_time, ("t", "index"))
        self.eps_model = eps_model
        self.schedule = schedule
        self.model_time = model_time

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Velocity :math:`dx/dt` at ``(x, t)``.

        Args:
            x: ``(B, ...)`` state.
            t: ``(B,)`` float32 times in [0, 1].
            y: Optional labels, passed to the ε-model.

        Returns:
            ``(B, ...)`` velocity in ``x``'s dtype (combined in float32 or wider).
        """
        log_alpha_bar, d_log_alpha_bar = self.schedule.log_alpha_bar_and_derivative(t)
        sigma = torch.sqrt(-torch.expm1(log_alpha_bar))  # sqrt(1 - ᾱ), accurate where ᾱ is close to 1
        model_t = t if self.model_time == "t" else self.schedule.index(t).to(torch.float32)
        eps = self.eps_model(x, model_t) if y is None else self.eps_model(x, model_t, y=y)
        velocity = per_sample(0.5 * d_log_alpha_bar, x) * x - per_sample(0.5 * d_log_alpha_bar / sigma, x) * eps
        return velocity.to(x.dtype)
