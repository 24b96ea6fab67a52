"""Generic trajectory loading through mdtraj, masses and heavy atoms, centre-of-mass removal."""

from __future__ import annotations

import mdtraj
import numpy as np
import pytest
import torch

from bfr_fast.data.molecules import ALANINE_DIPEPTIDE_PDB, atom_masses, heavy_atom_indices, load_trajectory
from bfr_fast.data.molecules import remove_center_of_mass


@pytest.fixture(scope="module")
def written(short_md, tmp_path_factory):
    """The short MD written as DCD, XTC, PDB, HDF5 (PyTables, in the test extra) and a coordinates .npz."""
    folder = tmp_path_factory.mktemp("trajectories")
    trajectory = short_md.to_mdtraj()
    for suffix in ("dcd", "xtc", "pdb", "h5"):
        trajectory.save(str(folder / f"md.{suffix}"))
    np.savez(folder / "md.npz", coordinates=short_md.coordinates)
    return folder, short_md.coordinates


@pytest.mark.parametrize("suffix, atol", [
    ("dcd", 1e-6), ("xtc", 1e-3), ("h5", 1e-6), ("npz", 0.0)])
def test_formats_load_the_same_frames(written, suffix, atol):
    folder, xyz = written
    trajectory = load_trajectory(ALANINE_DIPEPTIDE_PDB, folder / f"md.{suffix}")
    assert trajectory.n_frames == 50 and trajectory.n_atoms == 22
    np.testing.assert_allclose(trajectory.xyz, xyz, atol=atol)


def test_pdb_needs_no_topology(written):
    folder, xyz = written
    trajectory = load_trajectory(None, folder / "md.pdb")
    np.testing.assert_allclose(trajectory.xyz, xyz, atol=1e-4)  # PDB keeps 0.001 angstrom
    assert [a.name for a in trajectory.topology.atoms] == [a.name for a in mdtraj.load_topology(
        str(ALANINE_DIPEPTIDE_PDB)).atoms]
    with pytest.raises(ValueError, match="topology_path"):
        load_trajectory(None, folder / "md.dcd")


def test_h5_needs_no_topology(written):
    folder, xyz = written
    np.testing.assert_allclose(load_trajectory(None, folder / "md.h5").xyz, xyz, atol=1e-6)


def test_several_files_join_in_order_with_stride(written):
    folder, xyz = written
    trajectory = load_trajectory(str(ALANINE_DIPEPTIDE_PDB), [folder / "md.dcd", str(folder / "md.npz")], stride=3)
    np.testing.assert_allclose(trajectory.xyz, np.concatenate([xyz[::3], xyz[::3]]), atol=1e-6)


def test_missing_and_bad_files_are_named(written, tmp_path):
    folder, _ = written
    with pytest.raises(FileNotFoundError, match=r"Trajectory file not found: .*gone\.dcd"):
        load_trajectory(ALANINE_DIPEPTIDE_PDB, [folder / "md.dcd", tmp_path / "gone.dcd"])
    with pytest.raises(FileNotFoundError, match=r"Topology file not found: .*top\.pdb"):
        load_trajectory(tmp_path / "top.pdb", folder / "md.dcd")
    np.savez(tmp_path / "wrong_key.npz", positions=np.zeros((2, 22, 3)))
    with pytest.raises(ValueError, match="coordinates"):
        load_trajectory(ALANINE_DIPEPTIDE_PDB, tmp_path / "wrong_key.npz")
    np.savez(tmp_path / "wrong_atoms.npz", coordinates=np.zeros((2, 5, 3)))
    with pytest.raises(ValueError, match="5 atoms"):
        load_trajectory(ALANINE_DIPEPTIDE_PDB, tmp_path / "wrong_atoms.npz")
    with pytest.raises(ValueError, match="stride"):
        load_trajectory(ALANINE_DIPEPTIDE_PDB, folder / "md.dcd", stride=0)
    with pytest.raises(ValueError, match="trajectory_paths"):
        load_trajectory(ALANINE_DIPEPTIDE_PDB, [])


def test_masses_and_heavy_atoms():
    topology = mdtraj.load_topology(str(ALANINE_DIPEPTIDE_PDB))
    assert atom_masses(topology).sum() == pytest.approx(144.17, abs=0.02)  # C6 H12 N2 O2
    heavy = heavy_atom_indices(topology)
    assert heavy.tolist() == [1, 4, 5, 6, 8, 10, 14, 15, 16, 18]
    assert all(topology.atom(i).element.symbol != "H" for i in heavy)


def test_center_of_mass_removed_mass_weighted(short_md):
    masses = atom_masses(short_md.topology)
    x = torch.from_numpy(short_md.coordinates) + torch.tensor([1.0, -2.0, 3.0])
    centred = remove_center_of_mass(x, masses)
    com = torch.einsum("fac,a->fc", centred.double(), torch.from_numpy(masses / masses.sum()))
    assert centred.dtype == torch.float32 and float(com.abs().max()) < 1e-6
    assert float(centred.mean(dim=1).abs().max()) > 1e-3  # the plain centroid is not what is removed
    # a pure translation per frame: every interatomic vector is kept
    torch.testing.assert_close(centred - centred[:, :1], x - x[:, :1], atol=1e-5, rtol=0)


def test_center_of_mass_errors():
    with pytest.raises(ValueError, match="coordinates"):
        remove_center_of_mass(torch.zeros(4, 3), np.ones(4))
    with pytest.raises(ValueError, match="masses"):
        remove_center_of_mass(torch.zeros(1, 4, 3), np.ones(3))
    with pytest.raises(ValueError, match="masses"):
        remove_center_of_mass(torch.zeros(1, 4, 3), np.zeros(4))
