"""Library workflows: typed settings in, results out, every stage checkpointed in a run folder.

- :mod:`~bfr_fast.pipelines.workspace`: :class:`Workspace`, where a pipeline writes and computes.
- :mod:`~bfr_fast.pipelines.training`: optimisation settings, checkpointed fitting, flow bases.
- :mod:`~bfr_fast.pipelines.evaluation`: the feature extractor of a data set, scored rows.
- :mod:`~bfr_fast.pipelines.refinement`: the BFR workflow for any frozen generator (:func:`refine`).
- :mod:`~bfr_fast.pipelines.comparison`: training losses compared at an equal budget (the DEFAR tables).
- :mod:`~bfr_fast.pipelines.generators`: a user's generator (factory + checkpoint, or a run folder) made frozen.
- :mod:`~bfr_fast.pipelines.spectra`: the PFR/FEL curves of a trained network against t (DEFAR's diagnostics).

The recipes of ``python -m bfr_fast.train`` and the ``refine``/``sample`` CLIs are thin layers over these: they
resolve the command line once into the settings these functions take.
"""

from bfr_fast.pipelines.evaluation import Scorer, build_extractor, evaluate_row
from bfr_fast.pipelines.presets import ImagePreset, image_preset
from bfr_fast.pipelines.refinement import (
    REFINERS,
    ROWS,
    Refinement,
    RefinementBudget,
    RefinementTask,
    refine,
    refinement_budget,
)
from bfr_fast.pipelines.sampling import SamplerSpec, balanced_labels, source_noise
from bfr_fast.pipelines.training import TrainedFlow, fit_network, train_base_flow, train_config, train_flow
from bfr_fast.pipelines.workspace import Workspace

__all__ = [
    "REFINERS",
    "ROWS",
    "ImagePreset",
    "Refinement",
    "RefinementBudget",
    "RefinementTask",
    "SamplerSpec",
    "Scorer",
    "TrainedFlow",
    "Workspace",
    "balanced_labels",
    "build_extractor",
    "evaluate_row",
    "fit_network",
    "image_preset",
    "refine",
    "refinement_budget",
    "source_noise",
    "train_base_flow",
    "train_config",
    "train_flow",
]
