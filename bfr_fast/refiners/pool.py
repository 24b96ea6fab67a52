r"""Where a data-space refiner's training sources come from: a pool of base samples, or fresh generation.

Both give ``draw(x_real, y) -> x_hat``: one generated sample per real target, of the target's class when labels are
given, so that a conditional base's sample and its real partner always share a class.

**Pool or fresh samples.** Generating :math:`\hat x = G(z)` at every training step costs the base's NFE (e.g. 20
UNet calls) per sample per step, several times the refiner's own step on a CPU. :func:`build_pool` pays it once:
``num_per_class`` samples per class, from which each step draws with replacement. The price is a finite set of
sources: the refiner sees the same :math:`\hat x` many times (the augmentation, redrawn at every step, varies
them), so a pool should be at least as large as the real training set, better a few times larger. A step drawing
from the pool pays only the refiner's own forward and backward (the runs' stage timings:
``docs/results/bfr-digits-seeds/README.md``). :class:`FreshSamples` is the exact alternative, for when the base is
cheap or the budget large.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

import torch

from bfr_fast.checkpoint import atomic_save, load
from bfr_fast.checks import positive_int
from bfr_fast.refiners.generator import FrozenGenerator


class GeneratedSource(Protocol):
    """Gives one generated sample per real target: ``draw(x_real, y)`` of ``x_real``'s shape, of ``y``'s classes."""

    def draw(self, x_real: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor: ...


def _check_labels(name: str, y: torch.Tensor | None, n: int) -> None:
    if y is not None and (
        not isinstance(y, torch.Tensor) or y.shape != (n,) or y.is_floating_point() or y.is_complex()
    ):
        raise ValueError(f"{name} must be a ({n},) integer tensor of labels or None, got {getattr(y, 'shape', y)!r}")


class SamplePool:
    """A fixed set of generated samples, drawn from uniformly at random within each requested class.

    Args:
        x: ``(N, ...)`` generated samples.
        y: ``(N,)`` their class labels in ``[0, num_classes)``, or None for an unconditional base.
        num_classes: Number of classes; every class must have at least one sample. Required with ``y``.
        generator: The :meth:`~bfr_fast.refiners.FrozenGenerator.fingerprint` of the generator that made the
            samples, or None (unknown).

    Raises:
        ValueError: Mismatched shapes, labels out of range, a class without samples, or ``num_classes`` missing.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor | None = None, num_classes: int | None = None,
                 generator: str | None = None) -> None:
        if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.dim() < 2 or x.shape[0] == 0:
            raise ValueError(f"x must be a non-empty floating (N, ...) tensor, got {getattr(x, 'shape', x)!r}")
        _check_labels("y", y, x.shape[0])
        if (y is None) != (num_classes is None):
            raise ValueError("give num_classes exactly when labels y are given")
        self.num_classes = num_classes
        self.generator = generator
        self._classes: tuple[torch.Tensor, torch.Tensor] | None = None  # per class: (count, first row)
        if y is None or num_classes is None:
            self.x, self.y = x, None
            return
        classes = positive_int("num_classes", num_classes)
        y = y.to(device=x.device, dtype=torch.int64)
        if bool(((y < 0) | (y >= classes)).any()) or torch.unique(y).numel() != classes:
            raise ValueError(f"y must hold every class in [0, {classes}) at least once and nothing else")
        counts = torch.bincount(y, minlength=classes)
        order = torch.argsort(y, stable=True)  # samples grouped by class: class c is rows offsets[c] : offsets[c+1]
        self.x, self.y = x[order], y[order]
        self._classes = counts, torch.cumsum(counts, 0) - counts

    def __len__(self) -> int:
        return self.x.shape[0]

    def draw(self, x_real: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """One pool sample per row of ``x_real``, of class ``y[i]`` for row i (any class when ``y`` is None).

        Draws with the global RNG on the pool's device; the result is moved to ``x_real``'s device and dtype.

        Raises:
            ValueError: ``x_real`` does not match the pool's sample shape, or labels for an unlabelled pool.
        """
        if not isinstance(x_real, torch.Tensor) or x_real.shape[1:] != self.x.shape[1:]:
            raise ValueError(
                f"x_real must be (B, {', '.join(map(str, self.x.shape[1:]))}) like the pool's samples, "
                f"got {getattr(x_real, 'shape', x_real)!r}"
            )
        n = x_real.shape[0]
        _check_labels("y", y, n)
        if y is None or self._classes is None:
            if y is not None:
                raise ValueError("y: this pool has no labels (an unconditional base); pass y=None")
            index = torch.randint(len(self), (n,), device=self.x.device)
        else:
            y = y.to(self.x.device)
            class_counts, offsets = self._classes
            counts = class_counts[y]
            within = (torch.rand(n, device=self.x.device) * counts).long().clamp_max(counts - 1)
            index = offsets[y] + within
        return self.x[index].to(device=x_real.device, dtype=x_real.dtype)

    def save(self, path: str | os.PathLike) -> Path:
        """Writes the pool atomically (samples grouped by class, with the generator's fingerprint)."""
        return atomic_save({"x": self.x, "y": self.y, "num_classes": self.num_classes, "generator": self.generator},
                           path)

    @classmethod
    def load(cls, path: str | os.PathLike, device: torch.device | str = "cpu") -> SamplePool:
        """Reads a pool written by :meth:`save` onto ``device``."""
        state = load(path, map_location=device)
        return cls(state["x"], state["y"], state["num_classes"], state.get("generator"))


def build_pool(
    generator: FrozenGenerator,
    sample_shape: tuple[int, ...],
    num_per_class: int,
    num_classes: int | None = None,
    seed: int = 0,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> SamplePool:
    """Generates ``num_per_class`` base samples per class (or in all, unconditionally) once.

    Args:
        generator: The frozen base and its sampler.
        sample_shape: Shape of one sample, e.g. ``(1, 8, 8)``.
        num_per_class: Samples of each class (of the whole pool when ``num_classes`` is None).
        num_classes: Classes of a conditional base (labels ``0 .. num_classes-1``), or None.
        seed: Seed of the starting noise (drawn on the CPU, so the pool is the same on every device).
        device: Where the generation runs and the pool lives.
        progress: Show a progress bar.

    Returns:
        The pool, with the generator's fingerprint.

    Raises:
        ValueError: A sample is not finite (naming the generator): a pool of NaN would train a refiner on NaN.
    """
    positive_int("num_per_class", num_per_class)
    labels = None
    n = num_per_class
    if num_classes is not None:
        labels = torch.arange(num_classes, device=device).repeat_interleave(num_per_class)
        n = num_per_class * num_classes
    noise = torch.randn((n, *sample_shape), generator=torch.Generator().manual_seed(seed)).to(device)
    samples, _ = generator.sample(noise, labels, progress=progress)
    return SamplePool(generator.require_finite(samples, "pool samples"), labels, num_classes, generator.fingerprint())


class FreshSamples:
    """Generates every training source anew: :math:`\\hat x = G(z)`, :math:`z \\sim N(0, I)` (global RNG) at each
    draw, with the target's labels. Exact but costs the base's NFE per sample per training step.

    Args:
        generator: The frozen base and its sampler.
    """

    def __init__(self, generator: FrozenGenerator) -> None:
        self.generator = generator

    def draw(self, x_real: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """``G(z)`` for fresh noise of ``x_real``'s shape, conditioned on ``y``."""
        _check_labels("y", y, x_real.shape[0])
        samples, _ = self.generator.sample(torch.randn_like(x_real), y)
        return samples
