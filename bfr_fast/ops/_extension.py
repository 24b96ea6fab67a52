"""Loading of the compiled extension ``bfr_fast._C`` and the choice between fused and eager backends."""

from __future__ import annotations

import warnings
from typing import Literal

import torch

Backend = Literal["auto", "fused", "eager"]
BACKENDS: tuple[str, ...] = ("auto", "fused", "eager")

try:
    # Importing registers the torch.ops.bfr_fast kernels. _C is compiled (CMakeLists.txt, csrc/ops.cpp); mypy reads
    # its functions from the stub beside it, bfr_fast/_C.pyi.
    from bfr_fast import _C

    LOAD_ERROR: str | None = None
except (ImportError, OSError) as error:  # missing build, or an ABI mismatch with the installed torch
    LOAD_ERROR = f"{type(error).__name__}: {error}"
    warnings.warn(
        f"bfr_fast: the compiled extension bfr_fast._C could not be loaded ({LOAD_ERROR}); every op runs its "
        "eager PyTorch reference. Reinstall with `pip install --no-build-isolation .` to build it.",
        RuntimeWarning,
        stacklevel=2,
    )


def _registered_device_types() -> frozenset[str]:
    # Looked up once at import: torch.compile then sees a plain Python set, not a call into the dispatcher.
    if LOAD_ERROR is not None:
        return frozenset()
    keys = {"cpu": "CPU", "cuda": "CUDA"}
    return frozenset(
        device
        for device, key in keys.items()
        if torch._C._dispatch_has_kernel_for_dispatch_key("bfr_fast::lincomb", key)
    )


_FUSED_DEVICE_TYPES = _registered_device_types()


def fused_available(device_type: str) -> bool:
    """Whether fused kernels were built and loaded for a device type.

    Args:
        device_type: ``"cpu"`` or ``"cuda"`` (a ``torch.device.type``).

    Returns:
        True when ``bfr_fast._C`` is loaded and has kernels registered for that device type.
    """
    return device_type in _FUSED_DEVICE_TYPES


def backend_report(device: torch.device | str) -> dict[str, str]:
    """Which backend ``backend="auto"`` runs on ``device``, and why: for run logs and ``metrics.json``.

    Args:
        device: Where the ops run.

    Returns:
        ``{"backend": "fused", "extension": <path of the loaded _C>}``, or ``{"backend": "eager", "reason": ...}``
        when no fused kernel exists there (the extension failed to load, or was built without that device).
    """
    device_type = torch.device(device).type
    if fused_available(device_type):
        return {"backend": "fused", "extension": str(_C.__file__)}
    return {"backend": "eager", "reason": LOAD_ERROR or f"bfr_fast._C was built without {device_type} kernels"}


def _require_extension(what: str) -> None:
    if LOAD_ERROR is not None:
        raise RuntimeError(f"{what}: the compiled extension bfr_fast._C is not loaded ({LOAD_ERROR})")


def cpu_isa() -> str:
    """The instruction set the vectorised CPU kernels run: ``"default"`` (baseline x86-64), ``"avx2"`` or ``"avx512"``.

    The best one the CPU supports, unless the environment variable ``BFR_FAST_CPU_ISA`` (read when the extension
    loads) or :func:`set_cpu_isa` chose a lower one. The RMSD kernels choose their own (``BFR_FAST_CPU_BASELINE``).

    Raises:
        RuntimeError: The compiled extension is not loaded.
    """
    _require_extension("cpu_isa")
    return _C.cpu_isa()


def cpu_isas() -> tuple[str, ...]:
    """The instruction sets the vectorised CPU kernels can run on this build and CPU, in increasing order.

    Raises:
        RuntimeError: The compiled extension is not loaded.
    """
    _require_extension("cpu_isas")
    return tuple(_C.cpu_isas())


def set_cpu_isa(isa: str) -> str:
    """Switches the vectorised CPU kernels to ``isa`` (one of :func:`cpu_isas`), for tests and benchmarks.

    Returns:
        The instruction set that ran before, to restore.

    Raises:
        ValueError: ``isa`` is not one of :func:`cpu_isas`.
        RuntimeError: The compiled extension is not loaded.
    """
    _require_extension("set_cpu_isa")
    previous = _C.cpu_isa()
    _C.set_cpu_isa(isa)
    return previous


def use_fused(backend: str, device: torch.device, op: str) -> bool:
    """Resolves a ``backend`` argument to "run the fused kernel" (True) or "run the eager reference" (False).

    Args:
        backend: ``"auto"`` (fused where built), ``"fused"`` (required), or ``"eager"``.
        device: Device of the op's inputs.
        op: Name of the op, for error messages.

    Raises:
        ValueError: ``backend`` is not one of the three, or ``"fused"`` was asked for where no kernel is built.
    """
    if backend == "eager":
        return False
    if backend == "auto":
        return fused_available(device.type)
    if backend == "fused":
        if not fused_available(device.type):
            why = LOAD_ERROR or f"bfr_fast._C was built without {device.type} kernels"
            raise ValueError(f"{op}: backend='fused' but no fused kernel exists for device {device} ({why})")
        return True
    raise ValueError(f"{op}: backend must be one of {BACKENDS}, got {backend!r}")
