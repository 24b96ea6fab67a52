"""A user's generator made frozen: a factory with a checkpoint, or the base of a run of this project.

A generator is any ``nn.Module`` called as ``model(x, t)`` or ``model(x, t, y=y)``, returning a tensor of
``x``'s shape: a velocity (flow matching, t = 0 noise, t = 1 data), or an ε-prediction of a DDPM, which
:class:`~bfr_fast.paths.ProbabilityFlowVelocity` turns into its probability-flow ODE velocity.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bfr_fast.checkpoint import load
from bfr_fast.checks import choice, integer, positive_int
from bfr_fast.paths import DDPMSchedule, ProbabilityFlowVelocity
from bfr_fast.pipelines.presets import image_preset
from bfr_fast.refiners import FrozenGenerator
from bfr_fast.solvers import TABLEAUX

PARAMETERIZATIONS = ("velocity", "eps")
DDPM_TIMES = ("index", "t")
DEFAULT_SAMPLER_STEPS = 20


@dataclass(frozen=True)
class GeneratorSpec:
    """Where a frozen base comes from and how it is sampled.

    Attributes:
        source: ``"pkg.module:factory"`` (a callable taking no arguments and returning the network), or the folder
            of a run of this project whose ``checkpoints/base.pt`` holds the base (its EMA weights are used).
        checkpoint: The factory network's ``state_dict`` file (loaded with ``weights_only=True``); None for a run
            folder, or for a factory that loads its own weights.
        parameterization: ``"velocity"`` or ``"eps"`` (an ε-prediction DDPM with a linear β schedule of
            ``ddpm_steps`` steps, 1e-4 to 0.02).
        ddpm_steps: The DDPM's number of discrete steps.
        ddpm_time: What the ε-network takes as time: ``"index"``, the DDPM step (0 = data, ``ddpm_steps`` - 1 =
            noise) as a float, or ``"t"``, continuous time in [0, 1] with t = 1 data.
        sampler: The fixed-step ODE method of the base sampler (``"euler"``, ``"midpoint"``, ``"heun"``, ``"rk4"``).
        sampler_steps: Its steps over [0, 1].
        conditional: Whether the network takes class labels ``y``.
    """

    source: str
    checkpoint: Path | None = None
    parameterization: str = "velocity"
    ddpm_steps: int = 1000
    ddpm_time: str = "index"
    sampler: str = "euler"
    sampler_steps: int = DEFAULT_SAMPLER_STEPS
    conditional: bool = False

    def __post_init__(self) -> None:
        choice("--parameterization", self.parameterization, PARAMETERIZATIONS)
        choice("--ddpm-time", self.ddpm_time, DDPM_TIMES)
        choice("--sampler", self.sampler, sorted(TABLEAUX))
        integer("--ddpm-steps", self.ddpm_steps, low=2)
        positive_int("--sampler-steps", self.sampler_steps)

    @property
    def is_run(self) -> bool:
        """The source is a run folder (it names a directory), not a factory."""
        return Path(self.source).is_dir()

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


def build_factory_network(spec: GeneratorSpec) -> nn.Module:
    """Imports and calls ``spec.source`` (``"pkg.module:factory"``) and loads ``spec.checkpoint`` into it.

    Raises:
        ValueError: A source that is not ``module:attribute``, a module that does not import, an attribute that is
            missing or not callable, a factory that raises or returns something other than an ``nn.Module``, or a
            checkpoint whose keys do not fit the network (the first few missing and unexpected keys named).
    """
    module_name, _, attribute = spec.source.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"--generator: expected a run folder or 'package.module:factory', got {spec.source!r}")
    try:
        module = importlib.import_module(module_name)
    except Exception as error:  # the user's module may fail in any way while importing
        raise ValueError(f"--generator: cannot import {module_name!r}: {type(error).__name__}: {error} "
                         "(is its folder on PYTHONPATH?)") from None
    factory = getattr(module, attribute, None)
    if not callable(factory):
        raise ValueError(f"--generator: {module_name!r} has no callable {attribute!r}")
    try:
        network = factory()
    except Exception as error:
        raise ValueError(f"--generator: {spec.source}() raised {type(error).__name__}: {error}") from None
    if not isinstance(network, nn.Module):
        raise ValueError(f"--generator: {spec.source}() returned a {type(network).__name__}, not a torch nn.Module")
    if spec.checkpoint is not None:
        state = load(spec.checkpoint)
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]  # a checkpoint that wraps its state dict
        if not isinstance(state, dict):
            raise ValueError(f"--checkpoint: {spec.checkpoint} holds a {type(state).__name__}, not a state dict")
        missing, unexpected = _key_mismatch(network, state)
        if missing or unexpected:
            raise ValueError(f"--checkpoint: {spec.checkpoint} does not fit {spec.source}(): "
                             f"{len(missing)} missing keys {missing[:3]}, {len(unexpected)} unexpected {unexpected[:3]}")
        try:
            network.load_state_dict(state)
        except RuntimeError as error:  # same keys, other shapes
            first = str(error).strip().splitlines()[-1].strip()
            raise ValueError(f"--checkpoint: {spec.checkpoint} does not fit {spec.source}(): {first}") from None
    return network


def _key_mismatch(network: nn.Module, state: dict[str, Any]) -> tuple[list[str], list[str]]:
    expected = set(network.state_dict())
    return sorted(expected - set(state)), sorted(set(state) - expected)


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
    missing, unexpected = _key_mismatch(network, weights)
    if missing or unexpected:
        raise ValueError(f"--generator: {path} does not hold the base of {image_shape} images this project builds")
    network.load_state_dict(weights)
    return network


def frozen_generator(
    spec: GeneratorSpec, image_shape: tuple[int, int, int], num_classes: int | None, device: torch.device,
) -> FrozenGenerator:
    """The generator of ``spec`` on ``device``, in eval mode without gradients, with its sampler, checked on
    ``image_shape``.

    Args:
        spec: The generator and its sampler.
        image_shape: ``(C, H, W)`` of the data it imitates.
        num_classes: Its classes when ``spec.conditional`` (the labels it is called with are in
            ``[0, num_classes)``), else ignored.
        device: Where it samples.

    Raises:
        ValueError: The network cannot be built or loaded, or it does not map a batch of ``image_shape`` to that
            shape (the message says what it returned).
    """
    classes = num_classes if spec.conditional else None
    network = build_run_network(Path(spec.source), image_shape, classes) if spec.is_run else \
        build_factory_network(spec)
    network = network.to(device).eval().requires_grad_(False)
    model: nn.Module = network
    if spec.parameterization == "eps":
        model = ProbabilityFlowVelocity(network, DDPMSchedule(spec.ddpm_steps), model_time=spec.ddpm_time).to(device)
    _check_shape(model, image_shape, classes, device, spec.source)
    return FrozenGenerator(model, method=spec.sampler, num_steps=spec.sampler_steps)


@torch.no_grad()
def _check_shape(model: nn.Module, image_shape: tuple[int, int, int], num_classes: int | None,
                 device: torch.device, source: str) -> None:
    x = torch.zeros(2, *image_shape, device=device)
    t = torch.full((2,), 0.5, device=device)
    extras = {} if num_classes is None else {"y": torch.zeros(2, dtype=torch.int64, device=device)}
    try:
        out = model(x, t, **extras)
    except Exception as error:  # the user's network may fail in any way on data of the wrong shape
        raise ValueError(f"--generator: {source} fails on a batch of the data's shape {tuple(x.shape)}"
                         f"{' with labels' if extras else ''}: {type(error).__name__}: {error}") from None
    if not isinstance(out, torch.Tensor) or out.shape != x.shape:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"--generator: {source} maps a batch of the data's shape {tuple(x.shape)} to {got}; "
                         "it must return a tensor of its input's shape")
