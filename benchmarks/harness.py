"""Timing harness: every variant of a case is timed in the same run, so the ratios compare like with like."""

from __future__ import annotations

import json
import os
import platform
import statistics
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
        work: Units of work per call (bytes moved, RMSDs computed, or samples drawn).
        unit: The throughput unit, ``"GB/s"`` (work in bytes), ``"RMSD/s"`` or ``"samples/s"``.
        notes: Lines printed under the table for this case.
        check: Called once before timing: checks that the variants agree and returns each compared variant's
            difference from ``"fused"`` (recorded in the results); it raises when they disagree, which stops the
            run, since the timings of disagreeing variants would compare different work.
        group: The results file the row belongs to: ``"ops"`` writes ``<device>.md``, any other group
            ``<device>-<group>.md``.
    """

    op: str
    name: str
    fns: dict[str, Callable[[], object]]
    work: float
    unit: str
    notes: list[str] = field(default_factory=list)
    check: Callable[[], dict[str, float]] | None = None
    group: str = "ops"


def copy_of(bytes_moved: int, device: torch.device) -> Callable[[], object]:
    """A plain copy that moves ``bytes_moved`` bytes (half read, half written): the bandwidth ceiling of an op that
    moves as many, timed as its ``"copy"`` variant."""
    src = torch.empty(bytes_moved // 2, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    return lambda: dst.copy_(src)


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


ROUNDS = 5
"""Interleaved rounds per case (see :func:`time_variants`)."""


def time_variants(fns: dict[str, Callable[[], object]], min_run_time: float,
                  rounds: int = ROUNDS) -> tuple[dict[str, float], dict[str, str]]:
    """Median seconds per call of each variant, and the error of each variant that raised.

    Every variant is called once to warm up (which also triggers torch.compile), then the variants are timed in
    turn, ``rounds`` times over, each turn a ``blocked_autorange`` of ``min_run_time / rounds`` seconds: a burst of
    load from elsewhere on the machine (a VM's steal time) then lands on one turn of every variant alike instead
    of on the whole of one variant, and the median over the turns drops it.
    """
    errors: dict[str, str] = {}
    working: dict[str, Callable[[], object]] = {}
    for variant, fn in fns.items():
        try:
            fn()
            working[variant] = fn
        except Exception as error:  # noqa: BLE001 (a benchmark row must survive one broken variant)
            errors[variant] = f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"
    # Timer defaults to one thread; time with the same thread count as the warm-up (and as users run).
    timers = {v: Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
              for v, fn in working.items()}
    turns: dict[str, list[float]] = {v: [] for v in working}
    for _ in range(rounds):
        for variant, timer in timers.items():
            turns[variant].append(timer.blocked_autorange(min_run_time=min_run_time / rounds).median)
    return {v: statistics.median(t) for v, t in turns.items()}, errors


def run_case(case: Case, min_run_time: float) -> dict:
    """Checks ``case`` (its ``check``, if any) and times every variant (:func:`time_variants`); a variant that fails
    is recorded with its error, not silently dropped."""
    agreement = case.check() if case.check is not None else {}
    seconds, errors = time_variants(case.fns, min_run_time)
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
        "agreement": agreement,
        "group": case.group,
    }


def _format_time(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    return f"{seconds * 1e3:.3g} ms" if seconds < 1 else f"{seconds:.3g} s"


def _format_throughput(value: float, unit: str) -> str:
    if unit == "RMSD/s":
        return f"{value / 1e6:.3g} M RMSD/s"
    return f"{value:.3g} {unit}"


# Columns first, in this order, when present; "copy" is shown as the fused variant's share of its bandwidth.
LEAD_VARIANTS = ("fused", "eager", "compile")


def markdown_table(rows: list[dict], title: str) -> str:
    """The results as a markdown table: times per variant, fused speed-ups, fused throughput, the fused variant's
    share of the bandwidth of a plain copy of the same bytes (where timed) and the largest difference found by the
    agreement check (where there is one)."""
    present = {v for r in rows for v in (*r["seconds"], *r["errors"])}
    lead = [v for v in LEAD_VARIANTS if v in present]
    extra = sorted(present - {*LEAD_VARIANTS, "copy"})
    timed = [*lead, *extra, *(["copy"] if "copy" in present else [])]
    compared = [v for v in (*lead, *extra) if v != "fused"]
    header = ["op", "case", *timed, *[f"fused vs {v}" for v in compared]]
    if "copy" in present:
        header.append("fused, share of copy bandwidth")
    agreement = any(r.get("agreement") for r in rows)
    if agreement:
        header.append("max rel. difference")
    lines = [f"### {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        speedup = r["fused_speedup_vs"]
        fused = r["throughput"].get("fused")
        case = r["case"] + (f" ({_format_throughput(fused, r['unit'])} fused)" if fused is not None else "")
        cells = [r["op"], case]
        cells += [_format_time(r["seconds"].get(v)) for v in timed]
        cells += [f"{speedup[v]:.2f}x" if v in speedup else "—" for v in compared]
        if "copy" in present:
            cells.append(f"{speedup['copy']:.0%}" if "copy" in speedup else "—")
        if agreement:
            diffs = r.get("agreement") or {}
            cells.append(f"{max(diffs.values()):.1e}" if diffs else "—")
        lines.append("| " + " | ".join(cells) + " |")
    runs: dict[str, list[str]] = {}
    for r in rows:
        runs.setdefault(r.get("ran", "unrecorded"), []).append(r["op"])
    notes = ([f"- measured in the run of {ran}: {', '.join(dict.fromkeys(ops))}" for ran, ops in runs.items()]
             if len(runs) > 1 else [])
    notes += [f"- {r['op']} / {r['case']}: {n}" for r in rows for n in r["notes"]]
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
