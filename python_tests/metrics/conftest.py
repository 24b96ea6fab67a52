"""Shared fixtures of the image-metric tests: the digits data set and a classifier trained on it once."""

from __future__ import annotations

from pathlib import Path

import pytest

from bfr_fast.data import ImageDataset, digits
from bfr_fast.metrics import ClassifierExtractor

# Enough for > 98 % test accuracy on digits in a few seconds; the library default (1000) is for real use.
TEST_STEPS = 300


@pytest.fixture(scope="session")
def digits_data() -> ImageDataset:
    return digits()


@pytest.fixture(scope="session")
def digits_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("classifier_cache")


@pytest.fixture(scope="session")
def digitsnet(digits_data: ImageDataset, digits_cache: Path) -> ClassifierExtractor:
    """The digits classifier, trained in this session and cached in ``digits_cache``."""
    data = digits_data
    return ClassifierExtractor.load_or_train(
        digits_cache, "digits", data.train_x, data.train_y, data.test_x, data.test_y, steps=TEST_STEPS
    )
