"""Config files (TOML or YAML) for every CLI command, and the resolved config written beside outputs.

Precedence: built-in defaults < ``--config FILE`` < flags given on the command line.
A file holds the same keys as the command's long flags, with ``-`` or ``_`` (``pca_rank`` or
``pca-rank``); ``set`` is a table of device fields.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

from .errors import ConfigError


def read_json_file(path: str | Path, fix: str) -> Any:
    """The JSON in ``path``; a damaged file is a :class:`ConfigError` naming it, then ``fix``."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path} is damaged ({exc.msg} at line {exc.lineno} column {exc.colno}); {fix}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is damaged (not UTF-8 text at byte {exc.start}); {fix}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it ({exc.strerror or exc})") from None


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Parse a TOML (``.toml``) or YAML (``.yaml``/``.yml``) file into a flat dict."""
    if not str(path).strip():
        raise ConfigError(f"--config {str(path)!r}: empty file name; give a .toml or .yaml file, or drop --config")
    p = Path(path).expanduser()
    if p.is_dir():
        raise ConfigError(f"--config {path}: is a folder; give a .toml or .yaml file")
    if not p.is_file():
        raise ConfigError(f"--config {path}: no such file")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"--config {path}: not a text file ({exc.reason} at byte {exc.start}); "
                          "give a .toml or .yaml file") from None
    except OSError as exc:
        raise ConfigError(f"--config {path}: cannot read it ({exc.strerror or exc})") from None
    try:
        if p.suffix == ".toml":
            data = tomllib.loads(text)
        elif p.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text) or {}
        else:
            raise ConfigError(f"--config {path}: unknown format {p.suffix!r}; use a .toml, .yaml or .yml file")
    except (tomllib.TOMLDecodeError, ValueError) as exc:
        raise ConfigError(f"--config {path}: cannot parse ({exc})") from None
    except Exception as exc:  # yaml.YAMLError and friends
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"--config {path}: cannot parse ({type(exc).__name__}: {exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"--config {path}: expected a table of keys, got {type(data).__name__}")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def merge_config(args, file_values: dict[str, Any], defaults: dict[str, Any], command: str) -> dict[str, Any]:
    """Resolve each option: flag given > config file > default. Unknown file keys are errors."""
    unknown = sorted(set(file_values) - set(defaults))
    if unknown:
        raise ConfigError(
            f"config file: unknown key(s) {', '.join(unknown)} for '{command}'; "
            f"known keys: {', '.join(sorted(defaults))}"
        )
    out = {}
    for key, default in defaults.items():
        flag = getattr(args, key, None)
        if flag is not None:
            out[key] = flag
        elif key in file_values:
            out[key] = file_values[key]
        else:
            out[key] = default
    return out


def dump_toml(values: dict[str, Any]) -> str:
    """A small TOML writer for resolved configs (scalars, lists and one level of tables)."""
    lines, tables = [], []
    for key, value in values.items():
        if value is None:
            continue
        if isinstance(value, dict):
            tables.append((key, value))
        else:
            lines.append(f"{key} = {_toml_value(value)}")
    for name, table in tables:
        lines.append(f"\n[{name}]")
        for key, value in table.items():
            if value is not None:
                lines.append(f"{key} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def _toml_value(v: Any) -> str:

    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return json.dumps(str(v))
