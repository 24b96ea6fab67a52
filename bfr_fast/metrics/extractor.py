"""The feature-extractor interface that every image metric is computed on.

An extractor maps images (float NCHW in [-1, 1]) to up to three kinds of features:

- ``"features"``: pooled features, ``(N, D)``, for FD/FID, KID and precision/recall;
- ``"logits"``: class logits, ``(N, K)``, for the Inception Score;
- ``"spatial"``: a flattened mid-level feature map, ``(N, D_s)``, for sFID.

Two implementations exist: :class:`~bfr_fast.metrics.classifier.ClassifierExtractor` (a small classifier
trained on the data set itself, the offline default) and
:class:`~bfr_fast.metrics.inception.InceptionExtractor` (clean-fid's Inception, from a user-supplied file).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch

from bfr_fast.checks import positive_int

OUTPUT_KINDS: tuple[str, ...] = ("features", "logits", "spatial")


@dataclass(frozen=True)
class ImageFeatures:
    """Everything one extractor computed for one set of images, as float64 arrays.

    Attributes:
        extractor: ``name`` of the extractor that produced them (features of different extractors never mix).
        features: pooled features, ``(N, D)``.
        logits: class logits, ``(N, K)``, or None when not computed.
        spatial: flattened spatial features, ``(N, D_s)``, or None when not computed.
    """

    extractor: str
    features: np.ndarray
    logits: np.ndarray | None = None
    spatial: np.ndarray | None = None

    @property
    def num_images(self) -> int:
        """Number of images the features describe."""
        return int(self.features.shape[0])


def check_images(images: torch.Tensor, argument: str = "images") -> None:
    """Raise ValueError unless ``images`` is a non-empty, finite, floating-point NCHW tensor.

    Args:
        images: the tensor to check.
        argument: the argument name used in the error message.
    """
    if not isinstance(images, torch.Tensor):
        raise ValueError(f"{argument} must be a torch.Tensor of shape (N, C, H, W), got {type(images).__name__}")
    if images.ndim != 4:
        raise ValueError(f"{argument} must have shape (N, C, H, W), got shape {tuple(images.shape)}")
    if not images.is_floating_point():
        raise ValueError(f"{argument} must be a floating-point tensor in [-1, 1], got dtype {images.dtype}")
    if images.shape[0] == 0:
        raise ValueError(f"{argument} must hold at least one image, got shape {tuple(images.shape)}")
    if not bool(torch.isfinite(images).all()):
        raise ValueError(f"{argument} contains NaN or infinite values")


class FeatureExtractor(ABC):
    """Maps images to pooled features, logits and spatial features, in batches, without gradients.

    Subclasses set ``name``, ``available`` (the subset of :data:`OUTPUT_KINDS` they can produce) and implement
    :meth:`_forward`. Images are float NCHW in [-1, 1] on any device; each batch is moved to ``device``.
    Values outside [-1, 1] are clipped, as writing the images to an 8-bit file would.

    Args:
        device: the device the network runs on.
        batch_size: images per forward pass.
    """

    name: str
    available: frozenset[str]

    def __init__(self, device: torch.device | str = "cpu", batch_size: int = 256) -> None:
        positive_int("batch_size", batch_size)
        self.device = torch.device(device)
        self.batch_size = batch_size

    @abstractmethod
    def _forward(self, batch: torch.Tensor, outputs: frozenset[str]) -> dict[str, torch.Tensor]:
        """Compute the requested outputs for one batch already on ``self.device`` and clipped to [-1, 1].

        Returns:
            A dict from each name in ``outputs`` to a 2-D ``(B, ·)`` tensor.
        """

    def _check_input(self, images: torch.Tensor) -> None:
        """Subclasses extend this with their own requirements (channels, size)."""
        check_images(images)

    def extract(self, images: torch.Tensor, outputs: Iterable[str] | None = None) -> ImageFeatures:
        """Compute several outputs in one pass over ``images``.

        Args:
            images: ``(N, C, H, W)`` float tensor in [-1, 1].
            outputs: names from :data:`OUTPUT_KINDS`; None means all the extractor has. ``"features"`` is
                always computed.

        Returns:
            An :class:`ImageFeatures` with float64 arrays on the CPU.

        Raises:
            NotImplementedError: an output the extractor cannot produce was requested.
        """
        wanted = frozenset(self.available if outputs is None else outputs) | {"features"}
        unknown = wanted - set(OUTPUT_KINDS)
        if unknown:
            raise ValueError(f"outputs must be names from {OUTPUT_KINDS}, got {sorted(unknown)}")
        missing = wanted - self.available
        if missing:
            raise NotImplementedError(
                f"the {self.name!r} extractor cannot produce {sorted(missing)}; it offers {sorted(self.available)}"
            )
        self._check_input(images)
        chunks: dict[str, list[np.ndarray]] = {kind: [] for kind in wanted}
        with torch.no_grad():
            for start in range(0, images.shape[0], self.batch_size):
                batch = images[start : start + self.batch_size].to(self.device, torch.float32).clamp(-1.0, 1.0)
                result = self._forward(batch, wanted)
                for kind in wanted:
                    chunks[kind].append(result[kind].detach().to("cpu", torch.float64).numpy())
        arrays = {kind: np.concatenate(parts, axis=0) for kind, parts in chunks.items()}
        return ImageFeatures(
            extractor=self.name,
            features=arrays["features"],
            logits=arrays.get("logits"),
            spatial=arrays.get("spatial"),
        )

    def features(self, images: torch.Tensor) -> np.ndarray:
        """Pooled features, ``(N, D)`` float64."""
        return self.extract(images, ("features",)).features

    def logits(self, images: torch.Tensor) -> np.ndarray:
        """Class logits, ``(N, K)`` float64 (for the Inception Score)."""
        result = self.extract(images, ("logits",)).logits
        assert result is not None  # extract() computed what was asked for or raised
        return result

    def spatial_features(self, images: torch.Tensor) -> np.ndarray:
        """Flattened spatial features, ``(N, D_s)`` float64 (for sFID)."""
        result = self.extract(images, ("spatial",)).spatial
        assert result is not None  # extract() computed what was asked for or raised
        return result
