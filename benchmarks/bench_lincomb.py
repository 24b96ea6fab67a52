"""lincomb: the RK4 final update x + h/6 (k1 + 2 k2 + 2 k3 + k4), fused vs eager vs torch.compile."""

from __future__ import annotations

import torch

from benchmarks.harness import Case
from bfr_fast.ops import lincomb
from bfr_fast.ops.reference import lincomb_reference


def _rk4_case(device: torch.device, numel: int, dtype: torch.dtype, per_sample: bool) -> Case:
    batch = 16
    gen = torch.Generator(device="cpu").manual_seed(0)
    x, *ks = (torch.randn(batch, numel // batch, generator=gen).to(device, dtype) for _ in range(5))
    h = torch.full((batch,), 0.1, device=device) if per_sample else 0.1
    coeffs = [h / 6, h / 3, h / 3, h / 6]
    out = torch.empty_like(x)
    compiled = torch.compile(lincomb_reference)
    bytes_moved = 6 * x.numel() * x.element_size()  # five tensors read, one written
    fns = {
        "fused": lambda: lincomb(x, ks, coeffs, out=out, backend="fused"),
        "eager": lambda: lincomb_reference(x, ks, coeffs),
        "compile": lambda: compiled(x, ks, coeffs),
    }
    if device.type == "cuda":
        # The bandwidth ceiling: a device-to-device copy moving the same number of bytes.
        src = torch.empty(bytes_moved // 2, dtype=torch.uint8, device=device)
        dst = torch.empty_like(src)
        fns["copy"] = lambda: dst.copy_(src)
    kind = "per-sample h" if per_sample else "scalar h"
    name = f"rk4 update, 5 x {numel / 2**20:g}M {str(dtype).removeprefix('torch.')}, {kind}"
    return Case("lincomb", name, fns, bytes_moved, "GB/s")


def cases(device: torch.device, quick: bool) -> list[Case]:
    """RK4 final updates at 4M elements per tensor (64M on a GPU; 256K in quick mode)."""
    numel = 2**18 if quick else (2**26 if device.type == "cuda" else 2**22)
    return [
        _rk4_case(device, numel, torch.float32, per_sample=False),
        _rk4_case(device, numel, torch.float32, per_sample=True),
        _rk4_case(device, numel, torch.bfloat16, per_sample=False),
    ]
