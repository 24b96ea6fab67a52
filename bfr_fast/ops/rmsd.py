r"""Pairwise RMSD after optimal rigid superposition, and nearest neighbours under it, by Theobald's QCP method.

For centred conformations :math:`x, y \in \mathbb{R}^{A \times 3}`,
:math:`\mathrm{RMSD}(x, y) = \min_{R \in SO(3)} \sqrt{\tfrac{1}{A} \sum_a \|x_a - R y_a\|^2}`: rotations and
translations, no reflections. QCP (Theobald 2005; Liu, Agrafiotis & Theobald 2010) gets the minimum from the
3x3 inner-product matrix :math:`S = x^\top y` and :math:`G = \|x\|^2 + \|y\|^2`: the optimum
:math:`\lambda_{\max}` of :math:`\sum_a x_a \cdot R y_a` is the largest root of the characteristic quartic of
Horn's 4x4 key matrix, found by Newton's method in float64, and
:math:`\mathrm{RMSD}^2 = (G - 2\lambda_{\max}) / A`. The fused kernels compute all of it per pair without
materialising anything per pair; :func:`rmsd_min` reduces tile by tile, so :math:`10^5 \times 10^5` pairs need
only :math:`O(N + M)` memory.

Accuracy. The error of QCP is an error in RMSD^2 at the scale of :math:`G/A` (the squared RMS radius), which
matters near zero. CPU (both dtypes) and CUDA float64 accumulate :math:`S` and :math:`G` in float64: identical or
rigidly moved copies of a frame give an RMSD below ~1e-7 times its RMS radius (tested: < 2e-7 nm on 0.2-0.5 nm
molecules, where that is the true RMSD of the float32-rounded copies), and well-conditioned pairs agree with
Kabsch's SVD to ~1e-12 relative before the final rounding to ``X.dtype``. CUDA float32 accumulates the inner
products in float32 (the GPU's fast path) with :math:`G` summed the same way, so identical frames still give ~0,
but rigidly moved copies can read up to ~sqrt(eps_32) ~ 3e-4 times the RMS radius (~1e-4 nm for a small
molecule); RMSDs above ~0.05 nm agree with float64 to ~1e-6 nm. Degenerate frames (2 atoms, or all atoms on a
line) make the largest root double: Newton converges linearly there and the root is determined to ~2e-8
relative (tested up to 5e-8), so RMSD^2 carries an absolute error up to ~5e-8 G/A; the iteration is guarded so
that rounding near such roots never throws it off (see ``csrc/common/qcp.h``).
"""

from __future__ import annotations

import torch

from bfr_fast.ops._checks import check_finite, check_tensor
from bfr_fast.ops._extension import fused_available, use_fused
from bfr_fast.ops.reference import RMSDMinima, pairwise_rmsd_reference, rmsd_min_reference

RMSD_DTYPES: tuple[torch.dtype, ...] = (torch.float32, torch.float64)


def _check_frames(op: str, X: object, Y: object) -> tuple[torch.Tensor, torch.Tensor]:
    """Validates two sets of frames and returns them detached (the ops are not differentiable)."""
    X = check_tensor(op, "X", X, ndim=3, dtypes=RMSD_DTYPES)
    Y = check_tensor(op, "Y", Y, ndim=3, dtypes=RMSD_DTYPES)
    for name, t in (("X", X), ("Y", Y)):
        if t.shape[2] != 3:
            raise ValueError(f"{op}: {name} must be (frames, atoms, 3), got shape {tuple(t.shape)}")
        if t.shape[0] == 0 or t.shape[1] == 0:
            raise ValueError(
                f"{op}: {name} must hold at least one frame of at least one atom, got shape {tuple(t.shape)}"
            )
    if Y.shape[1] != X.shape[1]:
        raise ValueError(f"{op}: Y must have X's atom count {X.shape[1]}, got {Y.shape[1]} atoms")
    if Y.dtype != X.dtype:
        raise ValueError(f"{op}: Y must have X's dtype {X.dtype}, got {Y.dtype}")
    if Y.device != X.device:
        raise ValueError(f"{op}: Y must be on X's device {X.device}, got {Y.device}")
    return X.detach(), Y.detach()


def _check_finite_eager(op: str, X: torch.Tensor, Y: torch.Tensor) -> None:
    """The eager path's NaN check (the fused kernels check while centring: free on the CPU, one sync on CUDA).

    Under torch.compile it is skipped: it needs a host synchronisation that would break the graph.
    """
    if not torch.compiler.is_compiling():
        check_finite(op, "X", X)
        check_finite(op, "Y", Y)


def pairwise_rmsd(X: torch.Tensor, Y: torch.Tensor, backend: str = "auto") -> torch.Tensor:
    r"""RMSD after optimal rigid superposition (rotation + translation) of every pair of frames.

    Args:
        X: ``(N, A, 3)`` float32 or float64 coordinates (any units; the result is in the same units).
        Y: ``(M, A, 3)`` coordinates with ``X``'s atom count, dtype and device.
        backend: ``"auto"`` (fused kernel where built), ``"fused"`` or ``"eager"`` (Kabsch by SVD).

    Returns:
        ``(N, M)`` tensor in ``X.dtype``: entry ``(i, j)`` is
        :math:`\min_{R \in SO(3), t} \sqrt{\tfrac{1}{A}\sum_a \|X_{ia} - R Y_{ja} - t\|^2}`.

    NaN policy: non-finite coordinates are rejected up front with a ValueError naming the set: by the fused
    kernels while they centre the frames (naming the first bad frame too; also under torch.compile), and by an
    explicit check on the eager path (skipped there under torch.compile, where NaN then propagates).

    Autograd: not differentiable; the result never requires grad.

    Raises:
        ValueError: A bad argument (wrong rank, last dim not 3, empty set, atom counts, dtypes or devices that
            differ, non-finite coordinates); the message names it.
    """
    X, Y = _check_frames("pairwise_rmsd", X, Y)
    if not use_fused(backend, X.device, "pairwise_rmsd"):
        _check_finite_eager("pairwise_rmsd", X, Y)
        return pairwise_rmsd_reference(X, Y)
    return torch.ops.bfr_fast.pairwise_rmsd(X.contiguous(), Y.contiguous())


def rmsd_min(X: torch.Tensor, Y: torch.Tensor, backend: str = "auto") -> RMSDMinima:
    """For each X frame its nearest Y frame under RMSD, and for each Y frame its nearest X frame.

    Equal to the row and column minima of :func:`pairwise_rmsd` (the same values, bit for bit, on the same
    device), computed tile by tile without the ``N x M`` matrix: memory is ``O(N + M)``. Ties go to the smallest
    index. Coverage and AMR are reductions of these minima.

    Args:
        X: ``(N, A, 3)`` float32 or float64 coordinates.
        Y: ``(M, A, 3)`` coordinates with ``X``'s atom count, dtype and device.
        backend: ``"auto"`` (fused kernel where built), ``"fused"`` or ``"eager"`` (full matrix by SVD).

    Returns:
        :class:`RMSDMinima` ``(row_min, row_argmin, col_min, col_argmin)``: ``(N,)`` and ``(M,)`` minima in
        ``X.dtype`` and their int64 indices.

    NaN policy, autograd and errors: as :func:`pairwise_rmsd`.
    """
    X, Y = _check_frames("rmsd_min", X, Y)
    if not use_fused(backend, X.device, "rmsd_min"):
        _check_finite_eager("rmsd_min", X, Y)
        return rmsd_min_reference(X, Y)
    return RMSDMinima(*torch.ops.bfr_fast.rmsd_min(X.contiguous(), Y.contiguous()))


def _register_fakes() -> None:
    """Fake kernels, so that torch.compile traces through the ops."""

    @torch.library.register_fake("bfr_fast::pairwise_rmsd")
    def _(X, Y):
        return X.new_empty((X.shape[0], Y.shape[0]))

    @torch.library.register_fake("bfr_fast::rmsd_min")
    def _(X, Y):
        n, m = X.shape[0], Y.shape[0]
        return X.new_empty(n), X.new_empty(n, dtype=torch.long), X.new_empty(m), X.new_empty(m, dtype=torch.long)


if fused_available("cpu") or fused_available("cuda"):
    _register_fakes()
