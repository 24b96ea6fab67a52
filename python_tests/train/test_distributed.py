"""DistributedDataParallel through torch.distributed (gloo on the CPU): ranks train in sync and checkpoint."""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from bfr_fast.data import InfiniteLoader
from bfr_fast.train.distributed import setup, teardown
from bfr_fast.train.trainer import TrainConfig, Trainer


def _worker(rank: int, world_size: int, port: int, out_dir: str) -> None:
    os.environ.update(WORLD_SIZE=str(world_size), RANK=str(rank), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    ctx = setup(torch.device("cpu"))
    torch.manual_seed(0)  # same initial weights on every rank, as DDP requires
    model = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1))
    x = torch.randn(32, 3)
    batches = InfiniteLoader(x, torch.zeros(32, dtype=torch.long), 4, torch.Generator().manual_seed(rank))

    def loss_fn(m, xb, yb):
        loss = (m(xb) - xb.sum(1, keepdim=True)).pow(2).mean()
        return loss, {}

    config = TrainConfig(steps=5, lr=1e-2, warmup_steps=0, checkpoint_every=5, log_every=5)
    trainer = Trainer(model, loss_fn, batches, config, checkpoint_path=Path(out_dir, "ckpt.pt"), dist=ctx)
    trainer.fit()
    flat = torch.cat([p.detach().flatten() for p in model.parameters()])
    gathered = [torch.empty_like(flat) for _ in range(world_size)]
    dist.all_gather(gathered, flat)
    torch.save(torch.stack(gathered), os.path.join(out_dir, f"params-{rank}.pt"))
    teardown(ctx)


def test_ddp_ranks_stay_in_sync(tmp_path):
    port = 29500 + os.getpid() % 1000
    mp.spawn(_worker, args=(2, port, str(tmp_path)), nprocs=2, join=True)
    params = torch.load(tmp_path / "params-0.pt")
    assert torch.equal(params[0], params[1])  # different data per rank, identical weights: gradients were averaged
    assert torch.load(tmp_path / "ckpt.pt", weights_only=True)["step"] == 5
