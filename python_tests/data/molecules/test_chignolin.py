"""Chignolin (CLN025): the peptide built from its sequence, its hydrogens, a minimised energy, and a few-ps MD."""

from __future__ import annotations

import io
import sys

import mdtraj
import numpy as np
import openmm
import pytest
from openmm import app, unit

from bfr_fast.data.molecules import CHIGNOLIN, CHIGNOLIN_SEQUENCE, HAIRPIN_TORSIONS, build_peptide, create_system
from bfr_fast.data.molecules import generate_reference_md, load_reference_md
from bfr_fast.data.molecules.chignolin import STRUCTURE_NAME, chignolin_structure

ATOMS, HYDROGENS = 166, 73  # CLN025 at pH 7: NH3+ and COO- termini, Asp3 and Glu5 charged


@pytest.fixture(scope="module")
def built() -> str:
    return build_peptide(CHIGNOLIN_SEQUENCE, HAIRPIN_TORSIONS)


def _pdb(text: str) -> app.PDBFile:
    return app.PDBFile(io.StringIO(text))


def _sequence(topology: app.Topology) -> str:
    return "".join(mdtraj.Topology.from_openmm(topology).residue(i).code for i in range(topology.getNumResidues()))


def _minimised(pdb: app.PDBFile) -> tuple[float, np.ndarray]:
    """Potential energy (kJ/mol) and positions (nm) after OpenMM's local minimisation, with the MD's force field."""
    context = openmm.Context(create_system(pdb.topology), openmm.VerletIntegrator(0.001),
                             openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(pdb.positions)
    openmm.LocalEnergyMinimizer.minimize(context)
    state = context.getState(getEnergy=True, getPositions=True)
    return (state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole),
            state.getPositions(asNumpy=True).value_in_unit(unit.nanometer))


def _check(text: str) -> None:
    """What a built CLN025 must satisfy: its sequence, every hydrogen, a finite negative energy once minimised,
    and strands paired as in a hairpin (cross-strand C-alpha of Tyr2-Trp9 and Asp3-Thr8 within 7 Å)."""
    pdb = _pdb(text)
    assert _sequence(pdb.topology) == CHIGNOLIN_SEQUENCE
    atoms = list(pdb.topology.atoms())
    assert len(atoms) == ATOMS and sum(a.element.symbol == "H" for a in atoms) == HYDROGENS
    energy, xyz = _minimised(pdb)
    assert np.isfinite(energy) and energy < 0
    ca = [a.index for a in atoms if a.name == "CA"]
    for i, j in ((1, 8), (2, 7)):
        assert 10 * np.linalg.norm(xyz[ca[i]] - xyz[ca[j]]) < 7.0, (i, j)


def test_the_built_peptide_is_cln025_with_hydrogens_and_a_finite_minimised_energy(built):
    _check(built)
    names = [a.name for a in _pdb(built).topology.atoms()]
    assert {"H2", "H3", "OXT"} <= set(names)  # charged termini


def test_the_checks_catch_a_wrong_sequence_missing_hydrogens_or_an_extended_chain(built):
    with pytest.raises(AssertionError):  # Gly10 for Tyr10: chignolin, not CLN025
        _check(build_peptide("YYDPETGTWG", HAIRPIN_TORSIONS))
    heavy_only = "".join(line for line in built.splitlines(keepends=True) if not line[76:78].strip() == "H")
    with pytest.raises(AssertionError):
        _check(heavy_only)
    with pytest.raises(ValueError, match="no force field .* hydrogens included"):
        create_system(_pdb(heavy_only).topology)
    with pytest.raises(AssertionError):  # every residue a beta strand: no hairpin
        _check(build_peptide(CHIGNOLIN_SEQUENCE, [(-139.0, 135.0)] * 10))


def test_the_build_is_deterministic_and_written_once(tmp_path, built):
    path = chignolin_structure(tmp_path)
    assert path == tmp_path / STRUCTURE_NAME and path.read_text() == built
    before = path.stat().st_mtime_ns
    assert chignolin_structure(tmp_path).stat().st_mtime_ns == before
    assert "REMARK" not in built  # OpenMM's remark carries the date


@pytest.mark.parametrize("sequence, torsions, match", [
    ("YYDPXTGTWY", HAIRPIN_TORSIONS, "sequence: expected one-letter codes"),
    ("", (), "sequence"),
    ("yydpetgtwy", HAIRPIN_TORSIONS, "sequence"),
    (CHIGNOLIN_SEQUENCE, HAIRPIN_TORSIONS[:-1], r"torsions: expected one \(phi, psi\) pair per residue \(10\)"),
])
def test_bad_arguments_are_one_line_errors(sequence, torsions, match):
    with pytest.raises(ValueError, match=match) as caught:
        build_peptide(sequence, torsions)
    assert "\n" not in str(caught.value)


def test_without_peptidebuilder_the_error_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "PeptideBuilder", None)  # import then raises ImportError
    with pytest.raises(ValueError, match=r"pip install 'bfr_fast\[molecules\]'") as caught:
        build_peptide(CHIGNOLIN_SEQUENCE, HAIRPIN_TORSIONS)
    assert "\n" not in str(caught.value)


def test_a_few_ps_of_md_on_the_cpu_platform(tmp_path):
    path = generate_reference_md(tmp_path / "md.npz", 0.002, 10, pdb_path=chignolin_structure(tmp_path),
                                 platform=CHIGNOLIN.platform, equilibration_ps=0.5, threads=1, progress=False)
    md = load_reference_md(path)
    assert md.coordinates.shape == (10, ATOMS, 3) and np.isfinite(md.coordinates).all()
    assert np.isfinite(md.potential_energy).all() and md.potential_energy.max() < 0
    assert md.provenance["platform"] == "CPU" and md.provenance["threads"] == 1
    assert md.provenance["structure"] == STRUCTURE_NAME and md.provenance["constraints"] == "HBonds"
    assert _sequence(md.topology.to_openmm()) == CHIGNOLIN_SEQUENCE
