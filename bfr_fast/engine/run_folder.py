"""The run folder every CLI run writes: resolved config, log, checkpoints, metrics.json, results.md, PNG grids.

A run folder belongs to one run: :meth:`RunFolder.claim` is the one place that creates it, refuses a folder that
already holds a run (unless the run resumes it), and locks it so that no second process writes it at once.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
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

    LOCK_NAME = ".lock"

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

    def scored(self, name: str) -> Path:
        """A scored row kept with what it scored, so that a resumed run reads it instead of scoring again."""
        return self.root / "scored" / f"{name}.json"

    def write_json(self, path: Path, payload: Any) -> Path:
        return write_text_atomic(path, json.dumps(payload, indent=2, default=str) + "\n")

    @contextmanager
    def claim(self, resume: bool) -> Iterator[RunFolder]:
        """Creates the folder and holds it for one run: an exclusive lock, released when the block ends.

        The lock is an ``fcntl.flock`` on ``.lock`` inside the folder (it holds the owner's process id, for the
        error message). The file is removed when the block ends, however it ends; the kernel drops the lock when
        the process dies, so a killed run leaves a ``.lock`` that holds nothing, and the next claim takes it. The
        folder's contents are checked under the lock, so two runs started at once cannot both pass.

        Args:
            resume: Whether the run continues the one in the folder (which must then hold one: its
                ``config.json``, or at least checkpoints).

        Raises:
            ValueError: The folder cannot be created or written, another process holds it, it already holds a
                run (anything besides the config and log of a run that stopped before producing a file) and
                ``resume`` is False, or ``resume`` is True and it holds no run.
        """
        if resume and not self.root.is_dir():
            raise ValueError(f"--resume: the run folder {self.root} does not exist (pass the --out of the run)")
        fd = self._lock()
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            self._check_owner(resume)
            yield self
        finally:
            # Unlinked while still locked: once the lock is dropped, a process may flock this file at any time,
            # and unlinking it then would let a third process create and lock a new one beside it. Whoever
            # flocks it from now on finds it unlinked (see _lock) and starts again. (missing_ok: a folder deleted
            # by hand meanwhile must not hide the run's own error.)
            (self.root / self.LOCK_NAME).unlink(missing_ok=True)
            os.close(fd)  # closing the last descriptor releases the lock

    def _lock(self) -> int:
        """Opens (or creates) ``.lock`` and flocks it; returns the descriptor. Refuses a folder another holds.

        A process may open the file just before its holder unlinks it, and be granted the lock on the unlinked
        file once the holder closes it, while a third process creates and locks a new ``.lock``. Only the file
        that is at the path when its lock is granted counts (nobody but the lock's holder removes it), so a lock
        on another file is dropped and the path opened again.
        """
        path = self.root / self.LOCK_NAME
        while True:
            try:
                self.root.mkdir(parents=True, exist_ok=True)
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as error:  # --out is a file, lies under a file, or is not writable
                raise ValueError(
                    f"--out: cannot create or write the run folder {self.root} ({error.strerror}); "
                    "choose another --out"
                ) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                raise ValueError(
                    f"--out: the run folder {self.root} is in use by process {holder}; wait for that run to end "
                    "or choose another --out"
                ) from None
            if _same_file(os.fstat(fd), path):
                return fd
            os.close(fd)

    def _check_owner(self, resume: bool) -> None:
        if resume:
            # Checkpoints alone count: networks copied from another run are resumed (to analyse them, say).
            if not self.config.is_file() and not any(self.root.glob("checkpoints/*.pt")):
                raise ValueError(f"--resume: {self.root} holds no run (no {self.config.name}, no checkpoints); "
                                 "drop --resume to start one there")
            return
        # A run that stopped before it produced anything (a bad data file found after config.json was written)
        # leaves only its config and log: nothing to lose, so the folder takes a new run (the log grows).
        unowned = (self.LOCK_NAME, self.config.name, self.log.name)
        held = sorted(p.name for p in self.root.iterdir() if p.name not in unowned)
        if held:
            raise ValueError(
                f"--out: {self.root} already holds a run ({', '.join(held[:3])}{', ...' if len(held) > 3 else ''}); "
                "pass --resume to continue it, or choose another --out"
            )


def _same_file(opened: os.stat_result, path: Path) -> bool:
    """Whether the open file ``opened`` is the one at ``path`` (False when ``path`` is gone)."""
    try:
        current = os.stat(path)
    except FileNotFoundError:
        return False
    # An open file keeps its inode, so no other file can have taken its number meanwhile.
    return (opened.st_dev, opened.st_ino) == (current.st_dev, current.st_ino)


FILE_ONLY = {"file_only": True}
"""``extra=`` of a record that goes to ``log.txt`` alone (one the CLI prints on the terminal its own way)."""


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
    console.addFilter(lambda record: not getattr(record, "file_only", False))
    log.addHandler(console)
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(log_file)
        handler.setFormatter(fmt)
        log.addHandler(handler)
