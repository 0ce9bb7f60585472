"""Operation counts of a digital computation, priced by a device or the digital host.

A dictionary says what its lift costs (:meth:`codesign.dictionaries.Dictionary.lift_ops`) in
these terms, without knowing who will price it; the digital cost model
(:mod:`codesign.devices.digital`) turns them into energy, latency and area.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .errors import check_range


@dataclass(frozen=True)
class OpCounts:
    """Arithmetic of one inference stage, per input vector.

    Attributes:
        mults: multiplications.
        adds: additions and subtractions.
        exps: exponentials (priced as the multiplies and adds of a polynomial evaluation).
        params: stored values the stage reads from memory (weights, RBF centres).
        inputs: values the stage reads from the previous stage.
        outputs: values the stage writes for the next stage.
    """

    mults: int = 0
    adds: int = 0
    exps: int = 0
    params: int = 0
    inputs: int = 0
    outputs: int = 0

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            check_range(f.name, getattr(self, f.name), 0, None, integer=True)

    def __add__(self, other: "OpCounts") -> "OpCounts":
        return OpCounts(*(getattr(self, f.name) + getattr(other, f.name) for f in dataclasses.fields(self)))

    def as_dict(self) -> dict[str, int]:
        """``{count: value}``."""
        return dataclasses.asdict(self)
