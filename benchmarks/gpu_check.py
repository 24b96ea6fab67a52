"""One-command GPU check: build with CUDA, run the CUDA tests, the sanitizers and the quick CUDA benchmark.

``scripts/gpu_check.sh [--out DIR] [--budget 480] [--wheels DIR] [--skip STAGE,...] [--dry-run]``
(or ``python -m benchmarks.gpu_check ...`` from the repository root, with the Python that holds torch).

For a machine with an NVIDIA GPU, nvcc, compute-sanitizer and a CUDA build of torch, that reaches no package
registry. Stages, each with its own time limit inside one overall budget (8 minutes by default):

1. ``env``: versions (python, torch, nvcc, compute-sanitizer, ncu, nvidia-smi); installs the wheels of
   ``--wheels DIR`` (or ``.whl/`` when present) into a private folder put on PYTHONPATH, then lists what the
   stages need and what is missing.
2. ``build``: ``pip install --no-build-isolation --no-deps -e .`` with ``BFR_FAST_WITH_CUDA=ON``, against the
   torch it finds, for the GPU's own architecture, ``MAX_JOBS`` (default: all cores) parallel jobs; then checks
   that ``bfr_fast._C`` loads with CUDA kernels.
3. ``tests``: ``pytest python_tests -k cuda`` (every CUDA case; test modules whose imports are missing are
   reported, not fatal), junit XML.
4. ``memcheck`` and 5. ``racecheck``: ``compute-sanitizer`` on ``python -m benchmarks.gpu_ops_smoke`` (every
   fused op once on small odd sizes, checked against its eager reference).
6. ``bench``: ``python -m benchmarks.run --device cuda --quick``.

Everything goes to one folder (``--out``; else ``$OUT`` when set; else ``./gpu-check-<date>``): ``summary.md``
and ``summary.json`` (what ran, passed, failed, was skipped, and why), ``junit.xml``, the benchmark's
``cuda-quick.json`` and ``.md``, and one log per stage under ``logs/`` (``--bundle-logs``, the default when the
folder comes from ``$OUT``, packs them into ``logs.tar.gz`` so that the folder holds at most 8 files). A stage
whose prerequisites are missing is skipped with the reason; the exit status is 0 only when no stage failed.
This module imports only the standard library: ``--dry-run`` works anywhere and prints the plan.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
STAGES = ("env", "build", "tests", "memcheck", "racecheck", "bench")
# Seconds per stage, each also capped by what is left of the overall budget.
STAGE_LIMITS = {"env": 45, "build": 240, "tests": 150, "memcheck": 90, "racecheck": 90, "bench": 120}
DEFAULT_BUDGET = 480
MIN_STAGE_SECONDS = 15
# Python modules each stage needs (import names), and the optional ones whose absence only skips some tests.
NEEDS = {
    "build": ("torch", "scikit_build_core", "pybind11"),
    "tests": ("torch", "pytest", "hypothesis", "numpy", "scipy"),
    "memcheck": ("torch",),
    "racecheck": ("torch",),
    "bench": ("torch", "numpy"),
}
OPTIONAL = {
    "mdtraj": "python_tests/ops/test_rmsd.py (the RMSD kernels' tests) and python_tests/metrics (the spectral "
              "metrics' CUDA case)",
    "sklearn": "the digits data of python_tests/metrics and python_tests/data",
    "cleanfid": "python_tests/metrics/test_image.py (no CUDA cases)",
}
PROBE = r"""
import importlib.util, json, shutil, subprocess, sys
mods = sys.argv[1].split(",")
info = {"python": sys.version.split()[0], "executable": sys.executable,
        "modules": {m: importlib.util.find_spec(m) is not None for m in mods}}
try:
    import torch
    info["torch"] = torch.__version__
    info["torch_cuda"] = torch.version.cuda
    info["cuda_available"] = torch.cuda.is_available()
    if info["cuda_available"]:
        info["gpu"] = torch.cuda.get_device_name(0)
        info["capability"] = list(torch.cuda.get_device_capability(0))
except Exception as error:
    info["torch_error"] = f"{type(error).__name__}: {error}"
print(json.dumps(info))
"""


@dataclasses.dataclass
class StageResult:
    """What one stage did: ``status`` is passed, failed, timed out, skipped or planned (dry run)."""

    name: str
    status: str
    reason: str = ""
    command: str = ""
    seconds: float = 0.0
    log: str = ""
    details: dict = dataclasses.field(default_factory=dict)


# ---------------------------------------------------------------------------------------------------- arguments


def parse_args(argv: Sequence[str] | None = None, environ: dict[str, str] | None = None) -> argparse.Namespace:
    """The command line, with ``--out`` resolved (``$OUT``, else ``./gpu-check-<date>``) and checked."""
    environ = os.environ if environ is None else environ
    parser = argparse.ArgumentParser(prog="gpu_check", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, help="output folder (default: $OUT if set, else ./gpu-check-<date>)")
    parser.add_argument("--budget", type=int, default=DEFAULT_BUDGET,
                        help=f"overall seconds for all stages (default {DEFAULT_BUDGET})")
    parser.add_argument("--skip", default="", help=f"comma-separated stages to leave out, of {', '.join(STAGES)}")
    parser.add_argument("--only", default="", help="comma-separated stages to run (the others are skipped)")
    parser.add_argument("--wheels", type=Path,
                        help="folder of wheels to install first, --no-index --no-deps (default: .whl/ if present)")
    parser.add_argument("--max-jobs", type=int, default=int(environ.get("MAX_JOBS", 0)) or (os.cpu_count() or 1),
                        help="parallel compile jobs (default: $MAX_JOBS, else all cores)")
    parser.add_argument("--python", default=sys.executable, help="the Python that holds torch (default: this one)")
    parser.add_argument("--bundle-logs", action=argparse.BooleanOptionalAction, default=None,
                        help="pack logs/ into logs.tar.gz (default: on when the folder comes from $OUT)")
    parser.add_argument("--ignore-missing", action="store_true",
                        help="run stages whose prerequisites are missing (to try this script on a CPU machine)")
    parser.add_argument("--dry-run", action="store_true", help="print the stages and write the summary, run nothing")
    args = parser.parse_args(argv)
    skip = {s for s in args.skip.split(",") if s}
    only = {s for s in args.only.split(",") if s}
    unknown = sorted((skip | only) - set(STAGES))
    if unknown:
        parser.error(f"unknown stage(s) {unknown}; the stages are {list(STAGES)}")
    if skip and only:
        parser.error("give --skip or --only, not both")
    if args.budget < MIN_STAGE_SECONDS:
        parser.error(f"--budget must be at least {MIN_STAGE_SECONDS} seconds, got {args.budget}")
    if args.max_jobs < 1:
        parser.error(f"--max-jobs must be at least 1, got {args.max_jobs}")
    args.skipped = skip if skip else (set(STAGES) - only if only else set())
    from_env = args.out is None and bool(environ.get("OUT"))
    if args.out is None:
        args.out = Path(environ["OUT"]) if from_env else Path(f"gpu-check-{_dt.datetime.now():%Y%m%d-%H%M%S}")
    if args.bundle_logs is None:
        args.bundle_logs = from_env
    if args.wheels is None and (REPO / ".whl").is_dir():
        args.wheels = REPO / ".whl"
    return args


# ---------------------------------------------------------------------------------------------------- the plan


def find_tool(name: str, environ: dict[str, str] | None = None) -> str | None:
    """A CUDA tool on PATH, else under $CUDA_HOME/bin or /usr/local/cuda/bin."""
    environ = os.environ if environ is None else environ
    found = shutil.which(name, path=environ.get("PATH"))
    if found:
        return found
    for root in (environ.get("CUDA_HOME"), "/usr/local/cuda"):
        if root and (Path(root) / "bin" / name).is_file():
            return str(Path(root) / "bin" / name)
    return None


def cuda_architecture(capability: Sequence[int] | None) -> str | None:
    """CMake's CUDA architecture for the GPU at hand, machine code only (``[9, 0]`` gives ``"90-real"``)."""
    return f"{capability[0]}{capability[1]}-real" if capability else None


def stage_commands(args: argparse.Namespace, probe: dict) -> dict[str, list[str]]:
    """The command of every stage after env (argument lists, run from the repository root)."""
    py = args.python
    sanitizer = find_tool("compute-sanitizer") or "compute-sanitizer"
    build = [py, "-m", "pip", "install", "-v", "--no-build-isolation", "--no-deps", "--no-index", "-e", "."]
    arch = cuda_architecture(probe.get("capability"))
    if arch:
        build += ["-C", f"cmake.define.CMAKE_CUDA_ARCHITECTURES={arch}"]
    smoke = [py, "-m", "benchmarks.gpu_ops_smoke", "--device", "cuda"]
    return {
        "build": build,
        "tests": [py, "-m", "pytest", "python_tests", "-k", "cuda", "--continue-on-collection-errors",
                  "-p", "no:cacheprovider", "-q", "-rfEs", f"--junitxml={args.out / 'junit.xml'}"],
        "memcheck": [sanitizer, "--tool", "memcheck", "--error-exitcode", "99", "--print-limit", "50", *smoke],
        "racecheck": [sanitizer, "--tool", "racecheck", "--error-exitcode", "99", "--print-limit", "50", *smoke],
        "bench": [py, "-m", "benchmarks.run", "--device", "cuda", "--quick", "--out", str(args.out)],
    }


def stage_environment(args: argparse.Namespace, site: Path | None, environ: dict[str, str] | None = None) -> dict:
    """The environment of the stages: CUDA_HOME, the build's settings, the carried wheels on PYTHONPATH."""
    env = dict(os.environ if environ is None else environ)
    if "CUDA_HOME" not in env:
        nvcc = find_tool("nvcc", env)
        env["CUDA_HOME"] = str(Path(nvcc).resolve().parent.parent) if nvcc else "/usr/local/cuda"
        if nvcc and not (Path(env["CUDA_HOME"]) / "lib64").is_dir() and Path("/usr/local/cuda/lib64").is_dir():
            env["CUDA_HOME"] = "/usr/local/cuda"  # nvcc found through a wrapper outside the toolkit
    env.update(BFR_FAST_WITH_CUDA="ON", MAX_JOBS=str(args.max_jobs), CMAKE_BUILD_PARALLEL_LEVEL=str(args.max_jobs),
               PYTHONUNBUFFERED="1", PIP_NO_INPUT="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    if site is not None:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(site), env.get("PYTHONPATH", "")) if p)
    return env


def missing_for(stage: str, probe: dict) -> list[str]:
    """What a stage needs that the probe did not find (modules, tools, the GPU, the CUDA build)."""
    missing = [m for m in NEEDS.get(stage, ()) if not probe.get("modules", {}).get(m, False)]
    if stage == "build":
        if probe.get("torch") and not probe.get("torch_cuda"):
            missing.append("a CUDA build of torch (this one is CPU-only)")
        missing += [tool for tool in ("nvcc", "cmake", "ninja") if not probe.get("tools", {}).get(tool)]
    if stage in ("memcheck", "racecheck") and not probe.get("tools", {}).get("compute-sanitizer"):
        missing.append("compute-sanitizer")
    if stage in ("tests", "memcheck", "racecheck", "bench") and probe.get("torch") and not probe.get(
            "cuda_available"):
        missing.append("a CUDA device visible to torch")
    return missing


# ---------------------------------------------------------------------------------------------------- running


def run_logged(command: Sequence[str], log: Path, timeout: float, env: dict, cwd: Path = REPO) -> tuple[int | None, float]:
    """Runs ``command`` with stdout and stderr to ``log``; returns (exit status or None on timeout, seconds).

    The command runs in its own process group, which is killed whole when the time is up."""
    start = time.monotonic()
    with log.open("a") as handle:
        handle.write(f"$ {shlex.join(command)}\n")
        handle.flush()
        try:
            process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, env=env, cwd=cwd,
                                       start_new_session=True)
        except OSError as error:
            handle.write(f"could not start: {error}\n")
            return 127, time.monotonic() - start
        try:
            returncode: int | None = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            handle.write(f"\n*** killed after {timeout:.0f} s (the stage's time limit)\n")
            returncode = None
    return returncode, time.monotonic() - start


def probe_environment(args: argparse.Namespace, env: dict, log: Path | None) -> dict:
    """Versions and what is present: Python modules (in a subprocess of ``--python``), tools, the GPU."""
    modules = sorted({m for needs in NEEDS.values() for m in needs} | set(OPTIONAL))
    result = subprocess.run([args.python, "-c", PROBE, ",".join(modules)], capture_output=True, text=True, env=env,
                            cwd=REPO, timeout=120)
    try:
        probe = json.loads(result.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        probe = {"modules": {}, "probe_error": (result.stderr or result.stdout)[-2000:]}
    probe["tools"] = {}
    for tool in ("nvcc", "compute-sanitizer", "ncu", "nvidia-smi", "cmake", "ninja"):
        probe["tools"][tool] = find_tool(tool, env)
    for tool in ("cmake", "ninja"):  # the PyPI packages of the two ship a binary in the environment's bin
        candidate = Path(args.python).parent / tool
        if not probe["tools"][tool] and candidate.is_file():
            probe["tools"][tool] = str(candidate)
    versions = {}
    for tool, flag in (("nvcc", "--version"), ("compute-sanitizer", "--version"), ("ncu", "--version"),
                       ("cmake", "--version"), ("ninja", "--version"), ("nvidia-smi", "-L")):
        path = probe["tools"].get(tool)
        if path:
            try:
                out = subprocess.run([path, flag], capture_output=True, text=True, timeout=30).stdout.strip()
            except (OSError, subprocess.TimeoutExpired) as error:
                out = f"({error})"
            versions[tool] = version_line(tool, out)
    probe["versions"] = versions
    if log is not None:
        log.write_text(json.dumps(probe, indent=2) + "\n")
    return probe


def version_line(tool: str, output: str) -> str:
    """The informative line of a tool's version output (nvidia-smi: every GPU)."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    if tool == "nvidia-smi":
        return "; ".join(lines)
    for line in lines:
        if re.search(r"release|version", line, re.I):
            return line
    return lines[0] if lines else ""


def install_wheels(args: argparse.Namespace, site: Path, log: Path, env: dict) -> str:
    """Installs every wheel of ``args.wheels`` into ``site`` (no index, no dependencies); returns a note."""
    wheels = sorted(args.wheels.glob("*.whl")) if args.wheels and args.wheels.is_dir() else []
    if not wheels:
        return f"no wheels in {args.wheels}" if args.wheels else "no wheel folder given"
    command = [args.python, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
               "--no-cache-dir", "--upgrade", "--target", str(site), *map(str, wheels)]
    code, _ = run_logged(command, log, 300, env)
    names = ", ".join(w.name.split("-")[0] for w in wheels)
    return f"installed {names} into {site}" if code == 0 else f"installing the wheels failed (exit {code}): {names}"


# ---------------------------------------------------------------------------------------------------- reading results


def junit_counts(path: Path) -> dict:
    """Counts of a pytest junit XML: passed, failed, errors (collection errors apart), skipped with their reasons."""
    root = ET.parse(path).getroot()
    cases = root.iter("testcase")
    counts = {"passed": 0, "failed": [], "errors": [], "collection_errors": [], "skipped": Counter()}
    for case in cases:
        name = ".".join(p for p in (case.get("classname"), case.get("name")) if p)
        failure, error, skipped = case.find("failure"), case.find("error"), case.find("skipped")
        if failure is not None:
            counts["failed"].append(f"{name}: {_first_line(failure.get('message'))}")
        elif error is not None:
            message = _first_line(error.get("message"))
            if not case.get("classname") or "collection failure" in (message or ""):
                counts["collection_errors"].append(f"{name}: {_first_line(_last_error_line(error.text))}")
            else:
                counts["errors"].append(f"{name}: {message}")
        elif skipped is not None:
            counts["skipped"][_first_line(skipped.get("message")) or "(no reason)"] += 1
        else:
            counts["passed"] += 1
    counts["skipped"] = dict(counts["skipped"].most_common())
    return counts


def _first_line(text: str | None) -> str:
    return (text or "").strip().splitlines()[0][:300] if (text or "").strip() else ""


def _last_error_line(text: str | None) -> str:
    """The ``E   ModuleNotFoundError: ...`` line of a traceback, else its last line."""
    lines = [line for line in (text or "").splitlines() if line.strip()]
    errors = [line.removeprefix("E").strip() for line in lines if line.startswith("E ")]
    return errors[-1] if errors else (lines[-1] if lines else "")


def sanitizer_summary(log: Path) -> dict:
    """The sanitizer's own count (``ERROR SUMMARY: N errors`` / ``RACECHECK SUMMARY: ...``) and the smoke result."""
    text = log.read_text(errors="replace") if log.exists() else ""
    found = re.findall(r"(?:ERROR|RACECHECK) SUMMARY: ([^\n]*)", text)
    smoke = re.findall(r"^(all ops ran and matched their references|\d+ of the checks failed)$", text, re.M)
    return {"sanitizer": found[-1].strip() if found else "no summary line", "ops": smoke[-1] if smoke else "no result"}


def bench_rows(out: Path) -> list[str]:
    """One line per benchmark row of ``cuda-quick.json``: the fused time and the speed-ups."""
    path = out / "cuda-quick.json"
    if not path.exists():
        return []
    rows = json.loads(path.read_text())["rows"]
    lines = []
    for row in rows:
        fused = row["seconds"].get("fused")
        ratios = ", ".join(f"{v} {r:.2f}x" for v, r in row["fused_speedup_vs"].items())
        errors = "; ".join(f"{v} failed" for v in row.get("errors", {}))
        time_text = f"{fused * 1e3:.3g} ms" if fused is not None else "no fused time"
        lines.append(f"{row['op']} / {row['case']}: {time_text}" + (f", fused vs {ratios}" if ratios else "")
                     + (f" ({errors})" if errors else ""))
    return lines


def judge_tests(result: StageResult, code: int | None) -> None:
    """A test run passes when no test failed or errored; test modules that could not be imported for want of an
    optional package (:data:`OPTIONAL`) are reported, not failures. Any other collection error fails it."""
    details = result.details
    missing_optional = [c for c in details["collection_errors"]
                        if (m := re.search(r"No module named '([\w]+)", c)) and m.group(1) in OPTIONAL]
    others = [c for c in details["collection_errors"] if c not in missing_optional]
    summary = (f"{details['passed']} passed, {len(details['failed'])} failed, {len(details['errors'])} errors, "
               f"{sum(details['skipped'].values())} skipped")
    if missing_optional:
        summary += f"; {len(missing_optional)} test modules not collected for want of an optional package"
    if code is None:
        result.status, result.reason = "timed out", f"killed at its limit; so far {summary}"
    elif details["failed"] or details["errors"] or others:
        result.status, result.reason = "failed", summary + (f"; {len(others)} modules failed to import" if others else "")
    elif code in (0, 1):  # 1: the collection errors above, nothing else
        result.status, result.reason = "passed", summary
    else:
        result.status, result.reason = "failed", f"pytest exit status {code}; {summary}"


def log_tail(log: Path, lines: int = 25) -> str:
    if not log.exists():
        return ""
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


# ---------------------------------------------------------------------------------------------------- the summary


def write_summary(out: Path, results: list[StageResult], probe: dict, args: argparse.Namespace,
                  started: str, dry_run: bool) -> tuple[Path, Path]:
    """Writes ``summary.md`` (for people) and ``summary.json`` (every field) and returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    failed = [r.name for r in results if r.status in ("failed", "timed out")]
    if dry_run:
        verdict = "DRY RUN: nothing was run"
    else:
        verdict = "FAILED: " + ", ".join(failed) if failed else "PASSED (every stage that ran)"
    lines = [f"# GPU check: {verdict}", "",
             f"Started {started}; budget {args.budget} s; output `{out}`.", ""]
    gpu = probe.get("gpu") or "no CUDA device visible to torch"
    lines += [f"- GPU: {gpu}" + (f" (compute capability {'.'.join(map(str, probe['capability']))})"
                                 if probe.get("capability") else ""),
              f"- Python {probe.get('python', '?')} ({probe.get('executable', args.python)}), "
              f"torch {probe.get('torch', probe.get('torch_error', 'not importable'))}, "
              f"CUDA {probe.get('torch_cuda') or 'none'}"]
    for tool, version in probe.get("versions", {}).items():
        lines.append(f"- {tool}: {version}")
    missing_optional = [f"`{m}` (skips {why})" for m, why in OPTIONAL.items() if not probe.get("modules", {}).get(m)]
    if missing_optional:
        lines.append("- Missing optional packages: " + "; ".join(missing_optional)
                     + ". Carry them as Python 3.12 wheels in `.whl/` (see docs/results/ops.md, GPU check).")
    if probe.get("wheels"):
        lines.append(f"- Wheels: {probe['wheels']}")
    lines += ["", "| stage | status | seconds | why / what |", "|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r.name} | {r.status} | {r.seconds:.0f} | {r.reason.replace('|', '/')} |")
    for r in results:
        body = []
        if r.command:
            body.append(f"Command: `{r.command}`")
        if r.log:
            body.append(f"Log: `{r.log}`")
        details = r.details
        if "passed" in details:
            skipped = details["skipped"]
            body.append(f"{details['passed']} passed, {len(details['failed'])} failed, {len(details['errors'])} "
                        f"errors, {sum(skipped.values())} skipped, {len(details['collection_errors'])} test modules "
                        "not collected")
            body += [f"- FAILED {f}" for f in details["failed"]] + [f"- ERROR {e}" for e in details["errors"]]
            body += [f"- not collected: {c}" for c in details["collection_errors"]]
            body += [f"- skipped {n}: {why}" for why, n in skipped.items()]
        for key in ("sanitizer", "ops"):
            if key in details:
                body.append(f"{key}: {details[key]}")
        body += [f"- {row}" for row in details.get("bench", [])]
        if r.status in ("failed", "timed out") and details.get("tail"):
            body += ["", "Last lines of the log:", "", "```", details["tail"], "```"]
        if body:
            lines += ["", f"## {r.name}", "", *body]
    md = out / "summary.md"
    md.write_text("\n".join(lines) + "\n")
    payload = {"verdict": verdict, "started": started, "budget_s": args.budget, "probe": probe,
               "stages": [dataclasses.asdict(r) for r in results]}
    js = out / "summary.json"
    js.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return md, js


# ---------------------------------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    out: Path = args.out.resolve()
    args.out = out
    started = _dt.datetime.now().isoformat(timespec="seconds")
    deadline = time.monotonic() + args.budget
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    site = Path(tempfile.gettempdir()) / "bfr-fast-gpu-check-site"
    results: list[StageResult] = []

    # env: wheels first, so that the probe sees them.
    env_log = logs / "env.log"
    env_log.write_text("")
    wheel_note = "dry run: wheels not installed"
    if not args.dry_run and args.wheels:
        site.mkdir(parents=True, exist_ok=True)
        wheel_note = install_wheels(args, site, env_log, stage_environment(args, None))
    env = stage_environment(args, site if site.is_dir() else None)
    start = time.monotonic()
    probe = probe_environment(args, env, logs / "probe.json")
    probe["wheels"] = wheel_note if args.wheels else "none carried (no .whl/ folder, no --wheels)"
    missing_optional = [m for m in OPTIONAL if not probe.get("modules", {}).get(m)]
    results.append(StageResult("env", "passed", f"probe done; optional packages missing: {missing_optional or 'none'}",
                               seconds=time.monotonic() - start, log=str(logs / "probe.json")))
    commands = stage_commands(args, probe)
    built = False
    for name in STAGES[1:]:
        command = commands[name]
        text = shlex.join(command)
        log = logs / f"{name}.log"
        missing = [] if args.ignore_missing else missing_for(name, probe)
        remaining = deadline - time.monotonic()
        timeout = min(STAGE_LIMITS[name], remaining)
        if name in args.skipped:
            results.append(StageResult(name, "skipped", "left out by --skip/--only", text))
        elif missing:
            results.append(StageResult(name, "skipped", "missing: " + ", ".join(missing), text))
        elif args.dry_run:
            results.append(StageResult(name, "planned", f"dry run (limit {STAGE_LIMITS[name]} s)", text))
        elif name != "build" and not built and "build" not in args.skipped:
            results.append(StageResult(name, "skipped", "the build did not succeed", text))
        if len(results) == STAGES.index(name) + 1:  # decided without running
            print(f"[{name}] {results[-1].status}: {results[-1].reason}\n    {text}", flush=True)
            continue
        if timeout < MIN_STAGE_SECONDS:
            results.append(StageResult(name, "skipped", f"budget spent ({remaining:.0f} s left)", text))
            continue
        stage_env = dict(env)
        if name in ("memcheck", "racecheck"):
            stage_env["PYTORCH_NO_CUDA_MEMORY_CACHING"] = "1"  # every tensor its own allocation
        print(f"[{name}] (limit {timeout:.0f} s) {text}", flush=True)
        log.write_text("")
        code, seconds = run_logged(command, log, timeout, stage_env)
        result = StageResult(name, "passed" if code == 0 else ("timed out" if code is None else "failed"),
                             command=text, seconds=seconds, log=str(log))
        result.reason = {None: f"killed at its limit of {timeout:.0f} s", 0: "ok"}.get(code, f"exit status {code}")
        if name == "build" and code == 0:
            check = [args.python, "-c", "import bfr_fast.ops as o, sys; r = o.backend_report('cuda'); print(r); "
                                        "sys.exit(r['backend'] != 'fused')"]
            check_code, _ = run_logged(check, log, 120, stage_env)
            if check_code != 0:
                result.status, result.reason = "failed", "built, but bfr_fast._C has no CUDA kernels (see the log)"
        built = built or (name == "build" and result.status == "passed")
        if name == "tests" and (out / "junit.xml").exists():
            result.details = junit_counts(out / "junit.xml")
            judge_tests(result, code)
        if name in ("memcheck", "racecheck"):
            result.details = sanitizer_summary(log)
            result.reason += f"; {result.details['sanitizer']}; {result.details['ops']}"
        if name == "bench":
            result.details = {"bench": bench_rows(out)}
        if result.status != "passed":
            result.details["tail"] = log_tail(log)
        print(f"[{name}] {result.status} in {seconds:.0f} s: {result.reason}", flush=True)
        results.append(result)

    if args.dry_run:
        print("probe: " + json.dumps({k: probe.get(k) for k in ("python", "torch", "torch_cuda", "cuda_available", "gpu")}))
    md, _ = write_summary(out, results, probe, args, started, args.dry_run)
    if args.bundle_logs:
        with tarfile.open(out / "logs.tar.gz", "w:gz") as tar:
            tar.add(logs, arcname="logs")
        shutil.rmtree(logs)
    print(f"summary: {md}")
    return 1 if any(r.status in ("failed", "timed out") for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
