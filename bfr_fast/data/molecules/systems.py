"""Built-in molecular systems: a starting structure and default MD settings, their reference MD run once and cached.

One :class:`MolecularSystem` per built-in molecule (alanine dipeptide in :mod:`.alanine`, chignolin in
:mod:`.chignolin`); :func:`reference_dataset` turns any of them into a :class:`MoleculeDataset`, generating its
reference MD with :func:`~bfr_fast.data.molecules.generate_reference_md` the first time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bfr_fast.data.molecules.dataset import (
    DEFAULT_SPLIT_BLOCKS,
    DEFAULT_TEST_FRACTION,
    MoleculeDataset,
    molecule_dataset,
)
from bfr_fast.data.molecules.forcefield import DEFAULT_FORCEFIELD
from bfr_fast.data.molecules.reference_md import generate_reference_md, load_reference_md

__all__ = ["MolecularSystem", "reference_dataset"]


@dataclass(frozen=True)
class MolecularSystem:
    """A built-in molecule and how its reference MD is run by default.

    Attributes:
        name: Short name: the recipe's ``--data`` value, the data set's name and the cache files' prefix.
        title: What the molecule is, for reports (e.g. ``"alanine dipeptide"``).
        structure_name: File name of the starting PDB, as the MD's provenance records it.
        structure: Given the cache folder, the path of the starting PDB (hydrogens included), named
            ``structure_name``; a built structure is written into that folder.
        nanoseconds: Default production length.
        frames: Default number of frames kept.
        platform: OpenMM platform of its MD (``"Reference"`` is the fastest for ~20 atoms, ``"CPU"`` beyond).
        coordinates: What the molecular recipes model by default: ``"cartesian"`` (aligned, standardised) or
            ``"internal"`` (:class:`~bfr_fast.data.molecules.InternalCoordinates`).
    """

    name: str
    title: str
    structure_name: str
    structure: Callable[[Path], Path]
    nanoseconds: float
    frames: int
    platform: str
    coordinates: str = "cartesian"

    def cache_path(self, cache_dir: str | Path, nanoseconds: float | None = None, frames: int | None = None,
                   temperature: float = 300.0, seed: int = 0) -> Path:
        """Where :func:`reference_dataset` caches the MD of these settings (one file per setting; ``None`` is the
        default)."""
        nanoseconds = self.nanoseconds if nanoseconds is None else nanoseconds
        frames = self.frames if frames is None else frames
        return (Path(cache_dir).expanduser()
                / f"{self.name}_{nanoseconds:g}ns_{frames}frames_{temperature:g}K_seed{seed}.npz")


def reference_dataset(system: MolecularSystem, cache_dir: str | Path, nanoseconds: float | None = None,
                      frames: int | None = None, temperature: float = 300.0, seed: int = 0, *,
                      test_fraction: float = DEFAULT_TEST_FRACTION, blocks: int = DEFAULT_SPLIT_BLOCKS,
                      align: bool = False, platform: str | None = None, progress: bool = True,
                      selection: str | None = None) -> MoleculeDataset:
    """The data set of a built-in system, from its cached reference MD (run first if it is not cached yet).

    The MD (:func:`~bfr_fast.data.molecules.generate_reference_md`): the system's starting structure, ff99SB-ILDN
    + OBC implicit solvent, X-H bonds constrained, minimised, Langevin at ``temperature`` with 2 fs steps after
    100 ps of discarded equilibration. The frames are then centred (centre of mass) and split into train and test
    by time blocks (:func:`~bfr_fast.data.molecules.block_split`).

    Args:
        system: the molecule.
        cache_dir: folder of the cached trajectories (and of built structures).
        nanoseconds: production length; ``None`` is the system's default.
        frames: frames kept, equally spaced in time; ``None`` is the system's default.
        temperature: kelvin.
        seed: seed of the MD.
        test_fraction: fraction of time blocks held out as the test set.
        blocks: number of time blocks.
        align: superpose all frames onto the first by heavy atoms before centring.
        platform: OpenMM platform, should the MD have to run; ``None`` is the system's.
        progress: show the MD progress bar.
        selection: keep only these atoms (mdtraj's selection language); ``None`` keeps all.

    Returns:
        The data set, named after the system; its ``provenance`` is the MD's, plus the cache path.

    Raises:
        ValueError: if the cached file's provenance does not match the requested settings, or the structure
            cannot be built (e.g. its optional packages are missing).
    """
    nanoseconds = system.nanoseconds if nanoseconds is None else nanoseconds
    frames = system.frames if frames is None else frames
    path = system.cache_path(cache_dir, nanoseconds, frames, temperature, seed)
    if not path.is_file():
        generate_reference_md(path, nanoseconds, frames, temperature, seed,
                              pdb_path=system.structure(path.parent), platform=platform or system.platform,
                              progress=progress)
    reference = load_reference_md(path)
    stored = reference.provenance
    wanted = {"frames": frames, "temperature_K": float(temperature), "seed": seed,
              "forcefield": list(DEFAULT_FORCEFIELD), "structure": system.structure_name}
    wrong = {key: stored.get(key) for key, value in wanted.items() if stored.get(key) != value}
    if wrong:
        raise ValueError(f"{path}: cached with {wrong}, expected {({key: wanted[key] for key in wrong})}; "
                         "delete it or use another cache_dir")
    return molecule_dataset(reference.to_mdtraj(), system.name, test_fraction, blocks, align=align,
                            provenance={**stored, "cache_path": str(path)}, selection=selection)
