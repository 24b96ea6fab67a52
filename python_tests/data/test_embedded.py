import numpy as np
import pytest
import torch

from bfr_fast.data import digits


def _rows(images: torch.Tensor) -> set[bytes]:
    return {row.numpy().tobytes() for row in images.flatten(1)}


@pytest.mark.parametrize(("fixture", "shape", "train", "test"), [
    ("digits_data", (1, 8, 8), 1438, 359),
    ("mnist5k_data", (1, 28, 28), 4000, 1000),
])
def test_shapes_dtypes_ranges(request, fixture, shape, train, test):
    data = request.getfixturevalue(fixture)
    assert data.image_shape == shape and data.num_classes == 10
    assert data.train_x.shape == (train, *shape) and data.test_x.shape == (test, *shape)
    assert data.train_x.dtype == torch.float32 and data.train_y.dtype == torch.int64
    for images in (data.train_x, data.test_x):
        assert images.min() == -1.0 and images.max() == 1.0


def test_digits_values_are_the_sixteen_levels(digits_data):
    levels = torch.unique((digits_data.train_x + 1) * 8)
    assert torch.equal(levels, torch.arange(17, dtype=torch.float32))


def test_mnist5k_values_are_pixel_levels(mnist5k_data):
    levels = (mnist5k_data.test_x + 1) * 127.5
    assert torch.allclose(levels, levels.round(), atol=1e-4)


def test_split_is_stratified(digits_data, mnist5k_data):
    assert mnist5k_data.class_counts("test").tolist() == [100] * 10
    assert mnist5k_data.class_counts("train").tolist() == [400] * 10
    whole = digits_data.class_counts("train") + digits_data.class_counts("test")
    fraction = digits_data.class_counts("test") / whole
    assert ((fraction - 0.2).abs() <= 0.5 / whole).all()  # each class within rounding of 20 %


@pytest.mark.parametrize("fixture", ["digits_data", "mnist5k_data"])
def test_train_and_test_are_disjoint_and_cover_the_data(request, fixture):
    data = request.getfixturevalue(fixture)
    train, test = _rows(data.train_x), _rows(data.test_x)
    assert len(train) == len(data.train_x) and len(test) == len(data.test_x)  # every image is distinct
    assert not train & test


def test_split_is_deterministic_and_pinned(digits_data):
    again = digits()
    assert torch.equal(again.test_x, digits_data.test_x) and torch.equal(again.train_y, digits_data.train_y)
    # Pinned so an accidental change of the split (which would move every metric) fails here.
    assert digits_data.test_y[:12].tolist() == [6, 3, 2, 4, 0, 1, 8, 5, 7, 6, 6, 8]
    assert float(digits_data.test_x.double().sum()) == -9043.375


def test_split_options():
    other = digits(test_fraction=0.5, seed=1)
    assert len(other.test_x) in range(890, 910)
    assert not np.array_equal(other.test_y[:20].numpy(), digits(test_fraction=0.5).test_y[:20].numpy())
