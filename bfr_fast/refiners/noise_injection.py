r"""The noise-injection refiner (DiffuseVAE-style baseline): the DFR with Gaussian noise as its only perturbation,
injected at training and at inference alike.

Training: source :math:`\hat x + \sigma_d \epsilon`, :math:`\epsilon \sim N(0, I)`, flow matching to real data
(pairing and sources as in :mod:`bfr_fast.refiners.dfr`). Inference: the ODE starts from
:math:`\hat x + \sigma_d \epsilon` with fresh :math:`\epsilon`, so the refined sample is random given
:math:`\hat x`. Typical :math:`\sigma_d \in \{0.01, 0.05, 0.1, 0.2\}` (images in [-1, 1]).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from bfr_fast.checks import positive_float
from bfr_fast.data.augment import RefinerAugmentation
from bfr_fast.refiners.base import Refiner, RefinerData, TrainingSet
from bfr_fast.refiners.dfr import GeneratedToRealLoss, check_coupling
from bfr_fast.refiners.pool import GeneratedSource


class NoiseInjectionRefiner(Refiner):
    """Refiner whose source is the generated sample plus Gaussian noise of std ``sigma_d``, in training and use.

    Args:
        network: The refiner's velocity network ``network(x, t, y=None)``.
        sigma_d: Standard deviation of the injected noise, ``> 0``.
        coupling: ``"ot"`` (default; per-class exact minibatch OT) or ``"independent"``.
        conditional: Whether the network takes labels (None: from ``network.num_classes``).

    Raises:
        ValueError: ``sigma_d`` not a positive finite number, or an unknown coupling.
    """

    kind = "noise_injection"

    def __init__(
        self, network: nn.Module, sigma_d: float = 0.1, coupling: str = "ot", conditional: bool | None = None
    ) -> None:
        super().__init__(network, conditional)
        self.sigma_d = positive_float("sigma_d", sigma_d)
        self.coupling = check_coupling(coupling)

    def config(self) -> dict[str, Any]:
        return {**super().config(), "sigma_d": self.sigma_d, "coupling": self.coupling}

    def training_loss(self, source: GeneratedSource) -> GeneratedToRealLoss:
        """The loss ``loss(model, x_real, y)``: flow matching from ``x_hat + sigma_d * eps`` to real samples."""
        noise = RefinerAugmentation(blur_prob=0.0, noise_prob=1.0, noise_std=self.sigma_d)
        return GeneratedToRealLoss(source, noise, self.coupling)

    def training_set(self, data: RefinerData) -> TrainingSet:
        """Real samples as targets, sources drawn from the pool."""
        return TrainingSet(self.training_loss(data.pool), data.x, data.y)

    def inference_source(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """``x + sigma_d * eps``, with ``eps`` from ``generator`` (its device) or the global RNG."""
        device = generator.device if generator is not None else x.device
        eps = torch.randn(x.shape, generator=generator, device=device).to(device=x.device, dtype=x.dtype)
        return x + self.sigma_d * eps
