import numpy as np
import pytest
import torch

from bfr_fast.data import DATASET_DESCRIPTIONS, DATASETS, load_dataset


def test_names():
    assert DATASETS == ("digits", "mnist5k", "mnist", "cifar10", "folder", "npz")
    assert set(DATASET_DESCRIPTIONS) == set(DATASETS)


def test_unknown_name_lists_valid_ones():
    with pytest.raises(ValueError) as error:
        load_dataset("imagenet")
    assert "imagenet" in str(error.value) and all(name in str(error.value) for name in DATASETS)


@pytest.mark.parametrize("name", ["mnist", "cifar10", "folder", "npz"])
def test_user_data_sets_need_root(name):
    with pytest.raises(ValueError, match="needs root"):
        load_dataset(name)


def test_embedded_data_sets_take_no_root(tmp_path):
    with pytest.raises(ValueError, match="takes no root"):
        load_dataset("digits", root=tmp_path)


def test_dispatches_with_options(tmp_path, digits_data):
    np.savez(tmp_path / "d.npz", x=np.zeros((10, 1, 2, 2), np.uint8), y=np.arange(10) % 2)
    data = load_dataset("npz", str(tmp_path / "d.npz"), name="mine", test_fraction=0.4)
    assert data.name == "mine" and len(data.test_x) == 4
    assert torch.equal(load_dataset("digits").test_y, digits_data.test_y)


def test_missing_user_file_propagates(tmp_path):
    with pytest.raises(FileNotFoundError, match="mnist"):
        load_dataset("mnist", tmp_path / "mnist")


def test_validation_data_set_is_carved_from_training_data_only():
    full = load_dataset("digits")
    val = load_dataset("digits-val")
    assert val.name == "digits-val" and val.num_classes == full.num_classes
    assert val.train_x.shape[0] + val.test_x.shape[0] == full.train_x.shape[0]
    rows = {tuple(x.flatten().tolist()) for x in full.train_x}
    test_rows = {tuple(x.flatten().tolist()) for x in full.test_x} - rows  # digits has a few duplicate images
    carved = [tuple(x.flatten().tolist()) for x in torch.cat([val.train_x, val.test_x])]
    assert set(carved) <= rows and not set(carved) & test_rows  # never a test image
    assert sorted(carved) == sorted(tuple(x.flatten().tolist()) for x in full.train_x)  # all of train, once
    counts = val.class_counts("test").float() / full.class_counts("train").float()
    assert torch.all((counts - 0.2).abs() < 0.02)  # stratified, 20% of each class
    assert torch.equal(load_dataset("digits-val").test_x, val.test_x)  # the same carve every time
    with pytest.raises(ValueError, match="-val"):
        load_dataset("nope-val")
