"""Training losses: ``loss(model, x1, y=None) -> (scalar, dict of logged parts)``.

Flow matching (FM), DDPM ε-prediction, and the exposure-bias family: input perturbation (IP), scheduled sampling (SDSS, MDSS) and
DEFAR (ADR + FC). Each states its cost as :attr:`~bfr_fast.losses.path_loss.PathLoss.forward_passes`.
"""

from bfr_fast.losses.defar import ADR_REDUCTIONS, WEIGHT_SOURCES, DEFARLoss
from bfr_fast.losses.eps_prediction import EpsPredictionLoss
from bfr_fast.losses.flow_matching import FlowMatchingLoss
from bfr_fast.losses.input_perturbation import InputPerturbationLoss
from bfr_fast.losses.path_loss import ForwardPasses, PathBatch, PathLoss, drop_labels
from bfr_fast.losses.scheduled_sampling import ScheduledSamplingLoss
from bfr_fast.losses.simulation import TIMESTEP_STRATEGIES, simulate, simulation_times

__all__ = [
    "ADR_REDUCTIONS",
    "TIMESTEP_STRATEGIES",
    "WEIGHT_SOURCES",
    "DEFARLoss",
    "EpsPredictionLoss",
    "FlowMatchingLoss",
    "ForwardPasses",
    "InputPerturbationLoss",
    "PathBatch",
    "PathLoss",
    "ScheduledSamplingLoss",
    "drop_labels",
    "simulate",
    "simulation_times",
]
