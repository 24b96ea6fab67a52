import numpy as np
import pytest
import torch

from bfr_fast.data import UNLABELLED, ImageDataset, stratified_split


def _dataset(**changes):
    fields = dict(name="toy", train_x=torch.zeros(6, 1, 4, 4), train_y=torch.tensor([0, 1, 2, 0, 1, 2]),
                  test_x=torch.zeros(3, 1, 4, 4), test_y=torch.tensor([0, 1, 1]), num_classes=3)
    return ImageDataset(**{**fields, **changes})


def test_properties():
    data = _dataset()
    assert data.image_shape == (1, 4, 4)
    assert data.is_labelled
    assert data.class_counts().tolist() == [2, 2, 2]
    assert data.class_counts("test").tolist() == [1, 2, 0]
    assert "train=6" in repr(data) and "tensor" not in repr(data)


def test_unlabelled():
    data = _dataset(train_y=torch.full((6,), UNLABELLED), test_y=torch.full((3,), UNLABELLED), num_classes=None)
    assert not data.is_labelled
    with pytest.raises(ValueError, match="unlabelled"):
        data.class_counts()
    with pytest.raises(ValueError, match="UNLABELLED"):
        _dataset(num_classes=None)


@pytest.mark.parametrize(("changes", "field"), [
    (dict(train_x=torch.zeros(6, 1, 4, 4, dtype=torch.float64)), "train_x"),
    (dict(train_x=torch.zeros(6, 16)), "train_x"),
    (dict(test_x=torch.full((3, 1, 4, 4), 1.5)), "test_x"),
    (dict(test_x=torch.full((3, 1, 4, 4), float("nan"))), "test_x"),
    (dict(test_x=torch.zeros(3, 3, 4, 4)), "test_x"),
    (dict(train_y=torch.tensor([0, 1, 2])), "train_y"),
    (dict(train_y=torch.tensor([0, 1, 2, 0, 1, 2], dtype=torch.int32)), "train_y"),
    (dict(test_y=torch.tensor([0, 1, 3])), "test_y"),
    (dict(num_classes=0), "num_classes"),
    (dict(class_names=("a", "b")), "class_names"),
])
def test_rejects_bad_fields(changes, field):
    with pytest.raises(ValueError, match=field):
        _dataset(**changes)


def test_stratified_split_partitions_and_keeps_proportions():
    labels = np.repeat(np.arange(4), [10, 20, 30, 41])
    train, test = stratified_split(labels, 0.2, seed=3)
    assert np.intersect1d(train, test).size == 0
    assert np.array_equal(np.sort(np.concatenate([train, test])), np.arange(len(labels)))
    assert np.bincount(labels[test]).tolist() == [2, 4, 6, 8]  # round(0.2 * 41) = 8
    # Both splits are shuffled across classes, not left in class order.
    assert not np.all(np.diff(labels[train]) >= 0)


def test_stratified_split_is_fixed_by_seed():
    labels = np.arange(100) % 5
    first, again, other = (stratified_split(labels, 0.3, seed) for seed in (0, 0, 1))
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not np.array_equal(first[1], other[1])


def test_stratified_split_keeps_a_training_sample_per_class():
    train, test = stratified_split(np.array([0, 1, 1]), 0.9, seed=0)
    assert sorted(train.tolist()) == [0, 1] or sorted(train.tolist()) == [0, 2]
    assert len(test) == 1


@pytest.mark.parametrize("fraction", [-0.1, 1.0])
def test_stratified_split_rejects_bad_fraction(fraction):
    with pytest.raises(ValueError, match="test_fraction"):
        stratified_split(np.zeros(10, dtype=np.int64), fraction, seed=0)
