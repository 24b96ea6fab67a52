"""DistributedDataParallel set-up for runs launched by ``torchrun`` (nothing home-made: torch.distributed)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistributedContext:
    """Where this process sits in the job. A plain ``python`` launch is rank 0 of a world of 1."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """Only the main process writes files and shows progress."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def setup(device: torch.device) -> DistributedContext:
    """Joins the process group when ``torchrun`` set ``WORLD_SIZE`` > 1; otherwise returns a single-process context.

    Under torchrun each rank takes GPU ``LOCAL_RANK`` (NCCL) when ``device`` is CUDA, or the CPU (gloo).
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistributedContext(device=device)
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistributedContext(rank=dist.get_rank(), world_size=dist.get_world_size(), device=device)


def teardown(context: DistributedContext) -> None:
    """Leaves the process group, if one was joined.

    All ranks meet at a barrier first: a rank that destroys its gloo group while a peer is still inside a
    collective (or its background threads still serve one) can abort the process ("terminate called without an
    active exception"; seen once in CI under load).
    """
    if context.enabled and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
