"""The in-memory molecular data set: centred conformations of one system, split train/test in time blocks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import mdtraj
import numpy as np
import torch

from bfr_fast.checks import finite_float, integer
from bfr_fast.data.molecules.trajectory import atom_masses, heavy_atom_indices, remove_center_of_mass, select_atoms

__all__ = ["DEFAULT_SPLIT_BLOCKS", "DEFAULT_TEST_FRACTION", "MoleculeDataset", "block_split", "molecule_dataset"]

DEFAULT_TEST_FRACTION = 0.2
"""Fraction of the frames held out as the test (reference) set."""

DEFAULT_SPLIT_BLOCKS = 20
"""Number of equal time blocks the trajectory is cut into for :func:`block_split`: 500 ps each for the default
10 ns alanine dipeptide run, 25 times the ~20 ps correlation time of its alpha_R/beta basin indicator."""


@dataclass(frozen=True, eq=False)
class MoleculeDataset:
    """Conformations of one molecule held in memory, split into train and test.

    Coordinates follow the library convention: float32 ``(N, atoms, 3)`` in nanometres, each frame translated
    so that its mass-weighted centre (centre of mass) is at the origin. Orientation is the trajectory's own
    (MD frames tumble freely) unless the data set was built with ``align=True``.

    Attributes:
        name: short name used in logs and reports, e.g. ``"ala2"``.
        train_x: ``(N, atoms, 3)`` float32 training conformations, nm.
        test_x: ``(M, atoms, 3)`` float32 held-out conformations, nm: the reference set for metrics.
        topology: the :class:`mdtraj.Topology` (atom names, elements, bonds).
        provenance: where the frames come from (for generated MD: force field, temperature, length, seed, ...).

    Raises:
        ValueError: on construction, if the arrays have the wrong type, shape or dtype, or do not match the
            topology.
    """

    name: str
    train_x: torch.Tensor
    test_x: torch.Tensor
    topology: mdtraj.Topology
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for split in ("train_x", "test_x"):
            x = getattr(self, split)
            if not isinstance(x, torch.Tensor) or x.dtype != torch.float32 or x.dim() != 3 or x.shape[2] != 3 \
                    or x.shape[1] != self.topology.n_atoms:
                raise ValueError(f"{split}: expected a float32 tensor of shape (N, {self.topology.n_atoms}, 3), "
                                 f"got {getattr(x, 'dtype', type(x).__name__)} {tuple(getattr(x, 'shape', ()))}")
            if not bool(torch.isfinite(x).all()):
                raise ValueError(f"{split}: expected finite coordinates, found NaN or inf")
        if self.train_x.shape[0] == 0:
            raise ValueError("train_x: expected at least one training frame, got none")

    @property
    def n_atoms(self) -> int:
        """Number of atoms per conformation."""
        return self.topology.n_atoms

    @property
    def atom_names(self) -> tuple[str, ...]:
        """Atom names with their residue, e.g. ``"ALA2-CA"``, in coordinate order."""
        return tuple(str(atom) for atom in self.topology.atoms)

    @property
    def heavy_atom_indices(self) -> np.ndarray:
        """Indices of the non-hydrogen atoms: the default atom set of COV/AMR."""
        return heavy_atom_indices(self.topology)

    @property
    def masses(self) -> np.ndarray:
        """``(atoms,)`` atomic masses in daltons."""
        return atom_masses(self.topology)

    def __repr__(self) -> str:
        return (f"MoleculeDataset(name={self.name!r}, train={self.train_x.shape[0]}, test={self.test_x.shape[0]}, "
                f"atoms={self.n_atoms})")


def block_split(n_frames: int, test_fraction: float = DEFAULT_TEST_FRACTION,
                blocks: int = DEFAULT_SPLIT_BLOCKS) -> tuple[np.ndarray, np.ndarray]:
    """Splits frame indices of a time series into train and test by contiguous time blocks.

    MD frames a few picoseconds apart are nearly copies of each other, so a random per-frame split would put
    near-duplicates of every test frame into the training set and flatter any metric against it. Instead the
    trajectory is cut into ``blocks`` equal contiguous blocks, and ``round(test_fraction * blocks)`` of them,
    spread evenly over the run (the last block of each group), form the test set: the two sets then share
    frames only at the few block edges, and both span the whole run (not just its start or its end).

    Args:
        n_frames: number of frames, in time order.
        test_fraction: fraction of blocks held out, in (0, 1).
        blocks: number of blocks, at least 2.

    Returns:
        ``(train_indices, test_indices)``: sorted int64 arrays, disjoint, together ``range(n_frames)``.

    Raises:
        ValueError: for a bad argument, or too few frames or blocks for a non-empty train and test set.
    """
    integer("blocks", blocks, low=2)
    finite_float("test_fraction", test_fraction, low=0.0, high=1.0, low_open=True, high_open=True)
    integer("n_frames", n_frames, low=blocks, why="at least one frame a block")
    n_test = int(round(test_fraction * blocks))
    if not 0 < n_test < blocks:
        raise ValueError(f"test_fraction: {test_fraction} of {blocks} blocks leaves an empty train or test set")
    # Test block k of n_test is the last block of the k-th of n_test near-equal groups.
    test_blocks = {((k + 1) * blocks) // n_test - 1 for k in range(n_test)}
    block_of_frame = (np.arange(n_frames) * blocks) // n_frames
    is_test = np.isin(block_of_frame, sorted(test_blocks))
    return np.flatnonzero(~is_test).astype(np.int64), np.flatnonzero(is_test).astype(np.int64)


def molecule_dataset(trajectory: mdtraj.Trajectory, name: str, test_fraction: float = DEFAULT_TEST_FRACTION,
                     blocks: int = DEFAULT_SPLIT_BLOCKS, align: bool = False,
                     provenance: dict[str, Any] | None = None, selection: str | None = None) -> MoleculeDataset:
    """Builds a :class:`MoleculeDataset` from a trajectory: an atom selection, optional alignment, centring, a
    block split.

    Args:
        trajectory: frames in time order (e.g. from :func:`~bfr_fast.data.molecules.load_trajectory`).
        name: the data set's name.
        test_fraction: fraction of time blocks held out (see :func:`block_split`).
        blocks: number of time blocks.
        align: if True, first superpose every frame onto the first frame by its heavy atoms (mdtraj's optimal
            rigid superposition), so that models which are not rotation-equivariant see one orientation;
            RMSD-based metrics are unaffected either way.
        provenance: recorded on the data set as is.
        selection: keep only these atoms (mdtraj's selection language, see
            :func:`~bfr_fast.data.molecules.select_atoms`), before anything else; ``None`` keeps every atom.
            The data set's topology is then the selected atoms' (with the bonds between them).

    Returns:
        The data set, coordinates float32 in nm with the centre of mass removed.

    Raises:
        ValueError: a selection that cannot be parsed or selects nothing, one without a heavy atom when
            ``align`` is set (the superposition is on heavy atoms), or too few frames for the split.
    """
    if selection is not None:
        trajectory = trajectory.atom_slice(select_atoms(trajectory.topology, selection))
    if align and heavy_atom_indices(trajectory.topology).size == 0:
        raise ValueError(f"selection: {selection!r} holds no heavy atom; the frames are superposed on their heavy "
                         "atoms, select some (e.g. 'not element H')")
    if align:
        # superpose works in place: align a copy, against a copy of the first frame.
        trajectory = mdtraj.Trajectory(trajectory.xyz.copy(), trajectory.topology)
        trajectory.superpose(trajectory[0], atom_indices=heavy_atom_indices(trajectory.topology))
    xyz = remove_center_of_mass(torch.from_numpy(np.asarray(trajectory.xyz, dtype=np.float32)),
                                atom_masses(trajectory.topology))
    train, test = block_split(trajectory.n_frames, test_fraction, blocks)
    return MoleculeDataset(name=name, train_x=xyz[torch.from_numpy(train)].contiguous(),
                           test_x=xyz[torch.from_numpy(test)].contiguous(), topology=trajectory.topology,
                           provenance=dict(provenance or {}))
