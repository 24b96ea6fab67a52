"""Backbone dihedrals and the coarse Ramachandran basins."""

from __future__ import annotations

import mdtraj
import numpy as np
import pytest
import torch

from bfr_fast.data.molecules import ALANINE_DIPEPTIDE_PDB, BASINS, backbone_dihedrals, basin_populations


def test_basins_of_constructed_angles_and_boundaries():
    phi = np.array([-60.0, -60.0, -60.0, -150.0, 60.0, 0.0, -60.0, -60.0])
    psi = np.array([-45.0, -120.0, 50.0, 150.0, 30.0, -45.0, -121.0, 49.9])
    # alpha_R: psi in [-120, 50) with phi < 0; phi >= 0 is alpha_L/C7ax; the rest beta/C7eq
    assert basin_populations(phi, psi) == {"beta_C7eq": 3 / 8, "alpha_R": 3 / 8, "alpha_L_C7ax": 2 / 8}
    assert basin_populations(phi[:, None], psi[:, None]) == basin_populations(phi, psi)
    assert tuple(basin_populations(phi, psi)) == BASINS


def test_basin_errors():
    with pytest.raises(ValueError, match="phi, psi"):
        basin_populations(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="phi, psi"):
        basin_populations(np.zeros(0), np.zeros(0))


def test_dihedrals_match_mdtraj_and_ignore_rigid_motion():
    trajectory = mdtraj.load(str(ALANINE_DIPEPTIDE_PDB))
    phi, psi = backbone_dihedrals(torch.from_numpy(trajectory.xyz), trajectory.topology)
    np.testing.assert_allclose(phi, np.degrees(mdtraj.compute_phi(trajectory)[1]), atol=1e-4)
    np.testing.assert_allclose(psi, np.degrees(mdtraj.compute_psi(trajectory)[1]), atol=1e-4)
    moved = trajectory.xyz @ np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]) + 0.3
    phi_moved, psi_moved = backbone_dihedrals(moved, trajectory.topology)
    np.testing.assert_allclose(phi_moved, phi, atol=1e-3)
    np.testing.assert_allclose(psi_moved, psi, atol=1e-3)


def test_dihedral_errors():
    topology = mdtraj.load_topology(str(ALANINE_DIPEPTIDE_PDB))
    with pytest.raises(ValueError, match="coordinates"):
        backbone_dihedrals(np.zeros((1, 21, 3)), topology)
    water = mdtraj.Topology()
    residue = water.add_residue("HOH", water.add_chain())
    for name, element in (("O", "O"), ("H1", "H"), ("H2", "H")):
        water.add_atom(name, mdtraj.element.get_by_symbol(element), residue)
    with pytest.raises(ValueError, match="phi/psi"):
        backbone_dihedrals(np.zeros((1, 3, 3)), water)
