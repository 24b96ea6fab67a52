"""``python -m bfr_fast.train``: the CLI, its runner and its recipes (named configurations of the pipelines).

The training loop and the run folder live in :mod:`bfr_fast.engine`; ``TrainConfig`` and ``Trainer`` are exported
here too, where earlier releases had them.
"""

from bfr_fast.engine.trainer import TrainConfig, Trainer

__all__ = ["TrainConfig", "Trainer"]
