"""The ``bfr-transfer`` (Table 7) and ``bfr-alpha`` (Table 4) recipes end to end with tiny budgets."""

from __future__ import annotations

import json

import pytest

from bfr_fast.checkpoint import load
from bfr_fast.refiners import Refiner
from bfr_fast.train.cli import main
from bfr_fast.train.recipes.bfr_alpha import ALPHAS, SIGMAS

SAMPLER_STEPS = 2
STEPS = 8
TABLE1 = [("base", 0), ("noise_injection", 1), ("noise_injection", 10), ("fmrefiner", 1), ("fmrefiner", 10),
          ("dfr", 1), ("dfr", 10), ("dfr", 4), ("lfr", 1), ("lfr", 10), ("lfr", 4)]  # (method, NFE); 4: one RK4 step


def _assert_refined_rows_differ_from_the_base(rows, group=()):
    """Every refined row scores differently from the base row of its seed (and ``group`` keys, e.g. the base):
    a recipe that dropped a refiner's output would repeat the base row's samples, hence its metrics."""
    def key(row):
        return tuple(row[k] for k in ("seed", *group))

    bases = {key(r): r for r in rows if r["method"] == "base"}
    assert len(bases) == len([r for r in rows if r["method"] == "base"]) > 0  # one base row per seed (and group)
    for row in rows:
        if row["method"] != "base":
            base = bases[key(row)]
            assert (row["fd"], row["kid"]) != (base["fd"], base["kid"]), row


def _run(tmp_path_factory, cache, recipe):
    out = tmp_path_factory.mktemp("run") / recipe
    args = ["--recipe", recipe, "--out", str(out), "--steps", str(STEPS), "--num-samples", "40",
            "--sampler-steps", str(SAMPLER_STEPS), "--cache-dir", str(cache), "--device", "cpu"]
    assert main(args) == 0
    return out, json.loads((out / "metrics.json").read_text())


@pytest.fixture(scope="module")
def transfer(tmp_path_factory, extractor_cache):
    return _run(tmp_path_factory, extractor_cache, "bfr-transfer")


@pytest.fixture(scope="module")
def alpha(tmp_path_factory, extractor_cache):
    return _run(tmp_path_factory, extractor_cache, "bfr-alpha")


def test_transfer_trains_a_weaker_base_and_the_refiners_once(transfer):
    out, metrics = transfer
    ckpt = out / "checkpoints"
    assert load(ckpt / "base.pt")["step"] == STEPS
    assert load(ckpt / "base-weak.pt")["step"] == STEPS // 4 == metrics["weak_base_steps"]
    refiners = sorted(p.name for p in ckpt.glob("*-refiner.pt"))
    assert refiners == ["dfr-refiner.pt", "fmrefiner-refiner.pt", "lfr-refiner.pt", "noise_injection-refiner.pt"]


def test_transfer_scores_every_refiner_on_both_bases(transfer):
    out, metrics = transfer
    rows = metrics["rows"]
    for base in ("strong", "weak"):
        for seed in sorted({r["seed"] for r in rows}):
            got = [(r["method"], r["nfe_refiner"]) for r in rows if r["base"] == base and r["seed"] == seed]
            assert got == TABLE1
    by_key = {(r["base"], r["method"], r["nfe_refiner"], r["seed"]): r for r in rows}
    # the weak base is another network: its own samples and the LFR latents it decodes score differently
    for method, nfe in (("base", 0), ("lfr", 1), ("dfr", 1)):
        assert by_key[("weak", method, nfe, 0)]["fd"] != by_key[("strong", method, nfe, 0)]["fd"]
    _assert_refined_rows_differ_from_the_base(rows, group=("base",))
    assert all((out / r["grid"]).is_file() for r in rows)
    assert {r["grid"].split("/")[-1].split("-")[0] for r in rows} == {"strong", "weak"}
    assert "| weak | lfr |" in (out / "results.md").read_text()


def test_alpha_sweeps_every_alpha_and_sigma(alpha):
    out, metrics = alpha
    rows = metrics["rows"]
    seed0 = [r for r in rows if r["seed"] == 0]
    assert [(r["method"], r["nfe_refiner"]) for r in seed0 if r["method"] == "base"] == [("base", 0)]
    lfr = sorted((r["alpha"], r["nfe_refiner"]) for r in seed0 if r["method"] == "lfr")
    assert lfr == sorted((a, n) for a in ALPHAS for n in (1, 10, 4))
    for method, sigma in (("noise_injection", "sigma_d"), ("fmrefiner", "sigma_f")):
        got = sorted((r[sigma], r["nfe_refiner"]) for r in seed0 if r["method"] == method)
        assert got == sorted((s, n) for s in SIGMAS for n in (1, 10))
    assert not any(r["method"] == "dfr" for r in rows)
    _assert_refined_rows_differ_from_the_base(rows)


def test_alpha_refiners_carry_their_setting(alpha):
    out, _ = alpha
    ckpt = out / "checkpoints"
    for a in ALPHAS:
        assert Refiner.read_header(ckpt / f"lfr-alpha{a}-refiner.pt")["config"]["alpha"] == a
    for s in SIGMAS:
        assert Refiner.read_header(ckpt / f"noise_injection-sigma{s}-refiner.pt")["config"]["sigma_d"] == s
        assert Refiner.read_header(ckpt / f"fmrefiner-sigma{s}-refiner.pt")["config"]["sigma_f"] == s
    table = (out / "results.md").read_text()
    assert "α" in table and "σ_d" in table and "σ_f" in table
