"""Listings of the installed devices: text for ``codesign devices``, JSON for ``--json``."""

from __future__ import annotations

import dataclasses
import math
import textwrap
from typing import Any

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
    """One device: description, config fields (default and doc), search space and presets.

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
    lines.append(f"  inference: {placement_text(cls)}")
    lines.append(f"  contract: {contract_text(name)}")
    space = cls.search_space()
    lines.append("  search space:" + (" (none)" if not space else ""))
    for field, spec in space.items():
        lines.append(f"    {field}: {_spec(spec)}")
    lines.append(f"  calibrator: {calibrator_text(cls)}")
    lines += lifts_text(cls)
    presets = cls.presets()
    lines.append("  presets (--preset NAME):" + (" (none)" if not presets else ""))
    for preset in presets.values():
        lines.append(f"    {preset.name}: {preset.description}".rstrip(": "))
        lines += textwrap.wrap(
            f"source: {preset.source}", 88, initial_indent="      ", subsequent_indent="        "
        )
    return "\n".join(lines)


def lifts_json(cls: type) -> dict[str, Any]:
    """The device's nonlinear primitives (:meth:`Device.lifts <codesign.devices.base.Device.lifts>`):
    ``{primitive: {"dictionary", "class", "description", "params": {param: {"default", "type",
    "doc"}}, "search_space": {param: spec}}}``, or ``{primitive: {"error": reason}}`` for a
    declaration that breaks the static contract (reported, not fatal here)."""
    from .lifts import device_lifts, lift_name, lift_problem

    try:
        declared = device_lifts(cls)
    except Exception as exc:  # noqa: BLE001 - a plugin's broken lifts() is reported, not fatal here
        return {"(lifts)": {"error": f"{type(exc).__name__}: {exc}"}}
    out: dict[str, Any] = {}
    for name, lift in declared.items():
        problem = lift_problem(lift, name)
        if problem:
            out[name] = {"error": problem}
            continue
        params = {}
        for f in dataclasses.fields(lift.Params):
            params[f.name] = {"default": _json_value(f.default), "type": type(f.default).__name__,
                              "doc": f.metadata.get("doc", "")}
        out[name] = {"dictionary": lift_name(cls.name, name), "class": f"{lift.__module__}.{lift.__qualname__}",
                     "description": lift.description, "params": params,
                     "search_space": {k: spec_json(v) for k, v in lift.search_space().items()}}
    return out


def lifts_text(cls: type) -> list[str]:
    """The lines of :func:`describe_device` that list the device's nonlinear primitives, each with
    its one-line description, its parameters (``--PARAM`` flags: default and doc) and its search space."""
    lifts = lifts_json(cls)
    if not lifts:
        return ["  nonlinear primitives: (none: the lift runs on the host)"]
    lines = ["  nonlinear primitives (--lift-placement device --dictionary NAME):"]
    for name, info in lifts.items():
        if "error" in info:
            lines.append(f"    {name}: declared but broken: {info['error']}")
            continue
        lines.append(f"    {name} ({info['dictionary']}): {info['description']}".rstrip(": "))
        params = info["params"]
        if params:
            width = max(len(p) for p in params)
            dwidth = max(len(repr(v["default"])) for v in params.values())
            for param, v in params.items():
                lines.append(f"      --{param.replace('_', '-'):<{width}}  = {v['default']!r:<{dwidth}}  {v['doc']}".rstrip())
        space = cls.lifts()[name].search_space()
        if space:
            lines.append("      search space: " + "; ".join(f"{k}: {_spec(s)}" for k, s in space.items()))
    return lines


def calibrator_json(cls: type) -> dict[str, Any] | None:
    """The device's calibrator: its class, description, columns and fitted fields (None: none)."""
    from .calibration import calibrator_for

    try:
        cal = calibrator_for(cls)
    except Exception as exc:  # a plugin's broken declaration is reported, not fatal here
        return {"error": str(exc)}
    if cal is None:
        return None
    kind = type(cal)
    return {"class": f"{kind.__module__}.{kind.__qualname__}", "description": cal.description,
            "columns": [{"name": c.name, "unit": c.unit, "description": c.description, "required": c.required}
                        for c in cal.columns],
            "fields": list(cal.fields)}


def calibrator_text(cls: type) -> str:
    """One line: ``codesign calibrate NAME`` and the measurement columns, or none."""
    info = calibrator_json(cls)
    if info is None:
        return "(none)"
    if "error" in info:
        return f"declared but broken: {info['error']}"
    cols = ", ".join(f"{c['name']} [{c['unit']}]" for c in info["columns"])
    return f"codesign calibrate {cls.name} MEASUREMENTS --out PRESET.toml (columns: {cols})"


def contract_text(name: str) -> str:
    """The device contract's verdict on ``name`` (run now if not cached), as one line."""
    from .verdict import device_verdict

    v = device_verdict(name)
    how = f"plugin {v.plugin}, device API v{api_of(get_device_class(name))}"
    return (f"passed ({how})" if v.ok else f"FAILED, refused by distill, search and export: {v.message} ({how})")


def api_of(cls: type) -> str:
    """The device API version ``cls`` declares (``3 (undeclared)`` when it declares none)."""
    from .base import DEVICE_API_VERSION

    declared = getattr(cls, "api_version", None)
    return f"{DEVICE_API_VERSION} (undeclared)" if declared is None else str(declared)


def placement_text(cls: type) -> str:
    """Where each stage of an inference runs on device class ``cls`` by default, and its converters."""
    conv = ", ".join(cls.conversion_keys) or "none"
    lift = "lifting on the host"
    if any("error" not in v for v in lifts_json(cls).values()):
        lift += f" (--lift-placement device: on {cls.name}, one of its nonlinear primitives)"
    return (f"PCA projection on the digital host (--pca-placement device: on {cls.name}), {lift}, "
            f"K on {cls.name}; conversion energy: {conv}")


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


def _json_value(value: Any) -> Any:
    """A config value as JSON has it (tuples as lists; non-finite floats as strings)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    return value


def spec_json(spec: SearchSpec) -> dict[str, Any]:
    """A search spec as a JSON-able dict: ``{"kind": "int"|"float"|"choice", ...}``."""
    if isinstance(spec, IntRange):
        return {"kind": "int", "low": spec.low, "high": spec.high, "log": spec.log}
    if isinstance(spec, FloatRange):
        return {"kind": "float", "low": spec.low, "high": spec.high, "log": spec.log}
    if isinstance(spec, Choice):
        return {"kind": "choice", "values": _json_value(list(spec.values))}
    return {"kind": "unknown", "repr": repr(spec)}


def device_json(name: str) -> dict[str, Any]:
    """One installed device as a JSON-able dict (see :func:`devices_json`)."""
    cls = get_device_class(name)
    fields = {}
    for f in dataclasses.fields(cls.Config):
        default = f.default if f.default is not dataclasses.MISSING else None
        rng = f.metadata.get("range")
        fields[f.name] = {
            "default": _json_value(default),
            "type": type(default).__name__ if default is not None else str(f.type),
            "doc": f.metadata.get("doc", ""),
            "range": None if rng is None else _json_value(list(rng)),
        }
    from .verdict import device_verdict

    verdict = device_verdict(name)
    return {
        "class": f"{cls.__module__}.{cls.__qualname__}",
        "api_version": getattr(cls, "api_version", None),
        "contract": {k: v for k, v in verdict.as_dict().items() if k != "device"},
        "description": cls.description,
        "inference": placement_text(cls),
        "conversion_keys": list(cls.conversion_keys),
        "fields": fields,
        "presets": {
            p.name: {
                "overrides": {k: _json_value(v) for k, v in p.overrides.items()},
                "source": p.source,
                "description": p.description,
            }
            for p in cls.presets().values()
        },
        "search_space": {field: spec_json(spec) for field, spec in cls.search_space().items()},
        "calibrator": calibrator_json(cls),
        "lifts": lifts_json(cls),
    }


def devices_json() -> dict[str, Any]:
    """Every installed device and every plugin that failed to load, as JSON-able data.

    Returns:
        ``{"devices": {name: {"class", "api_version", "contract": {"ok", "message", "plugin",
        "codesign_version", "seconds", "cached"}, "description", "inference", "conversion_keys",
        "fields": {field: {"default", "type", "doc", "range"}}, "presets": {name: {"overrides",
        "source", "description"}}, "search_space": {field: {"kind", ...}}, "calibrator": {"class",
        "description", "columns", "fields"} or None, "lifts": {primitive: {"dictionary",
        "class", "description", "params": {param: {"default", "type", "doc"}}, "search_space"}}}},
        "broken": {name:
        reason}}``, for ``codesign devices --json`` (the README documents every key).
    """
    return {
        "devices": {name: device_json(name) for name in list_devices()},
        "broken": dict(sorted(broken_devices().items())),
    }
