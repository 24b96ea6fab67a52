"""Any topology + trajectory through mdtraj, and the per-atom facts the pipeline needs (masses, heavy atoms).

This is how a user runs the molecular pipeline on chignolin or a system of their own: a topology file and one
or more trajectory files (PDB, DCD, XTC, HDF5, or a NumPy archive of coordinates), all from paths they supply.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import mdtraj
import numpy as np
import torch

from bfr_fast.checks import positive_int
from bfr_fast.data.user_files import missing_file_error, read_npz

__all__ = ["COORDINATE_KEYS", "atom_masses", "heavy_atom_indices", "load_trajectory", "remove_center_of_mass",
           "select_atoms"]

COORDINATE_KEYS = ("coordinates", "xyz")
"""Keys under which a ``.npz`` trajectory holds its ``(frames, atoms, 3)`` coordinates in nanometres."""

_SELF_DESCRIBING = (".pdb", ".h5")  # formats that carry their own topology, for mdtraj
_HOW = ("Pass the path of a file you have: a topology (PDB, or any format mdtraj reads) and trajectories "
        "(PDB, DCD, XTC, HDF5, or a .npz holding 'coordinates' of shape (frames, atoms, 3) in nm).")


def load_trajectory(topology_path: str | Path | None, trajectory_paths: str | Path | Sequence[str | Path],
                    stride: int = 1) -> mdtraj.Trajectory:
    """Loads one or more trajectory files of one system, in order, into one :class:`mdtraj.Trajectory`.

    Coordinates are in nanometres (mdtraj's unit; mdtraj converts PDB's angstroms). Each file keeps every
    ``stride``-th frame. A ``.npz`` file must hold one array under a key of :data:`COORDINATE_KEYS`, shaped
    ``(frames, atoms, 3)``, in nanometres.

    Args:
        topology_path: a PDB (or any topology mdtraj reads); may be ``None`` only when every trajectory file is
            a PDB or HDF5 file, which carry their own topology.
        trajectory_paths: one path or a sequence of paths.
        stride: keep every ``stride``-th frame of each file.

    Returns:
        The joined trajectory, with the topology of ``topology_path`` (or of the first file).

    Raises:
        FileNotFoundError: naming the first missing file.
        ValueError: for a bad ``stride``, no trajectory, a missing topology where one is needed, a bad ``.npz``,
            or files whose atom counts differ from the topology's.
    """
    positive_int("stride", stride)
    given = [trajectory_paths] if isinstance(trajectory_paths, (str, Path)) else list(trajectory_paths)
    if not given:
        raise ValueError("trajectory_paths: expected at least one trajectory file, got none")
    paths = [Path(p).expanduser() for p in given]
    for path in paths:
        if not path.is_file():
            raise missing_file_error(path, "Trajectory file", _HOW)

    topology = None
    if topology_path is not None:
        top_path = Path(topology_path).expanduser()
        if not top_path.is_file():
            raise missing_file_error(top_path, "Topology file", _HOW)
        topology = mdtraj.load_topology(str(top_path))
    elif any(path.suffix.lower() not in _SELF_DESCRIBING for path in paths):
        raise ValueError("topology_path: required unless every trajectory file is a PDB or HDF5 file, got "
                         f"{[str(p) for p in paths]}")

    parts = [_load_one(path, topology, stride) for path in paths]
    reference = topology if topology is not None else parts[0].topology
    for path, part in zip(paths, parts, strict=True):
        if part.n_atoms != reference.n_atoms:
            raise ValueError(f"trajectory_paths: {path} has {part.n_atoms} atoms, the topology has "
                             f"{reference.n_atoms}")
    xyz = np.concatenate([part.xyz for part in parts]).astype(np.float32, copy=False)
    return mdtraj.Trajectory(xyz, reference)


def _load_one(path: Path, topology: mdtraj.Topology | None, stride: int) -> mdtraj.Trajectory:
    if path.suffix.lower() in _SELF_DESCRIBING:
        return mdtraj.load(str(path), stride=stride)
    assert topology is not None  # load_trajectory requires one for every other format
    if path.suffix.lower() != ".npz":
        try:
            return mdtraj.load(str(path), top=topology, stride=stride)
        except ValueError:  # mdtraj's text spans lines and does not say which file or how many atoms
            raise ValueError(f"trajectory_paths: {path} does not match the topology ({topology.n_atoms} atoms): "
                             "its atom count differs; pass the topology it was written with") from None
    arrays = read_npz(path, _HOW)
    keys = [key for key in COORDINATE_KEYS if key in arrays]
    if not keys:
        raise ValueError(f"{path}: expected coordinates under one of {list(COORDINATE_KEYS)}, "
                         f"found keys {sorted(arrays)}")
    xyz = arrays[keys[0]]
    if xyz.ndim != 3 or xyz.shape[2] != 3 or not np.issubdtype(xyz.dtype, np.floating):
        raise ValueError(f"{path}: expected '{keys[0]}' as floats of shape (frames, atoms, 3) in nm, "
                         f"got dtype {xyz.dtype} and shape {xyz.shape}")
    if xyz.shape[1] != topology.n_atoms:
        raise ValueError(f"trajectory_paths: {path} has {xyz.shape[1]} atoms, the topology has {topology.n_atoms}")
    return mdtraj.Trajectory(xyz[::stride].astype(np.float32), topology)


def select_atoms(topology: mdtraj.Topology, selection: str | None) -> np.ndarray:
    """``(atoms,)`` int64 indices of the atoms that ``selection`` picks, in topology order.

    Args:
        topology: the system's topology.
        selection: an expression of mdtraj's atom selection language (e.g. ``"not element H"``,
            ``"protein and name CA"``); ``None`` or ``"all"`` selects every atom.

    Raises:
        ValueError: a selection mdtraj cannot parse, or one that selects no atom (one line each).
    """
    if selection is None:
        return np.arange(topology.n_atoms, dtype=np.int64)
    try:
        picked = topology.select(selection)
    except Exception as error:  # pyparsing's and mdtraj's own error types, messages over several lines
        why = " ".join(str(error).split())
        raise ValueError(f"selection: mdtraj cannot parse {selection!r} ({why}); see mdtraj's atom selection "
                         "language, e.g. 'not element H'") from None
    if picked.size == 0:
        raise ValueError(f"selection: {selection!r} selects none of the topology's {topology.n_atoms} atoms; "
                         "check the residue and atom names (e.g. 'all' or 'not element H')")
    return np.asarray(picked, dtype=np.int64)


def atom_masses(topology: mdtraj.Topology) -> np.ndarray:
    """``(atoms,)`` float64 atomic masses in daltons, from each atom's element.

    Raises:
        ValueError: if the total mass is not positive (e.g. a topology without elements).
    """
    masses = np.array([atom.element.mass if atom.element is not None else 0.0 for atom in topology.atoms],
                      dtype=np.float64)
    if not masses.sum() > 0:
        raise ValueError("topology: its atoms have no masses (no elements); a centre of mass needs them")
    return masses


def heavy_atom_indices(topology: mdtraj.Topology) -> np.ndarray:
    """``(heavy,)`` int64 indices of the atoms that are not hydrogen (nor massless virtual sites)."""
    return np.array([atom.index for atom in topology.atoms
                     if atom.element is not None and atom.element.symbol != "H" and atom.element.mass > 0],
                    dtype=np.int64)


def remove_center_of_mass(coordinates: torch.Tensor, masses: np.ndarray | torch.Tensor) -> torch.Tensor:
    r"""Translates every frame so that its centre of mass is at the origin.

    :math:`x_a \leftarrow x_a - \sum_b m_b x_b / \sum_b m_b`, per frame (mass-weighted, not the plain centroid).

    Args:
        coordinates: ``(frames, atoms, 3)`` floating-point coordinates.
        masses: ``(atoms,)`` non-negative masses with a positive sum.

    Returns:
        A new tensor of the same shape and dtype.

    Raises:
        ValueError: if the shapes do not match or the masses are negative or sum to zero.
    """
    if not isinstance(coordinates, torch.Tensor) or coordinates.dim() != 3 or coordinates.shape[2] != 3 \
            or not coordinates.is_floating_point():
        raise ValueError("coordinates: expected a floating-point tensor of shape (frames, atoms, 3), got "
                         f"{getattr(coordinates, 'shape', type(coordinates).__name__)}")
    weights = torch.as_tensor(masses, dtype=torch.float64, device=coordinates.device)
    if weights.shape != (coordinates.shape[1],) or bool((weights < 0).any()) or not float(weights.sum()) > 0:
        raise ValueError(f"masses: expected {coordinates.shape[1]} non-negative masses with a positive sum, "
                         f"got shape {tuple(weights.shape)}")
    # float64 for the weighted sum: the centre of 10^5 float32 frames is then exact to float32 rounding.
    center = torch.einsum("fac,a->fc", coordinates.double(), weights / weights.sum())
    return (coordinates.double() - center[:, None, :]).to(coordinates.dtype)
