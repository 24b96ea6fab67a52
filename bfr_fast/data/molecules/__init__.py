"""Molecular data: a reference ensemble by OpenMM MD, any trajectory through mdtraj, centring and rotations.

Coordinates are ``(N, atoms, 3)`` float tensors in nanometres (mdtraj's unit), centre of mass at the origin.
``python -m bfr_fast.data.molecules --help`` generates the reference MD of a built-in system (alanine dipeptide,
chignolin; :data:`MOLECULAR_SYSTEMS`); OpenMM is imported only by the functions that run it.
"""

from bfr_fast.data.molecules.alanine import (
    ALANINE_DIPEPTIDE,
    DEFAULT_FRAMES,
    DEFAULT_NANOSECONDS,
    alanine_dipeptide,
    reference_md_path,
)
from bfr_fast.data.molecules.augment import random_rotation, random_rotation_matrices
from bfr_fast.data.molecules.chignolin import CHIGNOLIN, CHIGNOLIN_SEQUENCE, HAIRPIN_TORSIONS, build_peptide
from bfr_fast.data.molecules.dataset import (
    DEFAULT_SPLIT_BLOCKS,
    DEFAULT_TEST_FRACTION,
    MoleculeDataset,
    block_split,
    molecule_dataset,
)
from bfr_fast.data.molecules.dihedrals import BASINS, backbone_dihedrals, basin_populations
from bfr_fast.data.molecules.forcefield import DEFAULT_FORCEFIELD, create_system, openmm_topology
from bfr_fast.data.molecules.internal import InternalCoordinates, ZMatrix, to_cartesian, to_internal, zmatrix
from bfr_fast.data.molecules.reference_md import ReferenceMD, generate_reference_md, load_reference_md
from bfr_fast.data.molecules.standardizer import Standardizer
from bfr_fast.data.molecules.structures import ALANINE_DIPEPTIDE_PDB
from bfr_fast.data.molecules.systems import MolecularSystem, reference_dataset
from bfr_fast.data.molecules.trajectory import (
    COORDINATE_KEYS,
    atom_masses,
    heavy_atom_indices,
    load_trajectory,
    remove_center_of_mass,
    select_atoms,
)

MOLECULAR_SYSTEMS: dict[str, MolecularSystem] = {system.name: system for system in (ALANINE_DIPEPTIDE, CHIGNOLIN)}
"""The built-in systems by name (the molecular recipe's ``--data NAME[:NANOSECONDS[:FRAMES]]``)."""

__all__ = [
    "ALANINE_DIPEPTIDE",
    "ALANINE_DIPEPTIDE_PDB",
    "BASINS",
    "CHIGNOLIN",
    "CHIGNOLIN_SEQUENCE",
    "COORDINATE_KEYS",
    "DEFAULT_FORCEFIELD",
    "DEFAULT_FRAMES",
    "DEFAULT_NANOSECONDS",
    "DEFAULT_SPLIT_BLOCKS",
    "DEFAULT_TEST_FRACTION",
    "HAIRPIN_TORSIONS",
    "InternalCoordinates",
    "MOLECULAR_SYSTEMS",
    "MolecularSystem",
    "MoleculeDataset",
    "ReferenceMD",
    "Standardizer",
    "ZMatrix",
    "alanine_dipeptide",
    "atom_masses",
    "backbone_dihedrals",
    "basin_populations",
    "block_split",
    "build_peptide",
    "create_system",
    "generate_reference_md",
    "heavy_atom_indices",
    "load_reference_md",
    "load_trajectory",
    "molecule_dataset",
    "openmm_topology",
    "random_rotation",
    "random_rotation_matrices",
    "reference_dataset",
    "reference_md_path",
    "remove_center_of_mass",
    "select_atoms",
    "to_cartesian",
    "to_internal",
    "zmatrix",
]
