"""Training losses compared at an equal budget: each variant trains the same network from the same seed for the same
steps and batches, then is sampled from the same noise and labels and scored (the ``defar`` recipes).

A variant is a named loss (:class:`LossVariant`) with the samplers it is evaluated with (:class:`EvalSampler`: Euler
on the probability-flow ODE, or Euler–Maruyama on the SDE with the same marginals, along the variant's
interpolant). For each training seed, every variant restarts the global torch RNG at that seed
(:func:`~bfr_fast.pipelines.training.train_flow`), so differences between variants of one seed come from the loss
alone; the spread over seeds is the training variance. The evaluation noise is one fixed set for every row. A
variant may instead continue another's trained network for more steps (fine-tuning): every continuation of one
network starts from its full trainer state and sees the same batches.

Optimisers (:data:`OPTIMISERS`): ``"recipe"``, the preset's (AdamW at the preset's learning rate, 1e-3 on digits,
linear warm-up, gradient clipping at 1); ``"paper"``, DEFAR's (its Tab. 11): Adam (AdamW without weight decay) at a
constant 1e-4 without warm-up, gradient clipping at 0.2. :attr:`ComparisonBudget.lr` overrides either's learning
rate.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

import torch
from torch import nn

from bfr_fast.data import ImageDataset
from bfr_fast.engine.trainer import TrainConfig
from bfr_fast.losses import DEFARLoss, FlowMatchingLoss, InputPerturbationLoss, PathLoss, ScheduledSamplingLoss
from bfr_fast.metrics import evaluate_images
from bfr_fast.models import UNet
from bfr_fast.paths import Interpolant, LinearPath, sde_drift_and_diffusion
from bfr_fast.pipelines.evaluation import Scorer, evaluate_row
from bfr_fast.pipelines.presets import image_preset
from bfr_fast.pipelines.sampling import balanced_labels, source_noise
from bfr_fast.pipelines.training import TrainedFlow, ema_decay, label_dropout, train_config, train_flow
from bfr_fast.pipelines.workspace import Workspace
from bfr_fast.refiners.generator import FrozenGenerator
from bfr_fast.solvers import ODESolver, SDESolver

log = logging.getLogger("bfr_fast")

EVAL_SEED_OFFSET = 1000
"""The evaluation noise is drawn with the run's seed + this, so it never equals a training seed's first draws."""

SAMPLE_ROWS = 128
"""Rows per model call of the ODE sampler. The ODE's rows are independent, and on a CPU the preset's 28x28 UNet runs
a batch of 1000 2.6 times faster in chunks of 128 than whole (1.8 s against 4.7 s on 2 threads, measured; the
activations of a whole batch do not stay in cache)."""

OPTIMISERS: tuple[str, ...] = ("recipe", "paper")
PAPER_LR = 1e-4
PAPER_GRAD_CLIP = 0.2


def describe(settings: dict[str, Any]) -> str:
    """A loss's :attr:`~bfr_fast.losses.PathLoss.settings` as one line: ``"coupling independent; adr ..."``."""
    return "; ".join(f"{key} {value}" for key, value in settings.items())


@dataclass(frozen=True)
class EvalSampler:
    r"""A fixed-step sampler along an interpolant, from t = 0 to its :math:`t_\max`.

    ODE: Euler on :math:`dx = v_\theta\, dt`. SDE: Euler–Maruyama on
    :math:`dx = [v_\theta + D s_\theta]\, dt + \sqrt{2D}\, dW` with SiT's default :math:`D = \sigma(t)`
    (:func:`~bfr_fast.paths.sde_drift_and_diffusion`), whose last step drops the noise, as SiT's sampler does (the
    noise of a last Euler–Maruyama step would stay in the image). Both take ``steps`` model calls (NFE).

    Attributes:
        steps: Steps on the uniform grid of :math:`[0, t_\max]` (= NFE).
        sde: Euler–Maruyama instead of Euler.
        interpolant: The path the model was trained on (default linear).
    """

    steps: int
    sde: bool = False
    interpolant: Interpolant = field(default_factory=LinearPath)

    def __post_init__(self) -> None:
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise ValueError(f"steps must be a positive int, got {self.steps!r}")
        if self.sde and self.steps < 2:
            raise ValueError("steps: the SDE sampler needs >= 2 steps (the last one is noise-free)")

    @property
    def kind(self) -> str:
        return "sde" if self.sde else "ode"

    @property
    def tag(self) -> str:
        """Short name for file names: ``ode10``, ``sde50``."""
        return f"{self.kind}{self.steps}"

    @torch.no_grad()
    def sample(self, model: nn.Module, noise: torch.Tensor, labels: torch.Tensor | None, seed: int) -> torch.Tensor:
        """Samples from ``noise`` (the SDE's increments drawn from a generator seeded by ``seed``); the ODE in chunks
        of :data:`SAMPLE_ROWS` rows, which changes nothing but the speed."""
        # dict[str, Any]: a ** of dict[str, Tensor] would be checked against the solvers' other keyword parameters
        extras: dict[str, Any] = {} if labels is None else {"y": labels}
        grid = torch.linspace(0.0, self.interpolant.t_max, self.steps + 1)
        if not self.sde:
            solver = ODESolver(model, method="euler")
            return torch.cat([
                solver.sample(noise[i:i + SAMPLE_ROWS], time_grid=grid,
                              **{key: value[i:i + SAMPLE_ROWS] for key, value in extras.items()})
                for i in range(0, noise.shape[0], SAMPLE_ROWS)
            ])
        drift, diffusion = sde_drift_and_diffusion(model, self.interpolant)
        generator = torch.Generator(device=noise.device).manual_seed(seed)
        x = SDESolver().sample(noise, drift, diffusion, time_grid=grid[:-1], generator=generator, **extras)
        t_last = torch.full((noise.shape[0],), float(grid[-2]), device=noise.device)
        return x + float(grid[-1] - grid[-2]) * drift(x, t_last, **extras)


@dataclass(frozen=True)
class LossVariant:
    """A named training loss and how it is evaluated.

    Attributes:
        name: Row ``"method"`` and checkpoint stem (``<name>-seed<k>``); variants of one name are one training.
        build: ``build(label_dropout=..., null_class=...) -> loss`` (e.g. ``functools.partial(DEFARLoss, fc=False)``).
        samplers: The samplers of its rows.
        settings: Extra row fields that say what differs (e.g. ``{"lambda_adr": 5.0}``).
        start_from: Name of a variant whose trained network (same seed) this one continues, for ``extra_steps``
            more steps from its checkpoint; ``None`` trains from scratch for the comparison's steps.
        extra_steps: Steps of the continuation (with ``start_from``).
    """

    name: str
    build: Callable[..., PathLoss]
    samplers: tuple[EvalSampler, ...]
    settings: dict[str, Any] = field(default_factory=dict)
    start_from: str | None = None
    extra_steps: int = 0

    def __post_init__(self) -> None:
        if (self.start_from is None) != (self.extra_steps == 0) or self.extra_steps < 0:
            raise ValueError(f"{self.name}: start_from and extra_steps > 0 go together, got "
                             f"{self.start_from!r} and {self.extra_steps}")


@dataclass(frozen=True)
class ComparisonBudget:
    """A comparison's budget.

    Attributes:
        steps: Training steps of every network.
        seeds: Training seeds per variant (the run's seed, + 1, ...).
        num_samples: Samples per evaluated row.
        lr: Peak learning rate of every network (None: the optimiser's, :data:`OPTIMISERS`).
        batch_size: Minibatch size (None: the preset's).
        precision: Autocast precision of the training.
        max_ema_decay: An upper bound on every network's EMA decay, which is otherwise sized by the training's steps
            (:func:`~bfr_fast.pipelines.training.ema_decay`): a shorter average where the weights still move at the
            end of the budget. None: no bound.
        score_raw: Also score each network's raw (not averaged) weights with every sampler: the row's ``raw_fd``
            and ``raw_kid``. The EMA's rows stay the table's; the raw ones show whether the EMA helped.
    """

    steps: int
    seeds: int
    num_samples: int
    lr: float | None = None
    batch_size: int | None = None
    precision: str = "fp32"
    max_ema_decay: float | None = None
    score_raw: bool = False


@dataclass
class ComparisonSetup:
    """What every row of a comparison shares: data, budget, optimiser, the scorer, and the evaluation noise and
    labels; and the networks trained (with their training seconds) and rows scored so far, keyed by variant name
    and seed."""

    data: ImageDataset
    budget: ComparisonBudget
    seeds: tuple[int, ...]
    scorer: Scorer | None
    noise: torch.Tensor
    labels: torch.Tensor | None
    eval_seed: int
    optimiser: str = "recipe"
    trained: dict[tuple[str, int], tuple[TrainedFlow, float]] = field(default_factory=dict)
    scored: dict[tuple[str, int, str], dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def create(
        cls, ws: Workspace, data: ImageDataset, budget: ComparisonBudget, scorer: Scorer | None,
        optimiser: str = "recipe",
    ) -> ComparisonSetup:
        """The evaluation noise and labels of ``budget.num_samples`` rows, drawn from the run's seed.

        Args:
            ws: The run.
            data: Training and held-out images.
            budget: Steps, seeds, samples and optimisation overrides.
            scorer: The metrics' feature space and reference (None on ranks other than the main one).
            optimiser: One of :data:`OPTIMISERS`.

        Raises:
            ValueError: An ``optimiser`` not in :data:`OPTIMISERS`.
        """
        if optimiser not in OPTIMISERS:
            raise ValueError(f"optimiser must be one of {OPTIMISERS}, got {optimiser!r}")
        eval_seed = ws.seed + EVAL_SEED_OFFSET
        noise = source_noise(budget.num_samples, data.image_shape, eval_seed, ws.device)
        labels = balanced_labels(budget.num_samples, data.num_classes, ws.device)
        seeds = tuple(ws.seed + k for k in range(budget.seeds))
        return cls(data, budget, seeds, scorer, noise, labels, eval_seed, optimiser)

    @property
    def steps(self) -> int:
        return self.budget.steps

    @property
    def num_samples(self) -> int:
        return self.noise.shape[0]

    def identity(self, ema: nn.Module, model: nn.Module, step: int) -> dict[str, Any]:
        """What a network's scores depend on besides the sampler: its trainer step, the fingerprints of its EMA
        weights and (when the budget scores them) raw weights (:meth:`FrozenGenerator.fingerprint
        <bfr_fast.refiners.FrozenGenerator.fingerprint>`, which also covers the network's code), the evaluation
        seed and number of samples, and the feature space.

        Args:
            ema: The EMA network.
            model: The raw network.
            step: The trainer's step.

        Returns:
            A dict of JSON values.
        """
        assert self.scorer is not None  # only the main process scores
        return {
            "train_step": step, "ema": FrozenGenerator(ema).fingerprint(),
            "raw": FrozenGenerator(model).fingerprint() if self.budget.score_raw else None,
            "eval_seed": self.eval_seed, "num_samples": self.num_samples, "extractor": self.scorer.extractor.name,
        }

    def stem(self, name: str, seed: int) -> str:
        """Checkpoint name of a network: ``<name>-seed<k>``, plus ``-paper-optim`` under the paper's optimiser, so
        that a resumed run never takes a network trained with the other one."""
        return f"{name}-seed{seed}" + ("-paper-optim" if self.optimiser == "paper" else "")

    def config(self, steps: int) -> TrainConfig:
        """The optimisation settings of a training of ``steps`` under the optimiser."""
        lr = self.budget.lr or (PAPER_LR if self.optimiser == "paper" else image_preset(self.data.image_shape).lr)
        config = train_config(steps, lr, self.budget.precision)
        if self.budget.max_ema_decay is not None:
            config = replace(config, ema_decay=min(config.ema_decay, self.budget.max_ema_decay))
        if self.optimiser == "paper":
            config = replace(config, warmup_steps=0, weight_decay=0.0, grad_clip=PAPER_GRAD_CLIP)
        return config

    def continuation(self, extra_steps: int) -> TrainConfig:
        """The settings of ``extra_steps`` more steps after a network of :attr:`steps`: an EMA sized for the
        continuation (:func:`~bfr_fast.pipelines.training.ema_decay`), so that it forgets the start's average as a
        fresh run of that length would (at most the budget's ``max_ema_decay``); the optimiser's state, and so its
        learning rate, come from the start."""
        decay = min(ema_decay(extra_steps), self.budget.max_ema_decay or 1.0)
        return replace(self.config(self.steps), steps=self.steps + extra_steps, ema_decay=decay,
                       checkpoint_every=max(extra_steps // 5, 1), log_every=max(extra_steps // 50, 1))


def run_variants(
    ws: Workspace, setup: ComparisonSetup, variants: Sequence[LossVariant], extra: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """Trains every variant for every seed (checkpoint ``<name>-seed<k>``) and scores each of its samplers.

    Rows: ``method``, ``variant`` (the loss's settings, :func:`describe`), ``optimiser``, ``train_steps``, ``seed``
    (the training seed), ``sampler`` (``ode``/``sde``), ``nfe``, ``forward_passes`` and
    ``forward_passes_with_grad`` (per training step), ``train_seconds`` (in this process: about 0 for a network
    loaded on resume; a continuation's own steps only), the variant's ``settings``, ``extra``, and the metrics
    of :func:`~bfr_fast.pipelines.evaluation.evaluate_row` (of the EMA weights; with the budget's ``score_raw``,
    also ``raw_fd`` and ``raw_kid`` of the raw weights on the same noise). Only the main process scores (others return ``[]``).

    A variant with ``start_from`` continues that variant's checkpoint of the same seed, which must exist (train it
    first, e.g. earlier in ``variants``).

    Raises:
        ValueError: A ``start_from`` network without its checkpoint.

    A variant name met again in the same ``setup`` (the ablation tables share fm and defar) reuses its trained
    network and its scored rows (``setup.trained``, ``setup.scored``) instead of training again.

    Each row is also kept in ``scored/<stem>-<sampler tag>.json`` with what it scored (:meth:`ComparisonSetup.identity`
    and the sampler). A resumed run (``ws.resume``) reads back a row whose identity matches instead of sampling
    again, with that row's ``train_seconds`` (those of the process that scored it) and today's descriptive fields;
    any other identity is scored again and its file rewritten. A run that does not resume reads none.
    """
    rows: list[dict[str, Any]] = []
    for variant in variants:
        for seed in setup.seeds:
            if (variant.name, seed) not in setup.trained:
                start_from, config = None, setup.config(setup.steps)
                if variant.start_from is not None:
                    start_from = ws.folder.checkpoint(setup.stem(variant.start_from, seed))
                    if not start_from.is_file():
                        raise ValueError(f"{variant.name}: no checkpoint {start_from} of {variant.start_from!r} to "
                                         "continue; train it first")
                    config = setup.continuation(variant.extra_steps)

                def make_loss(m: UNet, v: LossVariant = variant) -> PathLoss:
                    return v.build(label_dropout=label_dropout(setup.data), null_class=m.null_class)

                start = time.perf_counter()
                trained = train_flow(ws, setup.data, make_loss, setup.stem(variant.name, seed), config,
                                     setup.budget.batch_size, seed=seed, start_from=start_from)
                setup.trained[(variant.name, seed)] = (trained, time.perf_counter() - start)
            if not ws.is_main or setup.scorer is None:
                continue
            (ema, trainer, loss), seconds = setup.trained[(variant.name, seed)]
            # make_loss built it: a PathLoss, which TrainedFlow (shared with fit_network's any-callable losses) types
            # as a plain loss callable
            assert isinstance(loss, PathLoss)
            passes = loss.forward_passes
            network: dict[str, Any] | None = None
            for sampler in variant.samplers:
                key = (variant.name, seed, sampler.tag)
                if key not in setup.scored:
                    name = f"{setup.stem(variant.name, seed)}-{sampler.tag}"
                    row = {
                        "method": variant.name, "variant": describe(loss.settings), "optimiser": setup.optimiser,
                        "train_steps": trainer.step, "seed": seed, "sampler": sampler.kind,
                        "nfe": sampler.steps, "forward_passes": passes.total,
                        "forward_passes_with_grad": passes.with_grad, "train_seconds": round(seconds, 1),
                        **variant.settings,
                    }
                    network = network or setup.identity(ema, trainer.model, trainer.step)
                    identity = {**network, "sampler": sampler.tag, "nfe": sampler.steps,
                                "interpolant": type(sampler.interpolant).__name__}
                    stored = _stored_row(ws, name, identity)
                    if stored is not None:
                        # the measurement is the stored one; what describes the row is today's
                        setup.scored[key] = {**stored, **row, "train_seconds": stored["train_seconds"]}
                        log.info("%s: scored by an earlier process of this run (%s)", name, ws.folder.scored(name))
                    else:
                        samples = sampler.sample(ema, setup.noise, setup.labels, setup.eval_seed)
                        if setup.budget.score_raw:
                            raw = sampler.sample(trainer.model.eval(), setup.noise, setup.labels, setup.eval_seed)
                            scores = evaluate_images(raw, setup.scorer.reference, setup.scorer.extractor,
                                                     kid_subset_size=min(1000, raw.shape[0]))
                            row.update(raw_fd=scores["fd"], raw_kid=scores["kid"])
                        setup.scored[key] = evaluate_row(ws, row, samples, setup.scorer.reference,
                                                         setup.scorer.extractor, name)
                        ws.folder.write_json(ws.folder.scored(name), {"identity": identity, "row": setup.scored[key]})
                rows.append({**setup.scored[key], **(extra or {})})
    return rows


def _stored_row(ws: Workspace, name: str, identity: dict[str, Any]) -> dict[str, Any] | None:
    """The row ``scored/<name>.json`` of an earlier process of a resumed run, if it scored what ``identity`` names.

    Args:
        ws: The run (a run that does not resume reads nothing).
        name: ``<stem>-<sampler tag>``.
        identity: What the row must have scored (:meth:`ComparisonSetup.identity`, the sampler).

    Returns:
        The stored row, or None: not resuming, no file, an unreadable one, or another identity.
    """
    path = ws.folder.scored(name)
    if not ws.resume or not path.is_file():
        return None
    try:
        stored = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return stored["row"] if isinstance(stored, dict) and stored.get("identity") == identity else None


COUPLING = "independent"
"""The coupling of every loss of the comparison: the paper's main tables train SiT, which pairs independently."""

METHODS: dict[str, Callable[..., PathLoss]] = {
    "fm": partial(FlowMatchingLoss, coupling=COUPLING),
    "ip": partial(InputPerturbationLoss, perturbation=0.1, coupling=COUPLING),
    "sdss": partial(ScheduledSamplingLoss, steps=1, coupling=COUPLING),
    "mdss": partial(ScheduledSamplingLoss, steps=4, real_steps=1, coupling=COUPLING),
    "defar_no_fc": partial(DEFARLoss, fc=False, coupling=COUPLING),
    "defar_no_adr": partial(DEFARLoss, adr=False, coupling=COUPLING),
    "defar": partial(DEFARLoss, coupling=COUPLING),
}
"""Method name -> ``build(label_dropout=..., null_class=...)`` of its loss (DEFARLoss defaults: docs/design.md §5.6)."""


@dataclass(frozen=True)
class DefarBudget(ComparisonBudget):
    """The ``defar`` recipe's default budget (``--steps``, ``--seeds``, ``--num-samples`` override it).

    The step counts are to be set from the measured ``curve``: ``steps`` where FM's FD at 10 NFE has stopped
    falling, so that the methods are compared on converged networks, and ``finetune_steps`` a share of it.

    Attributes:
        steps: Training steps of every network of the methods' table, and of the ``fm`` network that the
            fine-tuning starts from.
        seeds: Training seeds per method.
        num_samples: Samples per evaluated row (and per curve point).
        curve_steps: Length of the ``curve``'s FM training.
        curve_every: Steps between the curve's FD measurements (a multiple of it ends the curve; the last point is
            ``curve_steps`` in any case).
        finetune_steps: Steps of each fine-tuning continuation (``fm`` and ``defar``).
        optimiser: One of :data:`OPTIMISERS`; ``--select paper-optim``
            sets ``"paper"``.
    """

    curve_steps: int = 3000
    curve_every: int = 250
    finetune_steps: int = 100
    optimiser: str = "recipe"

    def __post_init__(self) -> None:
        for name in ("steps", "seeds", "num_samples", "curve_steps", "curve_every", "finetune_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if self.optimiser not in OPTIMISERS:
            raise ValueError(f"optimiser must be one of {OPTIMISERS}, got {self.optimiser!r}")

    def curve_schedule(self, steps: int | None) -> list[int]:
        """The curve's measured steps; with ``--steps`` given, that many steps at (at most) the budget's number of
        points."""
        total = steps or self.curve_steps
        points = max(self.curve_steps // self.curve_every, 1)
        every = -(-total // points) if steps else self.curve_every  # ceil: no more points than the budget's
        milestones = list(range(every, total + 1, every))
        return milestones if milestones and milestones[-1] == total else [*milestones, total]

    def finetune_length(self, steps: int | None) -> int:
        """The fine-tuning's steps; with ``--steps`` given, rescaled by ``steps / self.steps``."""
        return max(round(self.finetune_steps * steps / self.steps), 1) if steps else self.finetune_steps


def defar_budget(image_shape: tuple[int, int, int]) -> DefarBudget:
    """The budget for images of ``(C, H, W)``.

    On 8x8 digits: 1000 steps per network (batch 128), 3 training seeds, 500 samples per row; fine-tuning 150 more
    steps. The steps come from the measured curve (``--select curve``, 3000 steps, seed 0, 10 NFE,
    ``docs/results/defar-digits-curve``): the raw network's FD-digitsnet falls from 2.0 at 250 steps to 1.1 at 500
    and then stays within 0.7-1.4 (the spread of a 500-sample FD), so 1000 steps is past the knee, and an EMA of
    decay 1 - 2.5/1000 averages the plateau. Larger budgets do not fit the recipe's 45-minute default on the
    project's reference CPU (timings in ``docs/results/defar-digits-v2``). Larger images take the preset's steps
    and samples; on 28x28 (mnist5k, 4000 steps: the measured curve flattens by step 2800) the EMA's decay is at
    most :data:`MAX_EMA_DECAY_28` and the raw weights are scored too.
    """
    side = max(image_shape[1:])
    if side <= 16:
        return DefarBudget(steps=1000, seeds=3, num_samples=500, finetune_steps=150)
    preset = image_preset(image_shape)
    return DefarBudget(steps=preset.steps, seeds=3, num_samples=preset.num_samples,
                       curve_steps=2 * preset.steps, curve_every=max(preset.steps // 5, 1),
                       finetune_steps=max(preset.steps // 4, 1), max_ema_decay=MAX_EMA_DECAY_28, score_raw=True)


MAX_EMA_DECAY_28 = 0.995
"""The EMA bound of the 28x28 budget. On mnist5k (``docs/results/defar-mnist5k-curve``, 4000 steps of fm) the raw
network's FD at 10 NFE falls until about step 2800 (0.57 at 2400, 0.30 at 2800) and then stays within 0.26-0.35,
while the EMA of the default decay 0.999 still scores 0.89 at step 4000: it keeps 37% of its mass on the weights
of before step 3000. At 0.995 that mass is 0.7% and 92% lies on the last 500 steps, the plateau."""
