"""The benchmark runner's results files: a run of some ops keeps the other ops' rows, and only from this machine;
the timing harness records a variant that raises instead of dropping the case."""

from __future__ import annotations

import json

import pytest
import torch

from benchmarks.harness import device_description, markdown_table, time_variants
from benchmarks.run import kept_rows

CPU = torch.device("cpu")


def row(module: str, op: str, ran: str) -> dict:
    return {"op": op, "case": f"{op} case", "unit": "GB/s", "work": 1.0, "seconds": {"fused": 1.0},
            "throughput": {"fused": 1.0}, "fused_speedup_vs": {}, "errors": {}, "notes": [], "agreement": {},
            "group": "ops", "ran": ran, "module": module}


def write(path, rows, machine=None, version=None) -> None:
    path.write_text(json.dumps({"device": "cpu", "machine": machine or device_description(CPU),
                                "torch": version or torch.__version__, "quick": False, "rows": rows}))


def test_kept_rows_keeps_only_the_modules_not_rerun(tmp_path):
    path = tmp_path / "cpu.json"
    write(path, [row("lincomb", "lincomb", "then"), row("spectral", "fc_weighted_mse", "then"),
                 row("spectral", "band_energy", "then")])
    kept = kept_rows(path, ["lincomb"], CPU)
    assert [r["op"] for r in kept] == ["fc_weighted_mse", "band_energy"]
    assert kept_rows(path, ["lincomb", "spectral"], CPU) == []


@pytest.mark.parametrize("field", ["machine", "torch"])
def test_kept_rows_drops_rows_of_another_machine_or_torch(tmp_path, field):
    path = tmp_path / "cpu.json"
    rows = [row("rmsd", "rmsd", "then")]
    write(path, rows, **({"machine": "another CPU"} if field == "machine" else {"version": "1.0"}))
    assert kept_rows(path, ["lincomb"], CPU) == []
    write(path, rows)
    assert kept_rows(path, ["lincomb"], CPU) == rows


def test_kept_rows_drops_rows_without_a_known_module(tmp_path):
    path = tmp_path / "cpu.json"
    legacy = row("rmsd", "rmsd", "then")
    del legacy["module"]
    write(path, [legacy, row("no_such_bench", "x", "then"), row("rmsd", "rmsd", "then")])
    assert [r.get("module") for r in kept_rows(path, ["lincomb"], CPU)] == ["rmsd"]


def test_kept_rows_of_a_missing_or_broken_file_are_none(tmp_path):
    assert kept_rows(tmp_path / "absent.json", ["lincomb"], CPU) == []
    (tmp_path / "broken.json").write_text("{not json")
    assert kept_rows(tmp_path / "broken.json", ["lincomb"], CPU) == []


def test_markdown_names_the_runs_of_a_merged_table():
    table = markdown_table([row("lincomb", "lincomb", "run A"), row("rmsd", "rmsd", "run B")], "CPU")
    assert "measured in the run of run A: lincomb" in table and "measured in the run of run B: rmsd" in table
    assert "measured in the run of" not in markdown_table([row("rmsd", "rmsd", "run B")], "CPU")


def test_time_variants_times_every_working_variant_and_records_the_broken_one():
    calls = {"ok": 0}

    def ok() -> None:
        calls["ok"] += 1

    def broken() -> None:
        raise RuntimeError("no kernel for this dtype\nsecond line")

    seconds, errors = time_variants({"fused": ok, "eager": broken}, min_run_time=0.01, rounds=3)
    assert seconds.keys() == {"fused"} and seconds["fused"] > 0
    assert errors == {"eager": "RuntimeError: no kernel for this dtype"}
    assert calls["ok"] > 3  # the warm-up call and every round's
