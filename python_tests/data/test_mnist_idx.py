import gzip
import struct

import numpy as np
import pytest
import torch

from bfr_fast.data import from_uint8, load_idx_mnist

_STEMS = {"train-images-idx3-ubyte": (12, 28, 28), "train-labels-idx1-ubyte": (12,),
          "t10k-images-idx3-ubyte": (5, 28, 28), "t10k-labels-idx1-ubyte": (5,)}


def _idx_bytes(array: np.ndarray) -> bytes:
    return bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def _write(root, compress: bool, skip: str | None = None) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    arrays = {}
    for stem, shape in _STEMS.items():
        high = 10 if "labels" in stem else 256
        arrays[stem] = rng.integers(0, high, size=shape, dtype=np.uint8)
        if stem == skip:
            continue
        raw = _idx_bytes(arrays[stem])
        if compress:
            (root / f"{stem}.gz").write_bytes(gzip.compress(raw))
        else:
            (root / stem).write_bytes(raw)
    return arrays


@pytest.mark.parametrize("compress", [False, True])
def test_round_trip(tmp_path, compress):
    arrays = _write(tmp_path, compress)
    data = load_idx_mnist(tmp_path)
    assert data.name == "mnist" and data.train_x.shape == (12, 1, 28, 28) and data.test_x.shape == (5, 1, 28, 28)
    assert torch.equal(data.train_x[:, 0], from_uint8(torch.from_numpy(arrays["train-images-idx3-ubyte"])))
    assert data.test_y.tolist() == arrays["t10k-labels-idx1-ubyte"].tolist()
    assert data.num_classes == int(max(arrays["train-labels-idx1-ubyte"].max(),
                                       arrays["t10k-labels-idx1-ubyte"].max())) + 1


def test_missing_file_names_it_and_how(tmp_path):
    _write(tmp_path, compress=True, skip="t10k-labels-idx1-ubyte")
    with pytest.raises(FileNotFoundError) as error:
        load_idx_mnist(tmp_path)
    message = str(error.value)
    assert str(tmp_path / "t10k-labels-idx1-ubyte") in message and "t10k-labels-idx1-ubyte.gz" in message
    assert "pass that folder as root" in message


def test_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="root"):
        load_idx_mnist(tmp_path / "absent")


def test_rejects_bad_header_and_short_data(tmp_path):
    _write(tmp_path, compress=False)
    path = tmp_path / "train-images-idx3-ubyte"
    raw = path.read_bytes()
    path.write_bytes(b"\x00\x00\x0d\x03" + raw[4:])  # type 0x0D: float, not unsigned bytes
    with pytest.raises(ValueError, match="unsigned-byte IDX"):
        load_idx_mnist(tmp_path)
    path.write_bytes(raw[:-1])
    with pytest.raises(ValueError, match="bytes follow"):
        load_idx_mnist(tmp_path)


@pytest.mark.parametrize("damage", ["truncated", "not-gzip"])
def test_a_damaged_gz_file_is_named_with_what_to_do(tmp_path, damage):
    _write(tmp_path, compress=True)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2] if damage == "truncated" else b"<html>not found</html>")
    with pytest.raises(ValueError, match=f"{path}: not a complete gzip file .*download it again"):
        load_idx_mnist(tmp_path)


def test_rejects_count_mismatch(tmp_path):
    _write(tmp_path, compress=False)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(_idx_bytes(np.zeros(4, np.uint8)))
    with pytest.raises(ValueError, match="do not match"):
        load_idx_mnist(tmp_path)
