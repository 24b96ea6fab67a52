"""The molecular recipe on chignolin (``--data chignolin:NS:FRAMES``): a few-ps MD of the built CLN025, a tiny
budget, the paper's τ and energy cut-off in every header, and the one-line errors a user can run into."""

from __future__ import annotations

import json

import pytest

from bfr_fast.data.molecules import CHIGNOLIN, generate_reference_md
from bfr_fast.data.molecules.chignolin import chignolin_structure
from bfr_fast.train.cli import main, parse_options

MD = dict(nanoseconds=0.004, frames=50)  # 8 ps: 40 training and 10 test frames
DATA = f"chignolin:{MD['nanoseconds']}:{MD['frames']}"
TINY = ["--steps", "3", "--num-samples", "30", "--sampler-steps", "2", "--batch-size", "16", "--device", "cpu"]
ROWS = 13  # base, noise injection, FMRefiner, DFR, LFR and their students at their NFEs (test_ala2_recipe.EXPECTED)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """The recipe's chignolin MD (seed 0) at 8 ps after 1 ps of equilibration, where the recipe looks for it."""
    folder = tmp_path_factory.mktemp("cache")
    generate_reference_md(CHIGNOLIN.cache_path(folder, **MD), **MD, pdb_path=chignolin_structure(folder),
                          platform=CHIGNOLIN.platform, equilibration_ps=1.0, threads=1, progress=False)
    return folder


@pytest.fixture(scope="module")
def run(tmp_path_factory, cache):
    out = tmp_path_factory.mktemp("run") / "chignolin"
    assert main(["--recipe", "ala2", "--data", DATA, "--out", str(out), "--cache-dir", str(cache), *TINY]) == 0
    return out


def test_the_table_uses_the_papers_chignolin_threshold_and_cutoff(run):
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["system"] == "chignolin" and metrics["dataset"] == "chignolin" and metrics["n_atoms"] == 166
    assert metrics["threshold_angstrom"] == 0.35 and metrics["energy_cutoff_kj_mol"] == 2000.0
    assert metrics["provenance"]["platform"] == "CPU" and metrics["provenance"]["nanoseconds"] == MD["nanoseconds"]
    assert metrics["energy_constraints"] == "hbonds" and len(metrics["rows"]) == ROWS
    assert metrics["coordinates"] == "internal" and metrics["features"] == 3 * 166 - 6  # chignolin's default
    for row in metrics["rows"] + [metrics["md_train"]]:
        assert 0 <= row["cov_r"] <= 1 and 0 <= row["cov_p"] <= 1 and row["amr_r"] > 0 and row["rmsd_atoms"] == "heavy"
        assert 0 <= row["excluded_generated"] <= row["n_generated"] == 30
        assert "basins" not in row  # ten residues: no dipeptide basins
    floor = metrics["md_train"]  # MD frames: physical energies, none excluded, and below the cut-off by far
    assert floor["excluded_generated"] == 0 and floor["mean_reference"] < 0 and floor["mean_generated"] < 0
    results = (run / "results.md").read_text()
    assert "BFR on chignolin (CLN025, YYDPETGTWY) (40 training / 10 test MD frames" in results
    assert "166 atoms, internal coordinates, 492 features" in results
    assert "BFR on chignolin (CLN025, YYDPETGTWY) (40 training / 10 test MD frames" in results
    assert "COV-R (%, τ = 0.35 Å)" in results and "AMR-R (Å)" in results and "excluded (E > 2000 kJ/mol)" in results
    assert "the paper's chignolin values" in results


def test_coverage_curves_span_the_chignolin_range_with_the_floor(run):
    curves = json.loads((run / "samples" / "coverage_curves.json").read_text())
    taus = curves["threshold"]
    assert curves["table_threshold"] == 0.35 and 0.35 in taus
    assert taus[0] == pytest.approx(0.05) and taus[-1] == pytest.approx(5.0)
    assert "MD" in curves["floor"] and len(curves["rows"]) == ROWS + 1
    assert (run / "samples" / "coverage_curves.png").is_file() and (run / "samples" / "energies.png").is_file()
    assert not (run / "samples" / "ramachandran.png").exists()


@pytest.mark.parametrize("extra, message", [
    (["--data", "chignolin:abc"], "--data: NANOSECONDS must be a number"),
    (["--data", "chignolin:0.004:50", "--topology", "x.pdb"], "--topology: only with --data TRAJECTORY (the "
                                                              "built-in chignolin MD has its own)"),
    (["--data", "chignolin:0.004:50", "--selection", "resname XYZ"], "--selection: 'resname XYZ' selects none"),
    (["--data", "chignolins"], "--data: 'chignolins' is neither a system of ['ala2', 'chignolin']"),
    (["--data", "chignolin:0.004:50", "--selection", "resid 0 or resid 9"],
     "--coordinates internal: topology: internal coordinates need one molecule connected by bonds"),
])
def test_user_mistakes_are_one_line_errors(cache, tmp_path, capsys, extra, message):
    code = main(["--recipe", "ala2", "--out", str(tmp_path / "bad"), "--cache-dir", str(cache), *TINY, *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message in err[0], err


def test_a_run_recorded_before_coordinates_existed_resumes_in_cartesian_coordinates(run, tmp_path):
    """Chignolin's default became internal coordinates; a run folder whose config predates ``--coordinates``
    modelled Cartesian ones, and its resume must keep them (its checkpoints have 498 inputs, not 492)."""
    config = json.loads((run / "config.json").read_text())
    assert config["options"]["coordinates"] is None  # recorded as given: the system's default
    assert parse_options(["--resume", "--out", str(run)]).coordinates is None
    old = tmp_path / "old"
    old.mkdir()
    del config["options"]["coordinates"]
    (old / "config.json").write_text(json.dumps(config))
    assert parse_options(["--resume", "--out", str(old)]).coordinates == "cartesian"
    config["options"]["recipe"] = "bfr"  # a recipe that does not read the option gets nothing
    (old / "config.json").write_text(json.dumps(config))
    assert parse_options(["--resume", "--out", str(old)]).coordinates is None
