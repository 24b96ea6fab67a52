"""Molecular structures shipped inside the package (see ``files/NOTICE`` for their origin and licence)."""

from pathlib import Path

__all__ = ["ALANINE_DIPEPTIDE_PDB"]

ALANINE_DIPEPTIDE_PDB = Path(__file__).resolve().parent / "files" / "alanine-dipeptide.pdb"
"""Alanine dipeptide, ACE-ALA-NME, 22 atoms (from openmmtools, MIT licence): the reference MD's start."""
