"""Generators that are exact for the empirical distribution of training images, in the conventions users get wrong.

For the linear path :math:`x_t = (1 - t) z + t x_1`, :math:`z \\sim N(0, I)`, to the empirical distribution of
images :math:`x^{(i)}`, the marginal velocity is :math:`v(x, t) = (\\hat x_1(x, t) - x) / (1 - t)` with the
posterior mean :math:`\\hat x_1 = \\sum_i w_i x^{(i)}`, :math:`w = \\mathrm{softmax}_i(-\\lVert x - t x^{(i)}
\\rVert^2 / (2 (1 - t)^2))`; for a DDPM, :math:`\\hat\\epsilon = (x - \\sqrt{\\bar\\alpha} \\hat x_1) /
\\sqrt{1 - \\bar\\alpha}` with the weights of :math:`x = \\sqrt{\\bar\\alpha} x^{(i)} + \\sqrt{1 - \\bar\\alpha}
\\epsilon`. Sampled as their conventions say, they reproduce training images: a good generator at no training
cost, for the tests of the sanity gate. Built as ``--generator memorized:Flow --generator-kwargs
'{"count": 300}'`` once this folder is on ``sys.path``.
"""

from __future__ import annotations

import torch
from torch import nn

from bfr_fast.data import load_dataset
from bfr_fast.paths import DDPMSchedule


class _Memorized(nn.Module):
    def __init__(self, count: int = 300) -> None:
        super().__init__()
        data = load_dataset("digits")
        self.register_buffer("images", data.train_x[:count].flatten(1))
        self.register_buffer("labels", data.train_y[:count])

    def posterior_mean(self, x: torch.Tensor, scale: torch.Tensor, sigma: torch.Tensor,
                       y: torch.Tensor | None) -> torch.Tensor:
        """E[x_1 | x] when x = scale x_1 + sigma noise; scale and sigma (B,); among class y when given."""
        flat = x.flatten(1)
        # |x_b - s_b x_i|^2 = |x_b|^2 - 2 s_b x_b . x_i + s_b^2 |x_i|^2
        d2 = (flat.square().sum(1, keepdim=True) - 2 * scale[:, None] * flat @ self.images.T
              + scale[:, None] ** 2 * self.images.square().sum(1)[None, :])
        logits = -d2 / (2 * sigma[:, None] ** 2)
        if y is not None:
            logits = logits.masked_fill(self.labels[None, :] != y[:, None], float("-inf"))
        return (torch.softmax(logits, dim=1) @ self.images).view_as(x)


class Flow(_Memorized):
    """A velocity model, t = 0 noise, t = 1 data: ``model(x, t, y=None)``."""

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        rest = (1 - t).clamp_min(1e-3)
        return (self.posterior_mean(x, t, rest, y) - x) / rest.view(-1, *[1] * (x.dim() - 1))


class ReversedFlow(Flow):
    """The same flow trained the other way, s = 0 data, s = 1 noise: returns dx/ds at s."""

    def forward(self, x: torch.Tensor, s: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return -super().forward(x, 1 - s, y)


class IndexEps(_Memorized):
    """A DDPM ε-prediction on the default linear 1000-step schedule, taking the step index (999 = noise)."""

    def __init__(self, count: int = 300) -> None:
        super().__init__(count)
        self.schedule = DDPMSchedule(1000)

    def forward(self, x: torch.Tensor, index: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        log_alpha_bar = self.schedule.log_alpha_bar_and_derivative(1 - index / 999)[0].to(x.dtype)
        scale, sigma = torch.exp(0.5 * log_alpha_bar), torch.sqrt(-torch.expm1(log_alpha_bar))
        shape = (-1, *[1] * (x.dim() - 1))
        return (x - scale.view(shape) * self.posterior_mean(x, scale, sigma, y)) / sigma.view(shape)
