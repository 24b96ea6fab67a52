"""MNIST (or Fashion-MNIST) from the user's IDX files, the format of the original distribution."""

import gzip
import zlib
from pathlib import Path

import numpy as np
import torch

from bfr_fast.data.conversion import from_uint8
from bfr_fast.data.dataset import ImageDataset
from bfr_fast.data.user_files import find_file, missing_file_error

__all__ = ["load_idx_mnist", "read_idx"]

_FILES = {
    "train_x": "train-images-idx3-ubyte",
    "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte",
    "test_y": "t10k-labels-idx1-ubyte",
}
_HOW = ("Put the four MNIST IDX files (train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, "
        "t10k-labels-idx1-ubyte, each plain or .gz, e.g. from the MNIST or Fashion-MNIST distribution) in one "
        "folder and pass that folder as root.")
_UNSIGNED_BYTE = 0x08


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file of unsigned bytes (``.gz`` compressed or plain).

    The format: two zero bytes, a type byte (0x08 for unsigned bytes, the only type MNIST uses), the number of
    dimensions d, d big-endian uint32 sizes, then the data in C order.

    Raises:
        ValueError: naming ``path``, if a ``.gz`` file is truncated or damaged, the header is not an unsigned-byte
            IDX header, or the data is short or long.
    """
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (EOFError, gzip.BadGzipFile, zlib.error) as error:  # an interrupted download, most often
        raise ValueError(f"{path}: not a complete gzip file ({error}); download it again") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != _UNSIGNED_BYTE:
        raise ValueError(f"{path}: not an unsigned-byte IDX file (header {raw[:4].hex()}, expected 000008..)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: truncated IDX header ({len(raw)} bytes, expected at least {header})")
    shape = tuple(int(size) for size in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    if len(raw) - header != int(np.prod(shape)):
        raise ValueError(f"{path}: header says shape {shape} ({int(np.prod(shape))} bytes), "
                         f"but {len(raw) - header} bytes follow it")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def load_idx_mnist(root: str | Path, *, name: str = "mnist") -> ImageDataset:
    r"""Load MNIST-format IDX files from ``root``, keeping their own train/test split.

    Looks for ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte`` and
    ``t10k-labels-idx1-ubyte``, each either plain or with ``.gz``. Fashion-MNIST ships in the same format and
    loads the same way. Pixels map by :math:`v / 127.5 - 1`; ``num_classes`` is the largest label plus one
    (10 for MNIST). Full MNIST takes about 200 MB as float32.

    Args:
        root: the folder holding the four files.
        name: the data set's name in logs and reports.

    Returns:
        The data set, images ``(N, 1, H, W)`` (28x28 for MNIST).

    Raises:
        FileNotFoundError: naming the missing folder or file and how to supply it.
        ValueError: if a file is not a valid IDX file, or images and labels disagree in count.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise missing_file_error(root, "MNIST IDX folder", _HOW)
    arrays = {}
    for key, stem in _FILES.items():
        path = find_file(root, (stem, stem + ".gz"), f"MNIST IDX file {stem}", _HOW)
        arrays[key] = read_idx(path)
    splits = {}
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_x"], arrays[f"{split}_y"]
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise ValueError(f"{root}: {split} images of shape {images.shape} do not match labels of shape "
                             f"{labels.shape}; expected (N, H, W) images and (N,) labels")
        if split == "train" and len(images) == 0:
            raise ValueError(f"{root}: the training IDX files hold no images")
        splits[split] = (from_uint8(torch.from_numpy(images.copy())).unsqueeze(1),
                         torch.from_numpy(labels.astype(np.int64)))
    num_classes = int(torch.cat([splits["train"][1], splits["test"][1]]).max()) + 1
    return ImageDataset(name, *splits["train"], *splits["test"], num_classes=num_classes)
