"""Runs the main job (`python -m bfr_fast.train --out OUT`) under torch's FLOP counter; prints the total and the
FLOPs per aten op (convolutions, convolution backwards and matrix products: what the counter counts) as JSON.

    python docs/results/main-job-profile/count_flops.py /tmp/runs/flops
"""
import json
import runpy
import sys
import time

from torch.utils.flop_counter import FlopCounterMode

sys.argv = ["bfr_fast.train", "--out", sys.argv[1]]
counter = FlopCounterMode(display=False)
start = time.perf_counter()
with counter:
    try:
        runpy.run_module("bfr_fast.train", run_name="__main__")
    except SystemExit as end:
        print("exit", end.code)
counts = {str(op): flops for op, flops in counter.get_flop_counts()["Global"].items()}
print(json.dumps({"total_flops": counter.get_total_flops(), "wall_s": time.perf_counter() - start, "by_op": counts},
                 indent=1))
