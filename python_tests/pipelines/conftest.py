"""Fixtures of the pipeline tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest


@pytest.fixture()
def memorized(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """``memorized.py`` (exact generators at no training cost), importable as ``memorized:Flow`` by the CLIs."""
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    import memorized  # noqa: PLC0415 - on the path just above

    return memorized


@pytest.fixture(scope="module")
def tiny_generators() -> Iterator[ModuleType]:
    """``tiny_generators.py`` (untrained users' generators), importable as ``tiny_generators:<name>`` by the CLIs
    for the whole test module."""
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(Path(__file__).parent))
        import tiny_generators  # noqa: PLC0415 - on the path just above

        yield tiny_generators
