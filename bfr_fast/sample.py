"""``python -m bfr_fast.sample``: draw samples from a run's base, or its base refined by one of its refiners.

Works on the run folder of ``python -m bfr_fast.refine`` and of the ``bfr`` recipe of ``python -m bfr_fast.train``.
Writes ``--out`` (an ``.npz`` with ``samples``, ``(N, C, H, W)`` float32, and ``labels`` when the generator is
class-conditional) and a PNG grid of the first 100 samples beside it, each atomically, and neither over an existing
file unless ``--overwrite`` is given.

The samples are clamped to the data's range, [-1, 1]: what the run's metrics scored (its feature extractors clamp
the same way) and what the grid shows. A generator's ODE lands a little outside it (far outside, untrained), and
those values are no pixels. A generator that samples NaN or infinite values is an error, and nothing is written.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bfr_fast.checkpoint import atomic_write, write_failure
from bfr_fast.checks import positive_int
from bfr_fast.data import load_dataset
from bfr_fast.pipelines.generators import GeneratorSpec, frozen_generator, run_options
from bfr_fast.pipelines.refinement import refinement_budget
from bfr_fast.pipelines.sampling import balanced_labels, source_noise
from bfr_fast.refiners import FrozenGenerator, LatentFlowRefiner, Refiner, registry
from bfr_fast.report import save_image_grid
from bfr_fast.solvers import TABLEAUX
from bfr_fast.train.options import resolve_device

BASE = "base"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bfr_fast.sample", description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="a refine run's folder, or a bfr recipe run's")
    parser.add_argument("--refiner", default=registry.SAMPLE_DEFAULT, choices=(BASE, *registry.table_rows()),
                        metavar="NAME", help=f"{BASE}, or a refiner of the run: "
                        f"{registry.describe(include_students=True)} (default {registry.SAMPLE_DEFAULT})")
    parser.add_argument("--num", type=int, default=100, help="number of samples (default 100)")
    parser.add_argument("--nfe", type=int, default=1, help="refiner network calls per sample (default 1)")
    parser.add_argument("--solver", default="euler", choices=sorted(TABLEAUX),
                        help="refiner ODE method; --nfe must be a multiple of its stages (rk4: 4)")
    parser.add_argument("--out", type=Path, required=True,
                        help="the .npz to write (a .png grid goes beside it); samples clamped to the data's [-1, 1]")
    parser.add_argument("--overwrite", action="store_true", help="replace --out and its .png if they exist")
    parser.add_argument("--seed", type=int, default=0, help="seed of the noise")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:N")
    return parser


@dataclass(frozen=True)
class SampledRun:
    """What sampling needs of a finished run.

    Attributes:
        spec: The generator.
        image_shape: ``(C, H, W)``.
        num_classes: Its classes, or None (unconditional).
        refiners: The refiners its ``metrics.json`` scored.
        command: The command that made it, to rerun with ``--resume``.
    """

    spec: GeneratorSpec
    image_shape: tuple[int, int, int]
    num_classes: int | None
    refiners: frozenset[str]
    command: str


def describe_run(run: Path) -> SampledRun:
    """The generator, image shape, classes and refiners of a refine or bfr run.

    Raises:
        ValueError: The folder is neither, or not finished.
    """
    metrics_path = run / "metrics.json"
    try:
        metrics = json.loads(metrics_path.read_text())
    except (OSError, ValueError):
        raise ValueError(f"--run: {run} has no readable metrics.json; pass the folder of a finished run") from None
    scored = frozenset(str(row["method"]) for row in metrics.get("rows", []) if row.get("method") not in (None, BASE))
    if metrics.get("command") == "refine":
        spec = GeneratorSpec.from_json(metrics["generator"])
        return SampledRun(spec, tuple(metrics["image_shape"]), metrics["num_classes"], scored,
                          "python -m bfr_fast.refine")
    options = run_options(run)
    if options.get("recipe") != "bfr":
        raise ValueError(f"--run: {run} is a {options.get('recipe')!r} run; pass a refine run or a bfr run")
    data = load_dataset(options.get("data") or "digits", root=options.get("data_root"))
    sampler = metrics["base_sampler"]
    spec = GeneratorSpec(str(run), sampler=sampler["method"], sampler_steps=sampler["steps"],
                         conditional=data.is_labelled)
    return SampledRun(spec, data.image_shape, data.num_classes if data.is_labelled else None, scored,
                      "python -m bfr_fast.train --recipe bfr")


def load_refiner(run: Path, name: str, described: SampledRun, device: torch.device) -> Refiner:
    """The refiner ``name`` of ``run`` (``checkpoints/<name>-refiner.pt``), frozen, on ``device``.

    Raises:
        ValueError: The run has no such refiner (the message lists those it has), or its file is gone although
            the run scored it (the message says how to make it again).
    """
    path = run / "checkpoints" / f"{name}-refiner.pt"
    if not path.is_file():
        if name in described.refiners:
            raise ValueError(f"--refiner: {path} is missing, though {run / 'metrics.json'} lists {name!r}; rerun "
                             f"its {described.command} command with --resume (options in {run / 'config.json'}), "
                             "which makes it again")
        have = sorted(p.name.removesuffix("-refiner.pt") for p in (run / "checkpoints").glob("*-refiner.pt"))
        raise ValueError(f"--refiner: {run} has no {name!r} refiner; it has {[BASE, *have]}")
    image_shape = described.image_shape
    network = refinement_budget(image_shape).refiner_network(image_shape[0], described.num_classes)
    refiner = Refiner.load(path, network)
    return refiner.to(device).eval().requires_grad_(False)


@torch.no_grad()
def draw(generator: FrozenGenerator, refiner: Refiner | None, num: int, image_shape: tuple[int, int, int],
         num_classes: int | None, nfe: int, solver: str, seed: int, device: torch.device
         ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``num`` samples of the base, refined by ``refiner`` with ``nfe`` calls (None: the base alone)."""
    noise = source_noise(num, image_shape, seed, device)
    labels = balanced_labels(num, num_classes, device)
    steps = nfe // TABLEAUX[solver].num_stages
    if isinstance(refiner, LatentFlowRefiner):
        return refiner.sample(noise, generator, labels, num_steps=steps, method=solver).samples, labels
    x_hat, _ = generator.sample(noise, labels)
    if refiner is None:
        return x_hat, labels
    x = refiner.refine(x_hat, num_steps=steps, method=solver, y=labels, batch_size=500,
                       generator=torch.Generator().manual_seed(seed))
    return x, labels


def sample(args: argparse.Namespace) -> dict[str, Any]:
    """Draws and writes the samples of the parsed command line; returns what was written."""
    for name in ("num", "nfe"):
        positive_int(f"--{name}", getattr(args, name))
    stages = TABLEAUX[args.solver].num_stages
    if args.nfe % stages:
        raise ValueError(f"--nfe: {args.solver} takes {stages} calls per step; give a multiple of {stages}")
    if args.out.suffix != ".npz":
        raise ValueError(f"--out must name an .npz file, got {args.out}")
    png = args.out.with_suffix(".png")
    for path in (args.out, png):  # before any sampling: minutes of work must not end in a refusal
        if path.exists() and not args.overwrite:
            raise ValueError(f"--out: {path} exists; pass --overwrite to replace it, or choose another --out")
    device = resolve_device(args.device)
    run = describe_run(args.run)
    generator = frozen_generator(run.spec, run.image_shape, run.num_classes, device)
    refiner = None if args.refiner == BASE else load_refiner(args.run, args.refiner, run, device)
    x, labels = draw(generator, refiner, args.num, run.image_shape, run.num_classes, args.nfe, args.solver,
                     args.seed, device)
    x = generator.require_finite(x, "samples").clamp(-1.0, 1.0)
    samples = x.float().cpu().numpy()
    if labels is None:
        atomic_write(args.out, lambda f: np.savez(f, samples=samples))
    else:
        y = labels.cpu().numpy()
        atomic_write(args.out, lambda f: np.savez(f, samples=samples, labels=y))
    grid = save_image_grid(x[:100].cpu(), png, nrow=10, scale=max(1, 64 // run.image_shape[-1]))
    return {"npz": args.out, "png": grid, "shape": tuple(x.shape)}


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: 0, or 2 with one line on stderr for a bad option or run folder, or a full or unwritable
    disk."""
    args = build_parser().parse_args(argv)
    try:
        written = sample(args)
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        failure = write_failure(error, args.out)
        if failure is None:
            raise
        print(f"error: {failure}; free space or choose a writable --out", file=sys.stderr)
        return 2
    print(f"wrote {written['shape'][0]} samples to {written['npz']} and a grid to {written['png']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
