"""Training losses: ``loss(model, x1, y=None) -> (scalar, dict of logged parts)``."""

from bfr_fast.losses.flow_matching import FlowMatchingLoss, drop_labels

__all__ = ["FlowMatchingLoss", "drop_labels"]
