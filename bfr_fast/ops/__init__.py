"""The kernel boundary: fused ops with input checks, backend choice, and eager references.

Every op takes ``backend="auto" | "fused" | "eager"``; ``"auto"`` runs the compiled kernel where it is built
(:func:`fused_available`) and the eager reference (:mod:`bfr_fast.ops.reference`) elsewhere.
"""

from bfr_fast.ops._extension import BACKENDS, backend_report, fused_available
from bfr_fast.ops.lincomb import lincomb
from bfr_fast.ops.rmsd import RMSDMinima, pairwise_rmsd, rmsd_min
from bfr_fast.ops.spectral import band_energy, fc_weighted_mse, frequency_filter

__all__ = [
    "BACKENDS",
    "RMSDMinima",
    "backend_report",
    "band_energy",
    "fc_weighted_mse",
    "frequency_filter",
    "fused_available",
    "lincomb",
    "pairwise_rmsd",
    "rmsd_min",
]
