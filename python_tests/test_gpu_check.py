"""benchmarks/gpu_check.py on a machine without a GPU: arguments, the plan, the result readers, the summary, and
a dry run end to end; benchmarks/gpu_ops_smoke.py (what the sanitizers run) on the CPU kernels."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from benchmarks import gpu_check
from benchmarks.gpu_check import StageResult
from bfr_fast.ops import fused_available

REPO = Path(__file__).resolve().parent.parent
PROBE_H200 = {
    "python": "3.12.3", "executable": "/opt/torch/.venv/bin/python3", "torch": "2.11.0+cu130", "torch_cuda": "13.0",
    "cuda_available": True, "gpu": "NVIDIA H200", "capability": [9, 0],
    "modules": {m: True for m in ("torch", "scikit_build_core", "pybind11", "pytest", "hypothesis", "numpy",
                                  "scipy", "sklearn")},
    "tools": {"nvcc": "/usr/local/cuda/bin/nvcc", "compute-sanitizer": "/usr/local/cuda/bin/compute-sanitizer",
              "cmake": "/usr/bin/cmake", "ninja": "/usr/bin/ninja"},
}


def test_out_folder_comes_from_the_option_then_OUT_then_the_date(tmp_path):
    assert gpu_check.parse_args(["--out", str(tmp_path)], environ={"OUT": "/x"}).out == tmp_path
    from_env = gpu_check.parse_args([], environ={"OUT": str(tmp_path)})
    assert from_env.out == tmp_path and from_env.bundle_logs  # the device tool returns at most 8 files
    dated = gpu_check.parse_args([], environ={})
    assert dated.out.name.startswith("gpu-check-") and not dated.bundle_logs
    assert not gpu_check.parse_args(["--no-bundle-logs"], environ={"OUT": str(tmp_path)}).bundle_logs


def test_skip_only_and_bad_arguments(capsys):
    assert gpu_check.parse_args(["--skip", "memcheck,racecheck"], environ={}).skipped == {"memcheck", "racecheck"}
    assert gpu_check.parse_args(["--only", "build,tests"], environ={}).skipped == {"env", "memcheck", "racecheck",
                                                                                   "bench"}
    assert gpu_check.parse_args(["--max-jobs", "3"], environ={}).max_jobs == 3
    assert gpu_check.parse_args([], environ={"MAX_JOBS": "5"}).max_jobs == 5
    for bad, message in ((["--skip", "lint"], "unknown stage"), (["--skip", "bench", "--only", "tests"], "not both"),
                         (["--budget", "5"], "--budget"), (["--max-jobs", "0"], "--max-jobs")):
        with pytest.raises(SystemExit):
            gpu_check.parse_args(bad, environ={})
        assert message in capsys.readouterr().err


def test_plan_builds_for_the_gpu_at_hand_and_names_what_is_missing(tmp_path):
    args = gpu_check.parse_args(["--out", str(tmp_path)], environ={})
    commands = gpu_check.stage_commands(args, PROBE_H200)
    build = " ".join(commands["build"])
    assert "--no-build-isolation --no-deps --no-index -e ." in build
    assert build.endswith("-C cmake.define.CMAKE_CUDA_ARCHITECTURES=90-real")
    assert commands["tests"][3:6] == ["python_tests", "-k", "cuda"] and f"--junitxml={tmp_path / 'junit.xml'}" in commands["tests"]
    assert commands["memcheck"][1:3] == ["--tool", "memcheck"] and commands["racecheck"][1:3] == ["--tool", "racecheck"]
    assert commands["bench"][-5:] == ["--device", "cuda", "--quick", "--out", str(tmp_path)]
    assert all(not gpu_check.missing_for(stage, PROBE_H200) for stage in gpu_check.STAGES)
    cpu_only = dict(PROBE_H200, torch_cuda=None, cuda_available=False, modules={"torch": True},
                    tools={"nvcc": None, "cmake": "/usr/bin/cmake", "ninja": None})
    assert gpu_check.missing_for("build", cpu_only) == ["scikit_build_core", "pybind11",
                                                        "a CUDA build of torch (this one is CPU-only)", "nvcc", "ninja"]
    assert gpu_check.missing_for("memcheck", cpu_only) == ["compute-sanitizer", "a CUDA device visible to torch"]
    assert gpu_check.cuda_architecture(None) is None and gpu_check.cuda_architecture([10, 0]) == "100-real"


def test_environment_of_the_stages(tmp_path):
    args = gpu_check.parse_args(["--max-jobs", "7"], environ={})
    env = gpu_check.stage_environment(args, tmp_path, environ={"PATH": "/usr/bin", "PYTHONPATH": "/a",
                                                               "CUDA_HOME": "/opt/cuda"})
    assert env["BFR_FAST_WITH_CUDA"] == "ON" and env["MAX_JOBS"] == env["CMAKE_BUILD_PARALLEL_LEVEL"] == "7"
    assert env["PYTHONPATH"].split(":") == [str(tmp_path), "/a"] and env["CUDA_HOME"] == "/opt/cuda"


def test_a_stage_past_its_limit_is_killed_and_logged(tmp_path):
    log = tmp_path / "stage.log"
    code, seconds = gpu_check.run_logged([sys.executable, "-c", "import time; print('hi', flush=True); time.sleep(30)"],
                                         log, timeout=1.5, env=None)
    assert code is None and seconds < 10
    assert "hi" in log.read_text() and "killed after 2 s" in log.read_text()
    assert gpu_check.run_logged([sys.executable, "-c", "raise SystemExit(3)"], log, 30, None)[0] == 3
    assert gpu_check.run_logged(["/no/such/tool"], log, 30, None)[0] == 127


def test_junit_counts_and_the_verdict_of_a_test_run(tmp_path):
    tests = tmp_path / "tests"
    tests.mkdir()
    (tests / "test_mixed.py").write_text(textwrap.dedent("""
        import pytest
        def test_ok_cuda(): pass
        def test_bad_cuda(): assert 1 == 2, "kernel mismatch"
        @pytest.mark.skip(reason="no CUDA device here")
        def test_skip_cuda(): pass
        @pytest.mark.skip(reason="no CUDA device here")
        def test_skip2_cuda(): pass
    """))
    (tests / "test_needs_mdtraj.py").write_text("import mdtraj_is_not_here\n")
    (tests / "test_needs_cleanfid.py").write_text("raise ModuleNotFoundError(\"No module named 'cleanfid'\")\n")
    junit = tmp_path / "junit.xml"
    subprocess.run([sys.executable, "-m", "pytest", str(tests), "-q", "-p", "no:cacheprovider", "--rootdir", str(tmp_path),
                    "--continue-on-collection-errors", f"--junitxml={junit}"], capture_output=True, cwd=tmp_path)
    counts = gpu_check.junit_counts(junit)
    assert counts["passed"] == 1 and counts["skipped"] == {"no CUDA device here": 2}
    assert len(counts["failed"]) == 1 and "kernel mismatch" in counts["failed"][0]
    assert len(counts["collection_errors"]) == 2 and not counts["errors"]
    result = StageResult("tests", "passed", details=counts)
    gpu_check.judge_tests(result, 1)
    assert result.status == "failed" and "1 failed" in result.reason and "1 modules failed to import" in result.reason
    only_optional = dict(counts, failed=[], collection_errors=[c for c in counts["collection_errors"] if "cleanfid" in c])
    result = StageResult("tests", "passed", details=only_optional)
    gpu_check.judge_tests(result, 1)
    assert result.status == "passed" and "1 test modules not collected" in result.reason
    gpu_check.judge_tests(result, None)
    assert result.status == "timed out"


def test_sanitizer_and_benchmark_readers(tmp_path):
    log = tmp_path / "memcheck.log"
    log.write_text("lincomb scalar float32: ok\nall ops ran and matched their references\n"
                   "========= ERROR SUMMARY: 0 errors\n")
    assert gpu_check.sanitizer_summary(log) == {"sanitizer": "0 errors", "ops": "all ops ran and matched their references"}
    log.write_text("========= RACECHECK SUMMARY: 2 hazards displayed (2 errors, 0 warnings)\n3 of the checks failed\n")
    assert gpu_check.sanitizer_summary(log) == {"sanitizer": "2 hazards displayed (2 errors, 0 warnings)",
                                                "ops": "3 of the checks failed"}
    assert gpu_check.sanitizer_summary(tmp_path / "none.log")["sanitizer"] == "no summary line"
    (tmp_path / "cuda-quick.json").write_text(json.dumps({"rows": [
        {"op": "lincomb", "case": "rk4", "seconds": {"fused": 0.001, "eager": 0.004},
         "fused_speedup_vs": {"eager": 4.0}, "errors": {"compile": "x"}}]}))
    assert gpu_check.bench_rows(tmp_path) == ["lincomb / rk4: 1 ms, fused vs eager 4.00x (compile failed)"]
    assert gpu_check.version_line("nvcc", "nvcc: NVIDIA\nCuda compilation tools, release 13.0, V13.0.88\nBuild x") == \
        "Cuda compilation tools, release 13.0, V13.0.88"


def test_summary_lists_every_stage_with_its_reason(tmp_path):
    args = gpu_check.parse_args(["--out", str(tmp_path)], environ={})
    results = [
        StageResult("env", "passed", "probe done"),
        StageResult("build", "passed", "ok", "pip install ...", 95.0),
        StageResult("tests", "failed", "1 passed, 1 failed", "pytest ...", 40.0,
                    details={"passed": 1, "failed": ["t.test_bad_cuda: kernel mismatch"], "errors": [],
                             "collection_errors": ["t_mdtraj: No module named 'mdtraj'"],
                             "skipped": {"no CUDA device": 2}, "tail": "E assert 1 == 2"}),
        StageResult("memcheck", "timed out", "killed at its limit of 90 s", details={"sanitizer": "no summary line",
                                                                                    "ops": "no result"}),
        StageResult("racecheck", "skipped", "budget spent (3 s left)"),
        StageResult("bench", "skipped", "left out by --skip/--only"),
    ]
    md, js = gpu_check.write_summary(tmp_path, results, PROBE_H200, args, "2026-12-02T12:00:00", dry_run=False)
    text = md.read_text()
    assert text.startswith("# GPU check: FAILED: tests, memcheck")
    assert "| racecheck | skipped | 0 | budget spent (3 s left) |" in text
    assert "- FAILED t.test_bad_cuda: kernel mismatch" in text and "- skipped 2: no CUDA device" in text
    assert "- not collected: t_mdtraj: No module named 'mdtraj'" in text and "E assert 1 == 2" in text
    assert "NVIDIA H200 (compute capability 9.0)" in text and "`cleanfid`" in text
    payload = json.loads(js.read_text())
    assert [s["status"] for s in payload["stages"]] == ["passed", "passed", "failed", "timed out", "skipped", "skipped"]


def test_dry_run_end_to_end(tmp_path):
    run = subprocess.run([str(REPO / "scripts" / "gpu_check.sh"), "--dry-run", "--out", str(tmp_path / "o"),
                          "--bundle-logs"], capture_output=True, text=True, env={"PYTHON": sys.executable,
                                                                               "PATH": "/usr/bin:/bin"}, timeout=120)
    assert run.returncode == 0, run.stderr
    for stage in gpu_check.STAGES[1:]:
        assert f"[{stage}] " in run.stdout
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["logs.tar.gz", "summary.json", "summary.md"]
    summary = (tmp_path / "o" / "summary.md").read_text()
    assert summary.startswith("# GPU check: DRY RUN") and "| build |" in summary and "| bench |" in summary


@pytest.mark.skipif(not fused_available("cpu"), reason="bfr_fast._C is not built")
def test_the_sanitizers_program_runs_every_op_on_the_cpu_kernels(capsys):
    from benchmarks import gpu_ops_smoke

    assert gpu_ops_smoke.main(["--device", "cpu"]) == 0
    out = capsys.readouterr().out
    for op in ("lincomb", "frequency_filter", "band_energy", "fc_weighted_mse", "pairwise_rmsd", "rmsd_min"):
        assert f"{op}" in out
    assert out.strip().endswith("all ops ran and matched their references")
