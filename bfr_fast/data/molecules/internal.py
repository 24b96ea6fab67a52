r"""Internal coordinates (a Z-matrix) of one molecule: bond lengths, bond angles and torsions, and back.

A conformer of :math:`n` bonded atoms has :math:`3n - 6` internal degrees of freedom. The Z-matrix places the
atoms one after another in a breadth-first order of the bond graph: atom :math:`i` (from the fourth on) is fixed
by three atoms placed before it, :math:`j` (bonded to :math:`i`), :math:`k` and :math:`l`, through

.. math::

    r_i = |x_i - x_j|, \qquad \theta_i = \angle(x_i, x_j, x_k), \qquad
    \varphi_i = \operatorname{dihedral}(x_l, x_k, x_j, x_i),

the second atom by its bond to the first, the third by a bond and an angle; the first sits at the origin, the
second on the x axis and the third in the xy plane (:func:`to_cartesian`, the NeRF construction). The map is
invariant to rigid motions, so a conformer and its rotated copies share one code.

Why a generator might want it: in Cartesian coordinates a bond is the small difference of two coordinates that
each spread over several Å across an ensemble, so a network must be accurate to a few pm in every coordinate
to produce a valid bond; here each bond length is its own feature, standardised by its own pm-sized spread.
The price is leverage: an error in a backbone torsion moves everything placed after it.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import mdtraj
import numpy as np
import torch

__all__ = ["InternalCoordinates", "ZMatrix", "to_cartesian", "to_internal", "zmatrix"]


@dataclass(frozen=True)
class ZMatrix:
    """Placement order and reference atoms of a molecule's internal coordinates.

    Attributes:
        order: ``(n,)`` atom indices in placement order (a breadth-first order of the bond graph, heavy atoms
            before hydrogens among the neighbours of an atom).
        references: ``(n, 3)`` for the atom placed at each position, its atoms ``(j, k, l)`` (atom indices): the
            bond partner, the angle's third atom and the torsion's fourth. ``-1`` where unused (``j, k, l`` of the
            first atom, ``k, l`` of the second, ``l`` of the third).
    """

    order: np.ndarray
    references: np.ndarray

    @property
    def n_atoms(self) -> int:
        """Number of atoms."""
        return int(self.order.size)

    @property
    def dim(self) -> int:
        """Number of internal coordinates, ``3 n - 6``: ``n - 1`` bonds, ``n - 2`` angles, ``n - 3`` torsions."""
        return 3 * self.n_atoms - 6


def zmatrix(topology: mdtraj.Topology) -> ZMatrix:
    """The Z-matrix of a molecule from its bond graph.

    Breadth-first from the first heavy atom (the N terminus of a peptide in residue order), neighbours taken
    heavy atoms first, then by index. Atom ``i`` with parent ``j`` takes ``k`` = the parent of ``j`` (or, when
    ``j`` is the root, the second placed atom) and ``l`` = the parent of ``k`` (or another placed neighbour of
    ``k``, else of ``j``): chains of bonds where they exist, so that every torsion is a proper one except near the
    root. Siblings (the hydrogens of a methyl) share ``(j, k, l)``.

    Args:
        topology: the molecule, with its bonds (a PDB's CONECT/standard-residue bonds as mdtraj reads them).

    Returns:
        The Z-matrix.

    Raises:
        ValueError: fewer than 3 atoms, or atoms not all connected by bonds into one molecule.
    """
    n = topology.n_atoms
    if n < 3:
        raise ValueError(f"topology: internal coordinates need at least 3 atoms, got {n}")
    neighbours: list[set[int]] = [set() for _ in range(n)]
    for a, b in topology.bonds:
        neighbours[a.index].add(b.index)
        neighbours[b.index].add(a.index)
    heavy = np.array([atom.element is None or atom.element.symbol != "H" for atom in topology.atoms])
    root = int(np.flatnonzero(heavy)[0]) if heavy.any() else 0
    parent = np.full(n, -1, dtype=np.int64)
    order = [root]
    seen = {root}
    queue = deque([root])
    while queue:
        atom = queue.popleft()
        for other in sorted(neighbours[atom], key=lambda m: (not heavy[m], m)):
            if other not in seen:
                seen.add(other)
                parent[other] = atom
                order.append(other)
                queue.append(other)
    if len(order) != n:
        raise ValueError(f"topology: internal coordinates need one molecule connected by bonds; {n - len(order)} "
                         f"of {n} atoms are not bonded to atom {root} ({topology.atom(root)}) through the others "
                         "(a selection that cuts the chain, or a file without bonds); use Cartesian coordinates")
    position = np.empty(n, dtype=np.int64)
    position[order] = np.arange(n)
    references = np.full((n, 3), -1, dtype=np.int64)

    def placed_neighbour(of: int, before: int, exclude: tuple[int, ...]) -> int:
        candidates = [m for m in neighbours[of] if position[m] < before and m not in exclude]
        return min(candidates, key=lambda m: position[m]) if candidates else -1

    for p, atom in enumerate(order[1:], start=1):
        j = int(parent[atom])
        if p == 1:
            references[p] = (j, -1, -1)
            continue
        k = int(parent[j]) if j != root else order[1] if order[1] != atom else -1
        if p == 2:
            references[p] = (j, k if k != -1 else placed_neighbour(j, p, (atom,)), -1)
            continue
        l = int(parent[k]) if k != root and parent[k] != j else placed_neighbour(k, p, (j, atom))
        if l == -1:
            l = placed_neighbour(j, p, (k, atom))
        if l == -1:  # only atoms placed before, not bonded to k or j: the earliest one of the other placed atoms
            l = next(m for m in order[:p] if m not in (j, k))
        references[p] = (j, k, l)
    return ZMatrix(order=np.asarray(order, dtype=np.int64), references=references)


def _angle(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Angle at ``b`` between ``a - b`` and ``c - b``, radians, for ``(..., 3)`` points."""
    u, v = a - b, c - b
    return torch.atan2(torch.linalg.cross(u, v).norm(dim=-1), (u * v).sum(dim=-1))


def _dihedral(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """IUPAC dihedral of ``(..., 3)`` points ``a-b-c-d``, radians in (-pi, pi] (mdtraj's sign convention)."""
    b0, b1, b2 = a - b, c - b, d - c
    b1 = b1 / b1.norm(dim=-1, keepdim=True)
    v = b0 - (b0 * b1).sum(dim=-1, keepdim=True) * b1
    w = b2 - (b2 * b1).sum(dim=-1, keepdim=True) * b1
    return torch.atan2((torch.linalg.cross(b1, v) * w).sum(dim=-1), (v * w).sum(dim=-1))


def to_internal(x: torch.Tensor, z: ZMatrix) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Bond lengths, angles and torsions of ``(N, n, 3)`` conformers ``x``.

    Returns:
        ``(bonds (N, n-1), angles (N, n-2), torsions (N, n-3))``: those of the atoms at placement positions
        ``1.., 2.., 3..``, in ``x``'s length unit and radians (torsions in (-pi, pi]).
    """
    ref = torch.from_numpy(z.references).to(x.device)
    atoms = x[:, torch.from_numpy(z.order).to(x.device)]
    j, k, l = (x[:, ref[:, c].clamp_min(0)] for c in range(3))
    bonds = (atoms[:, 1:] - j[:, 1:]).norm(dim=-1)
    angles = _angle(atoms[:, 2:], j[:, 2:], k[:, 2:])
    torsions = _dihedral(l[:, 3:], k[:, 3:], j[:, 3:], atoms[:, 3:])
    return bonds, angles, torsions


def to_cartesian(bonds: torch.Tensor, angles: torch.Tensor, torsions: torch.Tensor, z: ZMatrix) -> torch.Tensor:
    """Conformers from internal coordinates (the inverse of :func:`to_internal` up to a rigid motion).

    The first placed atom at the origin, the second on +x, the third in the xy plane (y > 0); each further atom
    from its references by the NeRF construction: with :math:`\\hat b = (x_j - x_k)/|x_j - x_k|` and
    :math:`\\hat n` the unit normal of the plane ``l, k, j``,
    :math:`x_i = x_j + r(-\\cos\\theta\\, \\hat b + \\sin\\theta\\cos\\varphi\\, (\\hat n \\times \\hat b)
    + \\sin\\theta \\sin\\varphi\\, \\hat n)`.

    Args:
        bonds: ``(N, n-1)``; angles: ``(N, n-2)``; torsions: ``(N, n-3)``, as :func:`to_internal` returns them.
        z: the Z-matrix they were taken with.

    Returns:
        ``(N, n, 3)`` conformers, atoms in topology order, of the inputs' dtype and device.
    """
    count, n = bonds.shape[0], z.n_atoms
    x = bonds.new_zeros(count, n, 3)
    ref, order = z.references, z.order
    x[:, order[1], 0] = bonds[:, 0]
    j, k = ref[2, 0], ref[2, 1]
    along = -1.0 if j == order[0] else 1.0  # x of the unit vector from x_k to x_j: -1 when j is the root
    theta = angles[:, 0]
    x[:, order[2], 0] = x[:, j, 0] - along * bonds[:, 1] * torch.cos(theta)
    x[:, order[2], 1] = bonds[:, 1] * torch.sin(theta)
    for p in range(3, n):
        j, k, l = ref[p]
        b = x[:, j] - x[:, k]
        b = b / b.norm(dim=-1, keepdim=True)
        normal = torch.linalg.cross(x[:, k] - x[:, l], b)
        normal = normal / normal.norm(dim=-1, keepdim=True)
        m = torch.linalg.cross(normal, b)
        r, theta, phi = bonds[:, p - 1, None], angles[:, p - 2, None], torsions[:, p - 3, None]
        x[:, order[p]] = x[:, j] + r * (-torch.cos(theta) * b + torch.sin(theta) * (torch.cos(phi) * m
                                                                                   + torch.sin(phi) * normal))
    return x


def _wrap(angle: torch.Tensor) -> torch.Tensor:
    """Angles mapped into [-pi, pi)."""
    return torch.remainder(angle + math.pi, 2 * math.pi) - math.pi


@dataclass(frozen=True)
class InternalCoordinates:
    r"""Standardised internal coordinates of conformers: the coordinates a molecule flow can be trained on.

    ``encode`` maps ``(N, atoms, 3)`` conformers to ``(N, 3 atoms - 6)`` vectors: bond lengths, bond angles and
    torsions (:func:`to_internal`), each torsion first turned by its circular training mean
    :math:`\bar\varphi` and wrapped, :math:`\operatorname{wrap}(\varphi - \bar\varphi) \in [-\pi, \pi)`, so that a
    unimodal torsion is far from the cut; then every feature is standardised with its training mean and standard
    deviation. ``decode`` inverts it up to a rigid motion (every metric here is invariant to one). Interface of
    :class:`~bfr_fast.data.molecules.Standardizer`, which does the same for flat Cartesian coordinates.

    Attributes:
        z: the Z-matrix.
        mean: ``(D,)`` training mean of each feature (nm, radians).
        std: ``(D,)`` training standard deviation of each feature (positive).
        torsion_center: ``(n - 3,)`` circular training mean of each torsion, radians.
        atoms: Atoms per conformer.
    """

    z: ZMatrix
    mean: torch.Tensor
    std: torch.Tensor
    torsion_center: torch.Tensor
    atoms: int

    @classmethod
    def fit(cls, x: torch.Tensor, topology: mdtraj.Topology) -> InternalCoordinates:
        """The internal coordinates of ``topology`` standardised on ``(N, atoms, 3)`` training conformers ``x``.

        Raises:
            ValueError: ``x`` is not ``(N >= 2, atoms, 3)`` for this topology, the topology is not one bonded
                molecule of at least 3 atoms, or a feature does not vary over the frames.
        """
        if not isinstance(x, torch.Tensor) or x.dim() != 3 or x.shape[2] != 3 or x.shape[0] < 2 \
                or x.shape[1] != topology.n_atoms:
            raise ValueError(f"x: expected (N >= 2, {topology.n_atoms}, 3) conformers, "
                             f"got {tuple(getattr(x, 'shape', ()))}")
        z = zmatrix(topology)
        bonds, angles, torsions = to_internal(x.double(), z)
        center = torch.atan2(torch.sin(torsions).mean(dim=0), torch.cos(torsions).mean(dim=0))
        features = torch.cat([bonds, angles, _wrap(torsions - center)], dim=1)
        std = features.std(dim=0)
        if not bool((std > 0).all()):
            raise ValueError("x: some internal coordinate is constant over the frames; it cannot be standardised")
        return cls(z, features.mean(dim=0).float(), std.float(), center.float(), x.shape[1])

    @property
    def dim(self) -> int:
        """Features per conformer, ``3 atoms - 6``."""
        return self.z.dim

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, atoms, 3)`` conformers in nm to ``(N, 3 atoms - 6)`` standardised internal coordinates."""
        bonds, angles, torsions = to_internal(x.double(), self.z)
        center = self.torsion_center.to(x.device, torch.float64)
        features = torch.cat([bonds, angles, _wrap(torsions - center)], dim=1)
        return ((features - self.mean.to(x.device, torch.float64)) / self.std.to(x.device, torch.float64)).to(x.dtype)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """``(N, 3 atoms - 6)`` standardised internal coordinates back to ``(N, atoms, 3)`` conformers in nm,
        centred on their centroid (the first atom is not a meaningful origin)."""
        features = z.double() * self.std.to(z.device, torch.float64) + self.mean.to(z.device, torch.float64)
        n = self.atoms
        bonds, angles, torsions = features[:, :n - 1], features[:, n - 1:2 * n - 3], features[:, 2 * n - 3:]
        x = to_cartesian(bonds, angles, torsions + self.torsion_center.to(z.device, torch.float64), self.z)
        return (x - x.mean(dim=1, keepdim=True)).to(z.dtype)
