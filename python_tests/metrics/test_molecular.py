"""Molecular metrics: coverage/AMR on sets with known answers, OpenMM energies, the energy error."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bfr_fast.data.molecules import ALANINE_DIPEPTIDE_PDB, heavy_atom_indices, random_rotation
from bfr_fast.metrics import molecular
from bfr_fast.metrics.molecular import coverage_amr, energy_error, format_coverage_amr, format_energy_error
from bfr_fast.metrics.molecular import molecular_metrics, openmm_energies
from bfr_fast.ops import RMSDMinima


@pytest.fixture(scope="module")
def frames(short_md) -> torch.Tensor:
    x = torch.from_numpy(short_md.coordinates)
    return x - x.mean(dim=1, keepdim=True)


def radius_of_gyration(frame: torch.Tensor) -> float:
    return float(frame.double().square().sum(dim=1).mean().sqrt())


def test_identical_and_rigidly_moved_sets_are_fully_covered(frames):
    result = coverage_amr(frames, frames, threshold=1e-3)
    assert result["cov_r"] == 1.0 and result["cov_p"] == 1.0
    assert result["amr_r"] < 1e-5 and result["amr_p"] < 1e-5
    moved = random_rotation(frames, torch.Generator().manual_seed(0)) + torch.tensor([0.5, -1.0, 2.0])
    result = coverage_amr(moved, frames.numpy(), threshold=1e-3)
    assert result["cov_r"] == 1.0 and result["cov_p"] == 1.0 and result["amr_r"] < 1e-5


def test_known_rmsd_by_scaling(frames):
    # Y = (1 + s) X of a centred X: the optimal rotation is the identity (X^T Y is symmetric positive
    # definite), so RMSD(X, Y) = |s| * rms radius of X exactly.
    x = frames[:1].double()
    rg = radius_of_gyration(x[0])
    generated = torch.cat([x * 1.02, x * 1.10])  # RMSDs 0.02 rg and 0.10 rg
    result = coverage_amr(generated, x, threshold=0.05 * rg)
    assert result["cov_p"] == 0.5 and result["cov_r"] == 1.0
    assert result["amr_p"] == pytest.approx(0.06 * rg, rel=1e-6)
    assert result["amr_r"] == pytest.approx(0.02 * rg, rel=1e-6)
    assert coverage_amr(generated, x, threshold=0.01 * rg)["cov_r"] == 0.0
    assert coverage_amr(generated, x, threshold=0.2 * rg)["cov_p"] == 1.0


def test_threshold_is_inclusive_and_roles_are_right(monkeypatch, frames):
    # rows are generated conformers (precision), columns reference conformers (recall); binary fractions, so
    # the float32 minima equal the thresholds exactly
    minima = RMSDMinima(torch.tensor([0.125, 0.375, 0.25]), torch.zeros(3, dtype=torch.long),
                        torch.tensor([0.125, 0.5]), torch.zeros(2, dtype=torch.long))
    seen = {}

    def fake_rmsd_min(X, Y, backend="auto"):
        seen["shapes"] = (tuple(X.shape), tuple(Y.shape))
        return minima

    monkeypatch.setattr(molecular, "rmsd_min", fake_rmsd_min)
    result = coverage_amr(frames[:3], frames[:2], threshold=0.25)
    assert seen["shapes"] == ((3, 22, 3), (2, 22, 3))
    assert result == {"cov_r": 0.5, "cov_p": 2 / 3, "amr_r": 0.3125, "amr_p": 0.25}
    assert coverage_amr(frames[:3], frames[:2], threshold=0.125)["cov_r"] == 0.5  # 0.125 <= 0.125 counts


def test_atom_subset(short_md, frames):
    heavy = heavy_atom_indices(short_md.topology)
    hydrogens = np.setdiff1d(np.arange(22), heavy)
    moved = frames[:5].clone()
    moved[:, hydrogens] += 0.05 * torch.randn(5, len(hydrogens), 3, generator=torch.Generator().manual_seed(0))
    on_heavy = coverage_amr(moved, frames[:5], threshold=0.01, atom_indices=heavy)
    on_all = coverage_amr(moved, frames[:5], threshold=0.01)
    assert on_heavy["amr_r"] < 1e-5 and on_heavy["cov_r"] == 1.0
    assert on_all["amr_r"] > 0.01 and on_all["cov_r"] < 1.0


def test_formatting_gives_nm_and_angstroms():
    text = format_coverage_amr({"cov_r": 0.912, "cov_p": 0.85, "amr_r": 0.0312, "amr_p": 0.04}, threshold=0.05)
    assert "COV-R 91.2%" in text and "COV-P 85.0%" in text
    assert "0.0500 nm = 0.500 Å" in text and "AMR-R 0.0312 nm (0.312 Å)" in text and "0.400 Å" in text


def test_a_boolean_mask_selects_atoms_like_their_indices(short_md, frames):
    heavy = heavy_atom_indices(short_md.topology)
    mask = np.zeros(22, dtype=bool)
    mask[heavy] = True
    moved = frames[:4] + 0.02 * torch.randn(4, 22, 3, generator=torch.Generator().manual_seed(1))
    by_index = coverage_amr(moved, frames[4:9], threshold=0.03, atom_indices=heavy)
    assert coverage_amr(moved, frames[4:9], threshold=0.03, atom_indices=mask) == by_index
    assert coverage_amr(moved, frames[4:9], threshold=0.03, atom_indices=torch.from_numpy(mask)) == by_index
    # a numpy threshold is a number like any other
    assert coverage_amr(moved, frames[4:9], threshold=np.float32(0.03), atom_indices=heavy)["cov_r"] == pytest.approx(
        by_index["cov_r"])


@pytest.mark.parametrize("change, match", [
    (dict(threshold=0.0), "threshold"), (dict(threshold=float("nan")), "threshold"),
    (dict(atom_indices=[0, 22]), "atom_indices: indices must lie in \\[0, 22\\), got \\[22\\]"),
    (dict(atom_indices=[-1, 3]), "atom_indices: indices must lie"),
    (dict(atom_indices=[]), "atom_indices"),
    (dict(atom_indices=[4, 5, 4]), "atom_indices: each atom at most once, got \\[4\\] repeated"),
    (dict(atom_indices=[0.0, 1.0]), "atom_indices: expected .* integer"),
    (dict(atom_indices=np.ones(21, dtype=bool)), "atom_indices: a boolean mask must have one entry per atom"),
    (dict(atom_indices=np.zeros(22, dtype=bool)), "atom_indices: a boolean mask .* select at least one"),
])
def test_coverage_argument_errors(frames, change, match):
    with pytest.raises(ValueError, match=match):
        coverage_amr(frames[:2], frames[:2], **{"threshold": 0.1, **change})


def test_coverage_input_errors(frames):
    with pytest.raises(ValueError, match="reference"):
        coverage_amr(frames[:2], frames[:2, :21], threshold=0.1)
    with pytest.raises(ValueError, match="generated"):
        coverage_amr(frames[0], frames[:2], threshold=0.1)
    broken = frames[:3].clone()
    broken[1, 4, 0] = float("nan")
    with pytest.raises(ValueError, match="generated: 1 of 3 conformers"):
        coverage_amr(broken, frames[:2], threshold=0.1)


def test_energies_match_the_md_and_ignore_rigid_motion(short_md):
    energies = openmm_energies(short_md.coordinates, short_md.topology)
    assert energies.shape == (50,) and np.isfinite(energies).all()
    # MD frames keep X-H bonds at their equilibrium length, so the unconstrained energy is the MD's own
    np.testing.assert_allclose(energies, short_md.potential_energy, atol=0.05)
    x = torch.from_numpy(short_md.coordinates[:10]).double()
    moved = random_rotation(x - x.mean(dim=1, keepdim=True), torch.Generator().manual_seed(1)) + 3.0
    np.testing.assert_allclose(openmm_energies(moved, ALANINE_DIPEPTIDE_PDB), energies[:10], rtol=1e-6, atol=1e-4)


def test_energies_punish_bad_hydrogens_and_mark_broken_frames(short_md):
    x = short_md.coordinates[:3].copy()
    base = openmm_energies(x, short_md.topology)
    n, h = 6, 7  # ALA N and its H: a constrained bond during MD, a harmonic term here
    x[1, h] = x[1, n] + 1.3 * (x[1, h] - x[1, n])
    x[2, 0, 0] = np.nan
    energies = openmm_energies(x, short_md.topology)
    assert energies[0] == pytest.approx(base[0]) and energies[1] > base[1] + 50 and np.isnan(energies[2])
    with pytest.raises(ValueError, match="22 atoms"):
        openmm_energies(x[:, :20], short_md.topology)


def test_energy_error_formula_and_exclusions():
    result = energy_error(np.array([1.0, 2.0, 3.0]), np.array([-10.0, -10.0]))
    assert result["energy_error_percent"] == pytest.approx(120.0)
    assert result["excluded_generated"] == 0 and result["n_generated"] == 3
    result = energy_error(torch.tensor([-12.0, -8.0, 1e9, float("nan")]), np.array([-10.0, np.inf]), cutoff=1e3)
    assert result["energy_error_percent"] == pytest.approx(0.0)
    assert result["excluded_generated"] == 2 and result["excluded_reference"] == 1 and result["cutoff"] == 1e3
    assert result["n_generated"] == 4 and result["n_reference"] == 2
    text = format_energy_error(result)
    assert "+0.00%" in text and "2/4 generated" in text and "> 1000 kJ/mol" in text


def test_energy_error_errors():
    with pytest.raises(ValueError, match="generated_energies"):
        energy_error(np.array([5.0, np.nan]), np.array([-1.0]), cutoff=1.0)
    with pytest.raises(ValueError, match="reference_energies"):
        energy_error(np.array([1.0]), np.array([1.0, -1.0]))
    with pytest.raises(ValueError, match="generated_energies"):
        energy_error(np.zeros((2, 2)), np.array([1.0]))
    with pytest.raises(ValueError, match="cutoff"):
        energy_error(np.array([1.0]), np.array([1.0]), cutoff=float("nan"))


def test_molecular_metrics_bundle(short_md, frames):
    result = molecular_metrics(frames[:20], frames[20:], short_md.topology, threshold=0.05)
    assert result["rmsd_atoms"] == "heavy" and result["threshold_nm"] == 0.05
    assert 0.0 <= result["cov_r"] <= 1.0 and result["amr_r"] > 0
    # The energy error from the MD's own potential energies (the integrator's, not openmm_energies): 0.05 kJ/mol apart.
    generated, reference = short_md.potential_energy[:20].mean(), short_md.potential_energy[20:].mean()
    assert result["energy_error_percent"] == pytest.approx(100 * (generated - reference) / abs(reference), abs=0.1)
    assert result["mean_generated"] == pytest.approx(generated, abs=0.05) and result["excluded_generated"] == 0
    assert sum(result["basins"].values()) == pytest.approx(1.0)
    heavy = coverage_amr(frames[:20], frames[20:], 0.05, heavy_atom_indices(short_md.topology))
    assert {key: result[key] for key in heavy} == heavy
    every = molecular_metrics(frames[:20], frames[20:], short_md.topology, threshold=0.05, all_atoms=True,
                              reference_energies=np.full(30, -80.0))
    assert every["rmsd_atoms"] == "all" and every["mean_reference"] == -80.0


def test_molecular_metrics_uses_given_generated_energies(short_md, frames):
    energies = openmm_energies(frames[:20], short_md.topology)
    given = molecular_metrics(frames[:20], frames[20:], short_md.topology, threshold=0.05,
                              generated_energies=energies + 10.0)
    computed = molecular_metrics(frames[:20], frames[20:], short_md.topology, threshold=0.05)
    assert given["mean_generated"] == pytest.approx(computed["mean_generated"] + 10.0)
    assert given["mean_reference"] == pytest.approx(computed["mean_reference"])
    with pytest.raises(ValueError, match="generated_energies"):
        molecular_metrics(frames[:20], frames[20:], short_md.topology, threshold=0.05, generated_energies=energies[:5])


def _xh_bonds(topology) -> list[tuple[int, int]]:
    return [(a.index, b.index) for a, b in topology.bonds if "H" in (a.element.symbol, b.element.symbol)]


def _lengths(x: np.ndarray, bonds: list[tuple[int, int]]) -> np.ndarray:
    return np.stack([np.linalg.norm(x[:, i] - x[:, j], axis=-1) for i, j in bonds], axis=1)


def test_constraints_restore_stretched_hydrogen_bonds_and_lower_the_energy(short_md):
    x = short_md.coordinates[:4].astype(np.float64)
    bonds = _xh_bonds(short_md.topology)
    md_lengths = _lengths(x, bonds)  # the MD's constrained lengths, the force field's r0
    stretched = x.copy()
    for i, j in bonds:  # every X-H bond 20 % longer, the hydrogen moved along the bond
        stretched[:, j if short_md.topology.atom(j).element.symbol == "H" else i] += 0.2 * (
            x[:, j] - x[:, i]) * (1 if short_md.topology.atom(j).element.symbol == "H" else -1)
    assert np.abs(_lengths(stretched, bonds) / md_lengths - 1.2).max() < 1e-6
    projected = molecular.apply_constraints(stretched, short_md.topology)
    np.testing.assert_allclose(_lengths(projected, bonds), md_lengths, rtol=1e-5)
    flexible = openmm_energies(stretched, short_md.topology)
    constrained = openmm_energies(stretched, short_md.topology, constrain=True)
    md = openmm_energies(x, short_md.topology)
    # the stretch costs hundreds of kJ/mol; projected back, the conformer is near the MD frame again (not on it:
    # the projection is mass-weighted, so each heavy atom takes a share of its hydrogens' corrections)
    assert (flexible > md + 200).all() and (constrained < flexible - 200).all()
    np.testing.assert_allclose(constrained, md, atol=10.0)
    # MD frames already satisfy the constraints: the projection leaves their energies as they are
    np.testing.assert_allclose(openmm_energies(x, short_md.topology, constrain=True), md, atol=1e-3)


def test_constraints_mark_broken_frames(short_md):
    x = short_md.coordinates[:2].astype(np.float64)
    x[1, 3, 0] = np.nan
    energies = openmm_energies(x, short_md.topology, constrain=True)
    assert np.isfinite(energies[0]) and np.isnan(energies[1])


def test_a_topology_without_its_hydrogens_has_no_force_field(short_md):
    heavy = heavy_atom_indices(short_md.topology)
    with pytest.raises(ValueError, match=r"^topology: no force field .* missing 3 H atoms") as error:
        openmm_energies(short_md.coordinates[:2, heavy], short_md.topology.subset(heavy))
    assert "\n" not in str(error.value)


def _brute_force_rmsd(a: np.ndarray, b: np.ndarray) -> float:
    """RMSD after optimal superposition by Kabsch, by SVD, for one pair of (atoms, 3) frames."""
    a, b = a - a.mean(axis=0), b - b.mean(axis=0)
    u, _, vt = np.linalg.svd(a.T @ b)
    d = np.sign(np.linalg.det(u @ vt))
    rotation = u @ np.diag([1.0, 1.0, d]) @ vt
    return float(np.sqrt(((a @ rotation - b) ** 2).sum(axis=1).mean()))


def test_coverage_curve_matches_a_brute_force_count():
    rng = np.random.default_rng(3)
    generated, reference = rng.normal(size=(6, 5, 3)), rng.normal(size=(9, 5, 3))
    matrix = np.array([[_brute_force_rmsd(g, r) for r in reference] for g in generated])
    taus = np.linspace(0.0, matrix.max() * 1.1, 25)
    to_reference, to_generated = molecular.nearest_rmsd(generated, reference)
    np.testing.assert_allclose(to_reference, matrix.min(axis=1), rtol=1e-5)
    np.testing.assert_allclose(to_generated, matrix.min(axis=0), rtol=1e-5)
    curve = molecular.coverage_curve(to_reference, to_generated, taus)
    assert curve["threshold"] == taus.tolist()
    np.testing.assert_array_equal(curve["cov_r"], [(matrix.min(axis=0) <= t).mean() for t in taus])
    np.testing.assert_array_equal(curve["cov_p"], [(matrix.min(axis=1) <= t).mean() for t in taus])
    # at each reference's own minimum the count includes it (<=, as the table does)
    ties = np.sort(to_generated.numpy())
    tied = molecular.coverage_curve(to_reference, to_generated, ties)
    np.testing.assert_array_equal(tied["cov_r"], np.arange(1, 10) / 9)
    # the curve at a threshold is the table's coverage at that threshold
    for i, tau in enumerate(taus[1:], start=1):
        table = coverage_amr(generated, reference, threshold=tau)
        assert (table["cov_r"], table["cov_p"]) == (curve["cov_r"][i], curve["cov_p"][i])
    with pytest.raises(ValueError, match="thresholds"):
        molecular.coverage_curve(to_reference, to_generated, [-0.1])
