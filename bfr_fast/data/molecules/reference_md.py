"""A reference ensemble by molecular dynamics with OpenMM: Langevin dynamics in implicit solvent, cached to disk.

The cache is one ``.npz`` archive (written atomically, read with ``allow_pickle=False``) holding:

* ``coordinates``: ``(frames, atoms, 3)`` float32 positions in nm, in time order;
* ``time_ps``: ``(frames,)`` simulated time of each frame after equilibration;
* ``potential_energy``: ``(frames,)`` potential energy in kJ/mol of the simulated (constrained) system;
* ``topology_pdb``: the text of the starting PDB file (the topology travels with the coordinates);
* ``provenance``: a JSON string: force field, temperature, length, stride, seed, platform, versions, wall time.

A copy of the provenance is written beside it as ``<name>.json`` for people to read; the archive is what loads.
"""

from __future__ import annotations

import hashlib
import io
import json
import platform as python_platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mdtraj
import numpy as np

from bfr_fast.checkpoint import atomic_write
from bfr_fast.checks import integer, non_negative_float, positive_float, positive_int
from bfr_fast.data.molecules.forcefield import DEFAULT_FORCEFIELD, create_system
from bfr_fast.data.molecules.structures import ALANINE_DIPEPTIDE_PDB
from bfr_fast.data.user_files import missing_file_error, read_npz
from bfr_fast.progress import progress_bar

__all__ = ["ReferenceMD", "generate_reference_md", "load_reference_md"]

_FEMTOSECONDS_PER_NS = 1_000_000.0
_HOW = "Generate one with `python -m bfr_fast.data.molecules --out PATH --ns N` (see --help)."


@dataclass(frozen=True, eq=False)
class ReferenceMD:
    """A cached reference trajectory (see the module docstring for what each array holds)."""

    coordinates: np.ndarray
    time_ps: np.ndarray
    potential_energy: np.ndarray
    topology: mdtraj.Topology
    provenance: dict[str, Any]

    def to_mdtraj(self) -> mdtraj.Trajectory:
        """The frames as an :class:`mdtraj.Trajectory` (time in ps)."""
        return mdtraj.Trajectory(self.coordinates, self.topology, time=self.time_ps)


def generate_reference_md(out_path: str | Path, nanoseconds: float, frames: int, temperature: float = 300.0,
                          seed: int = 0, *, pdb_path: str | Path = ALANINE_DIPEPTIDE_PDB,
                          forcefield: tuple[str, ...] = DEFAULT_FORCEFIELD, platform: str = "Reference",
                          equilibration_ps: float = 100.0, timestep_fs: float = 2.0,
                          friction_per_ps: float = 1.0, threads: int | None = None, progress: bool = True) -> Path:
    r"""Runs Langevin dynamics from a PDB structure and caches equally spaced frames.

    Protocol: the force field's system with hydrogen-bond lengths constrained (``HBonds``), no cut-off (implicit
    solvent); local energy minimisation; velocities drawn from Maxwell-Boltzmann at ``temperature``;
    ``equilibration_ps`` of dynamics that are discarded; then ``frames`` frames, one every
    :math:`\lfloor n_\text{steps} / \text{frames} \rfloor` steps, where
    :math:`n_\text{steps} = \text{round}(10^6 \cdot \text{nanoseconds} / \text{timestep\_fs})`. The integrator is
    OpenMM's ``LangevinMiddleIntegrator`` (BAOAB-type; exact Boltzmann configurations in the small-step limit).

    Reproducibility: the same arguments on the same platform and machine give the same frames, bit for bit on
    the Reference platform (both OpenMM random streams, velocities and Langevin noise, are seeded from
    ``seed``; OpenMM reads a seed of 0 as "pick one at random", so ``seed + 1`` is what it gets).

    Args:
        out_path: the ``.npz`` archive to write (atomically; its folder is created).
        nanoseconds: length of the production run, after equilibration.
        frames: number of frames to keep.
        temperature: kelvin, for the thermostat and the initial velocities.
        seed: 0 <= seed < 2**31 - 1.
        pdb_path: the starting structure (default: alanine dipeptide shipped with the package).
        forcefield: OpenMM force-field XML files; the default is ff99SB-ILDN + OBC implicit solvent.
        platform: OpenMM platform; "Reference" is the fastest on a CPU for a molecule of ~20 atoms, "CPU" (its
            threads: ``OPENMM_CPU_THREADS``, else every core) for larger ones.
        equilibration_ps: dynamics run and discarded before the first frame.
        timestep_fs: integration step in femtoseconds.
        friction_per_ps: Langevin friction coefficient in 1/ps.
        threads: threads of the CPU platform; ``None`` leaves OpenMM's choice (``OPENMM_CPU_THREADS`` as it was
            when OpenMM was imported, else every core). Ignored by the other platforms.
        progress: show a progress bar (when stderr is a terminal).

    Returns:
        ``out_path``.

    Raises:
        FileNotFoundError: if ``pdb_path`` does not exist.
        ValueError: for a bad argument (naming it), e.g. fewer steps than frames or an unknown platform.
    """
    import openmm
    from openmm import app, unit

    pdb_path = Path(pdb_path).expanduser()
    if not pdb_path.is_file():
        raise missing_file_error(pdb_path, "Starting structure (PDB)", "Pass the path of a PDB file.")
    for name, value in (("nanoseconds", nanoseconds), ("temperature", temperature),
                        ("timestep_fs", timestep_fs), ("friction_per_ps", friction_per_ps)):
        positive_float(name, value)
    non_negative_float("equilibration_ps", equilibration_ps)
    positive_int("frames", frames)
    integer("seed", seed, low=0, high=2**31 - 2, why="OpenMM's random seed")
    total_steps = round(nanoseconds * _FEMTOSECONDS_PER_NS / timestep_fs)
    stride = total_steps // frames
    if stride < 1:
        raise ValueError(f"frames: {frames} frames need at least as many steps, but {nanoseconds} ns at "
                         f"{timestep_fs} fs is {total_steps} steps")
    names = [openmm.Platform.getPlatform(i).getName() for i in range(openmm.Platform.getNumPlatforms())]
    if platform not in names:
        raise ValueError(f"platform: expected one of the OpenMM platforms here {names}, got {platform!r}")

    pdb_text = pdb_path.read_text()
    pdb = app.PDBFile(io.StringIO(pdb_text))
    system = create_system(pdb.topology, forcefield, constraints="HBonds")
    integrator = openmm.LangevinMiddleIntegrator(temperature * unit.kelvin, friction_per_ps / unit.picosecond,
                                                 timestep_fs * unit.femtosecond)
    integrator.setRandomNumberSeed(seed + 1)
    if threads is not None:
        positive_int("threads", threads)
    properties = {"Threads": str(threads)} if platform == "CPU" and threads is not None else {}
    context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName(platform), properties)
    context.setPositions(pdb.positions)

    started = time.perf_counter()
    openmm.LocalEnergyMinimizer.minimize(context)
    context.setVelocitiesToTemperature(temperature * unit.kelvin, seed + 1)
    equilibration_steps = round(equilibration_ps * 1000.0 / timestep_fs)
    integrator.step(equilibration_steps)
    production_started = time.perf_counter()  # the production's speed, apart from minimisation and equilibration

    coordinates = np.empty((frames, system.getNumParticles(), 3), dtype=np.float32)
    energies = np.empty(frames, dtype=np.float64)
    for frame in progress_bar(range(frames), enabled=progress, desc="reference MD", unit="frame"):
        integrator.step(stride)
        state = context.getState(getPositions=True, getEnergy=True)
        coordinates[frame] = state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
        energies[frame] = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
    finished = time.perf_counter()

    interval_ps = stride * timestep_fs / 1000.0
    provenance = {
        "kind": "bfr_fast reference MD",
        "structure": pdb_path.name,
        "structure_sha256": hashlib.sha256(pdb_text.encode()).hexdigest(),
        "forcefield": list(forcefield),
        "nonbonded": "NoCutoff (implicit solvent)",
        "constraints": "HBonds",
        "integrator": "LangevinMiddleIntegrator",
        "temperature_K": float(temperature),
        "friction_per_ps": float(friction_per_ps),
        "timestep_fs": float(timestep_fs),
        "equilibration_ps": equilibration_steps * timestep_fs / 1000.0,
        "nanoseconds": frames * stride * timestep_fs / _FEMTOSECONDS_PER_NS,
        "frames": frames,
        "stride_steps": stride,
        "frame_interval_ps": interval_ps,
        "seed": seed,
        "platform": platform,
        # the CPU platform's thread count sets its speed (wall_time_s), not the law of its frames
        "threads": int(context.getPlatform().getPropertyValue(context, "Threads")) if platform == "CPU" else 1,
        "openmm_version": openmm.__version__,
        "mdtraj_version": mdtraj.__version__,
        "python": python_platform.python_version(),
        "wall_time_s": round(finished - started, 3),
        "production_wall_time_s": round(finished - production_started, 3),
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    time_ps = interval_ps * np.arange(1, frames + 1, dtype=np.float64)
    out_path = Path(out_path).expanduser()
    atomic_write(out_path, lambda f: np.savez(f, coordinates=coordinates, time_ps=time_ps,
                                              potential_energy=energies, topology_pdb=np.array(pdb_text),
                                              provenance=np.array(json.dumps(provenance))))
    atomic_write(out_path.with_name(out_path.name + ".json"),
                 lambda f: f.write((json.dumps(provenance, indent=2) + "\n").encode()))
    return out_path


def load_reference_md(path: str | Path) -> ReferenceMD:
    """Loads a trajectory cached by :func:`generate_reference_md`.

    Raises:
        FileNotFoundError: if ``path`` does not exist, saying how to generate it.
        ValueError: if the archive is damaged (saying to delete it) or lacks any of the expected arrays.
    """
    from openmm import app

    path = Path(path).expanduser()
    if not path.is_file():
        raise missing_file_error(path, "Reference MD archive", _HOW)
    expected = ("coordinates", "time_ps", "potential_energy", "topology_pdb", "provenance")
    arrays = read_npz(path, f"Delete it (a recipe generates a missing cache again) or replace it. {_HOW}")
    missing = [key for key in expected if key not in arrays]
    if missing:
        raise ValueError(f"{path}: not a reference MD archive, missing {missing}. {_HOW}")
    topology = mdtraj.Topology.from_openmm(app.PDBFile(io.StringIO(str(arrays["topology_pdb"]))).topology)
    return ReferenceMD(coordinates=arrays["coordinates"], time_ps=arrays["time_ps"],
                       potential_energy=arrays["potential_energy"], topology=topology,
                       provenance=json.loads(str(arrays["provenance"])))
