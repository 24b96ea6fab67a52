"""DistributedDataParallel under torchrun (gloo on the CPU): ranks with different data train in sync."""

from __future__ import annotations

import subprocess
import sys

import torch
from torch import nn

from bfr_fast.data import InfiniteLoader

WORKER = '''
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from bfr_fast.data import InfiniteLoader
from bfr_fast.engine.distributed import setup, teardown
from bfr_fast.engine.trainer import TrainConfig, Trainer

out_dir = Path(sys.argv[1])
torch.set_num_threads(1)
ctx = setup(torch.device("cpu"))
assert ctx.enabled and ctx.world_size == 2
torch.manual_seed(0)  # the same initial weights on every rank, as DDP requires
model = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1))
x = torch.randn(32, 3)
batches = InfiniteLoader(x, torch.zeros(32, dtype=torch.long), 4, torch.Generator().manual_seed(ctx.rank))


def loss_fn(m, xb, yb):
    return (m(xb) - xb.sum(1, keepdim=True)).pow(2).mean(), {}


config = TrainConfig(steps=5, lr=1e-2, warmup_steps=0, checkpoint_every=5, log_every=5)
Trainer(model, loss_fn, batches, config, checkpoint_path=out_dir / "ckpt.pt", dist=ctx).fit()
flat = torch.cat([p.detach().flatten() for p in model.parameters()])
gathered = [torch.empty_like(flat) for _ in range(ctx.world_size)]
dist.all_gather(gathered, flat)
torch.save(torch.stack(gathered), out_dir / f"params-{ctx.rank}.pt")
teardown(ctx)
'''


def single_process_reference(steps: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """The initial and final weights of the worker's training written out in one process: each step averages the
    gradients of the two ranks' batches (what DDP's all-reduce does), clips their norm to 1 (the default
    ``grad_clip``) and takes an AdamW step at the constant lr (no warm-up)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1))
    x = torch.randn(32, 3)
    streams = [InfiniteLoader(x, torch.zeros(32, dtype=torch.long), 4, torch.Generator().manual_seed(rank))
               for rank in range(2)]
    initial = torch.cat([p.detach().flatten() for p in model.parameters()])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    for _ in range(steps):
        optimizer.zero_grad()
        losses = [(model(xb) - xb.sum(1, keepdim=True)).pow(2).mean() for xb, _ in (next(s) for s in streams)]
        (0.5 * (losses[0] + losses[1])).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    return initial, torch.cat([p.detach().flatten() for p in model.parameters()])


def test_ddp_ranks_stay_in_sync_and_train_as_one_process_on_both_batches(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    # cwd outside the source tree: the workers must import the installed (or PYTHONPATH) bfr_fast.
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               str(script), str(tmp_path)]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    params = torch.load(tmp_path / "params-0.pt")
    assert torch.equal(params[0], params[1])  # different batches per rank, identical weights: gradients averaged
    assert torch.load(tmp_path / "ckpt.pt", weights_only=True)["step"] == 5
    # Agreeing is not enough (it holds without any step): the weights are those of one process that trained on
    # both ranks' batches, and they moved.
    initial, expected = single_process_reference()
    torch.testing.assert_close(params[0], expected, rtol=1e-5, atol=1e-6)
    assert (expected - initial).abs().max() > 1e-2
