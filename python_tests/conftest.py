"""Fixtures shared across test folders: a short alanine dipeptide MD run (about a second on the Reference
platform), for the molecular data, metric and report tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from bfr_fast.data.molecules import ReferenceMD, generate_reference_md, load_reference_md

SHORT_MD = dict(nanoseconds=0.01, frames=50, temperature=300.0, seed=7, equilibration_ps=1.0, progress=False)
"""10 ps, a frame every 0.2 ps: enough for distinct, physical conformations; far too short for basins."""


@pytest.fixture(scope="session")
def short_md_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_reference_md(tmp_path_factory.mktemp("short_md") / "ala2.npz", **SHORT_MD)


@pytest.fixture(scope="session")
def short_md(short_md_path: Path) -> ReferenceMD:
    return load_reference_md(short_md_path)
