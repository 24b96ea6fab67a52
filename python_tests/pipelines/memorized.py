r"""Generators that are exact for a smoothed empirical distribution of training images, in the conventions users get
wrong: exact flows and DDPMs at no training cost, for the tests of the sanity gate.

The target is the mixture :math:`\frac1N \sum_i N(x^{(i)}, s^2 I)` of the first ``count`` training digits (all by
default)
(:math:`s` = ``smoothing``, so that the flow is smooth and invertible everywhere). Given component :math:`i`, a
noised point :math:`x = a x_1 + \sigma z` with :math:`x_1 = x^{(i)} + s \epsilon'` is Gaussian with mean
:math:`a x^{(i)}` and variance :math:`\nu = a^2 s^2 + \sigma^2` per pixel, so with posterior weights
:math:`w_i \propto \exp(-\lVert x - a x^{(i)} \rVert^2 / 2\nu)` (among the label's class when given):

- linear path (:math:`a = t`, :math:`\sigma = 1 - t`), velocity :math:`\mathbb E[x_1 - z \mid x] = \sum_i w_i
  (x^{(i)} + (t s^2 - (1 - t)) (x - t x^{(i)}) / \nu)`;
- DDPM (:math:`a = \sqrt{\bar\alpha}`, :math:`\sigma = \sqrt{1 - \bar\alpha}`), ε-prediction
  :math:`\mathbb E[z \mid x] = \sum_i w_i \sigma (x - a x^{(i)}) / \nu`.

Built as ``--generator memorized:Flow --generator-kwargs '{"smoothing": 0.1}'`` once this folder is on ``sys.path``.
"""

from __future__ import annotations

import torch
from torch import nn

from bfr_fast.data import load_dataset
from bfr_fast.paths import DDPMSchedule


class _Memorized(nn.Module):
    def __init__(self, count: int | None = None, smoothing: float = 0.1) -> None:
        super().__init__()
        data = load_dataset("digits")
        self.register_buffer("images", data.train_x[:count].flatten(1))
        self.register_buffer("labels", data.train_y[:count])
        self.smoothing = smoothing

    def _weights(self, x: torch.Tensor, a: torch.Tensor, variance: torch.Tensor,
                 y: torch.Tensor | None) -> torch.Tensor:
        """(B, N) posterior weights of the components for x = a x_1 + noise of that variance per pixel; a (B,)."""
        flat = x.flatten(1)
        # |x_b - a_b x_i|^2 = |x_b|^2 - 2 a_b x_b . x_i + a_b^2 |x_i|^2
        d2 = (flat.square().sum(1, keepdim=True) - 2 * a[:, None] * flat @ self.images.T
              + a[:, None] ** 2 * self.images.square().sum(1)[None, :])
        logits = -d2 / (2 * variance[:, None])
        if y is not None:
            logits = logits.masked_fill(self.labels[None, :] != y[:, None], float("-inf"))
        return torch.softmax(logits, dim=1)


class Flow(_Memorized):
    """A velocity model, t = 0 noise, t = 1 data: ``model(x, t, y=None)``."""

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        variance = (t * self.smoothing) ** 2 + (1 - t) ** 2
        w = self._weights(x, t, variance, y)
        flat = x.flatten(1)
        gain = ((t * self.smoothing**2 - (1 - t)) / variance)[:, None]
        mean_image = w @ self.images
        return (mean_image + gain * (flat - t[:, None] * mean_image)).view_as(x)


class ReversedFlow(Flow):
    """The same flow trained the other way, s = 0 data, s = 1 noise: returns dx/ds at s."""

    def forward(self, x: torch.Tensor, s: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return -super().forward(x, 1 - s, y)


class IndexEps(_Memorized):
    """A DDPM ε-prediction on the default linear 1000-step schedule, taking the step index (999 = noise)."""

    def __init__(self, count: int | None = None, smoothing: float = 0.1) -> None:
        super().__init__(count, smoothing)
        self.schedule = DDPMSchedule(1000)

    def forward(self, x: torch.Tensor, index: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        log_alpha_bar = self.schedule.log_alpha_bar_and_derivative(1 - index / 999)[0].to(x.dtype)
        a, sigma = torch.exp(0.5 * log_alpha_bar), torch.sqrt(-torch.expm1(log_alpha_bar))
        variance = (a * self.smoothing) ** 2 + sigma**2
        w = self._weights(x, a, variance, y)
        flat = x.flatten(1)
        return ((sigma / variance)[:, None] * (flat - a[:, None] * (w @ self.images))).view_as(x)
