"""Spread over training seeds: per-run means over evaluation seeds, then mean ± std over runs."""

from __future__ import annotations

import json
import statistics

import pytest

from bfr_fast.report.aggregate import aggregate, load_run, main, run_means


def _write_run(folder, seed, fds, recipe="bfr"):
    folder.mkdir(parents=True)
    rows = [{"method": m, "nfe_base": 20, "nfe_refiner": n, "seed": seed + k, "fd": fd, "kid": 0.1}
            for k, fd in enumerate(fds) for m, n in (("base", 0), ("dfr", 1))]
    rows[-1]["fd"] += 1.0  # the last dfr row differs: per-run means must see it
    (folder / "metrics.json").write_text(json.dumps({"rows": rows, "seconds": 10.0}))
    (folder / "config.json").write_text(json.dumps({"options": {"recipe": recipe, "seed": seed}}))
    return folder


def test_run_means_average_evaluation_seeds_per_group():
    rows = [{"method": "a", "seed": s, "fd": v} for s, v in ((0, 1.0), (1, 3.0))] + [{"method": "b", "fd": 5.0}]
    assert run_means(rows, ["method"], ["fd", "kid"]) == [
        {"method": "a", "eval_seeds": 2, "fd": 2.0}, {"method": "b", "eval_seeds": 1, "fd": 5.0}]


def test_aggregate_takes_spread_over_runs_not_evaluation_seeds(tmp_path):
    runs = [load_run(_write_run(tmp_path / f"s{s}", s, fds)) for s, fds in ((0, (1.0, 3.0)), (1, (5.0, 5.0)))]
    result = aggregate(runs, ["method", "nfe_refiner"], ["fd"])
    base = next(r for r in result["summary"] if r["method"] == "base")
    assert base["training seeds"] == 2
    assert base["fd"] == f"{3.5:.4g} ± {statistics.stdev([2.0, 5.0]):.2g}"  # run means 2 and 5
    dfr = [r["fd"] for r in result["per_run"] if r["method"] == "dfr"]
    assert dfr == [2.5, 5.5]
    assert [r["seed"] for r in result["runs"]] == [0, 1]


def test_aggregate_refuses_what_gives_no_honest_spread(tmp_path):
    a = load_run(_write_run(tmp_path / "a", 0, (1.0,)))
    with pytest.raises(ValueError, match="at least two"):
        aggregate([a])
    with pytest.raises(ValueError, match="distinct training seeds"):
        aggregate([a, load_run(_write_run(tmp_path / "b", 0, (2.0,)))])
    with pytest.raises(ValueError, match="one recipe"):
        aggregate([a, load_run(_write_run(tmp_path / "c", 1, (2.0,), recipe="flow"))])
    with pytest.raises(ValueError, match="metrics.json"):
        load_run(tmp_path / "missing")


def test_command_line_writes_json_and_markdown(tmp_path, capsys):
    folders = [str(_write_run(tmp_path / f"s{s}", s, (1.0 + s,))) for s in range(3)]
    assert main([*folders, "--out", str(tmp_path / "agg"), "--metrics", "fd"]) == 0
    payload = json.loads((tmp_path / "agg" / "aggregate.json").read_text())
    assert len(payload["runs"]) == 3 and len(payload["per_run"]) == 6
    table = (tmp_path / "agg" / "aggregate.md").read_text()
    assert "training seeds 0, 1, 2" in table and "| base | 20 | 0 | 3 | 2 ± 1 |" in table
    assert main([folders[0], "--out", str(tmp_path / "bad")]) == 2
    assert "at least two" in capsys.readouterr().err
