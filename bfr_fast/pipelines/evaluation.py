"""Scoring sample sets inside a run: the feature extractor of a data set, and one scored row with its grid."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, NamedTuple

import torch

from bfr_fast.data import ImageDataset
from bfr_fast.metrics import ClassifierExtractor, FeatureExtractor, ImageFeatures, InceptionExtractor, evaluate_images
from bfr_fast.pipelines.workspace import Workspace
from bfr_fast.report import save_image_grid

log = logging.getLogger("bfr_fast")


def build_extractor(
    data: ImageDataset, inception: Path | None, cache_dir: Path, device: torch.device, progress: bool = False
) -> FeatureExtractor:
    """clean-fid's Inception from ``inception`` when given, else the classifier trained (and cached) on ``data``.

    The global torch RNG is left as it was (building a classifier draws its initial weights), so that a run trains
    the same networks whether its scorer is built before or after them.

    Args:
        data: The data set the samples imitate (its training split trains the classifier).
        inception: ``inception-2015-12-05.pt`` (TorchScript), or None.
        cache_dir: Where trained classifiers are cached, keyed by the data set's name.
        device: Where features are computed.
        progress: Show the classifier's training progress.

    Raises:
        ValueError: No ``inception`` and unlabelled data (no classifier can be trained).
    """
    if inception is not None:
        return InceptionExtractor(inception, device=device)
    if not data.is_labelled:
        raise ValueError(
            f"data set {data.name!r} has no labels, so no classifier can be trained as a feature extractor; "
            "pass --inception PATH to clean-fid's inception-2015-12-05.pt"
        )
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        extractor = ClassifierExtractor.load_or_train(
            cache_dir, data.name, data.train_x, data.train_y, data.test_x, data.test_y, device=device,
            progress=progress,
        )
    log.info("feature extractor %s: test accuracy %.4f", extractor.name, extractor.test_accuracy)
    return extractor


class Scorer(NamedTuple):
    """A feature space and the held-out reference features that sample sets are scored against."""

    extractor: FeatureExtractor
    reference: ImageFeatures

    @classmethod
    def of(cls, extractor: FeatureExtractor, data: ImageDataset) -> Scorer:
        """Scores against ``data``'s held-out split."""
        return cls(extractor, extractor.extract(data.test_x))


def evaluate_row(
    ws: Workspace,
    row: dict[str, Any],
    samples: torch.Tensor,
    reference: ImageFeatures,
    extractor: FeatureExtractor,
    grid_name: str,
) -> dict[str, Any]:
    """Scores ``samples`` against the reference features, saves the first 100 as a grid, and returns the row."""
    metrics = evaluate_images(samples, reference, extractor, kid_subset_size=min(1000, samples.shape[0]))
    scale = max(1, 64 // samples.shape[-1])
    save_image_grid(samples[:100], ws.folder.samples(grid_name), nrow=10, scale=scale)
    row = {**row, **metrics, "grid": f"samples/{grid_name}.png"}
    log.info("%s", row)
    return row
