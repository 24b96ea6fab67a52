"""Runs ``python -m bfr_fast.train`` from a worktree of an older commit, past the editable install's finder.

    git worktree add /tmp/exp 305d4dd && cp bfr_fast/_C*.so /tmp/exp/bfr_fast/   # the same compiled extension
    python docs/results/pipelines-move/exp_run.py --out runs/old ...
"""
import runpy
import sys

WORKTREE = "/tmp/exp"
sys.meta_path = [f for f in sys.meta_path if "editable" not in type(f).__module__]
sys.path.insert(0, WORKTREE)
runpy.run_module("bfr_fast.train", run_name="__main__")
