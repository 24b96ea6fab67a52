"""The CLI boundary of the recipes: the options resolved, once, into the data and a pipeline's settings."""

from __future__ import annotations

from collections.abc import Sequence

from bfr_fast.data import ImageDataset, load_dataset
from bfr_fast.engine.trainer import TrainConfig
from bfr_fast.pipelines.comparison import ComparisonBudget
from bfr_fast.pipelines.evaluation import Scorer, build_extractor
from bfr_fast.pipelines.training import train_config
from bfr_fast.train.options import default_cache_dir
from bfr_fast.train.recipes.base import RunContext


def load_data(ctx: RunContext, default: str = "digits") -> ImageDataset:
    """The data set named by ``--data`` (``default`` otherwise), from ``--data-root`` when it needs files."""
    name = ctx.options.data or default
    root = str(ctx.options.data_root) if ctx.options.data_root is not None else None
    return load_dataset(name, root=root)


def select(ctx: RunContext, available: Sequence[str], aliases: dict[str, str] | None = None) -> list[str]:
    """The parts named by ``--select`` (comma-separated, in ``available``'s order), or all of ``available``.

    Args:
        ctx: The run.
        available: The recipe's parts.
        aliases: Other accepted names, each mapped to a part (e.g. ``"table6"`` -> ``"table6-normalisation"``).

    Raises:
        ValueError: A name that is neither in ``available`` nor an alias.
    """
    if ctx.options.select is None:
        return list(available)
    aliases = aliases or {}
    wanted = {aliases.get(p.strip(), p.strip()) for p in ctx.options.select.split(",") if p.strip()}
    unknown = sorted(wanted - set(available))
    if unknown:
        raise ValueError(
            f"--select: unknown {unknown} for recipe {ctx.options.recipe!r}; choose from {list(available)}"
        )
    return [name for name in available if name in wanted]


def steps(ctx: RunContext, default: int) -> int:
    """``--steps``, or the recipe's ``default``."""
    return ctx.options.steps or default


def base_steps(ctx: RunContext, default: int) -> int:
    """The steps of a refiner recipe's base: ``--base-steps``, else ``--steps``, else ``default``.

    The refiners are cheap next to their base (the papers train them for a fraction of its steps), so a short run
    can shrink the refiners with ``--steps`` and keep a better-trained base with ``--base-steps``.
    """
    return ctx.options.base_steps or ctx.options.steps or default


def batch_size(ctx: RunContext, default: int) -> int:
    """``--batch-size``, or the recipe's ``default``."""
    return ctx.options.batch_size or default


def optimisation(ctx: RunContext, steps: int, default_lr: float) -> TrainConfig:
    """The training settings of a network of ``steps`` (already resolved) with ``--lr`` and ``--precision``."""
    return train_config(steps, ctx.options.lr or default_lr, ctx.options.precision)


def scorer(ctx: RunContext, data: ImageDataset) -> Scorer | None:
    """The metrics' feature space (``--inception``, else the classifier of ``data``, cached in ``--cache-dir``)
    and ``data``'s held-out reference, on the main process; None on the others.

    Built before any training, so that a data set it cannot score (unlabelled, without ``--inception``) fails before
    step 1.
    """
    if not ctx.dist.is_main:
        return None
    extractor = build_extractor(data, ctx.options.inception, ctx.options.cache_dir or default_cache_dir(),
                                ctx.device, progress=True)
    return Scorer.of(extractor, data)


def comparison_budget(ctx: RunContext, budget: ComparisonBudget) -> ComparisonBudget:
    """A loss comparison's ``budget`` with ``--steps``, ``--seeds``, ``--num-samples``, ``--lr``, ``--batch-size``
    and ``--precision`` applied (its EMA bound and raw scoring kept)."""
    o = ctx.options
    return ComparisonBudget(steps=o.steps or budget.steps, seeds=o.seeds or budget.seeds,
                            num_samples=o.num_samples or budget.num_samples, lr=o.lr, batch_size=o.batch_size,
                            precision=o.precision, max_ema_decay=budget.max_ema_decay, score_raw=budget.score_raw)
