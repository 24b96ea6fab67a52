"""lincomb: fused kernel vs eager reference, aliasing, autograd, torch.compile and argument errors."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bfr_fast.ops import lincomb
from bfr_fast.ops.reference import lincomb_reference

from .conftest import DEVICES, TOLERANCES, compile_recording_ops

DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64]


def make_inputs(shape, n_terms, dtype, device, per_sample_mask, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=gen).to(device, dtype)
    ks = [torch.randn(shape, generator=gen).to(device, dtype) for _ in range(n_terms)]
    coeffs = [
        (torch.rand(shape[0], generator=gen) * 2 - 1).to(device) if per_sample else float(torch.randn(1, generator=gen))
        for per_sample in per_sample_mask
    ]
    return x, ks, coeffs


@pytest.mark.parametrize("name", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=25, deadline=None)
@given(
    shape=st.lists(st.integers(1, 9), min_size=1, max_size=4).map(tuple),
    per_sample_mask=st.lists(st.booleans(), min_size=1, max_size=8),
    seed=st.integers(0, 2**16),
)
def test_fused_matches_eager_random(name, dtype, shape, per_sample_mask, seed):
    x, ks, coeffs = make_inputs(shape, len(per_sample_mask), dtype, name, per_sample_mask, seed)
    fused = lincomb(x, ks, coeffs, backend="fused")
    assert fused.dtype == dtype and fused.shape == x.shape
    torch.testing.assert_close(fused, lincomb_reference(x, ks, coeffs), **TOLERANCES[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1,), (1, 1), (3, 1, 7, 5), (2, 4099), (5, 3, 33, 33)])
def test_fused_matches_eager_adversarial_shapes(device, dtype, shape):
    x, ks, coeffs = make_inputs(shape, 8, dtype, device, [True, False] * 4)
    torch.testing.assert_close(lincomb(x, ks, coeffs, backend="fused"), lincomb_reference(x, ks, coeffs), **TOLERANCES[dtype])


def test_large_values_accumulate_in_float32(device):
    # 2048 + 1 - 2048 in float16 storage: a float16 accumulator would lose the 1.
    x = torch.full((2, 8), 2048.0, dtype=torch.float16, device=device)
    ones = torch.ones_like(x)
    out = lincomb(x, [ones, x], [1.0, -1.0], backend="fused")
    assert torch.equal(out, ones)


def test_non_contiguous_inputs(device):
    base = torch.randn(6, 10, device=device)
    x, k = base.t(), torch.randn(10, 12, device=device)[:, ::2]
    assert not x.is_contiguous() and not k.is_contiguous()
    c = torch.rand(10, device=device)
    torch.testing.assert_close(lincomb(x, [k], [c], backend="fused"), x + c[:, None] * k)


def test_in_place_out_is_x(device):
    x, ks, coeffs = make_inputs((4, 3, 5), 3, torch.float32, device, [True, False, True])
    expected = lincomb_reference(x, ks, coeffs)
    ptr = x.data_ptr()
    result = lincomb(x, ks, coeffs, out=x, backend="fused")
    assert result is x and x.data_ptr() == ptr
    torch.testing.assert_close(x, expected)


def test_in_place_on_non_contiguous_x(device):
    x = torch.randn(5, 4, device=device).t()
    k = torch.randn(4, 5, device=device)
    expected = x + 0.5 * k
    lincomb(x, [k], [0.5], out=x, backend="fused")
    torch.testing.assert_close(x, expected)


def test_out_buffer_distinct(device):
    x, ks, coeffs = make_inputs((3, 7), 2, torch.bfloat16, device, [False, True])
    out = torch.empty_like(x)
    assert lincomb(x, ks, coeffs, out=out, backend="fused") is out
    torch.testing.assert_close(out, lincomb_reference(x, ks, coeffs), **TOLERANCES[torch.bfloat16])


def test_same_tensor_repeated_as_terms(device):
    x = torch.randn(3, 4, device=device)
    k = torch.randn(3, 4, device=device)
    torch.testing.assert_close(lincomb(x, [k, k, k], [1.0, 2.0, 3.0], backend="fused"), x + 6 * k)


def test_gradients_match_eager():
    x, ks, coeffs = make_inputs((3, 4, 5), 3, torch.float64, "cpu", [True, False, True])
    for t in (x, *ks):
        t.requires_grad_()
    torch.autograd.gradcheck(lambda x, *ks: lincomb(x, ks, coeffs, backend="fused"), (x, *ks))


def test_gradients_of_tensor_coefficients():
    x, ks, _ = make_inputs((3, 4), 2, torch.float64, "cpu", [False, False])
    c = torch.rand(3, dtype=torch.float64, requires_grad=True)
    torch.autograd.gradcheck(lambda c: lincomb(x, ks, [c, 0.5], backend="fused"), (c,))


def test_opcheck():
    x, ks, _ = make_inputs((3, 4), 2, torch.float32, "cpu", [False, False])
    for vectors in ([torch.rand(3), None], [torch.rand(3), torch.rand(3)]):
        torch.library.opcheck(torch.ops.bfr_fast.lincomb.default, (x.requires_grad_(), ks, [0.5, 2.0], vectors))
    torch.library.opcheck(torch.ops.bfr_fast.lincomb_.default, (x.detach().clone(), ks, [0.5, 2.0], [None, None]))
    torch.library.opcheck(
        torch.ops.bfr_fast.lincomb_out.default, (x.detach(), ks, [0.5, 2.0], [None, None], torch.empty_like(x))
    )


@pytest.mark.parametrize("compile_backend", ["aot_eager", "inductor"])
def test_torch_compile_fullgraph(compile_backend):
    x, ks, _ = make_inputs((4, 6), 2, torch.float32, "cpu", [False, False])
    h = torch.rand(4)

    def step(x, k1, k2, h):
        mid = lincomb(x, [k1], [h * 0.5], backend="fused")
        return lincomb(mid, [k1, k2], [h, 0.25], out=mid, backend="fused")

    compiled, ops = compile_recording_ops(step, compile_backend)
    expected = lincomb_reference(lincomb_reference(x, [ks[0]], [h * 0.5]), ks, [h, 0.25])
    torch.testing.assert_close(compiled(x, *ks, h), expected)
    assert {"bfr_fast.lincomb", "bfr_fast.lincomb_"} <= set(ops), ops  # the fused ops were traced


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(ks=[], coeffs=[]), "ks must be a sequence of 1 to 8"),
        (dict(ks=[torch.zeros(2, 3)] * 9, coeffs=[1.0] * 9), "ks must be a sequence of 1 to 8"),
        (dict(ks=[torch.zeros(2, 4)], coeffs=[1.0]), r"ks\[0\] must have x's shape"),
        (dict(ks=[torch.zeros(2, 3, dtype=torch.float64)], coeffs=[1.0]), r"ks\[0\] must have x's dtype"),
        (dict(ks=[torch.zeros(2, 3)], coeffs=[1.0, 2.0]), "coeffs must be a sequence of 1"),
        (dict(ks=[torch.zeros(2, 3)], coeffs=[torch.ones(3)]), r"coeffs\[0\] must be a float or a \(2,\) tensor"),
        (dict(ks=[torch.zeros(2, 3)], coeffs=[True]), r"coeffs\[0\] must be a float"),
        (dict(ks=[torch.zeros(2, 3)], coeffs=[torch.ones(2, dtype=torch.long)]), r"coeffs\[0\] must be a floating"),
        (dict(ks=[torch.zeros(2, 3, dtype=torch.long)], coeffs=[1.0]), r"ks\[0\] must have dtype in"),
        (dict(ks=[torch.zeros(2, 3)], coeffs=[1.0], backend="cuda"), "backend must be one of"),
    ],
)
def test_bad_arguments_raise_value_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        lincomb(torch.zeros(2, 3), **kwargs)


def test_out_overlapping_a_term_is_rejected():
    x, k = torch.zeros(2, 3), torch.zeros(2, 3)
    with pytest.raises(ValueError, match="must not overlap"):
        lincomb(x, [k], [1.0], out=k)
    with pytest.raises(ValueError, match="must not overlap"):
        lincomb(x, [k], [1.0], out=torch.empty(0).set_(x.untyped_storage(), 0, (2, 3)))


def test_scalar_x_is_rejected():
    with pytest.raises(ValueError, match="x must have at least 1 dims"):
        lincomb(torch.tensor(1.0), [torch.tensor(1.0)], [1.0])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error when no CUDA kernel can exist")
def test_fused_backend_without_kernel_names_the_device():
    with pytest.raises(ValueError, match="backend='fused' but no fused kernel exists for device meta"):
        lincomb(torch.zeros(2, 3, device="meta"), [torch.zeros(2, 3, device="meta")], [1.0], backend="fused")
