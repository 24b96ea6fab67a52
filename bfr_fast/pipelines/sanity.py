r"""The gate before any training: does the base, as configured, define the generator its library trained?

A generator called with the wrong convention (time running the other way, a DDPM's index where it takes t, an
ε-network sampled as a velocity, arguments swapped) still returns tensors of the right shape, and a run would train
its refiners for minutes and then score noise. So before any training, :func:`check_base` runs the base exactly as
the run will (same sampler, same labels) both ways:

1. **Sampling.** In the run's own feature space (:class:`~bfr_fast.metrics.FeatureExtractor`), three Fréchet
   distances: :math:`d_{SD}`, the samples to the held-out data; :math:`d_{SN}`, the samples to fresh draws of the
   source noise :math:`z \sim N(0, I)`; :math:`d_{ND}`, that noise to the data. The samples must be nearer the data
   than noise (:math:`d_{SD} < d_{SN}`) and nearer the data than noise itself is (:math:`d_{SD} < d_{ND}`).
2. **Inversion.** The base's inverse maps the data it was trained on to its source distribution. Training images
   :math:`x` are integrated back to :math:`t = 0`, and in pixel space (a fixed random orthonormal projection to at
   most 64 dimensions, so the cost does not grow with the image), the latents must be nearer :math:`N(0, I)` than
   the images themselves are: :math:`d(G^{-1}(x), N) < d(x, N)`.

Sampling alone misses a DDPM queried at the wrong time scale, whose samples are blotches far from noise yet no
digits; inversion alone misses nothing measured, but a sample test is what a user reads first. Both compare with
distances of the same run, so no threshold is tuned per data set or extractor, and a trained but weak base passes
(docs/results/ecosystem.md has every distance measured on the three libraries' generators and their mistakes).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import numpy as np
import torch

from bfr_fast.checks import integer
from bfr_fast.metrics import frechet_distance
from bfr_fast.pipelines.evaluation import Scorer
from bfr_fast.pipelines.refinement import RefinementTask
from bfr_fast.pipelines.sampling import balanced_labels, source_noise

log = logging.getLogger("bfr_fast")

SANITY_SEED_OFFSET = 3000  # its noise is none of the pool's, the distillation's or the evaluation's
LIKELY_CAUSES = ("--time-direction (which end of time is noise), --parameterization (velocity or eps), "
                 "--ddpm-time (index or t), --time-scale, --convention")


@dataclass(frozen=True)
class SanityCheck:
    """The base's distances, in the run's feature space (:func:`check_base`).

    Attributes:
        num_samples: Samples drawn (and noise draws, and training images inverted).
        samples_to_data: :math:`d_{SD}`, FD of the base's samples to the held-out data, in the run's features.
        samples_to_noise: :math:`d_{SN}`, FD of the samples to source noise, in the run's features.
        noise_to_data: :math:`d_{ND}`, FD of source noise to the data, in the run's features.
        latents_to_noise: FD of the inverted training images to source noise, in projected pixel space.
        images_to_noise: FD of those training images to source noise, in projected pixel space.
        finite: Every sample and latent is finite.
    """

    num_samples: int
    samples_to_data: float
    samples_to_noise: float
    noise_to_data: float
    latents_to_noise: float
    images_to_noise: float
    finite: bool = True

    @property
    def samples_pass(self) -> bool:
        """The samples are nearer the data than noise, and nearer the data than noise is."""
        return self.samples_to_data < self.samples_to_noise and self.samples_to_data < self.noise_to_data

    @property
    def inversion_passes(self) -> bool:
        """The inverted training images are nearer the source noise than the images are."""
        return self.latents_to_noise < self.images_to_noise

    @property
    def passed(self) -> bool:
        """Finite, and both tests pass."""
        return self.finite and self.samples_pass and self.inversion_passes

    def to_json(self) -> dict[str, float | int | bool]:
        return {**asdict(self), "passed": self.passed}


class BaseLooksBroken(ValueError):
    """The base samples noise (or garbage) as configured: a wrong convention, not a weak generator."""


@torch.no_grad()
def measure_base(task: RefinementTask, scorer: Scorer, seed: int, device: torch.device,
                 num_samples: int = 256) -> SanityCheck:
    """The distances of :class:`SanityCheck` for ``num_samples`` base samples and inverted training images.

    Args:
        task: The frozen base with its sampler, and the data (its training images are inverted; labels balanced
            over its classes, or the training labels, when the base is conditional).
        scorer: The run's feature space and the held-out data's features in it.
        seed: The run's seed (+ :data:`SANITY_SEED_OFFSET` draws the noise and the images inverted).
        device: Where the base runs.
        num_samples: Samples, noise draws and inverted images (at least 2, for a covariance).
    """
    integer("num_samples", num_samples, low=2)
    generator, extractor, data = task.generator, scorer.extractor, task.data
    shape, seed = data.image_shape, seed + SANITY_SEED_OFFSET
    samples, _ = generator.sample(source_noise(num_samples, shape, seed, device),
                                  balanced_labels(num_samples, task.num_classes, device))
    pick = torch.randperm(data.train_x.shape[0], generator=torch.Generator().manual_seed(seed))[:num_samples]
    images = data.train_x[pick].to(device)
    labels = task.labels_or_none
    latents, _ = generator.invert(images, None if labels is None else labels[pick].to(device))
    if not (bool(torch.isfinite(samples).all()) and bool(torch.isfinite(latents).all())):
        inf = float("inf")
        return SanityCheck(num_samples, inf, inf, inf, inf, inf, finite=False)
    # fresh noise, not the samples' own inputs: an identity-like base would otherwise sit at distance 0 from it
    noise = source_noise(images.shape[0], shape, seed + 1, device)
    fake = extractor.extract(samples, outputs=()).features
    noise_feats = extractor.extract(noise, outputs=()).features
    projection = _projection(noise[0].numel(), seed)
    noise_pixels = _project(noise, projection)
    return SanityCheck(
        num_samples, frechet_distance(fake, scorer.reference.features), frechet_distance(fake, noise_feats),
        frechet_distance(noise_feats, scorer.reference.features),
        frechet_distance(_project(latents, projection), noise_pixels),
        frechet_distance(_project(images, projection), noise_pixels),
    )


def _projection(dim: int, seed: int, size: int = 64) -> torch.Tensor | None:
    """A ``(dim, size)`` random matrix with orthonormal columns (None when ``dim <= size``: no projection needed).

    Orthonormal columns map N(0, I) to N(0, I): the noise stays the reference it is in pixel space."""
    if dim <= size:
        return None
    gaussian = torch.randn(dim, size, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return torch.linalg.qr(gaussian).Q


def _project(x: torch.Tensor, projection: torch.Tensor | None) -> np.ndarray:
    flat = x.flatten(1).to("cpu", torch.float64)
    return (flat if projection is None else flat @ projection).numpy()


def check_base(task: RefinementTask, scorer: Scorer, seed: int, device: torch.device, source: str,
               num_samples: int = 256) -> SanityCheck:
    """:func:`measure_base`, logged; raises unless it passed (``source`` names the generator in the message).

    Raises:
        BaseLooksBroken: One line: the failed test's distances and the options that likely cause them.
    """
    check = measure_base(task, scorer, seed, device, num_samples)
    name = f"FD-{scorer.extractor.name}"
    skip = "(--no-sanity-check skips this check)"
    if not check.finite:
        raise BaseLooksBroken(f"--generator: {source} gives NaN or infinite values as configured; check "
                              f"{LIKELY_CAUSES}, and that the network itself returns finite values {skip}")
    samples = (f"{name} of {check.num_samples} base samples to the data {check.samples_to_data:.3g}, to Gaussian "
               f"noise {check.samples_to_noise:.3g}; noise to the data {check.noise_to_data:.3g}")
    inversion = (f"pixel FD of {check.num_samples} inverted training images to Gaussian noise "
                 f"{check.latents_to_noise:.3g}, of the images themselves {check.images_to_noise:.3g}")
    if not check.samples_pass:
        raise BaseLooksBroken(f"--generator: {source} samples noise, not images, as configured ({samples}); "
                              f"check {LIKELY_CAUSES} {skip}")
    if not check.inversion_passes:
        raise BaseLooksBroken(f"--generator: {source} as configured does not invert its training images to noise "
                              f"({inversion}): its samples are not what it was trained to make; check "
                              f"{LIKELY_CAUSES} {skip}")
    log.info("sanity check passed: %s; %s", samples, inversion)
    return check
