"""Device presets as files (issue 32): ``--preset-file PATH`` wherever ``--preset NAME`` works.

A preset file is TOML::

    format = "codesign-preset/1"
    device = "analog_crossbar"
    codesign_version = "0.1.0"
    created = "2026-12-06T04:00:00+00:00"

    [overrides]                      # config fields of the device, applied to its defaults
    prog_noise = 0.0411
    prog_noise_model = "pcm"

    [source]                         # where the values come from
    kind = "measurements"            # or "builtin" (a preset written out) or "manual"
    file = "crossbar_measurements.csv"
    sha256 = "..."                   # of the measurement file (an index: with its reports)

    [fit]                            # codesign calibrate's fit (absent for a built-in preset)
    calibrator = "codesign.devices.crossbar_calibration:CrossbarCalibrator"
    notes = ["..."]
    [fit.uncertainty]                # one standard error per fitted field
    prog_noise = 0.001
    [fit.samples]
    devices = 1000

Reading validates everything with one-line errors (not TOML, another format, another device, an
unknown field, a bad value). What a run depends on is the device and the overrides:
:attr:`PresetFile.digest` hashes those (not the path, the date or the notes), and a search's
identity includes it.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from codesign.errors import CodesignError, ConfigError

FORMAT = "codesign-preset/1"
TOP_KEYS = ("format", "device", "codesign_version", "created", "description", "overrides", "source", "fit")


class PresetFileError(ConfigError):
    """A preset file is missing, not TOML, or holds something its device does not accept."""


def codesign_version() -> str:
    """The installed codesign's version (``unknown`` when it is not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("codesign")
    except PackageNotFoundError:  # pragma: no cover - run from a checkout without install
        return "unknown"


def overrides_digest(device: str, overrides: Mapping[str, Any]) -> str:
    """SHA-256 of the device name and the overrides (canonical JSON): what a run depends on."""
    doc = json.dumps({"device": device, "overrides": {k: overrides[k] for k in sorted(overrides)}},
                     sort_keys=True, default=str)
    return hashlib.sha256(doc.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class PresetFile:
    """A validated preset file.

    Attributes:
        path: where it was read from.
        device: the device's registered name.
        overrides: ``{config field: value}``, accepted by the device's config.
        digest: :func:`overrides_digest` of device and overrides.
        source: the ``[source]`` table.
        fit: the ``[fit]`` table (empty for a built-in preset).
        codesign_version: the version that wrote it.
    """

    path: str
    device: str
    overrides: Mapping[str, Any]
    digest: str
    source: Mapping[str, Any] = field(default_factory=dict)
    fit: Mapping[str, Any] = field(default_factory=dict)
    codesign_version: str = ""

    def record(self) -> dict[str, Any]:
        """What a run's metrics and manifests record: file name, digest, overrides and source."""
        return {"file": Path(self.path).name, "digest": self.digest, "overrides": dict(self.overrides),
                "source": dict(self.source), "codesign_version": self.codesign_version}


def read_preset_file(path: str | Path, device: str | None = None) -> PresetFile:
    """Read and validate a preset file (for ``device``, when given).

    Raises:
        PresetFileError: one line naming the file and what to fix.
    """
    from .registry import get_device_class

    p = Path(path).expanduser()
    where = f"--preset-file {p}"
    if not p.is_file():
        raise PresetFileError(f"{where}: no such file; write one with `codesign calibrate` or "
                              "`codesign calibrate DEVICE --write-preset NAME --out FILE.toml`")
    try:
        doc = tomllib.loads(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise PresetFileError(f"{where}: not a text file; give a TOML preset file") from None
    except tomllib.TOMLDecodeError as exc:
        raise PresetFileError(f"{where}: not TOML ({exc}); give a preset file written by codesign calibrate") from None
    if doc.get("format") != FORMAT:
        raise PresetFileError(f"{where}: format {doc.get('format')!r}, expected {FORMAT!r} (a file written by "
                              "codesign calibrate)")
    unknown = sorted(set(doc) - set(TOP_KEYS))
    if unknown:
        raise PresetFileError(f"{where}: unknown key(s) {', '.join(unknown)}; a preset file has {', '.join(TOP_KEYS)}")
    name = doc.get("device")
    if not isinstance(name, str) or not name:
        raise PresetFileError(f"{where}: no device name (device = \"analog_crossbar\")")
    if device is not None and name != device:
        raise PresetFileError(f"{where} is a preset of device {name!r}, not of {device!r}; give --device {name}, "
                              "or a preset file of that device")
    try:
        cls = get_device_class(name)
    except CodesignError as exc:
        raise PresetFileError(f"{where}: {exc}") from None
    overrides = doc.get("overrides", {})
    for key in ("overrides", "source", "fit"):
        if not isinstance(doc.get(key, {}), dict):
            raise PresetFileError(f"{where}: {key} must be a table ([{key}])")
    known = {f for f in cls.Config.__dataclass_fields__}
    bad = sorted(set(overrides) - known)
    if bad:
        raise PresetFileError(f"{where}: unknown field(s) {', '.join(bad)} of device {name!r} "
                              "(`codesign devices` lists its fields)")
    try:
        cls.Config().replace(overrides)
    except CodesignError as exc:
        raise PresetFileError(f"{where}: {exc}") from None
    return PresetFile(str(p), name, dict(overrides), overrides_digest(name, overrides), dict(doc.get("source", {})),
                      dict(doc.get("fit", {})), str(doc.get("codesign_version", "")))


def preset_document(device: str, overrides: Mapping[str, Any], source: Mapping[str, Any],
                    fit: Mapping[str, Any] | None = None, description: str | None = None) -> dict[str, Any]:
    """The TOML document of a preset file (see the module docstring)."""
    doc: dict[str, Any] = {
        "format": FORMAT, "device": device, "codesign_version": codesign_version(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    if description:
        doc["description"] = description
    doc["overrides"] = {k: _plain(v) for k, v in overrides.items()}
    doc["source"] = {k: _plain(v) for k, v in source.items() if v is not None}
    if fit:
        doc["fit"] = {k: _plain(v) for k, v in fit.items() if v is not None}
    return doc


def write_preset_file(path: str | Path, doc: Mapping[str, Any]) -> Path:
    """Write ``doc`` as TOML to ``path`` atomically; returns the path."""
    from codesign.cache import atomic_write_text

    p = Path(path).expanduser()
    atomic_write_text(p, dumps_toml(doc))
    return p


def builtin_preset_document(device: str, name: str) -> dict[str, Any]:
    """A built-in preset (``Device.presets()[name]``) as a preset file document."""
    from .registry import get_device_class

    cls = get_device_class(device)
    presets = cls.presets()
    if name not in presets:
        raise ConfigError(f"unknown preset {name!r} for device {device!r}; its presets: {', '.join(presets) or '(none)'}")
    pre = presets[name]
    return preset_document(device, dict(pre.overrides), {"kind": "builtin", "preset": name, "citation": pre.source},
                           description=pre.description or None)


def _plain(v: Any) -> Any:
    """numpy scalars and tuples as plain Python values (TOML types)."""
    if isinstance(v, Mapping):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if hasattr(v, "item") and callable(v.item):
        return v.item()
    return v


# --------------------------------------------------------------------------- TOML writer
_BARE = re.compile(r"^[A-Za-z0-9_-]+$")


def _key(k: str) -> str:
    return k if _BARE.match(k) else _string(k)


def _string(s: str) -> str:
    """A TOML basic string: backslash, quote and control characters escaped."""
    out = ['"']
    for ch in s:
        code = ord(ch)
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif ch in "\b\t\n\f\r":
            out.append({"\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}[ch])
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\u{code:04X}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return _string(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, Mapping):  # an inline table
        return "{" + ", ".join(f"{_key(str(k))} = {_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"cannot write {type(v).__name__} {v!r} as TOML")


def dumps_toml(doc: Mapping[str, Any]) -> str:
    """``doc`` as TOML: scalars and arrays first, then each table (nested tables as ``[a.b]``).

    Strings are escaped as TOML basic strings; ``None`` values are left out. ``tomllib.loads``
    of the result equals ``doc`` (tests/devices/test_preset_file.py).
    """
    lines: list[str] = []

    def emit(table: Mapping[str, Any], prefix: tuple[str, ...]) -> None:
        scalars = [(k, v) for k, v in table.items() if v is not None and not isinstance(v, Mapping)]
        tables = [(k, v) for k, v in table.items() if isinstance(v, Mapping)]
        if prefix and (scalars or not tables):
            lines.append("")
            lines.append("[" + ".".join(_key(p) for p in prefix) + "]")
        for k, v in scalars:
            lines.append(f"{_key(str(k))} = {_value(v)}")
        for k, v in tables:
            emit(v, (*prefix, str(k)))

    emit(doc, ())
    return "\n".join(lines).lstrip("\n") + "\n"
