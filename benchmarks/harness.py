"""Timing harness: every variant of a case is timed in the same run, so the ratios compare like with like."""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.benchmark import Timer


@dataclass
class Case:
    """One benchmark problem and the implementations that solve it.

    Attributes:
        op: The op's name, e.g. ``"lincomb"``.
        name: What is computed, with sizes, e.g. ``"rk4 update, 5 x 4M float32"``.
        fns: Variant name -> zero-argument callable. ``"fused"`` is the subject; the others (``"eager"``,
            ``"compile"``, ``"mdtraj"``, ``"copy"``) are what it is compared with.
        work: Units of work per call (bytes moved, or RMSDs computed).
        unit: The throughput unit, ``"GB/s"`` (work in bytes) or ``"RMSD/s"``.
    """

    op: str
    name: str
    fns: dict[str, Callable[[], object]]
    work: float
    unit: str
    notes: list[str] = field(default_factory=list)


def device_description(device: torch.device) -> str:
    """A human-readable name of the machine the benchmark ran on."""
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})"
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{model}, {os.cpu_count()} logical cores, {torch.get_num_threads()} torch threads"


def time_call(fn: Callable[[], object], min_run_time: float) -> float:
    """Median seconds per call, after one warm-up call (which also triggers torch.compile)."""
    fn()
    # Timer defaults to one thread; time with the same thread count as the warm-up (and as users run).
    timer = Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
    measurement = timer.blocked_autorange(min_run_time=min_run_time)
    return float(measurement.median)


def run_case(case: Case, min_run_time: float) -> dict:
    """Times every variant of ``case``; a variant that fails is recorded with its error, not silently dropped."""
    seconds: dict[str, float] = {}
    errors: dict[str, str] = {}
    for variant, fn in case.fns.items():
        try:
            seconds[variant] = time_call(fn, min_run_time)
        except Exception as error:  # noqa: BLE001 (a benchmark row must survive one broken variant)
            errors[variant] = f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"
    scale = 1e9 if case.unit == "GB/s" else 1.0
    throughput = {v: case.work / s / scale for v, s in seconds.items()}
    speedup = {v: s / seconds["fused"] for v, s in seconds.items() if v != "fused" and "fused" in seconds}
    return {
        "op": case.op,
        "case": case.name,
        "unit": case.unit,
        "work": case.work,
        "seconds": seconds,
        "throughput": throughput,
        "fused_speedup_vs": speedup,
        "errors": errors,
        "notes": case.notes,
    }


def _format_time(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    return f"{seconds * 1e3:.3g} ms" if seconds < 1 else f"{seconds:.3g} s"


def _format_throughput(value: float, unit: str) -> str:
    if unit == "RMSD/s":
        return f"{value / 1e6:.3g} M RMSD/s"
    return f"{value:.3g} {unit}"


def markdown_table(rows: list[dict], title: str) -> str:
    """The results as a markdown table: times per variant, fused speed-ups, and fused throughput."""
    variants = ["fused", "eager", "compile"]
    extra = sorted({v for r in rows for v in r["seconds"]} - set(variants))
    header = ["op", "case", *variants, *extra, "fused vs eager", "fused vs compile", *[f"fused vs {v}" for v in extra]]
    lines = [f"### {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        times = [_format_time(r["seconds"].get(v)) for v in (*variants, *extra)]
        ratios = [
            f"{r['fused_speedup_vs'][v]:.2f}x" if v in r["fused_speedup_vs"] else "—"
            for v in ("eager", "compile", *extra)
        ]
        fused = r["throughput"].get("fused")
        case = r["case"] + (f" ({_format_throughput(fused, r['unit'])} fused)" if fused is not None else "")
        lines.append("| " + " | ".join([r["op"], case, *times, *ratios]) + " |")
    notes = [f"- {r['op']} / {r['case']}: {n}" for r in rows for n in r["notes"]]
    notes += [f"- {r['op']} / {r['case']}: {v} failed: {e}" for r in rows for v, e in r["errors"].items()]
    if notes:
        lines += ["", *notes]
    return "\n".join(lines) + "\n"


def write_results(
    rows: list[dict], device: torch.device, out_dir: Path, quick: bool, name: str | None = None
) -> tuple[Path, Path]:
    """Writes ``<name>.json`` and ``<name>.md`` under ``out_dir`` and returns their paths.

    ``name`` defaults to the device type, with ``-quick`` appended for quick sizes.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = name or device.type + ("-quick" if quick else "")
    machine = device_description(device)
    payload = {"device": device.type, "machine": machine, "torch": torch.__version__, "quick": quick, "rows": rows}
    json_path, md_path = out_dir / f"{stem}.json", out_dir / f"{stem}.md"
    json_path.write_text(json.dumps(payload, indent=2) + "\n")
    title = f"{device.type.upper()}: {machine}, torch {torch.__version__}" + (" (quick sizes)" if quick else "")
    md_path.write_text(markdown_table(rows, title))
    return json_path, md_path
