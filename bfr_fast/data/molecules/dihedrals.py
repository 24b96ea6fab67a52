"""Backbone dihedrals (phi, psi) and the coarse Ramachandran basins of a peptide ensemble."""

from __future__ import annotations

import mdtraj
import numpy as np
import torch

__all__ = ["BASINS", "backbone_dihedrals", "basin_populations"]

BASINS: tuple[str, ...] = ("beta_C7eq", "alpha_R", "alpha_L_C7ax")
r"""The coarse Ramachandran partition of :func:`basin_populations`, in degrees:

* ``beta_C7eq``: :math:`\phi < 0` and :math:`\psi \notin [-120, 50)` (extended: beta, C7eq, PII);
* ``alpha_R``: :math:`\phi < 0` and :math:`-120 \le \psi < 50` (right-handed helix);
* ``alpha_L_C7ax``: :math:`\phi \ge 0` (left-handed helix and C7ax, rare at 300 K).
"""


def backbone_dihedrals(coordinates: torch.Tensor | np.ndarray,
                       topology: mdtraj.Topology) -> tuple[np.ndarray, np.ndarray]:
    """The backbone dihedrals phi and psi of every frame, in degrees in (-180, 180].

    Args:
        coordinates: ``(frames, atoms, 3)`` coordinates in nm (any orientation).
        topology: the system's topology; its atom count must match.

    Returns:
        ``(phi, psi)``, each ``(frames, n_dihedrals)`` float64 (one column for alanine dipeptide).

    Raises:
        ValueError: if the shapes do not match the topology or it has no phi/psi dihedral.
    """
    xyz = coordinates.detach().cpu().float().numpy() if isinstance(coordinates, torch.Tensor) \
        else np.asarray(coordinates, dtype=np.float32)
    if xyz.ndim != 3 or xyz.shape[1:] != (topology.n_atoms, 3):
        raise ValueError(f"coordinates: expected shape (frames, {topology.n_atoms}, 3), got {xyz.shape}")
    trajectory = mdtraj.Trajectory(xyz, topology)
    (phi_atoms, phi), (psi_atoms, psi) = mdtraj.compute_phi(trajectory), mdtraj.compute_psi(trajectory)
    if len(phi_atoms) == 0 or len(psi_atoms) == 0:
        raise ValueError("topology: has no backbone phi/psi dihedral (is it a peptide?)")
    return np.degrees(phi.astype(np.float64)), np.degrees(psi.astype(np.float64))


def basin_populations(phi: np.ndarray, psi: np.ndarray) -> dict[str, float]:
    """Fractions of frames in each of the :data:`BASINS`, from one phi/psi pair per frame, in degrees.

    Args:
        phi: ``(frames,)`` or ``(frames, 1)`` phi angles in degrees.
        psi: the matching psi angles.

    Returns:
        ``{basin: fraction}``, fractions summing to 1.

    Raises:
        ValueError: if the arrays are empty or do not hold one angle per frame.
    """
    phi, psi = (np.asarray(angle, dtype=np.float64) for angle in (phi, psi))
    phi, psi = (angle[:, 0] if angle.ndim == 2 and angle.shape[1] == 1 else angle for angle in (phi, psi))
    if phi.ndim != 1 or psi.shape != phi.shape or phi.size == 0:
        raise ValueError(f"phi, psi: expected one angle per frame (same non-empty length), got shapes "
                         f"{phi.shape} and {psi.shape}")
    left = phi >= 0
    alpha_r = ~left & (psi >= -120) & (psi < 50)
    counts = {"beta_C7eq": np.sum(~left & ~alpha_r), "alpha_R": np.sum(alpha_r), "alpha_L_C7ax": np.sum(left)}
    return {basin: float(counts[basin]) / phi.size for basin in BASINS}
