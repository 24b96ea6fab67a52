"""Every compiled instruction set of the vectorised CPU kernels (default, AVX2, AVX-512) against the eager references:
lincomb, fc_weighted_mse (forward and backward) and band_energy, on tails that are not whole vectors, empty
tensors, short and long samples, non-contiguous inputs, misaligned and in-place outputs, and every dtype."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import torch

from bfr_fast.ops import band_energy, fc_weighted_mse, lincomb
from bfr_fast.ops._extension import cpu_isa, cpu_isas, set_cpu_isa
from bfr_fast.ops.reference import band_energy_reference, fc_weighted_mse_reference, lincomb_reference

from .conftest import TOLERANCES
from .test_spectral import SUM_TOL, energy_tol, make

ISAS = ["default", "avx2", "avx512"]
DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
# Sums of float32 inputs: the kernels add in float32 vector lanes, then in float64.
LOSS_TOL = {torch.float64: TOLERANCES[torch.float64], torch.float32: SUM_TOL, torch.float16: SUM_TOL,
            torch.bfloat16: SUM_TOL}


@contextmanager
def running(isa: str) -> Iterator[None]:
    """Runs the block on ``isa``'s kernels (skipping the test where this CPU or build lacks it)."""
    if isa not in cpu_isas():
        pytest.skip(f"this CPU or build cannot run the {isa} kernels (it can run {cpu_isas()})")
    previous = set_cpu_isa(isa)
    try:
        assert cpu_isa() == isa
        yield
    finally:
        set_cpu_isa(previous)


def test_the_best_instruction_set_runs_by_default():
    assert cpu_isas()[0] == "default" and cpu_isa() == cpu_isas()[-1]
    assert list(cpu_isas()) == ISAS[: len(cpu_isas())]


def test_unknown_instruction_set_is_an_error():
    with pytest.raises(ValueError, match="avx9000"):
        set_cpu_isa("avx9000")
    assert cpu_isa() == cpu_isas()[-1]


@pytest.mark.parametrize("requested", ["default", "avx9000"])
def test_environment_variable_chooses_the_instruction_set(requested):
    code = "from bfr_fast.ops._extension import cpu_isa; print(cpu_isa())"
    env = {**os.environ, "BFR_FAST_CPU_ISA": requested}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    # An unknown name (or one this CPU lacks) leaves the best one.
    assert out.stdout.strip() == (requested if requested in cpu_isas() else cpu_isas()[-1])


# --- lincomb -------------------------------------------------------------------------------------------------------

# Empty, one element per sample (the work is organised by elements), samples shorter than a step (per-sample
# coefficients expanded per element), of a few steps with a masked last one (runs of one sample), lengths that are
# not whole vectors, and sizes that the thread pool splits.
LINCOMB_SHAPES = [(0, 5), (3, 0), (1,), (37,), (37, 1), (1000, 1), (5, 7), (3, 1, 7, 5), (2, 4099), (9, 33),
                  (1000, 40), (4, 1000), (3, 40_001), (100_003,)]


def lincomb_inputs(shape, dtype, n_terms, per_sample, seed):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=gen).to(dtype)
    ks = [torch.randn(shape, generator=gen).to(dtype) for _ in range(n_terms)]
    coeffs = [
        (torch.rand(shape[0], generator=gen) * 2 - 1) if use else float(torch.randn(1, generator=gen))
        for use in per_sample
    ]
    return x, ks, coeffs


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("coefficients", ["scalar", "per-sample", "mixed"])
def test_lincomb_matches_reference(isa, dtype, coefficients):
    with running(isa):
        for seed, shape in enumerate(LINCOMB_SHAPES):
            for n_terms in (1, 4, 8):
                per_sample = {"scalar": [False] * n_terms, "per-sample": [True] * n_terms,
                              "mixed": [i % 2 == 0 for i in range(n_terms)]}[coefficients]
                x, ks, coeffs = lincomb_inputs(shape, dtype, n_terms, per_sample, seed)
                fused = lincomb(x, ks, coeffs, backend="fused")
                torch.testing.assert_close(fused, lincomb_reference(x, ks, coeffs), **TOLERANCES[dtype])


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("row", [None, 40, 17, 5], ids=["long-samples", "samples-of-a-few-steps",
                                                         "samples-of-a-step-and-one", "samples-under-a-step"])
def test_lincomb_large_outputs_misaligned_and_in_place(isa, dtype, row):
    """Outputs of 8 MiB and more take non-temporal stores from the first aligned position on where samples are at
    least a step long (a stored step that straddles two samples blends their coefficients; shorter samples keep
    ordinary stores): at every sample length, an output one element off alignment, and x updated in place, must
    come out the same."""
    numel = (8 << 20) // dtype.itemsize + 4099
    shape = (3, numel // 3) if row is None else (numel // row, row)
    x, ks, coeffs = lincomb_inputs(shape, dtype, 3, [True, False, True], 0)
    expected = lincomb_reference(x, ks, coeffs)
    buffer = torch.empty(x.numel() + 1, dtype=dtype)
    out = buffer[1:].view(x.shape)
    with running(isa):
        lincomb(x, ks, coeffs, out=out, backend="fused")
        torch.testing.assert_close(out, expected, **TOLERANCES[dtype])
        lincomb(x, ks, coeffs, out=x, backend="fused")
        torch.testing.assert_close(x, expected, **TOLERANCES[dtype])


@pytest.mark.parametrize("isa", ISAS)
def test_lincomb_non_contiguous_inputs(isa):
    base = torch.randn(6, 1000)
    x, k = base.t(), torch.randn(1000, 12)[:, ::2]
    c = torch.rand(1000)
    with running(isa):
        torch.testing.assert_close(lincomb(x, [k], [c], backend="fused"), x + c[:, None] * k)


@pytest.mark.parametrize("isa", ISAS)
def test_lincomb_propagates_nan_and_infinity(isa):
    x = torch.zeros(3, 70)
    k = torch.ones(3, 70)
    x[0, 65], x[2, 3], k[1, 69] = float("nan"), float("inf"), float("-inf")
    with running(isa):
        out = lincomb(x, [k], [torch.tensor([1.0, 2.0, 3.0])], backend="fused")
    assert out[0, 65].isnan() and out[2, 3] == float("inf") and out[1, 69] == float("-inf")
    assert out.isfinite().sum() == out.numel() - 3


# --- fc_weighted_mse -----------------------------------------------------------------------------------------------

# (shape, source channels): empty batch, single elements, P = 1, sequences, odd sizes, P over one work item (1024
# positions) and not a whole number of vectors, 3-D volumes.
FC_CASES = [((0, 3, 4, 4), 3), ((1, 1, 1), 1), ((2, 3, 1, 1), 1), ((3, 1, 17), 2), ((2, 4, 5, 7), 3),
            ((2, 3, 32, 32), 3), ((2, 2, 3, 4, 5), 5), ((5, 4, 2048), 1), ((2, 3, 1500), 2), ((64, 3, 33), 1)]


def fc_inputs(shape: tuple[int, ...], source_channels: int, dtype: torch.dtype,
              seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Prediction, target and FC source of one :data:`FC_CASES` case (the source with its own channel count)."""
    return (make(shape, dtype, seed, "cpu"), make(shape, dtype, seed + 100, "cpu"),
            make((shape[0], source_channels, *shape[2:]), dtype, seed + 200, "cpu"))


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_fc_forward_matches_reference(isa, dtype):
    with running(isa):
        for seed, (shape, source_channels) in enumerate(FC_CASES):
            pred, target, source = fc_inputs(shape, source_channels, dtype, seed)
            for gamma in (0.0, 1.0, 3.0):
                loss = fc_weighted_mse(pred, target, source, gamma, backend="fused")
                expected = fc_weighted_mse_reference(pred, target, source, gamma)
                torch.testing.assert_close(loss, expected, **LOSS_TOL[dtype])


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_fc_backward_matches_reference(isa, dtype):
    with running(isa):
        for seed, (shape, source_channels) in enumerate(FC_CASES):
            pred, target, source = fc_inputs(shape, source_channels, dtype, seed)
            weights = make((shape[0],), torch.float32, seed + 300, "cpu")
            grads = []
            for backend in ("fused", "eager"):
                p = pred.clone().requires_grad_()
                (fc_weighted_mse(p, target, source, 1.5, backend=backend) * weights).sum().backward()
                grads.append(p.grad)
            torch.testing.assert_close(grads[0], grads[1], **TOLERANCES[dtype])


@pytest.mark.parametrize("isa", ISAS)
def test_fc_non_contiguous_inputs_and_nan(isa):
    base = make((4, 3, 6, 40), torch.float32, 17, "cpu")
    pred, target, source = base.transpose(2, 3), base.flip(0).transpose(2, 3), base[:, :2].transpose(2, 3)
    with running(isa):
        torch.testing.assert_close(
            fc_weighted_mse(pred, target, source, backend="fused"), fc_weighted_mse_reference(pred, target, source)
        )
        pred = pred.contiguous()
        pred[0, 1, 39, 2] = float("nan")
        loss = fc_weighted_mse(pred, target, source, backend="fused")
    assert loss[0].isnan() and loss[1:].isfinite().all()


# --- band_energy ---------------------------------------------------------------------------------------------------

ENERGY_SHAPES = [(1, 1, 1, 1), (2, 1, 1, 7), (2, 3, 6, 1), (1, 2, 5, 7), (3, 1, 4, 6), (4, 3, 32, 32), (2, 1, 17, 33)]


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_band_energy_matches_reference(isa, dtype):
    with running(isa):
        for seed, shape in enumerate(ENERGY_SHAPES):
            x = make(shape, dtype, seed, "cpu", contiguous=seed % 2 == 0)
            for cutoff in (0.0, 0.5, 1.0, math.sqrt(2)):
                energy = band_energy(x, cutoff, backend="fused")
                tolerance = TOLERANCES[dtype] if dtype == torch.float64 else energy_tol(x)
                torch.testing.assert_close(energy, band_energy_reference(x, cutoff), **tolerance)
