"""Small building blocks shared by the models: group-count rule, float32 GroupNorm, zero init."""

from __future__ import annotations

from typing import TypeVar

import torch.nn.functional as F
from torch import Tensor, nn

ModuleT = TypeVar("ModuleT", bound=nn.Module)


def group_count(channels: int, max_groups: int = 32, min_group_size: int = 4) -> int:
    """Number of GroupNorm groups for ``channels``.

    The largest divisor of ``channels`` that is at most ``max_groups`` and leaves at least
    ``min_group_size`` channels per group (1 if none does). At ADM's widths (128 channels and up) this is
    its fixed 32 groups; at 32 channels it is 8 groups of 4 rather than a per-channel (instance) norm.
    """
    limit = min(max_groups, channels // min_group_size)
    return next((g for g in range(limit, 0, -1) if channels % g == 0), 1)


class GroupNorm32(nn.GroupNorm):
    """GroupNorm computed in float32 and returned in the input's dtype.

    Means and variances summed in bfloat16 lose most of their digits; this holds both under autocast and
    for a model cast to bfloat16 as a whole.
    """

    def forward(self, x: Tensor) -> Tensor:
        return F.group_norm(x.float(), self.num_groups, self.weight.float(), self.bias.float(), self.eps).to(x.dtype)


def group_norm(channels: int) -> GroupNorm32:
    """A :class:`GroupNorm32` over ``channels`` with :func:`group_count` groups."""
    return GroupNorm32(group_count(channels), channels)


def zero_init(module: ModuleT) -> ModuleT:
    """Zeroes a module's parameters so the residual branch (or the output) it ends starts as zero."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module
