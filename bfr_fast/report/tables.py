"""Markdown tables of result rows (lists of dicts, as stored in ``metrics.json``)."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any


def _cell(value: Any, digits: int) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1e4 else f"{value:.3e}"
    return str(value)


def mean_std(values: Sequence[float], mean_format: str, std_format: str) -> str:
    """``"mean ± std"`` of ``values`` in the given formats; the value alone when there is one (no spread to show)."""
    mean = format(statistics.fmean(values), mean_format)
    return mean if len(values) == 1 else f"{mean} ± {format(statistics.stdev(values), std_format)}"


def markdown_table(
    rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]], digits: int = 4
) -> str:
    """Renders ``rows`` as a markdown table.

    Args:
        rows: One dict per table row.
        columns: ``(key, header)`` pairs in display order; a missing key shows as "—".
        digits: Significant digits of floats.
    """
    header = "| " + " | ".join(h for _, h in columns) + " |"
    rule = "|" + "---|" * len(columns)
    body = ["| " + " | ".join(_cell(r.get(k), digits) for k, _ in columns) + " |" for r in rows]
    return "\n".join([header, rule, *body]) + "\n"


def group_rows(rows: Sequence[dict[str, Any]], keys: Sequence[str]) -> dict[tuple[Any, ...], list[dict[str, Any]]]:
    """The rows grouped by their values of ``keys`` (missing keys read as None), groups in first-seen order."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(row.get(k) for k in keys), []).append(row)
    return groups


def summarize(
    rows: Sequence[dict[str, Any]], keys: Sequence[str], metrics: Sequence[str], count: str = "seeds"
) -> list[dict[str, Any]]:
    """One row per distinct ``keys`` (first-seen order): each metric as ``"mean ± std"`` over its group.

    A group of one keeps the plain value; ``count`` names the column holding the group's size. Rows lacking a
    metric (or holding None) do not count towards that metric's mean.
    """
    table = []
    for key, members in group_rows(rows, keys).items():
        out: dict[str, Any] = dict(zip(keys, key, strict=True))
        out[count] = len(members)
        for metric in metrics:
            values = [float(m[metric]) for m in members if m.get(metric) is not None]
            if not values:
                continue
            mean = statistics.fmean(values)
            out[metric] = mean if len(values) == 1 else f"{mean:.4g} ± {statistics.stdev(values):.2g}"
        table.append(out)
    return table
