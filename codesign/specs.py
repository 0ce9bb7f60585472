"""Search-space specs: plain descriptions of what a search may vary, with no Ray or Optuna import.

Devices (``Device.search_space()``) and dictionaries (``Dictionary.search_space()``) declare
their searchable parameters with these; :mod:`codesign.search.space` turns them into Optuna
distributions. They live in the bottom layer (beside :mod:`codesign.errors`) so that both
device and dictionary plugins can use them without importing the pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class IntRange:
    """Integers ``low..high`` inclusive (e.g. bit widths), log-uniform when ``log`` is true."""

    low: int
    high: int
    log: bool = False


@dataclass(frozen=True)
class FloatRange:
    """Floats in ``[low, high]``, sampled log-uniformly when ``log`` is true."""

    low: float
    high: float
    log: bool = False


@dataclass(frozen=True)
class Choice:
    """One of a fixed list of plain values."""

    values: tuple


SearchSpec = IntRange | FloatRange | Choice

__all__ = ["Choice", "FloatRange", "IntRange", "SearchSpec"]
