r"""The linear (conditional optimal-transport) probability path between a source and a target sample.

.. math::
    x_t = (1 - t)\, x_0 + t\, x_1 + \sigma \epsilon, \qquad u_t = x_1 - x_0, \qquad \epsilon \sim \mathcal{N}(0, I),

with :math:`x_0` the source (noise) at t=0 and :math:`x_1` the target (data) at t=1: the interpolant
:math:`\alpha = t`, :math:`\sigma(t) = 1 - t` of :mod:`bfr_fast.paths.interpolants`. With :math:`\sigma > 0` this is
I-CFM's Gaussian-smoothed path of constant width σ (Tong et al., 2023): the noise does not change the target
velocity, which stays :math:`x_1 - x_0`. σ = 0 (the default) is the plain rectified-flow / CondOT path.
"""

from __future__ import annotations

import torch

from bfr_fast.checks import non_negative_float
from bfr_fast.paths.interpolants import Interpolant, PathCoefficients


class LinearPath(Interpolant):
    r"""Samples points and target velocities of the linear path :math:`x_t = (1-t) x_0 + t x_1 (+ \sigma \epsilon)`.

    The path noise enters :meth:`sample` only; :meth:`point` is the noise-free path.

    Args:
        sigma: Standard deviation of the path noise, >= 0.

    Raises:
        ValueError: ``sigma`` negative or not finite.
    """

    def __init__(self, sigma: float = 0.0) -> None:
        self.sigma = non_negative_float("sigma", sigma)

    def coefficients(self, t: torch.Tensor) -> PathCoefficients:
        return PathCoefficients(t, 1 - t, torch.ones_like(t), -torch.ones_like(t))

    def sample(
        self, x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns the point :math:`x_t` (with path noise when ``sigma > 0``) and the target velocity
        :math:`u_t = x_1 - x_0`.

        Args:
            x0: ``(B, ...)`` source samples (t=0).
            x1: ``(B, ...)`` target samples (t=1), same shape, dtype and device.
            t: ``(B,)`` times, broadcast over the non-batch dims; computed in float32 (or wider) whatever the
                samples' dtype.
            generator: Source of the path noise when ``sigma > 0``.

        Returns:
            ``(x_t, u_t)``, both ``(B, ...)`` in ``x0``'s dtype.

        Raises:
            ValueError: Mismatched shapes, dtypes or devices, or a ``t`` that is not a ``(B,)`` float tensor.
        """
        x_t, u = self._sample_in_compute_dtype(x0, x1, t)
        if self.sigma > 0:
            x_t = x_t + self.sigma * torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x_t.dtype)
        return x_t.to(x0.dtype), u.to(x0.dtype)
