"""Probe: is the LFR's 1-NFE collapse a non-straight coupling? One reflow step answers it.

Takes the trained LFR of a finished ``bfr`` run as teacher, draws 10 x ``PER_CLASS`` noise latents z (not the
evaluation noise), pairs each with the teacher's 10-Euler-step output R_10(z) (a deterministic coupling), and
fine-tunes a copy of the teacher by flow matching on those fixed pairs for ``STEPS`` steps (rectified-flow
"reflow"). Scores teacher at 1 and 10 NFE and the reflowed student at 1 NFE on the recipe's seed-0 evaluation
noise; appends one JSON line to ``OUT``.

    python lfr_reflow.py RUN_FOLDER STEPS PER_CLASS OUT.jsonl

Recorded with the code of commit 305d4dd, before the recipes' internals moved to ``bfr_fast.pipelines``; to
rerun it as it ran: ``git worktree add /tmp/at-305d4dd 305d4dd`` and run it there.
"""
import copy
import json
import sys
import time
from pathlib import Path
import torch
from bfr_fast.train.options import RunOptions
from bfr_fast.engine.run_folder import RunFolder
from bfr_fast.engine import distributed
from bfr_fast.train.recipes.base import RunContext
from bfr_fast.train.recipes import bfr
from bfr_fast.train.recipes.common import build_extractor, ema_decay, evaluate_row
from bfr_fast.refiners import Refiner
from bfr_fast.losses import FlowMatchingLoss
from bfr_fast.data import InfiniteLoader
from bfr_fast.engine.trainer import Trainer, TrainConfig
from bfr_fast.train.sampling import balanced_labels, source_noise

run, steps, pairs_per_class, log_path = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
torch.manual_seed(0)
opts = RunOptions(out=run, recipe="bfr", resume=True)
dist = distributed.setup(torch.device("cpu"))
ctx = RunContext(opts, RunFolder(run), torch.device("cpu"), dist)
setup = bfr.prepare(ctx)
teacher = Refiner.load(run / "checkpoints" / "lfr-refiner.pt", setup.budget.refiner_network(1, 10)).eval()
n_pairs = 10 * pairs_per_class
y_pairs = balanced_labels(n_pairs, 10, "cpu")
z = source_noise(n_pairs, (1, 8, 8), 12345, "cpu")  # not the evaluation noise
t0 = time.time()
with torch.no_grad():
    z_hat = teacher.refine(z, num_steps=10, y=y_pairs, batch_size=1000)
student = copy.deepcopy(teacher).train().requires_grad_(True)
fm = FlowMatchingLoss(coupling="independent")  # the pairs ARE the coupling
def loss_fn(m, xb, yb):
    return fm(m, xb[:, 1], yb, x0=xb[:, 0])
batches = InfiniteLoader(torch.stack([z, z_hat], 1), y_pairs, 128, torch.Generator().manual_seed(7))
trainer = Trainer(student, loss_fn, batches, TrainConfig(steps=steps, lr=1e-3, warmup_steps=steps // 10, ema_decay=ema_decay(steps), log_every=max(steps // 10, 1)), None, dist, description="reflow")
trainer.fit()
student = trainer.ema_model.eval()
train_s = time.time() - t0
ext = build_extractor(ctx, setup.data)
ref = ext.extract(setup.data.test_x)
n = 1000
labels = balanced_labels(n, 10, "cpu")
noise = source_noise(n, setup.data.image_shape, 0, "cpu")
res = {"run": str(run), "reflow_steps": steps, "pairs": n_pairs, "train_s": round(train_s, 1)}
for name, model, nfe in (("teacher", teacher, 1), ("teacher", teacher, 10), ("reflow", student, 1)):
    o = model.sample(noise, setup.generator, labels, num_steps=nfe)
    r = evaluate_row(ctx, {"method": name, "nfe": nfe}, o.samples, ref, ext, f"{name}-{nfe}")
    res[f"{name}{nfe}"] = {k: round(float(r[k]), 4) for k in ("fd", "precision", "recall", "is")} | {"latent_std": round(o.latents.std().item(), 3)}
print(json.dumps(res))
with open(log_path, "a") as fh:
    fh.write(json.dumps(res) + "\n")
