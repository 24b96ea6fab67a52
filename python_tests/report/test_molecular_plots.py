"""Molecular figures are written as PNG files and refuse empty input."""

from __future__ import annotations

import numpy as np
import pytest

from bfr_fast.report import plot_energy_histograms, plot_ramachandran

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_energy_histograms(tmp_path):
    rng = np.random.default_rng(0)
    path = plot_energy_histograms({"reference": rng.normal(-80, 5, 500), "base": np.r_[rng.normal(-70, 8, 500),
                                   1e9, np.nan], "DFR": rng.normal(-78, 6, 500)}, tmp_path / "f" / "energy.png")
    assert path.read_bytes()[:8] == PNG_MAGIC and path.stat().st_size > 5000
    with pytest.raises(ValueError, match="energies"):
        plot_energy_histograms({}, tmp_path / "x.png")
    with pytest.raises(ValueError, match="'broken'"):
        plot_energy_histograms({"broken": np.array([np.nan])}, tmp_path / "x.png")


def test_ramachandran(short_md, tmp_path):
    x = short_md.coordinates
    path = plot_ramachandran({"reference": x, "generated": x[::2]}, short_md.topology, tmp_path / "rama.png")
    assert path.read_bytes()[:8] == PNG_MAGIC and path.stat().st_size > 5000
    with pytest.raises(ValueError, match="coordinates"):
        plot_ramachandran({}, short_md.topology, tmp_path / "x.png")
