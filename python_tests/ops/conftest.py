"""Shared fixtures of the op tests: the devices to run on and per-dtype tolerances."""

from __future__ import annotations

import pytest
import torch

from bfr_fast.ops import fused_available

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])

# Tolerances of fused vs eager for float32 accumulation of inputs stored in each dtype: the two differ only in
# summation order and in the final rounding to the storage dtype (one ulp there).
TOLERANCES = {
    torch.float64: dict(rtol=1e-10, atol=1e-10),
    torch.float32: dict(rtol=1e-5, atol=1e-5),
    torch.float16: dict(rtol=2e-3, atol=2e-3),
    torch.bfloat16: dict(rtol=1.6e-2, atol=1.6e-2),
}


@pytest.fixture(params=DEVICES)
def device(request: pytest.FixtureRequest) -> torch.device:
    """Every device present; the fused kernels must be built for it."""
    if not fused_available(request.param):
        pytest.fail(f"bfr_fast._C has no {request.param} kernels: the tests compare fused with eager")
    return torch.device(request.param)
