"""Image metrics on features (FD, KID, IS, precision/recall), their labels, and evaluate_images on digits."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from cleanfid import fid as cleanfid

from bfr_fast.data import ImageDataset
from bfr_fast.metrics import (
    ClassifierExtractor,
    evaluate_images,
    frechet_distance,
    inception_score,
    kernel_inception_distance,
    metric_label,
    precision_recall,
)


def _gaussian(n: int, dim: int, seed: int, shift: float = 0.0) -> np.ndarray:
    """Samples of one correlated Gaussian per (dim, shift); ``seed`` picks the samples only."""
    mixing = np.random.default_rng(1234).standard_normal((dim, dim)) / np.sqrt(dim)
    return np.random.default_rng(seed).standard_normal((n, dim)) @ mixing + shift


def test_fd_of_a_set_with_itself_is_zero() -> None:
    feats = _gaussian(500, 16, seed=0)
    assert abs(frechet_distance(feats, feats)) < 1e-8
    assert abs(frechet_distance(torch.from_numpy(feats), feats)) < 1e-8  # tensors are accepted too


def test_fd_equals_clean_fid() -> None:
    a, b = _gaussian(400, 12, seed=1), _gaussian(300, 12, seed=2, shift=0.3)
    expected = cleanfid.frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
    assert frechet_distance(a, b) == pytest.approx(float(expected), rel=1e-9)
    assert frechet_distance(a, b) == pytest.approx(float(cleanfid.fid_from_feats(a, b)), rel=1e-9)


def test_fd_of_a_singular_covariance_product_is_clean_fids_without_a_warning() -> None:
    a, b = _gaussian(100, 8, seed=5), _gaussian(120, 8, seed=6, shift=0.2)
    a[:, 3] = b[:, 3] = 0.0  # a feature that never varies: both covariances, and their product, are singular
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # clean-fid's own sqrtm warns (and its disp= is deprecated)
        expected = cleanfid.frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # scipy's "Matrix is singular" for a number that is right
        assert frechet_distance(a, b) == pytest.approx(float(expected), rel=1e-9)


def test_fd_grows_with_added_noise() -> None:
    feats = _gaussian(1000, 8, seed=3)
    noise = np.random.default_rng(4).standard_normal(feats.shape)
    distances = [frechet_distance(feats, feats + scale * noise) for scale in (0.1, 0.5, 1.0, 2.0)]
    assert all(x < y for x, y in zip(distances, distances[1:]))


def test_fd_rejects_bad_features() -> None:
    with pytest.raises(ValueError, match="same feature dimension"):
        frechet_distance(np.zeros((5, 3)), np.zeros((5, 4)))
    with pytest.raises(ValueError, match="at least 2 rows"):
        frechet_distance(np.zeros((1, 3)), np.zeros((5, 3)))
    with pytest.raises(ValueError, match="2-D"):
        frechet_distance(np.zeros(5), np.zeros((5, 1)))
    with pytest.raises(ValueError, match="NaN"):
        frechet_distance(np.full((5, 3), np.nan), np.zeros((5, 3)))


def test_kid_equals_clean_fid_on_whole_sets() -> None:
    # With one subset as large as both sets, the draws are permutations and MMD² does not depend on them.
    a, b = _gaussian(300, 10, seed=5), _gaussian(300, 10, seed=6, shift=0.2)
    expected = cleanfid.kernel_distance(a, b, num_subsets=1, max_subset_size=300)
    assert kernel_inception_distance(a, b, num_subsets=1, subset_size=300) == pytest.approx(expected, rel=1e-9)


def test_kid_is_near_zero_for_one_distribution_and_positive_for_two() -> None:
    a, b = _gaussian(1000, 16, seed=7), _gaussian(1000, 16, seed=8)
    shifted = _gaussian(1000, 16, seed=9, shift=0.5)
    same = kernel_inception_distance(a, b, num_subsets=20, subset_size=500, seed=0)
    different = kernel_inception_distance(a, shifted, num_subsets=20, subset_size=500, seed=0)
    assert abs(same) < 0.01
    assert different > 0.2
    assert same == kernel_inception_distance(a, b, num_subsets=20, subset_size=500, seed=0)  # seeded


def test_inception_score_bounds() -> None:
    classes, per_class = 10, 20
    confident = 50.0 * np.eye(classes)[np.tile(np.arange(classes), per_class)]
    mean, std = inception_score(confident, splits=4)  # each part of 50 holds every class 5 times
    assert mean == pytest.approx(classes, rel=1e-9)
    assert std == pytest.approx(0.0, abs=1e-9)
    constant = np.tile(np.random.default_rng(0).standard_normal(classes), (100, 1))
    assert inception_score(constant, splits=5)[0] == pytest.approx(1.0, abs=1e-12)
    random_score = inception_score(np.random.default_rng(1).standard_normal((200, classes)), splits=2)[0]
    assert 1.0 < random_score < classes
    with pytest.raises(ValueError, match="splits"):
        inception_score(constant, splits=101)


def test_precision_recall_identical_and_disjoint_sets() -> None:
    feats = _gaussian(300, 8, seed=10)
    assert precision_recall(feats, feats) == (1.0, 1.0)
    far = _gaussian(300, 8, seed=11, shift=100.0)
    assert precision_recall(feats, far) == (0.0, 0.0)


def test_precision_recall_of_a_collapsed_generator() -> None:
    # Real data has two far-apart modes; the generator covers one: high precision, about half the recall.
    rng = np.random.default_rng(12)
    real = np.concatenate([rng.standard_normal((200, 2)) + [50, 0], rng.standard_normal((200, 2)) - [50, 0]])
    fake = rng.standard_normal((200, 2)) + [50, 0]
    precision, recall = precision_recall(real, fake, k=3, batch_size=64)
    assert precision > 0.9
    assert 0.4 < recall <= 0.5


def test_metric_labels_never_call_local_distances_fid() -> None:
    assert metric_label("fd", "inception") == "FID"
    assert metric_label("sfid", "inception") == "sFID"
    assert metric_label("is_std", "inception") == "IS std"
    assert metric_label("fd", "digitsnet") == "FD-digitsnet"
    assert metric_label("kid", "digitsnet") == "KD-digitsnet"
    assert metric_label("sfid", "mnist5knet") == "sFD-mnist5knet"
    assert all("FID" not in metric_label(key, "digitsnet") for key in ("fd", "kid", "is", "is_std", "sfid"))
    with pytest.raises(ValueError, match="key"):
        metric_label("fid", "digitsnet")


def test_evaluate_images_real_digits_beat_noise(digitsnet: ClassifierExtractor, digits_data: ImageDataset) -> None:
    data = digits_data
    reference = digitsnet.extract(data.train_x)
    real = evaluate_images(data.test_x, reference, digitsnet, kid_subsets=10)
    noise = torch.rand(data.test_x.shape, generator=torch.Generator().manual_seed(0)) * 2 - 1
    fake = evaluate_images(noise, reference, digitsnet, kid_subsets=10)

    assert real["extractor"] == "digitsnet"
    assert set(real) == {"extractor", "num_generated", "num_reference", "fd", "kid", "is", "is_std", "sfid",
                         "precision", "recall"}  # fmt: skip
    assert (real["num_generated"], real["num_reference"]) == (data.test_x.shape[0], data.train_x.shape[0])
    assert 20 * real["fd"] < fake["fd"]
    assert 20 * real["sfid"] < fake["sfid"]
    assert real["kid"] < 0.1 * fake["kid"]
    assert real["precision"] > 0.7 and real["recall"] > 0.7
    assert fake["precision"] < 0.3
    assert real["is"] > 7.0 > fake["is"]
    # Images and their precomputed features give the same numbers.
    again = evaluate_images(data.test_x, data.train_x, digitsnet, kid_subsets=10)
    assert again == real


def test_evaluate_images_refuses_features_of_another_extractor(
    digitsnet: ClassifierExtractor, digits_data: ImageDataset
) -> None:
    reference = digitsnet.extract(digits_data.test_x)
    other = ClassifierExtractor(digitsnet.net, "othernet", digitsnet.metadata)
    with pytest.raises(ValueError, match="reference holds features from 'digitsnet'"):
        evaluate_images(digits_data.test_x, reference, other)
