#!/usr/bin/env bash
# One-command GPU check (issue 15): build with CUDA, CUDA tests, compute-sanitizer, quick CUDA benchmark, one folder.
# Usage: scripts/gpu_check.sh [--out DIR] [--budget 480] [--wheels DIR] [--skip STAGE,...] [--dry-run]
# Runs with $PYTHON if set, else python3: the interpreter that holds the CUDA build of torch. See
# benchmarks/gpu_check.py and docs/results/ops.md (GPU check).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY="${PYTHON:-$(command -v python3 || command -v python)}"
exec "$PY" -m benchmarks.gpu_check --python "$PY" "$@"
