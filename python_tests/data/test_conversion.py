import pytest
import torch

from bfr_fast.data import from_uint8, to_uint8


def _level(value: float) -> torch.Tensor:
    """The float32 image value whose exact pixel level is ``value``."""
    return torch.tensor([value / 127.5 - 1.0], dtype=torch.float32)


def test_endpoints_and_midpoint():
    assert to_uint8(torch.tensor([-1.0, 1.0])).tolist() == [0, 255]
    assert to_uint8(torch.tensor([0.0])).item() == 128  # level 127.5: halves round up


@pytest.mark.parametrize(("level", "pixel"), [(254.6, 255), (254.4, 254), (0.6, 1), (0.4, 0), (99.51, 100)])
def test_rounds_to_nearest_level_never_truncates(level, pixel):
    assert to_uint8(_level(level)).item() == pixel


def test_saturates_outside_range():
    assert to_uint8(torch.tensor([-3.0, -1.001, 1.001, 7.0])).tolist() == [0, 0, 255, 255]


def test_error_is_at_most_half_a_level():
    x = torch.rand(10_000, generator=torch.Generator().manual_seed(0)) * 2 - 1
    exact = (x.double() + 1) * 127.5
    assert (to_uint8(x).double() - exact).abs().max() <= 0.5 + 1e-4


def test_round_trip_every_pixel_value():
    pixels = torch.arange(256, dtype=torch.uint8)
    images = from_uint8(pixels)
    assert images.dtype == torch.float32 and images[0] == -1 and images[-1] == 1
    assert torch.equal(to_uint8(images), pixels)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_round_trip_low_and_high_precision(dtype):
    pixels = torch.arange(256, dtype=torch.uint8).reshape(1, 1, 16, 16)
    images = from_uint8(pixels, dtype)
    assert images.dtype == dtype and images.shape == pixels.shape
    # bfloat16 keeps 8 significant bits, so it cannot hold all 256 levels exactly; the rest must.
    tolerance = 1 if dtype == torch.bfloat16 else 0
    assert (to_uint8(images).int() - pixels.int()).abs().max() <= tolerance


def test_rejects_non_finite_and_non_float():
    with pytest.raises(ValueError, match="finite"):
        to_uint8(torch.tensor([0.0, float("nan")]))
    with pytest.raises(ValueError, match="images"):
        to_uint8(torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="pixels"):
        from_uint8(torch.tensor([0.5]))
    with pytest.raises(ValueError, match="dtype"):
        from_uint8(torch.tensor([1], dtype=torch.uint8), torch.int32)
