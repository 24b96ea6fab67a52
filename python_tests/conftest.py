"""Settings and fixtures shared across test folders.

Tests run torch on one thread: their tensors are small, where thread start-up dominates, and two-thread OpenMP
degrades by an order of magnitude when another process shares the cores. Also: a short alanine dipeptide MD
run (about a second on the Reference platform), for the molecular data, metric and report tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bfr_fast.data.molecules import ReferenceMD, generate_reference_md, load_reference_md

torch.set_num_threads(1)

SHORT_MD = dict(nanoseconds=0.01, frames=50, temperature=300.0, seed=7, equilibration_ps=1.0, progress=False)
"""10 ps, a frame every 0.2 ps: enough for distinct, physical conformations; far too short for basins."""


@pytest.fixture(scope="session")
def short_md_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_reference_md(tmp_path_factory.mktemp("short_md") / "ala2.npz", **SHORT_MD)


@pytest.fixture(scope="session")
def short_md(short_md_path: Path) -> ReferenceMD:
    return load_reference_md(short_md_path)
