"""Velocity models, all called as ``model(x, t, y=None)`` with t a ``(B,)`` float32 tensor."""

from bfr_fast.models.embeddings import (
    ConditionEmbedding,
    LabelEmbedding,
    TimeEmbedding,
    batch_times,
    sinusoidal_embedding,
)
from bfr_fast.models.layers import group_count
from bfr_fast.models.mlp import MLP
from bfr_fast.models.unet import UNet

__all__ = [
    "MLP",
    "ConditionEmbedding",
    "LabelEmbedding",
    "TimeEmbedding",
    "UNet",
    "batch_times",
    "group_count",
    "sinusoidal_embedding",
]
