"""A resumed comparison reads back the rows it scored before (``scored/*.json``) instead of sampling again, and
scores again the rows of a network whose weights changed (issue 28)."""

from __future__ import annotations

import json

import torch

from bfr_fast.checkpoint import atomic_save, load
from bfr_fast.pipelines.comparison import EvalSampler
from bfr_fast.train.cli import main


def test_a_resumed_comparison_reads_its_rows_back_unless_the_network_changed(tmp_path, extractor_cache, monkeypatch):
    out = tmp_path / "defar"
    args = ["--recipe", "defar", "--out", str(out), "--steps", "2", "--cache-dir", str(extractor_cache),
            "--device", "cpu", "--seeds", "1", "--select", "fm", "--num-samples", "20"]
    assert main(args) == 0
    rows = json.loads((out / "metrics.json").read_text())["rows"]
    names = sorted(p.stem for p in (out / "scored").glob("*.json"))
    assert names == sorted(f"fm-seed0-ode{r['nfe']}" for r in rows) and len(names) == 3
    stored = json.loads((out / "scored" / f"{names[0]}.json").read_text())
    assert stored["identity"]["train_step"] == 2 and stored["identity"]["num_samples"] == 20

    calls: list[str] = []
    sample = EvalSampler.sample

    def counted(self: EvalSampler, *args: object) -> torch.Tensor:
        calls.append(self.tag)
        return sample(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(EvalSampler, "sample", counted)
    assert main([*args, "--resume"]) == 0  # nothing changed: every row is read back
    assert calls == [] and json.loads((out / "metrics.json").read_text())["rows"] == rows

    # Other weights at the same step (a retrained network): every row of it is scored again, its files rewritten.
    path = out / "checkpoints" / "fm-seed0.pt"
    checkpoint = load(path)
    for part in ("model", "ema"):
        checkpoint[part] = {k: v + 0.05 if v.is_floating_point() else v for k, v in checkpoint[part].items()}
    atomic_save(checkpoint, path)
    assert main([*args, "--resume"]) == 0
    again = json.loads((out / "metrics.json").read_text())["rows"]
    assert sorted(calls) == sorted(f"ode{r['nfe']}" for r in rows)
    assert [r["fd"] for r in again] != [r["fd"] for r in rows]
    assert json.loads((out / "scored" / f"{names[0]}.json").read_text())["identity"]["ema"] != stored["identity"]["ema"]
    calls.clear()
    assert main([*args, "--resume"]) == 0 and calls == []  # the rewritten rows are read back
