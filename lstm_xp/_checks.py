"""Checks of constructor and call arguments that are not arrays: sizes, flags, rates, seeds.

Each returns the value in its canonical Python type or raises :class:`ConfigError` naming the
argument, what it must be and what was given. Nothing is coerced silently: the string
``"False"`` is not a false flag, ``"0.5"`` is not a rate, ``1.5`` is not a seed.
"""

from __future__ import annotations

import numbers
from typing import Any

from ._backend import is_flag
from .errors import ConfigError


def check_size(name: str, value: Any) -> int:
    """A positive int (not a bool), or a :class:`ConfigError` saying what was given."""
    if is_flag(value) or not isinstance(value, numbers.Integral) \
            or value < 1:
        raise ConfigError(f"{name} must be a positive integer; got {value!r}.")
    return int(value)


def check_flag(name: str, value: Any) -> bool:
    """``True`` or ``False`` (Python or NumPy booleans), nothing else."""
    if not is_flag(value):
        raise ConfigError(f"{name} must be True or False; got {type(value).__name__} "
                          f"{value!r}.")
    return bool(value)


def check_real(name: str, value: Any, low: float, high: float, *, high_open: bool = True,
               low_open: bool = False) -> float:
    """A real number (not a bool or a string) in the interval from ``low`` to ``high``."""
    if is_flag(value) or not isinstance(value, numbers.Real):
        raise ConfigError(f"{name} must be a number; got {type(value).__name__} {value!r}.")
    number = float(value)
    above = number > low if low_open else number >= low
    below = number < high if high_open else number <= high
    if not (above and below):
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise ConfigError(f"{name} must be in {interval}; got {value!r}.")
    return number


def check_seed(value: Any) -> int | None:
    """``None`` or a non-negative integer (what ``numpy.random.default_rng`` takes)."""
    if value is None:
        return None
    if is_flag(value) or not isinstance(value, numbers.Integral) \
            or value < 0:
        raise ConfigError(f"seed must be None or a non-negative integer; got "
                          f"{type(value).__name__} {value!r}.")
    return int(value)
