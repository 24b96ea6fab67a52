"""Tests of the spectral ops: frequency_filter, band_energy and fc_weighted_mse, fused against eager."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bfr_fast.ops import band_energy, fc_weighted_mse, frequency_filter
from bfr_fast.ops.reference import (
    band_energy_reference,
    fc_weighted_mse_reference,
    frequency_filter_reference,
)

from .conftest import DEVICES, TOLERANCES, compile_recording_ops

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
# Per-sample sums are float32 for every low-precision input (float64 for float64).
SUM_TOL = {"rtol": 2e-5, "atol": 1e-5}
CUTOFFS = [0.0, 0.25, 0.5, 1.0, math.sqrt(2), 1e6]
# Size-1 and odd dims, and even grids whose bins lie exactly on the radii of CUTOFFS.
ADVERSARIAL_IMAGE_SHAPES = [(1, 1, 1, 1), (2, 1, 1, 7), (2, 3, 6, 1), (1, 2, 5, 7), (2, 2, 8, 8), (3, 1, 4, 6)]
FAST = settings(deadline=None, max_examples=30)


def make(
    shape: tuple[int, ...], dtype: torch.dtype, seed: int, device: torch.device | str, contiguous: bool = True
) -> torch.Tensor:
    """Random normal data; non-contiguous means a transposed view of the last two dims."""
    gen = torch.Generator().manual_seed(seed)
    if contiguous or len(shape) < 3:
        return torch.randn(shape, generator=gen).to(device=device, dtype=dtype)
    swapped = (*shape[:-2], shape[-1], shape[-2])
    return torch.randn(swapped, generator=gen).to(device=device, dtype=dtype).transpose(-1, -2)


# --- frequency_filter ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", DEVICES)
@FAST
@given(
    shape=st.tuples(*(st.integers(1, 3),) * 2, *(st.integers(1, 9),) * 2),
    cutoff=st.floats(0, 1.6),
    kind=st.sampled_from(["low", "high"]),
    dtype=st.sampled_from(DTYPES),
    contiguous=st.booleans(),
    seed=st.integers(0, 2**31),
)
def test_filter_matches_reference_on_random_inputs(name, shape, cutoff, kind, dtype, contiguous, seed):
    x = make(shape, dtype, seed, name, contiguous)
    fused = frequency_filter(x, cutoff, kind, backend="fused")
    assert fused.dtype == dtype and fused.shape == x.shape
    torch.testing.assert_close(fused, frequency_filter_reference(x, cutoff, kind), **TOLERANCES[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_filter_adversarial_shapes_and_cutoffs(device, dtype):
    # Cutoffs 0.25, 0.5, 1 and sqrt(2) fall exactly on bins of these grids: fused and eager masks must agree there.
    for shape in ADVERSARIAL_IMAGE_SHAPES:
        x = make(shape, dtype, 1, device)
        for cutoff in CUTOFFS:
            for kind in ("low", "high"):
                fused = frequency_filter(x, cutoff, kind, backend="fused")
                torch.testing.assert_close(fused, frequency_filter_reference(x, cutoff, kind), **TOLERANCES[dtype])


def test_filter_non_contiguous_input(device):
    base = make((3, 2, 9, 12), torch.float32, 2, device)
    for x in (base.transpose(2, 3), base[:, :, ::2, 1::2], base.permute(1, 0, 2, 3)):
        torch.testing.assert_close(
            frequency_filter(x, 0.4, "high", backend="fused"), frequency_filter_reference(x, 0.4, "high")
        )


@pytest.mark.parametrize("dtype", DTYPES)
def test_low_plus_high_is_identity(device, dtype):
    x = make((2, 3, 7, 10), dtype, 3, device)
    for cutoff in (0.0, 0.3, 0.9):
        total = frequency_filter(x, cutoff, "low").float() + frequency_filter(x, cutoff, "high").float()
        torch.testing.assert_close(total, x.float(), **TOLERANCES[dtype])


def test_filter_extreme_cutoffs(device):
    x = make((2, 3, 6, 5), torch.float32, 4, device)
    plane_mean = x.mean(dim=(2, 3), keepdim=True).expand_as(x)
    torch.testing.assert_close(frequency_filter(x, 0.0, "low"), plane_mean)
    torch.testing.assert_close(frequency_filter(x, 1e6, "low"), x)
    torch.testing.assert_close(frequency_filter(x, 1e6, "high"), torch.zeros_like(x))


def test_filter_boundary_radius_belongs_to_low_band():
    # (-1)^h is the Nyquist frequency along H: radius exactly 1.
    x = ((-1.0) ** torch.arange(4.0)).reshape(1, 1, 4, 1).expand(1, 1, 4, 4).contiguous()
    torch.testing.assert_close(frequency_filter(x, 1.0, "low", backend="fused"), x)
    torch.testing.assert_close(frequency_filter(x, 1.0, "high", backend="fused"), torch.zeros_like(x))
    torch.testing.assert_close(frequency_filter(x, 0.999, "high", backend="fused"), x)


def test_filter_nan_spreads_over_its_plane_only(device):
    x = make((2, 2, 5, 6), torch.float32, 5, device)
    x[1, 0, 2, 3] = float("nan")
    for backend in ("fused", "eager"):
        for kind, cutoff in (("low", 0.5), ("high", 0.5), ("high", 1e6)):
            y = frequency_filter(x, cutoff, kind, backend=backend)
            assert y[1, 0].isnan().all()
            assert y[0].isfinite().all() and y[1, 1].isfinite().all()


def test_filter_gradient_is_the_filter(device):
    x = make((1, 2, 3, 4), torch.float64, 6, device).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: frequency_filter(t, 0.6, "low", backend="fused"), (x,))
    grad = make((1, 2, 3, 4), torch.float64, 7, device)
    (gx,) = torch.autograd.grad(frequency_filter(x, 0.6, "high", backend="fused"), x, grad)
    torch.testing.assert_close(gx, frequency_filter_reference(grad, 0.6, "high"))


# --- band_energy -----------------------------------------------------------------------------------------------


def energy_tol(x: torch.Tensor) -> dict[str, float]:
    """float32 sums: absolute tolerance relative to the sample's total energy."""
    return {"rtol": SUM_TOL["rtol"], "atol": 1e-5 * float(x.float().square().sum(dim=(1, 2, 3)).max()) + 1e-6}


def assert_band_energy_consistent(x: torch.Tensor, cutoff: float) -> None:
    """band_energy equals the eager reference, the energies of the filtered images, and sums to the total."""
    energy = band_energy(x, cutoff, backend="fused")
    assert energy.shape == (x.shape[0], 2) and energy.dtype == torch.float32
    torch.testing.assert_close(energy, band_energy_reference(x, cutoff), **energy_tol(x))
    # The filter is applied in float32 here, so its output is not rounded to the input dtype.
    xf = x.float()
    low = frequency_filter(xf, cutoff, "low").square().sum(dim=(1, 2, 3))
    high = frequency_filter(xf, cutoff, "high").square().sum(dim=(1, 2, 3))
    torch.testing.assert_close(energy, torch.stack([low, high], dim=1), **energy_tol(x))
    torch.testing.assert_close(energy.sum(dim=1), xf.square().sum(dim=(1, 2, 3)), **energy_tol(x))


@pytest.mark.parametrize("name", DEVICES)
@FAST
@given(
    shape=st.tuples(*(st.integers(1, 3),) * 2, *(st.integers(1, 9),) * 2),
    cutoff=st.floats(0, 1.6),
    dtype=st.sampled_from(DTYPES),
    contiguous=st.booleans(),
    seed=st.integers(0, 2**31),
)
def test_band_energy_on_random_inputs(name, shape, cutoff, dtype, contiguous, seed):
    assert_band_energy_consistent(make(shape, dtype, seed, name, contiguous), cutoff)


@pytest.mark.parametrize("dtype", DTYPES)
def test_band_energy_adversarial(device, dtype):
    for shape in ADVERSARIAL_IMAGE_SHAPES:
        x = make(shape, dtype, 8, device)
        for cutoff in CUTOFFS:
            assert_band_energy_consistent(x, cutoff)
            if cutoff >= math.sqrt(2):
                assert (band_energy(x, cutoff, backend="fused")[:, 1] == 0).all()


def test_band_energy_nan_stays_in_its_sample(device):
    x = make((3, 2, 4, 5), torch.float32, 9, device)
    x[1, 1, 0, 0] = float("nan")
    for backend in ("fused", "eager"):
        energy = band_energy(x, 0.5, backend=backend)
        assert energy[1].isnan().all() and energy[[0, 2]].isfinite().all()


def test_band_energy_gradient(device):
    x = make((2, 1, 3, 4), torch.float64, 10, device).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: band_energy(t, 0.7, backend="fused"), (x,))


# --- fc_weighted_mse -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", DEVICES)
@FAST
@given(
    batch=st.integers(1, 3),
    channels=st.integers(1, 4),
    source_channels=st.integers(1, 4),
    spatial=st.lists(st.integers(1, 9), min_size=1, max_size=3),
    gamma=st.floats(0, 5),
    eps=st.floats(1e-8, 1),
    dtype=st.sampled_from(DTYPES),
    contiguous=st.booleans(),
    seed=st.integers(0, 2**31),
)
def test_fc_matches_reference_on_random_inputs(
    name, batch, channels, source_channels, spatial, gamma, eps, dtype, contiguous, seed
):
    shape, source_shape = (batch, channels, *spatial), (batch, source_channels, *spatial)
    pred, target = make(shape, dtype, seed, name, contiguous), make(shape, dtype, seed + 1, name)
    source = make(source_shape, dtype, seed + 2, name, contiguous)
    loss = fc_weighted_mse(pred, target, source, gamma, eps, backend="fused")
    assert loss.shape == (batch,) and loss.dtype == torch.float32
    torch.testing.assert_close(loss, fc_weighted_mse_reference(pred, target, source, gamma, eps), **SUM_TOL)


@pytest.mark.parametrize("dtype", DTYPES)
def test_fc_adversarial_shapes(device, dtype):
    # (shape, source channels): single elements, P = 1, sequences (B, C, L), odd sizes, 3-D volumes, and P a
    # multiple of the CUDA vector width as well as not.
    cases = [((1, 1, 1), 1), ((2, 3, 1, 1), 1), ((3, 1, 17), 2), ((2, 4, 5, 7), 3), ((2, 3, 32, 32), 3)]
    for shape, source_channels in [*cases, ((2, 2, 3, 4, 5), 5), ((5, 4, 2048), 1)]:
        pred, target = make(shape, dtype, 11, device), make(shape, dtype, 12, device)
        source = make((shape[0], source_channels, *shape[2:]), dtype, 13, device)
        for gamma in (0.0, 1.0, 3.0):
            loss = fc_weighted_mse(pred, target, source, gamma, backend="fused")
            torch.testing.assert_close(loss, fc_weighted_mse_reference(pred, target, source, gamma), **SUM_TOL)


@pytest.mark.parametrize("dtype", DTYPES)
def test_fc_is_mse_without_weighting(device, dtype):
    pred, target = make((3, 2, 6, 5), dtype, 14, device), make((3, 2, 6, 5), dtype, 15, device)
    source = make((3, 1, 6, 5), dtype, 16, device)
    mse = (pred.float() - target.float()).square().mean(dim=(1, 2, 3))
    torch.testing.assert_close(fc_weighted_mse(pred, target, source, gamma=0.0, backend="fused"), mse, **SUM_TOL)
    zeros = torch.zeros_like(source)
    torch.testing.assert_close(fc_weighted_mse(pred, target, zeros, gamma=2.0, backend="fused"), mse, **SUM_TOL)


def test_fc_weights_errors_where_the_source_is_large(device):
    target = torch.zeros(1, 1, 4, device=device)
    source = torch.tensor([[[0.0, 0.0, 0.0, 4.0]]], device=device)  # mean 1: weights (1, 1, 1, 1 + 4 gamma)
    error_at_source = torch.tensor([[[0.0, 0.0, 0.0, 1.0]]], device=device)
    error_elsewhere = torch.tensor([[[1.0, 0.0, 0.0, 0.0]]], device=device)
    loss_at = fc_weighted_mse(error_at_source, target, source, gamma=1.0, eps=1e-12, backend="fused")
    loss_else = fc_weighted_mse(error_elsewhere, target, source, gamma=1.0, eps=1e-12, backend="fused")
    torch.testing.assert_close(loss_at, torch.tensor([5.0 / 4], device=device))
    torch.testing.assert_close(loss_else, torch.tensor([1.0 / 4], device=device))


def test_fc_non_contiguous_inputs(device):
    base = make((4, 3, 6, 8), torch.float32, 17, device)
    pred, target, source = base.transpose(2, 3), base.flip(0).transpose(2, 3), base[:, :2, :, ::1].transpose(2, 3)
    torch.testing.assert_close(
        fc_weighted_mse(pred, target, source, backend="fused"), fc_weighted_mse_reference(pred, target, source)
    )


def test_fc_nan_stays_in_its_sample(device):
    pred, target = make((3, 2, 4, 4), torch.float32, 18, device), make((3, 2, 4, 4), torch.float32, 19, device)
    source = make((3, 1, 4, 4), torch.float32, 20, device)
    pred[0, 1, 2, 2] = float("nan")
    source[2, 0, 0, 0] = float("nan")
    for backend in ("fused", "eager"):
        loss = fc_weighted_mse(pred, target, source, backend=backend)
        assert loss[0].isnan() and loss[1].isfinite() and loss[2].isnan()


def test_fc_gradcheck_float64(device):
    # The fused kernels accept float64, so gradcheck runs on the fused path itself.
    pred = make((2, 3, 4, 5), torch.float64, 21, device).requires_grad_()
    target = make((2, 3, 4, 5), torch.float64, 22, device).requires_grad_()
    source = make((2, 2, 4, 5), torch.float64, 23, device)
    assert torch.autograd.gradcheck(lambda p, t: fc_weighted_mse(p, t, source, 0.8, backend="fused"), (pred, target))


@pytest.mark.parametrize("dtype", DTYPES)
def test_fc_gradients_match_reference(device, dtype):
    shape = (3, 4, 8, 9)
    pred, target = make(shape, dtype, 24, device), make(shape, dtype, 25, device)
    source = make((3, 3, 8, 9), dtype, 26, device).requires_grad_()
    weights = make((3,), torch.float32, 27, device)
    grads = []
    for backend in ("fused", "eager"):
        p, t = pred.clone().requires_grad_(), target.clone().requires_grad_()
        (fc_weighted_mse(p, t, source, 1.5, backend=backend) * weights).sum().backward()
        assert source.grad is None  # source is a constant
        grads.append((p.grad, t.grad))
    (fused_p, fused_t), (eager_p, eager_t) = grads
    assert fused_p.dtype == dtype
    torch.testing.assert_close(fused_p, eager_p, **TOLERANCES[dtype])
    torch.testing.assert_close(fused_t, -fused_p)


# --- torch.library registration, torch.compile -----------------------------------------------------------------


def test_opcheck(device):
    x = make((2, 3, 5, 6), torch.float32, 28, device).requires_grad_()
    torch.library.opcheck(torch.ops.bfr_fast.frequency_filter.default, (x, 0.5, False))
    torch.library.opcheck(torch.ops.bfr_fast.frequency_filter.default, (x.detach().half(), 0.5, True))
    torch.library.opcheck(torch.ops.bfr_fast.band_energy.default, (x, 0.5))
    pred = make((2, 3, 5, 6), torch.float32, 29, device).requires_grad_()
    target = make((2, 3, 5, 6), torch.float32, 30, device)
    source = make((2, 1, 5, 6), torch.float32, 31, device)
    torch.library.opcheck(torch.ops.bfr_fast.fc_weighted_mse.default, (pred, target, source, 1.0, 1e-6))
    loss, source_mean = torch.ops.bfr_fast.fc_weighted_mse(pred.detach(), target, source, 1.0, 1e-6)
    torch.library.opcheck(
        torch.ops.bfr_fast.fc_weighted_mse_backward.default,
        (torch.ones_like(loss), pred.detach(), target, source, source_mean, 1.0, 1e-6),
    )


def test_compile_fullgraph_aot_eager():
    x = make((2, 3, 8, 6), torch.float32, 32, "cpu")
    pred, target = make((2, 3, 8, 6), torch.float32, 33, "cpu"), make((2, 3, 8, 6), torch.float32, 34, "cpu")
    source = make((2, 1, 8, 6), torch.float32, 35, "cpu")

    def step(x, pred, target, source, backend="fused"):
        return (
            frequency_filter(x, 0.5, "high", backend=backend),
            band_energy(x, 0.5, backend=backend),
            fc_weighted_mse(pred, target, source, 2.0, backend=backend),
        )

    compiled, ops = compile_recording_ops(step, "aot_eager")
    for got, want in zip(compiled(x, pred, target, source), step(x, pred, target, source, "eager"), strict=True):
        torch.testing.assert_close(got, want)
    names = {"frequency_filter", "band_energy", "fc_weighted_mse"}
    assert {f"bfr_fast.{name}" for name in names} <= set(ops), ops
    p = pred.clone().requires_grad_()
    compiled(x, p, target, source)[2].sum().backward()
    q = pred.clone().requires_grad_()
    step(x, q, target, source, "eager")[2].sum().backward()
    torch.testing.assert_close(p.grad, q.grad)


def test_compile_fullgraph_inductor():
    pred, target = make((2, 3, 8, 6), torch.float32, 36, "cpu"), make((2, 3, 8, 6), torch.float32, 37, "cpu")
    source = make((2, 2, 8, 6), torch.float32, 38, "cpu")

    def loss(pred, target, source, backend="fused"):
        return fc_weighted_mse(pred, target, source, 1.0, backend=backend).mean()

    compiled, ops = compile_recording_ops(loss, "inductor")
    torch.testing.assert_close(compiled(pred, target, source), loss(pred, target, source, "eager"))
    assert "bfr_fast.fc_weighted_mse" in ops, ops


# --- bad input -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"x": torch.zeros(2, 3, 4)}, "x must be 4-D"),
        ({"x": torch.zeros(1, 1, 4, 4, dtype=torch.int64)}, "x must have dtype"),
        ({"x": [[1.0]]}, "x must be a torch.Tensor"),
        ({"x": torch.zeros(1, 1, 0, 4)}, "H >= 1 and W >= 1"),
        ({"cutoff": -0.1}, "cutoff must be a finite float >= 0"),
        ({"cutoff": float("nan")}, "cutoff must be a finite float >= 0"),
        ({"cutoff": float("inf")}, "cutoff must be a finite float >= 0"),
        ({"cutoff": True}, "cutoff must be a finite float >= 0"),
        ({"kind": "band"}, "kind must be one of"),
        ({"backend": "gpu"}, "backend must be one of"),
    ],
)
def test_filter_bad_input(kwargs, match):
    args = {"x": torch.zeros(1, 1, 4, 4), "cutoff": 0.5, "kind": "low", "backend": "auto"} | kwargs
    with pytest.raises(ValueError, match=match):
        frequency_filter(**args)
    if "kind" not in kwargs:
        args.pop("kind")
        with pytest.raises(ValueError, match=match):
            band_energy(**args)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"pred": torch.zeros(4)}, "pred must have at least 2 dims"),
        ({"pred": torch.zeros(2, 3, 4, 4, dtype=torch.int32)}, "pred must have dtype"),
        ({"target": torch.zeros(2, 3, 4, 5)}, "target must have pred's shape"),
        ({"target": torch.zeros(2, 3, 4, 4, dtype=torch.float64)}, "target must have pred's dtype"),
        ({"source": torch.zeros(3, 1, 4, 4)}, "source must be"),
        ({"source": torch.zeros(2, 1, 4, 5)}, "source must be"),
        ({"source": torch.zeros(2, 1, 16)}, "source must be"),
        ({"source": torch.zeros(2, 1, 4, 4, dtype=torch.float16)}, "source must have pred's dtype"),
        ({"source": torch.zeros(2, 0, 4, 4)}, "at least one channel"),
        ({"pred": torch.zeros(2, 3, 0), "target": torch.zeros(2, 3, 0), "source": torch.zeros(2, 1, 0)}, "at least"),
        ({"gamma": -1.0}, "gamma must be a finite float >= 0"),
        ({"gamma": float("inf")}, "gamma must be a finite float >= 0"),
        ({"eps": 0.0}, "eps must be a finite float > 0"),
        ({"eps": float("nan")}, "eps must be a finite float > 0"),
        ({"backend": "fast"}, "backend must be one of"),
    ],
)
def test_fc_bad_input(kwargs, match):
    args = {
        "pred": torch.zeros(2, 3, 4, 4),
        "target": torch.zeros(2, 3, 4, 4),
        "source": torch.zeros(2, 1, 4, 4),
        "gamma": 1.0,
        "eps": 1e-6,
        "backend": "auto",
    } | kwargs
    with pytest.raises(ValueError, match=match):
        fc_weighted_mse(**args)
