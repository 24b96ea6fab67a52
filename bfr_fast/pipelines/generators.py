"""A user's generator made frozen: a network class or factory with its checkpoint, or the base of a run of this project.

A generator is any ``nn.Module`` returning a tensor of its input's shape (or a diffusers output whose ``.sample``
is one): a velocity (flow matching), or an ε-prediction of a DDPM, which
:class:`~bfr_fast.paths.ProbabilityFlowVelocity` turns into its probability-flow ODE velocity. How it is called
(argument order, label keyword, time direction and scale) is its library's convention
(:class:`~bfr_fast.models.ForeignNetwork`); its weights come from a checkpoint as that library writes it
(:mod:`~bfr_fast.pipelines.weights`) or from a diffusers ``save_pretrained`` folder.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bfr_fast.checkpoint import load
from bfr_fast.checks import choice, integer, positive_float, positive_int
from bfr_fast.models import CONVENTIONS, TIME_DIRECTIONS, ForeignNetwork
from bfr_fast.models.conventions import default_time
from bfr_fast.paths import DDPMSchedule, ProbabilityFlowVelocity
from bfr_fast.paths.ddpm import ModelTime
from bfr_fast.pipelines.presets import image_preset
from bfr_fast.pipelines.weights import key_mismatch, load_weights
from bfr_fast.refiners import FrozenGenerator
from bfr_fast.solvers import TABLEAUX

PARAMETERIZATIONS = ("velocity", "eps")
DDPM_TIMES = ("index", "t")
DEFAULT_SAMPLER_STEPS = 20
IN_MEMORY = "<in-memory "
"""How a run records a generator it was given as a Python object (``<in-memory pkg.module:Class>``)."""
OPTIONAL_LIBRARIES = {"torchcfm": "torchcfm", "diffusers": "diffusers", "flow_matching": "flow_matching"}
"""Top-level module -> distribution of the training libraries the ``ecosystem`` extra installs."""


@dataclass(frozen=True)
class GeneratorSpec:
    """Where a frozen base comes from, how it is called and how it is sampled.

    Attributes:
        source: ``"pkg.module:Callable"`` (a class or factory returning the network, called with ``kwargs``), or
            the folder of a run of this project whose ``checkpoints/base.pt`` holds the base (its EMA weights).
        checkpoint: The network's weights: a checkpoint file (:mod:`~bfr_fast.pipelines.weights`: a state dict,
            nested or not, an EMA state), or a diffusers ``save_pretrained`` folder loaded by the class's
            ``from_pretrained``; None for a run folder, or for a factory that loads its own weights.
        checkpoint_key: The checkpoint's entry holding the weights (``"ema_model"``), or None to find it.
        kwargs: Keyword arguments of the class or factory (JSON values).
        convention: How the network is called, a key of :data:`~bfr_fast.models.CONVENTIONS`.
        time_direction: ``"noise-to-data"`` or ``"data-to-noise"``; None: the convention's default.
        time_scale: Factor on the time the network receives; None: the convention's default.
        parameterization: ``"velocity"`` or ``"eps"`` (an ε-prediction DDPM with a linear β schedule of
            ``ddpm_steps`` steps, 1e-4 to 0.02).
        ddpm_steps: The DDPM's number of discrete steps.
        ddpm_time: What the ε-network takes as time: ``"index"``, the DDPM step (0 = data, ``ddpm_steps`` - 1 =
            noise) as a float, or ``"t"``, continuous time in [0, 1] with t = 1 data (t = 1 noise with
            ``time_direction="data-to-noise"``).
        sampler: The fixed-step ODE method of the base sampler (``"euler"``, ``"midpoint"``, ``"heun"``, ``"rk4"``).
        sampler_steps: Its steps over [0, 1].
        conditional: Whether the network takes class labels.
    """

    source: str
    checkpoint: Path | None = None
    parameterization: str = "velocity"
    ddpm_steps: int = 1000
    ddpm_time: str = "index"
    sampler: str = "euler"
    sampler_steps: int = DEFAULT_SAMPLER_STEPS
    conditional: bool = False
    kwargs: dict[str, Any] = field(default_factory=dict)
    convention: str = "bfr"
    time_direction: str | None = None
    time_scale: float | None = None
    checkpoint_key: str | None = None

    def __post_init__(self) -> None:
        choice("--parameterization", self.parameterization, PARAMETERIZATIONS)
        choice("--ddpm-time", self.ddpm_time, DDPM_TIMES)
        choice("--sampler", self.sampler, sorted(TABLEAUX))
        choice("--convention", self.convention, tuple(CONVENTIONS))
        integer("--ddpm-steps", self.ddpm_steps, low=2)
        positive_int("--sampler-steps", self.sampler_steps)
        if self.time_direction is not None:
            choice("--time-direction", self.time_direction, TIME_DIRECTIONS)
        if self.time_scale is not None:
            positive_float("--time-scale", self.time_scale)
        if not isinstance(self.kwargs, dict):
            raise ValueError(f"--generator-kwargs must be a JSON object, got {self.kwargs!r}")
        if self.parameterization == "eps" and self.ddpm_time == "index" and self.time_direction == "data-to-noise":
            raise ValueError("--time-direction: a DDPM index already says where noise is (its last index); "
                             "data-to-noise applies to velocity networks and to --ddpm-time t")
        if self.is_run and (self.kwargs or self.convention != "bfr" or self.checkpoint_key is not None):
            raise ValueError("--generator: a run folder's base is this project's own network; drop "
                             "--generator-kwargs, --convention and --checkpoint-key")

    @property
    def is_run(self) -> bool:
        """The source is a run folder (it names a directory), not a factory."""
        return Path(self.source).is_dir()

    @property
    def resolved_time(self) -> tuple[str, float]:
        """``(time_direction, time_scale)`` with the convention's defaults filled in."""
        direction, scale = default_time(self.convention, self.parameterization)
        return (self.time_direction or direction, scale if self.time_scale is None else self.time_scale)

    def to_json(self) -> dict[str, Any]:
        return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, payload: dict[str, Any]) -> GeneratorSpec:
        checkpoint = payload.get("checkpoint")
        return cls(**{**payload, "checkpoint": None if checkpoint is None else Path(checkpoint)})


def run_options(run: Path) -> dict[str, Any]:
    """The options recorded in a run folder's ``config.json``.

    Raises:
        ValueError: No readable ``config.json`` in ``run``.
    """
    config = Path(run) / "config.json"
    try:
        return json.loads(config.read_text())["options"]
    except (OSError, ValueError, KeyError, TypeError):
        raise ValueError(f"{run}: no run's config.json there; pass the folder of a finished run") from None


def import_source(source: str) -> Callable[..., Any]:
    """The callable ``source`` names (``"pkg.module:Callable"``, dots allowed after the colon).

    Raises:
        ValueError: Not ``module:attribute``; a module that does not import (for a training library the
            ``ecosystem`` extra installs, the message says to install it); an attribute that is missing or not
            callable.
    """
    if source.startswith(IN_MEMORY):
        raise ValueError(f"--generator: the run's generator {source} was a Python object given to refine_generator, "
                         "and a run folder cannot rebuild it; use the refiners refine_generator returned, or refine "
                         "from 'package.module:Callable' with --checkpoint")
    module_name, _, attribute = source.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"--generator: expected a run folder or 'package.module:Callable', got {source!r}")
    library = module_name.split(".")[0]
    try:
        target: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if library in OPTIONAL_LIBRARIES and error.name is not None and error.name.split(".")[0] == library:
            raise ValueError(f"--generator: {library} is not installed; install the ecosystem extra: "
                             "pip install -e \".[ecosystem]\"") from None
        raise ValueError(f"--generator: cannot import {module_name!r}: {type(error).__name__}: {error} "
                         "(is its folder on PYTHONPATH?)") from None
    except Exception as error:  # the user's module may fail in any way while importing
        raise ValueError(f"--generator: cannot import {module_name!r}: {type(error).__name__}: {error} "
                         "(is its folder on PYTHONPATH?)") from None
    for part in attribute.split("."):
        target = getattr(target, part, None)
    if not callable(target):
        raise ValueError(f"--generator: {module_name!r} has no callable {attribute!r}")
    return target


def build_factory_network(spec: GeneratorSpec) -> nn.Module:
    """Builds the network of ``spec.source`` with ``spec.kwargs`` and loads ``spec.checkpoint`` into it.

    A ``save_pretrained`` folder is loaded by the class's own ``from_pretrained`` (diffusers' models), offline;
    a file by :func:`~bfr_fast.pipelines.weights.load_weights`.

    Raises:
        ValueError: A source that cannot be imported or called (:func:`import_source`), a factory that raises or
            returns something other than an ``nn.Module``, a folder that the class cannot load, or a checkpoint
            that does not load or fit (the message names the file and what to do).
    """
    factory = import_source(spec.source)
    name = f"{spec.source}(**{spec.kwargs})" if spec.kwargs else f"{spec.source}()"
    checkpoint = spec.checkpoint
    if checkpoint is not None and checkpoint.is_dir():
        network = _from_pretrained(factory, spec, checkpoint)
    else:
        try:
            network = factory(**spec.kwargs)
        except Exception as error:
            raise ValueError(f"--generator: {name} raised {type(error).__name__}: {error}") from None
    if not isinstance(network, nn.Module):
        raise ValueError(f"--generator: {name} returned a {type(network).__name__}, not a torch nn.Module")
    if checkpoint is not None and not checkpoint.is_dir():
        if not checkpoint.exists():
            raise FileNotFoundError(f"--checkpoint: {checkpoint} does not exist")
        load_weights(network, checkpoint, spec.checkpoint_key, name)
    return network


def _from_pretrained(factory: Callable[..., Any], spec: GeneratorSpec, folder: Path) -> Any:
    loader = getattr(factory, "from_pretrained", None)
    if loader is None:
        raise ValueError(f"--checkpoint: {folder} is a folder; pass the checkpoint file inside it, or a diffusers "
                         "save_pretrained folder with the model's class as --generator (e.g. diffusers:UNet2DModel)")
    if spec.kwargs or spec.checkpoint_key is not None:
        raise ValueError(f"--checkpoint: {folder} is a save_pretrained folder, which carries its own config and "
                         "weights; drop --generator-kwargs and --checkpoint-key")
    if not (folder / "config.json").is_file():
        raise ValueError(f"--checkpoint: {folder} has no config.json, so it is not a save_pretrained folder; pass "
                         "the folder model.save_pretrained(...) wrote (an EMA's: ema.save_pretrained(...))")
    # offline; and without `accelerate` diffusers would warn on stderr that it turns low_cpu_mem_usage off itself
    options = {"local_files_only": True}
    if getattr(factory, "__module__", "").startswith("diffusers."):
        options["low_cpu_mem_usage"] = False
    try:
        return loader(str(folder), **options)
    except Exception as error:  # a broken or foreign folder fails in the library's own ways
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(f"--checkpoint: {spec.source}.from_pretrained({folder}) failed: {first}") from None


def build_run_network(run: Path, image_shape: tuple[int, int, int], num_classes: int | None) -> nn.Module:
    """The EMA base of a run of this project (``checkpoints/base.pt``), rebuilt with the preset of its images.

    Raises:
        FileNotFoundError: The run has no ``checkpoints/base.pt``.
        ValueError: The checkpoint is not a trainer checkpoint of that network.
    """
    path = Path(run) / "checkpoints" / "base.pt"
    state = load(path)
    ema = state.get("ema") if isinstance(state, dict) else None
    if not isinstance(ema, dict):
        raise ValueError(f"--generator: {path} is not a trainer checkpoint (no EMA weights)")
    weights = {k.removeprefix("module."): v for k, v in ema.items() if k.startswith("module.")}
    network = image_preset(image_shape).build(image_shape[0], num_classes)
    missing, unexpected = key_mismatch(network, weights)
    if missing or unexpected:
        raise ValueError(f"--generator: {path} does not hold the base of {image_shape} images this project builds")
    network.load_state_dict(weights)
    return network


def frozen_generator(
    spec: GeneratorSpec, image_shape: tuple[int, int, int], num_classes: int | None, device: torch.device,
    network: nn.Module | None = None,
) -> FrozenGenerator:
    """The generator of ``spec`` on ``device``, in eval mode without gradients, with its sampler, checked on
    ``image_shape``.

    Args:
        spec: The generator, its convention and its sampler.
        image_shape: ``(C, H, W)`` of the data it imitates.
        num_classes: Its classes when ``spec.conditional`` (the labels it is called with are in
            ``[0, num_classes)``), else ignored.
        device: Where it samples.
        network: The network itself (already holding its weights) instead of building it from ``spec.source``
            (the Python entry point, :func:`~bfr_fast.pipelines.refine_generator`).

    Raises:
        ValueError: The network cannot be built or loaded, it does not map a batch of ``image_shape`` to that
            shape (the message says what it returned), or, conditional, it fails on a label below
            ``num_classes`` or ignores its labels.
    """
    classes = num_classes if spec.conditional else None
    if network is None:
        network = build_run_network(Path(spec.source), image_shape, classes) if spec.is_run else \
            build_factory_network(spec)
    network = network.to(device).eval().requires_grad_(False)
    direction, scale = spec.resolved_time
    model: nn.Module = network if spec.is_run else ForeignNetwork(
        network, spec.convention, spec.parameterization, direction, scale)
    if spec.parameterization == "eps":
        model_time: ModelTime = "t" if spec.ddpm_time == "t" else "index"  # checked by GeneratorSpec
        model = ProbabilityFlowVelocity(model, DDPMSchedule(spec.ddpm_steps), model_time=model_time).to(device)
    _check_calls(model, image_shape, classes, device, spec.source)
    return FrozenGenerator(model, method=spec.sampler, num_steps=spec.sampler_steps,
                           name=f"--generator {spec.source}")


@torch.no_grad()
def _check_calls(model: nn.Module, image_shape: tuple[int, int, int], num_classes: int | None,
                 device: torch.device, source: str) -> None:
    """Calls ``model`` as the sampler will, on two random images, so that a wrong shape, convention or label set
    is one line before any training, not a traceback from inside the user's network halfway through the run.

    With labels, it is also called with the largest label the run gives it (``num_classes - 1``: the data's
    largest), which must work, and must change its output unless the output ignores its input altogether (an
    untrained network whose last layer starts at zero).
    """
    x = torch.randn(2, *image_shape, generator=torch.Generator().manual_seed(0)).to(device)
    t = torch.full((2,), 0.5, device=device)
    extras = {} if num_classes is None else {"y": torch.zeros(2, dtype=torch.int64, device=device)}
    try:
        out = model(x, t, **extras)
    except Exception as error:  # the user's network may fail in any way on data of the wrong shape
        hint = "" if extras else "; if the network needs labels, add --class-conditional"
        raise ValueError(f"--generator: {source} fails on a batch of the data's shape {tuple(x.shape)}"
                         f"{' with labels' if extras else ''}: {type(error).__name__}: {_first_line(error)} "
                         f"(is --convention right?{hint})") from None
    if not isinstance(out, torch.Tensor) or out.shape != x.shape:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"--generator: {source} maps a batch of the data's shape {tuple(x.shape)} to {got}; "
                         "it must return a tensor of its input's shape")
    if num_classes is None or num_classes == 1:
        return
    last = num_classes - 1
    try:
        other = model(x, t, y=torch.full((2,), last, dtype=torch.int64, device=device))
    except Exception as error:  # an embedding of fewer classes than the data's fails in the user's code
        raise ValueError(f"--class-conditional: the data's labels go up to {last} ({num_classes} classes, 0 to "
                         f"{last}), but {source} fails on label {last}: {type(error).__name__}: "
                         f"{_first_line(error)}; relabel the data within the network's classes, or build the "
                         f"network for {num_classes} classes (--generator-kwargs)") from None
    if torch.equal(out, other) and not torch.equal(out[0], out[1]):
        raise ValueError(f"--class-conditional: {source}'s output does not depend on the label (labels 0 and "
                         f"{last} give the same velocity); drop --class-conditional, or fix the network so "
                         "that it uses y (is --convention right?)")


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else ""
