"""Probe: does a weaker ADR close DEFAR's gap to FM? Measured on the validation split, never the test set.

Trains fm, defar (λ_ADR = 10, the default) and defar with λ_ADR = 1 with the `defar` recipe's settings (independent
coupling, corrected loss, 1000 steps, the preset's optimiser) on ``digits-val`` (the training images minus a 20%
stratified validation carve), one training seed, and scores each at 5/10/50 NFE against the validation images.

    PYTHONPATH=. python docs/results/defar-digits-v2/probes/lambda_val.py OUT_FOLDER [STEPS]

Recorded with the code of commit 305d4dd, before the recipes' internals moved to ``bfr_fast.pipelines``; to
rerun it as it ran: ``git worktree add /tmp/at-305d4dd 305d4dd`` and run it there.
"""
import json
import sys
from functools import partial
from pathlib import Path

import torch

from bfr_fast.losses import DEFARLoss
from bfr_fast.engine import distributed
from bfr_fast.train.options import RunOptions
from bfr_fast.train.recipes.base import RunContext
from bfr_fast.train.recipes.common import load_data
from bfr_fast.train.recipes.defar import COUPLING, defar_budget, variants
from bfr_fast.train.recipes.loss_comparison import ComparisonSetup, LossVariant, run_variants
from bfr_fast.engine.run_folder import RunFolder

out = Path(sys.argv[1])
out.mkdir(parents=True, exist_ok=True)
steps = int(sys.argv[2]) if len(sys.argv) > 2 else None  # a smoke run: a few steps
options = RunOptions(out=out, recipe="defar", data="digits-val", seeds=1, steps=steps)
ctx = RunContext(options, RunFolder(out), torch.device("cpu"), distributed.setup(torch.device("cpu")))
data = load_data(ctx)
assert data.name == "digits-val"
setup = ComparisonSetup.create(ctx, data, defar_budget(data.image_shape))
chosen = variants(["fm", "defar"])
weak = LossVariant("defar-lambda1", partial(DEFARLoss, lambda_adr=1.0, coupling=COUPLING), chosen[1].samplers,
                   settings={"lambda_adr": 1.0})
rows = run_variants(ctx, setup, [*chosen, weak])
keep = ("method", "seed", "nfe", "train_steps", "train_seconds", "fd", "kid", "precision", "recall")
summary = [{k: r.get(k) for k in keep} for r in rows]
(out / "rows.json").write_text(json.dumps(summary, indent=1))
for r in summary:
    print(r)
