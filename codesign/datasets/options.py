"""Loader options written after a data set's name: ``data.csv:label=species,test=0.3,seed=1``.

A spec is ``TARGET[:KEY=VALUE[,KEY=VALUE...]]``: the options follow the last colon when
everything after it is ``KEY=VALUE`` pairs, so ``torchvision:KMNIST`` and ``module:factory``-like
names keep their colon.
"""

from __future__ import annotations

import re
from typing import Mapping

from ..errors import ConfigError, DataError
from .base import SCALINGS

_PAIRS = re.compile(r"^[A-Za-z_]\w*=[^,=]*(,[A-Za-z_]\w*=[^,=]*)*$")


def split_spec(spec: str) -> tuple[str, dict[str, str]]:
    """``(target, {key: value})`` of a data set spec (see the module doc)."""
    head, sep, tail = spec.rpartition(":")
    if sep and head and _PAIRS.match(tail):
        opts: dict[str, str] = {}
        for pair in tail.split(","):
            key, _, value = pair.partition("=")
            if key in opts:
                raise ConfigError(f"dataset={spec!r}: option {key!r} given twice; give it once")
            opts[key] = value
        return head, opts
    return spec, {}


def check_keys(spec: str, opts: Mapping[str, str], known: tuple[str, ...]) -> None:
    """Refuse an option a loader does not take, listing those it does."""
    bad = sorted(set(opts) - set(known))
    if bad:
        raise ConfigError(f"dataset={spec!r}: unknown option(s) {', '.join(bad)}; this loader takes "
                          f"{', '.join(known) or 'none'} (TARGET:KEY=VALUE,KEY=VALUE)")


def share(spec: str, opts: Mapping[str, str], default: float) -> float:
    """The ``test=`` option: a share in (0, 1)."""
    text = opts.get("test")
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 < value < 1.0:
        raise ConfigError(f"dataset={spec!r}: test={text!r} must be a share of the samples between 0 and 1, e.g. test=0.2")
    return value


def seed(spec: str, opts: Mapping[str, str]) -> int:
    """The ``seed=`` option of a seeded split (default 0)."""
    text = opts.get("seed", "0")
    if not text.isdigit():
        raise ConfigError(f"dataset={spec!r}: seed={text!r} must be a non-negative integer")
    return int(text)


def scaling(spec: str, opts: Mapping[str, str], default: str) -> str:
    """The ``scale=`` option: one of :data:`~codesign.datasets.base.SCALINGS`."""
    value = opts.get("scale", default)
    if value not in SCALINGS:
        raise ConfigError(f"dataset={spec!r}: scale={value!r}; use one of {', '.join(SCALINGS)}")
    return value


def dims(spec: str, opts: Mapping[str, str], key: str, n: tuple[int, ...]) -> tuple[int, ...] | None:
    """An ``HxW`` / ``CxHxW`` option (``shape=1x28x28``, ``size=32x32``) as integers, or None."""
    text = opts.get(key)
    if text is None:
        return None
    parts = text.lower().split("x")
    if len(parts) not in n or not all(p.isdigit() and int(p) > 0 for p in parts):
        forms = " or ".join({2: "HxW", 3: "CxHxW"}[k] for k in n)
        raise ConfigError(f"dataset={spec!r}: {key}={text!r}; give {forms} with positive integers, e.g. "
                          f"{key}={'1x28x28' if 3 in n else '28x28'}")
    return tuple(int(p) for p in parts)


def image_shape_of(x_shape: tuple[int, ...], given: tuple[int, ...] | None, where: str) -> tuple[int, int, int] | None:
    """The ``(c, h, w)`` of inputs stored as ``x_shape``: ``given``, else from a 3-D/4-D array, else None.

    ``[n, h, w]`` is one channel; ``[n, h, w, c]`` with ``c`` in 1, 3, 4 and ``h, w > 4`` is
    channels-last (moved to channels-first by the caller); ``[n, c, h, w]`` otherwise.
    """
    if given is not None:
        return (1, *given) if len(given) == 2 else given  # type: ignore[return-value]
    if len(x_shape) == 3:
        return (1, x_shape[1], x_shape[2])
    if len(x_shape) == 4:
        return (x_shape[1], x_shape[2], x_shape[3])
    if len(x_shape) > 4:
        raise DataError(f"{where}: inputs of shape {list(x_shape)}; give [n, features] vectors or [n, c, h, w] images")
    return None


def channels_last(x_shape: tuple[int, ...]) -> bool:
    """Whether a 4-D input array is ``[n, h, w, c]`` (see :func:`image_shape_of`)."""
    return len(x_shape) == 4 and x_shape[3] in (1, 3, 4) and x_shape[1] > 4 and x_shape[2] > 4
