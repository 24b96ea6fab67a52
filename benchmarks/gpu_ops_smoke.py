"""Calls every fused op once on small inputs and checks it against its eager reference: the program that
``compute-sanitizer`` (memcheck, racecheck) runs in the GPU check (``benchmarks/gpu_check.py``).

``python -m benchmarks.gpu_ops_smoke [--device cuda|cpu]``; exit status 0 when every op ran and matched, 1 when
one did not (each mismatch printed). Sizes are small (the sanitizers slow kernels down 10-100x) but odd, so that
partial blocks, tile remainders and per-sample reductions of several blocks are all exercised. Run it with
``PYTORCH_NO_CUDA_MEMORY_CACHING=1`` under memcheck, so that every tensor is its own allocation and an access past
its end is caught rather than landing in the caching allocator's slack.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

import torch

from bfr_fast.ops import band_energy, fc_weighted_mse, frequency_filter, fused_available, lincomb
from bfr_fast.ops import pairwise_rmsd, rmsd_min
from bfr_fast.ops.reference import band_energy_reference, fc_weighted_mse_reference
from bfr_fast.ops.reference import frequency_filter_reference, lincomb_reference, pairwise_rmsd_reference
from bfr_fast.ops.reference import rmsd_min_reference


def _checks(device: torch.device) -> list[tuple[str, Callable[[], tuple[object, object, float]]]]:
    """(name, fn) pairs; fn returns (fused result, reference result, tolerance)."""
    gen = torch.Generator().manual_seed(0)

    def randn(*shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return torch.randn(*shape, generator=gen).to(device=device, dtype=dtype)

    checks: list[tuple[str, Callable[[], tuple[object, object, float]]]] = []
    # float64 to 1e-6 only: the kernels take the coefficients in float32.
    for dtype, tol in ((torch.float32, 1e-5), (torch.bfloat16, 2e-2), (torch.float64, 1e-6)):
        x, ks = randn(5, 3, 7, 9, dtype=dtype), [randn(5, 3, 7, 9, dtype=dtype) for _ in range(4)]
        h = randn(5).abs()
        coeffs = [0.1, 0.2, 0.2, 0.1]
        name = str(dtype).removeprefix("torch.")
        checks.append((f"lincomb scalar {name}", lambda x=x, ks=ks, c=coeffs, t=tol: (
            lincomb(x, ks, c, backend="fused"), lincomb_reference(x, ks, c), t)))
        checks.append((f"lincomb per-sample {name}", lambda x=x, ks=ks, h=h, t=tol: (
            lincomb(x, ks[:2], [h, 0.5], backend="fused"), lincomb_reference(x, ks[:2], [h, 0.5]), t)))

        def in_place(x=x, ks=ks, t=tol):
            expected = lincomb_reference(x, ks[:3], [0.3, -0.1, 0.7])
            y = x.clone()
            lincomb(y, ks[:3], [0.3, -0.1, 0.7], out=y, backend="fused")
            return y, expected, t

        def out_arg(x=x, ks=ks, t=tol):
            out = torch.empty_like(x)
            lincomb(x, ks[:1], [2.0], out=out, backend="fused")
            return out, lincomb_reference(x, ks[:1], [2.0]), t

        checks.append((f"lincomb in place {name}", in_place))
        checks.append((f"lincomb out= {name}", out_arg))

    img, target, source = randn(3, 3, 17, 20), randn(3, 3, 17, 20), randn(3, 2, 17, 20)
    for kind in ("low", "high"):
        checks.append((f"frequency_filter {kind}", lambda k=kind: (
            frequency_filter(img, 0.4, k, backend="fused"), frequency_filter_reference(img, 0.4, k), 1e-4)))
    checks.append(("band_energy", lambda: (band_energy(img, 0.3, backend="fused"), band_energy_reference(img, 0.3),
                                            1e-4)))
    checks.append(("fc_weighted_mse forward", lambda: (
        fc_weighted_mse(img, target, source, 0.7, backend="fused"),
        fc_weighted_mse_reference(img, target, source, 0.7, 1e-6), 1e-4)))

    def fc_backward():
        grads = []
        for backend in ("fused", "eager"):
            pred = img.clone().requires_grad_(True)
            fc_weighted_mse(pred, target, source, 0.7, backend=backend).sum().backward()
            grads.append(pred.grad)
        return grads[0], grads[1], 1e-4

    def filter_backward():
        grads = []
        for backend in ("fused", "eager"):
            pred = img.clone().requires_grad_(True)
            (frequency_filter(pred, 0.4, "high", backend=backend) * target).sum().backward()
            grads.append(pred.grad)
        return grads[0], grads[1], 1e-4

    checks.append(("fc_weighted_mse backward", fc_backward))
    checks.append(("frequency_filter backward", filter_backward))

    X, Y = randn(37, 22, 3), randn(29, 22, 3)
    checks.append(("pairwise_rmsd", lambda: (pairwise_rmsd(X, Y, backend="fused"), pairwise_rmsd_reference(X, Y),
                                              1e-3)))
    checks.append(("rmsd_min", lambda: (tuple(rmsd_min(X, Y, backend="fused"))[::2],
                                         tuple(rmsd_min_reference(X, Y))[::2], 1e-3)))
    return checks


def _close(a: object, b: object, tol: float) -> bool:
    if isinstance(a, tuple):
        return all(_close(x, y, tol) for x, y in zip(a, b, strict=True))
    return bool(torch.allclose(a.double(), b.double(), rtol=tol, atol=tol))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if not fused_available(device.type):
        print(f"bfr_fast._C has no {device.type} kernels: nothing to check", file=sys.stderr)
        return 1
    failures = 0
    for name, fn in _checks(device):
        try:
            fused, reference, tol = fn()
            ok = _close(fused, reference, tol)
            message = "ok" if ok else "MISMATCH against the eager reference"
        except Exception as error:  # noqa: BLE001 (report every op, not only the first that breaks)
            ok, message = False, f"ERROR {type(error).__name__}: {error}"
        if device.type == "cuda":
            torch.cuda.synchronize()
        failures += not ok
        print(f"{name}: {message}", flush=True)
    print(f"{failures} of the checks failed" if failures else "all ops ran and matched their references")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
