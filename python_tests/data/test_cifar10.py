import os
import pickle

import numpy as np
import pytest
import torch

from bfr_fast.data import from_uint8, load_cifar10

_BATCHES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


def _write(folder, bytes_keys: bool, skip: str | None = None) -> dict[str, dict]:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    batches = {}
    for name in _BATCHES:
        batch = {"data": rng.integers(0, 256, size=(3, 3072), dtype=np.uint8), "labels": [int(v) for v in
                                                                                           rng.integers(0, 10, 3)]}
        batches[name] = batch
        if name == skip:
            continue
        stored = {key.encode() if bytes_keys else key: value for key, value in batch.items()}
        (folder / name).write_bytes(pickle.dumps(stored, protocol=2))
    names = [f"class{i}" for i in range(10)]
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": names}, protocol=2))
    return batches


@pytest.mark.parametrize("bytes_keys", [False, True])
def test_round_trip_from_parent_folder(tmp_path, bytes_keys):
    batches = _write(tmp_path / "cifar-10-batches-py", bytes_keys)
    data = load_cifar10(tmp_path)
    assert data.train_x.shape == (15, 3, 32, 32) and data.test_x.shape == (3, 3, 32, 32)
    assert data.num_classes == 10 and data.class_names[3] == "class3"
    first = batches["data_batch_1"]["data"][0]
    # A row is the red plane, then green, then blue: channel c, pixel (i, j) is entry 1024 c + 32 i + j.
    assert data.train_x[0, 1, 2, 5] == from_uint8(torch.tensor(first[1024 + 64 + 5]))
    assert torch.equal(data.test_x, from_uint8(torch.from_numpy(batches["test_batch"]["data"])).view(3, 3, 32, 32))
    assert data.train_y[3:6].tolist() == batches["data_batch_2"]["labels"]


def test_loads_the_batches_folder_itself(tmp_path):
    _write(tmp_path / "cifar-10-batches-py", bytes_keys=False)
    assert load_cifar10(tmp_path / "cifar-10-batches-py").train_x.shape[0] == 15


def test_missing_batch_names_it_and_how(tmp_path):
    _write(tmp_path / "cifar-10-batches-py", bytes_keys=False, skip="data_batch_3")
    with pytest.raises(FileNotFoundError) as error:
        load_cifar10(tmp_path)
    assert str(tmp_path / "cifar-10-batches-py" / "data_batch_3") in str(error.value)
    assert "cifar-10-python.tar.gz" in str(error.value)


def test_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="as root"):
        load_cifar10(tmp_path / "absent")


class _Exploit:
    def __reduce__(self):
        return os.system, ("echo pwned",)


def test_refuses_pickles_that_run_code(tmp_path):
    _write(tmp_path / "cifar-10-batches-py", bytes_keys=False)
    (tmp_path / "cifar-10-batches-py" / "data_batch_1").write_bytes(pickle.dumps({"data": _Exploit()}))
    with pytest.raises(ValueError, match="refusing to load .*system"):
        load_cifar10(tmp_path)


def test_rejects_wrong_batch_shape(tmp_path):
    _write(tmp_path / "cifar-10-batches-py", bytes_keys=False)
    bad = {"data": np.zeros((2, 100), np.uint8), "labels": [0, 1]}
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(pickle.dumps(bad, protocol=2))
    with pytest.raises(ValueError, match="3072"):
        load_cifar10(tmp_path)
