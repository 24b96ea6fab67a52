import numpy as np
import pytest
import torch
from PIL import Image

from bfr_fast.data import from_uint8, load_image_folder


def _save(path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _gray(seed: int, size=(6, 5)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=size, dtype=np.uint8)


def test_class_subfolders_give_sorted_labels(tmp_path):
    pixels = {}
    for class_index, class_name in enumerate(["cat", "dog", "emu"]):
        for i in range(5):
            pixels[(class_index, i)] = _gray(10 * class_index + i)
            _save(tmp_path / class_name / f"{i}.png", pixels[(class_index, i)])
    (tmp_path / "dog" / "notes.txt").write_text("ignored")
    (tmp_path / ".cache").mkdir()  # hidden entries are not classes
    data = load_image_folder(tmp_path, test_fraction=0.2)
    assert data.num_classes == 3 and data.class_names == ("cat", "dog", "emu")
    assert data.image_shape == (1, 6, 5) and len(data.train_x) == 12
    assert data.class_counts("test").tolist() == [1, 1, 1]
    for image, label in zip(data.test_x, data.test_y):
        assert any(torch.equal(image[0], from_uint8(torch.from_numpy(pixels[(int(label), i)]))) for i in range(5))


def test_flat_rgb_folder_is_unlabelled(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, size=(4, 5, 3), dtype=np.uint8)
    _save(tmp_path / "a.PNG", rgb)
    _save(tmp_path / "b.bmp", rgb[::-1].copy())
    _save(tmp_path / "c.png", _gray(1, (4, 5)))  # a grayscale image among RGB ones becomes RGB
    data = load_image_folder(tmp_path, test_fraction=0.34)
    assert not data.is_labelled and data.image_shape == (3, 4, 5)
    assert len(data.train_x) == 2 and len(data.test_x) == 1
    everything = torch.cat([data.train_x, data.test_x])
    assert any(torch.equal(image, from_uint8(torch.from_numpy(rgb).permute(2, 0, 1))) for image in everything)


def test_channels_override_and_resize(tmp_path):
    _save(tmp_path / "wide.png", np.full((10, 20, 3), 200, np.uint8))
    _save(tmp_path / "tall.png", np.full((30, 12, 3), 100, np.uint8))
    with pytest.raises(ValueError, match="pass image_size"):
        load_image_folder(tmp_path)
    data = load_image_folder(tmp_path, image_size=8, channels=1, test_fraction=0.0)
    assert data.train_x.shape == (2, 1, 8, 8) and len(data.test_x) == 0
    assert sorted(torch.unique(data.train_x).tolist()) == pytest.approx([100 / 127.5 - 1, 200 / 127.5 - 1])


@pytest.mark.parametrize(("kwargs", "name"), [(dict(image_size=0), "image_size"), (dict(channels=2), "channels")])
def test_rejects_bad_options(tmp_path, kwargs, name):
    _save(tmp_path / "a.png", _gray(0))
    with pytest.raises(ValueError, match=name):
        load_image_folder(tmp_path, **kwargs)


def test_rejects_mixed_layout_and_empty_class(tmp_path):
    _save(tmp_path / "a.png", _gray(0))
    _save(tmp_path / "ones" / "b.png", _gray(1))
    with pytest.raises(ValueError, match="both image files and subfolders"):
        load_image_folder(tmp_path)
    (tmp_path / "a.png").unlink()
    (tmp_path / "twos").mkdir()
    with pytest.raises(ValueError, match="twos"):
        load_image_folder(tmp_path)


def test_rejects_unreadable_image(tmp_path):
    _save(tmp_path / "a.png", _gray(0))
    (tmp_path / "b.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="b.png"):
        load_image_folder(tmp_path)


def test_missing_or_empty_folder_says_how(tmp_path):
    with pytest.raises(FileNotFoundError) as error:
        load_image_folder(tmp_path / "absent")
    assert str(tmp_path / "absent") in str(error.value) and "as root" in str(error.value)
    with pytest.raises(FileNotFoundError, match="Image files not found"):
        load_image_folder(tmp_path)
