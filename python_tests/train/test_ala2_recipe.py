"""The ``ala2`` recipe end to end on a 10 ps MD with tiny budgets: rows, metric ranges, figures, resume."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from bfr_fast.data.molecules import ALANINE_DIPEPTIDE, CHIGNOLIN, generate_reference_md, load_reference_md
from bfr_fast.data.molecules import reference_md_path
from bfr_fast.refiners import Refiner
from bfr_fast.train.cli import main
from bfr_fast.train.recipes import RECIPES
from bfr_fast.data.molecules import Standardizer
from bfr_fast.train.recipes.ala2 import parse_data

SAMPLER_STEPS = 2
EXPECTED = [
    ("base", SAMPLER_STEPS, 0),
    ("noise_injection", SAMPLER_STEPS, 1),
    ("noise_injection", SAMPLER_STEPS, 10),
    ("fmrefiner", SAMPLER_STEPS, 1),
    ("fmrefiner", SAMPLER_STEPS, 10),
    ("dfr", SAMPLER_STEPS, 1),
    ("dfr", SAMPLER_STEPS, 10),
    ("dfr", SAMPLER_STEPS, 4),  # one RK4 step
    ("dfr_reflow", SAMPLER_STEPS, 1),  # the DFR's 1-NFE student
    ("lfr", SAMPLER_STEPS, 1),
    ("lfr", SAMPLER_STEPS, 10),
    ("lfr", SAMPLER_STEPS, 4),
    ("lfr_reflow", SAMPLER_STEPS, 1),
]
NETWORKS = ("base", "noise_injection", "fmrefiner", "dfr", "lfr")
MD = dict(nanoseconds=0.01, frames=50)  # 40 training and 10 test frames


def _assert_refined_rows_differ_from_the_base(rows):
    """Every refined row's conformers score differently from the base row of its seed: a recipe that dropped a
    refiner's output would repeat the base samples, hence every metric of the base row."""
    def scores(row):
        return row["amr_r"], row["amr_p"], row["energy_error_percent_uncut"]

    for seed in {r["seed"] for r in rows}:
        (base,) = [r for r in rows if r["seed"] == seed and r["method"] == "base"]
        for row in rows:
            if row["seed"] == seed and row["method"] != "base":
                assert scores(row) != scores(base), row


def _args(out, cache, *extra, recipe="ala2"):
    return ["--recipe", recipe, "--out", str(out), "--data", f"ala2:{MD['nanoseconds']}:{MD['frames']}",
            "--steps", "3", "--num-samples", "30", "--sampler-steps", str(SAMPLER_STEPS), "--batch-size", "16",
            "--cache-dir", str(cache), "--device", "cpu", *extra]


@pytest.fixture(scope="module")
def md_cache(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    # the recipe's MD (seed 0) at 10 ps with a 1 ps equilibration, placed where the recipe looks for it
    generate_reference_md(reference_md_path(cache, **MD), **MD, seed=0, equilibration_ps=1.0, progress=False)
    return cache


@pytest.fixture(scope="module")
def short_run(tmp_path_factory, md_cache):
    cache = md_cache
    out = tmp_path_factory.mktemp("run") / "ala2"
    assert main(_args(out, cache)) == 0
    return out, cache


def test_ala2_is_registered():
    assert "ala2" in RECIPES and "ala2-ddpm" in RECIPES


def test_ddpm_base_gives_the_same_table(tmp_path, md_cache):
    out = tmp_path / "ala2-ddpm"
    assert main(_args(out, md_cache, "--energy-constraints", "none", "--coordinates", "internal",
                      recipe="ala2-ddpm")) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["coordinates"] == "internal" and metrics["features"] == 3 * 22 - 6
    assert metrics["recipe"] == "ala2-ddpm" and metrics["base"] == "ddpm" and metrics["energy_constraints"] == "none"
    assert all(r["energy_constraints"] == "none" for r in metrics["rows"])
    assert [(r["method"], r["nfe_base"], r["nfe_refiner"]) for r in metrics["rows"]] == EXPECTED
    assert all(0.0 <= r["cov_r"] <= 1.0 and r["amr_p"] > 0 for r in metrics["rows"])
    _assert_refined_rows_differ_from_the_base(metrics["rows"])
    results = (out / "results.md").read_text()
    assert "DDPM, probability-flow ODE" in results and "of the conformers as generated (X–H bonds flexible" in results


def test_run_folder_holds_networks_figures_and_results(short_run):
    out, _ = short_run
    for name in ("config.json", "log.txt", "metrics.json", "results.md", "samples/energies.png",
                 "samples/ramachandran.png", "checkpoints/pool.pt", "checkpoints/inversion.pt",
                 *(f"checkpoints/{n}.pt" for n in NETWORKS), "checkpoints/dfr_reflow-sources.pt",
                 *(f"checkpoints/{n}_reflow{suffix}.pt" for n in ("dfr", "lfr") for suffix in ("", "-pairs"))):
        assert (out / name).is_file(), name
    for name in NETWORKS[1:]:
        assert Refiner.read_header(out / "checkpoints" / f"{name}-refiner.pt")["kind"] == name
    assert Image.open(out / "samples" / "energies.png").size[0] > 200


def test_rows_are_the_table_with_sane_metrics(short_run):
    out, md_cache = short_run
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["recipe"] == "ala2" and metrics["base"] == "fm" and metrics["threshold_angstrom"] == 0.05
    assert metrics["threshold_nm"] == pytest.approx(0.005)  # the paper's ALA2 τ, Table 5
    assert metrics["energy_constraints"] == "hbonds" and metrics["energies_absent"] is None
    assert metrics["coordinates"] == "cartesian" and metrics["features"] == 3 * 22  # ALA2's default
    distillation = metrics["distillation"]  # the students: 3000 pairs of a 10-step teacher, --steps 3 of reflow
    assert sorted(distillation) == ["dfr_reflow", "lfr_reflow"]
    assert distillation["dfr_reflow"]["base_nfe"] == SAMPLER_STEPS
    assert all(c["pairs"] == 3000 and c["teacher_nfe"] == 10 and c["train_steps"] == 3 for c in distillation.values())
    assert "Distillation (rows `*_reflow`, 1 NFE)" in (out / "results.md").read_text()
    rows = metrics["rows"]
    assert [(r["method"], r["nfe_base"], r["nfe_refiner"]) for r in rows] == EXPECTED
    for row in rows + [metrics["md_train"]]:
        assert 0.0 <= row["cov_r"] <= 1.0 and 0.0 <= row["cov_p"] <= 1.0
        assert row["amr_r"] > 0 and row["amr_p"] > 0 and row["rmsd_atoms"] == "heavy"
        assert math.isfinite(row["energy_error_percent_uncut"]) and math.isfinite(row["mean_reference"])
        assert 0 <= row["excluded_generated"] <= row["n_generated"]
        assert sum(row["basins"].values()) == pytest.approx(1.0)
    assert all(r["seed"] == 0 and r["n_generated"] == 30 for r in rows)
    floor = metrics["md_train"]  # real MD frames: physical energies, none excluded
    assert floor["excluded_generated"] == 0 and floor["n_generated"] == 30
    # MD frames against MD frames, from the integrator's own energies (0.05 kJ/mol from OpenMM's re-evaluation):
    # a mean of 30 of the 50 frames, and a mean of the 10 test frames, lie between the lowest and highest such means.
    energies = np.sort(load_reference_md(reference_md_path(md_cache, **MD)).potential_energy)
    for key, n in (("mean_generated", 30), ("mean_reference", 10)):
        assert energies[:n].mean() - 0.05 <= floor[key] <= energies[-n:].mean() + 0.05, key
    assert floor["energy_error_percent"] == pytest.approx(
        100 * (floor["mean_generated"] - floor["mean_reference"]) / abs(floor["mean_reference"]))
    _assert_refined_rows_differ_from_the_base(rows)
    table = (out / "results.md").read_text()
    assert "COV-R (%, τ = 0.05 Å)" in table and "AMR-P (Å)" in table and "| lfr | 2 | 10 |" in table
    assert "excluded (E > 500 kJ/mol)" in table and "τ = 0.05 Å (0.005 nm" in table
    assert "after projecting each generated conformer onto the MD's X–H bond constraints" in table


def test_coverage_curves_hold_every_row_and_the_floor(short_run):
    out, _ = short_run
    metrics = json.loads((out / "metrics.json").read_text())
    curves = json.loads((out / "samples" / "coverage_curves.json").read_text())
    assert curves["unit"] == "angstrom" and curves["table_threshold"] == 0.05
    assert Image.open(out / "samples" / "coverage_curves.png").size[0] > 400
    taus = curves["threshold"]
    assert taus == sorted(taus) and taus[0] == pytest.approx(0.01) and taus[-1] == pytest.approx(1.0)
    at = taus.index(0.05)
    labels = [r["method"] if r["method"] == "base" else f"{r['method']} {r['nfe_refiner']} NFE"
              for r in metrics["rows"]]
    assert list(curves["rows"]) == [curves["floor"], *labels] and "MD" in curves["floor"]
    for row, label in [(metrics["md_train"], curves["floor"]), *zip(metrics["rows"], labels)]:
        curve = curves["rows"][label]
        assert (curve["cov_r"][at], curve["cov_p"][at]) == (row["cov_r"], row["cov_p"]), label
        assert all(0 <= a <= b <= 1 for a, b in zip(curve["cov_r"], curve["cov_r"][1:])), label  # non-decreasing
        assert "coverage_curve" not in row


def test_resume_loads_finished_networks_without_retraining(short_run):
    out, cache = short_run
    before = {n: (out / "checkpoints" / f"{n}.pt").stat().st_mtime_ns for n in ("pool", "inversion")}
    assert main(_args(out, cache, "--resume")) == 0
    log = (out / "log.txt").read_text()
    for name in NETWORKS:
        assert f"{name}: resumed from" in log and f"{name} step 1:" not in log.split(f"{name}: resumed from")[-1]
    after = {n: (out / "checkpoints" / f"{n}.pt").stat().st_mtime_ns for n in ("pool", "inversion")}
    assert before == after


def test_standardizer_round_trips_and_whitens():
    x = torch.randn(200, 4, 3) * torch.linspace(0.01, 1.0, 12).reshape(1, 4, 3) + 5.0
    s = Standardizer.fit(x)
    z = s.encode(x)
    assert z.shape == (200, 12)
    assert torch.allclose(z.mean(0), torch.zeros(12), atol=1e-4)
    assert torch.allclose(z.std(0), torch.ones(12), atol=1e-4)
    assert torch.allclose(s.decode(z), x, atol=1e-5)
    with pytest.raises(ValueError, match="constant"):
        Standardizer.fit(torch.ones(5, 2, 3))
    with pytest.raises(ValueError, match="x: expected"):
        Standardizer.fit(torch.ones(5, 6))


def test_parse_data():
    assert parse_data(None) == (ALANINE_DIPEPTIDE, 10.0, 50_000)
    assert parse_data("ala2:0.5") == (ALANINE_DIPEPTIDE, 0.5, 50_000)
    assert parse_data("ala2:0.01:50") == (ALANINE_DIPEPTIDE, 0.01, 50)
    assert parse_data("chignolin") == (CHIGNOLIN, 2.0, 20_000)
    assert parse_data("chignolin:0.01:50") == (CHIGNOLIN, 0.01, 50)
    for bad in ("digits", "ala2:x", "ala2:-1", "ala2:1:5", "ala2:1:2:3", "ala2:inf", "ala2:nan", "chignolin:0"):
        with pytest.raises(ValueError, match="--data"):
            parse_data(bad)
