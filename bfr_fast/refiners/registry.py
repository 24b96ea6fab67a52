"""The refiners a refinement run knows by name: one :class:`RegisteredRefiner` each, in the table's order.

The refinement pipeline trains, distils and evaluates a refiner from its entry; ``python -m bfr_fast.refine
--refiners`` and ``python -m bfr_fast.sample --refiner`` offer it, with its description; the recipes that train
every refiner train it. Adding a refiner is its module (a :class:`~bfr_fast.refiners.Refiner` subclass with a
``kind`` and a ``training_set``) and its entry in :data:`REGISTRY`: nothing else names it.

A refiner's name is its class's ``kind``, the one name of its saved files (``checkpoints/<name>.pt``, the trainer;
``checkpoints/<name>-refiner.pt``, :meth:`~bfr_fast.refiners.Refiner.save`), its rows' ``method`` and its
``--refiners`` value. Its 1-NFE student is ``<name>_reflow`` (:func:`student_name`).
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from torch import nn

from bfr_fast.refiners.base import Refiner
from bfr_fast.refiners.dfr import DataFlowRefiner
from bfr_fast.refiners.fmrefiner import FMRefiner
from bfr_fast.refiners.lfr import LatentFlowRefiner
from bfr_fast.refiners.noise_injection import NoiseInjectionRefiner

Rows = tuple[tuple[str, int], ...]
"""Table rows of a refiner, each ``(solver, steps)``."""

STUDENT_SUFFIX = "_reflow"
STUDENT_ROWS: Rows = (("euler", 1),)
"""A 1-NFE student's rows: one Euler step."""
BASELINE_ROWS: Rows = (("euler", 1), ("euler", 10))
"""1 NFE and 10, where the BFR paper evaluates its baselines."""
BFR_ROWS: Rows = (("euler", 1), ("euler", 10), ("rk4", 1))
"""1 and 10 Euler steps, and one RK4 step (4 NFE: the BFR authors' notebooks' "1-NFE" protocol)."""


def student_name(name: str) -> str:
    """The name of the 1-NFE student of the refiner ``name`` (its checkpoints and rows)."""
    return f"{name}{STUDENT_SUFFIX}"


@dataclass(frozen=True)
class RegisteredRefiner:
    """A refiner the pipeline, the command lines and the recipes know by name.

    Attributes:
        refiner: Its class, built as ``refiner(network, **settings)``; its ``kind`` is the refiner's name.
        description: One line for the command lines' help.
        rows: Its default evaluation budget: the table rows it is scored at.
        seed_offset: Its minibatches are seeded with the run's seed + this (distinct per refiner, fixed, so that a
            run's networks see different batch orders and a rerun the same ones).
        student_seed_offset: Its 1-NFE student's offset, or None: it has no student.
        refine_default: Trained by ``python -m bfr_fast.refine`` when ``--refiners`` is not given.
    """

    refiner: type[Refiner]
    description: str
    rows: Rows
    seed_offset: int
    student_seed_offset: int | None = None
    refine_default: bool = False

    @property
    def name(self) -> str:
        """The refiner's name: its class's ``kind``."""
        return self.refiner.kind

    @property
    def has_student(self) -> bool:
        """Whether the pipeline distils it into a 1-NFE student (:func:`student_name`)."""
        return self.student_seed_offset is not None

    @property
    def settings(self) -> frozenset[str]:
        """The hyper-parameters its constructor takes besides the network (``alpha``, ``sigma_d``, ...)."""
        return frozenset(inspect.signature(self.refiner).parameters) - {"network"}

    def build(self, network: nn.Module, settings: Mapping[str, Any] | None = None) -> Refiner:
        """A fresh, untrained refiner around ``network``, with those of ``settings`` its constructor takes (its
        defaults for the others)."""
        return self.refiner(network, **{k: v for k, v in (settings or {}).items() if k in self.settings})


REGISTRY: Mapping[str, RegisteredRefiner] = MappingProxyType({entry.name: entry for entry in (
    RegisteredRefiner(NoiseInjectionRefiner, "DiffuseVAE-style baseline, the sample plus Gaussian noise refined",
                      BASELINE_ROWS, seed_offset=1),
    RegisteredRefiner(FMRefiner, "FMRefiner baseline, trained on noised real data only", BASELINE_ROWS,
                      seed_offset=2),
    RegisteredRefiner(DataFlowRefiner, "BFR's data-space refiner, a flow from the base's samples to real ones",
                      BFR_ROWS, seed_offset=3, student_seed_offset=5, refine_default=True),
    RegisteredRefiner(LatentFlowRefiner, "BFR's latent-space refiner, a flow from noise to the latents of real data",
                      BFR_ROWS, seed_offset=4, student_seed_offset=6, refine_default=True),
)})
"""Every refiner by name, in the order they are trained and tabulated."""

SAMPLE_DEFAULT = student_name(LatentFlowRefiner.kind)
"""What ``python -m bfr_fast.sample`` draws from when ``--refiner`` is not given: the LFR's 1-NFE student."""


def names() -> tuple[str, ...]:
    """The registered refiners' names, in :data:`REGISTRY`'s order."""
    return tuple(REGISTRY)


def refine_defaults() -> tuple[str, ...]:
    """The refiners ``python -m bfr_fast.refine`` trains by default."""
    return tuple(name for name, entry in REGISTRY.items() if entry.refine_default)


def students() -> tuple[str, ...]:
    """The names of the 1-NFE students, in :data:`REGISTRY`'s order."""
    return tuple(student_name(name) for name, entry in REGISTRY.items() if entry.has_student)


def table_rows() -> dict[str, Rows]:
    """Refiner or student name -> its rows, in the table's order: each refiner, then its student."""
    rows: dict[str, Rows] = {}
    for name, entry in REGISTRY.items():
        rows[name] = entry.rows
        if entry.has_student:
            rows[student_name(name)] = STUDENT_ROWS
    return rows


def taking(setting: str) -> RegisteredRefiner:
    """The registered refiner whose constructor takes the hyper-parameter ``setting`` (e.g. ``alpha``).

    Raises:
        ValueError: None takes it, or several do.
    """
    found = [entry for entry in REGISTRY.values() if setting in entry.settings]
    if len(found) != 1:
        raise ValueError(f"{setting!r} is a setting of {[e.name for e in found]}; expected exactly one refiner")
    return found[0]


def check_names(requested: Iterable[str], what: str = "refiners") -> tuple[str, ...]:
    """The ``requested`` refiners, checked and in :data:`REGISTRY`'s order.

    Raises:
        ValueError: None requested, or a name not in :data:`REGISTRY` (``what`` names the option in the message).
    """
    requested = tuple(requested)
    unknown = sorted(set(requested) - set(REGISTRY))
    if unknown or not requested:
        raise ValueError(f"{what}: unknown {unknown or list(requested)}; choose from {','.join(REGISTRY)}")
    return tuple(name for name in REGISTRY if name in requested)


def describe(include_students: bool = False) -> str:
    """``name (description)`` of every refiner (with ``include_students``, each followed by its student's name),
    ``; ``-separated: the command lines' help."""
    parts = []
    for name, entry in REGISTRY.items():
        parts.append(f"{name} ({entry.description})")
        if include_students and entry.has_student:
            parts.append(f"{student_name(name)} (the 1-NFE reflow student of {name})")
    return "; ".join(parts)
