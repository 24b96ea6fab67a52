r"""The inversion cache of the latent-space refiner: :math:`z_1 = G^{-1}(x)` for every training sample.

:math:`G^{-1}` integrates the base ODE from the data (t=1) back to t=0 on the sampling grid
(:meth:`FrozenGenerator.invert <bfr_fast.refiners.generator.FrozenGenerator.invert>`). A fixed-step solver inverts
only up to its discretisation error, so each sample's reconstruction is regenerated and its error stored:

.. math::
    e_i = \operatorname{RMS}(G(z_{1,i}) - x_i) = \lVert G(z_{1,i}) - x_i \rVert_2 / \sqrt{D},

the root mean square over the sample's D values, in data units (pixels in [-1, 1]), so that it reads the same
for any image size. Building costs two base runs per sample (invert, then reconstruct): 2 × NFE network calls per
training sample (stage timings of the runs: ``docs/results/bfr-digits-seeds/README.md``).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from bfr_fast.checkpoint import atomic_save, load
from bfr_fast.refiners.generator import FrozenGenerator

log = logging.getLogger("bfr_fast")

ERROR_METRIC = "rms"


@dataclass(frozen=True, eq=False)
class InversionCache:
    """Latents of the training samples under the base ODE, with their reconstruction errors.

    Attributes:
        latents: ``(N, ...)`` :math:`z_1 = G^{-1}(x)`, the data's shape.
        labels: ``(N,)`` the samples' labels (the base was inverted conditioned on them), or None.
        errors: ``(N,)`` float32 per-sample RMS reconstruction errors (see the module docstring).
        method: The base sampler's method.
        num_steps: The base sampler's steps.
        generator: The :meth:`~bfr_fast.refiners.FrozenGenerator.fingerprint` of the generator inverted, or None
            (unknown).
    """

    latents: torch.Tensor
    labels: torch.Tensor | None
    errors: torch.Tensor
    method: str
    num_steps: int
    generator: str | None = None

    def __post_init__(self) -> None:
        n = self.latents.shape[0]
        if self.errors.shape != (n,) or (self.labels is not None and self.labels.shape != (n,)):
            raise ValueError(
                f"errors and labels must be ({n},) like the latents, got {tuple(self.errors.shape)} and "
                f"{None if self.labels is None else tuple(self.labels.shape)}"
            )

    def error_summary(self) -> dict[str, float]:
        """Mean, median, 95th percentile and max of the per-sample RMS reconstruction errors."""
        errors = self.errors.detach().double().cpu()
        return {
            "mean": float(errors.mean()),
            "median": float(errors.median()),
            "p95": float(torch.quantile(errors, 0.95)),
            "max": float(errors.max()),
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Writes the cache atomically."""
        state = {
            "latents": self.latents, "labels": self.labels, "errors": self.errors, "error_metric": ERROR_METRIC,
            "method": self.method, "num_steps": self.num_steps, "generator": self.generator,
        }
        return atomic_save(state, path)

    @classmethod
    def load(cls, path: str | os.PathLike, device: torch.device | str = "cpu") -> InversionCache:
        """Reads a cache written by :meth:`save` onto ``device``."""
        state = load(path, map_location=device)
        if state.get("error_metric") != ERROR_METRIC:
            raise ValueError(f"{path}: not an inversion cache with {ERROR_METRIC!r} errors")
        return cls(state["latents"], state["labels"], state["errors"], state["method"], int(state["num_steps"]),
                   state.get("generator"))


def build_inversion_cache(
    generator: FrozenGenerator, x: torch.Tensor, y: torch.Tensor | None = None, progress: bool = False
) -> InversionCache:
    """Inverts every sample through the base ODE and measures how well the base regenerates it.

    Args:
        generator: The frozen base and its sampler (the same sampler should decode the refined latents later).
        x: ``(N, ...)`` training samples, on the device to compute on.
        y: ``(N,)`` their labels for a conditional base, or None.
        progress: Show progress bars (inversion, then reconstruction).

    Returns:
        The cache, with the generator's fingerprint; its error distribution is also logged.

    Raises:
        ValueError: A latent or a reconstruction is not finite (naming the generator).
    """
    latents, _ = generator.invert(x, y, progress=progress)
    generator.require_finite(latents, "inverted training samples")
    reconstruction, _ = generator.sample(latents, y, progress=progress)
    generator.require_finite(reconstruction, "reconstructions of the training samples")
    errors = (reconstruction - x).flatten(1).float().pow(2).mean(dim=1).sqrt()
    cache = InversionCache(latents, y, errors, generator.method, generator.num_steps, generator.fingerprint())
    summary = ", ".join(f"{k}={v:.3g}" for k, v in cache.error_summary().items())
    log.info("inversion of %d samples (%s, %d steps): RMS reconstruction error %s", x.shape[0],
             generator.method, generator.num_steps, summary)
    return cache
