"""Atomic files: a crash or Ctrl-C mid-write never leaves a truncated checkpoint or cache file behind."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> Path:
    """Writes a file atomically: ``write`` fills a temporary file, which then replaces ``path``.

    The temporary file lives in the same folder; it is flushed and fsynced, then renamed over ``path`` (an
    atomic replace on POSIX), and the folder is fsynced so the rename itself survives a crash. If ``write``
    raises, the temporary file is removed and ``path`` is left as it was.

    Args:
        path: the file to write; its folder is created if missing.
        write: called once with the open binary temporary file.

    Returns:
        The path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return path


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """Saves ``obj`` with :func:`torch.save` to ``path`` atomically (see :func:`atomic_write`).

    Returns:
        The path written.
    """
    return atomic_write(path, lambda f: torch.save(obj, f))


def load(path: str | os.PathLike, map_location: str | torch.device | None = "cpu") -> Any:
    """Loads a checkpoint with ``weights_only=True`` (no arbitrary code from the file runs).

    Raises:
        FileNotFoundError: When ``path`` does not exist, naming it.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    return torch.load(path, map_location=map_location, weights_only=True)
