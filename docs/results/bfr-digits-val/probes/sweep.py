"""Probe: the defaults of the 1-NFE BFR rows, chosen on the validation split (never the test set).

Takes a finished ``bfr`` run on ``--data digits-val`` (training images minus a stratified 20% validation carve;
its "test" split IS the validation set) and, reusing its base, pool, inversion cache and refiners, trains
variants and scores each at 1000 samples of evaluation seed 0 against the validation images (FD-digitsnet,
the classifier trained on the carved training part). Appends one JSON line per variant to ``OUT``.

    python sweep.py RUN_FOLDER OUT.jsonl students|augmentation|pairs [START_FRACTION [STEPS]]

- ``students``: the recipe's DFR and LFR teachers distilled with ReflowLoss start fractions 0.5 and 1, 600 steps
  (same pairs: the recipe's own ``*_reflow-pairs.pt``; its own students are start fraction 0).
- ``pairs``: students on 300 pairs per class instead of 1000 (at START_FRACTION, STEPS steps, default 600).
- ``augmentation``: DFR teachers with the authors' light augmentation (additive noise std 0.01 on 30% of the
  sources, no blur: their ``train_cifar10_DFR.py``) and with none, each distilled with start fraction 1.

Recorded with the code of commit 305d4dd, before the recipes' internals moved to ``bfr_fast.pipelines``; to
rerun it as it ran: ``git worktree add /tmp/at-305d4dd 305d4dd`` and run it there.
"""
import json
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from bfr_fast.data.augment import RefinerAugmentation
from bfr_fast.refiners import DataFlowRefiner, Refiner
from bfr_fast.engine import distributed
from bfr_fast.train.options import RunOptions
from bfr_fast.train.recipes import bfr
from bfr_fast.train.recipes.base import RunContext
from bfr_fast.train.recipes.common import build_extractor, evaluate_row
from bfr_fast.engine.run_folder import RunFolder
from bfr_fast.train.sampling import balanced_labels, source_noise

run, out, stage = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
options = RunOptions(out=run, recipe="bfr", data="digits-val", resume=True)
ctx = RunContext(options, RunFolder(run), torch.device("cpu"), distributed.setup(torch.device("cpu")))
setup = bfr.prepare(ctx)
data = setup.data
assert data.name == "digits-val", data.name
extractor = build_extractor(ctx, data)
reference = extractor.extract(data.test_x)
n = 1000
labels = balanced_labels(n, data.num_classes, ctx.device)
noise = source_noise(n, data.image_shape, 0, ctx.device)


def network():
    return setup.budget.refiner_network(data.image_shape[0], data.num_classes)


def score(tag, refiners, extra):
    rows = []
    for c in bfr.table_candidates(setup.generator, refiners, noise, labels, 0, include_base=False):
        if c.solver != "euler":
            continue
        samples, _, nfe = c.make()
        r = evaluate_row(ctx, {"method": c.method, "nfe": nfe}, samples, reference, extractor, f"probe-{tag}-{c.tag}")
        rows.append({"method": c.method, "nfe": nfe, **{k: round(float(r[k]), 4) for k in ("fd", "precision", "recall")}})
    line = {"stage": stage, "variant": tag, **extra, "rows": rows}
    print(json.dumps(line), flush=True)
    with open(out, "a") as fh:
        fh.write(json.dumps(line) + "\n")


def student(name, teacher, sources, y, fraction, steps, pairs_from, per_class=None):
    """Distils ``teacher`` as ``name`` on the pairs already in ``pairs_from`` (copied; the recipe's stage loads them),
    or on their first ``per_class`` of each class."""
    ckpt = ctx.folder.checkpoint
    if not ckpt(f"{name}-pairs").is_file() and ckpt(f"{pairs_from}-pairs").is_file():
        shutil.copy(ckpt(f"{pairs_from}-pairs"), ckpt(f"{name}-pairs"))
        if per_class is not None:  # sources are class-blocked (build_pool / balanced labels are interleaved: see y)
            payload = torch.load(ckpt(f"{name}-pairs"), weights_only=True)
            keep = torch.cat([torch.nonzero(y.cpu() == c)[:per_class, 0] for c in range(data.num_classes)])
            payload["pairs"] = payload["pairs"][keep]
            torch.save(payload, ckpt(f"{name}-pairs"))
            sources, y = sources[keep], y[keep]
    s = replace(setup, budget=replace(setup.budget, distill_start_fraction=fraction, distill_steps=steps))
    start = time.perf_counter()
    distilled = bfr.distill_refiner(ctx, s, name, teacher, sources, y, 7)
    return distilled.refiner, round(time.perf_counter() - start, 1)


ckpt = ctx.folder.checkpoint
per_class = setup.budget.distill_pairs
count = per_class * data.num_classes
lfr_z = source_noise(count, data.image_shape, options.seed + bfr.PAIRS_SEED_OFFSET, ctx.device)
lfr_y = balanced_labels(count, data.num_classes, ctx.device)
dfr_sources = bfr.cached_pool(ctx, setup.generator, data.image_shape, per_class, data.num_classes,
                              "dfr_reflow-sources", bfr.PAIRS_SEED_OFFSET)
teachers = {m: Refiner.load(ckpt(f"{m}-refiner"), network()).eval() for m in ("dfr", "lfr")}

if stage == "students":
    for fraction, steps in ((0.5, 600), (1.0, 600)):  # (0, 600) is the recipe's own student
        for method, (src, y) in (("dfr", (dfr_sources.x, dfr_sources.y)), ("lfr", (lfr_z, lfr_y))):
            name = f"probe-{method}-sf{fraction:g}-s{steps}"
            refiner, seconds = student(name, teachers[method], src, y, fraction, steps, f"{method}_reflow")
            score(name, {f"{method}_reflow": refiner}, {"method": method, "start_fraction": fraction,
                                                        "steps": steps, "seconds": seconds})
elif stage == "pairs":  # fewer pairs (the DFR's sources cost 20 base NFE each), fewer steps
    fraction = float(sys.argv[4])
    steps = int(sys.argv[5]) if len(sys.argv) > 5 else 600
    for method, (src, y) in (("dfr", (dfr_sources.x, dfr_sources.y)), ("lfr", (lfr_z, lfr_y))):
        for per_class in (300,):
            name = f"probe-{method}-sf{fraction:g}-pc{per_class}" + (f"-s{steps}" if steps != 600 else "")
            refiner, seconds = student(name, teachers[method], src, y, fraction, steps, f"{method}_reflow", per_class)
            score(name, {f"{method}_reflow": refiner}, {"method": method, "start_fraction": fraction,
                                                        "per_class": per_class, "steps": steps, "seconds": seconds})
elif stage == "augmentation":
    pool = bfr.sample_pool(ctx, setup)
    variants = {
        "light": RefinerAugmentation(blur_prob=0.0, noise_prob=0.3, noise_std=0.01),
        "none": None,
    }
    for tag, augmentation in variants.items():
        dfr = DataFlowRefiner(network(), augmentation=augmentation)
        teacher = bfr.train_refiner(ctx, setup, f"probe-dfr-aug-{tag}", dfr, dfr.training_loss(pool),
                                    data.train_x, data.train_y, 3)
        score(f"aug-{tag}", {"dfr": teacher}, {"augmentation": tag})
        refiner, seconds = student(f"probe-dfr-aug-{tag}-student", teacher, dfr_sources.x, dfr_sources.y,
                                   float(sys.argv[4]) if len(sys.argv) > 4 else 1.0, 600, "none")
        score(f"aug-{tag}-student", {"dfr_reflow": refiner}, {"augmentation": tag, "seconds": seconds})
else:
    raise SystemExit(f"unknown stage {stage!r}: students | augmentation")
