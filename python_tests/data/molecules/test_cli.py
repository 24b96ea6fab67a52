"""``python -m bfr_fast.data.molecules``: generates, refuses to overwrite, reports basins, explains errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from bfr_fast.data.molecules import load_reference_md
from bfr_fast.data.molecules.__main__ import main

ARGS = ["--ns", "0.002", "--frames", "10", "--equilibration-ps", "0.2", "--seed", "3", "--no-progress"]


def test_generates_then_keeps_the_file(tmp_path, capsys):
    out = tmp_path / "md.npz"
    assert main(["--out", str(out), *ARGS]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["frames"] == 10 and sum(summary["basin_populations"].values()) == pytest.approx(1.0)
    assert load_reference_md(out).provenance["seed"] == 3
    before = out.stat().st_mtime_ns
    assert main(["--out", str(out), *ARGS]) == 0
    assert "not overwriting" in capsys.readouterr().out and out.stat().st_mtime_ns == before


def test_chignolin_is_built_beside_the_archive_and_its_speed_reported(tmp_path, capsys):
    out = tmp_path / "chignolin.npz"
    assert main(["--out", str(out), "--system", "chignolin", "--threads", "1", *ARGS]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["structure"] == "chignolin-cln025-built.pdb" and (tmp_path / summary["structure"]).is_file()
    assert summary["platform"] == "CPU" and summary["threads"] == 1 and summary["ns_per_day"] > 0
    assert "basin_populations" not in summary  # ten residues: no dipeptide basins
    assert load_reference_md(out).coordinates.shape == (10, 166, 3)


def test_bad_arguments_exit_with_a_message(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--out", str(tmp_path / "md.npz"), "--ns", "0.0001", "--frames", "100"])
    assert exit_info.value.code == 2 and "frames" in capsys.readouterr().err


def test_help_runs_as_a_module():
    result = subprocess.run([sys.executable, "-m", "bfr_fast.data.molecules", "--help"], capture_output=True,
                            text=True, check=True)
    assert "--ns" in result.stdout and "--out" in result.stdout
