r"""What every refiner shares: a velocity network, the refiner ODE, and its checkpoint file.

A refiner is a second flow, :math:`\frac{dx}{dt} = r_\phi(x, t)`, from a source at t=0 (a generated sample, or a
latent) to its corrected version at t=1. :meth:`Refiner.refine` integrates it with the fixed-step
:class:`~bfr_fast.solvers.ODESolver`: one Euler step is one call of the network, ``x + r(x, 0)``, and nothing is
clamped between steps (clamping would make the map non-invertible and bias it).

Training: a :class:`Refiner` is itself a velocity model, ``refiner(x, t, y)``, so the :class:`~bfr_fast.engine.
trainer.Trainer` trains the refiner module with the loss from its ``training_loss(...)``, and its EMA copy is a
refiner again::

    refiner = DataFlowRefiner(UNet(1, 32, num_classes=10))
    trainer = Trainer(refiner, refiner.training_loss(pool), batches, config)
    trainer.fit()
    refined = trainer.ema_model.eval()
    x, nfe = refined.refine(x_generated, num_steps=1, y=labels, return_nfe=True)  # nfe == 1
    refined.save(run / "refiner.pt")

Each refiner says what it learns from with :meth:`Refiner.training_set`: given every source a refinement run has
(:class:`RefinerData`: the real samples, the pool of base samples, the inversion cache), its loss and the samples it
is trained on. The pipeline trains any registered refiner (:mod:`bfr_fast.refiners.registry`) through it.

Nothing in a refiner refers to the base model that made its training data, so a refiner trained on one base
refines another base's samples (transfer) unchanged.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar, Literal, NamedTuple, overload

import torch
from torch import nn

from bfr_fast.checkpoint import atomic_save, load
from bfr_fast.checks import positive_int
from bfr_fast.engine.trainer import LossFn
from bfr_fast.refiners.inversion import InversionCache
from bfr_fast.refiners.pool import SamplePool
from bfr_fast.solvers import ODESolver

FILE_FORMAT = "bfr_fast.refiner/1"


class RefinerData(NamedTuple):
    """Everything a refiner of one base may learn from; :meth:`Refiner.training_set` takes its part.

    Attributes:
        x: ``(N, ...)`` real training samples (images, flat coordinate vectors).
        y: ``(N,)`` their labels for class-conditional refiners, or None.
        pool: Base samples, one drawn per real target: the sources of the refiners that map generated samples to
            real ones.
        cache: The training set inverted through the base: the latents a latent-space refiner learns.
    """

    x: torch.Tensor
    y: torch.Tensor | None
    pool: SamplePool
    cache: InversionCache


class TrainingSet(NamedTuple):
    """A refiner's training: ``loss(model, x, y)`` over minibatches of ``(x, y)``."""

    loss: LossFn
    x: torch.Tensor
    y: torch.Tensor | None


class Refiner(nn.Module):
    """A refiner's velocity network with the refiner ODE, saving and loading.

    Subclasses set :attr:`kind`, extend :meth:`config` with the hyper-parameters their constructor takes (all
    plain Python values, so the checkpoint loads with ``weights_only=True``), and build their training loss.

    Args:
        network: Velocity model ``network(x, t, y=None)``, t a ``(B,)`` float32 tensor; any ``nn.Module``.
        conditional: Whether the network takes class labels. ``None`` reads it from ``network.num_classes`` (as
            our :class:`~bfr_fast.models.UNet` and :class:`~bfr_fast.models.MLP` have it): conditional when that is
            not None.

    Raises:
        ValueError: ``network`` is not an ``nn.Module``.
    """

    kind: ClassVar[str] = ""
    _kinds: ClassVar[dict[str, type[Refiner]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.kind:
            Refiner._kinds[cls.kind] = cls

    def __init__(self, network: nn.Module, conditional: bool | None = None) -> None:
        super().__init__()
        if not isinstance(network, nn.Module):
            raise ValueError(f"network must be an nn.Module called as network(x, t, y=None), got {type(network)}")
        self.network = network
        if conditional is None:
            conditional = getattr(network, "num_classes", None) is not None
        self.conditional = bool(conditional)

    def config(self) -> dict[str, Any]:
        """The constructor's arguments other than the network: what :meth:`load` needs to rebuild the refiner."""
        return {"conditional": self.conditional}

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """The refiner velocity :math:`r_\\phi(x, t)`; the labels reach the network only when it is conditional.

        Args:
            x: ``(B, ...)`` state.
            t: ``(B,)`` float32 times in [0, 1].
            y: ``(B,)`` labels of the samples, or None. An unconditional refiner ignores them, so callers can pass
                the labels of their samples whatever refiner they hold.
        """
        if self.conditional:
            return self.network(x, t, y)
        return self.network(x, t)

    def training_set(self, data: RefinerData) -> TrainingSet:
        """The loss that trains this refiner and the samples (and labels) of ``data`` it is trained on.

        Raises:
            NotImplementedError: A refiner that does not say what it learns from (it cannot be registered).
        """
        raise NotImplementedError(f"{type(self).__name__} does not define training_set")

    def inference_source(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """The state the refiner ODE starts from, given the sample to refine (the sample itself, by default)."""
        return x

    @overload
    def refine(
        self, x: torch.Tensor, num_steps: int = ..., method: str = ..., y: torch.Tensor | None = ...,
        return_nfe: Literal[False] = ..., batch_size: int | None = ..., generator: torch.Generator | None = ...,
    ) -> torch.Tensor: ...

    @overload
    def refine(
        self, x: torch.Tensor, num_steps: int = ..., method: str = ..., y: torch.Tensor | None = ..., *,
        return_nfe: Literal[True], batch_size: int | None = ..., generator: torch.Generator | None = ...,
    ) -> tuple[torch.Tensor, int]: ...

    @overload
    def refine(
        self, x: torch.Tensor, num_steps: int = ..., method: str = ..., y: torch.Tensor | None = ...,
        return_nfe: bool = ..., batch_size: int | None = ..., generator: torch.Generator | None = ...,
    ) -> torch.Tensor | tuple[torch.Tensor, int]: ...

    def refine(
        self,
        x: torch.Tensor,
        num_steps: int = 1,
        method: str = "euler",
        y: torch.Tensor | None = None,
        return_nfe: bool = False,
        batch_size: int | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, int]:
        r"""Integrates the refiner ODE from its source (t=0) to t=1, without gradients and without clamping.

        Args:
            x: ``(B, ...)`` samples to refine (e.g. a base model's outputs, or latents for the LFR).
            num_steps: Uniform steps over [0, 1].
            method: Fixed-step method: ``"euler"`` (1 NFE per step), ``"midpoint"``/``"heun"`` (2) or ``"rk4"``
                (4). With ``"euler"`` and one step the result is exactly ``x + r(x, 0)``.
            y: ``(B,)`` labels of the samples (used by a conditional refiner).
            return_nfe: Also return the refiner's NFE per sample (network calls; the base model's are not
                included).
            batch_size: Refine in chunks of this many samples (all at once by default).
            generator: Randomness of refiners whose inference source is random (noise injection); others draw
                nothing.

        Returns:
            The refined samples, ``x``'s shape and dtype; with ``return_nfe`` the tuple ``(samples, nfe)``.

        Raises:
            ValueError: An empty ``x``, a bad ``num_steps``, ``method`` or ``batch_size``, or labels that do not
                match ``x``.
        """
        if not isinstance(x, torch.Tensor) or x.dim() < 1 or x.shape[0] == 0:
            raise ValueError(f"x must be a non-empty (B, ...) tensor, got {getattr(x, 'shape', type(x).__name__)}")
        if y is not None and (not isinstance(y, torch.Tensor) or y.shape != (x.shape[0],)):
            raise ValueError(f"y must be a ({x.shape[0]},) tensor of labels, got {getattr(y, 'shape', y)!r}")
        size = x.shape[0] if batch_size is None else positive_int("batch_size", batch_size, why="or None")
        solver = ODESolver(self, method=method)
        outputs, nfe = [], 0
        for start in range(0, x.shape[0], size):
            chunk = self.inference_source(x[start : start + size], generator)
            # forward(x, t, y=None): y=None is what an unlabelled call gets anyway
            labels = None if y is None else y[start : start + size]
            refined, nfe = solver.sample(chunk, num_steps=num_steps, return_nfe=True, y=labels)
            outputs.append(refined)
        result = torch.cat(outputs)
        return (result, nfe) if return_nfe else result

    def save(self, path: str | os.PathLike, metadata: dict[str, Any] | None = None) -> Path:
        """Writes the refiner atomically: its kind, :meth:`config`, the network's ``state_dict`` and ``metadata``.

        Args:
            path: File to write.
            metadata: Plain values for the caller, e.g. how to rebuild the network (architecture settings) or what
                it was trained on; read back by :meth:`read_header`.

        Returns:
            The path written.
        """
        payload = {
            "format": FILE_FORMAT,
            "kind": self.kind,
            "config": self.config(),
            "metadata": dict(metadata or {}),
            "state_dict": self.network.state_dict(),
        }
        return atomic_save(payload, path)

    @staticmethod
    def read_header(path: str | os.PathLike) -> dict[str, Any]:
        """The kind, config and metadata of a saved refiner (to build its network before :meth:`load`).

        Raises:
            FileNotFoundError: No such file.
            ValueError: The file is not a saved refiner.
        """
        payload = _read(path)
        return {key: payload[key] for key in ("kind", "config", "metadata")}

    @classmethod
    def load(cls, path: str | os.PathLike, network: nn.Module) -> Refiner:
        """Rebuilds a saved refiner around ``network`` (same architecture as when saved) and loads its weights.

        Called on :class:`Refiner` it returns whatever kind the file holds; called on a subclass it checks the kind.

        Args:
            path: A file written by :meth:`save`.
            network: A freshly built network of the saved architecture, on the device to use.

        Raises:
            FileNotFoundError: No such file.
            ValueError: Not a saved refiner, or a different kind than ``cls``.
            RuntimeError: The network's parameters do not match the saved ``state_dict``.
        """
        payload = _read(path)
        kind = payload["kind"]
        if kind not in Refiner._kinds:
            raise ValueError(f"{path}: unknown refiner kind {kind!r}; known: {sorted(Refiner._kinds)}")
        target = Refiner._kinds[kind]
        if cls is not Refiner and target is not cls:
            raise ValueError(f"{path}: holds a {kind!r} refiner, not a {cls.kind!r} one")
        refiner = target(network, **payload["config"])
        network.load_state_dict(payload["state_dict"])
        return refiner


def _read(path: str | os.PathLike) -> dict[str, Any]:
    payload = load(path, map_location="cpu")
    if not isinstance(payload, dict) or payload.get("format") != FILE_FORMAT:
        raise ValueError(f"{path}: not a refiner file (expected format {FILE_FORMAT!r})")
    missing = [key for key in ("kind", "config", "metadata", "state_dict") if key not in payload]
    if missing:
        raise ValueError(f"{path}: a damaged refiner file (no {', '.join(missing)}); write it again with Refiner.save")
    return payload
