"""A small classifier trained on the data set itself: the offline feature extractor.

Where the Inception weights are not available (no network, small grayscale data sets), the project measures
samples in the feature space of a CNN trained on the data set's own training split. Its scores are not FID:
they are labelled "FD-<name>" (see :func:`bfr_fast.metrics.image.metric_label`), and the classifier's test
accuracy is recorded beside its weights so a reader can judge the feature space.

Architecture (``ARCH_VERSION``): three conv3x3-BatchNorm-ReLU blocks of widths ``(16, 32, 64)`` with a 2x2
max-pool after the first two, then a global average pool (the pooled features, 64-d) and a linear layer
(the logits). The spatial features mirror sFID's "first 7 channels of a mid-level map": the first 7 channels
of the second block's output (at half resolution), average-pooled to at most 7x7 so their size stays bounded
(8x8 digits: 7x4x4 = 112 dims; 28x28 MNIST: 7x7x7 = 343 dims).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bfr_fast.checkpoint import atomic_save, load
from bfr_fast.checks import integer, positive_float, positive_int
from bfr_fast.metrics.extractor import FeatureExtractor, check_images
from bfr_fast.progress import progress_bar

ARCH_VERSION = "convnet-v1"
WIDTHS: tuple[int, int, int] = (16, 32, 64)
SPATIAL_CHANNELS = 7
SPATIAL_MAX_SIZE = 7
MIN_IMAGE_SIZE = 4  # two 2x max-pools
LOW_ACCURACY_WARNING = 0.9
_DATASET_NAME = re.compile(r"[A-Za-z0-9_\-]+")


def _conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(),
    )


class ClassifierNet(nn.Module):
    """The CNN behind :class:`ClassifierExtractor` (see the module docstring for the layout).

    Args:
        in_channels: image channels.
        num_classes: number of classes K.
        image_size: ``(H, W)``, each at least 4.
    """

    def __init__(self, in_channels: int, num_classes: int, image_size: tuple[int, int]) -> None:
        super().__init__()
        if min(image_size) < MIN_IMAGE_SIZE:
            raise ValueError(f"image_size must be at least {MIN_IMAGE_SIZE}x{MIN_IMAGE_SIZE}, got {image_size}")
        integer("num_classes", num_classes, low=2)
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.block1 = _conv_block(in_channels, WIDTHS[0])
        self.block2 = _conv_block(WIDTHS[0], WIDTHS[1])
        self.block3 = _conv_block(WIDTHS[1], WIDTHS[2])
        self.head = nn.Linear(WIDTHS[2], num_classes)
        half = (self.image_size[0] // 2, self.image_size[1] // 2)
        self.spatial_size = (min(half[0], SPATIAL_MAX_SIZE), min(half[1], SPATIAL_MAX_SIZE))

    @property
    def feature_dim(self) -> int:
        """Dimension D of the pooled features."""
        return WIDTHS[2]

    @property
    def spatial_dim(self) -> int:
        """Dimension D_s of the flattened spatial features."""
        return SPATIAL_CHANNELS * self.spatial_size[0] * self.spatial_size[1]

    def forward_all(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return ``(pooled (B, D), logits (B, K), spatial (B, D_s))`` for images ``x`` in [-1, 1]."""
        mid = self.block2(F.max_pool2d(self.block1(x), 2))
        spatial = F.adaptive_avg_pool2d(mid[:, :SPATIAL_CHANNELS], self.spatial_size).flatten(1)
        pooled = self.block3(F.max_pool2d(mid, 2)).mean(dim=(2, 3))
        return pooled, self.head(pooled), spatial

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits ``(B, K)``."""
        return self.forward_all(x)[1]


@dataclass(frozen=True)
class TrainedClassifier:
    """Result of :func:`train_classifier`.

    Attributes:
        net: the trained network, in eval mode.
        test_accuracy: fraction of the test split classified correctly.
        train_seconds: wall-clock training time (without the accuracy evaluation).
    """

    net: ClassifierNet
    test_accuracy: float
    train_seconds: float


def _check_labelled(x: torch.Tensor, y: torch.Tensor, split: str) -> None:
    check_images(x, f"{split}_x")
    if not isinstance(y, torch.Tensor) or y.ndim != 1 or y.is_floating_point() or y.is_complex():
        raise ValueError(f"{split}_y must be a 1-D integer tensor of class labels")
    if y.shape[0] != x.shape[0]:
        raise ValueError(f"{split}_y must have one label per image: {y.shape[0]} labels for {x.shape[0]} images")
    if int(y.min()) < 0:
        raise ValueError(f"{split}_y must hold labels in [0, K), found {int(y.min())}")


def _random_shift(x: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Translate the batch by one random offset of up to ``max_shift`` pixels, filling with background (-1)."""
    dy, dx = torch.randint(0, 2 * max_shift + 1, (2,), generator=generator).tolist()
    height, width = x.shape[-2:]
    padded = F.pad(x, (max_shift,) * 4, value=-1.0)
    return padded[..., dy : dy + height, dx : dx + width]


def accuracy(net: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 512) -> float:
    """Fraction of ``x`` that ``net`` (logits output) classifies as ``y``, evaluated without gradients."""
    device = next(net.parameters()).device
    was_training = net.training
    net.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, x.shape[0], batch_size):
            logits = net(x[start : start + batch_size].to(device, torch.float32))
            correct += int((logits.argmax(dim=1).cpu() == y[start : start + batch_size].cpu()).sum())
    net.train(was_training)
    return correct / x.shape[0]


def train_classifier(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    *,
    steps: int = 1000,
    batch_size: int = 64,
    lr: float = 3e-3,
    seed: int = 0,
    device: torch.device | str = "cpu",
    num_classes: int | None = None,
    progress: bool = False,
) -> TrainedClassifier:
    """Train a :class:`ClassifierNet` on a training split and measure it on a test split.

    AdamW (weight decay 1e-4) with a one-cycle learning-rate schedule peaking at ``lr``, cross-entropy loss,
    minibatches drawn with replacement, each translated by a random offset of up to ``max(1, H // 14)``
    pixels (padding with the background value -1). Seeded: on the CPU the same inputs give the same weights;
    the global RNG state is left as it was.

    Args:
        train_x: ``(N, C, H, W)`` training images in [-1, 1].
        train_y: ``(N,)`` integer labels in [0, K).
        test_x: ``(M, C, H, W)`` held-out images, the same C, H, W.
        test_y: ``(M,)`` labels.
        steps: optimizer steps.
        batch_size: images per step.
        lr: peak learning rate.
        seed: seeds the initialization, the minibatches and the translations.
        device: where to train.
        num_classes: K; inferred as 1 + the largest label when None.
        progress: show a progress bar (when stderr is a terminal).

    Returns:
        The trained network (eval mode), its test accuracy and the training time.
    """
    _check_labelled(train_x, train_y, "train")
    _check_labelled(test_x, test_y, "test")
    if test_x.shape[1:] != train_x.shape[1:]:
        raise ValueError(
            f"test_x must have the shape of train_x per image: {tuple(test_x.shape[1:])} vs {tuple(train_x.shape[1:])}"
        )
    positive_int("steps", steps)
    positive_int("batch_size", batch_size)
    positive_float("lr", lr)
    largest = max(int(train_y.max()), int(test_y.max()))
    if num_classes is None:
        num_classes = largest + 1
    elif largest >= num_classes:
        raise ValueError(f"num_classes must exceed every label, got {num_classes} with a label {largest}")

    device = torch.device(device)
    channels, height, width = train_x.shape[1:]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = ClassifierNet(channels, num_classes, (height, width))
    net.to(device).train()
    generator = torch.Generator().manual_seed(seed)
    max_shift = max(1, height // 14)
    optimizer = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps)
    inputs = train_x.to(device, torch.float32).clamp(-1.0, 1.0)
    labels = train_y.to(device, torch.long)

    start = time.perf_counter()
    for _ in progress_bar(range(steps), enabled=progress, desc="train classifier"):
        index = torch.randint(0, inputs.shape[0], (batch_size,), generator=generator).to(device)
        batch = _random_shift(inputs[index], max_shift, generator)
        loss = F.cross_entropy(net(batch), labels[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
    train_seconds = time.perf_counter() - start

    net.eval()
    return TrainedClassifier(net, accuracy(net, test_x.clamp(-1.0, 1.0), test_y), train_seconds)


def data_fingerprint(*tensors: torch.Tensor) -> str:
    """SHA-256 over the shapes, dtypes and bytes of ``tensors`` (what a cached classifier was trained on)."""
    digest = hashlib.sha256()
    for tensor in tensors:
        flat = tensor.detach().cpu().contiguous()
        digest.update(f"{tuple(flat.shape)}|{flat.dtype}|".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b"")
    return digest.hexdigest()


class ClassifierExtractor(FeatureExtractor):
    """Features from a :class:`ClassifierNet`: pooled (penultimate layer), logits, spatial (mid-level map).

    Build it with :meth:`load_or_train`, which caches the trained weights on disk.

    Args:
        net: a trained network.
        name: the extractor's name, "<dataset>net" by convention (e.g. "digitsnet").
        metadata: what :meth:`load_or_train` records (test accuracy, fingerprint, training settings).
        device: where features are computed.
        batch_size: images per forward pass.
        trained_now: True when the network was trained in this process rather than loaded from a cache.
    """

    available = frozenset({"features", "logits", "spatial"})

    def __init__(
        self,
        net: ClassifierNet,
        name: str,
        metadata: dict[str, Any],
        *,
        device: torch.device | str = "cpu",
        batch_size: int = 256,
        trained_now: bool = False,
    ) -> None:
        super().__init__(device, batch_size)
        self.name = name
        self.net = net.to(self.device).eval()
        self.metadata = metadata
        self.trained_now = trained_now

    @property
    def test_accuracy(self) -> float:
        """Accuracy of the classifier on the test split it was checked against."""
        return float(self.metadata["test_accuracy"])

    def _check_input(self, images: torch.Tensor) -> None:
        super()._check_input(images)
        expected = (self.net.in_channels, *self.net.image_size)
        if tuple(images.shape[1:]) != expected:
            raise ValueError(
                f"images must have shape (N, {expected[0]}, {expected[1]}, {expected[2]}) for {self.name!r}, "
                f"got {tuple(images.shape)}"
            )

    def _forward(self, batch: torch.Tensor, outputs: frozenset[str]) -> dict[str, torch.Tensor]:
        pooled, logits, spatial = self.net.forward_all(batch)
        return {"features": pooled, "logits": logits, "spatial": spatial}

    @classmethod
    def load_or_train(
        cls,
        cache_dir: str | os.PathLike[str],
        dataset_name: str,
        train_x: torch.Tensor,
        train_y: torch.Tensor,
        test_x: torch.Tensor,
        test_y: torch.Tensor,
        *,
        steps: int = 1000,
        train_batch_size: int = 64,
        lr: float = 3e-3,
        seed: int = 0,
        device: torch.device | str = "cpu",
        batch_size: int = 256,
        progress: bool = False,
    ) -> ClassifierExtractor:
        """Load ``<cache_dir>/<dataset_name>net.pt`` or train the classifier and write it there.

        The cache is used only when its fingerprint matches: the architecture version, the training settings
        and the bytes of all four tensors. Otherwise (or when the file cannot be read) the classifier is
        trained again and the file replaced atomically (temp file, fsync, rename). Loading uses
        ``torch.load(weights_only=True)``.

        Args:
            cache_dir: folder for the cached weights.
            dataset_name: letters, digits, "_" or "-"; the extractor is named ``f"{dataset_name}net"``.
            train_x, train_y, test_x, test_y: the data set's splits (see :func:`train_classifier`).
            steps, train_batch_size, lr, seed: training settings (see :func:`train_classifier`).
            device: where to train and to compute features.
            batch_size: images per forward pass when extracting features.
            progress: show a progress bar while training.

        Returns:
            The extractor; ``trained_now`` says whether it was trained in this call.
        """
        if not isinstance(dataset_name, str) or not _DATASET_NAME.fullmatch(dataset_name):
            raise ValueError(f"dataset_name must be letters, digits, '_' or '-', got {dataset_name!r}")
        name = f"{dataset_name}net"
        path = Path(cache_dir) / f"{name}.pt"
        settings = {"steps": steps, "batch_size": train_batch_size, "lr": lr, "seed": seed}
        fingerprint = hashlib.sha256(
            json.dumps({"arch": ARCH_VERSION, "train": settings}, sort_keys=True).encode()
            + data_fingerprint(train_x, train_y, test_x, test_y).encode()
        ).hexdigest()

        cached = cls._read_cache(path, fingerprint)
        if cached is not None:
            net, metadata = cached
            return cls(net, name, metadata, device=device, batch_size=batch_size, trained_now=False)

        trained = train_classifier(
            train_x, train_y, test_x, test_y,
            steps=steps, batch_size=train_batch_size, lr=lr, seed=seed, device=device, progress=progress,
        )  # fmt: skip
        if trained.test_accuracy < LOW_ACCURACY_WARNING:
            warnings.warn(
                f"{name} reaches only {trained.test_accuracy:.1%} test accuracy; its feature distances are a weak "
                "measure of sample quality",
                stacklevel=2,
            )
        net = trained.net
        metadata = {
            "name": name,
            "arch_version": ARCH_VERSION,
            "in_channels": net.in_channels,
            "num_classes": net.num_classes,
            "image_size": list(net.image_size),
            "fingerprint": fingerprint,
            "train": settings,
            "test_accuracy": trained.test_accuracy,
            "train_seconds": trained.train_seconds,
            "num_train": int(train_x.shape[0]),
            "num_test": int(test_x.shape[0]),
        }
        state = {key: value.detach().cpu() for key, value in net.state_dict().items()}
        atomic_save({"state_dict": state, "metadata": metadata}, path)
        return cls(net, name, metadata, device=device, batch_size=batch_size, trained_now=True)

    @staticmethod
    def _read_cache(path: Path, fingerprint: str) -> tuple[ClassifierNet, dict[str, Any]] | None:
        """The cached network and metadata, or None when absent, unreadable or trained on something else."""
        if not path.is_file():
            return None
        try:
            payload = load(path)
            metadata = payload["metadata"]
            if metadata["fingerprint"] != fingerprint:
                return None
            height, width = metadata["image_size"]
            net = ClassifierNet(metadata["in_channels"], metadata["num_classes"], (height, width))
            net.load_state_dict(payload["state_dict"])
        except Exception as error:  # a damaged cache is rebuilt, not fatal
            warnings.warn(f"cannot read the classifier cache {path} ({error}); training again", stacklevel=3)
            return None
        return net.eval(), metadata
