"""Runs the op benchmarks: ``python -m benchmarks.run [--ops lincomb,rmsd] [--device cpu|cuda] [--quick]``.

Each op's cases come from ``benchmarks/bench_<op>.py`` (a ``cases(device, quick)`` function). Results go to
``benchmarks/results/<device>.json`` and ``.md``, except those of a case group of their own (the sampler against
its peers: ``<device>-sampler.json`` and ``.md``); ``docs/results/ops.md`` shows the markdown tables. A run of some
ops replaces their rows and keeps the others' (:func:`kept_rows`); every row records when it ran.
"""

from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
import time
from pathlib import Path

import torch

import benchmarks
from benchmarks.harness import device_description, run_case, write_results

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def available_ops() -> list[str]:
    """Names of the benchmark modules ``bench_<op>``."""
    return sorted(m.name.removeprefix("bench_") for m in pkgutil.iter_modules(benchmarks.__path__)
                  if m.name.startswith("bench_"))


def kept_rows(path: Path, ops: list[str], device: torch.device) -> list[dict]:
    """The rows of an earlier results file from benchmark modules that this run does not time, when it was written
    on this machine with this torch: ``--ops lincomb`` replaces the lincomb rows and keeps the others. Each row
    keeps the time (``ran``) of the run that measured it, and a row's ratios all come from that one run. Rows
    written before rows recorded their module are not kept."""
    if not path.is_file():
        return []
    try:
        previous = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    if (previous.get("device") != device.type or previous.get("machine") != device_description(device)
            or previous.get("torch") != torch.__version__):
        return []
    # A row from before rows recorded their module, or from a module since removed, cannot be placed: not kept.
    known = set(available_ops()) - set(ops)
    return [row for row in previous.get("rows", []) if row.get("module") in known]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ops", default="all", help=f"comma-separated subset of {available_ops()} (default: all)")
    parser.add_argument("--device", action="append", choices=["cpu", "cuda"], help="default: cpu, and cuda if present")
    parser.add_argument("--quick", action="store_true", help="small sizes and short timing (a smoke run)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="output folder (default: benchmarks/results)")
    args = parser.parse_args(argv)

    ops = available_ops() if args.ops == "all" else args.ops.split(",")
    unknown = sorted(set(ops) - set(available_ops()))
    if unknown:
        parser.error(f"--ops: unknown {unknown}; choose from {available_ops()}")
    devices = args.device or ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    if "cuda" in devices and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    min_run_time = 0.2 if args.quick else 1.0
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    for name in devices:
        device = torch.device(name)
        rows = []
        for op in ops:
            for case in importlib.import_module(f"benchmarks.bench_{op}").cases(device, args.quick):
                row = run_case(case, min_run_time)
                row["ran"] = started
                row["module"] = op  # bench_<op>: one module times several ops (spectral: fc_weighted_mse, ...)
                speedups = ", ".join(f"{v} {r:.2f}x" for v, r in row["fused_speedup_vs"].items())
                print(f"[{name}] {op}: {case.name}: fused vs {speedups}", flush=True)
                rows.append(row)
        for group in dict.fromkeys(row["group"] for row in rows):
            stem = device.type + ("" if group == "ops" else f"-{group}") + ("-quick" if args.quick else "")
            selected = [*kept_rows(args.out / f"{stem}.json", ops, device),
                        *(row for row in rows if row["group"] == group)]
            order = available_ops()
            selected.sort(key=lambda row: order.index(row["module"]))  # stable: cases keep their order
            json_path, md_path = write_results(selected, device, args.out, args.quick, name=stem)
            print(f"wrote {json_path} and {md_path}")


if __name__ == "__main__":
    main()
