"""Progress bars only on a terminal; one timed log line per stage."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator

import pytest

from bfr_fast.progress import progress_bar, timed_stage


def _run_bar(enabled: bool) -> list[int]:
    """Iterates a bar over three items and advances a manual one, as the library's loops do."""
    seen = list(progress_bar(range(3), enabled=enabled, desc="loop"))
    with progress_bar(enabled=enabled, total=2, desc="manual") as bar:
        bar.update(2)
    return seen


def test_no_bar_when_stderr_is_not_a_terminal(capsys):
    assert not sys.stderr.isatty()  # capsys: stderr is a buffer, as when piped into a file
    assert _run_bar(enabled=True) == [0, 1, 2]
    assert capsys.readouterr().err == ""


def test_a_bar_on_a_terminal(capsys, monkeypatch):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert _run_bar(enabled=True) == [0, 1, 2]
    err = capsys.readouterr().err
    assert "loop: 100%" in err and "3/3" in err and "manual: 100%" in err and "2/2" in err


def test_no_bar_on_a_terminal_when_the_caller_asks_for_none(capsys, monkeypatch):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert _run_bar(enabled=False) == [0, 1, 2]
    assert capsys.readouterr().err == ""


def test_no_bar_without_stderr(monkeypatch):
    monkeypatch.setattr(sys, "stderr", None)  # pythonw, or a daemon started without one
    assert _run_bar(enabled=True) == [0, 1, 2]


@pytest.fixture
def bfr_log(caplog, monkeypatch) -> Iterator[pytest.LogCaptureFixture]:
    """caplog, catching the ``bfr_fast`` logger's INFO records on the logger itself, as a run's log.txt does (a
    run's configure_logging may have turned its propagation to caplog's root logger off; here it is off, so
    each record is caught once)."""
    logger = logging.getLogger("bfr_fast")
    monkeypatch.setattr(logger, "level", logging.INFO)
    monkeypatch.setattr(logger, "propagate", False)
    logger.addHandler(caplog.handler)
    yield caplog
    logger.removeHandler(caplog.handler)


def test_a_stage_logs_one_line_with_its_time(bfr_log):
    with timed_stage("pool"):
        pass
    [record] = bfr_log.records
    assert record.name == "bfr_fast" and record.levelno == logging.INFO
    assert record.getMessage().startswith("pool: done in ") and record.getMessage().endswith(" s")


def test_a_failed_stage_logs_nothing(bfr_log):
    with pytest.raises(RuntimeError), timed_stage("pool"):
        raise RuntimeError("stage failed")
    assert not bfr_log.records
