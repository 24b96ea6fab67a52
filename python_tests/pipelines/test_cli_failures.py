"""What a careless or unlucky user meets at ``python -m bfr_fast.refine`` and ``python -m bfr_fast.sample``: one
line on stderr and exit 2 before any training where the problem can be known before it, no file overwritten
without ``--overwrite``, no cache of a broken or since-changed generator reused (issue 30, cases 1 to 11)."""

from __future__ import annotations

import errno
import json
import logging
import shutil

import numpy as np
import pytest
import torch

from bfr_fast.data import load_dataset
from bfr_fast.refine import main as refine_main
from bfr_fast.sample import main as sample_main


@pytest.fixture(scope="module")
def user_files(tmp_path_factory, tiny_generators):
    """Tiny's and TenClasses' weights, and the digits as npz files: as they are, with labels 10..19, and as floats
    0..255 with one value of 1e6."""
    root = tmp_path_factory.mktemp("user")
    torch.manual_seed(0)
    torch.save(tiny_generators.Tiny().state_dict(), root / "tiny.pt")
    torch.save(tiny_generators.TenClasses().state_dict(), root / "ten.pt")
    digits = load_dataset("digits")
    pixels = {split: ((x[:, 0] + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()
              for split, x in (("train", digits.train_x), ("test", digits.test_x))}
    labels = {"train": digits.train_y.numpy(), "test": digits.test_y.numpy()}
    np.savez(root / "digits.npz", x_train=pixels["train"], y_train=labels["train"], x_test=pixels["test"],
             y_test=labels["test"])
    np.savez(root / "labels10.npz", x_train=pixels["train"], y_train=labels["train"] + 10,
             x_test=pixels["test"], y_test=labels["test"] + 10)
    floats = pixels["train"].astype(np.float32)
    floats[0, 0, 0] = 1e6
    np.savez(root / "outlier.npz", x=floats, y=labels["train"])
    return root


def _refine_args(root, out, *extra, generator="tiny_generators:Tiny", checkpoint="tiny.pt", data="digits.npz"):
    return ["--generator", generator, "--checkpoint", str(root / checkpoint), "--data", "npz", "--data-root",
            str(root / data), "--sampler-steps", "2", "--steps", "2", "--distill-steps", "2", "--num-samples", "30",
            "--eval-seeds", "1", "--cache-dir", str(root / "cache"), "--device", "cpu", "--out", str(out),
            "--no-sanity-check", *extra]  # untrained networks: the gate has its own tests (test_sanity.py)


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


@pytest.fixture(scope="module")
def finished_run(user_files):
    """A finished refine run of Tiny (DFR, LFR and their students); tests that change it work on a copy."""
    out = user_files / "run"
    assert refine_main(_refine_args(user_files, out)) == 0
    return out


def _sample_args(run, out, *extra):
    return ["--run", str(run), "--refiner", "base", "--num", "12", "--device", "cpu", "--out", str(out), *extra]


# Case 1: sample never overwrites without --overwrite, and writes atomically
@pytest.mark.parametrize("existing", ["x.npz", "x.png"])
def test_sample_refuses_an_existing_output_unless_overwrite(finished_run, tmp_path, capsys, existing):
    out = tmp_path / "x.npz"
    (tmp_path / existing).write_bytes(b"the user's own file")
    assert sample_main(_sample_args(finished_run, out)) == 2
    assert _one_line(capsys) == (f"error: --out: {tmp_path / existing} exists; pass --overwrite to replace it, "
                                 "or choose another --out")
    assert (tmp_path / existing).read_bytes() == b"the user's own file"
    assert sample_main(_sample_args(finished_run, out, "--overwrite")) == 0
    assert np.load(out)["samples"].shape == (12, 1, 8, 8)
    assert (tmp_path / "x.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob(".*.tmp"))


# Case 2: a text file as --checkpoint (fixed before issue 30: checkpoint.load; test_weights.py tests the function)
# Case 11: a folder as --checkpoint (fixed before issue 30: build_factory_network; test_ecosystem.py too)
@pytest.mark.parametrize(
    ("checkpoint", "message"),
    [
        ("notes.txt", "notes.txt is not a readable checkpoint (not a PyTorch checkpoint: "),
        ("a_folder", "a_folder is a folder; pass the checkpoint file inside it"),
    ],
)
def test_refine_names_an_unreadable_checkpoint(user_files, tmp_path, capsys, checkpoint, message):
    (user_files / "notes.txt").write_text("hello\n")
    (user_files / "a_folder").mkdir(exist_ok=True)
    assert refine_main(_refine_args(user_files, tmp_path / "run", checkpoint=checkpoint)) == 2
    assert message in _one_line(capsys)


# Case 3: labels beyond the generator's classes, found before any training
def test_refine_refuses_labels_the_generator_has_no_class_for(user_files, tmp_path, capsys):
    out = tmp_path / "run"
    args = _refine_args(user_files, out, "--class-conditional", generator="tiny_generators:TenClasses",
                        checkpoint="ten.pt", data="labels10.npz")
    assert refine_main(args) == 2
    assert _one_line(capsys) == (
        "error: --class-conditional: the data's labels go up to 19 (20 classes, 0 to 19), but "
        "tiny_generators:TenClasses fails on label 19: IndexError: index out of range in self; relabel the data "
        "within the network's classes, or build the network for 20 classes (--generator-kwargs)")
    assert not (out / "checkpoints").exists()


# Case 4: a full disk or an unwritable folder mid-run: one line naming the file; what was written stays whole
@pytest.mark.parametrize(("code", "reason"), [(errno.ENOSPC, "No space left on device"),
                                              (errno.EACCES, "Permission denied")])
def test_refine_names_the_file_a_full_disk_stopped(user_files, finished_run, tmp_path, capsys, monkeypatch, code,
                                                   reason):
    def full(*args, **kwargs):
        raise OSError(code, reason)

    monkeypatch.setattr(torch, "save", full)  # every checkpoint and cache goes through atomic_save's torch.save
    monkeypatch.setattr(logging.FileHandler, "flush", full)  # nor can log.txt grow: no "--- Logging error ---"
    out = tmp_path / "run"
    assert refine_main(_refine_args(user_files, out)) == 2  # the feature extractor is cached (finished_run)
    assert _one_line(capsys) == (f"error: cannot write {out / 'checkpoints' / 'pool.pt'} ({reason}); free space or "
                                 f"make the folder writable, then rerun with --resume --out {out} to continue")
    assert json.loads((out / "config.json").read_text())["options"]["out"] == str(out)  # written before: whole
    assert not list(out.rglob(".*.tmp"))


def test_sample_names_the_file_a_full_disk_stopped(finished_run, tmp_path, capsys, monkeypatch):
    out = tmp_path / "x.npz"
    assert sample_main(_sample_args(finished_run, out)) == 0
    before = out.read_bytes()

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "savez", full)
    assert sample_main(_sample_args(finished_run, out, "--overwrite")) == 2
    assert _one_line(capsys) == (f"error: cannot write {out} (No space left on device); free space or choose a "
                                 "writable --out")
    assert out.read_bytes() == before and not list(tmp_path.glob(".*.tmp"))


# Case 5: a generator that returns NaN is named, and nothing of it is cached
def test_refine_names_a_generator_that_samples_nan_and_caches_nothing(user_files, tmp_path, capsys):
    out = tmp_path / "run"
    assert refine_main(_refine_args(user_files, out, generator="tiny_generators:ReturnsNaN")) == 2
    assert _one_line(capsys) == (
        "error: --generator tiny_generators:ReturnsNaN gave NaN or infinite values in 1438 of 1438 pool "
        "samples; fix the network or its options so that it returns finite velocities")
    assert not list((out / "checkpoints").glob("*.pt"))


# Case 5: a resumed run whose generator changed since (same --checkpoint path, other weights) recomputes
def test_resume_recomputes_what_another_generator_made(user_files, tmp_path, capsys):
    weights = tmp_path / "weights.pt"
    shutil.copy(user_files / "tiny.pt", weights)
    out = tmp_path / "run"
    args = _refine_args(user_files, out, "--refiners", "dfr", "--no-distill", checkpoint=weights)
    assert refine_main(args) == 0
    first = torch.load(out / "checkpoints" / "pool.pt")
    state = torch.load(weights)
    state["net.2.bias"] += 0.5  # the user retrained the network, and saved it where it was
    torch.save(state, weights)
    capsys.readouterr()
    assert refine_main([*args, "--resume"]) == 0
    warning = f"{out / 'checkpoints' / 'pool.pt'} was made by another generator (the weights or code of " \
              f"--generator tiny_generators:Tiny changed since): recomputing it and every later stage"
    assert warning in capsys.readouterr().err
    assert warning in (out / "log.txt").read_text()
    again = torch.load(out / "checkpoints" / "pool.pt")
    assert again["generator"] != first["generator"]
    assert not torch.equal(again["x"], first["x"])
    log = (out / "log.txt").read_text().split("recomputing it and every later stage")[1]
    assert "dfr: resumed from" not in log  # the DFR trained on the old pool is trained again


# Case 6: too few samples to score a row, refused before any training
@pytest.mark.parametrize("num", ["1", "3"])
def test_refine_refuses_too_few_samples_before_training(user_files, tmp_path, capsys, num):
    out = tmp_path / "run"
    args = _refine_args(user_files, out)
    args[args.index("--num-samples") + 1] = num
    assert refine_main(args) == 2
    assert _one_line(capsys) == (f"error: --num-samples must be at least 4 (precision and recall need more samples "
                                 f"than their k = 3), got {num}")
    assert not out.exists()


# Case 7: a class-conditional generator that ignores its labels, refused before any training
def test_refine_refuses_a_generator_that_ignores_labels(user_files, tmp_path, capsys):
    out = tmp_path / "run"
    args = _refine_args(user_files, out, "--class-conditional", generator="tiny_generators:IgnoresLabels")
    assert refine_main(args) == 2
    assert _one_line(capsys) == (
        "error: --class-conditional: tiny_generators:IgnoresLabels's output does not depend on the label "
        "(labels 0 and 9 give the same velocity); drop --class-conditional, or fix the network so that it uses y "
        "(is --convention right?)")
    assert not (out / "checkpoints").exists()


# Case 8: data out of range: advice about the file, not a Python argument the CLI does not have
def test_refine_says_how_to_fix_data_out_of_range(user_files, tmp_path, capsys):
    assert refine_main(_refine_args(user_files, tmp_path / "run", data="outlier.npz")) == 2
    err = _one_line(capsys)
    assert err == (f"error: x in {user_files / 'outlier.npz'}: floating-point values in [0, 1e+06] are neither in "
                   "[0, 1] nor in [-1, 1]; rescale the images to [0, 1] or [-1, 1] (floats in 0..255: divide by "
                   "255), or store them as uint8 pixels 0..255")


# Case 9: a refiner's file deleted after the run: named, with how to make it again
def test_sample_names_a_deleted_refiner_file_and_the_way_back(finished_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    (run / "checkpoints" / "lfr_reflow-refiner.pt").unlink()
    args = _sample_args(run, tmp_path / "x.npz")
    args[args.index("--refiner") + 1] = "lfr_reflow"
    assert sample_main(args) == 2
    assert _one_line(capsys) == (
        f"error: --refiner: {run / 'checkpoints' / 'lfr_reflow-refiner.pt'} is missing, though "
        f"{run / 'metrics.json'} lists 'lfr_reflow'; rerun its python -m bfr_fast.refine command with --resume "
        f"(options in {run / 'config.json'}), which makes it again")
    args[args.index("--refiner") + 1] = "fmrefiner"  # never trained: the refiners it has
    assert sample_main(args) == 2
    assert "has no 'fmrefiner' refiner; it has ['base', 'dfr', 'dfr_reflow', 'lfr']" in _one_line(capsys)


# Case 10: samples are in the data's [-1, 1] (an untrained base's ODE lands far outside); NaN is an error
def test_sample_writes_samples_in_the_data_range(finished_run, tmp_path, capsys):
    out = tmp_path / "x.npz"
    assert sample_main(_sample_args(finished_run, out, "--num", "100")) == 0
    samples = np.load(out)["samples"]
    assert samples.min() >= -1.0 and samples.max() <= 1.0
    assert (np.abs(samples) == 1.0).mean() > 0.05  # clamped: this base's raw samples go far beyond

    run = tmp_path / "nan-run"
    shutil.copytree(finished_run, run)
    metrics = json.loads((run / "metrics.json").read_text())
    metrics["generator"]["source"] = "tiny_generators:ReturnsNaN"
    (run / "metrics.json").write_text(json.dumps(metrics))
    capsys.readouterr()
    assert sample_main(_sample_args(run, tmp_path / "nan.npz")) == 2
    assert _one_line(capsys) == (
        "error: --generator tiny_generators:ReturnsNaN gave NaN or infinite values in 12 of 12 samples; fix the "
        "network or its options so that it returns finite velocities")
    assert not (tmp_path / "nan.npz").exists()
