"""Compares the metrics.json rows of two sets of runs of runs.sh (same folders): identical, or the differences.

    python compare.py OLD_DIR NEW_DIR
"""
import json, sys, math
from pathlib import Path
old, new = (Path(p) for p in sys.argv[1:3])
def strip(r):
    return {k: v for k, v in r.items() if k not in ("train_seconds", "grid")}
for d in sorted(p.name for p in old.iterdir()):
    o, n = old / d / "metrics.json", new / d / "metrics.json"
    if not n.is_file():
        print(d, "NEW MISSING"); continue
    ro, rn = json.loads(o.read_text())["rows"], json.loads(n.read_text())["rows"]
    if len(ro) != len(rn):
        print(d, "row count", len(ro), len(rn)); continue
    bad = 0
    for a, b in zip(ro, rn):
        a, b = strip(a), strip(b)
        for k in set(a) | set(b):
            va, vb = a.get(k), b.get(k)
            if isinstance(va, float) and isinstance(vb, float):
                if not (va == vb or (math.isnan(va) and math.isnan(vb))):
                    bad += 1; print(" ", d, a.get("method"), k, va, vb) if bad < 5 else None
            elif va != vb:
                bad += 1; print(" ", d, a.get("method"), k, va, vb) if bad < 5 else None
    print(d, "rows", len(ro), "identical" if bad == 0 else f"{bad} differences")
