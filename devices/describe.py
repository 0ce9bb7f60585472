"""Plain-text listing of the installed devices for ``codesign devices``."""

from __future__ import annotations

import dataclasses
import textwrap

from .base import Choice, FloatRange, IntRange, SearchSpec
from .registry import broken_devices, get_device_class, list_devices


def _spec(spec: SearchSpec) -> str:
    if isinstance(spec, IntRange):
        return f"int {spec.low}..{spec.high}"
    if isinstance(spec, FloatRange):
        return f"float {spec.low}..{spec.high}" + (" (log)" if spec.log else "")
    if isinstance(spec, Choice):
        return "one of " + ", ".join(map(str, spec.values))
    return repr(spec)


def describe_device(name: str) -> str:
    """One device: description, config fields (default and doc) and search space.

    Args:
        name: an installed device name.
    """
    cls = get_device_class(name)
    lines = [f"{name}  ({cls.__module__}.{cls.__qualname__})"]
    if cls.description:
        lines += textwrap.wrap(cls.description, 88, initial_indent="  ", subsequent_indent="  ")
    docs = cls.Config.field_docs()
    if docs:
        width = max(len(f) for f in docs)
        defaults = {f: repr(d) for f, (d, _) in docs.items()}
        dwidth = max(len(d) for d in defaults.values())
        lines.append("  config (--set field=value):")
        for field, (_, doc) in docs.items():
            lines.append(f"    {field:<{width}}  = {defaults[field]:<{dwidth}}  {doc}".rstrip())
    space = cls.search_space()
    lines.append("  search space:" + (" (none)" if not space else ""))
    for field, spec in space.items():
        lines.append(f"    {field}: {_spec(spec)}")
    return "\n".join(lines)


def describe_devices() -> str:
    """Every installed device (see :func:`describe_device`), then plugins that failed to load."""
    blocks = [describe_device(n) for n in list_devices()]
    broken = broken_devices()
    if broken:
        blocks.append(
            "failed to load:\n" + "\n".join(f"  {n}: {why}" for n, why in sorted(broken.items()))
        )
    return "\n\n".join(blocks) if blocks else "no devices installed"


def config_fields(name: str) -> list[str]:
    """The config field names of device ``name`` (for shell completion and error messages)."""
    return [f.name for f in dataclasses.fields(get_device_class(name).Config)]
