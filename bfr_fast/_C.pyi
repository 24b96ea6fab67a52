"""Type stub of the compiled extension ``bfr_fast._C`` (csrc/ops.cpp), which mypy cannot read.

Importing it registers the ``torch.ops.bfr_fast`` kernels; its Python functions are the CPU kernels' instruction-set
queries and switch. Keep this in step with ``methods[]`` in csrc/ops.cpp.
"""

def cpu_rmsd_isa() -> str:
    """The CPU code path of the RMSD kernels: ``"x86-64-v3"`` or ``"baseline"``."""

def cpu_isa() -> str:
    """The instruction set the vectorised CPU kernels run: ``"default"``, ``"avx2"`` or ``"avx512"``."""

def cpu_isas() -> list[str]:
    """The instruction sets the vectorised CPU kernels can run on this build and CPU, in increasing order."""

def set_cpu_isa(isa: str, /) -> None:
    """Switches the vectorised CPU kernels to ``isa`` (one of :func:`cpu_isas`); ``ValueError`` otherwise."""
