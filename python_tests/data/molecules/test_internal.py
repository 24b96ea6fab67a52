"""Internal coordinates: the Z-matrix of a bond graph, the map to bonds/angles/torsions and back, and their
standardised encoding, on alanine dipeptide and on the built chignolin."""

from __future__ import annotations

import math

import mdtraj
import numpy as np
import pytest
import torch

from bfr_fast.data.molecules import (
    ALANINE_DIPEPTIDE_PDB,
    CHIGNOLIN_SEQUENCE,
    HAIRPIN_TORSIONS,
    InternalCoordinates,
    Standardizer,
    build_peptide,
    random_rotation_matrices,
    to_cartesian,
    to_internal,
    zmatrix,
)


def _load(source, folder) -> mdtraj.Trajectory:
    """A PDB file, or a PDB text written into ``folder`` first (mdtraj reads a PDB from a path only)."""
    if isinstance(source, str):
        path = folder / "built.pdb"
        path.write_text(source)
        source = path
    return mdtraj.load(str(source))


@pytest.fixture(scope="module", params=["ala2", "chignolin"])
def molecule(request, tmp_path_factory) -> mdtraj.Trajectory:
    if request.param == "ala2":
        return _load(ALANINE_DIPEPTIDE_PDB, None)
    return _load(build_peptide(CHIGNOLIN_SEQUENCE, HAIRPIN_TORSIONS), tmp_path_factory.mktemp("chignolin"))


def _ensemble(molecule: mdtraj.Trajectory, count: int = 64, scale: float = 0.01, seed: int = 0) -> torch.Tensor:
    """``count`` float64 copies of the structure with Gaussian noise of ``scale`` nm on every coordinate."""
    x = torch.from_numpy(molecule.xyz[0]).double()
    noise = torch.randn(count, *x.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return x + scale * noise


def _distances(x: torch.Tensor) -> torch.Tensor:
    """``(N, n, n)`` pairwise distances, computed directly (cdist's matmul form is not exact at 1e-10)."""
    return (x[:, :, None] - x[:, None]).norm(dim=-1)


def _bonded(topology: mdtraj.Topology) -> set[frozenset[int]]:
    return {frozenset((a.index, b.index)) for a, b in topology.bonds}


def test_zmatrix_places_every_atom_once_from_earlier_bonded_references(molecule):
    top = molecule.topology
    z = zmatrix(top)
    bonds = _bonded(top)
    assert sorted(z.order.tolist()) == list(range(top.n_atoms)) and z.dim == 3 * top.n_atoms - 6
    assert top.atom(int(z.order[0])).element.symbol != "H"
    position = {int(a): p for p, a in enumerate(z.order)}
    assert (z.references[0] == -1).all() and (z.references[1, 1:] == -1).all() and z.references[2, 2] == -1
    for p, atom in enumerate(z.order[1:], start=1):
        j, k, l = (int(r) for r in z.references[p])
        assert frozenset((int(atom), j)) in bonds and position[j] < p
        if p >= 2:
            assert frozenset((j, k)) in bonds and position[k] < p and k != int(atom)
        if p >= 3:
            assert position[l] < p and len({int(atom), j, k, l}) == 4


def test_internal_coordinates_match_mdtraj_geometry(molecule):
    x = _ensemble(molecule, count=8)
    z = zmatrix(molecule.topology)
    bonds, angles, torsions = to_internal(x, z)
    traj = mdtraj.Trajectory(x.numpy(), molecule.topology)
    i, (j, k, l) = z.order, z.references.T
    np.testing.assert_allclose(bonds.numpy(), mdtraj.compute_distances(traj, np.stack([i, j], 1)[1:]), atol=1e-6)
    np.testing.assert_allclose(angles.numpy(), mdtraj.compute_angles(traj, np.stack([i, j, k], 1)[2:]), atol=1e-5)
    expected = mdtraj.compute_dihedrals(traj, np.stack([l, k, j, i], 1)[3:])
    difference = np.angle(np.exp(1j * (torsions.numpy() - expected)))  # modulo 2 pi
    assert np.abs(difference).max() < 1e-4


def test_to_cartesian_inverts_to_internal_without_mirroring(molecule):
    x = _ensemble(molecule)
    z = zmatrix(molecule.topology)
    internal = to_internal(x, z)
    y = to_cartesian(*internal, z)
    # Same shape: every pairwise distance. Same hand: the signed torsions too (a mirror image flips them).
    torch.testing.assert_close(_distances(y), _distances(x), atol=1e-10, rtol=0)
    for before, after in zip(internal, to_internal(y, z)):
        torch.testing.assert_close(torch.remainder(after - before + math.pi, 2 * math.pi) - math.pi,
                                   torch.zeros_like(before), atol=1e-10, rtol=0)


def test_encoding_is_whitened_invariant_to_rigid_motion_and_round_trips(molecule):
    x = _ensemble(molecule, count=200).float()
    coordinates = InternalCoordinates.fit(x, molecule.topology)
    code = coordinates.encode(x)
    assert code.shape == (200, coordinates.dim) and coordinates.dim == 3 * molecule.n_atoms - 6
    torch.testing.assert_close(code.mean(0), torch.zeros(coordinates.dim), atol=1e-4, rtol=0)
    torch.testing.assert_close(code.std(0), torch.ones(coordinates.dim), atol=1e-4, rtol=0)
    rotation = random_rotation_matrices(200, torch.Generator().manual_seed(1))
    moved = torch.bmm(x, rotation.transpose(1, 2)) + torch.tensor([0.3, -1.0, 2.0])
    torch.testing.assert_close(coordinates.encode(moved), code, atol=2e-3, rtol=0)
    back = coordinates.decode(code)
    assert back.dtype == torch.float32 and back.shape == x.shape
    torch.testing.assert_close(back.mean(1), torch.zeros(200, 3), atol=1e-5, rtol=0)
    rmsd = mdtraj.rmsd(mdtraj.Trajectory(back.numpy(), molecule.topology),
                       mdtraj.Trajectory(x.numpy(), molecule.topology), 0)
    assert float(back[0].norm(dim=1).mean()) > 0.1  # centred, not collapsed onto the origin
    assert rmsd[0] < 1e-4  # frame 0 against frame 0 of the input, after superposition, nm


def test_torsions_across_the_cut_at_pi_are_centred_not_split(molecule):
    """A peptide bond's torsion sits at about ±180°: raw, its values fall on both sides of the cut and their
    standard deviation is ~pi; turned by the circular mean first, it is the small spread of the noise."""
    x = _ensemble(molecule, count=200, scale=0.003).float()
    coordinates = InternalCoordinates.fit(x, molecule.topology)
    torsions = to_internal(x.double(), coordinates.z)[2]
    split = (torsions.max(0).values - torsions.min(0).values) > math.pi  # values on both sides of +-pi
    assert split.any()
    n = molecule.n_atoms
    assert float(coordinates.std[2 * n - 3:][split].max()) < 0.5  # radians


def test_noise_in_internal_codes_leaves_bonds_valid_where_cartesian_codes_break_them(tmp_path):
    """The reason for the representation: on an ensemble whose coordinates spread as a flexible chain's do, the
    same code-space noise (0.1 of each feature's spread) moves a heavy-atom bond by under a pm in internal
    coordinates, and by far more in Cartesian ones."""
    molecule = _load(build_peptide(CHIGNOLIN_SEQUENCE, HAIRPIN_TORSIONS), tmp_path)
    top = molecule.topology
    # A flexible chain's ensemble: torsions spread by 0.3 rad, bonds by 2 pm, angles by 0.03 rad.
    z = zmatrix(top)
    generator = torch.Generator().manual_seed(1)
    bonds, angles, torsions = (value.expand(400, -1) for value in to_internal(_ensemble(molecule, 1, 0.0), z))
    x = to_cartesian(bonds + 0.002 * torch.randn(bonds.shape, generator=generator, dtype=torch.float64),
                     angles + 0.03 * torch.randn(angles.shape, generator=generator, dtype=torch.float64),
                     torsions + 0.3 * torch.randn(torsions.shape, generator=generator, dtype=torch.float64), z)
    x = (x - x.mean(1, keepdim=True)).float()
    heavy_bonds = np.array([(a.index, b.index) for a, b in top.bonds
                            if a.element.symbol != "H" and b.element.symbol != "H"])

    def bond_change(encoder) -> float:
        code = encoder.encode(x)
        y = encoder.decode(code + 0.1 * torch.randn(code.shape, generator=torch.Generator().manual_seed(2)))
        before = (x[:, heavy_bonds[:, 0]] - x[:, heavy_bonds[:, 1]]).norm(dim=-1)
        after = (y[:, heavy_bonds[:, 0]] - y[:, heavy_bonds[:, 1]]).norm(dim=-1)
        return float((after - before).abs().mean())

    internal = bond_change(InternalCoordinates.fit(x, top))
    cartesian = bond_change(Standardizer.fit(x))
    assert internal < 0.1 * cartesian
    # Standardised per bond: a 0.1-sigma change of a 2 pm spread is about 0.16 pm on average.
    assert internal < 0.0005  # nm


def test_a_molecule_not_bonded_into_one_piece_is_refused(molecule):
    top = molecule.topology
    ends = top.select("resid 0 or resid %d" % (top.n_residues - 1))
    with pytest.raises(ValueError, match=r"^topology: internal coordinates need one molecule connected by bonds"):
        zmatrix(top.subset(ends))
    with pytest.raises(ValueError, match=r"^topology: internal coordinates need at least 3 atoms"):
        zmatrix(top.subset([0, 1]))
    with pytest.raises(ValueError, match=r"^x: expected \(N >= 2"):
        InternalCoordinates.fit(torch.zeros(5, 3, 3), top)
