"""A Meta flow_matching generator on digits, trained with flow_matching's own path and refined by the CLI.

The network (``examples/flow_matching_net.py``) is called ``model(x, t, label=y)``, as flow_matching's solvers call
a ``ModelWrapper``; it is trained on flow_matching's ``AffineProbPath`` with the ``CondOTScheduler`` and saved as
flow_matching's image example saves it: ``{"model", "optimizer", "epoch"}``. Run from the repository root:
``python examples/flow_matching_digits.py --out runs/examples/flow_matching`` (the ``ecosystem`` extra).
"""

from __future__ import annotations

import json

import torch
from _common import digits_batches, parser, refine
from flow_matching.path import AffineProbPath
from flow_matching.path.scheduler import CondOTScheduler
from flow_matching_net import VelocityNet

NETWORK = {"channels": 1, "width": 32, "num_classes": 10}


def main() -> int:
    args = parser(__doc__.splitlines()[0], steps=4000).parse_args()
    torch.manual_seed(args.seed)
    batches, _ = digits_batches(128, args.seed)
    model = VelocityNet(**NETWORK)
    path = AffineProbPath(scheduler=CondOTScheduler())
    optim = torch.optim.AdamW(model.parameters(), lr=2e-3)
    warmup = torch.optim.lr_scheduler.LambdaLR(optim, lambda step: min(step, 100) / 100)
    ema = torch.optim.swa_utils.AveragedModel(model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(0.999))
    for step in range(1, args.steps + 1):
        x1, y = next(batches)
        x0 = torch.randn_like(x1)
        sample = path.sample(x_0=x0, x_1=x1, t=torch.rand(x1.shape[0]))
        loss = torch.mean((model(sample.x_t, sample.t, label=y) - sample.dx_t) ** 2)
        optim.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optim.step()
        warmup.step()
        ema.update_parameters(model)
        if step % 250 == 0:
            print(f"step {step}: loss {loss.item():.4f}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    checkpoint = args.out / "fm_digits.pt"
    torch.save({"model": ema.module.state_dict(), "optimizer": optim.state_dict(), "epoch": args.steps}, checkpoint)
    return refine(["--generator", "examples.flow_matching_net:VelocityNet", "--generator-kwargs", json.dumps(NETWORK),
                   "--checkpoint", str(checkpoint), "--convention", "flow_matching", "--class-conditional"],
                  args.out, args.train_only)


if __name__ == "__main__":
    raise SystemExit(main())
