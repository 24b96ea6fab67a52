"""Atomic files: no half-written file, no temp file left behind, the permissions of a plain open()."""

from __future__ import annotations

import errno
import os
import signal
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch

import bfr_fast
import bfr_fast.checkpoint
from bfr_fast.checkpoint import atomic_save, atomic_write, load, write_failure

# Writes half of a file through atomic_write, then hangs until killed.
HANGING_WRITER = """
import sys, time
from bfr_fast.checkpoint import atomic_write

def write(f):
    f.write(b"x" * 4096)
    f.flush()
    print("writing", flush=True)
    time.sleep(60)

atomic_write(sys.argv[1], write)
"""


def _package_env() -> dict[str, str]:
    """The environment of a subprocess that imports the same bfr_fast as the tests."""
    return {**os.environ, "PYTHONPATH": str(Path(bfr_fast.__file__).parents[1])}


def _temp_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_a_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path):
    target = atomic_save({"a": 1}, tmp_path / "ckpt.pt")

    def interrupted(f):
        f.write(b"partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, interrupted)
    assert load(target) == {"a": 1} and _temp_files(tmp_path) == []


@pytest.mark.parametrize("where", ["write", "torch.save", "mkstemp"])
def test_a_full_or_unwritable_disk_is_an_os_error_naming_the_file(tmp_path, monkeypatch, where):
    """Not the temporary file (a name that means nothing to the user), and not no file (a failed write())."""
    target = atomic_save({"a": 1}, tmp_path / "ckpt.pt")

    def full(f):
        f.write(b"partial")
        if where != "torch.save":
            raise OSError(errno.ENOSPC, "No space left on device")
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError:  # what torch.save's zip writer does next, on a disk that is really full
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 1325568") from None

    def read_only(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path / ".ckpt.pt.1.abc.tmp"))

    if where == "mkstemp":
        monkeypatch.setattr(tempfile, "mkstemp", read_only)
    with pytest.raises(OSError) as caught:
        atomic_write(target, full)
    assert caught.value.filename == str(target)
    reason = "Permission denied" if where == "mkstemp" else "No space left on device"
    assert write_failure(caught.value) == f"cannot write {target} ({reason})"
    assert load(target) == {"a": 1} and _temp_files(tmp_path) == []


def test_write_failure_is_none_for_other_errors():
    assert write_failure(FileNotFoundError(errno.ENOENT, "No such file or directory", "x")) is None
    assert write_failure(ValueError("x")) is None


def test_a_killed_write_leaves_a_temp_file_that_the_next_write_removes(tmp_path):
    target = tmp_path / "ckpt.pt"
    writer = subprocess.Popen([sys.executable, "-c", HANGING_WRITER, str(target)], stdout=subprocess.PIPE,
                              text=True, env=_package_env())
    try:
        assert writer.stdout.readline().strip() == "writing"
        assert len(_temp_files(tmp_path)) == 1  # a write in progress of a live process
        atomic_save({"b": 2}, tmp_path / "other.pt")  # another target's write leaves it alone
        assert len(_temp_files(tmp_path)) == 1
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
    assert len(_temp_files(tmp_path)) == 1  # SIGKILL: nothing could clean up
    atomic_save({"c": 3}, target)
    assert _temp_files(tmp_path) == [] and load(target) == {"c": 3}


def test_a_live_writers_temp_file_is_kept(tmp_path):
    target = tmp_path / "ckpt.pt"
    in_progress = tmp_path / f".ckpt.pt.{os.getpid()}.abcd1234.tmp"  # as if this process were writing it
    in_progress.write_bytes(b"x")
    longer_name = tmp_path / ".ckpt.pt.1.2.abcd1234.tmp"  # a temp file of "ckpt.pt.1", not of "ckpt.pt"
    longer_name.write_bytes(b"x")
    atomic_save({"d": 4}, target)
    assert in_progress.exists() and longer_name.exists()


class RecordingOs:
    """``os`` for :mod:`bfr_fast.checkpoint` alone, recording each ``fsync`` and ``replace`` as it happens.

    Attributes:
        events: ``("fsync", "file", bytes on disk, inode)``, ``("fsync", "folder", None, inode)`` and
            ``("replace", inode of the source, destination)``, in call order.
    """

    def __init__(self) -> None:
        self.events: list[tuple] = []

    def __getattr__(self, name):
        return getattr(os, name)

    def fsync(self, fd: int) -> None:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            self.events.append(("fsync", "folder", None, info.st_ino))
        else:  # what the kernel holds: bytes still in Python's buffer are not there
            self.events.append(("fsync", "file", os.pread(fd, info.st_size + 1, 0), info.st_ino))
        os.fsync(fd)

    def replace(self, src, dst) -> None:
        self.events.append(("replace", os.stat(src).st_ino, Path(dst)))
        os.replace(src, dst)


def test_the_temp_file_is_flushed_and_fsynced_before_the_rename_and_the_folder_after(tmp_path, monkeypatch):
    """All the bytes are on disk before the rename makes them the file; the folder is synced after the rename."""
    recorder = RecordingOs()
    monkeypatch.setattr(bfr_fast.checkpoint, "os", recorder)
    payload = bytes(range(256)) * 4  # well under the write buffer: only a flush gets it to the file
    target = atomic_write(tmp_path / "ckpt.pt", lambda f: f.write(payload))
    assert [event[0] for event in recorder.events] == ["fsync", "replace", "fsync"]
    (_, kind, synced, synced_inode), (_, replaced_inode, destination), (_, folder_kind, _, folder_inode) = \
        recorder.events
    assert kind == "file" and synced == payload  # every byte written was on disk when it was fsynced
    assert synced_inode == replaced_inode and destination == target  # the fsynced file is the one renamed
    assert folder_kind == "folder" and folder_inode == tmp_path.stat().st_ino  # the rename itself, after it
    assert target.read_bytes() == payload


def test_atomic_files_get_the_mode_of_a_plain_open(tmp_path):
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    atomic = atomic_write(tmp_path / "atomic.txt", lambda f: f.write(b"x"))
    assert atomic.stat().st_mode & 0o777 == plain.stat().st_mode & 0o777


def test_sigterm_mid_write_under_the_cli_handler_leaves_no_temp_file(tmp_path):
    script = HANGING_WRITER.replace("atomic_write(sys.argv[1], write)", """
from bfr_fast.train.runner import sigterm_as_interrupt, Terminated
try:
    with sigterm_as_interrupt():
        atomic_write(sys.argv[1], write)
except Terminated:
    sys.exit(143)
""")
    writer = subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "ckpt.pt")], stdout=subprocess.PIPE,
                              text=True, env=_package_env())
    assert writer.stdout.readline().strip() == "writing"
    writer.send_signal(signal.SIGTERM)
    assert writer.wait(timeout=30) == 143
    assert _temp_files(tmp_path) == [] and not (tmp_path / "ckpt.pt").exists()


@pytest.mark.parametrize("damage", ["truncated", "empty", "text"])
def test_a_damaged_checkpoint_is_a_value_error_naming_it(tmp_path, damage):
    path = atomic_save({"w": torch.zeros(1000)}, tmp_path / "ckpt.pt")
    data = path.read_bytes()
    path.write_bytes({"truncated": data[: len(data) // 2], "empty": b"", "text": b"not a checkpoint\n"}[damage])
    with pytest.raises(ValueError, match=f"{path} is not a readable checkpoint .*restore it, or delete it"):
        load(path)
