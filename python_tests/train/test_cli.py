"""The CLI: a short real run writes a complete run folder; bad options give one clear error line."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import bfr_fast
from bfr_fast.checkpoint import load
from bfr_fast.ops import fused_available
from bfr_fast.train.cli import build_parser, main
from bfr_fast.engine.run_folder import RunFolder
from bfr_fast.engine.trainer import Trainer


@pytest.fixture(scope="module")
def short_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "flow"
    cache = tmp_path_factory.mktemp("cache")
    args = ["--recipe", "flow", "--out", str(out), "--steps", "30", "--num-samples", "100", "--cache-dir", str(cache),
            "--device", "cpu"]
    assert main(args) == 0
    return out, cache


def test_run_folder_is_complete(short_run):
    out, _ = short_run
    for name in ("config.json", "log.txt", "metrics.json", "results.md", "checkpoints/base.pt"):
        assert (out / name).is_file(), name
    assert not (out / RunFolder.LOCK_NAME).exists()  # removed when the run ended
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["recipe"] == "flow" and metrics["dataset"] == "digits" and metrics["extractor"] == "digitsnet"
    methods = [(r["method"], r["nfe"]) for r in metrics["rows"]]
    assert methods == [("real", 0), ("fm", 4), ("fm", 10), ("fm", 50), ("fm", 10)]
    for row in metrics["rows"]:
        assert row["fd"] >= 0 and 0 <= row["precision"] <= 1
        grid = Image.open(out / row["grid"])
        assert grid.size[0] > 100
    # Real images must score far better than 30 training steps of a flow.
    real, *generated = metrics["rows"]
    assert all(real["fd"] < row["fd"] for row in generated)
    table = (out / "results.md").read_text()
    assert "FD-digitsnet" in table and "FID" not in table
    # which ops ran, fused extension or eager fallback, is on record
    expected = "fused" if fused_available("cpu") else "eager"
    assert metrics["ops"]["backend"] == expected
    assert f"ops backend: backend {expected}" in (out / "log.txt").read_text()


def _rows(out: Path) -> list[dict]:
    return json.loads((out / "metrics.json").read_text())["rows"]


def _assert_same_networks(state: dict, expected: dict) -> None:
    assert state["step"] == expected["step"]
    for name in ("model", "ema"):
        assert state[name].keys() == expected[name].keys()
        assert all(torch.equal(state[name][key], expected[name][key]) for key in state[name]), name


def test_resume_continues_a_finished_run_without_training(short_run, capsys):
    out, cache = short_run
    before, rows = load(out / "checkpoints" / "base.pt"), _rows(out)
    args = ["--recipe", "flow", "--out", str(out), "--steps", "30", "--num-samples", "100", "--cache-dir", str(cache),
            "--resume"]
    assert main(args) == 0
    log = (out / "log.txt").read_text()
    assert "resumed from" in log and "at step 30" in log
    # Nothing trained, and the loaded weights (not fresh ones) give the run's metrics again.
    _assert_same_networks(load(out / "checkpoints" / "base.pt"), before)
    assert _rows(out) == rows


def test_an_interrupted_run_resumes_to_the_straight_runs_weights_and_metrics(short_run, tmp_path, monkeypatch):
    out, cache = short_run
    resumed = tmp_path / "flow"
    args = ["--recipe", "flow", "--out", str(resumed), "--steps", "30", "--num-samples", "100", "--cache-dir",
            str(cache), "--device", "cpu"]
    train_step, calls = Trainer._train_step, []

    def interrupted_at_step_13(self, x, y):  # Ctrl-C during step 13: the checkpoint holds step 12
        calls.append(1)
        if len(calls) == 13:
            raise KeyboardInterrupt
        return train_step(self, x, y)

    monkeypatch.setattr(Trainer, "_train_step", interrupted_at_step_13)
    assert main(args) == 130
    assert load(resumed / "checkpoints" / "base.pt")["step"] == 12 and not (resumed / "metrics.json").exists()
    monkeypatch.setattr(Trainer, "_train_step", train_step)
    assert main(["--out", str(resumed), "--resume", "--cache-dir", str(cache)]) == 0
    _assert_same_networks(load(resumed / "checkpoints" / "base.pt"), load(out / "checkpoints" / "base.pt"))
    assert [row["fd"] for row in _rows(resumed)] == [row["fd"] for row in _rows(out)]


@pytest.fixture
def quick(extractor_cache) -> list[str]:
    """Options that keep a run short, should a bug let one start that ought to be refused."""
    return ["--steps", "1", "--num-samples", "20", "--device", "cpu", "--cache-dir", str(extractor_cache)]


def _one_error_line(capsys) -> str:
    """The one line on stderr, checked to be an error (stderr is not a terminal here: no progress bars)."""
    [line] = capsys.readouterr().err.strip().split("\n")
    assert line.startswith("error: "), line
    return line


def test_second_run_into_a_run_folder_is_refused_and_changes_nothing(short_run, quick, capsys):
    out, _ = short_run
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file() and p.name != "log.txt"}
    args = ["--recipe", "flow", "--out", str(out), "--seed", "1", *quick]
    assert main(args) == 2
    err = _one_error_line(capsys)
    assert str(out) in err and "already holds a run" in err and "--resume" in err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file() and p.name != "log.txt"} == before


def test_a_run_that_stopped_before_producing_anything_leaves_the_folder_free(tmp_path, quick, capsys):
    out, data = tmp_path / "run", tmp_path / "unlabelled.npz"
    np.savez(data, x=np.random.default_rng(0).integers(0, 255, (50, 8, 8), dtype=np.uint8))  # no labels
    assert main(["--recipe", "flow", "--out", str(out), "--data", "npz", "--data-root", str(data), *quick]) == 2
    assert "no labels" in _one_error_line(capsys)
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "log.txt"]
    assert "run stopped" in (out / "log.txt").read_text()  # the reason stays in the log
    assert main(["--recipe", "flow", "--out", str(out), *quick]) == 0  # the same --out takes the next run
    assert json.loads((out / "config.json").read_text())["options"]["data"] is None


def test_a_locked_run_folder_is_refused_naming_the_holder(tmp_path, quick, capsys):
    out = tmp_path / "run"
    with RunFolder(out).claim(resume=False):  # another run holds the folder
        assert main(["--recipe", "flow", "--out", str(out), *quick]) == 2
    err = _one_error_line(capsys)
    assert str(out) in err and f"in use by process {os.getpid()}" in err
    assert not any(out.iterdir())  # the refused run wrote nothing; the holder's lock went when its block ended
    with RunFolder(out).claim(resume=False):  # released when the holder's block ended
        pass


def test_resume_of_a_folder_without_a_run_is_refused(tmp_path, quick, capsys):
    (tmp_path / "notes.txt").write_text("not a run")
    assert main(["--recipe", "flow", "--out", str(tmp_path), "--resume", *quick]) == 2
    assert "holds no run" in _one_error_line(capsys)


@pytest.mark.parametrize("where", ["file", "under-file"])
def test_out_that_cannot_be_a_folder_gives_one_error_line(where, tmp_path, quick, capsys):
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    out = blocker if where == "file" else blocker / "run"
    assert main(["--recipe", "flow", "--out", str(out), *quick]) == 2
    err = _one_error_line(capsys)
    assert "--out" in err and str(out) in err


def test_sigterm_saves_a_checkpoint_and_exits_143_naming_the_folder(tmp_path, extractor_cache):
    out = tmp_path / "run"
    command = [sys.executable, "-m", "bfr_fast.train", "--recipe", "flow", "--out", str(out), "--steps", "1000",
               "--device", "cpu", "--cache-dir", str(extractor_cache)]
    env = {**os.environ, "PYTHONPATH": str(Path(bfr_fast.__file__).parents[1]), "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        deadline = time.monotonic() + 120
        # a logged step: training is under way (log_every is 20 steps at 1000)
        while not ((out / "log.txt").is_file() and "INFO base step " in (out / "log.txt").read_text()):
            assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()[-2000:]
            time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 143, err[-2000:]
    last = err.strip().splitlines()[-1]
    assert "SIGTERM" in last and f"--resume --out {out}" in last and "<run folder>" not in last
    assert "run stopped: Terminated" in (out / "log.txt").read_text()
    assert load(out / "checkpoints" / "base.pt")["step"] >= 20
    assert not [p for p in out.rglob("*.tmp")] and not (out / RunFolder.LOCK_NAME).exists()
    assert "it/s" not in err and "\r" not in err  # stderr is a pipe: no progress bar


def test_a_diverged_run_fails_naming_the_step_and_writes_no_metrics(tmp_path, quick, capsys):
    out = tmp_path / "run"
    assert main(["--recipe", "flow", "--out", str(out), *quick, "--steps", "30", "--lr", "1e10"]) == 1
    err = _one_error_line(capsys)
    assert "base: training diverged at step" in err and "lower the learning rate" in err
    assert not (out / "metrics.json").exists() and not (out / "results.md").exists()
    assert "ERROR run stopped: FloatingPointError: base: training diverged at step" in (out / "log.txt").read_text()


def test_resume_takes_the_runs_options_and_refuses_a_changed_one(short_run, capsys):
    out, cache = short_run
    config = json.loads((out / "config.json").read_text())["options"]
    assert main(["--out", str(out), "--resume", "--lr", "1e-5", "--cache-dir", str(cache)]) == 2
    err = _one_error_line(capsys)
    assert f"--lr 1e-05 differs from the run's {config['lr']}" in err and "drop --lr" in err
    # only --out and --resume: the run's own options (flow, 30 steps), not the CLI's defaults (bfr)
    assert main(["--out", str(out), "--resume", "--cache-dir", str(cache)]) == 0
    assert json.loads((out / "config.json").read_text())["options"] == {**config, "resume": True}


def test_resume_from_a_truncated_checkpoint_gives_one_error_line(short_run, tmp_path, capsys):
    out, cache = short_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    checkpoint = copy / "checkpoints" / "base.pt"
    checkpoint.write_bytes(checkpoint.read_bytes()[:1000])
    assert main(["--out", str(copy), "--resume", "--cache-dir", str(cache)]) == 2
    err = _one_error_line(capsys)
    assert f"{checkpoint} is not a readable checkpoint" in err and "delete it" in err


@pytest.mark.parametrize(("recipe", "option"), [
    ("flow", ["--select", "fm"]), ("flow", ["--seeds", "2"]),
    ("flow", ["--base-steps", "5"]), ("flow", ["--sampler-steps", "5"]), ("ala2", ["--data-root", "/tmp"]),
    ("flow", ["--topology", "/tmp/top.pdb"]), ("flow", ["--selection", "all"]),
    ("flow", ["--energy-constraints", "none"]),
])
def test_an_option_the_recipe_does_not_use_is_refused(recipe, option, tmp_path, quick, capsys):
    out = tmp_path / "run"
    assert main(["--recipe", recipe, "--out", str(out), *quick, *option]) == 2
    err = _one_error_line(capsys)
    assert f"{option[0]}: the {recipe} recipe does not use it; drop {option[0]}" in err
    assert not out.exists()  # refused before the run folder is made


def test_too_few_samples_for_the_metrics_are_refused_before_the_run(tmp_path, quick, capsys):
    out = tmp_path / "run"
    assert main(["--recipe", "flow", "--out", str(out), *quick, "--num-samples", "3"]) == 2
    assert "--num-samples must be at least 4" in _one_error_line(capsys)
    assert not out.exists()


@pytest.mark.parametrize("content", [b"garbage\n", b""])
def test_an_inception_file_of_another_kind_is_refused_before_the_run(content, tmp_path, quick, capsys):
    fake = tmp_path / "inception-2015-12-05.pt"
    fake.write_bytes(content)
    out = tmp_path / "run"
    assert main(["--recipe", "flow", "--out", str(out), *quick, "--inception", str(fake)]) == 2
    err = _one_error_line(capsys)
    assert f"--inception: {fake} is not clean-fid's Inception TorchScript file" in err and "corrupted" not in err
    assert not out.exists()


def test_an_unlabelled_data_set_without_inception_fails_before_training(tmp_path, quick, capsys):
    archive = tmp_path / "unlabelled.npz"
    np.savez(archive, x=np.zeros((60, 8, 8), dtype=np.uint8))
    out = tmp_path / "run"
    args = ["--recipe", "flow", "--out", str(out), *quick, "--data", "npz", "--data-root", str(archive)]
    assert main(args) == 2
    err = _one_error_line(capsys)
    assert "has no labels" in err and "--inception" in err
    assert not (out / "checkpoints").exists()  # nothing was trained


def test_a_clipped_batch_size_is_recorded_as_it_ran(tmp_path, quick, capsys):
    out = tmp_path / "run"
    assert main(["--recipe", "flow", "--out", str(out), *quick, "--batch-size", "100000"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["networks"]["base"] == {"batch_size": 1438, "steps": 1, "lr": metrics["networks"]["base"]["lr"]}
    assert "base: batch size 100000 exceeds the 1438 training samples; batches of 1438" in capsys.readouterr().err


def test_there_is_no_guidance_option_that_nothing_reads(capsys):
    # No recipe samples with classifier-free guidance: an option that changed nothing would be recorded as if it had.
    with pytest.raises(SystemExit) as caught:
        main(["--recipe", "flow", "--guidance", "2"])
    assert caught.value.code == 2 and "unrecognized arguments: --guidance" in capsys.readouterr().err


def test_help_lists_recipes():
    text = build_parser().format_help()
    assert "flow" in text and "bfr" in text and "--recipe" in text and "--resume" in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--recipe", "nope"], "--recipe: unknown recipe 'nope'"),
        (["--steps", "-1"], "--steps must be a positive integer"),
        (["--base-steps", "0"], "--base-steps must be a positive integer"),
        (["--data", "cifar10", "--data-root", "/nonexistent/cifar", "--steps", "1"], "/nonexistent/cifar"),
        (["--device", "cuda:0"], "CUDA is not available"),
        (["--device", "tpu"], "--device must be auto, cpu, cuda or cuda:N, got 'tpu'"),
        (["--device", "cuda:x"], "--device must be auto, cpu, cuda or cuda:N, got 'cuda:x'"),
        (["--inception", "/nonexistent/inception.pt"], "inception-2015-12-05.pt"),
        (["--resume", "--out", "/nonexistent/run"], "--resume: the run folder"),
    ],
)
def test_bad_options_give_one_error_line(args, message, capsys, tmp_path):
    if "--out" not in args:
        args = [*args, "--out", str(tmp_path / "run")]
    if args[:2] == ["--device", "cuda:0"]:
        pytest.importorskip("torch").cuda.is_available() and pytest.skip("CUDA present")
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "Traceback" not in err and "\n" not in err
