"""Shared fixtures of the op tests: the devices to run on and per-dtype tolerances."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch._dynamo.backends.registry import lookup_backend

from bfr_fast.ops import fused_available

NO_CUDA = "no CUDA device here: the CUDA kernels are not run (a GPU machine runs these cases)"
# Every CUDA case is collected everywhere, and reported as skipped (with NO_CUDA) where there is no GPU.
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_CUDA))]

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


def compile_recording_ops(fn: Callable, backend: str) -> tuple[Callable, list[str]]:
    """``torch.compile(fn, fullgraph=True, backend=backend)``, and the list that receives the name of every op in
    the graphs it traces (e.g. ``"bfr_fast.lincomb"``, without the overload): a test sees the fused op traced."""
    ops: list[str] = []

    def recording(graph: torch.fx.GraphModule, example_inputs: list[torch.Tensor]) -> Callable:
        calls = (node for node in graph.graph.nodes if node.op == "call_function")
        ops.extend(str(node.target).removesuffix(".default") for node in calls)
        return lookup_backend(backend)(graph, example_inputs)

    return torch.compile(fn, fullgraph=True, backend=recording), ops
