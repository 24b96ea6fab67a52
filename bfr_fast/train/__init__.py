"""Training: the trainer loop, the run folder, recipes and the ``python -m bfr_fast.train`` CLI."""

from bfr_fast.train.trainer import TrainConfig, Trainer

__all__ = ["TrainConfig", "Trainer"]
