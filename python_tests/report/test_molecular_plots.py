"""Molecular figures are written as PNG files and refuse empty input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bfr_fast.report import plot_coverage_curves, plot_energy_histograms, plot_ramachandran, write_coverage_curves

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


def test_coverage_curves_png_and_json(tmp_path):
    taus = [0.01, 0.05, 0.1, 1.0]
    curves = {"MD (floor)": {"threshold": taus, "cov_r": [0.1, 0.6, 0.9, 1.0], "cov_p": [0.2, 0.7, 0.9, 1.0]},
              "base": {"threshold": taus, "cov_r": [0.0, 0.3, 0.8, 1.0], "cov_p": [0.0, 0.5, 0.9, 1.0]}}
    path = write_coverage_curves(curves, tmp_path / "c.json", "angstrom", 0.05, floor="MD (floor)")
    assert json.loads(path.read_text()) == {
        "unit": "angstrom", "table_threshold": 0.05, "floor": "MD (floor)", "threshold": taus,
        "rows": {name: {k: c[k] for k in ("cov_r", "cov_p")} for name, c in curves.items()}}
    png = plot_coverage_curves(curves, tmp_path / "c.png", "Å", 0.05, floor="MD (floor)")
    assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 5000
    with pytest.raises(ValueError, match="another threshold grid"):
        write_coverage_curves({**curves, "x": {**curves["base"], "threshold": [1, 2, 3, 4]}}, tmp_path / "d.json",
                              "angstrom", 0.05)
    with pytest.raises(ValueError, match="different lengths"):
        plot_coverage_curves({"x": {**curves["base"], "cov_p": [0.1]}}, tmp_path / "e.png", "Å", 0.05)
    with pytest.raises(ValueError, match="at least one"):
        plot_coverage_curves({}, tmp_path / "f.png", "Å", 0.05)
