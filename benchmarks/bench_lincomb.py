"""lincomb: the RK4 final update x + h/6 (k1 + 2 k2 + 2 k3 + k4), fused vs eager vs torch.compile, and a plain copy
of the same bytes (the bandwidth ceiling)."""

from __future__ import annotations

import torch

from benchmarks.harness import Case, copy_of
from bfr_fast.ops import lincomb
from bfr_fast.ops.reference import lincomb_reference


def _rk4_case(device: torch.device, shape: tuple[int, ...], dtype: torch.dtype, per_sample: bool) -> Case:
    gen = torch.Generator(device="cpu").manual_seed(0)
    x, *ks = (torch.randn(shape, generator=gen).to(device, dtype) for _ in range(5))
    h = torch.full((shape[0],), 0.1, device=device) if per_sample else 0.1
    coeffs = [h / 6, h / 3, h / 3, h / 6]
    out = torch.empty_like(x)
    compiled = torch.compile(lincomb_reference)
    bytes_moved = 6 * x.numel() * x.element_size()  # five tensors read, one written
    fns = {
        "fused": lambda: lincomb(x, ks, coeffs, out=out, backend="fused"),
        "eager": lambda: lincomb_reference(x, ks, coeffs),
        "compile": lambda: compiled(x, ks, coeffs),
        "copy": copy_of(bytes_moved, device),
    }
    kind = "per-sample h" if per_sample else "scalar h"
    size = f"{x.numel() / 2**20:g}M" if len(shape) == 1 else " x ".join(map(str, shape))
    name = f"rk4 update, 5 x {size} {str(dtype).removeprefix('torch.')}, {kind}"
    return Case("lincomb", name, fns, bytes_moved, "GB/s")


def cases(device: torch.device, quick: bool) -> list[Case]:
    """RK4 final updates of 4M elements per tensor (64M on a GPU; 256K in quick mode) as 16 samples, and on the CPU
    also as one element per sample (a 1-D state), and as many short and fewer long samples with per-sample h."""
    numel = 2**18 if quick else (2**26 if device.type == "cuda" else 2**22)
    f32 = torch.float32
    result = [
        _rk4_case(device, (16, numel // 16), f32, per_sample=False),
        _rk4_case(device, (16, numel // 16), f32, per_sample=True),
        _rk4_case(device, (16, numel // 16), torch.bfloat16, per_sample=False),
    ]
    if device.type == "cpu":
        result += [
            _rk4_case(device, (numel,), f32, per_sample=False),
            _rk4_case(device, (numel // 40, 40), f32, per_sample=True),
            _rk4_case(device, (numel // 1024, 1024), f32, per_sample=True),
        ]
    return result
