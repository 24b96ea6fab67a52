"""Spectral curves are written as a PNG figure and as strict JSON, and incomplete curves are refused."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bfr_fast.report import plot_exposure_bias_maps, plot_spectral_curves, write_spectral_curves

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _curves() -> dict[str, object]:
    t = (np.arange(50) + 0.5) / 50
    return {
        "t": t,
        "pfr_velocity": 10 ** (1 + 2 * t),
        "pfr_target": np.full(50, 1.3),
        "pfr_exposure_bias": np.r_[np.inf, 5 - 4 * t[1:]],
        "fel_plain": np.r_[1.2 - 0.3 * t[:-1], np.nan],
        "fel_reweighted": 1.0 - 0.4 * t,
        "fel_reweighted_as_trained": 1.1 + 0.1 * t,
        "settings": {"cutoff": 0.5, "num_samples": 6, "weight_source": "exposure_bias"},
    }


def test_plot_writes_a_png(tmp_path):
    path = plot_spectral_curves(_curves(), tmp_path / "figs" / "spectra.png")
    assert path.read_bytes()[:8] == PNG_MAGIC and path.stat().st_size > 5000
    assert [p.name for p in path.parent.iterdir()] == ["spectra.png"]  # no temporary file left


def test_json_round_trip_with_non_finite_as_null(tmp_path):
    curves = _curves()
    path = write_spectral_curves(curves, tmp_path / "spectra.json")
    data = json.loads(path.read_text())
    np.testing.assert_allclose(data["t"], curves["t"])
    np.testing.assert_allclose(data["pfr_velocity"], curves["pfr_velocity"])
    assert data["pfr_exposure_bias"][0] is None and data["fel_plain"][-1] is None
    assert data["settings"] == curves["settings"]


def test_incomplete_curves_are_refused(tmp_path):
    curves = _curves()
    del curves["fel_plain"]
    with pytest.raises(ValueError, match="fel_plain"):
        plot_spectral_curves(curves, tmp_path / "x.png")
    curves = _curves()
    curves["fel_plain"] = curves["fel_plain"][:10]
    with pytest.raises(ValueError, match="fel_plain"):
        write_spectral_curves(curves, tmp_path / "x.json")
    assert not list(tmp_path.iterdir())


def test_exposure_bias_maps_figure(tmp_path):
    g = np.random.default_rng(0)
    images, references, maps = g.uniform(-1, 1, (3, 8, 8)), g.uniform(0, 1, (3, 8, 8)), g.uniform(0, 1, (3, 2, 8, 8))
    path = plot_exposure_bias_maps(images, references, maps, (0.25, 0.5), tmp_path / "maps.png", "fm")
    assert path.read_bytes()[:8] == PNG_MAGIC and path.stat().st_size > 5000
    with pytest.raises(ValueError, match="maps"):
        plot_exposure_bias_maps(images, references, maps, (0.25,), tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()
