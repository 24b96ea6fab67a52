r"""BFR's latent-space refiner (LFR): a flow from N(0, I) to the base's latents of real data.

With the inversion cache :math:`z_1 = G^{-1}(x)` (:mod:`bfr_fast.refiners.inversion`), the refiner learns to carry
fresh noise :math:`z \sim N(0, I)` onto the latents of the training data, so that decoding its output with the
unchanged base lands on real-looking samples: :math:`x = G(R(z))`.

**Noise mixing.** Each target latent is blurred towards the prior by a per-sample amount :math:`a \sim U(0, \alpha)`,
with :math:`\xi \sim N(0, I)` independent of the source :math:`z`:

- ``"amplitude"`` (default): :math:`z_1^\alpha = \sqrt{1 - a^2}\, z_1 + a\, \xi`;
- ``"variance"`` (the reference code's): :math:`z_1^\alpha = \sqrt{1 - a}\, z_1 + \sqrt{a}\, \xi`.

Both keep unit variance when :math:`z_1` has it (:math:`\mathbb{E}[z_1^\alpha] = c\,\mathbb{E}[z_1]`,
:math:`\mathrm{Var}[z_1^\alpha] = c^2 \mathrm{Var}[z_1] + s^2` with :math:`(c, s)` the two coefficients, and
:math:`c^2 + s^2 = 1`); for the same :math:`\alpha` the variance form mixes in more noise (:math:`\sqrt a > a`).
:math:`\alpha = 0` trains on :math:`z_1` exactly.

**Training** is flow matching from :math:`z` (t=0) to :math:`z_1^\alpha` (t=1), paired by per-class exact minibatch
OT by default (labels follow their latents): with independent pairs a 1-step refiner would send every :math:`z` to
the mean latent. **Inference** (:meth:`LatentFlowRefiner.sample`): :math:`z \to` the refiner ODE (1 Euler step =
1 NFE by default) :math:`\to G`; no noise is added.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import nn

from bfr_fast.checks import choice, probability
from bfr_fast.losses.flow_matching import FlowMatchingLoss
from bfr_fast.ops.reference import per_sample
from bfr_fast.refiners.base import Refiner, RefinerData, TrainingSet
from bfr_fast.refiners.dfr import check_coupling
from bfr_fast.refiners.generator import FrozenGenerator

MIXINGS = ("amplitude", "variance")


def mix_latents(z1: torch.Tensor, xi: torch.Tensor, a: torch.Tensor, mixing: str = "amplitude") -> torch.Tensor:
    r"""Noise-mixed latents :math:`c(a)\, z_1 + s(a)\, \xi`, per sample.

    Args:
        z1: ``(B, ...)`` latents.
        xi: ``(B, ...)`` independent standard normal noise.
        a: ``(B,)`` mixing amounts in [0, 1].
        mixing: ``"amplitude"``: :math:`c = \sqrt{1-a^2}, s = a`; ``"variance"``: :math:`c = \sqrt{1-a}, s = \sqrt a`.

    Raises:
        ValueError: Unknown ``mixing``.
    """
    choice("mixing", mixing, MIXINGS)
    a = a.to(z1.dtype)
    if mixing == "amplitude":
        keep, add = torch.sqrt(1 - a.square()), a
    else:
        keep, add = torch.sqrt(1 - a), torch.sqrt(a)
    return per_sample(keep, z1) * z1 + per_sample(add, z1) * xi


class LatentFlowRefinerLoss:
    """``loss(model, z1, y) -> (loss, logs)``: flow matching from fresh N(0, I) to noise-mixed latents.

    Feed it minibatches of the inversion cache's latents (and labels). Global RNG, like the other losses.

    Args:
        alpha: Upper end of the per-sample mixing amount ``a ~ U(0, alpha)``, in [0, 1].
        mixing: ``"amplitude"`` or ``"variance"`` (see :func:`mix_latents`).
        coupling: ``"ot"`` (per-class exact minibatch OT) or ``"independent"``.
    """

    def __init__(self, alpha: float, mixing: str, coupling: str) -> None:
        self.alpha = alpha
        self.mixing = mixing
        self.flow_matching = FlowMatchingLoss(coupling=coupling)

    def __call__(
        self, model: nn.Module, z1: torch.Tensor, y: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        a = torch.rand(z1.shape[0], device=z1.device) * self.alpha
        target = mix_latents(z1, torch.randn_like(z1), a, self.mixing)
        return self.flow_matching(model, target, y)  # the source z ~ N(0, I) is drawn inside, independent of xi


class RefinedSample(NamedTuple):
    """What :meth:`LatentFlowRefiner.sample` returns.

    Attributes:
        samples: ``G(R(z))``, the decoded samples.
        latents: ``R(z)``, the refined latents.
        nfe_refiner: Refiner network calls per sample.
        nfe_base: Base model calls per sample.
    """

    samples: torch.Tensor
    latents: torch.Tensor
    nfe_refiner: int
    nfe_base: int


class LatentFlowRefiner(Refiner):
    """BFR's latent-space refiner.

    Args:
        network: The refiner's velocity network ``network(z, t, y=None)`` on latents (the data's shape).
        alpha: Mixing range: ``a ~ U(0, alpha)`` per sample, ``alpha`` in [0, 1] (default 0.1).
        mixing: ``"amplitude"`` (default) or ``"variance"``.
        coupling: ``"ot"`` (default) or ``"independent"``.
        conditional: Whether the network takes labels (None: from ``network.num_classes``).

    Raises:
        ValueError: ``alpha`` outside [0, 1], or an unknown ``mixing`` or ``coupling``.
    """

    kind = "lfr"

    def __init__(
        self,
        network: nn.Module,
        alpha: float = 0.1,
        mixing: str = "amplitude",
        coupling: str = "ot",
        conditional: bool | None = None,
    ) -> None:
        super().__init__(network, conditional)
        self.alpha = probability("alpha", alpha)
        choice("mixing", mixing, MIXINGS)
        self.mixing = mixing
        self.coupling = check_coupling(coupling)

    def config(self) -> dict[str, Any]:
        return {**super().config(), "alpha": self.alpha, "mixing": self.mixing, "coupling": self.coupling}

    def training_loss(self) -> LatentFlowRefinerLoss:
        """The loss ``loss(model, z1, y)`` over minibatches of inversion-cache latents."""
        return LatentFlowRefinerLoss(self.alpha, self.mixing, self.coupling)

    def training_set(self, data: RefinerData) -> TrainingSet:
        """The inversion cache's latents and their labels."""
        labels = data.cache.labels
        return TrainingSet(self.training_loss(), data.cache.latents.cpu(), None if labels is None else labels.cpu())

    def sample(
        self,
        noise: torch.Tensor,
        generator: FrozenGenerator,
        y: torch.Tensor | None = None,
        num_steps: int = 1,
        method: str = "euler",
        progress: bool = False,
    ) -> RefinedSample:
        """Refines ``noise`` with this refiner's ODE, then decodes it with the base: :math:`G(R(z))`.

        Any base can decode (transfer), though the refiner was fit to the latents of the one it was trained on.

        Args:
            noise: ``(N, ...)`` starting noise :math:`z \\sim N(0, I)`.
            generator: The base and its sampler (normally the one that built the inversion cache).
            y: ``(N,)`` class labels (for the base, and for a conditional refiner), or None.
            num_steps: Refiner steps (1 Euler step = 1 NFE by default).
            method: Refiner method.
            progress: Progress bar over the base's batches.

        Returns:
            The samples, refined latents and the NFE of refiner and base, separately.
        """
        latents, nfe_refiner = self.refine(
            noise, num_steps=num_steps, method=method, y=y, return_nfe=True, batch_size=generator.batch_size
        )
        samples, nfe_base = generator.sample(latents, y, progress=progress)
        return RefinedSample(samples, latents, nfe_refiner, nfe_base)
