"""What the loaders of user-supplied files share: locating files and turning arrays into library images.

Nothing is ever downloaded: a missing file raises :class:`FileNotFoundError` whose message names the path that
was looked for and says where the file comes from and how to hand it to the library.
"""

import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch

from bfr_fast.checks import choice
from bfr_fast.data.conversion import from_uint8

__all__ = ["find_file", "images_from_array", "labels_from_array", "missing_file_error", "read_npz"]

ValueRange = str | tuple[float, float]


def missing_file_error(path: Path, what: str, how: str) -> FileNotFoundError:
    """A :class:`FileNotFoundError` naming the missing ``path``, what it should hold, and how to supply it."""
    return FileNotFoundError(f"{what} not found: {path}. {how}")


def read_npz(path: Path, how: str) -> dict[str, np.ndarray]:
    """Every array of a ``.npz`` archive (``allow_pickle=False``), or one ValueError naming the file.

    Args:
        path: the archive.
        how: what the user should do about a damaged file (write one, delete a cache, ...), ending the message.

    Raises:
        ValueError: the file is truncated or damaged, a ``.npy`` array, or of another format.
    """
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, EOFError, zipfile.BadZipFile, ValueError):
        # NumPy tries zip, then .npy, then pickle; its last word, "pickled data: pass allow_pickle=", is unsafe
        # advice for what is a truncated archive or a file of another format.
        raise ValueError(f"{path}: not a readable .npz archive (damaged, truncated, or another format). {how}") \
            from None
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise ValueError(f"{path}: a single .npy array, not a .npz archive. {how}")
    with loaded as archive:
        try:
            return {key: archive[key] for key in archive.files}
        except (OSError, EOFError, zipfile.BadZipFile, zlib.error, ValueError) as error:
            raise ValueError(f"{path}: an array in the archive cannot be read ({error}); the file is damaged. "
                             f"{how}") from None


def find_file(folder: Path, names: tuple[str, ...], what: str, how: str) -> Path:
    """The first of ``names`` that exists in ``folder``.

    Raises:
        FileNotFoundError: naming every path tried, ``what`` was sought, and ``how`` to supply it.
    """
    for name in names:
        if (folder / name).is_file():
            return folder / name
    tried = " or ".join(str(folder / name) for name in names)
    raise missing_file_error(Path(tried), what, how)


def images_from_array(array: np.ndarray, name: str, layout: str = "auto",
                      value_range: ValueRange = "auto") -> torch.Tensor:
    r"""Turn a user's image array into float32 NCHW images in [-1, 1].

    Layout: a 3-D array is ``(N, H, W)``, one channel. A 4-D array is ``"nchw"`` or ``"nhwc"``; with
    ``layout="auto"`` the channel axis is whichever of axis 1 and axis 3 has size 1 or 3, and an array where
    both or neither do (e.g. ``(N, 3, 3, 3)`` or 4 channels) must say its layout.

    Values: integer arrays are 8-bit pixels and must lie in 0..255 (mapped by :math:`v / 127.5 - 1`).
    Floating arrays with ``value_range="auto"`` must lie in [0, 1] (no negative value: mapped by
    :math:`2v - 1`) or in [-1, 1] (some negative value: kept); anything else, e.g. floats in 0..255, must
    state its range as ``value_range=(low, high)``, mapped linearly onto [-1, 1].

    Args:
        array: the images.
        name: what the array is called in error messages (e.g. ``"x_train in data.npz"``).
        layout: ``"auto"``, ``"nchw"`` or ``"nhwc"``.
        value_range: ``"auto"`` or ``(low, high)``.

    Returns:
        ``(N, C, H, W)`` float32 images in [-1, 1].

    Raises:
        ValueError: naming ``name`` and what was expected, for any other shape, dtype or range.
    """
    array = np.asarray(array)
    choice("layout", layout, ("auto", "nchw", "nhwc"))
    if array.ndim == 3:
        array = array[:, None]
    elif array.ndim == 4:
        if layout == "auto":
            first, last = array.shape[1] in (1, 3), array.shape[3] in (1, 3)
            if first == last:
                raise ValueError(f"{name}: cannot tell the channel axis of shape {array.shape}; "
                                 "pass layout='nchw' or layout='nhwc'")
            layout = "nchw" if first else "nhwc"
        if layout == "nhwc":
            array = array.transpose(0, 3, 1, 2)
    else:
        raise ValueError(f"{name}: expected images of shape (N, H, W), (N, C, H, W) or (N, H, W, C), "
                         f"got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{name}: expected at least one non-empty image, got shape {array.shape}")
    array = np.ascontiguousarray(array)
    if np.issubdtype(array.dtype, np.integer):
        if value_range != "auto":
            raise ValueError(f"value_range: only floating-point arrays take a range; {name} is {array.dtype}, "
                             "read as 8-bit pixels 0..255")
        lowest, highest = int(array.min()), int(array.max())
        if lowest < 0 or highest > 255:
            raise ValueError(f"{name}: expected integer pixels in 0..255, got range [{lowest}, {highest}]")
        return from_uint8(torch.from_numpy(array.astype(np.uint8)))
    if not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"{name}: expected an integer or floating-point array, got dtype {array.dtype}")
    values = torch.from_numpy(array.astype(np.float32))
    bad = int((~values.isfinite()).sum())
    if bad:  # before the range checks, whose advice (value_range) cannot cure a NaN
        raise ValueError(f"{name}: {bad} values are NaN or inf; images must be finite (fix or drop those images)")
    low, high = float(values.min()), float(values.max())
    if value_range == "auto":
        if 0.0 <= low and high <= 1.0:
            return values.mul_(2.0).sub_(1.0)
        if -1.0 <= low and high <= 1.0:
            return values
        # Advice about the file: the CLIs that read it have no value_range (Python callers find it documented)
        raise ValueError(f"{name}: floating-point values in [{low:g}, {high:g}] are neither in [0, 1] nor in "
                         "[-1, 1]; rescale the images to [0, 1] or [-1, 1] (floats in 0..255: divide by 255), or "
                         "store them as uint8 pixels 0..255")
    if not (isinstance(value_range, tuple) and len(value_range) == 2 and value_range[0] < value_range[1]):
        raise ValueError(f"value_range: expected 'auto' or a pair (low, high) with low < high, got {value_range!r}")
    range_low, range_high = float(value_range[0]), float(value_range[1])
    if not (range_low <= low and high <= range_high):
        raise ValueError(f"{name}: values in [{low}, {high}] fall outside value_range={value_range}")
    return values.sub_(range_low).mul_(2.0 / (range_high - range_low)).sub_(1.0).clamp_(-1.0, 1.0)


def labels_from_array(array: np.ndarray, name: str, count: int) -> torch.Tensor:
    """Check a user's label array (``count`` non-negative integers) and return it as an int64 tensor.

    Raises:
        ValueError: naming ``name`` and what was expected.
    """
    array = np.asarray(array)
    if array.shape != (count,) or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{name}: expected {count} integer labels of shape ({count},), "
                         f"got dtype {array.dtype} and shape {array.shape}")
    if count and int(array.min()) < 0:
        raise ValueError(f"{name}: expected non-negative class labels, found {int(array.min())}")
    return torch.from_numpy(array.astype(np.int64))
