"""Running one job in its own run folder: claim and lock it, record the config, write the results, and turn
errors and signals into one line and an exit code. Shared by ``python -m bfr_fast.train`` and the ``refine`` CLI."""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from types import FrameType
from typing import Any, Protocol, TypeVar

import torch

from bfr_fast.checkpoint import write_failure
from bfr_fast.engine import distributed
from bfr_fast.engine.run_folder import FILE_ONLY, RunFolder, configure_logging, write_text_atomic
from bfr_fast.ops import backend_report
from bfr_fast.pipelines.workspace import Workspace
from bfr_fast.train.options import resolve_device
from bfr_fast.train.recipes.base import RunResult

log = logging.getLogger("bfr_fast")

J = TypeVar("J", bound="Job")


# What a resumed run may change: where it computes and where caches live, not what it computes.
CHANGEABLE_ON_RESUME = ("out", "resume", "device", "cache_dir", "sanity_check")


def refuse_changed_options(config: Path, recorded: dict[str, Any], given: dict[str, Any]) -> None:
    """Refuses a resume that changes an option the run recorded in ``config`` (other than
    :data:`CHANGEABLE_ON_RESUME`): it would be ignored while ``config.json`` recorded it, or change what ran.

    Args:
        config: The run's ``config.json``, for the message.
        recorded: Its options (JSON values).
        given: The options of the resuming command (JSON values), by name.

    Raises:
        ValueError: Naming the first changed option and what to do.
    """
    for name, value in given.items():
        if name not in CHANGEABLE_ON_RESUME and recorded.get(name) != value:
            flag = f"--{name.replace('_', '-')}"
            raise ValueError(
                f"--resume: {flag} {value} differs from the run's {recorded.get(name)} ({config}); a resumed run "
                f"keeps its options: drop {flag}, or start a new run in another --out"
            )


def execute(
    out: Path, resume: bool, device: str, seed: int, config: dict[str, Any], job: Callable[[Workspace], RunResult],
    name: str,
) -> RunFolder:
    """Runs ``job`` in the run folder ``out`` and writes ``config.json``, ``metrics.json`` and ``results.md``.

    Args:
        out: The run folder (claimed: a folder holding another run is refused unless ``resume``).
        resume: Continue the run in ``out``.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        seed: The run's seed (the global torch RNG is seeded with it, plus the rank).
        config: What ``config.json`` records besides the device, world size and torch version.
        job: The work: ``job(workspace) -> RunResult``.
        name: What runs, for the log.

    Returns:
        The run folder.
    """
    ctx_dist = distributed.setup(resolve_device(device))
    folder = RunFolder(out)
    try:
        # The main process alone writes the folder, so it alone claims it; torchrun stops the other ranks if it
        # fails.
        with folder.claim(resume) if ctx_dist.is_main else nullcontext(folder):
            configure_logging(folder.log if ctx_dist.is_main else None, ctx_dist.is_main)
            try:
                _run_job(folder, ctx_dist, seed, resume, config, job, name)
            except BaseException as error:
                # The reason goes into log.txt too (main() prints it on the terminal); a traceback only for
                # what main() does not expect, since that one is a bug to report.
                expected = (isinstance(error, (ValueError, FileNotFoundError, FloatingPointError, KeyboardInterrupt))
                            or write_failure(error) is not None)
                log.error("run stopped: %s%s", type(error).__name__, f": {error}" if str(error) else "",
                          exc_info=not expected, extra=FILE_ONLY)
                raise
    finally:
        distributed.teardown(ctx_dist)
    return folder


def _run_job(folder: RunFolder, ctx_dist: distributed.DistributedContext, seed: int, resume: bool,
             config: dict[str, Any], job: Callable[[Workspace], RunResult], name: str) -> None:
    torch.manual_seed(seed + ctx_dist.rank)
    start = time.time()
    if ctx_dist.is_main:
        folder.write_json(folder.config, {**config, "device": str(ctx_dist.device),
                                          "world_size": ctx_dist.world_size, "torch": torch.__version__})
    log.info("%s on %s, run folder %s", name, ctx_dist.device, folder.root)
    ops_backend = backend_report(ctx_dist.device)
    log.info("ops backend: %s", ", ".join(f"{k} {v}" for k, v in ops_backend.items()))
    workspace = Workspace(folder, ctx_dist.device, ctx_dist, seed, resume)
    result = job(workspace)
    if ctx_dist.is_main:
        elapsed = time.time() - start
        folder.write_json(folder.metrics, {**result.metrics, "networks": workspace.networks, "ops": ops_backend,
                                           "seconds": round(elapsed, 1)})
        write_text_atomic(folder.results, result.results_md)
        log.info("done in %.0f s: %s", elapsed, folder.results)
        if ops_backend["backend"] == "eager":  # said again at the end: the import-time warning scrolled away
            log.warning("this run used the eager reference ops, not the fused extension (%s)",
                        ops_backend["reason"])


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, ``docker stop``, a scheduler's preemption), raised where Ctrl-C raises
    KeyboardInterrupt, so that the handlers that save a run on Ctrl-C save it on SIGTERM too."""


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` in the main thread (elsewhere: nothing changes).

    Further SIGTERMs are ignored once the first arrived, so that the checkpoint it triggers is written whole.
    """
    if threading.current_thread() is not threading.main_thread():  # signal handlers belong to the main thread
        yield
        return

    def terminate(signum: int, frame: FrameType | None) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Terminated

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def log_failures_dropped() -> Iterator[None]:
    """Within the block, a log record that cannot be written (the disk is full) is dropped, not printed on stderr
    with a traceback (logging's default): the error that stops the run is the one line the user reads."""
    previous, logging.raiseExceptions = logging.raiseExceptions, False
    try:
        yield
    finally:
        logging.raiseExceptions = previous


class Job(Protocol):
    """Parsed options of a run: at least where it writes (read only: frozen options satisfy it)."""

    @property
    def out(self) -> Path: ...


def guarded_main(parse: Callable[[], J], run: Callable[[J], RunFolder]) -> int:
    """Parses the command line with ``parse``, runs it with ``run``, and turns what they raise into one line on
    stderr and the exit code.

    Returns:
        The process exit code: 0; 2 on a bad option or input, or a full or unwritable disk (naming the file; every
        file written before it is whole); 1 when the training diverged; on an interruption, after the checkpoints
        are saved, 130 (Ctrl-C) or 143 (SIGTERM), the shell's codes for those signals.
    """
    options: J | None = None
    try:
        with sigterm_as_interrupt(), log_failures_dropped():
            options = parse()
            folder = run(options)
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except FloatingPointError as error:  # a diverged training: no metrics of a broken network
        print(f"error: {error}", file=sys.stderr)
        return 1
    except OSError as error:
        failure = write_failure(error, None if options is None else options.out)
        if failure is None:
            raise
        rerun = "rerun"
        if options is not None and (options.out / "config.json").is_file():  # --resume needs a run to continue
            rerun = f"rerun with --resume --out {options.out} to continue"
        print(f"error: {failure}; free space or make the folder writable, then {rerun}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as interrupt:
        name, code = ("SIGTERM", 143) if isinstance(interrupt, Terminated) else ("SIGINT", 130)
        if options is None:
            print(f"interrupted by {name} before the run started", file=sys.stderr)
        else:
            print(f"interrupted by {name}: checkpoints were saved in {options.out}; rerun with --resume --out "
                  f"{options.out} to continue", file=sys.stderr)
        return code
    print(folder.results.read_text())
    print(f"run folder: {folder.root}")
    return 0
