"""A refine run's log: one line per stage with its wall time; nothing of a progress bar on a piped stderr."""

from __future__ import annotations

import re

from bfr_fast.refine import main as refine_main

STAGES = ("pool", "inversion cache", "refiner dfr", "refiner lfr", "distillation dfr_reflow",
          "distillation lfr_reflow", "evaluation")


def test_the_log_has_one_timed_line_per_stage(tmp_path, memorized, capsys):
    out = tmp_path / "run"
    assert refine_main(["--generator", "memorized:Flow", "--generator-kwargs", '{"smoothing": 0.1}', "--data", "digits",
                        "--sampler-steps", "4", "--steps", "2", "--distill-steps", "2", "--num-samples", "30",
                        "--eval-seeds", "1", "--device", "cpu", "--cache-dir", str(tmp_path / "cache"), "--out",
                        str(out)]) == 0
    stages = re.findall(r"^\S+ INFO (.+): done in \d+\.\d s$", (out / "log.txt").read_text(), re.MULTILINE)
    assert tuple(stages) == STAGES
    err = capsys.readouterr().err
    assert "it/s" not in err and "\r" not in err  # stderr is not a terminal: no bars
