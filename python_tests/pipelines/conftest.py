"""Fixtures of the pipeline tests."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest


@pytest.fixture()
def memorized(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """``memorized.py`` (exact generators at no training cost), importable as ``memorized:Flow`` by the CLIs."""
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    import memorized  # noqa: PLC0415 - on the path just above

    return memorized
