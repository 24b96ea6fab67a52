"""The classifier extractor: accuracy, outputs, seeding, and its on-disk cache."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bfr_fast.data import ImageDataset
from bfr_fast.metrics import ClassifierExtractor, train_classifier
from bfr_fast.metrics.classifier import data_fingerprint


def _small(data: ImageDataset, n: int = 200) -> tuple[torch.Tensor, ...]:
    return data.train_x[:n], data.train_y[:n], data.test_x[:100], data.test_y[:100]


def test_digits_classifier_is_accurate(digitsnet: ClassifierExtractor, digits_data: ImageDataset) -> None:
    assert digitsnet.name == "digitsnet"
    assert digitsnet.trained_now
    assert digitsnet.test_accuracy > 0.95
    # The recorded accuracy is the accuracy of the extractor's own logits.
    predicted = torch.from_numpy(digitsnet.logits(digits_data.test_x).argmax(axis=1))
    assert (predicted == digits_data.test_y).float().mean().item() == pytest.approx(digitsnet.test_accuracy)


def test_output_shapes_and_batch_independence(digitsnet: ClassifierExtractor, digits_data: ImageDataset) -> None:
    images = digits_data.test_x[:50]
    full = digitsnet.extract(images)
    assert full.features.shape == (50, digitsnet.net.feature_dim)
    assert full.logits is not None and full.logits.shape == (50, 10)
    assert full.spatial is not None and full.spatial.shape == (50, 7 * 4 * 4)
    small_batches = ClassifierExtractor(digitsnet.net, digitsnet.name, digitsnet.metadata, batch_size=7)
    again = small_batches.extract(images)
    torch.testing.assert_close(again.features, full.features, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(again.spatial, full.spatial, rtol=1e-5, atol=1e-5)


def test_spatial_features_stay_bounded_for_larger_images() -> None:
    from bfr_fast.metrics import ClassifierNet

    net = ClassifierNet(3, 10, (32, 32))
    pooled, logits, spatial = net.forward_all(torch.zeros(2, 3, 32, 32))
    assert pooled.shape == (2, 64) and logits.shape == (2, 10)
    assert spatial.shape == (2, net.spatial_dim) == (2, 7 * 7 * 7)


def test_wrong_image_shape_is_rejected(digitsnet: ClassifierExtractor) -> None:
    with pytest.raises(ValueError, match="images must have shape"):
        digitsnet.features(torch.zeros(3, 1, 28, 28))
    with pytest.raises(ValueError, match="NaN"):
        digitsnet.features(torch.full((3, 1, 8, 8), float("nan")))


def test_training_is_seeded_and_leaves_global_rng_alone(digits_data: ImageDataset) -> None:
    state = torch.random.get_rng_state()
    first = train_classifier(*_small(digits_data), steps=5, seed=3)
    assert torch.equal(torch.random.get_rng_state(), state)
    second = train_classifier(*_small(digits_data), steps=5, seed=3)
    other = train_classifier(*_small(digits_data), steps=5, seed=4)
    for key, value in first.net.state_dict().items():
        assert torch.equal(value, second.net.state_dict()[key])
    assert not torch.equal(first.net.head.weight, other.net.head.weight)


def test_cache_round_trip_loads_without_training(
    digitsnet: ClassifierExtractor, digits_data: ImageDataset, digits_cache: Path
) -> None:
    data = digits_data
    again = ClassifierExtractor.load_or_train(
        digits_cache, "digits", data.train_x, data.train_y, data.test_x, data.test_y,
        steps=digitsnet.metadata["train"]["steps"],
    )  # fmt: skip
    assert not again.trained_now
    assert again.metadata == digitsnet.metadata
    for key, value in digitsnet.net.state_dict().items():
        assert torch.equal(value.cpu(), again.net.state_dict()[key].cpu())
    payload = torch.load(digits_cache / "digitsnet.pt", weights_only=True)
    assert payload["metadata"]["test_accuracy"] == digitsnet.test_accuracy
    assert [p.name for p in digits_cache.iterdir()] == ["digitsnet.pt"]  # no temp file left behind


# A handful of steps trains nothing useful; the low-accuracy warning that follows is expected.
TINY = pytest.mark.filterwarnings("ignore:tinynet reaches only")


@TINY
@pytest.mark.parametrize("change", ["data", "labels", "steps"])
def test_changed_fingerprint_retrains(digits_data: ImageDataset, tmp_path: Path, change: str) -> None:
    train_x, train_y, test_x, test_y = _small(digits_data)
    first = ClassifierExtractor.load_or_train(tmp_path, "tiny", train_x, train_y, test_x, test_y, steps=5)
    assert first.trained_now
    steps = 5
    if change == "data":
        train_x = train_x.clone()
        train_x[0, 0, 0, 0] += 0.5
    elif change == "labels":
        test_y = test_y.clone()
        test_y[0] = (test_y[0] + 1) % 10
    else:
        steps = 6
    second = ClassifierExtractor.load_or_train(tmp_path, "tiny", train_x, train_y, test_x, test_y, steps=steps)
    assert second.trained_now
    assert second.metadata["fingerprint"] != first.metadata["fingerprint"]
    third = ClassifierExtractor.load_or_train(tmp_path, "tiny", train_x, train_y, test_x, test_y, steps=steps)
    assert not third.trained_now


def test_weak_classifier_warns(digits_data: ImageDataset, tmp_path: Path) -> None:
    with pytest.warns(UserWarning, match="tinynet reaches only"):
        ClassifierExtractor.load_or_train(tmp_path, "tiny", *_small(digits_data), steps=2)


@TINY
def test_damaged_cache_is_rebuilt(digits_data: ImageDataset, tmp_path: Path) -> None:
    (tmp_path / "tinynet.pt").write_bytes(b"not a checkpoint")
    with pytest.warns(UserWarning, match="cannot read the classifier cache"):
        extractor = ClassifierExtractor.load_or_train(tmp_path, "tiny", *_small(digits_data), steps=5)
    assert extractor.trained_now
    assert not ClassifierExtractor.load_or_train(tmp_path, "tiny", *_small(digits_data), steps=5).trained_now


def test_fingerprint_sees_values_shapes_and_dtypes() -> None:
    x = torch.zeros(4, 2)
    assert data_fingerprint(x) == data_fingerprint(x.clone())
    assert data_fingerprint(x) != data_fingerprint(x.reshape(2, 4))
    assert data_fingerprint(x) != data_fingerprint(x.double())
    y = x.clone()
    y[3, 1] = 1e-7
    assert data_fingerprint(x) != data_fingerprint(y)


def test_bad_training_inputs_are_rejected(digits_data: ImageDataset, tmp_path: Path) -> None:
    train_x, train_y, test_x, test_y = _small(digits_data)
    with pytest.raises(ValueError, match="train_y"):
        train_classifier(train_x, train_y.float(), test_x, test_y, steps=1)
    with pytest.raises(ValueError, match="one label per image"):
        train_classifier(train_x, train_y[:-1], test_x, test_y, steps=1)
    with pytest.raises(ValueError, match="test_x"):
        train_classifier(train_x, train_y, test_x[:, :, :4, :4], test_y, steps=1)
    with pytest.raises(ValueError, match="num_classes"):
        train_classifier(train_x, train_y, test_x, test_y, steps=1, num_classes=5)
    with pytest.raises(ValueError, match="dataset_name"):
        ClassifierExtractor.load_or_train(tmp_path, "../evil", train_x, train_y, test_x, test_y, steps=1)
