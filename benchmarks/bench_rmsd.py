"""pairwise_rmsd and rmsd_min: fused QCP vs eager Kabsch (SVD) vs torch.compile vs mdtraj.rmsd.

mdtraj runs on the CPU whatever the device: precentered frames, ``mdtraj.rmsd`` looping over the reference (Y)
frames, all N x M pairs. Work is the number of RMSDs per call.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from benchmarks.harness import Case
from bfr_fast.ops import pairwise_rmsd, rmsd_min
from bfr_fast.ops.reference import pairwise_rmsd_reference, rmsd_min_reference


def molecule_frames(atoms: int, n: int, seed: int) -> torch.Tensor:
    """(n, atoms, 3) float32 frames in nm: one random-walk chain (0.15 nm bonds), 0.05 nm noise, random rigid moves."""
    gen = torch.Generator().manual_seed(seed)
    steps = torch.randn(atoms, 3, generator=gen)
    chain = torch.cumsum(0.15 * steps / steps.norm(dim=1, keepdim=True), dim=0)
    frames = chain + 0.05 * torch.randn(n, atoms, 3, generator=gen)
    q, _ = torch.linalg.qr(torch.randn(n, 3, 3, generator=gen))
    rotations = q * torch.sign(torch.linalg.det(q))[:, None, None]  # proper rotations
    return frames @ rotations.transpose(1, 2) + torch.randn(n, 1, 3, generator=gen)


def _mdtraj_variants(X: torch.Tensor, Y: torch.Tensor) -> dict[str, Callable[[], object]]:
    """mdtraj.rmsd over all pairs (precentered), or nothing where mdtraj is not installed."""
    try:
        import mdtraj
    except ImportError:
        return {}
    topology = mdtraj.Topology()
    residue = topology.add_residue("MOL", topology.add_chain())
    for _ in range(X.shape[1]):
        topology.add_atom("C", mdtraj.element.carbon, residue)
    tx = mdtraj.Trajectory(X.cpu().numpy(), topology)
    ty = mdtraj.Trajectory(Y.cpu().numpy(), topology)
    tx.center_coordinates()
    ty.center_coordinates()
    return {"mdtraj": lambda: [mdtraj.rmsd(tx, ty, j, precentered=True) for j in range(ty.n_frames)]}


def _pairwise_case(device: torch.device, atoms: int, n: int, with_eager: bool) -> Case:
    X = molecule_frames(atoms, n, seed=0).to(device)
    Y = molecule_frames(atoms, n, seed=1).to(device)
    fns: dict[str, Callable[[], object]] = {"fused": lambda: pairwise_rmsd(X, Y, backend="fused")}
    notes = []
    if with_eager:
        compiled = torch.compile(pairwise_rmsd_reference)
        fns["eager"] = lambda: pairwise_rmsd_reference(X, Y)
        fns["compile"] = lambda: compiled(X, Y)
    else:
        notes.append("eager and compile omitted: their N x M x 3 x 3 float64 intermediates do not fit at this size")
    fns.update(_mdtraj_variants(X, Y))
    return Case("pairwise_rmsd", f"{atoms} atoms, {n} x {n} float32", fns, float(n * n), "RMSD/s", notes)


def _min_case(device: torch.device, atoms: int, n: int) -> Case:
    X = molecule_frames(atoms, n, seed=2).to(device)
    Y = molecule_frames(atoms, n, seed=3).to(device)
    compiled = torch.compile(rmsd_min_reference)
    fns: dict[str, Callable[[], object]] = {
        "fused": lambda: rmsd_min(X, Y, backend="fused"),
        "eager": lambda: rmsd_min_reference(X, Y),
        "compile": lambda: compiled(X, Y),
    }
    mdtraj_all = _mdtraj_variants(X, Y).get("mdtraj")
    if mdtraj_all is not None:
        import numpy as np

        def mdtraj_min() -> object:
            d = np.stack(mdtraj_all(), axis=1)
            return d.min(axis=1), d.argmin(axis=1), d.min(axis=0), d.argmin(axis=0)

        fns["mdtraj"] = mdtraj_min
    return Case("rmsd_min", f"{atoms} atoms, {n} x {n} float32", fns, float(n * n), "RMSD/s")


def cases(device: torch.device, quick: bool) -> list[Case]:
    """22 atoms (alanine dipeptide's size) at 2000 x 2000, 175 atoms at 1000 x 1000, and rmsd_min at 2000 x 2000
    (quick: 300, 150 and 300); on a GPU also 22 atoms at 20000 x 20000, fused and mdtraj-free."""
    small, large, minimum = (300, 150, 300) if quick else (2000, 1000, 2000)
    result = [
        _pairwise_case(device, 22, small, with_eager=True),
        _pairwise_case(device, 175, large, with_eager=True),
        _min_case(device, 22, minimum),
    ]
    if device.type == "cuda" and not quick:
        big = _pairwise_case(device, 22, 20000, with_eager=False)
        big.fns.pop("mdtraj", None)
        big.notes.append("mdtraj omitted: 4e8 pairs take it minutes")
        result.append(big)
    return result
