r"""Couplings: how a minibatch of sources :math:`x_0` is paired with a minibatch of targets :math:`x_1`.

- :func:`independent_coupling` keeps the pairs as drawn: :math:`\pi = p_0 \otimes p_1` (I-CFM).
- :func:`ot_coupling` re-pairs them by exact minibatch optimal transport (OT-CFM): the permutation
  :math:`\sigma` minimising :math:`\sum_i \lVert x_0^{\sigma(i)} - x_1^i \rVert^2`, solved by
  ``scipy.optimize.linear_sum_assignment``. With labels it solves one assignment per class, so that every source
  is paired with a target of its own class.

Both return ``(x0, x1, y)`` with row ``i`` a pair and ``y[i]`` its label; only the sources are reordered, so each
label stays with its target sample (and, within-class, with a source of that class).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment


def _check_batch(x0: torch.Tensor, x1: torch.Tensor, y: torch.Tensor | None) -> None:
    if not isinstance(x0, torch.Tensor) or not isinstance(x1, torch.Tensor):
        raise ValueError("x0 and x1 must be tensors")
    if x0.dim() < 1 or x0.shape != x1.shape or x0.device != x1.device:
        raise ValueError(
            f"x0 and x1 must be (B, ...) tensors of one shape and device, got {tuple(x0.shape)} on {x0.device} and "
            f"{tuple(x1.shape)} on {x1.device}"
        )
    if y is not None and (
        not isinstance(y, torch.Tensor) or y.shape != (x0.shape[0],) or y.is_floating_point() or y.is_complex()
    ):
        raise ValueError(f"y must be a ({x0.shape[0]},) integer tensor of labels, got {getattr(y, 'shape', y)!r}")


def independent_coupling(
    x0: torch.Tensor, x1: torch.Tensor, y: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The independent coupling: returns the pairs unchanged (the interface of :func:`ot_coupling`).

    Args:
        x0: ``(B, ...)`` sources.
        x1: ``(B, ...)`` targets, same shape and device.
        y: Optional ``(B,)`` integer labels.

    Returns:
        ``(x0, x1, y)`` as given.
    """
    _check_batch(x0, x1, y)
    return x0, x1, y


def ot_coupling(
    x0: torch.Tensor, x1: torch.Tensor, y: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    r"""Exact minibatch OT pairing under the squared Euclidean cost, per class when labels are given.

    Solves :math:`\min_\sigma \sum_i \lVert x_0^{\sigma(i)} - x_1^i \rVert^2` over permutations :math:`\sigma` (of
    the whole batch, or of each class's rows when ``y`` is given, which then labels both ``x0[i]`` and ``x1[i]``:
    e.g. class-conditional generations paired with real images of the same classes, or noise with labelled data).
    The cost matrix is computed on ``x0``'s device; the assignment runs on the host (one transfer of ``B × B``
    floats), :math:`O(B^3)` per batch (per class when labelled), small beside a network step at the usual B ≤ 256.

    Args:
        x0: ``(B, ...)`` sources; these are reordered.
        x1: ``(B, ...)`` targets, same shape and device; kept in place.
        y: Optional ``(B,)`` integer labels of the pairs; kept in place, so ``y[i]`` still labels ``x1[i]``, and
            ``x0[i]`` comes from a row of the same class.

    Returns:
        ``(x0[perm], x1, y)`` with ``perm`` the optimal (per-class) permutation.

    Raises:
        ValueError: Mismatched shapes or devices, or labels that are not a ``(B,)`` integer tensor.
    """
    _check_batch(x0, x1, y)
    sources = x0.reshape(x0.shape[0], -1).float()
    targets = x1.reshape(x1.shape[0], -1).float()
    cost = torch.cdist(sources, targets).square().cpu().numpy()
    if y is None:
        groups = [np.arange(x0.shape[0])]
    else:
        labels = y.cpu().numpy()
        groups = [np.flatnonzero(labels == label) for label in np.unique(labels)]
    perm = np.arange(x0.shape[0])
    for rows in groups:
        source_idx, target_idx = linear_sum_assignment(cost[np.ix_(rows, rows)])
        perm[rows[target_idx]] = rows[source_idx]
    return x0[torch.from_numpy(perm).to(x0.device)], x1, y
