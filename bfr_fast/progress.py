"""How a run reports progress: bars on a terminal only, and one timed log line per stage.

A bar redraws its line several times a second; piped into a log file or a CI console, every redraw becomes a
line of its own. So bars are drawn only where someone watches a terminal, and what a log needs (how long each
stage took) is one line written when the stage ends.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from tqdm import tqdm

log = logging.getLogger("bfr_fast")

T = TypeVar("T")


def progress_bar(iterable: Iterable[T] | None = None, *, enabled: bool = True, **options: Any) -> tqdm[T]:
    """A tqdm bar over ``iterable`` (or a manual one, with ``total=``), drawn only when stderr is a terminal.

    Args:
        iterable: What to iterate over; None for a bar advanced by ``update``.
        enabled: Whether the caller wants a bar at all (say, only on the main process).
        **options: tqdm's other arguments (``total``, ``desc``, ``unit``, ...).

    Returns:
        The bar: a disabled one, which writes nothing, unless ``enabled`` and ``sys.stderr`` is a terminal.
    """
    # tqdm writes to sys.stderr as it is when the bar is made, so that is the stream to ask. It may be None (a
    # process started without one).
    terminal = sys.stderr is not None and sys.stderr.isatty()
    return tqdm(iterable, disable=not (enabled and terminal), **options)


@contextmanager
def timed_stage(name: str) -> Iterator[None]:
    """Logs ``"<name>: done in <s> s"`` (INFO, logger ``bfr_fast``) when the block ends without an error.

    A stage that fails logs nothing here: the run's own error line says what stopped it.
    """
    start = time.perf_counter()
    yield
    log.info("%s: done in %.1f s", name, time.perf_counter() - start)
