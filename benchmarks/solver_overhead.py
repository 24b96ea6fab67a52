"""Per-step cost of :class:`bfr_fast.solvers.ODESolver` outside the model: a zero-cost velocity model.

``OMP_NUM_THREADS=1 python -m benchmarks.solver_overhead [--repeats 7] [--steps 20] [--json PATH]``

The model returns its input (``lambda x, t, **kw: x``), so what is timed is the solver's own work per step: the
stage inputs and the update (``lincomb``), the time and coefficient look-ups, and the Python around them. Each
configuration is timed ``--repeats`` times (each repeat the best of several calls of ``sample``); the median of the
repeats is reported, in microseconds per step and per model call (NFE). Also: a bare loop of the same
``lincomb`` calls with the same coefficients, without the solver (the floor the solver's bookkeeping sits on).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from bfr_fast.ops import lincomb
from bfr_fast.solvers import TABLEAUX, ODESolver

STATES = {"tiny (256, 66)": (256, 66), "one sample (1, 2)": (1, 2)}
METHODS = ("euler", "midpoint", "rk4")


def _zero_cost(x: torch.Tensor, t: torch.Tensor, **extras: object) -> torch.Tensor:
    return x


def _best_of(fn, calls: int) -> float:
    best = float("inf")
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def _bare_loop(x: torch.Tensor, method: str, steps: int, backend: str) -> torch.Tensor:
    """The same lincomb calls as the solver's loop, coefficients written in, no solver."""
    tableau = TABLEAUX[method]
    h = 1.0 / steps
    for _ in range(steps):
        ks: list[torch.Tensor] = []
        for row in tableau.a:
            pairs = [(k, m * h) for k, m in zip(ks, row) if m]
            stage = lincomb(x, [k for k, _ in pairs], [c for _, c in pairs], backend=backend) if pairs else x
            ks.append(stage)
        pairs = [(k, m * h) for k, m in zip(ks, tableau.b) if m]
        x = lincomb(x, [k for k, _ in pairs], [c for _, c in pairs], backend=backend)
    return x


def measure(repeats: int, steps: int, backend: str, calls: int = 5) -> list[dict]:
    rows = []
    for state_name, shape in STATES.items():
        x0 = torch.randn(*shape)
        for method in METHODS:
            for grid_kind in ("shared", "per-sample"):
                solver = ODESolver(_zero_cost, method, backend=backend)
                if grid_kind == "shared":
                    kwargs = dict(num_steps=steps)
                else:
                    base = torch.linspace(0, 1, steps + 1, dtype=torch.float64)
                    kwargs = dict(time_grid=base.expand(shape[0], -1).contiguous())
                solver.sample(x0, **kwargs)  # warm-up
                times = [_best_of(lambda: solver.sample(x0, **kwargs), calls) for _ in range(repeats)]
                per_step = statistics.median(times) / steps * 1e6
                row = dict(state=state_name, method=method, grid=grid_kind, steps=steps, backend=backend,
                           us_per_step=per_step, us_per_nfe=per_step / TABLEAUX[method].num_stages,
                           us_per_step_runs=[t / steps * 1e6 for t in times])
                if grid_kind == "shared":
                    bare = [_best_of(lambda: _bare_loop(x0, method, steps, backend), calls) for _ in range(repeats)]
                    row["bare_lincomb_us_per_step"] = statistics.median(bare) / steps * 1e6
                rows.append(row)
                bare = row.get("bare_lincomb_us_per_step")
                bare_text = f", bare lincomb loop {bare:.1f}" if bare is not None else ""
                print(f"{state_name:18s} {method:8s} {grid_kind:10s}: {per_step:7.1f} us/step "
                      f"({row['us_per_nfe']:.1f} us/NFE){bare_text}", flush=True)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7, help="timed repeats; the median is reported (default 7)")
    parser.add_argument("--steps", type=int, default=20, help="solver steps per call (default 20)")
    parser.add_argument("--backend", default="auto", choices=["auto", "fused", "eager"])
    parser.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, backend {args.backend}")
    rows = measure(args.repeats, args.steps, args.backend)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
