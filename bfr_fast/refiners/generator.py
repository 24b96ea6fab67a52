r"""The frozen base generator of BFR: a pretrained velocity model with a fixed-step sampler.

:math:`G(z)` integrates the base ODE from noise (t=0) to data (t=1); :math:`G^{-1}(x)` integrates it back on the same
grid (:meth:`ODESolver.invert <bfr_fast.solvers.ODESolver.invert>`). Refiners meet the base only through this
object, and only while their training data is made (a pool of generated samples, an inversion cache) or, for the
LFR, when the refined latent is decoded.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable

import torch
from torch import nn

from bfr_fast.checks import positive_int
from bfr_fast.progress import progress_bar
from bfr_fast.solvers import TABLEAUX, ODESolver
from bfr_fast.solvers.ode_solver import VelocityModel


class FrozenGenerator:
    """A base velocity model ``model(x, t, y=None)`` sampled (and inverted) with one fixed-step method.

    The model is only called, never trained or put in another mode: give it in eval mode (e.g. an EMA copy), and
    wrap it in :class:`~bfr_fast.models.ClassifierFreeGuidance` first for guided sampling. A DDPM plugs in as
    :class:`~bfr_fast.paths.ProbabilityFlowVelocity`.

    Args:
        model: The base velocity model.
        method: ``"euler"``, ``"midpoint"``, ``"heun"`` or ``"rk4"``.
        num_steps: Steps over [0, 1].
        batch_size: Samples per solver call (memory bound only: results do not depend on it).
        name: What errors call it (``"--generator pkg.module:make"`` from the CLIs).

    Raises:
        ValueError: Unknown ``method``, or a non-positive ``num_steps`` or ``batch_size``.
    """

    def __init__(self, model: VelocityModel, method: str = "euler", num_steps: int = 20, batch_size: int = 500,
                 name: str = "the generator") -> None:
        positive_int("num_steps", num_steps)
        positive_int("batch_size", batch_size)
        self.solver = ODESolver(model, method=method)
        self.model = model
        self.method = method
        self.num_steps = num_steps
        self.batch_size = batch_size
        self.name = name

    @property
    def nfe(self) -> int:
        """Base-model calls per sample for one :meth:`sample` (or :meth:`invert`): steps × stages."""
        return self.num_steps * TABLEAUX[self.method].num_stages

    def fingerprint(self) -> str:
        """A SHA-256 digest of what the samples depend on: the sampler, the model's weights and buffers, and the
        source code of its modules' classes (of the model itself, when it is a plain function).

        Caches made from the generator store it, so that a resumed run can tell that its weights or code changed
        since. It is the same on every device.
        """
        digest = hashlib.sha256(f"{self.method} {self.num_steps}".encode())
        if not isinstance(self.model, nn.Module):
            digest.update(_source_of(self.model))
            return digest.hexdigest()
        for cls in sorted({type(m) for m in self.model.modules()}, key=lambda c: f"{c.__module__}.{c.__qualname__}"):
            digest.update(_source_of(cls))
        for key, value in self.model.state_dict().items():
            tensor = value.detach().cpu().contiguous().reshape(-1)
            digest.update(f"{key} {tensor.dtype} {tuple(value.shape)}".encode())
            digest.update(tensor.view(torch.uint8).numpy().tobytes())
        return digest.hexdigest()

    def require_finite(self, values: torch.Tensor, what: str) -> torch.Tensor:
        """Returns ``values`` (computed with this generator) if every one is finite.

        Raises:
            ValueError: Naming the generator and how many rows of ``what`` hold NaN or infinite values.
        """
        bad = int((~torch.isfinite(values.flatten(1))).any(dim=1).sum())
        if bad:
            raise ValueError(f"{self.name} gave NaN or infinite values in {bad} of {values.shape[0]} {what}; fix "
                             "the network or its options so that it returns finite velocities")
        return values

    def sample(
        self, noise: torch.Tensor, y: torch.Tensor | None = None, progress: bool = False
    ) -> tuple[torch.Tensor, int]:
        """:math:`G(z)`: integrates from ``noise`` at t=0 to t=1, in batches, without gradients.

        Args:
            noise: ``(N, ...)`` starting points.
            y: ``(N,)`` class labels for a conditional model, or None.
            progress: Show a progress bar over the batches (when stderr is a terminal).

        Returns:
            ``(samples, nfe)``: samples in ``noise``'s shape (not clamped) and the base NFE per sample.
        """
        return self._run(self.solver.sample, noise, y, progress, "generate")

    def invert(
        self, x: torch.Tensor, y: torch.Tensor | None = None, progress: bool = False
    ) -> tuple[torch.Tensor, int]:
        """:math:`G^{-1}(x)`: integrates from ``x`` at t=1 back to t=0 on the sampling grid (same arguments)."""
        return self._run(self.solver.invert, x, y, progress, "invert")

    def _run(
        self, integrate: Callable[..., torch.Tensor | tuple[torch.Tensor, int]], x: torch.Tensor,
        y: torch.Tensor | None, progress: bool, label: str,
    ) -> tuple[torch.Tensor, int]:
        if not isinstance(x, torch.Tensor) or x.dim() < 1 or x.shape[0] == 0:
            raise ValueError(f"expected a non-empty (N, ...) tensor, got {getattr(x, 'shape', type(x).__name__)}")
        if y is not None and (not isinstance(y, torch.Tensor) or y.shape != (x.shape[0],)):
            raise ValueError(f"y must be a ({x.shape[0]},) tensor of labels, got {getattr(y, 'shape', y)!r}")
        outputs, nfe = [], 0
        starts = range(0, x.shape[0], self.batch_size)
        for start in progress_bar(starts, enabled=progress, desc=label, dynamic_ncols=True):
            extras = {} if y is None else {"y": y[start : start + self.batch_size]}
            chunk = x[start : start + self.batch_size]
            result = integrate(chunk, num_steps=self.num_steps, return_nfe=True, **extras)
            assert isinstance(result, tuple)  # return_nfe=True: (samples, nfe)
            out, nfe = result
            outputs.append(out)
        return torch.cat(outputs), nfe


def _source_of(obj: object) -> bytes:
    """The source code of a class or function, or its qualified name where none is found (built in, made at run
    time)."""
    try:
        return inspect.getsource(obj).encode()  # type: ignore[arg-type]
    except (OSError, TypeError):
        return f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', type(obj).__qualname__)}".encode()
