"""Options of a CLI run, validated once, with one clear error per bad value."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch

from bfr_fast.engine.trainer import PRECISIONS
from bfr_fast.metrics.image import PRECISION_RECALL_K
from bfr_fast.metrics.inception import InceptionExtractor

PATH_OPTIONS = ("out", "data_root", "inception", "cache_dir", "topology")

ENERGY_CONSTRAINTS = ("hbonds", "none")
"""``--energy-constraints``: project generated conformers onto the MD's X-H bond constraints before their energy
(``hbonds``, the molecular recipes' default) or score them as generated (``none``)."""

COORDINATES = ("cartesian", "internal")
"""``--coordinates``: what the molecular recipes' networks model: standardised Cartesian coordinates of the aligned
frames, or standardised internal coordinates (bond lengths, angles, torsions of a Z-matrix)."""


def check_num_samples(num_samples: int | None) -> None:
    """Refuses ``--num-samples`` (None: the default) too small to score a row, before any training.

    Raises:
        ValueError: Fewer than ``PRECISION_RECALL_K + 1`` samples: precision and recall compare each sample with
            its k nearest neighbours in its own set.
    """
    if num_samples is not None and num_samples <= PRECISION_RECALL_K:
        raise ValueError(f"--num-samples must be at least {PRECISION_RECALL_K + 1} (precision and recall need "
                         f"more samples than their k = {PRECISION_RECALL_K}), got {num_samples}")


def default_cache_dir() -> Path:
    """Where trained feature extractors are cached: ``$BFR_FAST_CACHE`` or ``~/.cache/bfr_fast``."""
    return Path(os.environ.get("BFR_FAST_CACHE", Path.home() / ".cache" / "bfr_fast"))


def json_value(value: Any) -> Any:
    """An option's value as ``config.json`` records it (paths as strings)."""
    return str(value) if isinstance(value, Path) else value


def resolve_device(name: str) -> torch.device:
    """``"auto"`` is CUDA when present, else the CPU; an unavailable CUDA request is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:  # torch's message lists twenty device types this library has no kernels for
        raise ValueError(f"--device must be auto, cpu, cuda or cuda:N, got {name!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available on this machine (use --device cpu)")
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"--device must be auto, cpu, cuda or cuda:N, got {name!r}")
    return device


@dataclass
class RunOptions:
    """Everything the CLI can set. ``None`` means "the recipe's default"."""

    recipe: str
    out: Path
    device: str = "auto"
    seed: int = 0
    data: str | None = None
    data_root: Path | None = None
    steps: int | None = None
    base_steps: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    precision: str = "fp32"
    num_samples: int | None = None
    sampler_steps: int | None = None
    inception: Path | None = None
    cache_dir: Path | None = None
    resume: bool = False
    seeds: int | None = None
    select: str | None = None
    topology: Path | None = None
    selection: str | None = None
    energy_constraints: str | None = None
    coordinates: str | None = None

    def __post_init__(self) -> None:
        for name in ("steps", "base_steps", "batch_size", "num_samples", "sampler_steps", "seeds"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be a positive integer, got {value}")
        if self.lr is not None and not self.lr > 0:
            raise ValueError(f"--lr must be positive, got {self.lr}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"--precision must be one of {PRECISIONS}, got {self.precision!r}")
        check_num_samples(self.num_samples)
        if self.inception is not None:
            try:  # loaded now, not after training: a wrong file is found before step 1
                InceptionExtractor(self.inception)
            except (FileNotFoundError, ValueError) as error:
                raise ValueError(f"--inception: {error}") from None
        if self.select is not None and not [p for p in self.select.split(",") if p.strip()]:
            raise ValueError(f"--select must name at least one part, got {self.select!r}")
        if self.selection is not None and not self.selection.strip():
            raise ValueError("--selection must be an mdtraj atom selection such as 'all' or 'not element H', got ''")
        if self.energy_constraints is not None and self.energy_constraints not in ENERGY_CONSTRAINTS:
            raise ValueError(f"--energy-constraints must be one of {ENERGY_CONSTRAINTS}, "
                             f"got {self.energy_constraints!r}")
        if self.coordinates is not None and self.coordinates not in COORDINATES:
            raise ValueError(f"--coordinates must be one of {COORDINATES}, got {self.coordinates!r}")

    def to_json(self) -> dict[str, Any]:
        return {k: json_value(v) for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, payload: dict[str, Any]) -> RunOptions:
        """The options :meth:`to_json` wrote (keys of options that no longer exist are ignored)."""
        names = {f.name for f in fields(cls)}
        # Any: JSON values, one per field; __post_init__ checks them
        values: dict[str, Any] = {k: (Path(v) if k in PATH_OPTIONS and v is not None else v)
                                  for k, v in payload.items() if k in names}
        return cls(**values)
