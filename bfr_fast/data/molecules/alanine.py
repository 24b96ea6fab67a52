"""Alanine dipeptide: the reference MD ensemble, generated once and cached, as a :class:`MoleculeDataset`."""

from __future__ import annotations

from pathlib import Path

from bfr_fast.data.molecules.dataset import DEFAULT_SPLIT_BLOCKS, DEFAULT_TEST_FRACTION, MoleculeDataset
from bfr_fast.data.molecules.structures import ALANINE_DIPEPTIDE_PDB
from bfr_fast.data.molecules.systems import MolecularSystem, reference_dataset

__all__ = ["ALANINE_DIPEPTIDE", "DEFAULT_FRAMES", "DEFAULT_NANOSECONDS", "alanine_dipeptide", "reference_md_path"]

DEFAULT_NANOSECONDS = 10.0
"""Production length of the default reference MD (its generation time: ``docs/results/ala2/README-section.md``).
Measured with seed 0: beta/C7eq 59 %, alpha_R 41 %, alpha_L/C7ax 0.01 %, about
900 basin changes; the alpha_R indicator decorrelates in ~20 ps, so the run holds ~250 independent basin
samples and the 2 ns test set's populations are good to several percentage points. Pass more nanoseconds for
tighter populations."""

DEFAULT_FRAMES = 50_000
"""Frames of the default reference MD, one per 0.2 ps: the default block split leaves 10 000 test frames."""

ALANINE_DIPEPTIDE = MolecularSystem(
    name="ala2", title="alanine dipeptide", structure_name=ALANINE_DIPEPTIDE_PDB.name,
    structure=lambda cache_dir: ALANINE_DIPEPTIDE_PDB, nanoseconds=DEFAULT_NANOSECONDS, frames=DEFAULT_FRAMES,
    platform="Reference")
"""ACE-ALA-NME, 22 atoms, from the shipped PDB; its MD on OpenMM's Reference platform (the fastest at 22 atoms)."""


def reference_md_path(cache_dir: str | Path, nanoseconds: float = DEFAULT_NANOSECONDS,
                      frames: int = DEFAULT_FRAMES, temperature: float = 300.0, seed: int = 0) -> Path:
    """Where :func:`alanine_dipeptide` caches the reference MD of these settings (one file per setting)."""
    return ALANINE_DIPEPTIDE.cache_path(cache_dir, nanoseconds, frames, temperature, seed)


def alanine_dipeptide(cache_dir: str | Path, nanoseconds: float = DEFAULT_NANOSECONDS,
                      frames: int = DEFAULT_FRAMES, temperature: float = 300.0, seed: int = 0, *,
                      test_fraction: float = DEFAULT_TEST_FRACTION, blocks: int = DEFAULT_SPLIT_BLOCKS,
                      align: bool = False, platform: str = "Reference", progress: bool = True,
                      selection: str | None = None) -> MoleculeDataset:
    """The alanine dipeptide data set (ACE-ALA-NME, 22 atoms), from a cached reference MD run.

    :func:`~bfr_fast.data.molecules.reference_dataset` of :data:`ALANINE_DIPEPTIDE`: if
    :func:`reference_md_path` does not exist yet, the MD is run first (with a progress bar): ff99SB-ILDN + OBC
    implicit solvent, Langevin at ``temperature``, 2 fs steps, 100 ps equilibration. The frames are then centred
    (centre of mass) and split into train and test by time blocks (:func:`~bfr_fast.data.molecules.block_split`).

    Args:
        cache_dir: folder of the cached trajectories.
        nanoseconds: production length.
        frames: frames kept, equally spaced in time.
        temperature: kelvin.
        seed: seed of the MD.
        test_fraction: fraction of time blocks held out as the test set.
        blocks: number of time blocks.
        align: superpose all frames onto the first by heavy atoms before centring.
        platform: OpenMM platform, should the MD have to run.
        progress: show the MD progress bar.
        selection: keep only these atoms (mdtraj's selection language); ``None`` keeps all 22.

    Returns:
        The data set; its ``provenance`` is the MD's, plus the cache path.

    Raises:
        ValueError: if the cached file's provenance does not match the requested settings.
    """
    return reference_dataset(ALANINE_DIPEPTIDE, cache_dir, nanoseconds, frames, temperature, seed,
                             test_fraction=test_fraction, blocks=blocks, align=align, platform=platform,
                             progress=progress, selection=selection)
