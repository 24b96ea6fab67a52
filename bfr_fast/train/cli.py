"""``python -m bfr_fast.train``: run a named recipe end to end and write its run folder."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from types import FrameType
from typing import Any

import torch

from bfr_fast.ops import backend_report
from bfr_fast.train import distributed
from bfr_fast.train.options import PRECISIONS, RunOptions, json_value, resolve_device
from bfr_fast.train.recipes import DEFAULT_RECIPE, RECIPES, RunContext
from bfr_fast.train.run_folder import FILE_ONLY, RunFolder, configure_logging, write_text_atomic

log = logging.getLogger("bfr_fast")


def build_parser() -> argparse.ArgumentParser:
    recipes = "\n".join(f"  {name:<16} {r.summary}" for name, r in RECIPES.items())
    parser = argparse.ArgumentParser(
        prog="python -m bfr_fast.train",
        description="Train, refine and evaluate flow-matching generators. With no arguments: "
        f"the '{DEFAULT_RECIPE}' recipe on scikit-learn's digits.",
        epilog=f"recipes:\n{recipes}\n\nMulti-GPU: torchrun --nproc-per-node N -m bfr_fast.train ...",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--recipe", default=DEFAULT_RECIPE, help=f"experiment to run (default: {DEFAULT_RECIPE})")
    parser.add_argument("--out", type=Path, help="run folder (default: runs/<recipe>-<date>-<time>)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoints")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:N")
    parser.add_argument("--seed", type=int, default=0, help="seed of training and of the evaluation noise")
    parser.add_argument("--data", help="data set: digits, mnist5k, mnist, cifar10, folder or npz (recipe default)")
    parser.add_argument("--data-root", type=Path, help="file or folder of a user data set (mnist, cifar10, ...)")
    parser.add_argument("--steps", type=int, help="training steps of each network (recipe default)")
    parser.add_argument("--base-steps", type=int, help="training steps of the base generator of the refiner "
                        "recipes (bfr, bfr-transfer, bfr-alpha, ala2); overrides --steps for the base only")
    parser.add_argument("--batch-size", type=int, help="training batch size (recipe default)")
    parser.add_argument("--lr", type=float, help="peak learning rate (recipe default)")
    parser.add_argument("--precision", default="fp32", choices=PRECISIONS, help="autocast precision")
    parser.add_argument("--num-samples", type=int, help="generated samples per evaluated row (recipe default)")
    parser.add_argument("--sampler-steps", type=int,
                        help="Euler steps of the base sampler that refiners are built on (bfr recipes' default)")
    parser.add_argument("--inception", type=Path, help="clean-fid's inception-2015-12-05.pt, for true FID")
    parser.add_argument("--seeds", type=int, help="training seeds (--seed, --seed + 1, ...) of recipes that "
                        "repeat their trainings (defar recipes; recipe default)")
    parser.add_argument("--select", help="comma-separated parts of a recipe to run (defar: methods, curve, "
                        "finetune, paper-optim; default fm,ip,defar,finetune; defar-ablation: tables, default all)")
    parser.add_argument("--cache-dir", type=Path, help="cache of trained feature extractors (~/.cache/bfr_fast)")
    return parser


# What a resumed run may change: where it computes and where caches live, not what it computes.
CHANGEABLE_ON_RESUME = ("out", "resume", "device", "cache_dir")


def parse_options(argv: list[str] | None) -> RunOptions:
    """The run's options; with ``--resume``, those recorded in the run's ``config.json``.

    Raises:
        ValueError: A bad option, or, with ``--resume``, one given that differs from what the run recorded.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.resume and args.out is None:
        raise ValueError("--resume: pass the --out of the run to continue")
    if args.resume and (args.out / "config.json").is_file():  # without it, RunFolder.claim says why
        options = _resumed_options(args.out, _given_options(parser, args, argv))
    else:
        out = args.out or Path("runs") / f"{args.recipe}-{time.strftime('%Y%m%d-%H%M%S')}"
        options = RunOptions(out=out, **{k: v for k, v in vars(args).items() if k != "out"})
    if options.recipe not in RECIPES:
        raise ValueError(f"--recipe: unknown recipe {options.recipe!r}; choose from {sorted(RECIPES)}")
    RECIPES[options.recipe].check_options(options)
    return options


def _given_options(parser: argparse.ArgumentParser, args: argparse.Namespace,
                   argv: list[str] | None) -> dict[str, Any]:
    """The options on the command line (``args`` parsed from ``argv``), without the defaults of the others."""
    # argparse fills in a default only where the namespace lacks the attribute: a marker survives where none
    # was given, whatever the value typed (``--seed 0`` is given, though 0 is the default).
    unset = object()
    parsed = parser.parse_args(argv, namespace=argparse.Namespace(**dict.fromkeys(vars(args), unset)))
    return {k: v for k, v in vars(parsed).items() if v is not unset}


def _resumed_options(out: Path, given: dict[str, Any]) -> RunOptions:
    """The options recorded in ``out``'s ``config.json``, with the given ones that a resume may change.

    A resumed run continues what was computed, so an option that would change it (``--lr``, ``--steps``, ...) is
    refused rather than ignored while ``config.json`` records it; ``config.json`` then describes what ran.
    """
    config = out / "config.json"
    try:
        recorded = json.loads(config.read_text())["options"]
    except (ValueError, KeyError, TypeError):
        raise ValueError(f"--resume: {config} is not a run's config (damaged?); start a new run in another "
                         "--out") from None
    given = {k: json_value(v) for k, v in given.items()}
    for name, value in given.items():
        if name not in CHANGEABLE_ON_RESUME and recorded.get(name) != value:
            flag = f"--{name.replace('_', '-')}"
            raise ValueError(
                f"--resume: {flag} {value} differs from the run's {recorded.get(name)} ({config}); a resumed run "
                f"keeps its options: drop {flag}, or start a new run in another --out"
            )
    return RunOptions.from_json({**recorded, **given})


def run(options: RunOptions) -> RunFolder:
    """Runs ``options.recipe`` and writes its run folder; returns the folder."""
    ctx_dist = distributed.setup(resolve_device(options.device))
    folder = RunFolder(options.out)
    try:
        # The main process alone writes the folder, so it alone claims it; torchrun stops the other ranks if it
        # fails.
        with folder.claim(options.resume) if ctx_dist.is_main else nullcontext(folder):
            configure_logging(folder.log if ctx_dist.is_main else None, ctx_dist.is_main)
            try:
                _run_recipe(options, folder, ctx_dist)
            except BaseException as error:
                # The reason goes into log.txt too (main() prints it on the terminal); a traceback only for
                # what main() does not expect, since that one is a bug to report.
                expected = isinstance(error, (ValueError, FileNotFoundError, FloatingPointError, KeyboardInterrupt))
                log.error("run stopped: %s%s", type(error).__name__, f": {error}" if str(error) else "",
                          exc_info=not expected, extra=FILE_ONLY)
                raise
    finally:
        distributed.teardown(ctx_dist)
    return folder


def _run_recipe(options: RunOptions, folder: RunFolder, ctx_dist: distributed.DistributedContext) -> None:
    """Writes ``config.json``, runs the recipe, writes ``metrics.json`` and ``results.md`` (main process only)."""
    torch.manual_seed(options.seed + ctx_dist.rank)
    start = time.time()
    if ctx_dist.is_main:
        folder.write_json(folder.config, {"options": options.to_json(), "device": str(ctx_dist.device),
                                          "world_size": ctx_dist.world_size, "torch": torch.__version__})
    log.info("recipe %s on %s, run folder %s", options.recipe, ctx_dist.device, folder.root)
    ops_backend = backend_report(ctx_dist.device)
    log.info("ops backend: %s", ", ".join(f"{k} {v}" for k, v in ops_backend.items()))
    ctx = RunContext(options, folder, ctx_dist.device, ctx_dist)
    result = RECIPES[options.recipe].run(ctx)
    if ctx_dist.is_main:
        elapsed = time.time() - start
        folder.write_json(folder.metrics, {**result.metrics, "networks": ctx.networks, "ops": ops_backend,
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


def main(argv: list[str] | None = None) -> int:
    """CLI entry point.

    Returns:
        The process exit code: 0; 2 on a bad option or input; 1 when the training diverged; on an interruption,
        after the checkpoints are saved, 130 (Ctrl-C) or 143 (SIGTERM), the shell's codes for those signals.
    """
    options: RunOptions | None = None
    try:
        with sigterm_as_interrupt():
            options = parse_options(argv)
            folder = run(options)
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except FloatingPointError as error:  # a diverged training: no metrics of a broken network
        print(f"error: {error}", file=sys.stderr)
        return 1
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
