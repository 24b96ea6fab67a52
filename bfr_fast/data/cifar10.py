"""CIFAR-10 from the user's copy of the official python version (``cifar-10-batches-py``)."""

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bfr_fast.data.conversion import from_uint8
from bfr_fast.data.dataset import ImageDataset
from bfr_fast.data.user_files import find_file, missing_file_error

__all__ = ["load_cifar10"]

_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
_TEST_BATCH = "test_batch"
_META = "batches.meta"
_FOLDER = "cifar-10-batches-py"
_HOW = ("Unpack cifar-10-python.tar.gz (the python version from https://www.cs.toronto.edu/~kriz/cifar.html) "
        f"and pass the {_FOLDER} folder, or the folder that contains it, as root.")

# The only globals a CIFAR batch pickle needs: numpy arrays and dtypes (NumPy 1 and 2 module paths), and the
# bytes decoder that protocol-2 pickles of arrays use. Anything else (e.g. os.system) is refused, so a
# tampered file cannot run code, in the spirit of torch.load(weights_only=True).
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: a CIFAR batch holds only arrays")
        return super().find_class(module, name)


def _read_batch(path: Path) -> dict[str, Any]:
    # latin1 decodes the Python 2 strings of the official files into str keys and keeps array bytes intact.
    with path.open("rb") as stream:
        try:
            batch = _ArrayUnpickler(stream, encoding="latin1").load()
        except (pickle.UnpicklingError, EOFError, ValueError) as error:
            raise ValueError(f"{path}: not a CIFAR-10 python batch ({error})") from error
    if not isinstance(batch, dict):
        raise ValueError(f"{path}: expected a pickled dict, got {type(batch).__name__}")
    return {key.decode() if isinstance(key, bytes) else key: value for key, value in batch.items()}


def _batch_arrays(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    batch = _read_batch(path)
    if "data" not in batch or "labels" not in batch:
        raise ValueError(f"{path}: expected keys 'data' and 'labels', found {sorted(batch)}")
    data = np.asarray(batch["data"])
    labels = np.asarray(batch["labels"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or labels.shape != (len(data),):
        raise ValueError(f"{path}: expected uint8 data of shape (N, 3072) and N labels, got data "
                         f"{data.dtype} {data.shape} and labels of shape {labels.shape}")
    # Each row is the red plane, then green, then blue, each 32x32 in row-major order: already CHW.
    images = from_uint8(torch.from_numpy(data.reshape(-1, 3, 32, 32).copy()))
    return images, torch.from_numpy(labels.astype(np.int64))


def load_cifar10(root: str | Path, *, name: str = "cifar10") -> ImageDataset:
    """Load CIFAR-10 (50 000 training and 10 000 test images, 3x32x32, 10 classes) with its official split.

    ``root`` is the ``cifar-10-batches-py`` folder (``data_batch_1`` ... ``data_batch_5``, ``test_batch``) or
    the folder that contains it. Class names come from ``batches.meta`` when present. The pickles are read
    with an unpickler that admits only NumPy arrays. The whole set takes about 740 MB as float32.

    Args:
        root: the folder, as above.
        name: the data set's name in logs and reports.

    Returns:
        The data set, images ``(N, 3, 32, 32)``, pixels mapped by ``v / 127.5 - 1``.

    Raises:
        FileNotFoundError: naming the missing folder or batch file and how to supply it.
        ValueError: if a batch is not a CIFAR-10 python batch.
    """
    root = Path(root).expanduser()
    if (root / _FOLDER).is_dir():
        root = root / _FOLDER
    if not root.is_dir():
        raise missing_file_error(root, f"CIFAR-10 folder ({_FOLDER})", _HOW)
    train = [_batch_arrays(find_file(root, (batch,), "CIFAR-10 batch", _HOW)) for batch in _TRAIN_BATCHES]
    test_x, test_y = _batch_arrays(find_file(root, (_TEST_BATCH,), "CIFAR-10 batch", _HOW))
    class_names = None
    if (root / _META).is_file():
        meta = _read_batch(root / _META)
        if "label_names" in meta:
            class_names = tuple(str(label) for label in meta["label_names"])
    return ImageDataset(name, torch.cat([x for x, _ in train]), torch.cat([y for _, y in train]), test_x, test_y,
                        num_classes=10, class_names=class_names)
