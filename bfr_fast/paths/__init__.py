"""Probability paths and couplings: interpolants (linear, GVP, VP) and their SDE, minibatch couplings, and DDPM as
an ODE.

Time runs from the source (noise, t=0) to the target (data, t=1).
"""

from bfr_fast.paths.coupling import independent_coupling, ot_coupling
from bfr_fast.paths.ddpm import DDPMSchedule, EpsTrainingSample, ProbabilityFlowVelocity
from bfr_fast.paths.interpolants import (
    DIFFUSION_FORMS,
    GVPInterpolant,
    Interpolant,
    PathCoefficients,
    VPInterpolant,
    sde_drift_and_diffusion,
)
from bfr_fast.paths.linear import LinearPath

__all__ = [
    "DIFFUSION_FORMS",
    "DDPMSchedule",
    "EpsTrainingSample",
    "GVPInterpolant",
    "Interpolant",
    "LinearPath",
    "PathCoefficients",
    "ProbabilityFlowVelocity",
    "VPInterpolant",
    "independent_coupling",
    "ot_coupling",
    "sde_drift_and_diffusion",
]
