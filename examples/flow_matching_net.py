"""A velocity network in Meta flow_matching's convention: ``forward(x, t, **extras)``, labels in ``extras["label"]``.

flow_matching ships paths, solvers and the ``ModelWrapper`` interface, not networks: a user brings one. This one is
a small UNet (this project's, as any other would do) behind that interface; ``examples/flow_matching_digits.py``
trains it with flow_matching's own path and loss.
"""

from __future__ import annotations

import torch
from flow_matching.utils import ModelWrapper

from bfr_fast.models import UNet


class VelocityNet(ModelWrapper):
    """``VelocityNet(channels, width, num_classes)(x, t, label=y)``: a class-conditional velocity on images."""

    def __init__(self, channels: int = 1, width: int = 32, num_classes: int | None = 10) -> None:
        super().__init__(UNet(channels, width, channel_mult=(1, 2), num_res_blocks=1, num_classes=num_classes))

    def forward(self, x: torch.Tensor, t: torch.Tensor, **extras: torch.Tensor) -> torch.Tensor:
        return self.model(x, t.expand(x.shape[0]), extras.get("label"))
