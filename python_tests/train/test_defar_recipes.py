"""The ``defar`` (methods, fine-tuning, curve), ``defar-spectra`` and ``defar-ablation`` recipes end to end with
tiny budgets."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from bfr_fast.checkpoint import load
from bfr_fast.models import UNet
from bfr_fast.paths import VPInterpolant
from bfr_fast.pipelines.comparison import (
    MAX_EMA_DECAY_28,
    METHODS,
    SAMPLE_ROWS,
    ComparisonSetup,
    DefarBudget,
    EvalSampler,
    defar_budget,
)
from bfr_fast.pipelines.sampling import SamplerSpec
from bfr_fast.pipelines.training import ema_decay
from bfr_fast.train.cli import main
from bfr_fast.train.recipes.defar import DEFAULT_METHODS, paired_fd_differences, parts
from bfr_fast.train.recipes.defar_ablation import FC_UNTIL_MNIST5K, fc_budget, fc_variants, tables

# Model calls per training step (with gradient) of each method: docs/design.md §5.6–5.7 and the losses' docstrings.
PASSES = {"fm": (1, 1), "ip": (1, 1), "sdss": (2, 1), "mdss": (2, 1), "defar_no_fc": (2, 2), "defar_no_adr": (3, 1),
          "defar": (3, 2), "fm_equal_compute": (1, 1), "finetune-fm": (1, 1), "finetune-defar": (3, 2),
          "finetune-defar_no_fc": (2, 2), "finetune-defar_no_adr": (3, 1)}
FINETUNED = ("finetune-fm", "finetune-defar", "finetune-defar_no_fc", "finetune-defar_no_adr")
EVERY_PART = ",".join([*METHODS, "finetune", "finetune-ablation"])
NFES = (5, 10, 50)


def _args(recipe, out, cache, *extra):
    return ["--recipe", recipe, "--out", str(out), "--steps", "2", "--cache-dir", str(cache), "--device", "cpu",
            *extra]


@pytest.fixture(scope="module")
def defar_run(tmp_path_factory, extractor_cache):
    out = tmp_path_factory.mktemp("run") / "defar"
    assert main(_args("defar", out, extractor_cache, "--seeds", "1", "--num-samples", "20", "--select", EVERY_PART)) == 0
    return out


def _weights(path):
    return load(path, map_location="cpu")["model"]


def test_defar_rows_cover_every_method_at_equal_steps(defar_run):
    metrics = json.loads((defar_run / "metrics.json").read_text())
    rows = metrics["rows"]
    assert metrics["recipe"] == "defar" and metrics["train_steps"] == 2 and metrics["seeds"] == [0]
    assert metrics["coupling"] == "independent" and metrics["optimiser"] == "recipe" and metrics["curve"] is None
    assert {r["method"] for r in rows} == set(PASSES)
    assert sorted((r["method"], r["nfe"]) for r in rows) == sorted((m, n) for m in PASSES for n in NFES)
    scratch = [r for r in rows if r["stage"] == "scratch"]
    assert {r["method"] for r in scratch} == {*METHODS, "fm_equal_compute"}
    assert {r["train_steps"] for r in scratch if r["method"] in METHODS} == {2} and {r["seed"] for r in rows} == {0}
    for row in rows:
        for key in ("fd", "kid", "is", "sfid", "precision", "recall"):
            assert isinstance(row[key], float) and math.isfinite(row[key]), (row["method"], key)
        assert (row["forward_passes"], row["forward_passes_with_grad"]) == PASSES[row["method"]]
        assert (defar_run / row["grid"]).is_file()
        assert row["variant"].startswith("coupling independent")
    variant = {r["method"]: r["variant"] for r in rows}
    assert "adr direction mean" in variant["defar"] and "fc normalised" in variant["defar"]
    assert variant["mdss"] == "coupling independent; steps 1/4 real; timesteps random"
    for name in ("config.json", "log.txt", "results.md", *(f"checkpoints/{m}-seed0.pt" for m in PASSES)):
        assert (defar_run / name).is_file(), name


def test_defar_finetuning_continues_fm_with_the_same_batches(defar_run):
    rows = json.loads((defar_run / "metrics.json").read_text())["rows"]
    # --steps 2 rescales the budget's fine-tuning by 2 / steps
    extra = defar_budget((1, 8, 8)).finetune_length(2)
    finetune = [r for r in rows if r["stage"] == "finetune"]
    assert {(r["method"], r["train_steps"], r["start_steps"]) for r in finetune} == {
        (m, 2 + extra, 2) for m in FINETUNED}
    states = {m: load(defar_run / "checkpoints" / f"{m}-seed0.pt") for m in FINETUNED}
    a = states["finetune-fm"]
    for name in FINETUNED[1:]:  # each loss from fm's state, on the same batches; only the loss differs
        b = states[name]
        assert a["step"] == b["step"] == 2 + extra and a["batches"]["position"] == b["batches"]["position"]
        assert torch.equal(a["batches"]["epoch_start_state"], b["batches"]["epoch_start_state"])
        assert any(not torch.equal(a["model"][k], b["model"][k]) for k in a["model"]), name
    text = (defar_run / "results.md").read_text()
    assert f"fm at 2 steps, then {extra} more steps" in text and "FD difference to finetune-fm" in text


def test_fm_at_equal_compute_continues_fm_for_defars_compute(defar_run):
    rows = json.loads((defar_run / "metrics.json").read_text())["rows"]
    # DEFAR's step: 3 forwards + 2 backwards (= 4 forwards) = 7 units against FM's 3, so 2 steps of DEFAR buy
    # 2 * 7 / 3 = 4.67 -> 5 steps of FM: fm's 2 and 3 more
    (steps,) = {r["train_steps"] for r in rows if r["method"] == "fm_equal_compute"}
    assert steps == 2 + 3
    fm = load(defar_run / "checkpoints" / "fm-seed0.pt")
    eqc = load(defar_run / "checkpoints" / "fm_equal_compute-seed0.pt")
    assert eqc["step"] == 5 and fm["step"] == 2 and eqc["batches"]["position"] != fm["batches"]["position"]
    text = (defar_run / "results.md").read_text()
    assert "equal compute: defar's 2 steps against fm's 5" in text and "FD difference to fm_equal_compute" in text


def test_default_parts_are_the_issue_comparison():
    # Without --select: fm and defar (equal compute follows from both), no fine-tuning, within the 45-minute budget.
    assert parts(SimpleNamespace(options=SimpleNamespace(select=None))) == ["fm", "defar"]
    assert set(DEFAULT_METHODS) <= set(METHODS)
    budget = defar_budget((1, 8, 8))
    assert (budget.steps, budget.seeds, budget.finetune_steps) == (1000, 3, 150)


def test_defar_methods_train_different_networks_from_one_start(defar_run):
    # Same seed: same initial weights and batches, so any difference after two steps comes from the loss.
    weights = {m: _weights(defar_run / "checkpoints" / f"{m}-seed0.pt") for m in METHODS}
    names = list(METHODS)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            differs = any(not torch.equal(weights[a][k], weights[b][k]) for k in weights[a])
            assert differs, (a, b)
    log = (defar_run / "log.txt").read_text()
    assert "defar-seed0 step 2: exposure_bias=" in log and "adr=" in log
    assert "fm-seed0 step 2: grad_norm=" in log


def test_defar_results_md_has_summary_pairs_and_rows(defar_run):
    text = (defar_run / "results.md").read_text()
    assert "mean ± std over 1 training seeds" in text
    assert "FD difference to fm, paired by training seed" in text and "## Every row" in text
    assert text.count("| defar_no_adr |") == 3 + 3 + 3  # summary, paired differences, rows: one per NFE each


def test_defar_seeds_select_and_resume_reproduce(tmp_path, extractor_cache):
    out = tmp_path / "defar"
    args = _args("defar", out, extractor_cache, "--seeds", "2", "--select", "ip,fm", "--num-samples", "20")
    assert main(args) == 0
    rows = json.loads((out / "metrics.json").read_text())["rows"]
    assert [(r["method"], r["seed"]) for r in rows[::3]] == [("fm", 0), ("fm", 1), ("ip", 0), ("ip", 1)]
    w0, w1 = _weights(out / "checkpoints/fm-seed0.pt"), _weights(out / "checkpoints/fm-seed1.pt")
    assert any(not torch.equal(w0[k], w1[k]) for k in w0)  # another seed, another network
    assert main([*args, "--resume"]) == 0  # finished networks load: same scores
    again = json.loads((out / "metrics.json").read_text())["rows"]
    assert [r["fd"] for r in again] == [r["fd"] for r in rows]


def test_defar_curve_legs_train_as_one_run_and_paper_optim_switches_the_optimiser(tmp_path, extractor_cache):
    out = tmp_path / "curve"
    assert main(_args("defar", out, extractor_cache, "--steps", "3", "--select", "curve,fm,paper-optim",
                      "--num-samples", "20", "--seeds", "1")) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    curve = json.loads((out / "curve-fm.json").read_text())
    assert metrics["curve"] == curve and metrics["optimiser"] == "paper"
    assert curve["steps"] == [1, 2, 3] and curve["nfe"] == 10 and curve["variant"] == "coupling independent"
    for point in curve["points"]:
        assert all(math.isfinite(point[kind][k]) for kind in ("ema", "raw") for k in ("fd", "kid", "precision"))
    assert (out / "curve-fm.png").stat().st_size > 5_000
    # Three legs, each continuing the last's checkpoint, give the weights of one 3-step run of the same seed.
    legs = load(out / "checkpoints/curve-fm-seed0-paper-optim.pt")
    whole = load(out / "checkpoints/fm-seed0-paper-optim.pt")
    for part in ("model", "ema"):
        assert all(torch.equal(legs[part][k], whole[part][k]) for k in whole[part]), part
    config = whole["config"]
    assert (config["lr"], config["warmup_steps"], config["grad_clip"], config["weight_decay"]) == (1e-4, 0, 0.2, 0.0)
    assert {r["optimiser"] for r in metrics["rows"]} == {"paper"}
    assert "Convergence of fm" in (out / "results.md").read_text()


def test_defar_curve_scores_50_nfe_and_resumes_from_its_recorded_points(tmp_path, extractor_cache):
    out = tmp_path / "curve"
    args = _args("defar", out, extractor_cache, "--steps", "3", "--select", "curve", "--num-samples", "20")
    assert main(args) == 0
    curve = json.loads((out / "curve-fm.json").read_text())
    assert curve["extra_nfes"] == [50] and curve["schedule"] == [1, 2, 3]
    assert all(math.isfinite(p["ema_nfe50"]["fd"]) for p in curve["points"])
    # A part stopped after scoring step 2 (its checkpoint already at step 3): --resume keeps steps 1 and 2, trains
    # nothing more and scores step 3 again, as the uninterrupted run did.
    partial = {**curve, "steps": [1, 2], "points": curve["points"][:2]}
    (out / "curve-fm.json").write_text(json.dumps(partial))
    assert main([*args, "--resume"]) == 0
    again = json.loads((out / "metrics.json").read_text())["curve"]
    assert again["steps"] == [1, 2, 3] and again["points"][:2] == curve["points"][:2]
    assert again["points"][2]["ema"]["fd"] == pytest.approx(curve["points"][2]["ema"]["fd"], rel=1e-6)
    assert "EMA 50 NFE" in (out / "results.md").read_text()


def test_defar_budget_schedules():
    budget = DefarBudget(steps=200, seeds=3, num_samples=500, curve_steps=1000, curve_every=300, finetune_steps=50)
    assert budget.curve_schedule(None) == [300, 600, 900, 1000]  # the last point is the curve's end
    assert budget.curve_schedule(30) == [10, 20, 30]  # --steps keeps the number of points
    assert budget.finetune_length(None) == 50 and budget.finetune_length(20) == 5
    with pytest.raises(ValueError, match="curve_every"):
        DefarBudget(steps=1, seeds=1, num_samples=1, curve_every=0)
    with pytest.raises(ValueError, match="optimiser"):
        DefarBudget(steps=1, seeds=1, num_samples=1, optimiser="sgd")


def test_defar_select_rejects_unknown_method(tmp_path, extractor_cache, capsys):
    assert main(_args("defar", tmp_path / "x", extractor_cache, "--select", "fm,dfr")) == 2
    assert "--select: unknown ['dfr']" in capsys.readouterr().err


def test_seeds_must_be_positive(tmp_path, capsys):
    assert main(["--recipe", "defar", "--out", str(tmp_path / "x"), "--seeds", "0"]) == 2
    assert "--seeds must be a positive integer" in capsys.readouterr().err


def test_defar_spectra_writes_50_finite_timesteps(tmp_path, extractor_cache):
    out = tmp_path / "spectra"
    assert main(_args("defar-spectra", out, extractor_cache, "--num-samples", "16")) == 0
    for model in ("fm", "defar"):
        for cutoff in ("0.5", "0.25"):
            curves = json.loads((out / f"spectra-{model}-cutoff{cutoff}.json").read_text())
            assert len(curves["t"]) == 50 and curves["settings"]["num_samples"] == 16
            assert curves["settings"]["cutoff"] == float(cutoff) and curves["settings"]["coupling"] == "independent"
            t = curves["t"]
            assert all(0 < a < b < 1 for a, b in zip(t, t[1:]))
            for name in ("pfr_velocity", "pfr_target", "pfr_exposure_bias", "fel_plain", "fel_reweighted",
                         "fel_reweighted_as_trained"):
                values = curves[name]
                assert len(values) == 50 and all(v is not None and math.isfinite(v) and v > 0 for v in values), name
            assert (out / f"spectra-{model}-cutoff{cutoff}.png").stat().st_size > 10_000
        assert (out / f"exposure-bias-{model}.png").stat().st_size > 10_000
    metrics = json.loads((out / "metrics.json").read_text())
    rows = metrics["rows"]
    assert len(rows) == 200 and {(r["model"], r["cutoff"]) for r in rows} == {
        (m, c) for m in ("fm", "defar") for c in (0.5, 0.25)}
    correlations = metrics["exposure_bias_correlation"]
    assert len(correlations) == 8 and all(-1 <= r["pearson_mean"] <= 1 for r in correlations)
    assert "as trained / plain" in (out / "results.md").read_text()


def test_defar_spectra_resume_loads_defar_run_networks(defar_run, tmp_path, extractor_cache):
    # The documented way to analyse a defar run's networks: copy their checkpoints and resume.
    out = tmp_path / "spectra"
    (out / "checkpoints").mkdir(parents=True)
    for model in ("fm", "defar"):
        (out / "checkpoints" / f"{model}-seed0.pt").write_bytes(
            (defar_run / "checkpoints" / f"{model}-seed0.pt").read_bytes())
    assert main(_args("defar-spectra", out, extractor_cache, "--num-samples", "8", "--resume")) == 0
    assert "resumed from" in (out / "log.txt").read_text()
    assert "fm-seed0 step 1:" not in (out / "log.txt").read_text()  # loaded, not retrained
    # One of them alone: --select.
    alone = tmp_path / "fm-only"
    assert main(_args("defar-spectra", alone, extractor_cache, "--num-samples", "8", "--select", "fm")) == 0
    assert {r["model"] for r in json.loads((alone / "metrics.json").read_text())["rows"]} == {"fm"}


def test_ablation_tables_run_and_share_their_networks(tmp_path, extractor_cache):
    out = tmp_path / "ablation"
    assert main(_args("defar-ablation", out, extractor_cache, "--select", "table6,table4", "--num-samples", "20")) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["tables"] == ["table4-nfe", "table6-normalisation"]  # the recipe's order
    rows = metrics["rows"]
    table6 = [r for r in rows if r["table"] == "table6-normalisation"]
    assert [r["method"] for r in table6] == ["fm", "defar", "defar.adr_normalize=False", "defar.adr_reduction=sum"]
    assert table6[2]["adr_normalize"] is False and all(math.isfinite(r["fd"]) for r in rows)
    table4 = [(r["method"], r["nfe"]) for r in rows if r["table"] == "table4-nfe"]
    assert table4 == [(m, n) for m in ("fm", "defar") for n in (5, 10, 20, 50)]
    assert {r["train_steps"] for r in rows} == {2}
    # fm and defar serve both tables: trained once, and the 10-NFE row is the same row in both.
    log = (out / "log.txt").read_text()
    assert log.count("fm-seed0 step 2:") == 1 and log.count("defar-seed0 step 2:") == 1
    fd = {(r["table"], r["method"], r["nfe"]): r["fd"] for r in rows}
    assert fd[("table4-nfe", "fm", 10)] == fd[("table6-normalisation", "fm", 10)]


def test_ablation_tables_are_distinct_configurations():
    model = UNet(1, 8, channel_mult=(1,), num_res_blocks=1, attention_resolutions=(), num_classes=10)
    all_tables = tables()
    assert list(all_tables) == ["table4-nfe", "table5-interpolants", "table6-normalisation", "table7-weight-sources",
                                "table8-strengths", "table9-multistep"]
    for name, variants in all_tables.items():
        names = [v.name for v in variants]
        assert len(set(names)) == len(names) and names[0] == "fm", name
    losses = {v.name: v.build(label_dropout=0.1, null_class=model.null_class) for v in all_tables["table9-multistep"]}
    assert losses["defar.steps=3.timesteps=equal"].forward_passes.total == 5  # 3 simulated, FC call, bias call
    assert losses["defar.steps=2.timesteps=random"].timesteps == "random"
    through = losses["defar.steps=2.timesteps=equal.grad_through_simulation=True"]
    assert through.forward_passes == (4, 3) and through.coupling == "independent"
    sources = {v.build().weight_source for v in all_tables["table7-weight-sources"][1:]}
    assert sources == {"exposure_bias", "lowpass_image", "highpass_image", "image", "noise"}
    samplers = {(s.kind, type(s.interpolant).__name__) for v in all_tables["table5-interpolants"] for s in v.samplers}
    assert samplers == {(k, p) for k in ("ode", "sde") for p in ("LinearPath", "GVPInterpolant", "VPInterpolant")}


def test_eval_sampler_ode_is_euler_and_sde_is_finite():
    torch.manual_seed(0)
    model = UNet(1, 8, channel_mult=(1,), num_res_blocks=1, attention_resolutions=(), num_classes=10).eval()
    noise, labels = torch.randn(6, 1, 8, 8), torch.arange(6)
    ode = EvalSampler(4).sample(model, noise, labels, seed=0)
    reference, _ = SamplerSpec("euler", 4).generator(model).sample(noise, labels)
    torch.testing.assert_close(ode, reference)
    # More rows than a chunk (SAMPLE_ROWS): three chunks, the same samples as one whole batch.
    many, many_labels = torch.randn(2 * SAMPLE_ROWS + 5, 1, 8, 8), torch.arange(2 * SAMPLE_ROWS + 5) % 10
    whole, _ = SamplerSpec("euler", 4).generator(model).sample(many, many_labels)
    torch.testing.assert_close(EvalSampler(4).sample(model, many, many_labels, seed=0), whole)
    vp = EvalSampler(5, sde=True, interpolant=VPInterpolant())
    first, second = (vp.sample(model, noise, labels, seed=s) for s in (1, 1))
    assert torch.isfinite(first).all() and torch.equal(first, second)  # seeded increments
    assert not torch.equal(first, vp.sample(model, noise, labels, seed=2))
    with pytest.raises(ValueError, match="steps"):
        EvalSampler(1, sde=True)


def test_paired_fd_differences_pair_by_seed_with_ratios():
    rows = [{"method": m, "seed": s, "nfe": 10, "fd": fd, "raw_fd": raw}
            for m, s, fd, raw in [("fm", 0, 2.0, 4.0), ("fm", 1, 1.0, 2.0), ("defar", 0, 1.0, 4.0), ("defar", 1, 1.5, 1.0)]]
    (entry,) = paired_fd_differences(rows)
    assert entry["method"] == "defar" and entry["seeds"] == 2 and entry["better_seeds"] == 1
    assert entry["fd_minus_baseline"] == "-0.25 ± 1.1"  # -1 and +0.5
    assert entry["fd_ratio"] == "1 ± 0.71" and entry["raw_fd_ratio"] == "0.75 ± 0.35"  # 0.5, 1.5; 1, 0.5
    del rows[0]["raw_fd"]
    assert "raw_fd_ratio" not in paired_fd_differences(rows)[0]


def test_28x28_budget_bounds_the_ema_and_scores_raw_weights():
    budget = defar_budget((1, 28, 28))
    assert budget.max_ema_decay == MAX_EMA_DECAY_28 and budget.score_raw and budget.steps == 4000
    assert defar_budget((1, 8, 8)).max_ema_decay is None and not defar_budget((1, 8, 8)).score_raw
    setup = ComparisonSetup(SimpleNamespace(image_shape=(1, 28, 28)), budget, (0,), None, torch.zeros(1),
                            torch.zeros(1), 0, "recipe")
    assert setup.config(4000).ema_decay == MAX_EMA_DECAY_28  # ema_decay(4000) would be 0.999
    assert setup.config(100).ema_decay == ema_decay(100)  # already shorter than the bound
    assert setup.continuation(1000).ema_decay == MAX_EMA_DECAY_28  # ema_decay(1000) would be 0.9975


def test_28x28_rows_score_the_raw_weights_on_the_same_noise(tmp_path, extractor_cache):
    out = tmp_path / "m"
    args = ["--recipe", "defar", "--out", str(out), "--steps", "3", "--cache-dir", str(extractor_cache),
            "--device", "cpu", "--data", "mnist5k", "--seeds", "1", "--num-samples", "20", "--select", "fm"]
    assert main(args) == 0
    rows = json.loads((out / "metrics.json").read_text())["rows"]
    assert {r["nfe"] for r in rows} == set(NFES)
    for row in rows:  # 3 steps: the EMA (decay 1 - 2.5/3) is not the raw network, so their scores differ
        assert math.isfinite(row["raw_fd"]) and math.isfinite(row["raw_kid"]) and row["raw_fd"] != row["fd"]
    assert "FD-mnist5knet raw weights" in (out / "results.md").read_text()


FC_ROWS = ["fm-start", "finetune-fm", "finetune-defar", "finetune-defar.bias_lowpass_cutoff=0.5",
           "finetune-defar.fc_until=0.57", "finetune-defar.gamma=0.25", "finetune-defar.gamma=0.5",
           "finetune-defar.gamma=2.0", "finetune-defar_no_adr"]
SPECTRA = Path(__file__).resolve().parents[2] / "docs/results/defar-spectra-mnist5k/metrics.json"


def test_fc_until_is_where_the_measured_bias_stops_being_low_frequency_dominant():
    # At cutoff 0.5: the first t at which δ's PFR falls below the target's, interpolated between the grid's times.
    rows = [r for r in json.loads(SPECTRA.read_text())["rows"] if r["model"] == "fm" and r["cutoff"] == 0.5]
    gap = [(r["t"], r["pfr_exposure_bias"] - r["pfr_target"]) for r in rows]
    k = next(i for i, (_, g) in enumerate(gap) if g < 0)
    assert all(g > 0 for _, g in gap[:k]) and all(g < 0 for _, g in gap[k:])  # one crossing
    (t0, g0), (t1, g1) = gap[k - 1], gap[k]
    crossing = t0 + (t1 - t0) * g0 / (g0 - g1)
    assert round(crossing, 2) == FC_UNTIL_MNIST5K


def test_fc_variants_are_the_issues_and_cost_what_the_docstring_says():
    variants = fc_variants(7)
    assert [v.name for v in variants] == FC_ROWS[1:]
    assert {(v.start_from, v.extra_steps) for v in variants} == {("fm-start", 7)}
    assert all([s.steps for s in v.samplers] == [10, 50] for v in variants)
    losses = {v.name: v.build(label_dropout=0.1, null_class=10) for v in variants}
    assert losses["finetune-defar.fc_until=0.57"].fc_until == FC_UNTIL_MNIST5K
    assert losses["finetune-defar.bias_lowpass_cutoff=0.5"].bias_lowpass_cutoff == 0.5
    assert [losses[f"finetune-defar.gamma={g}"].gamma for g in (0.25, 0.5, 2.0)] == [0.25, 0.5, 2.0]
    compute = {name: loss.forward_passes.compute for name, loss in losses.items()}
    assert compute == {"finetune-fm": 3, "finetune-defar_no_adr": 5, **{n: 7 for n in FC_ROWS[2:-1]}}
    assert all(loss.coupling == "independent" for loss in losses.values())
    # the defar recipe's start and fine-tuning, one seed: mnist5k's 4000 steps and 1000 more
    budget = fc_budget((1, 28, 28))
    assert (budget.steps, budget.finetune_steps, budget.seeds, budget.max_ema_decay) == (4000, 1000, 1, 0.995)


def test_fc_variants_fine_tune_one_start_on_the_validation_split(tmp_path, extractor_cache):
    out = tmp_path / "fc"
    args = _args("defar-ablation", out, extractor_cache, "--select", "fc", "--data", "digits-val",
                 "--num-samples", "20")
    assert main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["dataset"] == "digits-val" and metrics["tables"] == ["fc-variants"]
    extra = fc_budget((1, 8, 8)).finetune_length(2)
    assert metrics["fc_variants"]["start_steps"] == 2 and metrics["fc_variants"]["finetune_steps"] == extra
    rows = metrics["rows"]
    assert [(r["method"], r["nfe"]) for r in rows] == [(m, n) for m in FC_ROWS for n in (10, 50)]
    assert {r["table"] for r in rows} == {"fc-variants"}
    for row in rows:
        assert math.isfinite(row["fd"]) and math.isfinite(row["fd_ratio"]) and row["change"]
        assert row["train_steps"] == (2 if row["method"] == "fm-start" else 2 + extra)
    assert {r["fd_ratio"] for r in rows if r["method"] == "finetune-fm"} == {1.0}
    # every fine-tuning from the start's state, on the same batches; only the loss differs
    states = {m: load(out / "checkpoints" / f"{m}-seed0.pt") for m in FC_ROWS[1:]}
    a = states["finetune-fm"]
    for name in FC_ROWS[2:]:
        b = states[name]
        assert a["batches"]["position"] == b["batches"]["position"]
        assert any(not torch.equal(a["model"][k], b["model"][k]) for k in a["model"]), name
    text = (out / "results.md").read_text()
    assert "## FC variants, fine-tuning on `digits-val`" in text and "not a validation split" not in text
    assert text.count("| finetune-defar.fc_until=0.57 | FC weight for t_s ≤ 0.57 only | 3 (2) |") == 1

    # Resumed in the same folder, every network loads and keeps its scored rows: nothing is sampled again.
    grid = out / rows[-1]["grid"]
    grid.unlink()
    assert main([*args, "--resume"]) == 0
    assert json.loads((out / "metrics.json").read_text())["rows"] == rows and not grid.exists()

    # A start network copied into another run's folder is loaded with --resume, not retrained.
    again = tmp_path / "again"
    (again / "checkpoints").mkdir(parents=True)
    (again / "checkpoints/fm-start-seed0.pt").write_bytes((out / "checkpoints/fm-start-seed0.pt").read_bytes())
    assert main([*_args("defar-ablation", again, extractor_cache, "--select", "fc", "--data", "digits-val",
                        "--num-samples", "20"), "--resume"]) == 0
    log = (again / "log.txt").read_text()
    assert "fm-start-seed0 step" in (out / "log.txt").read_text()  # trained in the first run
    assert "fm-start-seed0 step" not in log and "resumed from" in log and "finetune-defar-seed0 step" in log
    repeated = json.loads((again / "metrics.json").read_text())["rows"]
    assert [r["fd"] for r in repeated] == pytest.approx([r["fd"] for r in rows], rel=1e-5)
