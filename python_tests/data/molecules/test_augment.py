"""Random rotations: proper rotations, reproducible from a generator, and uniform (Haar) on SO(3)."""

from __future__ import annotations

import pytest
import torch

from bfr_fast.data.molecules import random_rotation, random_rotation_matrices


def test_orthogonal_with_determinant_one():
    r = random_rotation_matrices(1000, torch.Generator().manual_seed(0), dtype=torch.float64)
    eye = torch.eye(3, dtype=torch.float64).expand(1000, 3, 3)
    torch.testing.assert_close(r @ r.transpose(1, 2), eye, atol=1e-12, rtol=0)
    torch.testing.assert_close(torch.linalg.det(r), torch.ones(1000, dtype=torch.float64), atol=1e-12, rtol=0)


def test_uniform_moments():
    # Haar measure on SO(3): E[R] = 0 and E[tr(R)^2] = 1 (the rotation representation is irreducible), so a
    # rotated fixed vector is uniform on the sphere: mean 0, second moment I/3.
    n = 40_000
    r = random_rotation_matrices(n, torch.Generator().manual_seed(1), dtype=torch.float64)
    trace = r.diagonal(dim1=1, dim2=2).sum(dim=1)
    assert float(r.mean(dim=0).abs().max()) < 0.02
    assert abs(float(trace.mean())) < 0.03 and abs(float(trace.square().mean()) - 1.0) < 0.05
    v = r[:, :, 0]  # R e_x
    torch.testing.assert_close(v.T @ v / n, torch.eye(3, dtype=torch.float64) / 3, atol=0.01, rtol=0)
    # the rotation angle has density (1 - cos θ)/π on [0, π]: E[cos θ] = -1/2, i.e. E[tr R] = 1 + 2 E[cos θ] = 0
    # and P(θ < π/2) = (π/2 - 1)/π
    cos_angle = ((trace - 1) / 2).clamp(-1, 1)
    assert abs(float((cos_angle > 0).double().mean()) - (torch.pi / 2 - 1) / torch.pi) < 0.01


def test_rotation_keeps_shape_and_distances_reproducibly():
    x = torch.randn(64, 22, 3)
    x = x - x.mean(dim=1, keepdim=True)
    a = random_rotation(x, torch.Generator().manual_seed(5))
    b = random_rotation(x, torch.Generator().manual_seed(5))
    c = random_rotation(x, torch.Generator().manual_seed(6))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.allclose(a, c)
    assert a.shape == x.shape and a.dtype == x.dtype
    torch.testing.assert_close(torch.cdist(a, a), torch.cdist(x, x), atol=1e-5, rtol=0)
    torch.testing.assert_close(a.mean(dim=1), torch.zeros(64, 3), atol=1e-6, rtol=0)  # about the centre
    assert not torch.allclose(a, x, atol=1e-2)


def test_errors():
    with pytest.raises(ValueError, match="x"):
        random_rotation(torch.zeros(2, 5, 2))
    with pytest.raises(ValueError, match="x"):
        random_rotation(torch.zeros(2, 5, 3, dtype=torch.int64))
    with pytest.raises(ValueError, match="count"):
        random_rotation_matrices(-1)
    with pytest.raises(ValueError, match="dtype"):
        random_rotation_matrices(2, dtype=torch.int32)
