"""``refine_generator``, the Python entry point, is the CLI: same options, same run folder, same rows; it takes a
network object too, and the run ends with the real-data floor."""

from __future__ import annotations

import json

import pytest

from bfr_fast.refine import main as refine_main
from bfr_fast.refine import refine_generator
from bfr_fast.sample import main as sample_main

BUDGET = {"steps": 2, "num_samples": 30, "eval_seeds": 1, "device": "cpu"}


def test_the_python_entry_point_gives_the_clis_rows(tmp_path, memorized, capsys):
    cache = tmp_path / "cache"
    cli = tmp_path / "cli"
    assert refine_main(["--generator", "memorized:Flow", "--generator-kwargs", '{"smoothing": 0.1}', "--data", "digits",
                        "--class-conditional", "--refiners", "dfr", "--no-distill", "--steps", "2", "--num-samples",
                        "30", "--eval-seeds", "1", "--device", "cpu", "--cache-dir", str(cache), "--out",
                        str(cli)]) == 0
    result = refine_generator(memorized.Flow(smoothing=0.1), "digits", tmp_path / "py", class_conditional=True,
                              refiners=["dfr"], distill=False, cache_dir=cache, **BUDGET)
    expected = json.loads((cli / "metrics.json").read_text())
    written = json.loads((tmp_path / "py" / "metrics.json").read_text())
    assert [r["fd"] for r in result.rows] == [r["fd"] for r in expected["rows"]] == [r["fd"] for r in written["rows"]]
    assert {r["method"] for r in result.rows} == {"base", "dfr"} and "dfr" in result.refiners
    assert written["generator"]["source"] == "<in-memory memorized:Flow>"  # not rebuilt as an untrained Flow()
    assert sample_main(["--run", str(tmp_path / "py"), "--refiner", "base", "--out", str(tmp_path / "s.npz")]) == 2
    assert "was a Python object given to refine_generator" in capsys.readouterr().err
    # the floor: real training images scored like a row, named in the table
    assert written["real"]["num_images"] == 30 and written["real"]["method"] == "real"
    assert "The floor of these metrics on this data" in (tmp_path / "py" / "results.md").read_text()


def test_the_python_entry_point_raises_the_clis_errors(tmp_path, memorized):
    with pytest.raises(ValueError, match="samples noise, not images"):
        refine_generator(memorized.ReversedFlow(), "digits", tmp_path / "r", class_conditional=True,
                         cache_dir=tmp_path / "cache", **BUDGET)
    with pytest.raises(ValueError, match="unknown options \\['stepz'\\]"):
        refine_generator(memorized.Flow(), "digits", tmp_path / "s", stepz=3)
    with pytest.raises(ValueError, match="--refiners: unknown \\['dfrr'\\]"):
        refine_generator(memorized.Flow(), "digits", tmp_path / "t", refiners=["dfrr"])
