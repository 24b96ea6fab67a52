"""``python -m bfr_fast.refine``: refine your own generator with BFR and score it.

Takes a frozen generator (``--generator pkg.module:factory`` with ``--checkpoint``, or ``--generator RUN`` for the
base of a ``python -m bfr_fast.train`` run), its sampler, and the data it imitates; trains the refiners
(``--refiners``, of :data:`~bfr_fast.refiners.registry.REGISTRY`; default DFR and LFR) and their 1-NFE students,
and writes a run folder: the refiners (``checkpoints/<method>-refiner.pt``), ``results.md`` (the base and every
refined row, FD/KID/IS/sFID/precision/recall in the Inception space with ``--inception``, else in the feature space
of a classifier trained on the data, named in the column headers), ``metrics.json`` and sample grids. Draw samples
afterwards with ``python -m bfr_fast.sample --run OUT``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from torch import nn

from bfr_fast.checks import positive_float, positive_int
from bfr_fast.data import ImageDataset, load_dataset
from bfr_fast.engine.run_folder import RunFolder
from bfr_fast.metrics import metric_label
from bfr_fast.models import CONVENTIONS, TIME_DIRECTIONS
from bfr_fast.pipelines.evaluation import Scorer, build_extractor, evaluate_row
from bfr_fast.pipelines.generators import (
    DDPM_TIMES,
    DEFAULT_SAMPLER_STEPS,
    IN_MEMORY,
    PARAMETERIZATIONS,
    GeneratorSpec,
    frozen_generator,
    run_options,
)
from bfr_fast.pipelines.refinement import (
    Refinement,
    RefinementTask,
    distillation_note,
    refine,
    refinement_budget,
)
from bfr_fast.pipelines.sanity import check_base
from bfr_fast.pipelines.workspace import Workspace
from bfr_fast.refiners import registry
from bfr_fast.solvers import TABLEAUX
from bfr_fast.train.options import PRECISIONS, check_num_samples, default_cache_dir
from bfr_fast.train.recipes.base import RunResult
from bfr_fast.train.runner import execute, guarded_main, refuse_changed_options


@dataclass(frozen=True)
class RefineOptions:
    """The command line of ``python -m bfr_fast.refine``, resolved (run defaults filled in)."""

    out: Path
    generator: GeneratorSpec
    data: str
    data_root: Path | None = None
    refiners: tuple[str, ...] = registry.refine_defaults()
    distill: bool = True
    steps: int | None = None
    distill_steps: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    precision: str = "fp32"
    num_samples: int | None = None
    eval_seeds: int | None = None
    inception: Path | None = None
    cache_dir: Path | None = None
    device: str = "auto"
    seed: int = 0
    resume: bool = False
    sanity_check: bool = True

    def __post_init__(self) -> None:
        check_num_samples(self.num_samples)  # here, not after the refiners trained and the metrics found too few

    def to_json(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["generator"] = self.generator.to_json()
        out["refiners"] = list(self.refiners)
        return {k: str(v) if isinstance(v, Path) else v for k, v in out.items()}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bfr_fast.refine",
        description="Refine a pretrained flow or diffusion generator with BFR (data-space DFR, latent-space LFR, "
        "their 1-NFE students) and score the base and every refined row.",
    )
    g = parser.add_argument_group("generator")
    g.add_argument("--generator", required=True,
                   help="package.module:Callable (a class or factory returning the nn.Module, e.g. "
                   "torchcfm.models.unet.unet:UNetModelWrapper or diffusers:UNet2DModel), or the folder of a "
                   "python -m bfr_fast.train run (its base)")
    g.add_argument("--generator-kwargs", type=_json_object, default={},
                   help="JSON object of the class's (factory's) keyword arguments, e.g. '{\"dim\": [1, 8, 8]}'")
    g.add_argument("--checkpoint", type=Path,
                   help="the network's weights: a state dict, a training checkpoint that nests one (torchcfm's "
                   "net_model/ema_model, model, state_dict; module. prefixes stripped), a diffusers EMAModel state, "
                   "or a diffusers save_pretrained folder")
    g.add_argument("--checkpoint-key", help="the checkpoint's entry with the weights, e.g. ema_model (needed when "
                   "it holds several)")
    g.add_argument("--convention", default="bfr", choices=tuple(CONVENTIONS),
                   help="how the network is called: bfr net(x, t, y=), torchcfm net(t, x, y=), diffusers "
                   "net(x, t, class_labels=).sample, flow_matching net(x, t, label=) (default bfr)")
    g.add_argument("--time-direction", choices=TIME_DIRECTIONS,
                   help="noise-to-data: t = 0 noise, t = 1 data (bfr, torchcfm, flow_matching); data-to-noise: "
                   "the reverse (default: the convention's; diffusers velocity models: data-to-noise)")
    g.add_argument("--time-scale", type=float,
                   help="factor on the time the network takes (default: the convention's; diffusers velocity "
                   "models: 1000)")
    g.add_argument("--parameterization", default="velocity", choices=PARAMETERIZATIONS,
                   help="velocity (flow matching, t=0 noise, t=1 data) or eps (DDPM ε-prediction, linear β schedule)")
    g.add_argument("--ddpm-steps", type=int, default=1000, help="the DDPM's number of steps (eps only)")
    g.add_argument("--ddpm-time", default="index", choices=DDPM_TIMES,
                   help="what the ε-network takes as time: the DDPM step index, or t in [0, 1] (eps only)")
    g.add_argument("--class-conditional", action="store_true",
                   help="the network takes class labels y (needs labelled data; implied for a run folder on labelled data)")
    g.add_argument("--sampler", default="euler", choices=sorted(TABLEAUX), help="base sampler method")
    g.add_argument("--sampler-steps", type=int,
                   help=f"base sampler steps (default {DEFAULT_SAMPLER_STEPS}, or the run's)")
    d = parser.add_argument_group("data and refiners")
    d.add_argument("--data", help="digits, mnist5k, mnist, cifar10, folder or npz (default: a run's own data)")
    d.add_argument("--data-root", type=Path, help="file or folder of the data set (mnist, cifar10, folder, npz)")
    defaults = ",".join(registry.refine_defaults())
    d.add_argument("--refiners", default=defaults,
                   help=f"comma-separated, of: {registry.describe()} (default {defaults})")
    d.add_argument("--no-distill", action="store_true",
                   help=f"skip the 1-NFE students ({', '.join(registry.students())})")
    d.add_argument("--steps", type=int, help="training steps of each refiner (default by image size)")
    d.add_argument("--distill-steps", type=int, help="training steps of each 1-NFE student (default 400)")
    d.add_argument("--batch-size", type=int, help="refiner batch size (default by image size)")
    d.add_argument("--lr", type=float, help="refiner peak learning rate (default by image size)")
    d.add_argument("--precision", default="fp32", choices=PRECISIONS, help="autocast precision of the training")
    e = parser.add_argument_group("evaluation and run")
    e.add_argument("--num-samples", type=int, help="samples per row and evaluation seed (default by image size)")
    e.add_argument("--eval-seeds", type=int, help="evaluation seeds (default by image size)")
    e.add_argument("--inception", type=Path, help="clean-fid's inception-2015-12-05.pt, for true FID")
    e.add_argument("--cache-dir", type=Path, help="cache of trained feature extractors (~/.cache/bfr_fast)")
    e.add_argument("--out", type=Path, help="run folder (default: runs/refine-<date>-<time>)")
    e.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoints")
    e.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:N")
    e.add_argument("--seed", type=int, default=0, help="seed of the training and of the evaluation noise")
    e.add_argument("--no-sanity-check", action="store_true",
                   help="skip the check, before any training, that the base samples images rather than noise")
    return parser


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"not JSON ({error}): {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"must be a JSON object {{...}}, got {text!r}")
    return value


def parse_options(argv: list[str] | None) -> RefineOptions:
    """The resolved options; with ``--resume``, checked against those the run recorded.

    Raises:
        ValueError: A bad option (naming it), or with ``--resume`` one that differs from the run's.
    """
    args = build_parser().parse_args(argv)
    for name in ("steps", "distill_steps", "batch_size", "num_samples", "eval_seeds", "sampler_steps"):
        if getattr(args, name) is not None:
            positive_int(f"--{name.replace('_', '-')}", getattr(args, name))
    if args.lr is not None:
        positive_float("--lr", args.lr)
    refiners = registry.check_names((r.strip() for r in args.refiners.split(",") if r.strip()), "--refiners")
    data, data_root, conditional, sampler_steps = args.data, args.data_root, args.class_conditional, args.sampler_steps
    if Path(args.generator).is_dir():  # a run of this project: its data, labels and sampler unless overridden
        recorded = run_options(Path(args.generator))
        if args.checkpoint is not None:
            raise ValueError("--checkpoint: a run folder's base comes from its own checkpoints/base.pt; drop it")
        data = data or recorded.get("data") or "digits"
        if data_root is None and recorded.get("data_root") is not None:
            data_root = Path(recorded["data_root"])
        sampler_steps = sampler_steps or recorded.get("sampler_steps") or DEFAULT_SAMPLER_STEPS
    elif data is None:
        raise ValueError("--data: name the data set the generator imitates (digits, mnist5k, mnist, cifar10, folder, "
                         "npz)")
    # Paths recorded absolute, so that `python -m bfr_fast.sample --run OUT` finds them from any directory.
    source = str(Path(args.generator).resolve()) if Path(args.generator).is_dir() else args.generator
    checkpoint = None if args.checkpoint is None else args.checkpoint.resolve()
    spec = GeneratorSpec(source, checkpoint, args.parameterization, args.ddpm_steps, args.ddpm_time,
                         args.sampler, sampler_steps or DEFAULT_SAMPLER_STEPS, conditional, args.generator_kwargs,
                         args.convention, args.time_direction, args.time_scale, args.checkpoint_key)
    out = args.out or Path("runs") / f"refine-{time.strftime('%Y%m%d-%H%M%S')}"
    options = RefineOptions(out, spec, data, data_root, refiners, not args.no_distill, args.steps, args.distill_steps,
                            args.batch_size, args.lr, args.precision, args.num_samples, args.eval_seeds,
                            args.inception, args.cache_dir, args.device, args.seed, args.resume,
                            not args.no_sanity_check)
    if args.resume:
        _check_resume(options)
    return options


def _check_resume(options: RefineOptions) -> None:
    refuse_changed_options(options.out / "config.json", run_options(options.out), options.to_json())


def load_task(options: RefineOptions, data: ImageDataset, device: Any, network: nn.Module | None = None
              ) -> RefinementTask:
    """The generator of ``options`` (or ``network``, called as ``options.generator`` says) on ``data``, with the
    budget of its image size and the options' overrides."""
    spec = options.generator
    conditional = spec.conditional or (spec.is_run and data.is_labelled)
    if conditional and not data.is_labelled:
        raise ValueError(f"--class-conditional: data set {data.name!r} has no labels to condition on")
    spec = replace(spec, conditional=conditional)
    generator = frozen_generator(spec, data.image_shape, data.num_classes, device, network)
    budget = refinement_budget(data.image_shape).with_overrides(
        refiner_steps=options.steps, distill_steps=options.distill_steps, batch_size=options.batch_size,
        lr=options.lr, precision=options.precision, num_samples=options.num_samples, eval_seeds=options.eval_seeds,
    )
    return RefinementTask(data, budget, generator, conditional)


def job(options: RefineOptions, ws: Workspace, network: nn.Module | None = None,
        done: Callable[[Refinement], None] | None = None) -> RunResult:
    """Loads data and generator, checks the base (:func:`~bfr_fast.pipelines.sanity.check_base`), refines it
    (:func:`~bfr_fast.pipelines.refinement.refine`), scores real training images as the floor, and reports;
    ``done`` receives the refinement."""
    data = load_dataset(options.data, root=options.data_root)
    task = load_task(options, data, ws.device, network)
    scorer, sanity = None, None
    if ws.is_main:  # before any training: a data set that cannot be scored, or a base that samples noise, stops here
        extractor = build_extractor(data, options.inception, options.cache_dir or default_cache_dir(), ws.device,
                                    progress=True)
        scorer = Scorer.of(extractor, data)
        if options.sanity_check:
            sanity = check_base(task, scorer, ws.seed, ws.device, options.generator.source).to_json()
    result = refine(ws, task, scorer, options.refiners, options.distill)
    if done is not None:
        done(result)
    if scorer is None:
        return RunResult({}, "")
    name = scorer.extractor.name
    real = real_floor(ws, data, scorer, task.budget.num_samples)
    g = task.generator
    title = (
        f"BFR of `{options.generator.source}` on `{data.name}`: base sampler {g.method} {g.num_steps} steps "
        f"({g.nfe} NFE); {task.budget.num_samples} samples per row and seed, scored against the "
        f"{data.test_x.shape[0]} held-out images with `{name}`; mean ± std over {task.budget.eval_seeds} seeds"
    )
    metrics = {
        "command": "refine",
        "dataset": data.name,
        "image_shape": list(data.image_shape),
        "num_classes": task.num_classes,
        "generator": replace(options.generator, conditional=task.conditional).to_json(),
        "sanity_check": sanity,
        "budget": asdict(task.budget),
        "extractor": name,
        "distillation": result.distillation,
        "inversion_error": result.inversion_error,
        "refiners": {m: f"checkpoints/{m}-refiner.pt" for m in result.refiners},
        "rows": result.rows,
        "real": real,
    }
    floor = ("The floor of these metrics on this data: " + ", ".join(
        f"{metric_label(k, name)} {real[k]:.4g}" for k in ("fd", "kid", "is", "precision", "recall"))
        + f" for {real['num_images']} real training images scored the same way (samples/real.png).")
    body = f"## {title}\n\n{result.table(name)}\n{distillation_note(result.distillation)}\n\n{floor}\n"
    return RunResult(metrics, body)


def real_floor(ws: Workspace, data: ImageDataset, scorer: Scorer, num_samples: int) -> dict[str, Any]:
    """Real training images scored like a row (as many as a row's samples, at most the training set): the metrics'
    floor on this data, the headroom above which refinement can still gain."""
    n = min(num_samples, data.train_x.shape[0])
    row = evaluate_row(ws, {"method": "real", "seed": None}, data.train_x[:n], scorer.reference, scorer.extractor,
                       "real")
    return {**row, "num_images": n}


def run(options: RefineOptions, network: nn.Module | None = None,
        done: Callable[[Refinement], None] | None = None) -> RunFolder:
    """Refines in the run folder ``options.out`` (the generator built from ``options``, or ``network``); returns
    the folder."""
    return execute(options.out, options.resume, options.device, options.seed, {"options": options.to_json()},
                   lambda ws: job(options, ws, network, done), "refine")


def refine_generator(
    generator: str | nn.Module,
    data: str,
    out: str | Path,
    *,
    data_root: str | Path | None = None,
    checkpoint: str | Path | None = None,
    checkpoint_key: str | None = None,
    generator_kwargs: dict[str, Any] | None = None,
    convention: str = "bfr",
    time_direction: str | None = None,
    time_scale: float | None = None,
    parameterization: str = "velocity",
    ddpm_steps: int = 1000,
    ddpm_time: str = "index",
    class_conditional: bool = False,
    sampler: str = "euler",
    sampler_steps: int = DEFAULT_SAMPLER_STEPS,
    refiners: Sequence[str] = registry.refine_defaults(),
    distill: bool = True,
    sanity_check: bool = True,
    resume: bool = False,
    **overrides: Any,
) -> Refinement:
    """``python -m bfr_fast.refine`` from Python (a notebook): the same options, the same run folder.

    Example::

        from bfr_fast.refine import refine_generator
        result = refine_generator(my_unet, "digits", "runs/mine", convention="torchcfm", class_conditional=True)
        print(result.table("digitsnet"))

    Args:
        generator: The network itself (an ``nn.Module`` holding its weights), ``"pkg.module:Callable"`` (built
            with ``generator_kwargs``, weights from ``checkpoint``), or a run folder of this project.
        data: The data set it imitates (``digits``, ``mnist5k``, ``mnist``, ``cifar10``, ``folder``, ``npz``).
        out: The run folder (refused if it holds another run, unless ``resume``).
        data_root, checkpoint, checkpoint_key, generator_kwargs, convention, time_direction, time_scale,
            parameterization, ddpm_steps, ddpm_time, class_conditional, sampler, sampler_steps, refiners, distill,
            sanity_check, resume: As the CLI's options of the same names.
        **overrides: The CLI's budget and run options: ``steps``, ``distill_steps``, ``batch_size``, ``lr``,
            ``precision``, ``num_samples``, ``eval_seeds``, ``inception``, ``cache_dir``, ``device``, ``seed``.

    Returns:
        The refiners, their students and the scored rows. The run folder holds them too; ``python -m
        bfr_fast.sample`` can rebuild the generator from it when ``generator`` was a source string, not an object
        (recorded as ``<in-memory pkg.module:Class>``, which it refuses).

    Raises:
        ValueError: A bad option or file, or a base that samples noise as configured (the CLI's one-line errors).
    """
    network = generator if isinstance(generator, nn.Module) else None
    kind = type(network)
    source = str(generator) if network is None else f"{IN_MEMORY}{kind.__module__}:{kind.__qualname__}>"
    if network is None and Path(source).is_dir():
        source = str(Path(source).resolve())
    spec = GeneratorSpec(source, None if checkpoint is None else Path(checkpoint).resolve(), parameterization,
                         ddpm_steps, ddpm_time, sampler, sampler_steps, class_conditional, dict(generator_kwargs or {}),
                         convention, time_direction, time_scale, checkpoint_key)
    unknown = sorted(set(overrides) - {f.name for f in fields(RefineOptions)})
    if unknown or {"out", "generator", "data"} & set(overrides):
        raise ValueError(f"refine_generator: unknown options {unknown}")
    paths = {k: Path(v) for k, v in overrides.items() if k in ("inception", "cache_dir") and v is not None}
    options = RefineOptions(Path(out), spec, data, None if data_root is None else Path(data_root),
                            registry.check_names(refiners, "--refiners"), distill, resume=resume,
                            sanity_check=sanity_check, **{**overrides, **paths})
    if resume:
        _check_resume(options)
    results: list[Refinement] = []
    run(options, network, results.append)
    return results[0]


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; the exit codes of :func:`~bfr_fast.train.runner.guarded_main`."""
    return guarded_main(lambda: parse_options(argv), run)


if __name__ == "__main__":
    raise SystemExit(main())
