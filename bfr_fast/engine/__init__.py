"""The machinery below the workflows: the training loop, the distributed context, and a run's folder.

:mod:`bfr_fast.pipelines` builds on these; the CLIs and recipes (:mod:`bfr_fast.train`, ``refine``, ``sample``)
sit above both. Nothing here imports a workflow, a recipe or a CLI.
"""

from bfr_fast.engine.distributed import DistributedContext
from bfr_fast.engine.run_folder import RunFolder
from bfr_fast.engine.trainer import PRECISIONS, TrainConfig, Trainer

__all__ = ["PRECISIONS", "DistributedContext", "RunFolder", "TrainConfig", "Trainer"]
