"""A torchcfm generator on digits, trained with torchcfm's own loop and refined by the CLI with flags alone.

The network is torchcfm's ``UNetModelWrapper`` (called ``net(t, x, y)``), trained by exact-OT conditional flow
matching, wrapped in ``DataParallel`` and saved as torchcfm's CIFAR-10 script (and the BFR authors' base) saves
it: ``{"net_model", "ema_model", "sched", "optim", "step"}``, keys prefixed ``module.``. Run from the repository
root: ``python examples/torchcfm_digits.py --out runs/examples/torchcfm`` (the ``ecosystem`` extra).
"""

from __future__ import annotations

import copy
import json

import torch
from _common import digits_batches, parser, refine
from torchcfm.conditional_flow_matching import ExactOptimalTransportConditionalFlowMatcher
from torchcfm.models.unet.unet import UNetModelWrapper

NETWORK = {"dim": [1, 8, 8], "num_channels": 32, "num_res_blocks": 1, "channel_mult": [1, 2],
           "class_cond": True, "num_classes": 10, "attention_resolutions": "16"}


def ema_update(source: torch.nn.Module, target: torch.nn.Module, decay: float) -> None:
    """torchcfm's examples' EMA: target <- decay * target + (1 - decay) * source."""
    with torch.no_grad():
        for s, t in zip(source.state_dict().values(), target.state_dict().values(), strict=True):
            t.copy_(t * decay + s * (1 - decay)) if t.is_floating_point() else t.copy_(s)


def main() -> int:
    args = parser(__doc__.splitlines()[0], steps=4000).parse_args()
    torch.manual_seed(args.seed)
    batches, _ = digits_batches(128, args.seed)
    net_model = torch.nn.DataParallel(UNetModelWrapper(**NETWORK))  # as in torchcfm's multi-GPU CIFAR script
    ema_model = copy.deepcopy(net_model)
    optim = torch.optim.Adam(net_model.parameters(), lr=2e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(optim, lambda step: min(step, 100) / 100)  # warm-up
    fm = ExactOptimalTransportConditionalFlowMatcher(sigma=0.0)
    for step in range(1, args.steps + 1):
        x1, y1 = next(batches)
        x0 = torch.randn_like(x1)
        t, xt, ut, _, y1 = fm.guided_sample_location_and_conditional_flow(x0, x1, y1=y1)
        loss = torch.mean((net_model(t, xt, y1) - ut) ** 2)
        optim.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net_model.parameters(), 1.0)
        optim.step()
        sched.step()
        ema_update(net_model, ema_model, 0.999)
        if step % 250 == 0:
            print(f"step {step}: loss {loss.item():.4f}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    checkpoint = args.out / "cfm_digits.pt"
    torch.save({"net_model": net_model.state_dict(), "ema_model": ema_model.state_dict(), "sched": sched.state_dict(),
                "optim": optim.state_dict(), "step": args.steps}, checkpoint)
    return refine(["--generator", "torchcfm.models.unet.unet:UNetModelWrapper", "--generator-kwargs",
                   json.dumps(NETWORK), "--checkpoint", str(checkpoint), "--checkpoint-key", "ema_model",
                   "--convention", "torchcfm", "--class-conditional"], args.out, args.train_only)


if __name__ == "__main__":
    raise SystemExit(main())
