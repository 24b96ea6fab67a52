r"""Chignolin (CLN025, YYDPETGTWY): a ten-residue beta-hairpin, built from its sequence and simulated like ALA2.

The peptide is built with PeptideBuilder (optional extra ``bfr_fast[molecules]``) from idealised backbone
torsions (:data:`HAIRPIN_TORSIONS`), its hydrogens added by OpenMM's ``Modeller`` for the reference MD's force
field (ff99SB-ILDN + OBC implicit solvent) at pH 7: charged termini, Asp3 and Glu5 deprotonated, net charge -2,
166 atoms. The reference MD (:func:`~bfr_fast.data.molecules.reference_dataset` of :data:`CHIGNOLIN`) minimises
it and runs Langevin dynamics on OpenMM's CPU platform, X-H bonds constrained, exactly as for alanine dipeptide.

A short simulation started from a built structure is not an equilibrium ensemble: CLN025 folds and unfolds on a
microsecond scale, so nanoseconds sample the neighbourhood of the start (and its relaxation), not the folded /
unfolded populations. The data set is a reference for the generators to reproduce, not a converged ensemble.
"""

from __future__ import annotations

import io
import random
from collections.abc import Sequence
from pathlib import Path

from bfr_fast.checkpoint import atomic_write
from bfr_fast.data.molecules.forcefield import DEFAULT_FORCEFIELD
from bfr_fast.data.molecules.systems import MolecularSystem

__all__ = ["AMINO_ACIDS", "CHIGNOLIN", "CHIGNOLIN_SEQUENCE", "HAIRPIN_TORSIONS", "build_peptide",
           "chignolin_structure"]

CHIGNOLIN_SEQUENCE = "YYDPETGTWY"
"""CLN025, the thermostable chignolin variant (Honda et al. 2008): Gly1 and Gly10 of chignolin replaced by Tyr."""

AMINO_ACIDS = "ACDEFGHIKLMNPQRSTVWY"
"""One-letter codes :func:`build_peptide` takes (PeptideBuilder's residues)."""

_BETA = (-139.0, 135.0)  # antiparallel beta strand
_ALPHA_R = (-60.0, -30.0)  # right-handed helical: turn position i+1 of a type I turn
_TURN_I_2 = (-90.0, 0.0)  # position i+2 of a type I beta-turn
_ALPHA_L = (90.0, 0.0)  # left-handed: glycine closing the loop

HAIRPIN_TORSIONS: tuple[tuple[float, float], ...] = (
    _BETA, _BETA, _BETA, _ALPHA_R, _ALPHA_R, _TURN_I_2, _ALPHA_L, _BETA, _BETA, _BETA)
r"""Backbone :math:`(\phi, \psi)` in degrees per residue of :data:`CHIGNOLIN_SEQUENCE`: strands Tyr1-Asp3 and
Thr8-Tyr10 at the textbook antiparallel beta-sheet values (-139°, 135°), the loop Pro4-Glu5-Thr6 as a helical
type I turn ((-60°, -30°), (-60°, -30°), (-90°, 0°)) closed by Gly7 in the left-handed region (90°, 0°).
These are idealised Ramachandran-region values, not torsions of an experimental structure (none is shipped or
fetched). Of four loop variants tried (this one; Glu5 at (-90°, 0°) instead of alpha_R; Thr6 and Gly7 in the
gamma / beta regions; Asp3 at (-120°, 120°) with a longer turn), this one gave the closest strand pairing after
minimisation: cross-strand C-alpha distances Tyr2-Trp9 and Asp3-Thr8 of 5.7 and 5.5 Å, as in a two-stranded
antiparallel hairpin (4.5-5.5 Å). The first residue's phi and the last's psi are not set (PeptideBuilder
places no atom by them)."""

STRUCTURE_NAME = "chignolin-cln025-built.pdb"
"""File name of the built structure in the cache folder, as the MD's provenance records it."""

DEFAULT_NANOSECONDS = 2.0
"""Production length of the default reference MD, sized to at most about half an hour on this project's 2-core
CPU (its measured wall times: ``docs/results/chignolin.md``)."""

DEFAULT_FRAMES = 20_000
"""Frames of the default reference MD, one per 0.1 ps: the default block split leaves 16 000 training and 4 000
test frames."""


def build_peptide(sequence: str, torsions: Sequence[tuple[float, float]],
                  forcefield: tuple[str, ...] = DEFAULT_FORCEFIELD, ph: float = 7.0) -> str:
    r"""A linear peptide with the given backbone torsions and all its hydrogens, as PDB text.

    PeptideBuilder places the heavy atoms from ideal bond geometry, trans peptide bonds and ``torsions``, plus
    the C-terminal OXT; OpenMM's ``Modeller.addHydrogens`` adds the hydrogens that ``forcefield`` expects at
    ``ph`` (termini charged). The structure is not minimised (the reference MD does that first).

    Args:
        sequence: one-letter codes of :data:`AMINO_ACIDS`, N to C terminus.
        torsions: one :math:`(\phi, \psi)` pair in degrees per residue.
        forcefield: OpenMM force-field XML files whose hydrogen definitions are used.
        ph: pH for the protonation states.

    Returns:
        The PDB text (one chain, residues numbered from 1, coordinates in Å), the same for the same arguments
        and package versions.

    Raises:
        ValueError: a sequence with another letter or no residue, torsions of another length, or PeptideBuilder
            or biopython not installed (one line each).
    """
    if not sequence or set(sequence) - set(AMINO_ACIDS):
        raise ValueError(f"sequence: expected one-letter codes of {AMINO_ACIDS}, got {sequence!r}")
    if len(torsions) != len(sequence) or any(len(pair) != 2 for pair in torsions):
        raise ValueError(f"torsions: expected one (phi, psi) pair per residue ({len(sequence)}), got "
                         f"{len(torsions)}")
    try:
        import PeptideBuilder
        from Bio.PDB import PDBIO
    except ImportError as error:
        raise ValueError(f"building a peptide needs PeptideBuilder and biopython ({error}); install them with "
                         "pip install 'bfr_fast[molecules]'") from None
    import openmm
    from openmm import app

    phi = [float(pair[0]) for pair in torsions]
    psi = [float(pair[1]) for pair in torsions]
    # PeptideBuilder takes phi of residues 2..n and psi of residues 1..n-1 (the psi "of residue i - 1").
    structure = PeptideBuilder.make_structure(sequence, phi[1:], psi[:-1])
    PeptideBuilder.add_terminal_OXT(structure)
    heavy = io.StringIO()
    writer = PDBIO()
    writer.set_structure(structure)
    writer.save(heavy)
    pdb = app.PDBFile(io.StringIO(heavy.getvalue()))
    modeller = app.Modeller(pdb.topology, pdb.positions)
    # Modeller places hydrogens at positions drawn from Python's global random stream before minimising them:
    # a fixed seed and the Reference platform make the build repeatable; the caller's stream is restored.
    state = random.getstate()
    random.seed(0)
    try:
        modeller.addHydrogens(app.ForceField(*forcefield), pH=ph, platform=openmm.Platform.getPlatformByName(
            "Reference"))
    finally:
        random.setstate(state)
    text = io.StringIO()
    app.PDBFile.writeFile(modeller.topology, modeller.positions, text)
    # OpenMM's REMARK carries today's date: without it the same build gives the same text (and checksum).
    return "".join(line for line in text.getvalue().splitlines(keepends=True) if not line.startswith("REMARK"))


def chignolin_structure(folder: str | Path) -> Path:
    """Builds CLN025 (:func:`build_peptide` of :data:`CHIGNOLIN_SEQUENCE` and :data:`HAIRPIN_TORSIONS`) and writes
    it to ``folder / STRUCTURE_NAME`` (atomically, only when its text changed); returns that path.

    Raises:
        ValueError: PeptideBuilder or biopython not installed.
    """
    path = Path(folder).expanduser() / STRUCTURE_NAME
    text = build_peptide(CHIGNOLIN_SEQUENCE, HAIRPIN_TORSIONS)
    if not path.is_file() or path.read_text() != text:
        atomic_write(path, lambda f: f.write(text.encode()))
    return path


CHIGNOLIN = MolecularSystem(
    name="chignolin", title=f"chignolin (CLN025, {CHIGNOLIN_SEQUENCE})", structure_name=STRUCTURE_NAME,
    structure=chignolin_structure, nanoseconds=DEFAULT_NANOSECONDS, frames=DEFAULT_FRAMES, platform="CPU",
    coordinates="internal")
"""CLN025, 166 atoms, built from its sequence; its MD on OpenMM's CPU platform (threads: ``OPENMM_CPU_THREADS``,
else every core)."""
