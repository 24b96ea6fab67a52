"""Probe: does a larger per-class OT batch or longer training cure the LFR's 1-NFE collapse?

Retrains only the LFR of a finished ``bfr`` run (its base and inversion cache are copied, not retrained) with
``BATCH`` latents per OT minibatch and ``STEPS`` steps, then scores 1 and 10 NFE on the recipe's seed-0
evaluation noise (1000 samples, FD-digitsnet). Appends one JSON line to ``OUT``.

    python lfr_coupling.py RUN_FOLDER BATCH STEPS {ot,independent} OUT.jsonl

Recorded with the code of commit 305d4dd, before the recipes' internals moved to ``bfr_fast.pipelines``; to
rerun it as it ran: ``git worktree add /tmp/at-305d4dd 305d4dd`` and run it there.
"""
import dataclasses
import json
import shutil
import sys
import time
from pathlib import Path
import torch
from bfr_fast.train.options import RunOptions
from bfr_fast.engine.run_folder import RunFolder
from bfr_fast.engine import distributed
from bfr_fast.train.recipes.base import RunContext
from bfr_fast.train.recipes import bfr
from bfr_fast.train.recipes.common import build_extractor, evaluate_row
from bfr_fast.refiners import LatentFlowRefiner
from bfr_fast.train.sampling import balanced_labels, source_noise

src, batch, steps, coupling, log_path = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
out = Path(log_path).parent / f"run-b{batch}-s{steps}-{coupling}"
(out / "checkpoints").mkdir(parents=True, exist_ok=True)
for f in ("base.pt", "inversion.pt"):
    if not (out / "checkpoints" / f).exists():
        shutil.copy(src / "checkpoints" / f, out / "checkpoints" / f)
torch.manual_seed(0)
opts = RunOptions(out=out, recipe="bfr", resume=True, steps=None, batch_size=batch)
dist = distributed.setup(torch.device("cpu"))
ctx = RunContext(opts, RunFolder(out), torch.device("cpu"), dist)
setup = bfr.prepare(ctx)
setup = dataclasses.replace(setup, budget=dataclasses.replace(setup.budget, refiner_steps=steps))
cache = bfr.inversion_cache(ctx, setup)
t0 = time.time()
lfr = LatentFlowRefiner(setup.budget.refiner_network(1, 10), alpha=0.1, coupling=coupling)
lfr = bfr.train_refiner(ctx, setup, "lfr", lfr, lfr.training_loss(), cache.latents.cpu(), cache.labels.cpu(), 4)
train_s = time.time() - t0
ext = build_extractor(ctx, setup.data)
ref = ext.extract(setup.data.test_x)
n = 1000
labels = balanced_labels(n, 10, ctx.device)
noise = source_noise(n, setup.data.image_shape, 0, ctx.device)
res = {"batch": batch, "steps": steps, "coupling": coupling, "train_s": round(train_s, 1), "latent_std_data": cache.latents.std().item()}
for nfe in (1, 10):
    o = lfr.sample(noise, setup.generator, labels, num_steps=nfe)
    r = evaluate_row(ctx, {"method": "lfr", "nfe": nfe}, o.samples, ref, ext, f"lfr-{nfe}")
    res[f"nfe{nfe}"] = {k: round(float(r[k]), 4) for k in ("fd", "precision", "recall", "is")} | {"latent_std": round(o.latents.std().item(), 3)}
print(json.dumps(res))
with open(log_path, "a") as fh:
    fh.write(json.dumps(res) + "\n")
