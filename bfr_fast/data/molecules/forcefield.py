"""The OpenMM force field shared by the reference MD and the energy metric: one place that builds a System.

OpenMM is imported inside the functions: importing :mod:`bfr_fast.data.molecules` stays cheap for code that
only loads coordinates.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from bfr_fast.checks import choice

if TYPE_CHECKING:
    import mdtraj

__all__ = ["DEFAULT_FORCEFIELD", "create_system", "openmm_topology"]

DEFAULT_FORCEFIELD: tuple[str, ...] = ("amber99sbildn.xml", "amber99_obc.xml")
"""AMBER ff99SB-ILDN with the OBC implicit solvent (OpenMM's native ``GBSAOBCForce``, the fast one here)."""

def openmm_topology(topology: str | Path | mdtraj.Topology | Any) -> Any:
    """An :class:`openmm.app.Topology` from a PDB path, an mdtraj topology, or an OpenMM topology (as is).

    Raises:
        FileNotFoundError: if a path is given and does not exist.
        ValueError: if ``topology`` is none of the accepted kinds.
    """
    import mdtraj
    from openmm import app

    if isinstance(topology, app.Topology):
        return topology
    if isinstance(topology, mdtraj.Topology):
        return topology.to_openmm()
    if isinstance(topology, (str, Path)):
        path = Path(topology).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"topology PDB file not found: {path}")
        return app.PDBFile(str(path)).topology
    raise ValueError(f"topology: expected a PDB path, an mdtraj.Topology or an openmm.app.Topology, "
                     f"got {type(topology).__name__}")


def create_system(topology: Any, forcefield: tuple[str, ...] = DEFAULT_FORCEFIELD,
                  constraints: str | None = "HBonds") -> Any:
    """An OpenMM System for a molecule in implicit solvent (no cut-off, no periodic box).

    Args:
        topology: an :class:`openmm.app.Topology` (see :func:`openmm_topology`).
        forcefield: OpenMM force-field XML files, e.g. :data:`DEFAULT_FORCEFIELD`.
        constraints: ``"HBonds"`` for dynamics (2 fs steps), or ``None`` to keep every bond a harmonic term,
            which an energy *metric* needs: with constraints OpenMM drops the constrained bonds' energy, so a
            generated sample with a wrong X-H length would go unpunished.

    Returns:
        The :class:`openmm.System`.

    Raises:
        ValueError: if ``constraints`` is not "HBonds" or None, ``forcefield`` is empty, or the force field has
            no parameters for the topology (one line naming the first residue it cannot match, e.g. a topology
            without its hydrogens, or a residue the force field does not know).
    """
    from openmm import app

    choice("constraints", constraints, ("HBonds", None))
    if not forcefield:
        raise ValueError("forcefield: expected at least one force-field XML file, got none")
    field = app.ForceField(*forcefield)
    try:
        return field.createSystem(topology, nonbondedMethod=app.NoCutoff,
                                  constraints=app.HBonds if constraints == "HBonds" else None)
    except (ValueError, KeyError) as error:  # OpenMM's own text runs over several sentences and a link
        why = " ".join(str(error).split()).split(" You may ")[0].split(" For more information")[0]
        raise ValueError(f"topology: no force field ({', '.join(forcefield)}) can be built for it: {why} "
                         "(energies need every atom of residues the force field knows, hydrogens included)") from None
