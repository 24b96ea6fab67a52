"""LinearPath: the interpolation and target velocity, end points, path noise, dtypes and argument errors."""

from __future__ import annotations

import pytest
import torch

from bfr_fast.paths import LinearPath


def batch(dtype=torch.float32, shape=(4, 3, 2, 2)):
    generator = torch.Generator().manual_seed(0)
    return torch.randn(shape, generator=generator).to(dtype), torch.randn(shape, generator=generator).to(dtype)


def test_point_and_velocity_follow_the_formula():
    x0, x1 = batch()
    t = torch.tensor([0.0, 0.25, 0.5, 1.0])
    x_t, u = LinearPath().sample(x0, x1, t)
    torch.testing.assert_close(x_t, (1 - t.view(-1, 1, 1, 1)) * x0 + t.view(-1, 1, 1, 1) * x1)
    torch.testing.assert_close(u, x1 - x0)
    torch.testing.assert_close(x_t[0], x0[0])
    torch.testing.assert_close(x_t[3], x1[3])


def test_velocity_is_the_time_derivative_of_the_point():
    x0, x1 = batch(torch.float64)
    t = torch.rand(4, dtype=torch.float64)
    h = 1e-6
    path = LinearPath()
    derivative = (path.sample(x0, x1, t + h)[0] - path.sample(x0, x1, t - h)[0]) / (2 * h)
    torch.testing.assert_close(derivative, path.sample(x0, x1, t)[1])


def test_path_noise_has_std_sigma_and_leaves_the_velocity():
    x0, x1 = batch(shape=(64, 1000))
    t = torch.rand(64)
    clean, u_clean = LinearPath().sample(x0, x1, t)
    noisy, u = LinearPath(sigma=0.1).sample(x0, x1, t, generator=torch.Generator().manual_seed(1))
    assert (noisy - clean).std().item() == pytest.approx(0.1, rel=0.02)
    torch.testing.assert_close(u, u_clean)
    again, _ = LinearPath(sigma=0.1).sample(x0, x1, t, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(noisy, again, rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float64])
def test_dtype_is_kept_and_time_is_not_rounded_to_it(dtype):
    x0, x1 = batch(dtype)
    t = torch.full((4,), 0.3, dtype=torch.float64 if dtype == torch.float64 else torch.float32)
    x_t, u = LinearPath().sample(x0, x1, t)
    assert x_t.dtype == dtype and u.dtype == dtype
    exact = (0.7 * x0.double() + 0.3 * x1.double()).to(dtype)  # t=0.3 is not a bf16 number; it must not become one
    tolerance = 1e-12 if dtype == torch.float64 else 0.0  # one rounding to bf16/fp16, from float32 arithmetic
    torch.testing.assert_close(x_t, exact, rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize(
    ("x1_shape", "t", "match"),
    [
        ((4, 3, 2, 2), torch.rand(3), r"\(4,\) float tensor"),
        ((4, 3, 2, 2), torch.rand(4, 1), r"\(4,\) float tensor"),
        ((4, 3, 2, 2), torch.ones(4, dtype=torch.int64), r"\(4,\) float tensor"),
        ((4, 3, 2, 2), 0.5, r"\(4,\) float tensor"),
        ((4, 3, 2, 1), torch.rand(4), "one shape"),
    ],
)
def test_bad_arguments(x1_shape, t, match):
    x0 = torch.zeros(4, 3, 2, 2)
    with pytest.raises(ValueError, match=match):
        LinearPath().sample(x0, torch.zeros(x1_shape), t)


@pytest.mark.parametrize("sigma", [-0.1, float("inf"), "0.1"])
def test_bad_sigma(sigma):
    with pytest.raises(ValueError, match="sigma"):
        LinearPath(sigma)
