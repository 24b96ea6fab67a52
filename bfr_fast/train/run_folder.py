"""The run folder every CLI run writes: resolved config, log, checkpoints, metrics.json, results.md, PNG grids."""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bfr_fast.checkpoint import atomic_write

log = logging.getLogger("bfr_fast")


def write_text_atomic(path: Path, text: str) -> Path:
    """Writes ``text`` to ``path`` atomically (:func:`bfr_fast.checkpoint.atomic_write`): never half a file."""
    return atomic_write(path, lambda f: f.write(text.encode()))


@dataclass
class RunFolder:
    """Paths inside one run's output folder."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.json"

    @property
    def log(self) -> Path:
        return self.root / "log.txt"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.json"

    @property
    def results(self) -> Path:
        return self.root / "results.md"

    def checkpoint(self, name: str) -> Path:
        return self.root / "checkpoints" / f"{name}.pt"

    def samples(self, name: str) -> Path:
        return self.root / "samples" / f"{name}.png"

    def write_json(self, path: Path, payload: Any) -> Path:
        return write_text_atomic(path, json.dumps(payload, indent=2, default=str) + "\n")


def configure_logging(log_file: Path | None, is_main: bool = True) -> None:
    """Logs INFO to the run's ``log.txt`` and WARNING+ to stderr (tqdm owns the terminal's progress lines)."""
    log.setLevel(logging.INFO)
    log.handlers.clear()
    log.propagate = False
    if not is_main:
        log.addHandler(logging.NullHandler())
        return
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S")
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.WARNING)
    console.setFormatter(fmt)
    log.addHandler(console)
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(log_file)
        handler.setFormatter(fmt)
        log.addHandler(handler)
