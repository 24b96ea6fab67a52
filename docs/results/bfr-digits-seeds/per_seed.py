"""Per training seed: the issue's 1-NFE criteria, from each run's ``metrics.json`` (evaluation-seed means).

    python docs/results/bfr-digits-seeds/per_seed.py RUN [RUN ...] > per_seed.md

For each run: the base's FD and recall; the best 1-NFE refined row (lowest FD among rows with ``nfe_refiner`` 1);
its FD ratio to the base, recall difference, and whether it beats noise injection and FMRefiner at 1 NFE; and
the 1-NFE ordering of the rows.
"""
import json
import statistics
import sys
from pathlib import Path


def means(rows):
    groups = {}
    for r in rows:
        if r.get("seed") is None:
            continue
        key = (r["method"], r.get("solver"), r["nfe_refiner"])
        groups.setdefault(key, []).append(r)
    return {k: {m: statistics.fmean(r[m] for r in v) for m in ("fd", "precision", "recall")} for k, v in groups.items()}


print("| run | training seed | base FD | best 1-NFE row | its FD | FD / base | recall − base's | beats noise_injection, fmrefiner (1 NFE) | 1-NFE order |")
print("|---|---|---|---|---|---|---|---|---|")
for run in map(Path, sys.argv[1:]):
    metrics = json.loads((run / "metrics.json").read_text())
    seed = json.loads((run / "config.json").read_text())["options"]["seed"]
    m = means(metrics["rows"])
    base = m[("base", None, 0)]
    one = {k[0]: v for k, v in m.items() if k[2] == 1}
    best = min(one, key=lambda k: one[k]["fd"])
    b = one[best]
    beats = b["fd"] < one["noise_injection"]["fd"] and b["fd"] < one["fmrefiner"]["fd"]
    order = " < ".join(f"{k} {v['fd']:.3g}" for k, v in sorted({**one, "base": base}.items(), key=lambda kv: kv[1]["fd"]))
    print(f"| {run.name} | {seed} | {base['fd']:.3f} | {best} | {b['fd']:.3f} | {b['fd'] / base['fd']:.2f} | "
          f"{b['recall'] - base['recall']:+.3f} | {'yes' if beats else 'no'} | {order} |")
