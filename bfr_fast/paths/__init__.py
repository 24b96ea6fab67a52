"""Probability paths and couplings: the linear (CondOT) path, minibatch couplings, and DDPM as an ODE.

Time runs from the source (noise, t=0) to the target (data, t=1).
"""

from bfr_fast.paths.coupling import independent_coupling, ot_coupling
from bfr_fast.paths.ddpm import DDPMSchedule, EpsTrainingSample, ProbabilityFlowVelocity
from bfr_fast.paths.linear import LinearPath

__all__ = [
    "DDPMSchedule",
    "EpsTrainingSample",
    "LinearPath",
    "ProbabilityFlowVelocity",
    "independent_coupling",
    "ot_coupling",
]
