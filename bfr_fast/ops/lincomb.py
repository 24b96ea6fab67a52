r"""``lincomb``: the fused linear combination behind every ODE step, :math:`x + \sum_i c_i k_i`.

An RK4 final update :math:`x + \tfrac{h}{6}(k_1 + 2k_2 + 2k_3 + k_4)` is one call reading each tensor once, where
eager PyTorch reads and writes a temporary per term.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from bfr_fast.ops._checks import check_like, check_tensor
from bfr_fast.ops._extension import fused_available, use_fused
from bfr_fast.ops.reference import lincomb_reference

MAX_TERMS = 8
Coefficient = float | torch.Tensor


def _split_coeffs(
    coeffs: Sequence[Coefficient], x: torch.Tensor, n_terms: int
) -> tuple[list[float], list[torch.Tensor | None]]:
    """Validates ``coeffs`` and splits them into the op's scalar list and optional per-sample vectors."""
    if isinstance(coeffs, (torch.Tensor, float, int)) or len(coeffs) != n_terms:
        raise ValueError(f"lincomb: coeffs must be a sequence of {n_terms} coefficients, one per k")
    scalars: list[float] = []
    vectors: list[torch.Tensor | None] = []
    batch = x.shape[0]
    for i, c in enumerate(coeffs):
        if isinstance(c, torch.Tensor):
            if c.dim() != 1 or c.shape[0] != batch:
                raise ValueError(f"lincomb: coeffs[{i}] must be a float or a ({batch},) tensor, got shape {tuple(c.shape)}")
            if c.device != x.device:
                raise ValueError(f"lincomb: coeffs[{i}] must be on x's device {x.device}, got {c.device}")
            if not c.is_floating_point():
                raise ValueError(f"lincomb: coeffs[{i}] must be a floating-point tensor, got {c.dtype}")
            scalars.append(1.0)
            vectors.append(c.float().contiguous())
        elif isinstance(c, (float, int)) and not isinstance(c, bool):
            scalars.append(float(c))
            vectors.append(None)
        else:
            raise ValueError(f"lincomb: coeffs[{i}] must be a float or a (B,) tensor, got {type(c).__name__}")
    return scalars, vectors


def _overlaps(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether two tensors share any bytes of storage."""
    if a.untyped_storage().data_ptr() != b.untyped_storage().data_ptr():
        return False
    a_lo, b_lo = a.data_ptr(), b.data_ptr()
    a_hi = a_lo + a.element_size() * a.numel()
    b_hi = b_lo + b.element_size() * b.numel()
    return a_lo < b_hi and b_lo < a_hi


def lincomb(
    x: torch.Tensor,
    ks: Sequence[torch.Tensor],
    coeffs: Sequence[Coefficient],
    out: torch.Tensor | None = None,
    backend: str = "auto",
) -> torch.Tensor:
    r"""Computes :math:`x + \sum_{i} c_i k_i` in one pass over memory.

    Args:
        x: ``(B, ...)`` float tensor (float32, float16, bfloat16 or float64).
        ks: 1 to 8 tensors with ``x``'s shape, dtype and device.
        coeffs: One coefficient per ``k``: a Python float, or a ``(B,)`` floating tensor on ``x``'s device applied
            per sample (broadcast over the non-batch dims), e.g. per-sample step sizes. The fused kernels take
            coefficients in float32.
        out: Optional destination with ``x``'s shape, dtype and device. ``out=x`` updates ``x`` in place; any
            other ``out`` must not overlap ``x`` or the ``ks``.
        backend: ``"auto"`` (fused kernel where built), ``"fused"`` or ``"eager"``.

    Returns:
        The combination, in ``x.dtype`` (``out`` when given). Arithmetic is in float32 for every input dtype.

    NaN policy: NaN and infinity propagate elementwise, as in the eager expression.

    Autograd: differentiable in ``x``, the ``ks`` and tensor coefficients (the latter through the eager
    reference). With ``out`` and inputs that require grad, the result is computed differentiably, then copied.

    Raises:
        ValueError: On a bad argument; the message names it.
    """
    check_tensor("lincomb", "x", x, min_ndim=1)
    if isinstance(ks, torch.Tensor) or not 1 <= len(ks) <= MAX_TERMS:
        raise ValueError(f"lincomb: ks must be a sequence of 1 to {MAX_TERMS} tensors")
    for i, k in enumerate(ks):
        check_tensor("lincomb", f"ks[{i}]", k)
        check_like("lincomb", f"ks[{i}]", k, "x", x)
    scalars, vectors = _split_coeffs(coeffs, x, len(ks))
    if out is not None:
        check_tensor("lincomb", "out", out)
        check_like("lincomb", "out", out, "x", x)
        if out is not x and any(_overlaps(out, t) for t in (x, *ks)):
            raise ValueError("lincomb: out must be x itself or must not overlap x or the ks")

    if not use_fused(backend, x.device, "lincomb"):
        result = lincomb_reference(x, ks, coeffs)
        return result if out is None else out.copy_(result)

    if torch.is_grad_enabled() and any(isinstance(c, torch.Tensor) and c.requires_grad for c in coeffs):
        # Gradients for the coefficients themselves are left to autograd through the reference.
        result = lincomb_reference(x, ks, coeffs)
        return result if out is None else out.copy_(result)
    grad_needed = torch.is_grad_enabled() and any(t.requires_grad for t in (x, *ks))
    xc, kc = x.contiguous(), [k.contiguous() for k in ks]
    if out is None or grad_needed or not out.is_contiguous():
        result = torch.ops.bfr_fast.lincomb.default(xc, kc, scalars, vectors)
        return result if out is None else out.copy_(result)
    if out is x:
        torch.ops.bfr_fast.lincomb_.default(x, kc, scalars, vectors)
    else:
        torch.ops.bfr_fast.lincomb_out.default(xc, kc, scalars, vectors, out)
    return out


def _register_meta_and_autograd() -> None:
    """Fake kernels for torch.compile and the backward of the functional op."""

    @torch.library.register_fake("bfr_fast::lincomb")
    def _(x, ks, scalars, vectors):
        return torch.empty_like(x)

    @torch.library.register_fake("bfr_fast::lincomb_")
    def _(x, ks, scalars, vectors):
        return None

    @torch.library.register_fake("bfr_fast::lincomb_out")
    def _(x, ks, scalars, vectors, out):
        return None

    def setup_context(ctx, inputs, output):
        x, ks, scalars, vectors = inputs
        ctx.scalars, ctx.vectors = scalars, vectors
        ctx.needs_k = [k.requires_grad for k in ks]

    def backward(ctx, grad):
        # d out / d k_i = c_i. Tensor coefficients that require grad never reach the fused op (see lincomb).
        grad_ks = [
            lincomb_reference(torch.zeros_like(grad), [grad], [c if v is None else c * v]) if needed else None
            for c, v, needed in zip(ctx.scalars, ctx.vectors, ctx.needs_k, strict=True)
        ]
        # torch.library flattens a Tensor?[] holding a None as one leaf, and one of tensors as a list.
        no_grad_vectors = None if any(v is None for v in ctx.vectors) else [None] * len(ctx.vectors)
        return grad, grad_ks, None, no_grad_vectors

    torch.library.register_autograd("bfr_fast::lincomb", backward, setup_context=setup_context)


if fused_available("cpu") or fused_available("cuda"):
    _register_meta_and_autograd()
