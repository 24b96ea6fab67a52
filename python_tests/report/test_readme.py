"""The README's generated blocks: the committed README is what the command writes, and a changed or missing result
file is caught."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bfr_fast.report.readme import BLOCKS, ResultFileMissing, _clock, _wall_seconds, main, render

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def repo_copy(tmp_path: Path) -> Path:
    """README.md and the result files in a temporary root (figures left out), to change without touching the real
    ones."""
    shutil.copy(REPO / "README.md", tmp_path / "README.md")
    for folder in ("docs/results", "benchmarks/results"):
        shutil.copytree(REPO / folder, tmp_path / folder, ignore=shutil.ignore_patterns("*.png"))
    return tmp_path


def _edit_json(path: Path, edit) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def _row(rows, **match):
    return next(r for r in rows if all(r.get(k) == v for k, v in match.items()))


def test_committed_readme_regenerates_byte_for_byte():
    readme = (REPO / "README.md").read_text()
    assert render(readme, REPO) == readme, "README.md is stale: run `python -m bfr_fast.report.readme`"
    for name in BLOCKS:
        assert readme.count(f"<!-- generated: {name} -->") == 1


def test_check_passes_on_the_committed_readme(capsys):
    assert main(["--check", "--root", str(REPO)]) == 0
    assert capsys.readouterr().out == ""


def _set_lfr_energy(root: Path) -> None:
    _edit_json(root / "docs/results/chignolin-2ns/internal-16k/metrics.json",
               lambda m: _row(m["rows"], method="lfr", nfe_refiner=1, solver="euler").update(
                   energy_error_percent=81.53))


def _set_rmsd_speedup(root: Path) -> None:
    _edit_json(root / "benchmarks/results/cpu.json",
               lambda m: _row(m["rows"], op="pairwise_rmsd")["fused_speedup_vs"].update(mdtraj=6.5))


def _set_defar_fd(root: Path) -> None:
    _edit_json(root / "docs/results/defar-digits-v2/metrics.json",
               lambda m: _row(m["rows"], method="fm", seed=0, nfe=10).update(fd=2.786))


def _set_train_time(root: Path) -> None:
    path = root / "docs/results/ecosystem/logs/torchcfm-train.time"
    path.write_text(path.read_text().replace("(h:mm:ss or m:ss): 4:31.49", "(h:mm:ss or m:ss): 1:02:03.4"))


def _set_defar_default_time(root: Path) -> None:
    path = root / "docs/results/defar-digits-v2/timing/new-default/time-v.txt"
    path.write_text(path.read_text().replace("(h:mm:ss or m:ss): 43:27.12", "(h:mm:ss or m:ss): 44:01.6"))


def _set_chignolin_md_time(root: Path) -> None:
    path = root / "docs/results/chignolin-2ns/md-time-v.txt"
    path.write_text(path.read_text().replace("(h:mm:ss or m:ss): 27:21.21", "(h:mm:ss or m:ss): 30:00.0"))


def _set_finetuned_defar_fd(root: Path) -> None:
    # seed 1's DEFAR at 0.15 against its fm continuation's 0.204: below 0.9x on one seed of three
    _edit_json(root / "docs/results/defar-mnist5k-v3/finetune-3seeds/metrics.json",
               lambda m: _row(m["rows"], method="finetune-defar", seed=1, nfe=10).update(fd=0.15))


def _set_fc_bias(root: Path) -> None:
    _edit_json(root / "docs/results/defar-mnist5k-v3/fc-bias-fm.json",
               lambda m: m["all"].update(corr_weight_residual=0.612))


@pytest.mark.parametrize(("change", "shown"), [
    (_set_lfr_energy, "| **+81.5** |"),
    (_set_rmsd_speedup, "`pairwise_rmsd` is 6.5×"),
    (_set_defar_fd, "| 2.03 ± 0.65 |"),
    (_set_train_time, "| 1:02:03 |"),
    (_set_defar_default_time, "comparisons in 44:02 wall"),
    (_set_chignolin_md_time, "(30:00 wall on one thread)"),
    (_set_fc_bias, "correlates 0.61 with"),
    (_set_finetuned_defar_fd, "| 1 of 3 / 0 of 3 |"),
])
def test_a_changed_number_makes_the_check_fail_until_rewritten(repo_copy, capsys, change, shown):
    change(repo_copy)
    before = (repo_copy / "README.md").read_text()
    assert main(["--check", "--root", str(repo_copy)]) == 1
    captured = capsys.readouterr()
    assert any(line.startswith("+") and shown in line for line in captured.out.splitlines())
    assert "README.md is stale" in captured.err
    assert (repo_copy / "README.md").read_text() == before  # --check writes nothing

    assert main(["--root", str(repo_copy)]) == 0
    assert shown in (repo_copy / "README.md").read_text()
    assert main(["--check", "--root", str(repo_copy)]) == 0


@pytest.mark.parametrize("missing", [
    "docs/results/chignolin/metrics.json",
    "docs/results/ecosystem/logs/flow_matching-refine.time",
    "docs/results/chignolin-2ns/internal-16k/time-v.txt",
    "benchmarks/results/cpu-sampler.json",
    "docs/results/defar-mnist5k-v3/finetune-3seeds/config.json",
    "docs/results/defar-mnist5k-v3/fc-bias-fm.json",
])
def test_a_missing_file_is_an_error_naming_it(repo_copy, capsys, missing):
    (repo_copy / missing).unlink()
    with pytest.raises(ResultFileMissing, match=missing):
        render((repo_copy / "README.md").read_text(), repo_copy)
    assert main(["--check", "--root", str(repo_copy)]) == 2
    assert missing in capsys.readouterr().err


def test_markers_must_match_the_blocks(repo_copy):
    readme = (repo_copy / "README.md").read_text()
    with pytest.raises(ValueError, match="'<!-- generated: ala2 -->'"):
        render(readme.replace("<!-- /generated: ala2 -->", ""), repo_copy)
    with pytest.raises(ValueError, match="no function writes: typo"):
        render(readme + "<!-- generated: typo -->\n<!-- /generated: typo -->\n", repo_copy)


def test_wall_times_read_and_round_like_gnu_time(tmp_path):
    for text, seconds in (("4:31.49", 271.49), ("1:02:03.5", 3723.5)):
        (tmp_path / "t.time").write_text(f"\tElapsed (wall clock) time (h:mm:ss or m:ss): {text}\n")
        assert _wall_seconds(tmp_path, "t.time") == pytest.approx(seconds)
    assert [_clock(s) for s in (128.58, 59.5, 3723.4)] == ["2:09", "1:00", "1:02:03"]
