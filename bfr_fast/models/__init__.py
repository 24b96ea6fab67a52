"""Velocity models, all called as ``model(x, t, y=None)`` with t a ``(B,)`` float32 tensor."""

from bfr_fast.models.embeddings import (
    ConditionEmbedding,
    LabelEmbedding,
    TimeEmbedding,
    batch_times,
    sinusoidal_embedding,
)
from bfr_fast.models.guidance import ClassifierFreeGuidance
from bfr_fast.models.layers import group_count
from bfr_fast.models.mlp import MLP
from bfr_fast.models.sit import SIT_PRESETS, SiT, position_embedding_2d
from bfr_fast.models.unet import UNet

__all__ = [
    "MLP",
    "SIT_PRESETS",
    "ClassifierFreeGuidance",
    "ConditionEmbedding",
    "LabelEmbedding",
    "SiT",
    "TimeEmbedding",
    "UNet",
    "batch_times",
    "group_count",
    "position_embedding_2d",
    "sinusoidal_embedding",
]
