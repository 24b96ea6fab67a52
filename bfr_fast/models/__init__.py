"""Velocity models, all called as ``model(x, t, y=None)`` with t a ``(B,)`` float32 tensor."""

from bfr_fast.models.conventions import CONVENTIONS, TIME_DIRECTIONS, ForeignNetwork
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
    "CONVENTIONS",
    "MLP",
    "SIT_PRESETS",
    "ClassifierFreeGuidance",
    "ConditionEmbedding",
    "ForeignNetwork",
    "LabelEmbedding",
    "SiT",
    "TIME_DIRECTIONS",
    "TimeEmbedding",
    "UNet",
    "batch_times",
    "group_count",
    "position_embedding_2d",
    "sinusoidal_embedding",
]
