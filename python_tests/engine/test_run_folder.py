"""RunFolder.claim: one holder at a time, and no ``.lock`` left behind however the claim ends."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable
from contextlib import ExitStack

import pytest

from bfr_fast.engine.run_folder import RunFolder


def test_a_claim_that_ends_leaves_no_lock(tmp_path):
    out = tmp_path / "run"
    with RunFolder(out).claim(resume=False):
        assert (out / RunFolder.LOCK_NAME).read_text() == f"{os.getpid()}\n"
    assert out.is_dir() and not any(out.iterdir())
    with RunFolder(out).claim(resume=False):  # and the folder takes the next run
        pass


@pytest.mark.parametrize("error", [RuntimeError("the run failed"), KeyboardInterrupt()])
def test_a_claim_that_ends_by_an_error_leaves_no_lock(tmp_path, error):
    out = tmp_path / "run"
    with pytest.raises(type(error)), RunFolder(out).claim(resume=False):
        (out / "config.json").write_text("{}")
        raise error
    assert [p.name for p in out.iterdir()] == ["config.json"]


def test_a_refused_claim_leaves_no_lock(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.json").write_text("{}")
    with pytest.raises(ValueError, match="already holds a run"), RunFolder(out).claim(resume=False):
        pass
    assert [p.name for p in out.iterdir()] == ["metrics.json"]


def test_a_second_claim_is_refused_while_the_first_holds(tmp_path):
    out = tmp_path / "run"
    with RunFolder(out).claim(resume=False):
        for _ in range(2):  # the refused claim left the holder's lock in place
            with pytest.raises(ValueError, match=f"in use by process {os.getpid()}"), \
                    RunFolder(out).claim(resume=False):
                pass
        assert (out / RunFolder.LOCK_NAME).read_text() == f"{os.getpid()}\n"
    assert not any(out.iterdir())


def test_a_lock_file_left_by_a_killed_run_is_taken(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / RunFolder.LOCK_NAME).write_text("12345\n")  # its process died: the kernel dropped the lock
    with RunFolder(out).claim(resume=False):
        assert (out / RunFolder.LOCK_NAME).read_text() == f"{os.getpid()}\n"
    assert not any(out.iterdir())


def _once_before(monkeypatch: pytest.MonkeyPatch, module: object, name: str, act: Callable[[], None]) -> None:
    """Runs ``act`` once, just before the next call of ``module.name`` (a claim's flock, or its unlink)."""
    call = getattr(module, name)
    pending = [act]

    def interleaved(*args: object) -> object:
        if pending:
            pending.pop()()
        return call(*args)

    monkeypatch.setattr(module, name, interleaved)


def test_a_claim_while_the_holder_removes_its_lock_file_is_refused(tmp_path, monkeypatch):
    """The holder removes ``.lock`` while it still holds the lock: a claim in between is refused, not granted a file
    about to be removed (beside which a third claim would create and lock a new one)."""
    out = tmp_path / "run"

    def claim() -> None:
        with pytest.raises(ValueError, match="in use by process"), RunFolder(out).claim(resume=False):
            pass

    with RunFolder(out).claim(resume=False):
        _once_before(monkeypatch, os, "unlink", claim)
    assert not any(out.iterdir())


@pytest.mark.parametrize("third", [False, True])
def test_a_claim_that_locks_a_removed_lock_file_starts_again(tmp_path, monkeypatch, third):
    """A claim opens ``.lock`` just before the holder's claim ends (removing it); with ``third``, another claim then
    takes the folder. The first claim's lock is granted on the removed file: it must not count."""
    out = tmp_path / "run"
    with ExitStack() as holder, ExitStack() as other:
        holder.enter_context(RunFolder(out).claim(resume=False))

        def end_the_holder() -> None:
            holder.close()
            if third:
                other.enter_context(RunFolder(out).claim(resume=False))

        _once_before(monkeypatch, fcntl, "flock", end_the_holder)
        if third:  # the third claim holds the folder: refused
            with pytest.raises(ValueError, match="in use by process"), RunFolder(out).claim(resume=False):
                pass
        else:  # the folder is free: the claim holds the file that is there, so that a next claim is refused
            with RunFolder(out).claim(resume=False):
                with pytest.raises(ValueError, match="in use by process"), RunFolder(out).claim(resume=False):
                    pass
    assert not any(out.iterdir())
