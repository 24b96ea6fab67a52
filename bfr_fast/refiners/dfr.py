r"""BFR's data-space refiner (DFR): a flow from augmented base samples to real data.

Training, per minibatch of real images :math:`x` (labels :math:`y` when the data has classes):

1. :math:`\hat x = G(z)` from the frozen base, one per real image and of its class (a
   :class:`~bfr_fast.refiners.pool.SamplePool` drawn per class, or fresh generation);
2. :math:`\tilde x = \mathrm{Aug}(\hat x)`: per-sample Gaussian blur and additive noise, each with a probability
   (:class:`~bfr_fast.data.augment.RefinerAugmentation`), at training only;
3. pair :math:`(\tilde x, x)` independently or by exact minibatch OT within each class
   (:func:`~bfr_fast.paths.ot_coupling`: sources are permuted, targets and labels stay together);
4. flow matching on the linear path from :math:`\tilde x` (t=0) to :math:`x` (t=1):
   :math:`\lVert r_\phi(x_t, t, y) - (x - \tilde x) \rVert^2`.

Inference integrates the refiner from :math:`\hat x` itself, no augmentation, at any NFE.

Why OT is the default: one Euler step maps :math:`\hat x` to :math:`\hat x + r(\hat x, 0) \approx
\mathbb{E}[x \mid \tilde x = \hat x]` under the training coupling. With independent pairs that expectation is the
class mean, so a 1-NFE refiner collapses every sample onto it; OT pairs make it close to the transport map.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

import torch
from torch import nn

from bfr_fast.checks import choice
from bfr_fast.data.augment import RefinerAugmentation
from bfr_fast.losses.flow_matching import FlowMatchingLoss
from bfr_fast.losses.path_loss import COUPLINGS
from bfr_fast.refiners.base import Refiner, RefinerData, TrainingSet
from bfr_fast.refiners.pool import GeneratedSource

DEFAULT_AUGMENTATION = RefinerAugmentation(blur_prob=0.5, blur_sigma=(0.5, 2.0), noise_prob=0.5, noise_std=(0.0, 0.1))


def check_coupling(coupling: str) -> str:
    """Returns ``coupling`` if it names a coupling of :mod:`bfr_fast.losses.flow_matching`, else raises ValueError."""
    choice("coupling", coupling, sorted(COUPLINGS))
    return coupling


class GeneratedToRealLoss:
    """Flow matching from (optionally augmented) generated samples to real ones: ``loss(model, x_real, y)``.

    The loss of the DFR and of the noise-injection refiner; usable directly as the :class:`Trainer`'s ``loss_fn``.
    Random numbers come from the global RNG (which the trainer's checkpoints save), so resumed runs repeat.

    Args:
        source: Gives the generated partner of each real sample (:class:`~bfr_fast.refiners.pool.SamplePool` or
            :class:`~bfr_fast.refiners.pool.FreshSamples`).
        augmentation: Applied to the generated samples, or None.
        coupling: ``"ot"`` (per-class exact minibatch OT) or ``"independent"``.
    """

    def __init__(
        self, source: GeneratedSource, augmentation: RefinerAugmentation | None, coupling: str = "ot"
    ) -> None:
        self.source = source
        self.augmentation = augmentation
        self.flow_matching = FlowMatchingLoss(coupling=check_coupling(coupling))

    def __call__(
        self, model: nn.Module, x_real: torch.Tensor, y: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Loss of one minibatch of real samples ``x_real`` with labels ``y`` (None for unlabelled data)."""
        with torch.no_grad():
            x_hat = self.source.draw(x_real, y)
            x_tilde = x_hat if self.augmentation is None else self.augmentation(x_hat)
        return self.flow_matching(model, x_real, y, x0=x_tilde)


class DataFlowRefiner(Refiner):
    """BFR's data-space refiner.

    Args:
        network: The refiner's velocity network ``network(x, t, y=None)`` on samples of the data's shape.
        augmentation: Training augmentation of the generated samples (a :class:`RefinerAugmentation`, its fields
            as a mapping, or None for none). Default: blur (p 0.5, σ ~ U(0.5, 2) px, kernel 5) and noise
            (p 0.5, std ~ U(0, 0.1)).
        coupling: ``"ot"`` (default; per-class exact minibatch OT) or ``"independent"``.
        conditional: Whether the network takes labels (None: from ``network.num_classes``).

    Raises:
        ValueError: Unknown coupling or bad augmentation settings.
    """

    kind = "dfr"

    def __init__(
        self,
        network: nn.Module,
        augmentation: RefinerAugmentation | Mapping[str, Any] | None = DEFAULT_AUGMENTATION,
        coupling: str = "ot",
        conditional: bool | None = None,
    ) -> None:
        super().__init__(network, conditional)
        if isinstance(augmentation, Mapping):
            augmentation = RefinerAugmentation(**augmentation)
        if augmentation is not None and not isinstance(augmentation, RefinerAugmentation):
            raise ValueError(f"augmentation must be a RefinerAugmentation, a mapping or None, got {augmentation!r}")
        self.augmentation = augmentation
        self.coupling = check_coupling(coupling)

    def config(self) -> dict[str, Any]:
        augmentation = None if self.augmentation is None else asdict(self.augmentation)
        return {**super().config(), "augmentation": augmentation, "coupling": self.coupling}

    def training_loss(self, source: GeneratedSource) -> GeneratedToRealLoss:
        """The loss ``loss(model, x_real, y)`` that trains this refiner on ``source``'s generated samples."""
        return GeneratedToRealLoss(source, self.augmentation, self.coupling)

    def training_set(self, data: RefinerData) -> TrainingSet:
        """Real samples as targets, sources drawn from the pool."""
        return TrainingSet(self.training_loss(data.pool), data.x, data.y)
