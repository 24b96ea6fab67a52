"""The molecular recipe on a user's trajectory (``--data PATH --topology PDB --selection ...``): a small MD written
with mdtraj inside the test, run at a tiny budget, and the one-line errors of bad inputs."""

from __future__ import annotations

import json
import math

import pytest
import torch

from bfr_fast.data.molecules import molecule_dataset
from bfr_fast.train.cli import main
from bfr_fast.train.recipes.ala2 import load_trajectory_dataset

TINY = ["--steps", "3", "--num-samples", "30", "--sampler-steps", "2", "--batch-size", "16", "--device", "cpu"]
ROWS = 13  # base, noise injection, FMRefiner, DFR, LFR and their students at their NFEs (test_ala2_recipe.EXPECTED)


@pytest.fixture(scope="module")
def files(short_md, tmp_path_factory):
    """The 50-frame alanine dipeptide MD as a user would bring it: DCD and XTC trajectories, a PDB topology, and
    a PDB of its heavy atoms only (a topology that does not match the trajectories)."""
    folder = tmp_path_factory.mktemp("user_md")
    trajectory = short_md.to_mdtraj()
    trajectory[0].save_pdb(str(folder / "top.pdb"))
    trajectory.save_dcd(str(folder / "md.dcd"))
    trajectory.save_xtc(str(folder / "md.xtc"))
    heavy = trajectory.topology.select("not element H")
    trajectory[0].atom_slice(heavy).save_pdb(str(folder / "heavy.pdb"))
    return folder


def _run(folder, out, *extra):
    return main(["--recipe", "ala2", "--out", str(out), "--cache-dir", str(folder / "cache"), *TINY, *extra])


def test_a_user_trajectory_is_preprocessed_like_the_builtin_md(short_md, files):
    data = load_trajectory_dataset(files / "md.dcd", files / "top.pdb")
    expected = molecule_dataset(short_md.to_mdtraj(), "md", align=True)
    assert data.name == "md" and (data.train_x.shape[0], data.test_x.shape[0]) == (40, 10)
    # same frames (the DCD stores float32 nm), same alignment, centring and time-block split
    assert torch.allclose(data.train_x, expected.train_x, atol=1e-5)
    assert torch.allclose(data.test_x, expected.test_x, atol=1e-5)


def test_the_recipe_runs_on_a_user_trajectory_with_energies(files, tmp_path):
    out = tmp_path / "run"
    assert _run(files, out, "--data", str(files / "md.dcd"), "--topology", str(files / "top.pdb")) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["dataset"] == "md" and metrics["n_atoms"] == 22 and metrics["energies_absent"] is None
    assert metrics["provenance"]["trajectory"] == str(files / "md.dcd") and metrics["provenance"]["frames"] == 50
    assert len(metrics["rows"]) == ROWS and metrics["energy_constraints"] == "hbonds"
    for row in metrics["rows"] + [metrics["md_train"]]:
        assert math.isfinite(row["energy_error_percent_uncut"]) and 0 <= row["cov_r"] <= 1 and "basins" in row
    # the floor is MD frames of the user's own trajectory: their energies are physical
    assert metrics["md_train"]["excluded_generated"] == 0 and metrics["md_train"]["mean_reference"] < 0
    results = (out / "results.md").read_text()
    assert "BFR on md (40 training / 10 test MD frames" in results and "22 atoms" in results
    for name in ("energies.png", "ramachandran.png", "coverage_curves.png", "coverage_curves.json"):
        assert (out / "samples" / name).is_file(), name


def test_a_selection_without_a_force_field_gives_coverage_and_says_why_energies_are_absent(files, tmp_path):
    out = tmp_path / "heavy"
    assert _run(files, out, "--data", str(files / "md.xtc"), "--topology", str(files / "top.pdb"),
                "--selection", "not element H") == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_atoms"] == 10 and metrics["selection"] == "not element H"
    assert metrics["energies_absent"].startswith("topology: no force field") and metrics["energy_constraints"] is None
    for row in metrics["rows"] + [metrics["md_train"]]:
        assert row["energy_error_percent"] is None and row["excluded_generated"] is None
        assert row["energies_absent"] == metrics["energies_absent"] and 0 <= row["cov_p"] <= 1 and row["amr_r"] > 0
    results = (out / "results.md").read_text()
    assert "No energies: topology: no force field" in results and "missing 3 H atoms" in results
    assert "| — | — |" in results  # energy error and excluded columns of every row
    assert not (out / "samples" / "energies.png").exists() and (out / "samples" / "coverage_curves.png").is_file()
    assert "energies" not in metrics["figures"]


@pytest.mark.parametrize("extra, message", [
    (["--data", "{f}/md.dcd", "--topology", "{f}/heavy.pdb"],
     "--data: {f}/md.dcd does not match the topology (10 atoms)"),
    (["--data", "{f}/md.dcd", "--topology", "{f}/top.pdb", "--selection", "resname XYZ"],
     "--selection: 'resname XYZ' selects none of the topology's 22 atoms"),
    (["--data", "{f}/md.dcd", "--topology", "{f}/top.pdb", "--selection", "name CA and ("],
     "--selection: mdtraj cannot parse 'name CA and ('"),
    (["--data", "{f}/md.dcd", "--topology", "{f}/top.pdb", "--selection", "element H"],
     "--selection: 'element H' holds no heavy atom"),
    (["--data", "{f}/md.dcd"], "--topology: required unless every trajectory file is a PDB or HDF5 file"),
    (["--data", "{f}/missing.dcd", "--topology", "{f}/top.pdb"], "--data: '{f}/missing.dcd' is neither"),
    (["--topology", "{f}/top.pdb"], "--topology: only with --data TRAJECTORY"),
])
def test_bad_user_inputs_are_one_line_errors(files, tmp_path, capsys, extra, message):
    code = _run(files, tmp_path / "bad", *[arg.format(f=files) for arg in extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: " + message.format(f=files)), err
