"""Fixtures of the recipe tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def extractor_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache folder for the recipes' feature extractor, so the digits classifier is trained once per session."""
    return tmp_path_factory.mktemp("extractor_cache")
