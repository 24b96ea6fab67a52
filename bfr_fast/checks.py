"""Checks of scalar arguments, shared by the whole library: each returns the value or raises a one-line ValueError.

Every message names the argument, what it must be and what it got, e.g. ``num_steps must be a positive int,
got 0``. Integers may be Python or NumPy integers (``np.int64``), never ``bool`` (``True`` is not a count);
numbers may be any real scalar, NumPy's included (``np.float32(0.5)``), and are returned as Python values, so a
checked argument behaves the same whichever kind the caller passed. Tensor checks live in
:mod:`bfr_fast.ops._checks`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from numbers import Integral, Real
from typing import TypeVar

T = TypeVar("T")


def _because(why: str | None) -> str:
    return f" ({why})" if why else ""


def _integer_kind(low: int | None, high: int | None) -> str:
    if high is not None:
        return f"an int in [{'-inf' if low is None else low}, {high}]"
    if low == 1:
        return "a positive int"
    if low == 0:
        return "a non-negative int"
    return "an int" if low is None else f"an int >= {low}"


def integer(name: str, value: object, *, low: int | None = None, high: int | None = None,
            why: str | None = None) -> int:
    """Checks an integer (not a bool) in ``[low, high]`` (either bound optional) and returns it as an ``int``.

    Args:
        name: The argument as the caller knows it (``"num_steps"``, ``"--batch-size"``, ``"lincomb: n"``).
        value: What was passed.
        low: Smallest accepted value (``None``: no bound).
        high: Largest accepted value (``None``: no bound).
        why: Optional reason, shown in parentheses after the requirement.

    Raises:
        ValueError: ``"{name} must be <kind>, got {value!r}"``.
    """
    number = int(value) if isinstance(value, Integral) and not isinstance(value, bool) else None
    if number is None or (low is not None and number < low) or (high is not None and number > high):
        raise ValueError(f"{name} must be {_integer_kind(low, high)}{_because(why)}, got {value!r}")
    return number


def positive_int(name: str, value: object, *, why: str | None = None) -> int:
    """Checks an integer ``>= 1`` (a count, a size, a number of steps) and returns it."""
    return integer(name, value, low=1, why=why)


def non_negative_int(name: str, value: object, *, why: str | None = None) -> int:
    """Checks an integer ``>= 0`` and returns it."""
    return integer(name, value, low=0, why=why)


def _interval(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    if low is not None and high is not None:
        return f" in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    if low is not None:
        return f" {'>' if low_open else '>='} {low:g}"
    if high is not None:
        return f" {'<' if high_open else '<='} {high:g}"
    return ""


def finite_float(name: str, value: object, *, low: float | None = None, high: float | None = None,
                 low_open: bool = False, high_open: bool = False, why: str | None = None) -> float:
    """Checks a finite real number (not a bool, not NaN or infinite) within optional bounds; returns a ``float``.

    Args:
        name: The argument as the caller knows it.
        value: What was passed: a Python or NumPy real scalar.
        low: Lower bound (``None``: none), inclusive unless ``low_open``.
        high: Upper bound (``None``: none), inclusive unless ``high_open``.
        low_open: Excludes ``low`` itself.
        high_open: Excludes ``high`` itself.
        why: Optional reason, shown in parentheses after the requirement.

    Raises:
        ValueError: ``"{name} must be a finite float in [low, high], got {value!r}"`` (or ``>= low`` etc.).
    """
    # The bounds are checked on the float that is returned; NaN stands for "not a real number" and fails isfinite.
    number = float(value) if isinstance(value, Real) and not isinstance(value, bool) else math.nan
    ok = (math.isfinite(number)
          and (low is None or (number > low if low_open else number >= low))
          and (high is None or (number < high if high_open else number <= high)))
    if not ok:
        bounds = _interval(low, high, low_open, high_open)
        raise ValueError(f"{name} must be a finite float{bounds}{_because(why)}, got {value!r}")
    return number


def positive_float(name: str, value: object, *, why: str | None = None) -> float:
    """Checks a finite number ``> 0`` (a scale, a learning rate, a threshold) and returns it as a ``float``."""
    return finite_float(name, value, low=0.0, low_open=True, why=why)


def non_negative_float(name: str, value: object, *, why: str | None = None) -> float:
    """Checks a finite number ``>= 0`` (a noise level, a weight) and returns it as a ``float``."""
    return finite_float(name, value, low=0.0, why=why)


def probability(name: str, value: object, *, why: str | None = None) -> float:
    """Checks a number in ``[0, 1]`` (a probability, a fraction, a quantile) and returns it as a ``float``."""
    return finite_float(name, value, low=0.0, high=1.0, why=why)


def choice(name: str, value: T, choices: Iterable[object], *, why: str | None = None) -> T:
    """Checks that ``value`` is one of ``choices`` (names of methods, backends, strategies) and returns it.

    Raises:
        ValueError: ``"{name} must be one of 'a', 'b', got 'c'"``.
    """
    options = tuple(choices)
    if not any(isinstance(value, type(option)) and value == option for option in options):
        listed = ", ".join(repr(option) for option in options)
        raise ValueError(f"{name} must be one of {listed}{_because(why)}, got {value!r}")
    return value
