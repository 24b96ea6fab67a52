"""End to end: a user's generator (a factory in its own module, a state-dict checkpoint, npz data) refined by
``python -m bfr_fast.refine`` and sampled by ``python -m bfr_fast.sample``; and their one-line errors."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest
import torch

from bfr_fast.data import load_dataset
from bfr_fast.refine import main as refine_main
from bfr_fast.sample import main as sample_main


@pytest.fixture()
def user_files(tmp_path, tiny_generators):
    """``tiny_generators:make``'s checkpoint, and the digits as an npz of uint8 images with labels."""
    torch.manual_seed(0)
    checkpoint = tmp_path / "tiny.pt"
    torch.save(tiny_generators.make().state_dict(), checkpoint)
    digits = load_dataset("digits")

    def uint8(x: torch.Tensor) -> np.ndarray:
        return ((x[:, 0] + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()

    data = tmp_path / "digits.npz"
    np.savez(data, x_train=uint8(digits.train_x), y_train=digits.train_y.numpy(), x_test=uint8(digits.test_x),
             y_test=digits.test_y.numpy())
    return tmp_path, checkpoint, data


def _refine_args(out, checkpoint, data, cache, *extra):
    return ["--generator", "tiny_generators:make", "--checkpoint", str(checkpoint), "--data", "npz", "--data-root",
            str(data), "--sampler-steps", "2", "--steps", "3", "--distill-steps", "2", "--num-samples", "30",
            "--eval-seeds", "1", "--cache-dir", str(cache), "--device", "cpu", "--out", str(out),
            "--no-sanity-check", *extra]  # an untrained network: the gate has its own tests (test_sanity.py)


def test_refine_then_sample_a_users_generator(user_files, capsys):
    tmp_path, checkpoint, data = user_files
    out = tmp_path / "run"
    assert refine_main(_refine_args(out, checkpoint, data, tmp_path / "cache")) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["command"] == "refine" and metrics["num_classes"] is None  # not --class-conditional
    rows = {(r["method"], r["solver"], r["nfe_refiner"]): r for r in metrics["rows"]}
    assert set(rows) == {("base", None, 0), ("dfr", "euler", 1), ("dfr", "euler", 10), ("dfr", "rk4", 4),
                         ("dfr_reflow", "euler", 1), ("lfr", "euler", 1), ("lfr", "euler", 10), ("lfr", "rk4", 4),
                         ("lfr_reflow", "euler", 1)}
    assert all(r["nfe_base"] == 2 for r in rows.values())  # the user's sampler, Euler 2 steps
    assert rows[("dfr_reflow", "euler", 1)]["teacher_nfe"] == 10
    for key, row in rows.items():  # every refined row scores other samples than the base
        assert np.isfinite(row["fd"]), key
        if key[0] != "base":
            assert row["fd"] != rows[("base", None, 0)]["fd"], key
    assert metrics["extractor"] == "npznet"  # the data's trained classifier, named in the table
    assert "FD-npznet" in (out / "results.md").read_text()
    for method in ("dfr", "lfr", "dfr_reflow", "lfr_reflow"):
        assert (out / "checkpoints" / f"{method}-refiner.pt").is_file()

    samples = tmp_path / "s" / "lfr.npz"
    assert sample_main(["--run", str(out), "--refiner", "lfr_reflow", "--num", "12", "--out", str(samples),
                        "--device", "cpu"]) == 0
    drawn = np.load(samples)
    assert drawn["samples"].shape == (12, 1, 8, 8) and "labels" not in drawn
    assert samples.with_suffix(".png").is_file()
    base = tmp_path / "s" / "base.npz"
    assert sample_main(["--run", str(out), "--refiner", "base", "--num", "12", "--out", str(base),
                        "--device", "cpu"]) == 0
    assert not np.allclose(np.load(base)["samples"], drawn["samples"])  # the refiner changed the samples

    # the run resumes: every stage loads, the same rows come back
    capsys.readouterr()
    assert refine_main(_refine_args(out, checkpoint, data, tmp_path / "cache", "--resume")) == 0
    again = json.loads((out / "metrics.json").read_text())
    assert [r["fd"] for r in again["rows"]] == [r["fd"] for r in metrics["rows"]]


@pytest.mark.parametrize(
    ("generator", "checkpoint", "message"),
    [
        ("no_such_module:make", None, "--generator: cannot import 'no_such_module'"),
        ("tiny_generators:missing", None, "--generator: 'tiny_generators' has no callable 'missing'"),
        ("tiny_generators:broken", None, "raised RuntimeError: no weights here"),
        ("tiny_generators:not_a_module", None, "returned a int, not a torch nn.Module"),
        ("tiny_generators", None, "expected a run folder or 'package.module:Callable'"),
        ("tiny_generators:make", "wrong", "does not fit tiny_generators:make(): 1 missing keys"),
    ],
)
def test_refine_names_what_is_wrong_with_the_generator(user_files, capsys, generator, checkpoint, message):
    tmp_path, good, data = user_files
    if checkpoint == "wrong":
        state = torch.load(good)
        state["extra.weight"] = state.pop("net.0.weight")
        checkpoint = tmp_path / "wrong.pt"
        torch.save(state, checkpoint)
    args = _refine_args(tmp_path / "run", checkpoint or good, data, tmp_path / "cache")
    args[1] = generator
    assert refine_main(args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_refine_refuses_data_of_another_shape(user_files, capsys):
    tmp_path, checkpoint, _ = user_files
    rng = np.random.default_rng(0)
    small = tmp_path / "small.npz"
    np.savez(small, x=rng.integers(0, 255, (40, 6, 6), dtype=np.uint8), y=rng.integers(0, 2, 40))
    assert refine_main(_refine_args(tmp_path / "run", checkpoint, small, tmp_path / "cache")) == 2
    err = capsys.readouterr().err
    assert "--generator: tiny_generators:make fails on a batch of the data's shape (2, 1, 6, 6)" in err


def test_sample_names_a_missing_refiner(user_files, capsys, tmp_path):
    assert sample_main(["--run", str(tmp_path / "nothing"), "--out", str(tmp_path / "x.npz")]) == 2
    assert "has no readable metrics.json" in capsys.readouterr().err


def test_an_eps_model_runs_through_its_probability_flow_ode_with_its_own_time(tmp_path, monkeypatch):
    from bfr_fast.paths import DDPMSchedule, ProbabilityFlowVelocity
    from bfr_fast.pipelines.generators import GeneratorSpec, frozen_generator

    (tmp_path / "eps_model.py").write_text(textwrap.dedent('''
        import torch
        from torch import nn

        SEEN = []

        class Eps(nn.Module):
            def __init__(self):
                super().__init__()
                self.scale = nn.Parameter(torch.tensor(0.5))

            def forward(self, x, t):
                SEEN.append(t.clone())
                return self.scale * x

        def make():
            return Eps()
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    import eps_model  # noqa: PLC0415

    spec = GeneratorSpec("eps_model:make", parameterization="eps", ddpm_steps=100, ddpm_time="index",
                         sampler_steps=4)
    generator = frozen_generator(spec, (1, 4, 4), None, torch.device("cpu"))
    assert isinstance(generator.model, ProbabilityFlowVelocity)
    x = torch.randn(3, 1, 4, 4)
    t = torch.full((3,), 0.25)
    eps_model.SEEN.clear()
    expected = ProbabilityFlowVelocity(eps_model.make(), DDPMSchedule(100), model_time="index")(x, t)
    torch.testing.assert_close(generator.model(x, t), expected)
    torch.testing.assert_close(eps_model.SEEN[-1], torch.full((3,), 99 * 0.75))  # the DDPM index, not t
