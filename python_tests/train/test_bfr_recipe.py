"""The ``bfr`` recipe end to end with tiny budgets: run folder, Table-1 rows with honest NFE, grids, resume."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from bfr_fast.checkpoint import load
from bfr_fast.refine import main as refine_main
from bfr_fast.sample import main as sample_main
from bfr_fast.refiners import Refiner
from bfr_fast.train.cli import main
from bfr_fast.train.recipes import DEFAULT_RECIPE
from bfr_fast.pipelines.refinement import summarize
from bfr_fast.train.recipes import bfr_setup

SAMPLER_STEPS = 3
TEACHER_NFE = 10
EXPECTED = [  # (method, solver, nfe_base, nfe_refiner, teacher_nfe)
    ("base", None, SAMPLER_STEPS, 0, None),
    ("noise_injection", "euler", SAMPLER_STEPS, 1, None),
    ("noise_injection", "euler", SAMPLER_STEPS, 10, None),
    ("fmrefiner", "euler", SAMPLER_STEPS, 1, None),
    ("fmrefiner", "euler", SAMPLER_STEPS, 10, None),
    ("dfr", "euler", SAMPLER_STEPS, 1, None),
    ("dfr", "euler", SAMPLER_STEPS, 10, None),
    ("dfr", "rk4", SAMPLER_STEPS, 4, None),  # one RK4 step: the reference protocol, at its true NFE
    ("dfr_reflow", "euler", SAMPLER_STEPS, 1, TEACHER_NFE),
    ("lfr", "euler", SAMPLER_STEPS, 1, None),
    ("lfr", "euler", SAMPLER_STEPS, 10, None),
    ("lfr", "rk4", SAMPLER_STEPS, 4, None),
    ("lfr_reflow", "euler", SAMPLER_STEPS, 1, TEACHER_NFE),
]
NETWORKS = ("base", "noise_injection", "fmrefiner", "dfr", "lfr", "dfr_reflow", "lfr_reflow")
STUDENTS = ("dfr_reflow", "lfr_reflow")


BASE_STEPS = 6
REFINER_STEPS = 4


def _args(out, cache, *extra):
    return ["--out", str(out), "--steps", str(REFINER_STEPS), "--base-steps", str(BASE_STEPS), "--num-samples", "60", "--sampler-steps", str(SAMPLER_STEPS),
            "--cache-dir", str(cache), "--device", "cpu", *extra]


PAIRS_PER_CLASS = 6


@pytest.fixture(scope="module", autouse=True)
def few_pairs():
    """The digits budget with few distillation pairs (the real one's 10 000 would dominate the test's time)."""
    budget = bfr_setup.refinement_budget
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(bfr_setup, "refinement_budget",
                      lambda shape: replace(budget(shape), distill_pairs=PAIRS_PER_CLASS))
        yield


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
        assert header["kind"] == name.removesuffix("_reflow")  # a student is a refiner of its teacher's kind
    assert Refiner.read_header(out / "checkpoints" / "lfr-refiner.pt")["config"]["alpha"] == 0.1
    for name in STUDENTS:
        assert (out / "checkpoints" / f"{name}-pairs.pt").is_file()


def test_base_steps_train_the_base_alone_longer(short_run):
    out, _ = short_run
    ckpt = out / "checkpoints"
    assert load(ckpt / "base.pt")["step"] == BASE_STEPS
    assert {load(ckpt / f"{n}.pt")["step"] for n in NETWORKS[1:]} == {REFINER_STEPS}
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train_steps"] == {"base": BASE_STEPS, "refiner": REFINER_STEPS}


def test_students_start_from_their_teachers_and_report_their_cost(short_run):
    out, _ = short_run
    ckpt = out / "checkpoints"
    metrics = json.loads((out / "metrics.json").read_text())
    per_class = PAIRS_PER_CLASS
    for name in STUDENTS:
        cost = metrics["distillation"][name]
        assert cost["teacher_nfe"] == TEACHER_NFE and cost["pairs"] == 10 * per_class
        assert cost["teacher_calls"] == cost["pairs"] * TEACHER_NFE and cost["train_steps"] == REFINER_STEPS
        pairs = load(ckpt / f"{name}-pairs.pt")["pairs"]
        assert pairs.shape == (10 * per_class, 2, 1, 8, 8)
        teacher = load(ckpt / f"{name.removesuffix('_reflow')}-refiner.pt")["state_dict"]
        student = load(ckpt / f"{name}-refiner.pt")["state_dict"]
        moved = [k for k in teacher if not torch.equal(teacher[k], student[k])]
        assert moved and len(moved) < len(teacher) + 1  # fine-tuned from the teacher's weights, not equal to them
    assert metrics["distillation"]["dfr_reflow"]["base_nfe"] == SAMPLER_STEPS
    sources = load(ckpt / "dfr_reflow-sources.pt")
    pool = load(ckpt / "pool.pt")
    assert not torch.equal(sources["x"][: pool["x"].shape[0]], pool["x"])  # fresh base samples, not the pool

def test_rows_have_honest_nfe_same_seeds_and_grids(short_run):
    out, _ = short_run
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["recipe"] == "bfr" and metrics["dataset"] == "digits"
    rows = metrics["rows"]
    seeds = sorted({r["seed"] for r in rows})
    assert len(seeds) >= 1 and seeds[0] == 0
    for seed in seeds:
        got = [(r["method"], r["solver"], r["nfe_base"], r["nfe_refiner"], r["teacher_nfe"])
               for r in rows if r["seed"] == seed]
        assert got == EXPECTED
        base = next(r for r in rows if r["seed"] == seed and r["method"] == "base")
        for row in rows:  # a recipe that dropped a refiner's output would repeat the base row
            if row["seed"] == seed and row["method"] != "base":
                assert row["fd"] != base["fd"], row["method"]
    for row in rows:
        assert row["fd"] >= 0 and row["kid"] == row["kid"] and row["is"] >= 1
        assert Image.open(out / row["grid"]).size[0] > 50
    assert len({r["grid"] for r in rows}) == len(rows)
    assert metrics["real"]["fd"] < min(r["fd"] for r in rows)  # real images: the metric's floor
    errors = metrics["inversion_error"]
    assert 0 <= errors["median"] <= errors["p95"] <= errors["max"]
    table = (out / "results.md").read_text()
    assert "FD-digitsnet" in table and "NFE refiner" in table and "| lfr | euler | 3 | 10 |" in table
    assert "| dfr | rk4 | 3 | 4 |" in table and "| lfr_reflow | euler | 3 | 1 | 10 |" in table
    assert "real training images score" in table


def test_resume_loads_finished_networks_without_retraining(short_run):
    out, cache = short_run
    before = {n: (out / "checkpoints" / f"{n}.pt").stat().st_mtime_ns for n in ("pool", "inversion")}
    assert main(_args(out, cache, "--resume")) == 0
    log = (out / "log.txt").read_text()
    for name in NETWORKS:
        assert f"{name}: resumed from" in log and f"{name} step 1:" not in log.split(f"{name}: resumed from")[-1]
    assert "pool: loaded" in log and "inversion cache: loaded" in log
    for name in STUDENTS:
        assert f"{name}: loaded {10 * PAIRS_PER_CLASS} pairs" in log
    after = {n: (out / "checkpoints" / f"{n}.pt").stat().st_mtime_ns for n in ("pool", "inversion")}
    assert before == after


def test_a_runs_base_is_sampled_and_refined_again_through_the_clis(short_run, tmp_path, monkeypatch):
    out, cache = short_run
    samples = tmp_path / "base.npz"
    assert sample_main(["--run", str(out), "--refiner", "base", "--num", "20", "--out", str(samples),
                        "--device", "cpu"]) == 0
    drawn = np.load(samples)
    # The base rebuilt from checkpoints/base.pt (EMA weights; sampler from metrics.json), conditional on the run's
    # labelled data: balanced labels.
    metrics = json.loads((out / "metrics.json").read_text())
    assert drawn["samples"].shape == (20, 1, 8, 8) and drawn["labels"].tolist() == [k % 10 for k in range(20)]
    refined = tmp_path / "dfr.npz"
    assert sample_main(["--run", str(out), "--refiner", "dfr", "--num", "20", "--out", str(refined),
                        "--device", "cpu"]) == 0
    assert not np.allclose(np.load(refined)["samples"], drawn["samples"])
    assert metrics["base_sampler"] == {"method": "euler", "steps": SAMPLER_STEPS}

    again = tmp_path / "refine"
    monkeypatch.chdir(out.parent)  # the run named by a relative path, as a user types it
    assert refine_main(["--generator", out.name, "--refiners", "dfr", "--no-distill", "--steps", "2",
                        "--num-samples", "30", "--eval-seeds", "1", "--cache-dir", str(cache), "--device", "cpu",
                        "--out", str(again), "--no-sanity-check"]) == 0  # a base of a few steps samples noise
    rows = json.loads((again / "metrics.json").read_text())["rows"]
    assert [(r["method"], r["nfe_base"]) for r in rows][:2] == [("base", SAMPLER_STEPS), ("dfr", SAMPLER_STEPS)]
    assert json.loads((again / "metrics.json").read_text())["num_classes"] == 10  # the run's labels, conditional
    monkeypatch.chdir(tmp_path)  # sampling the refine run from elsewhere still finds its generator
    assert sample_main(["--run", str(again), "--refiner", "dfr", "--num", "10", "--out", "s.npz",
                        "--device", "cpu"]) == 0
    assert np.load(tmp_path / "s.npz")["samples"].shape == (10, 1, 8, 8)


def test_summarize_gives_mean_and_spread_over_seeds():
    rows = [
        {"method": "base", "nfe_base": 2, "nfe_refiner": 0, "seed": s, "fd": fd, "kid": 1.0, "is": 2.0}
        for s, fd in ((0, 1.0), (1, 3.0))
    ]
    (row,) = summarize(rows)
    assert row["seeds"] == 2 and row["fd"].startswith("2 ± 1.4") and row["kid"].startswith("1 ± 0")
