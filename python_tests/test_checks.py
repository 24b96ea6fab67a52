"""bfr_fast.checks: the scalar argument checks every package uses."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bfr_fast.checks import (
    choice,
    finite_float,
    integer,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    probability,
)


@pytest.mark.parametrize("value", [1, 7, np.int64(3), np.int32(1), np.uint8(2)])
def test_positive_int_takes_python_and_numpy_ints_and_returns_an_int(value):
    result = positive_int("n", value)
    assert result == int(value) and type(result) is int


@pytest.mark.parametrize("value", [0, -1, True, False, 2.0, np.float32(2.0), "3", None, np.bool_(True)])
def test_positive_int_rejects_zero_negatives_bools_floats_and_strings(value):
    with pytest.raises(ValueError, match=r"^n must be a positive int, got "):
        positive_int("n", value)


def test_integer_bounds_and_reason_appear_in_the_message():
    assert non_negative_int("count", 0) == 0
    assert integer("splits", 5, low=1, high=5) == 5
    with pytest.raises(ValueError, match=r"^splits must be an int in \[1, 5\] \(at most N\), got 6$"):
        integer("splits", 6, low=1, high=5, why="at most N")
    with pytest.raises(ValueError, match=r"^num_steps must be an int >= 2, got 1$"):
        integer("num_steps", 1, low=2)
    with pytest.raises(ValueError, match=r"^count must be a non-negative int, got -1$"):
        non_negative_int("count", -1)


@pytest.mark.parametrize("value", [0.5, np.float32(0.5), np.float64(0.5), 0, 1, np.int64(1)])
def test_probability_takes_numpy_scalars_and_returns_a_python_float(value):
    result = probability("p", value)
    assert result == float(value) and type(result) is float


@pytest.mark.parametrize("value", [-0.1, 1.5, math.nan, math.inf, True, "0.5", None, np.array([0.5])])
def test_probability_rejects_out_of_range_non_finite_bools_and_non_numbers(value):
    with pytest.raises(ValueError, match=r"^p must be a finite float in \[0, 1\], got "):
        probability("p", value)


def test_finite_float_bounds_open_or_closed():
    assert positive_float("lr", 1e-4) == 1e-4
    assert non_negative_float("sigma", 0) == 0.0
    with pytest.raises(ValueError, match=r"^lr must be a finite float > 0, got 0$"):
        positive_float("lr", 0)
    with pytest.raises(ValueError, match=r"^sigma must be a finite float >= 0, got -1$"):
        non_negative_float("sigma", -1)
    with pytest.raises(ValueError, match=r"^t_max must be a finite float in \(0, 1\), got 1.0$"):
        finite_float("t_max", 1.0, low=0.0, high=1.0, low_open=True, high_open=True)
    with pytest.raises(ValueError, match=r"^x must be a finite float <= 2 \(why\), got 3$"):
        finite_float("x", 3, high=2, why="why")
    with pytest.raises(ValueError, match=r"^y must be a finite float, got inf$"):
        finite_float("y", math.inf)


def test_choice_returns_the_value_and_lists_the_options():
    assert choice("method", "heun", ("euler", "heun")) == "heun"
    assert choice("constraints", None, ("HBonds", None)) is None
    with pytest.raises(ValueError, match=r"^method must be one of 'euler', 'heun', got 'rk5'$"):
        choice("method", "rk5", ("euler", "heun"))
    with pytest.raises(ValueError, match=r"^kind must be one of 'low', 'high', got \['low'\]$"):
        choice("kind", ["low"], ("low", "high"))  # an unhashable value is an error, not a TypeError
