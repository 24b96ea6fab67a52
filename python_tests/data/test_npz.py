import numpy as np
import pytest
import torch

from bfr_fast.data import from_uint8, load_npz


def _pixels(shape, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


def test_uint8_nhwc_with_labels(tmp_path):
    pixels = _pixels((20, 5, 6, 3))
    labels = np.arange(20) % 4
    np.savez(tmp_path / "d.npz", x=pixels, y=labels)
    data = load_npz(tmp_path / "d.npz", test_fraction=0.25, seed=0)
    assert data.image_shape == (3, 5, 6) and data.num_classes == 4
    assert data.class_counts("test").tolist() == [1, 1, 1, 1]
    # Every image arrives exactly, transposed to CHW, with its own label.
    expected = from_uint8(torch.from_numpy(pixels).permute(0, 3, 1, 2))
    for images, targets in ((data.train_x, data.train_y), (data.test_x, data.test_y)):
        for image, label in zip(images, targets):
            index = int(np.flatnonzero((expected == image).flatten(1).all(1))[0])
            assert labels[index] == label


@pytest.mark.parametrize(("scale", "value_range"), [((0.0, 1.0), "auto"), ((-1.0, 1.0), "auto"),
                                                     ((0.0, 255.0), (0, 255))])
def test_float_ranges_nchw(tmp_path, scale, value_range):
    unit = np.linspace(0, 1, 2 * 3 * 4 * 4, dtype=np.float32).reshape(2, 3, 4, 4)
    low, high = scale
    np.savez(tmp_path / "d.npz", x_train=low + (high - low) * unit, x_test=low + (high - low) * unit[:1])
    data = load_npz(tmp_path / "d.npz", value_range=value_range)
    assert not data.is_labelled and data.train_x.shape == (2, 3, 4, 4) and data.test_x.shape == (1, 3, 4, 4)
    assert torch.allclose(data.train_x, torch.from_numpy(2 * unit - 1), atol=1e-6)


def test_grayscale_three_d_and_presplit_labels(tmp_path):
    np.savez(tmp_path / "d.npz", x_train=_pixels((4, 7, 7)), y_train=np.array([0, 1, 2, 0]),
             x_test=_pixels((2, 7, 7), 1), y_test=np.array([5, 1]))
    data = load_npz(tmp_path / "d.npz")
    assert data.image_shape == (1, 7, 7) and data.num_classes == 6
    assert data.test_y.tolist() == [5, 1]


def test_explicit_layout_resolves_ambiguity(tmp_path):
    np.savez(tmp_path / "d.npz", images=_pixels((10, 3, 3, 3)))
    with pytest.raises(ValueError, match="layout"):
        load_npz(tmp_path / "d.npz")
    assert load_npz(tmp_path / "d.npz", layout="nhwc").image_shape == (3, 3, 3)


@pytest.mark.parametrize(("arrays", "message"), [
    (dict(x=np.full((4, 1, 2, 2), 200.0)), r"are neither in \[0, 1\] nor in \[-1, 1\]; rescale the images"),
    (dict(x=np.full((4, 1, 2, 2), 300)), "0..255"),
    (dict(images=np.zeros((4, 2, 2, 2))), "layout"),
    (dict(x=np.zeros((4, 2, 2, 2, 2))), "shape"),
    (dict(pictures=np.zeros((4, 1, 2, 2))), "found keys \\['pictures'\\]"),
    (dict(x=np.zeros((4, 1, 2, 2)), images=np.zeros((4, 1, 2, 2))), "keep one"),
    (dict(x=np.zeros((4, 1, 2, 2)), y=np.array([0, 1, 2])), "4 integer labels"),
    (dict(x=np.zeros((4, 1, 2, 2)), y=np.array([0, 1, -2, 0])), "non-negative"),
    (dict(x_train=np.zeros((4, 1, 2, 2))), "x_test"),
    (dict(x_train=np.zeros((4, 1, 2, 2)), x_test=np.zeros((1, 1, 2, 2)), y_train=np.zeros(4, int)), "y_test"),
])
def test_rejects_bad_archives(tmp_path, arrays, message):
    np.savez(tmp_path / "d.npz", **arrays)
    with pytest.raises(ValueError, match=message):
        load_npz(tmp_path / "d.npz")


def test_nan_pixels_are_named_as_such(tmp_path):
    x = np.zeros((4, 1, 2, 2), dtype=np.float32)
    x[1, 0, 0, 0] = np.nan
    np.savez(tmp_path / "d.npz", x=x)
    with pytest.raises(ValueError, match="1 values are NaN or inf") as caught:
        load_npz(tmp_path / "d.npz")
    assert "value_range" not in str(caught.value)


@pytest.mark.parametrize(("damage", "message"), [
    ("truncated", "not a readable .npz archive \\(damaged, truncated, or another format\\)"),
    ("garbage", "not a readable .npz archive"),
    ("npy", "a single .npy array, not a .npz archive"),
])
def test_a_file_that_is_no_npz_archive_is_named_with_what_to_do(tmp_path, damage, message):
    path = tmp_path / "d.npz"
    np.savez(path, x=np.zeros((40, 1, 8, 8), dtype=np.uint8))
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:300])
    elif damage == "garbage":
        path.write_bytes(b"not numpy at all\n" * 20)
    else:
        with open(path, "wb") as f:  # np.save would append .npy to the name
            np.save(f, np.zeros((40, 1, 8, 8), dtype=np.uint8))
    with pytest.raises(ValueError, match=message) as caught:
        load_npz(path)
    assert str(path) in str(caught.value) and "numpy.savez" in str(caught.value)
    assert "allow_pickle" not in str(caught.value)


def test_a_data_set_too_small_to_split_names_itself(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.zeros((1, 1, 8, 8), dtype=np.uint8), y=np.zeros(1, dtype=np.int64))
    with pytest.raises(ValueError, match="data set 'npz': its 1 image\\(s\\) leave none for the held-out test"):
        load_npz(tmp_path / "d.npz")


def test_explicit_range_must_contain_values(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.full((4, 1, 2, 2), 2.0))
    with pytest.raises(ValueError, match="outside value_range"):
        load_npz(tmp_path / "d.npz", value_range=(0.0, 1.0))


def test_missing_file_names_path_and_how(tmp_path):
    missing = tmp_path / "nowhere" / "data.npz"
    with pytest.raises(FileNotFoundError) as error:
        load_npz(missing)
    assert str(missing) in str(error.value) and "numpy.savez" in str(error.value)
