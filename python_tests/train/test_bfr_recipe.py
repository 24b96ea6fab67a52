"""The ``bfr`` recipe end to end with tiny budgets: run folder, Table-1 rows with honest NFE, grids, resume."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from bfr_fast.checkpoint import load
from bfr_fast.refiners import Refiner
from bfr_fast.train.cli import main
from bfr_fast.train.recipes import DEFAULT_RECIPE
from bfr_fast.train.recipes.bfr import summarize

SAMPLER_STEPS = 3
EXPECTED = [
    ("base", SAMPLER_STEPS, 0),
    ("noise_injection", SAMPLER_STEPS, 1),
    ("fmrefiner", SAMPLER_STEPS, 1),
    ("dfr", SAMPLER_STEPS, 1),
    ("dfr", SAMPLER_STEPS, 10),
    ("lfr", SAMPLER_STEPS, 1),
    ("lfr", SAMPLER_STEPS, 10),
]
NETWORKS = ("base", "noise_injection", "fmrefiner", "dfr", "lfr")


BASE_STEPS = 6
REFINER_STEPS = 4


def _args(out, cache, *extra):
    return ["--out", str(out), "--steps", str(REFINER_STEPS), "--base-steps", str(BASE_STEPS), "--num-samples", "60", "--sampler-steps", str(SAMPLER_STEPS),
            "--cache-dir", str(cache), "--device", "cpu", *extra]


@pytest.fixture(scope="module")
def short_run(tmp_path_factory, extractor_cache):
    out = tmp_path_factory.mktemp("run") / "bfr"
    cache = extractor_cache
    assert main(_args(out, cache)) == 0  # no --recipe: bfr is the default
    return out, cache


def test_bfr_is_the_default_recipe():
    assert DEFAULT_RECIPE == "bfr"


def test_run_folder_holds_every_network_pool_and_cache(short_run):
    out, _ = short_run
    for name in ("config.json", "log.txt", "metrics.json", "results.md", "checkpoints/pool.pt",
                 "checkpoints/inversion.pt", *(f"checkpoints/{n}.pt" for n in NETWORKS)):
        assert (out / name).is_file(), name
    for name in NETWORKS[1:]:
        header = Refiner.read_header(out / "checkpoints" / f"{name}-refiner.pt")
        assert header["kind"] == name
    assert Refiner.read_header(out / "checkpoints" / "lfr-refiner.pt")["config"]["alpha"] == 0.1


def test_base_steps_train_the_base_alone_longer(short_run):
    out, _ = short_run
    ckpt = out / "checkpoints"
    assert load(ckpt / "base.pt")["step"] == BASE_STEPS
    assert {load(ckpt / f"{n}.pt")["step"] for n in NETWORKS[1:]} == {REFINER_STEPS}
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train_steps"] == {"base": BASE_STEPS, "refiner": REFINER_STEPS}


def test_rows_have_honest_nfe_same_seeds_and_grids(short_run):
    out, _ = short_run
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["recipe"] == "bfr" and metrics["dataset"] == "digits"
    rows = metrics["rows"]
    seeds = sorted({r["seed"] for r in rows})
    assert len(seeds) >= 1 and seeds[0] == 0
    for seed in seeds:
        got = [(r["method"], r["nfe_base"], r["nfe_refiner"]) for r in rows if r["seed"] == seed]
        assert got == EXPECTED
    for row in rows:
        assert row["fd"] >= 0 and row["kid"] == row["kid"] and row["is"] >= 1
        assert Image.open(out / row["grid"]).size[0] > 50
    assert len({r["grid"] for r in rows}) == len(rows)
    assert metrics["real"]["fd"] < min(r["fd"] for r in rows)  # real images: the metric's floor
    errors = metrics["inversion_error"]
    assert 0 <= errors["median"] <= errors["p95"] <= errors["max"]
    table = (out / "results.md").read_text()
    assert "FD-digitsnet" in table and "NFE refiner" in table and "| lfr | 3 | 10 |" in table
    assert "real training images score" in table


def test_resume_loads_finished_networks_without_retraining(short_run):
    out, cache = short_run
    before = {n: (out / "checkpoints" / f"{n}.pt").stat().st_mtime_ns for n in ("pool", "inversion")}
    assert main(_args(out, cache, "--resume")) == 0
    log = (out / "log.txt").read_text()
    for name in NETWORKS:
        assert f"{name}: resumed from" in log and f"{name} step 1:" not in log.split(f"{name}: resumed from")[-1]
    assert "pool: loaded" in log and "inversion cache: loaded" in log
    after = {n: (out / "checkpoints" / f"{n}.pt").stat().st_mtime_ns for n in ("pool", "inversion")}
    assert before == after


def test_summarize_gives_mean_and_spread_over_seeds():
    rows = [
        {"method": "base", "nfe_base": 2, "nfe_refiner": 0, "seed": s, "fd": fd, "kid": 1.0, "is": 2.0}
        for s, fd in ((0, 1.0), (1, 3.0))
    ]
    (row,) = summarize(rows)
    assert row["seeds"] == 2 and row["fd"].startswith("2 ± 1.4") and row["kid"].startswith("1 ± 0")
