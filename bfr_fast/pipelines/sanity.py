r"""The gate before any training: does the base, as configured, sample images rather than noise?

A generator called with the wrong convention (time running the other way, a DDPM's index where it takes t, an
ε-network sampled as a velocity, arguments swapped) still returns tensors of the right shape, and a run would train
its refiners for minutes and then score noise. So before any training, :func:`check_base` draws a small batch from
the base exactly as the run will (same sampler, same labels), and compares, in the run's own feature space
(:class:`~bfr_fast.metrics.FeatureExtractor`), three Fréchet distances:

- :math:`d_{SD}`: the samples to the held-out data,
- :math:`d_{SN}`: the samples to as many draws of the base's source noise :math:`z \sim N(0, I)`,
- :math:`d_{ND}`: that noise to the data.

The base fails when its samples are closer to noise than to the data (:math:`d_{SD} \ge d_{SN}`), or no closer to
the data than noise itself is (:math:`d_{SD} \ge d_{ND}`: garbage far from both, e.g. a diverged integration), or
not finite. Both are relative to the data's own distance from noise, so no threshold is tuned per data set or
extractor; a trained but weak base sits far nearer the data than noise does (docs/results/ecosystem.md has the
measured distances).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import torch

from bfr_fast.checks import positive_int
from bfr_fast.metrics import FeatureExtractor, ImageFeatures, frechet_distance
from bfr_fast.pipelines.sampling import balanced_labels, source_noise
from bfr_fast.refiners import FrozenGenerator

log = logging.getLogger("bfr_fast")

SANITY_SEED_OFFSET = 3000  # its noise is none of the pool's, the distillation's or the evaluation's
LIKELY_CAUSES = ("--time-direction (which end of time is noise), --parameterization (velocity or eps), "
                 "--ddpm-time (index or t), --time-scale, --convention")


@dataclass(frozen=True)
class SanityCheck:
    """The base's distances, in the run's feature space (:func:`check_base`).

    Attributes:
        num_samples: Samples drawn (and noise draws).
        samples_to_data: :math:`d_{SD}`, FD of the base's samples to the held-out data.
        samples_to_noise: :math:`d_{SN}`, FD of the samples to source noise.
        noise_to_data: :math:`d_{ND}`, FD of source noise to the data.
        finite: Every sample is finite.
    """

    num_samples: int
    samples_to_data: float
    samples_to_noise: float
    noise_to_data: float
    finite: bool = True

    @property
    def passed(self) -> bool:
        """Finite samples nearer the data than to noise, and nearer the data than noise is."""
        return (self.finite and self.samples_to_data < self.samples_to_noise
                and self.samples_to_data < self.noise_to_data)

    def to_json(self) -> dict[str, float | int | bool]:
        return {**asdict(self), "passed": self.passed}


class BaseLooksBroken(ValueError):
    """The base samples noise (or garbage) as configured: a wrong convention, not a weak generator."""


@torch.no_grad()
def measure_base(
    generator: FrozenGenerator, extractor: FeatureExtractor, reference: ImageFeatures,
    image_shape: tuple[int, int, int], num_classes: int | None, seed: int, device: torch.device,
    num_samples: int = 256,
) -> SanityCheck:
    """The distances of :class:`SanityCheck` for ``num_samples`` base samples (balanced labels when conditional).

    Args:
        generator: The frozen base with its sampler.
        extractor: The run's feature space.
        reference: The held-out data's features in it.
        image_shape: ``(C, H, W)``.
        num_classes: The labels' classes, or None (unconditional).
        seed: The run's seed (+ :data:`SANITY_SEED_OFFSET` draws the noise).
        device: Where the base samples.
        num_samples: Samples (at least 2, for a covariance).
    """
    positive_int("num_samples", num_samples)
    noise = source_noise(num_samples, image_shape, seed + SANITY_SEED_OFFSET, device)
    labels = balanced_labels(num_samples, num_classes, device)
    samples, _ = generator.sample(noise, labels)
    if not bool(torch.isfinite(samples).all()):
        return SanityCheck(num_samples, float("inf"), float("inf"), float("inf"), finite=False)
    fake = extractor.extract(samples, outputs=()).features
    # fresh noise, not the samples' own inputs: an identity-like base would otherwise sit at distance 0 from it
    other = source_noise(num_samples, image_shape, seed + SANITY_SEED_OFFSET + 1, device)
    noise_feats = extractor.extract(other, outputs=()).features
    return SanityCheck(num_samples, frechet_distance(fake, reference.features), frechet_distance(fake, noise_feats),
                       frechet_distance(noise_feats, reference.features))


def check_base(
    generator: FrozenGenerator, extractor: FeatureExtractor, reference: ImageFeatures,
    image_shape: tuple[int, int, int], num_classes: int | None, seed: int, device: torch.device, source: str,
    num_samples: int = 256,
) -> SanityCheck:
    """:func:`measure_base`, logged; raises unless it passed.

    Raises:
        BaseLooksBroken: One line: the distances and the options that likely cause them.
    """
    check = measure_base(generator, extractor, reference, image_shape, num_classes, seed, device, num_samples)
    name = f"FD-{extractor.name}"
    if not check.finite:
        raise BaseLooksBroken(f"--generator: {source} samples NaN or infinite values as configured; check "
                              f"{LIKELY_CAUSES}, and that the network itself returns finite values "
                              "(--no-sanity-check skips this check)")
    summary = (f"{name} of {check.num_samples} base samples to the data {check.samples_to_data:.3g}, to Gaussian "
               f"noise {check.samples_to_noise:.3g}; noise to the data {check.noise_to_data:.3g}")
    if not check.passed:
        raise BaseLooksBroken(f"--generator: {source} samples noise, not images, as configured ({summary}); "
                              f"check {LIKELY_CAUSES} (--no-sanity-check skips this check)")
    log.info("sanity check passed: %s", summary)
    return check
