"""``python -m bfr_fast.train``: run a named recipe end to end and write its run folder."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from bfr_fast.engine.run_folder import RunFolder
from bfr_fast.train.options import COORDINATES, ENERGY_CONSTRAINTS, PRECISIONS, RunOptions, json_value
from bfr_fast.train.recipes import DEFAULT_RECIPE, RECIPES, RunContext
from bfr_fast.train.runner import execute, guarded_main, refuse_changed_options


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
    parser.add_argument("--data", help="data set: digits, mnist5k, mnist, cifar10, folder or npz; ala2 recipes: "
                        "{ala2,chignolin}[:NANOSECONDS[:FRAMES]] or a trajectory file mdtraj reads (recipe default)")
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
                        "finetune, finetune-ablation, paper-optim; default fm,defar; defar-ablation: tables, "
                        "default all)")
    parser.add_argument("--cache-dir", type=Path, help="cache of trained feature extractors (~/.cache/bfr_fast)")
    parser.add_argument("--topology", type=Path, help="ala2 recipes with --data TRAJECTORY: its topology (a PDB, "
                        "or any file mdtraj reads a topology from)")
    parser.add_argument("--selection", help="ala2 recipes: the atoms to model, in mdtraj's selection language "
                        "(default: all atoms, which OpenMM energies need; e.g. 'not element H')")
    parser.add_argument("--energy-constraints", choices=ENERGY_CONSTRAINTS, help="ala2 recipes: project generated "
                        "conformers onto the MD's X-H bond constraints before their energy (hbonds, the default) "
                        "or not (none)")
    parser.add_argument("--coordinates", choices=COORDINATES, help="ala2 recipes: what the networks model, "
                        "Cartesian coordinates of the aligned frames or internal coordinates (bonds, angles, "
                        "torsions); default: the system's (internal for chignolin, else cartesian)")
    return parser


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


BEFORE_OPTION = {"coordinates": "cartesian"}
"""For options added after runs were recorded: the value that reproduces what such a run did. A chignolin run
recorded before ``--coordinates`` modelled Cartesian coordinates, though chignolin's default is now internal."""


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
    reads = getattr(RECIPES.get(recorded.get("recipe")), "reads", None) or ()
    recorded = {**{name: value for name, value in BEFORE_OPTION.items() if name in reads}, **recorded}
    refuse_changed_options(config, recorded, given)
    return RunOptions.from_json({**recorded, **given})


def run(options: RunOptions) -> RunFolder:
    """Runs ``options.recipe`` and writes its run folder; returns the folder."""
    recipe = RECIPES[options.recipe]
    return execute(options.out, options.resume, options.device, options.seed, {"options": options.to_json()},
                   lambda workspace: recipe.run(RunContext(options, workspace)), f"recipe {options.recipe}")


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; the exit codes of :func:`~bfr_fast.train.runner.guarded_main`."""
    return guarded_main(lambda: parse_options(argv), run)
