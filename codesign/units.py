"""Parsing of quantities with units given on the command line (durations)."""

from __future__ import annotations

import math
import re

from .errors import ConfigError

#: Seconds per unit suffix of :func:`parse_duration` (a year is 365.25 days).
DURATION_UNITS = {"s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0, "y": 31_557_600.0}
_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([a-z]*)\s*$")


def parse_duration(text: str | float | int, name: str = "eval_time") -> float:
    """Seconds in ``text``: a number of seconds or a number with a unit suffix.

    Accepted suffixes: ``s``, ``m``/``min``, ``h``, ``d``, ``w``, ``y`` (365.25 days), e.g.
    ``30s``, ``1h``, ``1d``, ``1y``, ``10y``, ``3600``.

    Args:
        text: the value given (a string from the command line, or a number of seconds).
        name: the option's name, for the error message.

    Raises:
        ConfigError: naming the value and the accepted forms.
    """
    if isinstance(text, bool):
        raise ConfigError(f"{name}={text!r}: expected seconds or a duration such as 30s, 1h, 1d, 1y")
    if isinstance(text, (int, float)):
        value = float(text)
    else:
        m = _DURATION.match(str(text).lower())
        if not m or m.group(2) not in ("", *DURATION_UNITS):
            raise ConfigError(
                f"{name}={text!r}: expected seconds or a number with a unit "
                f"({', '.join(DURATION_UNITS)}), e.g. 30s, 1h, 1d, 1y, 10y"
            )
        value = float(m.group(1)) * DURATION_UNITS.get(m.group(2) or "s", 1.0)
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"{name}={text!r}: expected a finite, non-negative duration")
    if value > MAX_EVAL_TIME_S:
        raise ConfigError(f"{name}={text!r}: {value:.3g} s is past 10 years ({MAX_EVAL_TIME_S:.3g} s), the data "
                          "retention non-volatile memories are specified for (JEDEC JESD47): no device model here "
                          "holds its programmed state longer; give at most 10y")
    return value


#: Longest time since programming a chip may be read at, s: 10 years, the data retention
#: non-volatile memories are specified for (the usual 10-year retention of JEDEC JESD47
#: qualification), and the end of the range the crossbar presets are read over (1 s to 10
#: years, experiments/robustness.py). Past it a drift law is extrapolated beyond any specified
#: state. 3.16e8 s: 10 years of 365.25 days (3.15576e8 s) rounded up, so 3.156e8 passes.
MAX_EVAL_TIME_S = 3.16e8


def format_duration(seconds: float) -> str:
    """The shortest exact form of ``seconds`` with a unit (``3600.0`` -> ``1h``)."""
    for unit in ("y", "d", "h", "min", "s"):
        n = seconds / DURATION_UNITS[unit]
        if n >= 1 and float(n).is_integer():
            return f"{int(n)}{unit}"
    return f"{seconds:g}s"
