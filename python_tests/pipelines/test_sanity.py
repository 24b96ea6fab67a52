"""The gate before any training: exact generators pass as configured, and each convention mistake users make with
them (time direction, forgotten ε-parameterization, the DDPM's index taken for t) stops the refine CLI, exit 2,
with one line naming the likely causes, before any network trains. The libraries' trained generators and their
mistakes are measured in docs/results/ecosystem.md (too slow to train here)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch

from bfr_fast.data import load_dataset
from bfr_fast.pipelines.evaluation import Scorer, build_extractor
from bfr_fast.pipelines.generators import GeneratorSpec, frozen_generator
from bfr_fast.pipelines.refinement import RefinementTask, refinement_budget
from bfr_fast.pipelines.sanity import BaseLooksBroken, SanityCheck, check_base, measure_base
from bfr_fast.refine import main as refine_main


@pytest.fixture(scope="module")
def scorer(tmp_path_factory):
    data = load_dataset("digits")
    extractor = build_extractor(data, None, tmp_path_factory.mktemp("cache"), torch.device("cpu"))
    return data, Scorer.of(extractor, data)


def _task(spec: GeneratorSpec, scorer) -> RefinementTask:
    data, _ = scorer
    generator = frozen_generator(spec, data.image_shape, data.num_classes, torch.device("cpu"))
    return RefinementTask(data, refinement_budget(data.image_shape), generator, spec.conditional)


def _measure(spec: GeneratorSpec, scorer) -> SanityCheck:
    return measure_base(_task(spec, scorer), scorer[1], 0, torch.device("cpu"))


CORRECT = {
    "velocity": GeneratorSpec("memorized:Flow", conditional=True),
    "velocity, unconditional": GeneratorSpec("memorized:Flow"),
    "velocity, data-to-noise": GeneratorSpec("memorized:ReversedFlow", conditional=True,
                                             time_direction="data-to-noise"),
    "eps, DDPM index": GeneratorSpec("memorized:IndexEps", parameterization="eps", conditional=True),
}
WRONG = {
    "time direction": GeneratorSpec("memorized:ReversedFlow", conditional=True),
    "eps sampled as a velocity": GeneratorSpec("memorized:IndexEps", conditional=True),
    "--ddpm-time t for an index network": GeneratorSpec("memorized:IndexEps", parameterization="eps", ddpm_time="t",
                                                        conditional=True),
}


@pytest.mark.parametrize("name", CORRECT)
def test_correct_generators_pass(name, scorer, memorized):
    check = _measure(CORRECT[name], scorer)
    assert check.passed, check
    assert check.samples_to_data < 0.1 * check.noise_to_data  # not a near miss
    assert check.latents_to_noise < 0.85 * check.images_to_noise


@pytest.mark.parametrize("name", WRONG)
def test_each_convention_mistake_fails(name, scorer, memorized):
    assert not _measure(WRONG[name], scorer).passed


def test_the_rule_reads_every_distance():
    assert SanityCheck(10, 1.0, 50.0, 60.0, 20.0, 60.0).passed
    assert not SanityCheck(10, 30.0, 20.0, 60.0, 20.0, 60.0).passed  # samples closer to noise than to the data
    assert not SanityCheck(10, 70.0, 200.0, 60.0, 20.0, 60.0).passed  # garbage: farther from the data than noise
    assert not SanityCheck(10, 1.0, 50.0, 60.0, 70.0, 60.0).passed  # latents farther from noise than images are
    assert not SanityCheck(10, 1.0, 50.0, 60.0, 20.0, 60.0, finite=False).passed


def test_check_base_raises_one_line_naming_the_options(scorer, memorized):
    with pytest.raises(BaseLooksBroken) as caught:
        check_base(_task(WRONG["time direction"], scorer), scorer[1], 0, torch.device("cpu"), "memorized")
    message = str(caught.value)
    assert "\n" not in message and "--time-direction" in message and "--no-sanity-check" in message


def _cli(out: Path, cache: Path, source: str, *flags: str) -> list[str]:
    return ["--generator", source, "--data", "digits", "--class-conditional", "--steps", "2", "--distill-steps", "2",
            "--num-samples", "30", "--eval-seeds", "1", "--cache-dir", str(cache), "--device", "cpu",
            "--out", str(out), *flags]


@pytest.mark.parametrize(
    ("source", "flags"),
    [("memorized:ReversedFlow", ()), ("memorized:IndexEps", ()),
     ("memorized:IndexEps", ("--parameterization", "eps", "--ddpm-time", "t"))],
    ids=["time-direction", "forgotten-eps", "ddpm-time"],
)
def test_the_cli_stops_a_wrong_convention_before_training(source, flags, tmp_path, memorized, capsys):
    out = tmp_path / "run"
    start = time.perf_counter()
    assert refine_main(_cli(out, tmp_path / "cache", source, *flags)) == 2
    assert time.perf_counter() - start < 60
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "--time-direction" in err and "--parameterization" in err and "--ddpm-time" in err
    assert not (out / "checkpoints").exists() or not any((out / "checkpoints").iterdir())  # nothing trained
    assert "--no-sanity-check" in err


def test_no_sanity_check_lets_a_user_who_knows_better_run(tmp_path, memorized):
    out = tmp_path / "run"
    assert refine_main(_cli(out, tmp_path / "cache", "memorized:ReversedFlow", "--no-sanity-check", "--refiners",
                            "dfr", "--no-distill")) == 0
    assert json.loads((out / "metrics.json").read_text())["sanity_check"] is None


def test_a_passing_gate_is_recorded_in_the_runs_metrics(tmp_path, memorized):
    out = tmp_path / "run"
    assert refine_main(_cli(out, tmp_path / "cache", "memorized:Flow", "--refiners", "dfr", "--no-distill",
                            "--generator-kwargs", '{"smoothing": 0.1}')) == 0
    check = json.loads((out / "metrics.json").read_text())["sanity_check"]
    assert check["passed"] and check["samples_to_data"] < check["samples_to_noise"]
