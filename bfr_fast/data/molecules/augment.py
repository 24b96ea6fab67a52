"""Random rotation augmentation for centred molecular conformations."""

from __future__ import annotations

import torch

from bfr_fast.checks import non_negative_int

__all__ = ["random_rotation", "random_rotation_matrices"]


def random_rotation_matrices(count: int, generator: torch.Generator | None = None,
                             dtype: torch.dtype = torch.float32,
                             device: torch.device | str | None = None) -> torch.Tensor:
    r"""``count`` independent rotation matrices drawn uniformly (Haar measure) from SO(3).

    A unit quaternion :math:`q = g/\|g\|` with :math:`g \sim \mathcal{N}(0, I_4)` is uniform on the 3-sphere, and
    the map :math:`q \mapsto R(q)` from unit quaternions to rotations pushes that uniform measure to the Haar
    measure on SO(3) (it is a 2-to-1 covering homomorphism). Every matrix is orthogonal with determinant +1.

    Args:
        count: number of matrices.
        generator: the random stream (on ``device``); ``None`` uses torch's global one.
        dtype: floating-point dtype of the result (drawn in float64 then cast).
        device: device of the result.

    Returns:
        ``(count, 3, 3)`` rotation matrices.

    Raises:
        ValueError: if ``count`` is negative or ``dtype`` is not floating point.
    """
    non_negative_int("count", count)
    if not dtype.is_floating_point:
        raise ValueError(f"dtype: expected a floating-point dtype, got {dtype}")
    q = torch.randn(count, 4, generator=generator, dtype=torch.float64, device=device)
    # A draw of norm ~0 has probability ~0; the clamp only keeps the division finite.
    w, x, y, z = (q / q.norm(dim=1, keepdim=True).clamp_min(1e-12)).unbind(dim=1)
    matrix = torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ], dim=1).reshape(count, 3, 3)
    return matrix.to(dtype)


def random_rotation(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    r"""Rotates each conformation by its own uniformly random rotation about the origin.

    :math:`x_i \leftarrow x_i R_i^\top` with :math:`R_i` from :func:`random_rotation_matrices`. Conformations
    should be centred first (:func:`~bfr_fast.data.molecules.remove_center_of_mass`), so that the rotation is
    about their centre of mass and adds no translation.

    Args:
        x: ``(N, atoms, 3)`` floating-point coordinates.
        generator: the random stream, on ``x``'s device; ``None`` uses torch's global one.

    Returns:
        The rotated ``(N, atoms, 3)`` coordinates, a new tensor of ``x``'s dtype and device.

    Raises:
        ValueError: if ``x`` is not a floating-point ``(N, atoms, 3)`` tensor.
    """
    if not isinstance(x, torch.Tensor) or x.dim() != 3 or x.shape[2] != 3 or not x.is_floating_point():
        raise ValueError("x: expected a floating-point tensor of shape (N, atoms, 3), got "
                         f"{getattr(x, 'shape', type(x).__name__)}")
    rotations = random_rotation_matrices(x.shape[0], generator, dtype=x.dtype, device=x.device)
    return torch.bmm(x, rotations.transpose(1, 2))
