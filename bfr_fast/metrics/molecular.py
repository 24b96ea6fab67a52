r"""Molecular metrics: coverage and average minimum RMSD of conformer sets, and the energy error.

Coverage and AMR (as in GeoDiff and torsional diffusion), for generated conformers :math:`G`, reference
conformers :math:`R`, RMSD after optimal rigid superposition and a threshold :math:`\tau`:

.. math::

    \mathrm{COV\text{-}R} = \frac{1}{|R|} \bigl|\{r \in R : \min_{g \in G} \mathrm{RMSD}(g, r) \le \tau\}\bigr|,
    \qquad
    \mathrm{AMR\text{-}R} = \frac{1}{|R|} \sum_{r \in R} \min_{g \in G} \mathrm{RMSD}(g, r),

and COV-P, AMR-P the same with the roles of :math:`G` and :math:`R` swapped (recall: is every reference
conformer reproduced; precision: is every generated conformer realistic). The minima come from
:func:`bfr_fast.ops.rmsd_min`, which never builds the :math:`|G| \times |R|` matrix.

Energy error: :math:`100 \cdot (\bar E_\text{gen} - \bar E_\text{ref}) / |\bar E_\text{ref}|` percent, with the
potential energy of each conformer from the OpenMM force field of the reference MD.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import mdtraj
import numpy as np
import torch

from bfr_fast.checks import positive_float
from bfr_fast.data.molecules import (
    DEFAULT_FORCEFIELD,
    backbone_dihedrals,
    basin_populations,
    create_system,
    heavy_atom_indices,
    openmm_topology,
)
from bfr_fast.ops import rmsd_min

__all__ = ["ANGSTROMS_PER_NM", "CONSTRAINT_TOLERANCE", "apply_constraints", "coverage_amr", "coverage_curve",
           "energy_error", "format_coverage_amr", "format_energy_error", "molecular_metrics", "nearest_rmsd",
           "openmm_energies"]

ANGSTROMS_PER_NM = 10.0

CONSTRAINT_TOLERANCE = 1e-6
"""Relative tolerance of OpenMM's constraint projection (:func:`apply_constraints`): X-H bonds end within
:math:`10^{-6}` of their length, far below any other geometric error of a generated conformer."""

ArrayLike = np.ndarray | torch.Tensor


def _as_frames(x: ArrayLike, argument: str) -> torch.Tensor:
    """``x`` as a ``(N, A, 3)`` float32 (float64 kept) tensor with N >= 1, or ValueError naming ``argument``."""
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.dim() != 3 or x.shape[2] != 3 \
            or x.shape[0] == 0:
        raise ValueError(f"{argument}: expected a non-empty floating-point array of shape (N, atoms, 3), got "
                         f"{getattr(x, 'dtype', type(x).__name__)} {tuple(getattr(x, 'shape', ()))}")
    x = x.detach()
    return x if x.dtype == torch.float64 else x.float()


def _atom_index(atom_indices: Sequence[int] | ArrayLike, atoms: int) -> torch.Tensor:
    """``atom_indices`` (distinct indices, or a boolean mask over the atoms) as a long tensor of indices.

    A boolean array is a mask, never the indices 0 and 1 that ``torch.as_tensor(..., dtype=long)`` would make
    of it; duplicates are refused because they weigh an atom twice in the superposition and the RMSD.

    Raises:
        ValueError: a mask whose length is not ``atoms`` or that selects nothing; indices that are not
            integers, not 1-D, empty, out of ``[0, atoms)`` or repeated.
    """
    values = atom_indices.detach().cpu().numpy() if isinstance(atom_indices, torch.Tensor) else np.asarray(atom_indices)
    if values.dtype == np.bool_:
        if values.shape != (atoms,) or not values.any():
            raise ValueError(f"atom_indices: a boolean mask must have one entry per atom ({atoms},) and select at "
                             f"least one, got shape {values.shape} selecting {int(values.sum())}")
        return torch.from_numpy(np.flatnonzero(values))
    if values.ndim != 1 or values.size == 0 or not np.issubdtype(values.dtype, np.integer):
        raise ValueError(f"atom_indices: expected a non-empty 1-D list of integer indices in [0, {atoms}) or a "
                         f"boolean mask of length {atoms}, got {values.dtype} of shape {values.shape}")
    if values.min() < 0 or values.max() >= atoms:
        bad = values[(values < 0) | (values >= atoms)]
        raise ValueError(f"atom_indices: indices must lie in [0, {atoms}), got {bad.tolist()}")
    unique, counts = np.unique(values, return_counts=True)
    if (counts > 1).any():
        raise ValueError(f"atom_indices: each atom at most once, got {unique[counts > 1].tolist()} repeated")
    return torch.from_numpy(values.astype(np.int64))


def nearest_rmsd(generated: ArrayLike, reference: ArrayLike,
                 atom_indices: Sequence[int] | np.ndarray | None = None,
                 backend: str = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    r"""Each conformer's RMSD to its nearest conformer of the other set, after optimal rigid superposition.

    Args:
        generated: ``(N, atoms, 3)`` generated conformers (array or tensor, any device the op supports).
        reference: ``(M, atoms, 3)`` reference conformers, same unit and atom order (moved to ``generated``'s
            device and dtype).
        atom_indices: atoms the RMSD is taken over: distinct indices, or a boolean mask with one entry per atom;
            ``None`` for all atoms.
        backend: passed to :func:`bfr_fast.ops.rmsd_min` ("auto", "fused" or "eager").

    Returns:
        ``(to_reference, to_generated)``: float64 CPU tensors of shape ``(N,)`` (each generated conformer's
        :math:`\min_{r} \mathrm{RMSD}(g, r)`, the precision side) and ``(M,)`` (each reference conformer's
        :math:`\min_{g} \mathrm{RMSD}(g, r)`, the recall side), in the input unit.

    Raises:
        ValueError: for bad shapes, atom counts that differ, bad atom indices, or non-finite coordinates.
    """
    gen, ref = _as_frames(generated, "generated"), _as_frames(reference, "reference")
    if gen.shape[1] != ref.shape[1]:
        raise ValueError(f"reference: expected generated's atom count {gen.shape[1]}, got {ref.shape[1]}")
    if atom_indices is not None:
        index = _atom_index(atom_indices, gen.shape[1])
        gen, ref = gen[:, index.to(gen.device)], ref[:, index.to(ref.device)]
    for name, frames in (("generated", gen), ("reference", ref)):
        bad = int((~torch.isfinite(frames).flatten(1).all(dim=1)).sum())
        if bad:
            raise ValueError(f"{name}: {bad} of {frames.shape[0]} conformers hold NaN or inf coordinates; "
                             "drop them first (and report how many)")
    ref = ref.to(device=gen.device, dtype=gen.dtype)
    minima = rmsd_min(gen, ref, backend=backend)
    # rows: each generated conformer's nearest reference (precision); columns: each reference's nearest (recall)
    return minima.row_min.double().cpu(), minima.col_min.double().cpu()


def coverage_amr(generated: ArrayLike, reference: ArrayLike, threshold: float,
                 atom_indices: Sequence[int] | np.ndarray | None = None, backend: str = "auto") -> dict[str, float]:
    r"""COV-R, COV-P, AMR-R and AMR-P of generated against reference conformers (see the module docstring).

    A conformer counts as covered when its minimum RMSD is :math:`\le` ``threshold`` (inclusive). The RMSD is
    over the atoms ``atom_indices`` (all atoms when ``None``; pass :func:`~bfr_fast.data.molecules.
    heavy_atom_indices` of the topology for the usual heavy-atom metric, as :func:`molecular_metrics` does).

    Args:
        generated: ``(N, atoms, 3)`` generated conformers (array or tensor, any device the op supports).
        reference: ``(M, atoms, 3)`` reference conformers, same unit and atom order (moved to ``generated``'s
            device and dtype).
        threshold: :math:`\tau`, in the coordinates' unit (nm for the library's molecules).
        atom_indices: atoms the RMSD is taken over: distinct indices, or a boolean mask with one entry per atom.
        backend: passed to :func:`bfr_fast.ops.rmsd_min` ("auto", "fused" or "eager").

    Returns:
        ``{"cov_r", "cov_p"}`` as fractions in [0, 1] and ``{"amr_r", "amr_p"}`` in the input unit.

    Raises:
        ValueError: for bad shapes, atom counts that differ, atom indices that are out of range, repeated or a
            mask of the wrong length, a threshold that is not a positive finite number, or non-finite
            coordinates.
    """
    threshold = positive_float("threshold", threshold, why="an RMSD in nm")
    to_reference, to_generated = nearest_rmsd(generated, reference, atom_indices, backend)
    return _coverage_amr(to_reference, to_generated, threshold)


def _coverage_amr(to_reference: torch.Tensor, to_generated: torch.Tensor, threshold: float) -> dict[str, float]:
    return {
        "cov_r": float((to_generated <= threshold).double().mean()),
        "cov_p": float((to_reference <= threshold).double().mean()),
        "amr_r": float(to_generated.mean()),
        "amr_p": float(to_reference.mean()),
    }


def coverage_curve(to_reference: ArrayLike, to_generated: ArrayLike,
                   thresholds: Sequence[float] | np.ndarray) -> dict[str, list[float]]:
    r"""COV-R and COV-P as functions of the threshold, from the nearest-neighbour RMSDs of :func:`nearest_rmsd`.

    :math:`\mathrm{COV\text{-}R}(\tau) = |\{r : d_r \le \tau\}| / M` over the reference side's minima
    :math:`d_r` (``to_generated``), :math:`\mathrm{COV\text{-}P}(\tau)` the same over ``to_reference``: one
    sort of each side, then a binary search per threshold, so a curve costs no more RMSDs than one table entry.

    Args:
        to_reference: ``(N,)`` each generated conformer's nearest-reference RMSD.
        to_generated: ``(M,)`` each reference conformer's nearest-generated RMSD.
        thresholds: ``(T,)`` non-negative thresholds :math:`\tau`, same unit as the RMSDs.

    Returns:
        ``{"threshold", "cov_r", "cov_p"}``: lists of length ``T``, coverages as fractions in [0, 1] (inclusive
        ``<=`` as in :func:`coverage_amr`).

    Raises:
        ValueError: an empty side, non-finite RMSDs, or thresholds that are empty, not 1-D, negative or
            non-finite.
    """
    taus = np.asarray(thresholds, dtype=np.float64)
    if taus.ndim != 1 or taus.size == 0 or not np.isfinite(taus).all() or (taus < 0).any():
        raise ValueError(f"thresholds: expected a non-empty 1-D list of finite non-negative RMSDs, got {taus!r}")
    curve: dict[str, list[float]] = {"threshold": taus.tolist()}
    for key, values, name in (("cov_r", to_generated, "to_generated"), ("cov_p", to_reference, "to_reference")):
        side = np.sort(values.detach().cpu().double().numpy() if isinstance(values, torch.Tensor)
                       else np.asarray(values, dtype=np.float64))
        if side.ndim != 1 or side.size == 0 or not np.isfinite(side).all():
            raise ValueError(f"{name}: expected a non-empty 1-D array of finite RMSDs, got shape {side.shape}")
        curve[key] = (np.searchsorted(side, taus, side="right") / side.size).tolist()
    return curve


def format_coverage_amr(result: dict[str, float], threshold: float) -> str:
    """One line for logs and reports, coverages in percent and lengths in nm and in angstroms.

    Example: ``COV-R 91.2% COV-P 85.0% (tau = 0.0500 nm = 0.500 Å); AMR-R 0.0312 nm (0.312 Å), AMR-P ...``.
    """
    def length(nm: float) -> str:
        return f"{nm:.4f} nm ({nm * ANGSTROMS_PER_NM:.3f} Å)"

    return (f"COV-R {100 * result['cov_r']:.1f}% COV-P {100 * result['cov_p']:.1f}% "
            f"(tau = {threshold:.4f} nm = {threshold * ANGSTROMS_PER_NM:.3f} Å); "
            f"AMR-R {length(result['amr_r'])}, AMR-P {length(result['amr_p'])}")


def apply_constraints(coordinates: ArrayLike, topology: str | Path | mdtraj.Topology | Any,
                      forcefield: tuple[str, ...] = DEFAULT_FORCEFIELD, platform: str = "Reference",
                      tolerance: float = CONSTRAINT_TOLERANCE) -> np.ndarray:
    r"""Projects every conformer onto the reference MD's constraints: each X-H bond set to its force-field length.

    The reference MD integrates with ``HBonds`` constraints (:func:`~bfr_fast.data.molecules.create_system`), so
    its frames hold every bond to a hydrogen at the equilibrium length :math:`r_0`. A generated conformer does
    not; OpenMM's ``Context.applyConstraints`` moves its atoms the least (mass-weighted) distance that satisfies
    :math:`|x_i - x_j| = r_0` for every constrained pair, as the MD's integrator does after each step. A frame
    with non-finite coordinates, or whose projection does not converge to finite coordinates, comes back NaN.

    Args:
        coordinates: ``(frames, atoms, 3)`` in nm, atoms in the topology's order.
        topology: a PDB path, an :class:`mdtraj.Topology` or an :class:`openmm.app.Topology`.
        forcefield: OpenMM force-field XML files (the reference MD's by default).
        platform: OpenMM platform.
        tolerance: relative tolerance of the constraint solver.

    Returns:
        ``(frames, atoms, 3)`` float64 projected coordinates in nm.

    Raises:
        ValueError: if the coordinates do not match the topology's atom count, or no force field can be built
            for the topology.
    """
    import openmm
    from openmm import unit

    tolerance = positive_float("tolerance", tolerance)
    xyz, omm_topology = _frames_for(coordinates, topology)
    system = create_system(omm_topology, forcefield, constraints="HBonds")
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName(platform))
    projected = np.full_like(xyz, np.nan)
    for frame in np.flatnonzero(np.isfinite(xyz).all(axis=(1, 2))):
        context.setPositions(xyz[frame])  # a bare array is read as nanometres
        try:
            context.applyConstraints(tolerance)
        except openmm.OpenMMException:  # a conformer too broken for the solver: NaN, counted where it is used
            continue
        positions = context.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(unit.nanometer)
        projected[frame] = positions if np.isfinite(positions).all() else np.nan
    return projected


def openmm_energies(coordinates: ArrayLike, topology: str | Path | mdtraj.Topology | Any,
                    forcefield: tuple[str, ...] = DEFAULT_FORCEFIELD, platform: str = "Reference",
                    constrain: bool = False) -> np.ndarray:
    """Potential energy of every conformer under an OpenMM force field, in kJ/mol.

    One OpenMM context evaluates all frames in turn (positions set, energy read): OpenMM has no batched energy.
    Every bond is a harmonic term here (no constraints), so a conformer pays for wrong X-H bond lengths too. For
    MD frames with exactly constrained X-H bonds this equals the MD's own potential energy. A generated
    conformer is compared like with like by ``constrain=True``: it is first projected onto the MD's X-H
    constraints (:func:`apply_constraints`), so that its energy, like the MD's, carries no X-H stretch; its
    angles, torsions and non-bonded terms, hydrogens included, still count. A frame with non-finite
    coordinates (or a projection that failed) gets NaN.

    Args:
        coordinates: ``(frames, atoms, 3)`` in nm, atoms in the topology's order.
        topology: a PDB path, an :class:`mdtraj.Topology` or an :class:`openmm.app.Topology`.
        forcefield: OpenMM force-field XML files (the reference MD's by default).
        platform: OpenMM platform.
        constrain: project every conformer onto the X-H bond constraints first.

    Returns:
        ``(frames,)`` float64 energies in kJ/mol.

    Raises:
        ValueError: if the coordinates do not match the topology's atom count, or no force field can be built
            for the topology (the message says why).
    """
    import openmm
    from openmm import unit

    xyz, omm_topology = _frames_for(coordinates, topology)
    if constrain:
        xyz = apply_constraints(xyz, omm_topology, forcefield, platform)
    system = create_system(omm_topology, forcefield, constraints=None)
    context = openmm.Context(system, openmm.VerletIntegrator(0.001),
                             openmm.Platform.getPlatformByName(platform))
    energies = np.full(xyz.shape[0], np.nan)
    finite = np.isfinite(xyz).all(axis=(1, 2))
    for frame in np.flatnonzero(finite):
        context.setPositions(xyz[frame])  # a bare array is read as nanometres
        energy = context.getState(getEnergy=True).getPotentialEnergy()
        energies[frame] = energy.value_in_unit(unit.kilojoule_per_mole)
    return energies


def _frames_for(coordinates: ArrayLike, topology: Any) -> tuple[np.ndarray, Any]:
    """``coordinates`` as float64 ``(frames, atoms, 3)`` numpy and the OpenMM topology, their atoms checked."""
    xyz = _as_frames(coordinates, "coordinates").cpu().double().numpy()
    omm_topology = openmm_topology(topology)
    if xyz.shape[1] != omm_topology.getNumAtoms():
        raise ValueError(f"coordinates: expected {omm_topology.getNumAtoms()} atoms like the topology, "
                         f"got {xyz.shape[1]}")
    return xyz, omm_topology


def energy_error(generated_energies: ArrayLike, reference_energies: ArrayLike,
                 cutoff: float | None = None) -> dict[str, float | int | None]:
    r"""Relative error of the mean energy, :math:`100 (\bar E_\text{gen} - \bar E_\text{ref}) / |\bar E_\text{ref}|`.

    Samples with a non-finite energy, or above ``cutoff`` when one is given, are left out of each mean, and how
    many were left out is reported beside the error (a cut-off hides broken samples: always report the count).

    Args:
        generated_energies: ``(N,)`` energies of the generated conformers.
        reference_energies: ``(M,)`` energies of the reference conformers, same unit.
        cutoff: keep only energies ``<= cutoff`` (same unit); ``None`` keeps every finite energy.

    Returns:
        ``energy_error_percent``, ``mean_generated``, ``mean_reference``, ``excluded_generated``,
        ``excluded_reference``, ``n_generated``, ``n_reference`` (counts before exclusion) and ``cutoff``.

    Raises:
        ValueError: if an input is not 1-D, every sample of a set is excluded, or the reference mean is 0.
    """
    if cutoff is not None and (isinstance(cutoff, bool) or not isinstance(cutoff, (int, float))
                               or np.isnan(cutoff)):
        raise ValueError(f"cutoff: expected a number or None, got {cutoff!r}")
    kept, excluded = {}, {}
    for name, values in (("generated_energies", generated_energies), ("reference_energies", reference_energies)):
        array = values.detach().cpu().double().numpy() if isinstance(values, torch.Tensor) \
            else np.asarray(values, dtype=np.float64)
        if array.ndim != 1:
            raise ValueError(f"{name}: expected a 1-D array of energies, got shape {array.shape}")
        keep = np.isfinite(array) if cutoff is None else np.isfinite(array) & (array <= cutoff)
        if not keep.any():
            raise ValueError(f"{name}: all {array.size} energies are excluded (non-finite or above "
                             f"cutoff={cutoff}); nothing to average")
        kept[name], excluded[name] = array[keep], int(array.size - keep.sum())
    mean_gen, mean_ref = float(kept["generated_energies"].mean()), float(kept["reference_energies"].mean())
    if mean_ref == 0:
        raise ValueError("reference_energies: their mean is 0; the relative error is undefined")
    return {
        "energy_error_percent": 100.0 * (mean_gen - mean_ref) / abs(mean_ref),
        "mean_generated": mean_gen,
        "mean_reference": mean_ref,
        "excluded_generated": excluded["generated_energies"],
        "excluded_reference": excluded["reference_energies"],
        "n_generated": kept["generated_energies"].size + excluded["generated_energies"],
        "n_reference": kept["reference_energies"].size + excluded["reference_energies"],
        "cutoff": cutoff,
    }


def format_energy_error(result: dict[str, float | int | None]) -> str:
    """One line: the error in percent, both means, and the exclusion counts (with the cut-off if any)."""
    rule = "non-finite" if result["cutoff"] is None else f"non-finite or > {result['cutoff']:g} kJ/mol"
    return (f"energy error {result['energy_error_percent']:+.2f}% (mean E gen {result['mean_generated']:.2f}, "
            f"ref {result['mean_reference']:.2f} kJ/mol; excluded as {rule}: "
            f"{result['excluded_generated']}/{result['n_generated']} generated, "
            f"{result['excluded_reference']}/{result['n_reference']} reference)")


def molecular_metrics(generated: ArrayLike, reference: ArrayLike, topology: mdtraj.Topology, threshold: float, *,
                      all_atoms: bool = False, reference_energies: ArrayLike | None = None,
                      generated_energies: ArrayLike | None = None, energy_cutoff: float | None = None,
                      forcefield: tuple[str, ...] = DEFAULT_FORCEFIELD, platform: str = "Reference",
                      backend: str = "auto", energies: bool = True, constrain: bool = False,
                      curve_thresholds: Sequence[float] | np.ndarray | None = None) -> dict[str, Any]:
    """Every molecular metric of one generated set: COV/AMR, energy error, and phi/psi basin populations.

    Args:
        generated: ``(N, atoms, 3)`` generated conformers in nm, all atoms, the topology's order.
        reference: ``(M, atoms, 3)`` reference conformers in nm (e.g. ``MoleculeDataset.test_x``).
        topology: the molecule's :class:`mdtraj.Topology`.
        threshold: COV threshold in nm.
        all_atoms: RMSD over all atoms instead of heavy atoms.
        reference_energies: the reference's energies if already computed (they do not change between models).
        generated_energies: ``(N,)`` energies of ``generated`` if already computed (e.g. kept for a histogram);
            computed here when None.
        energy_cutoff: see :func:`energy_error`.
        forcefield: OpenMM force field of the energies.
        platform: OpenMM platform.
        backend: RMSD backend.
        energies: compute the energy error; False leaves its entries out (a topology without a force field).
        constrain: project the generated conformers onto the X-H constraints before their energies (see
            :func:`openmm_energies`); the reference's are computed as they are.
        curve_thresholds: thresholds in nm of a COV-against-threshold curve (:func:`coverage_curve`), returned
            under ``"coverage_curve"``; None for no curve.

    Returns:
        ``cov_r, cov_p, amr_r, amr_p`` (see :func:`coverage_amr`), ``threshold_nm``, ``rmsd_atoms``
        ("heavy" or "all"), the :func:`energy_error` entries, and ``basins`` (fractions of generated conformers per
        Ramachandran basin, for a molecule with one phi/psi pair such as alanine dipeptide).
    """
    threshold = positive_float("threshold", threshold, why="an RMSD in nm")
    atoms = None if all_atoms else heavy_atom_indices(topology)
    to_reference, to_generated = nearest_rmsd(generated, reference, atoms, backend=backend)
    result: dict[str, Any] = _coverage_amr(to_reference, to_generated, threshold)
    result.update(threshold_nm=float(threshold), rmsd_atoms="all" if all_atoms else "heavy")
    if curve_thresholds is not None:
        result["coverage_curve"] = coverage_curve(to_reference, to_generated, curve_thresholds)
    if energies:
        if reference_energies is None:
            reference_energies = openmm_energies(reference, topology, forcefield, platform)
        if generated_energies is None:
            generated_energies = openmm_energies(generated, topology, forcefield, platform, constrain=constrain)
        elif len(generated_energies) != len(generated):
            raise ValueError(f"generated_energies: expected one energy per generated conformer "
                             f"({len(generated)}), got {len(generated_energies)}")
        result.update(energy_error(generated_energies, reference_energies, energy_cutoff))
    try:
        phi, psi = backbone_dihedrals(_as_frames(generated, "generated"), topology)
    except ValueError:  # not a peptide
        return result
    if phi.shape[1] == 1:  # the basins are those of a dipeptide's single phi/psi pair
        result["basins"] = basin_populations(phi[:, 0], psi[:, 0])
    return result
