"""A training curve (a metric against training steps, one line per series) as a PNG figure.

Drawn on :class:`matplotlib.figure.Figure` directly (the Agg renderer, no pyplot), so nothing here changes a user's
global matplotlib backend; the file is written atomically.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from bfr_fast.checkpoint import atomic_write

__all__ = ["plot_training_curve"]


def plot_training_curve(
    steps: Sequence[int], series: Mapping[str, Sequence[float]], path: str | Path, ylabel: str, title: str = ""
) -> Path:
    """Plots each series against ``steps`` (log y axis when every plotted value is positive); non-finite values
    are left out.

    Args:
        steps: Training steps of the points.
        series: Legend label -> one value per step.
        path: The PNG file to write.
        ylabel: The metric's name.
        title: Figure title.

    Returns:
        ``path``.

    Raises:
        ValueError: A series whose length differs from ``steps``'.
    """
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.0, 4.0))
    axes = figure.add_subplot(1, 1, 1)
    shown_values: list[float] = []
    for label, values in series.items():
        if len(values) != len(steps):
            raise ValueError(f"series {label!r} has {len(values)} points, steps has {len(steps)}")
        points = [(s, v) for s, v in zip(steps, values, strict=True) if math.isfinite(v)]
        shown_values.extend(v for _, v in points)
        axes.plot([s for s, _ in points], [v for _, v in points], marker=".", label=label)
    if shown_values and min(shown_values) > 0:
        axes.set_yscale("log")
    axes.set_xlabel("training step")
    axes.set_ylabel(ylabel)
    axes.grid(True, which="both", linewidth=0.3)
    axes.legend(fontsize="small")
    if title:
        axes.set_title(title, fontsize="medium")
    return atomic_write(path, lambda f: figure.savefig(f, format="png", dpi=120, bbox_inches="tight"))
