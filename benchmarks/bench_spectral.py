"""Spectral ops: fc_weighted_mse (forward; forward + backward), frequency_filter and band_energy, fused vs eager
vs torch.compile of the eager reference, at training sizes (CIFAR-like images, 64x64 latents); the FC loss also
against a plain copy of the bytes it moves (the filter and the band energies are bound by their FFTs instead)."""

from __future__ import annotations

import torch

from benchmarks.harness import Case, copy_of
from bfr_fast.ops import band_energy, fc_weighted_mse, frequency_filter
from bfr_fast.ops.reference import band_energy_reference, fc_weighted_mse_reference, frequency_filter_reference


def _randn(shape: tuple[int, ...], device: torch.device, dtype: torch.dtype, seed: int) -> torch.Tensor:
    gen = torch.Generator(device="cpu").manual_seed(seed)
    return torch.randn(shape, generator=gen).to(device, dtype)


def _describe(shape: tuple[int, ...], dtype: torch.dtype) -> str:
    return f"({', '.join(map(str, shape))}) {str(dtype).removeprefix('torch.')}"


def _fc_case(device: torch.device, shape: tuple[int, ...], dtype: torch.dtype, backward: bool) -> Case:
    pred, target, source = (_randn(shape, device, dtype, seed) for seed in range(3))
    compiled = torch.compile(fc_weighted_mse_reference)
    read = 3 * pred.numel() * pred.element_size()
    if not backward:
        fns = {
            "fused": lambda: fc_weighted_mse(pred, target, source, 1.0, 1e-6, backend="fused"),
            "eager": lambda: fc_weighted_mse_reference(pred, target, source, 1.0, 1e-6),
            "compile": lambda: compiled(pred, target, source, 1.0, 1e-6),
            "copy": copy_of(read, device),
        }
        return Case("fc_weighted_mse", f"forward, {_describe(shape, dtype)}", fns, read, "GB/s")

    # A training step's view: the loss of a prediction that requires grad, and its gradient.
    pred.requires_grad_()

    def step(loss_fn) -> torch.Tensor:
        return torch.autograd.grad(loss_fn(pred, target, source, 1.0, 1e-6).sum(), pred)[0]

    # Forward reads three tensors; backward reads them again and writes the gradient.
    work = 2 * read + pred.numel() * pred.element_size()
    fns = {
        "fused": lambda: step(lambda *a: fc_weighted_mse(*a, backend="fused")),
        "eager": lambda: step(fc_weighted_mse_reference),
        "compile": lambda: step(compiled),
        "copy": copy_of(work, device),
    }
    return Case("fc_weighted_mse", f"forward + backward, {_describe(shape, dtype)}", fns, work, "GB/s")


def _filter_case(device: torch.device, shape: tuple[int, ...], dtype: torch.dtype) -> Case:
    x = _randn(shape, device, dtype, 0)
    compiled = torch.compile(frequency_filter_reference)
    fns = {
        "fused": lambda: frequency_filter(x, 0.5, "high", backend="fused"),
        "eager": lambda: frequency_filter_reference(x, 0.5, "high"),
        "compile": lambda: compiled(x, 0.5, "high"),
    }
    bytes_moved = 2 * x.numel() * x.element_size()  # x read, the filtered image written
    return Case("frequency_filter", f"high-pass 0.5, {_describe(shape, dtype)}", fns, bytes_moved, "GB/s")


def _energy_case(device: torch.device, shape: tuple[int, ...], dtype: torch.dtype) -> Case:
    x = _randn(shape, device, dtype, 0)
    compiled = torch.compile(band_energy_reference)
    fns = {
        "fused": lambda: band_energy(x, 0.5, backend="fused"),
        "eager": lambda: band_energy_reference(x, 0.5),
        "compile": lambda: compiled(x, 0.5),
    }
    return Case("band_energy", f"cutoff 0.5, {_describe(shape, dtype)}", fns, x.numel() * x.element_size(), "GB/s")


def cases(device: torch.device, quick: bool) -> list[Case]:
    """FC loss on (256, 3, 32, 32) images and (64, 4, 64, 64) latents; filter and band energies on the images.

    Quick mode shrinks the batch to 16 images and 4 latents.
    """
    images = (16 if quick else 256, 3, 32, 32)
    latents = (4 if quick else 64, 4, 64, 64)
    f32 = torch.float32
    return [
        _fc_case(device, images, f32, backward=False),
        _fc_case(device, latents, f32, backward=False),
        _fc_case(device, latents, torch.bfloat16, backward=False),
        _fc_case(device, images, f32, backward=True),
        _fc_case(device, latents, f32, backward=True),
        _filter_case(device, images, f32),
        _energy_case(device, images, f32),
    ]
