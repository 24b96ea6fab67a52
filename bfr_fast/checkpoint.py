"""Atomic files: a crash or Ctrl-C mid-write never leaves a truncated checkpoint or cache file behind."""

from __future__ import annotations

import errno
import os
import pickle
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch


def _temp_head(path: Path) -> str:
    """How the temporary files of ``path`` begin; the writer's pid and mkstemp's random part follow."""
    return f".{path.name}."


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True


def remove_stale_temp_files(path: str | os.PathLike) -> list[Path]:
    """Removes the temporary files that interrupted :func:`atomic_write` calls for ``path`` left behind.

    A write killed too hard to clean up after itself (SIGKILL, power loss) leaves a full-size hidden
    ``.<name>.<pid>.<random>.tmp`` beside ``path``. Only those of processes no longer running are removed: a
    temporary file of a live process is a write in progress (a cache shared by two runs, say).

    Returns:
        The files removed.
    """
    path = Path(path)
    head = _temp_head(path)
    removed = []
    for candidate in path.parent.glob(".*.tmp"):
        if not candidate.name.startswith(head):
            continue
        # "<pid>.<random>" exactly: a longer tail belongs to another file whose name extends path's
        tail = candidate.name[len(head):-len(".tmp")].split(".")
        if len(tail) == 2 and tail[0].isdigit() and not _process_alive(int(tail[0])):
            candidate.unlink(missing_ok=True)
            removed.append(candidate)
    return removed


def _file_mode() -> int:
    """The mode ``open()`` would give a new file (0o666 less the umask), not mkstemp's private 0o600."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


UNWRITABLE = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS})
"""Errnos of a disk that is full or may not be written: the user's to fix, not a bug."""


def write_failure(error: BaseException, where: str | os.PathLike | None = None) -> str | None:
    """``"cannot write PATH (REASON)"`` for an :class:`OSError` of a full or unwritable disk
    (:data:`UNWRITABLE`), else None: what a CLI prints in one line instead of a traceback.

    Args:
        error: What stopped the command.
        where: What to name when the error names no file (a write to an open file, as a lock's): the folder the
            command writes.
    """
    if not isinstance(error, OSError) or error.errno not in UNWRITABLE:
        return None
    return f"cannot write {error.filename or where or 'a file'} ({error.strerror or os.strerror(error.errno)})"


def _disk_error(error: BaseException) -> OSError | None:
    """The OSError of a full or unwritable disk behind ``error``: itself, or one it was raised while handling
    (torch.save's zip writer, told the disk is full, fails once more as it closes, with a RuntimeError)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, OSError) and current.errno in UNWRITABLE:
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], object]) -> Path:
    """Writes a file atomically: ``write`` fills a temporary file, which then replaces ``path``.

    The temporary file lives in the same folder; it is flushed and fsynced, then renamed over ``path`` (an
    atomic replace on POSIX), and the folder is fsynced so the rename itself survives a crash. If ``write``
    raises (an error, Ctrl-C, or SIGTERM under the CLI), the temporary file is removed and ``path`` is left as
    it was; temporary files of earlier writes of ``path`` that were killed outright are removed first
    (:func:`remove_stale_temp_files`). The file gets the permissions of a plain ``open()``.

    Args:
        path: the file to write; its folder is created if missing.
        write: called once with the open binary temporary file.

    Returns:
        The path written.

    Raises:
        OSError: The disk is full or the folder cannot be written (:data:`UNWRITABLE`), however ``write``
            reported it; its ``filename`` is ``path``, not the temporary file, whose name means nothing to the
            user (a failed ``write()`` names no file at all).
    """
    path = Path(path)
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temp_files(path)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{_temp_head(path)}{os.getpid()}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), _file_mode())
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as error:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        disk = _disk_error(error)
        if disk is not None:
            raise OSError(disk.errno, disk.strerror, str(path)) from error
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


RUN_FILE_ADVICE = "restore it, or delete it to compute it again"
"""What to do about a damaged file that a run wrote itself (the default advice of :func:`load`)."""


def load(path: str | os.PathLike, map_location: str | torch.device | None = "cpu",
         advice: str = RUN_FILE_ADVICE) -> Any:
    """Loads a checkpoint with ``weights_only=True`` (no arbitrary code from the file runs).

    Args:
        path: The file.
        map_location: Where its tensors go.
        advice: What the error tells the user to do with a file that does not load (a user's own file needs other
            advice than a cache the run can recompute).

    Raises:
        FileNotFoundError: When ``path`` does not exist, naming it.
        ValueError: When it is a folder, or not a checkpoint (truncated, empty, text, another format, a pickled
            object beyond tensors and containers), naming it and what to do.
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a folder, not a checkpoint file; pass the file itself")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # the unpickler fails on foreign bytes in any way (a text file: IndexError)
        # torch's own messages run to a paragraph, and the unpickler's advises weights_only=False: unsafe, and
        # no cure for a damaged file
        if isinstance(error, pickle.UnpicklingError):
            reason = "holds more than tensors and plain containers, or is not a checkpoint"
        elif isinstance(error, (RuntimeError, EOFError)):
            reason = str(error).split(". ")[0].strip() or type(error).__name__
        else:
            reason = f"not a PyTorch checkpoint: {type(error).__name__}"
        raise ValueError(f"{path} is not a readable checkpoint ({reason}); it is damaged, truncated or another "
                         f"format: {advice}") from None
