"""Image data sets from a user's NumPy ``.npz`` archive."""

from pathlib import Path

import numpy as np
import torch

from bfr_fast.data.dataset import DEFAULT_SEED, DEFAULT_TEST_FRACTION, ImageDataset, split_dataset, unlabelled
from bfr_fast.data.user_files import ValueRange, images_from_array, labels_from_array, missing_file_error, read_npz

__all__ = ["load_npz"]

_IMAGE_KEYS = ("x", "images")
_LABEL_KEYS = ("y", "labels")
_HOW = ("Write one with numpy.savez(path, x=images, y=labels) (or x_train, y_train, x_test, y_test for a split "
        "of your own) and pass its path.")


def load_npz(path: str | Path, *, name: str = "npz", layout: str = "auto", value_range: ValueRange = "auto",
             test_fraction: float = DEFAULT_TEST_FRACTION, seed: int = DEFAULT_SEED) -> ImageDataset:
    """Load images (and optionally labels) from a ``.npz`` archive written by ``numpy.savez``.

    Accepted keys, one of two forms:

    * a split of your own: ``x_train`` and ``x_test``, with ``y_train`` and ``y_test`` (both or neither);
    * one pool: ``x`` (or ``images``), with ``y`` (or ``labels``) optional; it is split by
      :func:`~bfr_fast.data.dataset.stratified_split` with ``test_fraction`` and ``seed``.

    Image arrays are ``(N, H, W)``, NCHW or NHWC, as uint8 (0..255), floats in [0, 1] or floats in [-1, 1];
    see :func:`~bfr_fast.data.user_files.images_from_array` for how ``layout`` and ``value_range`` decide.
    Labels are non-negative integers, ``num_classes`` is the largest label plus one; an archive without labels
    gives an unlabelled data set (``num_classes=None``). The archive is read with ``allow_pickle=False``.

    Args:
        path: the ``.npz`` file.
        name: the data set's name in logs and reports.
        layout: ``"auto"``, ``"nchw"`` or ``"nhwc"``.
        value_range: ``"auto"`` or ``(low, high)`` of floating-point images.
        test_fraction: fraction of each class held out, for the one-pool form.
        seed: seed of that split.

    Returns:
        The data set.

    Raises:
        FileNotFoundError: if ``path`` does not exist, saying how to write one.
        ValueError: if the keys or arrays are not one of the accepted forms.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise missing_file_error(path, "Image archive (.npz)", _HOW)
    arrays = read_npz(path, _HOW)
    where = f"in {path}"

    if "x_train" in arrays or "x_test" in arrays:
        missing = [key for key in ("x_train", "x_test") if key not in arrays]
        if missing:
            raise ValueError(f"{path}: has {'x_test' if missing == ['x_train'] else 'x_train'} but no "
                             f"{missing[0]}; a split of your own needs both")
        train_x = images_from_array(arrays["x_train"], f"x_train {where}", layout, value_range)
        test_x = images_from_array(arrays["x_test"], f"x_test {where}", layout, value_range)
        if ("y_train" in arrays) != ("y_test" in arrays):
            raise ValueError(f"{path}: give both y_train and y_test, or neither for unlabelled images")
        if "y_train" not in arrays:
            return ImageDataset(name, train_x, unlabelled(len(train_x)), test_x, unlabelled(len(test_x)), None)
        train_y = labels_from_array(arrays["y_train"], f"y_train {where}", len(train_x))
        test_y = labels_from_array(arrays["y_test"], f"y_test {where}", len(test_x))
        num_classes = int(torch.cat([train_y, test_y]).max()) + 1
        return ImageDataset(name, train_x, train_y, test_x, test_y, num_classes)

    image_key = _one_key(arrays, _IMAGE_KEYS, path)
    if image_key is None:
        raise ValueError(f"{path}: expected images under 'x_train' and 'x_test', or 'x' or 'images'; "
                         f"found keys {sorted(arrays)}")
    label_key = _one_key(arrays, _LABEL_KEYS, path)
    images = images_from_array(arrays[image_key], f"{image_key} {where}", layout, value_range)
    if label_key is None:
        return split_dataset(name, images, unlabelled(len(images)), None, test_fraction, seed)
    labels = labels_from_array(arrays[label_key], f"{label_key} {where}", len(images))
    return split_dataset(name, images, labels, int(labels.max()) + 1, test_fraction, seed)


def _one_key(arrays: dict[str, np.ndarray], keys: tuple[str, ...], path: Path) -> str | None:
    present = [key for key in keys if key in arrays]
    if len(present) > 1:
        raise ValueError(f"{path}: holds both {present[0]!r} and {present[1]!r}; keep one")
    return present[0] if present else None
