"""Argument checks shared by the op wrappers; each error names the argument and what was expected."""

from __future__ import annotations

from collections.abc import Sequence

import torch

FLOAT_DTYPES: tuple[torch.dtype, ...] = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


def check_tensor(
    op: str,
    name: str,
    value: object,
    *,
    ndim: int | None = None,
    min_ndim: int | None = None,
    dtypes: Sequence[torch.dtype] = FLOAT_DTYPES,
) -> torch.Tensor:
    """Checks that ``value`` is a tensor of an accepted dtype and rank and returns it."""
    if not isinstance(value, torch.Tensor):
        raise ValueError(f"{op}: {name} must be a torch.Tensor, got {type(value).__name__}")
    if value.dtype not in dtypes:
        raise ValueError(f"{op}: {name} must have dtype in {[str(d) for d in dtypes]}, got {value.dtype}")
    if ndim is not None and value.dim() != ndim:
        raise ValueError(f"{op}: {name} must be {ndim}-D, got shape {tuple(value.shape)}")
    if min_ndim is not None and value.dim() < min_ndim:
        raise ValueError(f"{op}: {name} must have at least {min_ndim} dims, got shape {tuple(value.shape)}")
    return value


def check_like(op: str, name: str, value: torch.Tensor, ref_name: str, ref: torch.Tensor) -> None:
    """Checks that ``value`` has the shape, dtype and device of ``ref``."""
    if value.shape != ref.shape:
        raise ValueError(f"{op}: {name} must have {ref_name}'s shape {tuple(ref.shape)}, got {tuple(value.shape)}")
    if value.dtype != ref.dtype:
        raise ValueError(f"{op}: {name} must have {ref_name}'s dtype {ref.dtype}, got {value.dtype}")
    if value.device != ref.device:
        raise ValueError(f"{op}: {name} must be on {ref_name}'s device {ref.device}, got {value.device}")


def check_finite(op: str, name: str, value: torch.Tensor) -> None:
    """Raises when ``value`` holds NaN or infinity (one host synchronisation)."""
    if not bool(torch.isfinite(value).all()):
        raise ValueError(f"{op}: {name} must be finite, but it holds NaN or infinite values")
