"""Runs the op benchmarks: ``python -m benchmarks.run [--ops lincomb,rmsd] [--device cpu|cuda] [--quick]``.

Each op's cases come from ``benchmarks/bench_<op>.py`` (a ``cases(device, quick)`` function). Results go to
``benchmarks/results/<device>.json`` and ``.md``, except those of a case group of their own (the sampler against
its peers: ``<device>-sampler.json`` and ``.md``); ``docs/results/ops.md`` shows the markdown tables.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
from pathlib import Path

import torch

import benchmarks
from benchmarks.harness import run_case, write_results

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def available_ops() -> list[str]:
    """Names of the benchmark modules ``bench_<op>``."""
    return sorted(m.name[len("bench_") :] for m in pkgutil.iter_modules(benchmarks.__path__) if m.name.startswith("bench_"))


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
    for name in devices:
        device = torch.device(name)
        rows = []
        for op in ops:
            for case in importlib.import_module(f"benchmarks.bench_{op}").cases(device, args.quick):
                row = run_case(case, min_run_time)
                speedups = ", ".join(f"{v} {r:.2f}x" for v, r in row["fused_speedup_vs"].items())
                print(f"[{name}] {op}: {case.name}: fused vs {speedups}", flush=True)
                rows.append(row)
        for group in dict.fromkeys(row["group"] for row in rows):
            stem = device.type + ("" if group == "ops" else f"-{group}") + ("-quick" if args.quick else "")
            selected = [row for row in rows if row["group"] == group]
            json_path, md_path = write_results(selected, device, args.out, args.quick, name=stem)
            print(f"wrote {json_path} and {md_path}")


if __name__ == "__main__":
    main()
