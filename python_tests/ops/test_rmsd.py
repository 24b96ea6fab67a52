"""pairwise_rmsd and rmsd_min: against mdtraj and an SVD (Kabsch) reference, invariances, degenerate frames,
minima and ties, torch.compile, and argument errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import mdtraj
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bfr_fast.ops import RMSDMinima, pairwise_rmsd, rmsd_min
from bfr_fast.ops.reference import pairwise_rmsd_reference, rmsd_min_reference

from .conftest import DEVICES, compile_recording_ops

DTYPES = [torch.float32, torch.float64]


def random_rotations(n: int, gen: torch.Generator) -> torch.Tensor:
    """(n, 3, 3) uniformly random proper rotations, from unit quaternions."""
    q = torch.randn(n, 4, generator=gen, dtype=torch.float64)
    w, x, y, z = (q / q.norm(dim=1, keepdim=True)).unbind(1)
    return torch.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
        ],
        dim=1,
    ).reshape(n, 3, 3)  # fmt: skip


def compact_chain(atoms: int, gen: torch.Generator, bond: float = 0.15) -> torch.Tensor:
    """A random-walk chain with 0.15 nm bonds kept inside a sphere of a small protein's size, (atoms, 3) in nm."""
    radius = 0.25 * atoms ** (1 / 3)
    positions = [torch.zeros(3, dtype=torch.float64)]
    while len(positions) < atoms:
        step = torch.randn(3, generator=gen, dtype=torch.float64)
        candidate = positions[-1] + bond * step / step.norm()
        if candidate.norm() <= radius:
            positions.append(candidate)
    return torch.stack(positions)


def conformations(base: torch.Tensor, n: int, noise: float, gen: torch.Generator) -> torch.Tensor:
    """n noisy copies of a chain, each randomly rotated and translated, (n, atoms, 3) float64 in nm."""
    frames = base + noise * torch.randn(n, *base.shape, generator=gen, dtype=torch.float64)
    shift = 6 * torch.rand(n, 1, 3, generator=gen, dtype=torch.float64) - 3
    return frames @ random_rotations(n, gen).transpose(1, 2) + shift


def molecule_sets(atoms: int, n: int, m: int, seed: int = 0, noise: float = 0.1):
    gen = torch.Generator().manual_seed(seed)
    base = compact_chain(atoms, gen)
    return conformations(base, n, noise, gen), conformations(base, m, noise, gen)


def msd_scale(X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """(G_x + G_y) / A per pair: the natural scale of RMSD^2, bounding it from above."""
    x = X.double() - X.double().mean(1, keepdim=True)
    y = Y.double() - Y.double().mean(1, keepdim=True)
    return (x.square().sum((1, 2))[:, None] + y.square().sum((1, 2))[None, :]) / X.shape[1]


def assert_msd_close(fused: torch.Tensor, X: torch.Tensor, Y: torch.Tensor, rel: float) -> None:
    """|fused^2 - reference^2| <= rel * (G_x + G_y) / A, plus the rounding of the RMSD to its dtype: QCP's error is
    in RMSD^2, at the scale of G / A."""
    expected = pairwise_rmsd_reference(X.double(), Y.double())
    error = (fused.double().cpu().square() - expected.square()).abs()
    rounding = 2 * torch.finfo(fused.dtype).eps * expected.square()
    assert (error <= rel * msd_scale(X.cpu(), Y.cpu()) + rounding + 1e-300).all(), error.max()


def mdtraj_rmsd(X: torch.Tensor, Y: torch.Tensor) -> np.ndarray:
    """All pairs by mdtraj.rmsd (float32), looping over the Y frames as references."""
    topology = mdtraj.Topology()
    residue = topology.add_residue("MOL", topology.add_chain())
    for _ in range(X.shape[1]):
        topology.add_atom("C", mdtraj.element.carbon, residue)
    tx, ty = mdtraj.Trajectory(X.numpy(), topology), mdtraj.Trajectory(Y.numpy(), topology)
    return np.stack([mdtraj.rmsd(tx, ty, j) for j in range(Y.shape[0])], axis=1)


@pytest.mark.parametrize(("atoms", "n", "m"), [(22, 30, 40), (175, 12, 17)])
def test_matches_mdtraj(device, atoms, n, m):
    X, Y = (t.float() for t in molecule_sets(atoms, n, m))
    expected = mdtraj_rmsd(X, Y)
    fused = pairwise_rmsd(X.to(device), Y.to(device), backend="fused").cpu().numpy()
    assert expected.min() > 0.05  # not a near-zero regime, where mdtraj's float32 rounding dominates
    np.testing.assert_allclose(fused, expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("atoms", [3, 22, 175])
def test_matches_kabsch_on_molecules(device, atoms):
    X, Y = molecule_sets(atoms, 9, 21, seed=atoms)
    fused = pairwise_rmsd(X.to(device), Y.to(device), backend="fused").cpu()
    torch.testing.assert_close(fused, pairwise_rmsd_reference(X, Y), rtol=1e-10, atol=1e-12)
    X32, Y32 = X.float(), Y.float()
    fused32 = pairwise_rmsd(X32.to(device), Y32.to(device), backend="fused").cpu()
    assert fused32.dtype == torch.float32
    rtol = 2e-7 if device.type == "cpu" else 1e-5  # CPU: float64 inside, one rounding; CUDA: float32 inner products
    expected32 = pairwise_rmsd_reference(X32.double(), Y32.double())
    torch.testing.assert_close(fused32.double(), expected32, rtol=rtol, atol=1e-7)


@pytest.mark.parametrize("dtype", DTYPES)
def test_invariant_under_rigid_motions_of_either_set(device, dtype):
    gen = torch.Generator().manual_seed(3)
    X, Y = molecule_sets(22, 7, 11, seed=1)
    moved_x = X @ random_rotations(7, gen).transpose(1, 2) + torch.randn(7, 1, 3, generator=gen, dtype=X.dtype)
    moved_y = Y @ random_rotations(11, gen).transpose(1, 2) + torch.randn(11, 1, 3, generator=gen, dtype=Y.dtype)
    cast = dict(device=device, dtype=dtype)
    base = pairwise_rmsd(X.to(**cast), Y.to(**cast), backend="fused")
    tol = dict(rtol=1e-10, atol=1e-12) if dtype == torch.float64 else dict(rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(pairwise_rmsd(moved_x.to(**cast), Y.to(**cast), backend="fused"), base, **tol)
    torch.testing.assert_close(pairwise_rmsd(X.to(**cast), moved_y.to(**cast), backend="fused"), base, **tol)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("atoms", [22, 175])
def test_identical_and_rotated_copies_give_zero(device, dtype, atoms):
    gen = torch.Generator().manual_seed(atoms)
    base = compact_chain(atoms, gen)
    radius = (base - base.mean(0)).square().sum(1).mean().sqrt()
    copies = conformations(base, 12, 0.0, gen).to(device, dtype)  # one conformation, moved rigidly
    X = torch.cat([copies, conformations(base, 4, 0.1, gen).to(device, dtype)])
    r = pairwise_rmsd(X, X, backend="fused")
    # Identical frames: only float64 rounding of G / A survives, ~1e-8 of the RMS radius.
    assert r.diagonal().max() <= 2e-7 * radius
    # Rigidly moved copies: also the rounding of the stored coordinates themselves (float32: ~6e-8 relative).
    bound = 1e-7 if dtype == torch.float64 else 1e-6
    if device.type == "cuda" and dtype == torch.float32:
        bound = 1e-3  # float32 inner products: ~sqrt(eps_32) of the radius near zero
    assert r[:12, :12].max() <= bound * radius
    assert r[12:, :12].min() > 0.05  # the noisy conformations are not copies


def test_symmetric(device):
    X, Y = molecule_sets(22, 10, 13, seed=5)
    forward = pairwise_rmsd(X.to(device), Y.to(device), backend="fused")
    backward = pairwise_rmsd(Y.to(device), X.to(device), backend="fused")
    torch.testing.assert_close(forward, backward.T, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 20), m=st.integers(1, 40), atoms=st.integers(1, 12), seed=st.integers(0, 2**16))
def test_fused_matches_eager_random(name, dtype, n, m, atoms, seed):
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(n, atoms, 3, generator=gen, dtype=torch.float64).to(dtype)
    Y = (2 * torch.randn(m, atoms, 3, generator=gen, dtype=torch.float64) + 1).to(dtype)
    fused = pairwise_rmsd(X.to(name), Y.to(name), backend="fused")
    assert fused.shape == (n, m) and fused.dtype == dtype
    # 2 atoms are always collinear: a double root, found to ~2e-8 relative (see bfr_fast.ops.rmsd).
    rel = 5e-8 if dtype == torch.float64 or name == "cpu" else 2e-5
    assert_msd_close(fused, X, Y, rel)


def test_one_atom_gives_zero(device):
    X, Y = torch.randn(3, 1, 3, device=device), torch.randn(5, 1, 3, device=device)
    assert torch.equal(pairwise_rmsd(X, Y, backend="fused"), torch.zeros(3, 5, device=device))


def test_two_atoms_match_the_bond_length_difference(device):
    # Two atoms: the optimal rotation aligns the bonds, so each atom is off by half the bond length difference.
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(6, 2, 3, generator=gen, dtype=torch.float64)
    Y = torch.randn(9, 2, 3, generator=gen, dtype=torch.float64)
    bond_x, bond_y = (X[:, 1] - X[:, 0]).norm(dim=1), (Y[:, 1] - Y[:, 0]).norm(dim=1)
    expected = (bond_x[:, None] - bond_y[None, :]).abs() / 2
    fused = pairwise_rmsd(X.to(device), Y.to(device), backend="fused").cpu()
    assert ((fused.square() - expected.square()).abs() <= 5e-8 * msd_scale(X, Y)).all()


def test_collinear_planar_and_collapsed_frames(device):
    gen = torch.Generator().manual_seed(1)
    f64 = dict(generator=gen, dtype=torch.float64)
    collinear = torch.randn(4, 7, 1, **f64) * torch.randn(4, 1, 3, **f64) + torch.randn(4, 1, 3, **f64)
    planar = torch.randn(4, 7, 3, generator=gen, dtype=torch.float64)
    planar[..., 2] = 0.5
    collapsed = torch.randn(2, 1, 3, generator=gen, dtype=torch.float64).expand(2, 7, 3)  # all atoms at one point
    generic = torch.randn(3, 7, 3, generator=gen, dtype=torch.float64)
    frames = torch.cat([collinear, planar, collapsed, generic])
    fused = pairwise_rmsd(frames.to(device), frames.to(device), backend="fused")
    assert_msd_close(fused, frames, frames, 5e-8)
    assert fused.diagonal().max() <= 1e-7  # identical frames, collinear ones included (a double root at the start)
    # A collapsed frame against any frame y: the RMSD is y's RMS distance from its centroid.
    y = frames - frames.mean(1, keepdim=True)
    torch.testing.assert_close(fused[8].cpu(), y.square().sum((1, 2)).div(7).sqrt(), rtol=1e-7, atol=1e-12)


def test_multiple_root_at_the_start(device):
    # Identical collinear frames, and two-atom frames whose bonds differ by ~1e-6: the largest root is double and
    # sits at (or next to) the starting point, where rounding noise in P / P' once threw Newton far below it.
    gen = torch.Generator().manual_seed(2)
    f64 = dict(generator=gen, dtype=torch.float64)
    line = torch.randn(64, 5, 1, **f64) * torch.randn(64, 1, 3, **f64)
    fused = pairwise_rmsd(line.to(device), line.to(device), backend="fused").cpu()
    assert fused.diagonal().max() <= 1e-7 * msd_scale(line, line).diagonal().max().sqrt()
    bond = torch.randn(1, 2, 3, generator=gen, dtype=torch.float64)
    stretched = bond * (1 + 1e-6 * torch.randn(200, 1, 1, generator=gen, dtype=torch.float64))
    stretched = stretched @ random_rotations(200, gen).transpose(1, 2)
    fused = pairwise_rmsd(stretched.to(device), bond.to(device), backend="fused").cpu()
    length = (bond[0, 1] - bond[0, 0]).norm()
    expected = ((stretched[:, 1] - stretched[:, 0]).norm(dim=1) - length).abs()[:, None] / 2
    assert ((fused.square() - expected.square()).abs() <= 5e-8 * msd_scale(stretched, bond)).all()


def test_mirror_image_is_not_superposable(device):
    # Rotations only: a chiral frame and its mirror image keep a positive RMSD, as Kabsch's reflection
    # correction says (without it, the SVD would superpose them exactly).
    X, _ = molecule_sets(22, 3, 1, seed=2)
    mirrored = X * torch.tensor([1.0, 1.0, -1.0], dtype=X.dtype)
    fused = pairwise_rmsd(X.to(device), mirrored.to(device), backend="fused").cpu()
    assert fused.diagonal().min() > 0.1
    torch.testing.assert_close(fused, pairwise_rmsd_reference(X, mirrored), rtol=1e-10, atol=1e-12)


def test_non_contiguous_inputs(device):
    X, Y = molecule_sets(22, 8, 20, seed=4)
    X_strided = X.to(device).transpose(0, 1).contiguous().transpose(0, 1)  # (N, A, 3) view with frame stride 3
    wide = torch.zeros(20, 22, 6, dtype=Y.dtype, device=device)
    wide[..., ::2] = Y.to(device)
    Y_strided = wide[..., ::2]  # every other entry of a wider tensor
    assert not X_strided.is_contiguous() and not Y_strided.is_contiguous()
    fused = pairwise_rmsd(X_strided, Y_strided, backend="fused").cpu()
    torch.testing.assert_close(fused, pairwise_rmsd_reference(X, Y), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("n", "m"), [(1, 1), (1, 37), (37, 1), (70, 1000)])
def test_rmsd_min_equals_minima_of_pairwise(device, dtype, n, m):
    # 70 x 1000 at 22 atoms spans several row groups and Y tiles of the CPU kernel (minima merged across tasks).
    X, Y = (t.to(device, dtype) for t in molecule_sets(22, n, m, seed=n + m, noise=0.2))
    full = pairwise_rmsd(X, Y, backend="fused")
    result = rmsd_min(X, Y, backend="fused")
    assert isinstance(result, RMSDMinima)
    assert result.row_argmin.dtype == torch.long and result.col_argmin.dtype == torch.long
    # The same values bit for bit, and indices pointing to entries that achieve them.
    assert torch.equal(result.row_min, full.min(dim=1).values)
    assert torch.equal(result.col_min, full.min(dim=0).values)
    assert torch.equal(full.gather(1, result.row_argmin[:, None])[:, 0], result.row_min)
    assert torch.equal(full.gather(0, result.col_argmin[None, :])[0], result.col_min)
    expected = rmsd_min_reference(X.double().cpu(), Y.double().cpu())
    tol = dict(rtol=1e-10, atol=1e-12) if dtype == torch.float64 else dict(rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(result.row_min.double().cpu(), expected.row_min, **tol)
    torch.testing.assert_close(result.col_min.double().cpu(), expected.col_min, **tol)


def test_rmsd_min_ties_go_to_the_smallest_index(device):
    X, Y = molecule_sets(22, 5, 6, seed=7)
    # Y[4] repeats Y[1], and X[3] repeats X[0]: every lane computes its pair alone, so the copies tie exactly.
    Y = torch.cat([Y[:4], Y[1:2], Y[4:]])
    X = torch.cat([X[:3], X[0:1], X[3:]])
    Y[1] = Y[4] = X[2]  # X[2]'s nearest: Y[1] and Y[4], both at distance 0
    result = rmsd_min(X.to(device), Y.to(device), backend="fused")
    assert result.row_argmin[2] == 1
    full = pairwise_rmsd(X.to(device), Y.to(device), backend="fused")
    first = (full == full.min(dim=0, keepdim=True).values).int().argmax(dim=0)
    assert torch.equal(result.col_argmin, first)
    assert result.col_argmin[0] != 3  # X[3] duplicates X[0]: never preferred


def test_eager_backend_agrees(device):
    X, Y = molecule_sets(22, 6, 9, seed=8)
    X, Y = X.to(device), Y.to(device)
    torch.testing.assert_close(pairwise_rmsd(X, Y, backend="eager"), pairwise_rmsd(X, Y, backend="fused"))
    for a, b in zip(rmsd_min(X, Y, backend="eager"), rmsd_min(X, Y, backend="fused"), strict=True):
        torch.testing.assert_close(a, b)


def test_not_differentiable():
    X, Y = molecule_sets(5, 2, 3)
    X.requires_grad_()
    assert not pairwise_rmsd(X, Y).requires_grad
    assert not rmsd_min(X, Y).row_min.requires_grad


def test_baseline_isa_kernel_agrees():
    # The wheel also runs on CPUs without AVX2: the baseline code path, forced here in a fresh process.
    from bfr_fast import _C

    X, Y = molecule_sets(22, 5, 19, seed=9)
    script = (
        "import sys, torch; from bfr_fast import _C; from bfr_fast.ops import pairwise_rmsd, rmsd_min; "
        "X, Y = torch.load(sys.argv[1]); "
        "torch.save([_C.cpu_rmsd_isa(), pairwise_rmsd(X, Y, backend='fused'), *rmsd_min(X, Y, backend='fused')], "
        "sys.argv[1])"
    )
    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"bfr_fast_rmsd_{os.getpid()}.pt"
    torch.save((X, Y), path)
    try:
        env = {**os.environ, "BFR_FAST_CPU_BASELINE": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
        # cwd elsewhere: `python -c` puts the cwd first on sys.path, where a source checkout has no _C.
        subprocess.run([sys.executable, "-c", script, str(path)], env=env, check=True, timeout=120, cwd=path.parent)
        isa, baseline, *baseline_min = torch.load(path)
    finally:
        path.unlink(missing_ok=True)
    assert isa == "baseline"  # the switch took the other code path
    torch.testing.assert_close(baseline, pairwise_rmsd(X, Y, backend="fused"), rtol=1e-12, atol=1e-14)
    for a, b in zip(baseline_min, rmsd_min(X, Y, backend="fused"), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
    if _C.cpu_rmsd_isa() == "baseline":
        pytest.skip("this CPU has no AVX2 + FMA: the default code path is the baseline one too; nothing compared")


def test_opcheck(device):
    X, Y = (t.float().to(device) for t in molecule_sets(5, 3, 4))
    torch.library.opcheck(torch.ops.bfr_fast.pairwise_rmsd.default, (X, Y))
    torch.library.opcheck(torch.ops.bfr_fast.rmsd_min.default, (X, Y))


def test_torch_compile_fullgraph():
    X, Y = (t.float() for t in molecule_sets(22, 4, 9))

    def coverage_and_amr(X, Y, threshold, backend="fused"):
        minima = rmsd_min(X, Y, backend=backend)
        return (
            (minima.col_min < threshold).float().mean(),
            minima.col_min.mean(),
            pairwise_rmsd(X, Y, backend=backend).max(),
        )

    compiled, ops = compile_recording_ops(coverage_and_amr, "aot_eager")
    for a, b in zip(compiled(X, Y, 0.3), coverage_and_amr(X, Y, 0.3, backend="eager"), strict=True):
        torch.testing.assert_close(a, b)
    assert {"bfr_fast.rmsd_min", "bfr_fast.pairwise_rmsd"} <= set(ops), ops


def test_torch_compile_still_rejects_nan():
    X, Y = torch.randn(2, 4, 3), torch.randn(3, 4, 3)
    X[1, 2, 0] = float("nan")
    compiled = torch.compile(lambda X, Y: pairwise_rmsd(X, Y, backend="fused"), fullgraph=True, backend="aot_eager")
    with pytest.raises(ValueError, match="X must be finite, but frame 1"):
        compiled(X, Y)


@pytest.mark.parametrize("backend", ["fused", "eager"])
@pytest.mark.parametrize(
    ("X", "Y", "message"),
    [
        (torch.zeros(2, 4), torch.zeros(3, 4, 3), "X must be 3-D"),
        (torch.zeros(2, 4, 3), torch.zeros(3, 4, 2), r"Y must be \(frames, atoms, 3\)"),
        (torch.zeros(2, 4, 3), torch.zeros(3, 5, 3), "Y must have X's atom count 4, got 5"),
        (torch.zeros(0, 4, 3), torch.zeros(3, 4, 3), "X must hold at least one frame of at least one atom"),
        (torch.zeros(2, 0, 3), torch.zeros(3, 0, 3), "X must hold at least one frame of at least one atom"),
        (torch.zeros(2, 4, 3), torch.zeros(3, 4, 3, dtype=torch.float64), "Y must have X's dtype torch.float32"),
        (torch.zeros(2, 4, 3, dtype=torch.float16), torch.zeros(3, 4, 3), "X must have dtype in"),
        (torch.zeros(2, 4, 3, dtype=torch.long), torch.zeros(3, 4, 3), "X must have dtype in"),
        (torch.zeros(2, 4, 3), torch.zeros(3, 4, 3, device="meta"), "Y must be on X's device cpu"),
        (torch.zeros(2, 4, 3), torch.full((3, 4, 3), float("inf")), "Y must be finite"),
        (torch.full((2, 4, 3), float("nan")), torch.zeros(3, 4, 3), "X must be finite"),
        ([[[0.0, 0.0, 0.0]]], torch.zeros(3, 1, 3), "X must be a torch.Tensor"),
    ],
)
def test_bad_arguments_raise_value_error(backend, X, Y, message):
    for op in (pairwise_rmsd, rmsd_min):
        with pytest.raises(ValueError, match=message):
            op(X, Y, backend=backend)


def test_unknown_backend():
    with pytest.raises(ValueError, match="backend must be one of"):
        pairwise_rmsd(torch.zeros(1, 2, 3), torch.zeros(1, 2, 3), backend="cuda")
