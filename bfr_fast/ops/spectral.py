r"""Spectral ops for frequency-compensated training: a radial FFT filter, per-sample band energies, and the
frequency-compensated weighted MSE.

The filter and the band energies take one real FFT per call and compute the radial mask from bin indices in the
kernel; ``fc_weighted_mse`` is one pass of per-sample reductions (:math:`\sum s`, :math:`\sum e`,
:math:`\sum s e`) instead of a materialised weight map, and has its own backward kernel.
"""

from __future__ import annotations

import torch

from bfr_fast.checks import choice, non_negative_float, positive_float
from bfr_fast.ops._checks import check_like, check_tensor
from bfr_fast.ops._extension import fused_available, use_fused
from bfr_fast.ops.reference import (
    accumulation_dtype,
    band_energy_reference,
    fc_weighted_mse_reference,
    frequency_filter_reference,
)

KINDS: tuple[str, ...] = ("low", "high")


def _check_image(op: str, x: object) -> torch.Tensor:
    """Checks a ``(B, C, H, W)`` float input with ``H, W >= 1``."""
    x = check_tensor(op, "x", x, ndim=4)
    if x.shape[2] == 0 or x.shape[3] == 0:
        raise ValueError(f"{op}: x must have H >= 1 and W >= 1, got shape {tuple(x.shape)}")
    return x


def frequency_filter(x: torch.Tensor, cutoff: float, kind: str = "low", backend: str = "auto") -> torch.Tensor:
    r"""Low- or high-pass filters each ``(H, W)`` plane by a radial mask on its 2-D FFT.

    With :math:`f_y, f_x` the FFT bin frequencies in cycles/sample (``torch.fft.fftfreq``), the normalised radius
    :math:`r = \sqrt{(2 f_y)^2 + (2 f_x)^2}` is 1 at the Nyquist frequency of an axis and :math:`\sqrt 2` at the
    corner. ``"low"`` keeps the bins with :math:`r \le` ``cutoff``, ``"high"`` those with :math:`r >` ``cutoff``,
    so ``low + high == x`` up to rounding. The fused kernel takes one ``rfft2``, zeroes the masked bins (the mask
    is computed from bin indices in float64, bit-identical to the eager reference's) and one ``irfft2``.

    Args:
        x: ``(B, C, H, W)`` float32, float16, bfloat16 or float64, any strides, ``H, W >= 1``.
        cutoff: Finite radius ``>= 0``. ``cutoff >= sqrt(2)`` makes ``"low"`` the identity and ``"high"`` zero;
            ``cutoff = 0`` keeps only the mean of each plane in ``"low"``.
        kind: ``"low"`` or ``"high"``.
        backend: ``"auto"`` (fused kernel where built), ``"fused"`` or ``"eager"``.

    Returns:
        The filtered tensor, contiguous, in ``x.dtype``. The FFTs run in float32 (float64 for float64 input).

    NaN policy: NaN and infinity propagate: a non-finite value makes its whole ``(H, W)`` output plane NaN (the
    FFT mixes every pixel of a plane); other planes are unaffected.

    Autograd: the filter is linear and self-adjoint, so its backward is the same filter applied to the gradient.

    Raises:
        ValueError: On a bad argument; the message names it.
    """
    x = _check_image("frequency_filter", x)
    cutoff = non_negative_float("frequency_filter: cutoff", cutoff)
    choice("frequency_filter: kind", kind, KINDS)
    if not use_fused(backend, x.device, "frequency_filter"):
        return frequency_filter_reference(x, cutoff, kind)
    return torch.ops.bfr_fast.frequency_filter.default(x, cutoff, kind == "high")


def band_energy(x: torch.Tensor, cutoff: float, backend: str = "auto") -> torch.Tensor:
    r"""Per-sample energies of the low and high bands of :func:`frequency_filter`, from one FFT.

    ``out[b] = (sum_{c,h,w} low(x)[b]^2, sum_{c,h,w} high(x)[b]^2)`` with the bands of :func:`frequency_filter`
    at the same ``cutoff``. By Parseval both come from one ``rfft2`` of ``x``:
    :math:`\frac{1}{HW}\sum_{c,k} \omega_k M_k |X_{c,k}|^2`, where :math:`\omega_k = 2` for the rfft columns that
    stand for a conjugate pair and 1 for column 0 and (even ``W``) the Nyquist column. The two sum to the total
    energy :math:`\sum x^2`.

    Args:
        x: ``(B, C, H, W)`` float32, float16, bfloat16 or float64, any strides, ``H, W >= 1``.
        cutoff: Finite radius ``>= 0`` (see :func:`frequency_filter`).
        backend: ``"auto"`` (fused kernel where built), ``"fused"`` or ``"eager"``.

    Returns:
        ``(B, 2)`` ``(low, high)`` energies, float32 (float64 for float64 input), accumulated in float64 on the CPU.

    NaN policy: NaN and infinity propagate: a non-finite value in a sample makes both of its energies NaN (or
    infinite); other samples are unaffected.

    Autograd: :math:`\partial E_\text{low}/\partial x = 2\,\mathrm{low}(x)` and
    :math:`\partial E_\text{high}/\partial x = 2\,\mathrm{high}(x)` (the bands are orthogonal projections).

    Raises:
        ValueError: On a bad argument; the message names it.
    """
    x = _check_image("band_energy", x)
    cutoff = non_negative_float("band_energy: cutoff", cutoff)
    if not use_fused(backend, x.device, "band_energy"):
        return band_energy_reference(x, cutoff)
    return torch.ops.bfr_fast.band_energy.default(x, cutoff)


def _check_fc_inputs(pred: object, target: object, source: object) -> None:
    """Checks pred/target ``(B, C, *spatial)`` and source ``(B, Cs, *spatial)``, all non-empty per sample."""
    op = "fc_weighted_mse"
    pred = check_tensor(op, "pred", pred, min_ndim=2)
    target = check_tensor(op, "target", target, min_ndim=2)
    check_like(op, "target", target, "pred", pred)
    source = check_tensor(op, "source", source, min_ndim=2)
    if source.dim() != pred.dim() or source.shape[0] != pred.shape[0] or source.shape[2:] != pred.shape[2:]:
        expected = f"({pred.shape[0]}, Cs, {', '.join(map(str, pred.shape[2:]))})"
        raise ValueError(f"{op}: source must be (B, Cs, *spatial) = {expected} like pred, got {tuple(source.shape)}")
    if source.dtype != pred.dtype:
        raise ValueError(f"{op}: source must have pred's dtype {pred.dtype}, got {source.dtype}")
    if source.device != pred.device:
        raise ValueError(f"{op}: source must be on pred's device {pred.device}, got {source.device}")
    if pred.shape[1:].numel() == 0 or source.shape[1] == 0:
        raise ValueError(
            f"{op}: pred and source need at least one channel and one spatial position, got shapes "
            f"{tuple(pred.shape)} and {tuple(source.shape)}"
        )


def fc_weighted_mse(
    pred: torch.Tensor,
    target: torch.Tensor,
    source: torch.Tensor,
    gamma: float = 1.0,
    eps: float = 1e-6,
    backend: str = "auto",
) -> torch.Tensor:
    r"""Per-sample frequency-compensated MSE: errors weighted up where the source is large.

    .. math::
        \mathrm{loss}_b = \frac{1}{CP}\sum_{c,p}\Big(1 + \gamma\,\frac{s_p}{\bar s + \epsilon}\Big)
        (\mathrm{pred}_{c,p} - \mathrm{target}_{c,p})^2,\qquad s_p = \sum_{c'} |\mathrm{source}_{c',p}|,\quad
        \bar s = \frac1P\sum_p s_p,

    over the ``P`` spatial positions and ``C`` channels of sample ``b``. The fused kernel makes one pass of
    per-sample reductions :math:`S = \sum_p s_p`, :math:`E = \sum_p e_p`, :math:`SE = \sum_p s_p e_p`
    (:math:`e_p = \sum_c (\mathrm{pred} - \mathrm{target})^2`) and returns
    :math:`(E + \gamma\, SE / (S/P + \epsilon)) / (CP)`, without a weight tensor. ``gamma = 0`` is the
    per-sample MSE, as is an all-zero ``source``.

    Args:
        pred: ``(B, C, *spatial)`` float32, float16, bfloat16 or float64 (images ``(B, C, H, W)``, sequences
            ``(B, C, L)``, ...), with at least one channel and one position.
        target: Same shape, dtype and device as ``pred``.
        source: ``(B, Cs, *spatial)`` with ``pred``'s batch size, spatial dims, dtype and device; ``Cs >= 1`` may
            differ from ``C``. Treated as a constant: no gradient flows to it.
        gamma: Finite weight strength ``>= 0``.
        eps: Finite ``> 0``; keeps the weight finite for an all-zero source.
        backend: ``"auto"`` (fused kernel where built), ``"fused"`` or ``"eager"``.

    Returns:
        ``(B,)`` losses, float32 (float64 for float64 input). Channel sums per position are float32; the
        per-sample sums are float64 on the CPU and float32 tree reductions on CUDA.

    NaN policy: NaN and infinity propagate: a non-finite value in ``pred`` or ``target`` makes that sample's loss
    non-finite, one in ``source`` makes it NaN; other samples are unaffected.

    Autograd: exact gradients for ``pred`` and ``target`` from a backward kernel,
    :math:`\partial\mathrm{loss}_b/\partial\mathrm{pred}_{c,p} = 2 w_p (\mathrm{pred} - \mathrm{target})/(CP)`
    and its negative for ``target``; ``source`` gets none.

    Raises:
        ValueError: On a bad argument; the message names it.
    """
    _check_fc_inputs(pred, target, source)
    gamma = non_negative_float("fc_weighted_mse: gamma", gamma)
    eps = positive_float("fc_weighted_mse: eps", eps)
    if not use_fused(backend, pred.device, "fc_weighted_mse"):
        return fc_weighted_mse_reference(pred, target, source, gamma, eps)
    loss, _ = torch.ops.bfr_fast.fc_weighted_mse.default(
        pred.contiguous(), target.contiguous(), source.contiguous(), gamma, eps
    )
    return loss


def _register_meta_and_autograd() -> None:
    """Fake kernels for torch.compile and the autograd formulas of the spectral ops."""

    @torch.library.register_fake("bfr_fast::frequency_filter")
    def _(x, cutoff, high):
        return x.new_empty(x.shape)

    @torch.library.register_fake("bfr_fast::band_energy")
    def _(x, cutoff):
        return x.new_empty((x.shape[0], 2), dtype=accumulation_dtype(x.dtype))

    @torch.library.register_fake("bfr_fast::fc_weighted_mse")
    def _(pred, target, source, gamma, eps):
        dtype = accumulation_dtype(pred.dtype)
        return pred.new_empty((pred.shape[0],), dtype=dtype), pred.new_empty((pred.shape[0],), dtype=dtype)

    @torch.library.register_fake("bfr_fast::fc_weighted_mse_backward")
    def _(grad, pred, target, source, source_mean, gamma, eps):
        return pred.new_empty(pred.shape)

    def filter_setup(ctx, inputs, output):
        _, ctx.cutoff, ctx.high = inputs

    def filter_backward(ctx, grad):
        # The mask is real and symmetric, so F^-1 M F is self-adjoint: the backward is the same filter.
        return torch.ops.bfr_fast.frequency_filter.default(grad, ctx.cutoff, ctx.high), None, None

    torch.library.register_autograd("bfr_fast::frequency_filter", filter_backward, setup_context=filter_setup)

    def energy_setup(ctx, inputs, output):
        x, ctx.cutoff = inputs
        ctx.save_for_backward(x)

    def energy_backward(ctx, grad):
        # E_low = |low(x)|^2 with low an orthogonal projection, so dE_low/dx = 2 low(x); likewise for high.
        (x,) = ctx.saved_tensors
        g = grad.reshape(-1, 2, 1, 1, 1)
        low = torch.ops.bfr_fast.frequency_filter.default(x, ctx.cutoff, False).to(grad.dtype)
        grad_x = 2 * (g[:, 1] * x.to(grad.dtype) + (g[:, 0] - g[:, 1]) * low)
        return grad_x.to(x.dtype), None

    torch.library.register_autograd("bfr_fast::band_energy", energy_backward, setup_context=energy_setup)

    def fc_setup(ctx, inputs, output):
        pred, target, source, ctx.gamma, ctx.eps = inputs
        _, source_mean = output
        ctx.mark_non_differentiable(source_mean)
        ctx.save_for_backward(pred, target, source, source_mean)

    def fc_backward(ctx, grad_loss, grad_source_mean):
        pred, target, source, source_mean = ctx.saved_tensors
        grad = grad_loss.to(source_mean.dtype).contiguous()
        grad_pred = torch.ops.bfr_fast.fc_weighted_mse_backward.default(
            grad, pred, target, source, source_mean, ctx.gamma, ctx.eps
        )
        # source is a constant of the loss: it gets no gradient.
        return grad_pred, -grad_pred if ctx.needs_input_grad[1] else None, None, None, None

    torch.library.register_autograd("bfr_fast::fc_weighted_mse", fc_backward, setup_context=fc_setup)


if fused_available("cpu") or fused_available("cuda"):
    _register_meta_and_autograd()
