"""Markdown tables of result rows (lists of dicts, as stored in ``metrics.json``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def _cell(value: Any, digits: int) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1e4 else f"{value:.3e}"
    return str(value)


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
