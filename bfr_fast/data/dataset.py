"""The in-memory image data set every loader returns, and the fixed train/test split they share."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from bfr_fast.checks import choice, finite_float, positive_int

__all__ = ["DEFAULT_SEED", "DEFAULT_TEST_FRACTION", "UNLABELLED", "ImageDataset", "split_dataset",
           "stratified_split", "unlabelled"]

UNLABELLED = -1
"""Label stored for every sample of a data set without classes (``num_classes is None``)."""

DEFAULT_TEST_FRACTION = 0.2
"""Fraction of each class that loaders without a split of their own hold out as the test (reference) set."""

DEFAULT_SEED = 0
"""Seed of that fixed train/test split."""


@dataclass(frozen=True, eq=False)
class ImageDataset:
    """A small image data set held in memory, split into train and test.

    Images follow the library convention: float32, NCHW, values in [-1, 1]. Labels are int64 class indices in
    ``[0, num_classes)``; a data set without classes has ``num_classes=None`` and every label equal to
    :data:`UNLABELLED` (-1), so that feeding them to a class embedding fails loudly rather than silently
    conditioning on class 0. A trainer passes ``y`` to the model only when :attr:`is_labelled`.

    Attributes:
        name: short name used in logs and reports, e.g. ``"digits"``.
        train_x: ``(N, C, H, W)`` float32 training images in [-1, 1].
        train_y: ``(N,)`` int64 training labels.
        test_x: ``(M, C, H, W)`` float32 held-out images, the reference set for metrics.
        test_y: ``(M,)`` int64 held-out labels.
        num_classes: number of classes, or ``None`` for an unlabelled data set.
        class_names: optional name of each class (e.g. image-folder subfolder names).

    Raises:
        ValueError: on construction, if any array has the wrong type, shape, dtype or range.
    """

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int | None
    class_names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.num_classes is not None:
            positive_int("num_classes", self.num_classes, why="or None for unlabelled images")
        for split in ("train", "test"):
            _check_split(f"{split}_x", getattr(self, f"{split}_x"), f"{split}_y", getattr(self, f"{split}_y"),
                         self.num_classes)
        if self.train_x.shape[0] == 0:
            raise ValueError("train_x: expected at least one training image, got none")
        if self.test_x.shape[1:] != self.train_x.shape[1:]:
            raise ValueError(f"test_x: expected images of shape {tuple(self.train_x.shape[1:])} like train_x, "
                             f"got {tuple(self.test_x.shape[1:])}")
        if self.class_names is not None and len(self.class_names) != self.num_classes:
            raise ValueError(f"class_names: expected {self.num_classes} names (one per class), "
                             f"got {len(self.class_names)}")

    def validation_split(self, fraction: float = DEFAULT_TEST_FRACTION, seed: int = DEFAULT_SEED) -> ImageDataset:
        """The training split carved into training and validation, for choosing defaults without the test set.

        The returned data set's ``train_*`` are the remaining training images and its ``test_*`` the validation
        images (:func:`stratified_split` of the training labels), so that every recipe run on it scores against
        validation data; the real test split is not in it at all. Its name is ``"<name>-val"``.

        Args:
            fraction: fraction of each training class held out for validation, in [0, 1).
            seed: seed of the carve (a different stream from the train/test split's, whatever the seed).

        Returns:
            The validation data set.
        """
        labels = self.train_y.numpy() if self.is_labelled else np.zeros(self.train_x.shape[0], np.int64)
        # + 1: with the default seeds the carve would otherwise replay the train/test split's permutations
        train, val = stratified_split(labels, fraction, seed + 1)
        train_t, val_t = torch.from_numpy(train), torch.from_numpy(val)
        return ImageDataset(name=f"{self.name}-val", train_x=self.train_x[train_t].contiguous(),
                            train_y=self.train_y[train_t].contiguous(), test_x=self.train_x[val_t].contiguous(),
                            test_y=self.train_y[val_t].contiguous(), num_classes=self.num_classes,
                            class_names=self.class_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of every image."""
        channels, height, width = self.train_x.shape[1:]
        return channels, height, width

    @property
    def is_labelled(self) -> bool:
        """Whether the samples carry class labels (``num_classes`` is not ``None``)."""
        return self.num_classes is not None

    def class_counts(self, split: str = "train") -> torch.Tensor:
        """Number of images of each class in ``split`` ("train" or "test"), a ``(num_classes,)`` int64 tensor.

        Raises:
            ValueError: if ``split`` is not "train" or "test", or the data set is unlabelled.
        """
        choice("split", split, ("train", "test"))
        if self.num_classes is None:
            raise ValueError(f"class_counts: data set {self.name!r} is unlabelled (num_classes is None)")
        return torch.bincount(getattr(self, f"{split}_y"), minlength=self.num_classes)

    def __repr__(self) -> str:
        return (f"ImageDataset(name={self.name!r}, train={self.train_x.shape[0]}, test={self.test_x.shape[0]}, "
                f"image_shape={self.image_shape}, num_classes={self.num_classes})")


def _check_split(x_name: str, x: torch.Tensor, y_name: str, y: torch.Tensor, num_classes: int | None) -> None:
    if not isinstance(x, torch.Tensor) or x.dtype != torch.float32 or x.dim() != 4:
        raise ValueError(f"{x_name}: expected a float32 tensor of shape (N, C, H, W), got "
                         f"{_describe(x)}")
    if not isinstance(y, torch.Tensor) or y.dtype != torch.int64 or y.shape != (x.shape[0],):
        raise ValueError(f"{y_name}: expected an int64 tensor of shape ({x.shape[0]},), got {_describe(y)}")
    if x.numel() > 0:
        low, high = torch.aminmax(x)
        if not (low >= -1.0 and high <= 1.0):  # also rejects NaN
            raise ValueError(f"{x_name}: expected values in [-1, 1], got range [{float(low)}, {float(high)}]")
    if y.numel() == 0:
        return
    if num_classes is None:
        if not bool((y == UNLABELLED).all()):
            raise ValueError(f"{y_name}: expected every label to be UNLABELLED (-1) when num_classes is None")
    elif int(y.min()) < 0 or int(y.max()) >= num_classes:
        raise ValueError(f"{y_name}: expected labels in [0, {num_classes}), "
                         f"got range [{int(y.min())}, {int(y.max())}]")


def _describe(value: object) -> str:
    if isinstance(value, torch.Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    return type(value).__name__


def unlabelled(count: int) -> torch.Tensor:
    """``(count,)`` int64 labels, all :data:`UNLABELLED`, for a data set without classes."""
    return torch.full((count,), UNLABELLED, dtype=torch.int64)


def stratified_split(labels: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    r"""Split sample indices into train and test, keeping each class's proportion.

    Each class c with :math:`n_c` samples contributes :math:`\operatorname{clip}(\lfloor f n_c + \tfrac12
    \rfloor, 0, n_c - 1)` test samples (f = ``test_fraction``), so every class keeps at least one training
    sample. Both index arrays are shuffled, so the first images of either split mix classes.

    The randomness is NumPy's legacy ``RandomState``, whose stream NumPy keeps fixed across versions: the
    split is the same on every machine and every release, which metrics on a held-out set rely on.

    Args:
        labels: ``(N,)`` integer labels (use one constant label for unlabelled data: a plain random split).
        test_fraction: fraction of each class held out, in [0, 1).
        seed: seed of the split.

    Returns:
        ``(train_indices, test_indices)``, int64 arrays that are disjoint and together cover ``range(N)``.

    Raises:
        ValueError: if ``labels`` is not 1-D or ``test_fraction`` is outside [0, 1).
    """
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels: expected a 1-D array, got shape {labels.shape}")
    finite_float("test_fraction", test_fraction, low=0.0, high=1.0, high_open=True)
    rng = np.random.RandomState(seed)
    train_parts, test_parts = [], []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        n_test = min(int(np.floor(test_fraction * len(members) + 0.5)), len(members) - 1)
        test_parts.append(members[:n_test])
        train_parts.append(members[n_test:])
    train = rng.permutation(np.concatenate(train_parts)) if train_parts else np.empty(0, np.int64)
    test = rng.permutation(np.concatenate(test_parts)) if test_parts else np.empty(0, np.int64)
    return train.astype(np.int64), test.astype(np.int64)


def split_dataset(name: str, images: torch.Tensor, labels: torch.Tensor, num_classes: int | None,
                  test_fraction: float, seed: int, class_names: tuple[str, ...] | None = None) -> ImageDataset:
    """Build an :class:`ImageDataset` from one pool of images by :func:`stratified_split`.

    Args:
        name: the data set's name.
        images: ``(N, C, H, W)`` float32 images in [-1, 1].
        labels: ``(N,)`` int64 labels (all :data:`UNLABELLED` when ``num_classes`` is None).
        num_classes: number of classes, or None.
        test_fraction: fraction of each class held out.
        seed: seed of the split.
        class_names: optional class names.

    Returns:
        The split data set.

    Raises:
        ValueError: naming the data set, when a test split is asked for but it is too small to hold one image.
    """
    train, test = stratified_split(labels.numpy(), test_fraction, seed)
    if len(test) == 0 and test_fraction > 0:
        raise ValueError(f"data set {name!r}: its {len(images)} image(s) leave none for the held-out test split "
                         f"(test fraction {test_fraction}, at least one training image per class); supply more "
                         "images, or a split of your own (x_train and x_test)")
    train_t, test_t = torch.from_numpy(train), torch.from_numpy(test)
    return ImageDataset(name=name, train_x=images[train_t].contiguous(), train_y=labels[train_t].contiguous(),
                        test_x=images[test_t].contiguous(), test_y=labels[test_t].contiguous(),
                        num_classes=num_classes, class_names=class_names)
