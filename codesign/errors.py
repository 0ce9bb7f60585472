"""One exception hierarchy for the whole platform.

The CLI catches :class:`CodesignError` and prints its message as one line with exit code 2;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import math


class CodesignError(Exception):
    """Base class of every error a user can cause and fix."""


class ConfigError(CodesignError, ValueError):
    """A configuration value is out of range, of the wrong type, or unknown."""


class DataError(CodesignError):
    """A data set is missing, unreadable, truncated or inconsistent."""


class TeacherError(CodesignError):
    """A teacher network cannot be built, loaded or evaluated as asked."""


class NumericalError(CodesignError):
    """A fit diverged or met a singular system; the message says which and why."""


class ResourceError(CodesignError):
    """A computation would exceed the memory budget; the message names the size it needs."""


def check_range(name: str, value, lo=None, hi=None, *, integer: bool = False) -> None:
    """Raise :class:`ConfigError` naming ``name`` unless ``lo <= value <= hi``.

    Args:
        name: field name, as the user spells it.
        value: the value received.
        lo: smallest allowed value (inclusive), or None for no bound.
        hi: largest allowed value (inclusive), or None for no bound.
        integer: require an int (bools are refused).
    """

    if integer and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"{name}={value!r}: expected an integer in {_fmt_range(lo, hi)}")
    if not integer and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise ConfigError(f"{name}={value!r}: expected a number in {_fmt_range(lo, hi)}")
    if not integer and not math.isfinite(value):
        raise ConfigError(f"{name}={value!r}: expected a finite number in {_fmt_range(lo, hi)}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ConfigError(f"{name}={value!r} is out of range: allowed {_fmt_range(lo, hi)}")


def check_choice(name: str, value, choices) -> None:
    """Raise :class:`ConfigError` unless ``value`` is one of ``choices`` (listed in the message)."""
    choices = list(choices)
    if value not in choices:
        raise ConfigError(f"{name}={value!r}: expected one of {', '.join(map(str, choices))}")


def _fmt_range(lo, hi) -> str:
    if lo is None and hi is None:
        return "(-inf, inf)"
    if lo is None:
        return f"(-inf, {hi}]"
    if hi is None:
        return f"[{lo}, inf)"
    return f"[{lo}, {hi}]"
