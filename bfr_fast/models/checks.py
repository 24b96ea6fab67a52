"""Argument checks shared by the model constructors."""

from __future__ import annotations


def check_positive(**values: int) -> None:
    """Raises ValueError naming the first argument that is not a positive int."""
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")


def check_dropout(dropout: float) -> None:
    """Raises ValueError unless ``0 <= dropout < 1``."""
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
