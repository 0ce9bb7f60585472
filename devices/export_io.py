"""Reading and writing the files of a device-native export, with one-line errors.

Shared by the built-in export formats (:mod:`codesign.devices.photonic_export`,
:mod:`codesign.devices.crossbar_export`) and open to plugins: a device's
:meth:`~codesign.devices.base.Device.export_layer` writes a JSON manifest and NPZ arrays with
:func:`write_json` / :func:`write_npz` (atomically), and its
:meth:`~codesign.devices.base.Device.load_layer_export` reads them back with :func:`read_json` /
:func:`read_npz`, which turn a missing, truncated or corrupted file into a
:class:`~codesign.errors.ConfigError` of one line naming the file and the fix.
"""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from codesign.cache import atomic_write_bytes, atomic_write_text
from codesign.errors import ConfigError

from .base import Device, DeviceLayer, check_export_manifest, read_export_arrays

#: The fix every damaged-file message ends with.
REEXPORT = "re-export the student with `codesign export`"


def one_line(text: Any) -> str:
    """``text`` on one line (an exception's message may span several)."""
    return " ".join(str(text).split())


def write_json(folder: Path, name: str, obj: Mapping[str, Any]) -> None:
    """Write ``obj`` as indented JSON to ``folder / name``, atomically.

    Floats are written with ``repr`` (Python's ``json``), so a float64 value reads back exactly.
    """
    atomic_write_text(Path(folder) / name, json.dumps(obj, indent=2, allow_nan=False) + "\n")


def write_npz(folder: Path, name: str, arrays: Mapping[str, np.ndarray]) -> None:
    """Write ``arrays`` as a compressed NPZ to ``folder / name``, atomically (no pickled objects)."""
    buf = io.BytesIO()
    np.savez_compressed(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    atomic_write_bytes(Path(folder) / name, buf.getvalue())


def require_files(folder: Path, names: Iterable[str]) -> None:
    """``ConfigError`` naming the first of ``names`` missing from ``folder``."""
    for name in names:
        path = Path(folder) / name
        if not path.is_file():
            raise ConfigError(f"{path}: file missing from the device export; {REEXPORT}")


def read_json(folder: Path, name: str) -> dict[str, Any]:
    """The JSON object in ``folder / name``; ``ConfigError`` if missing, unreadable or not an object."""
    path = Path(folder) / name
    require_files(folder, [name])
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"{path}: damaged JSON ({one_line(exc)}); {REEXPORT}") from None
    if not isinstance(obj, dict):
        raise ConfigError(f"{path}: expected a JSON object, found {type(obj).__name__}; {REEXPORT}")
    return obj


def read_npz(folder: Path, name: str, shapes: Mapping[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    """Every array of ``folder / name``, checked against ``shapes`` (``{array: shape}``).

    The whole archive is read (:func:`~codesign.devices.base.read_export_arrays`), so the ZIP
    CRC of every member is checked: flipped bytes and a truncated file are caught, as are a
    missing array or one of another shape.

    Raises:
        ConfigError: one line naming the file (and the array) and the fix.
    """
    path = Path(folder) / name
    arrays = read_export_arrays(path, list(shapes))
    for key, shape in shapes.items():
        if tuple(arrays[key].shape) != tuple(shape):
            raise ConfigError(
                f"{path}: array {key!r} has shape {list(arrays[key].shape)}, the manifest's layer "
                f"needs {list(shape)}; {REEXPORT}"
            )
    return arrays


def check_section(device: Device, manifest: Any, folder: Path, manifest_file: str,
                  version: int | None = None) -> dict[str, Any]:
    """Check the manifest section and the device's own JSON manifest; return the latter.

    The section (from the bundle's ``export.json``) and the JSON file in ``folder`` must both
    name the device's :attr:`~codesign.devices.base.Device.export_format`; every file the
    section lists must exist; with ``version``, the JSON file's ``version`` field must equal it.
    """
    fmt = device.export_format
    check_export_manifest(manifest, fmt, folder)
    files = manifest.get("files")
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        raise ConfigError(f"device export in {folder}: manifest section has no list of 'files'; {REEXPORT}")
    require_files(folder, files)
    own = read_json(folder, manifest_file)
    check_export_manifest(own, fmt, folder / manifest_file)
    if version is not None and own.get("version") != version:
        raise ConfigError(f"{folder / manifest_file}: version {own.get('version')!r}, this codesign reads "
                          f"version {version}; {REEXPORT}")
    return own


def saved_layer(device: Device, own: Mapping[str, Any], path: Path) -> DeviceLayer:
    """A fresh, untrained layer of the saved device config and size (``own``: the JSON manifest).

    The config is read with ``Config.from_dict`` (renamed fields mapped); the layer gets the
    saved dtype and read time.
    """
    import torch

    try:
        config = type(device).Config.from_dict(own["config"])
        shape = own["layer"]
        in_features, out_features = int(shape["in_features"]), int(shape["out_features"])
        dtype = getattr(torch, str(shape.get("dtype", "float32")))
        t_inference_s = float(shape["t_inference_s"])
    except ConfigError as exc:
        raise ConfigError(f"{path}: saved device config refused ({one_line(exc)}); {REEXPORT}") from None
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ConfigError(f"{path}: incomplete manifest ({type(exc).__name__}: {one_line(exc)}); {REEXPORT}") from None
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ConfigError(f"{path}: layer dtype {shape.get('dtype')!r} is not a float dtype; {REEXPORT}")
    layer = type(device)(config).layer(in_features, out_features).to(dtype)
    layer.set_inference_time(t_inference_s)
    layer.eval()
    return layer


def layer_section(device: Device, layer: DeviceLayer) -> dict[str, Any]:
    """The ``device``, ``config`` and ``layer`` entries every device manifest starts with.

    The config is the layer's own (the one it was built with), the read time its current one.
    """
    params = list(layer.parameters())
    dtype = str(params[0].dtype).removeprefix("torch.") if params else "float32"
    return {
        "device": layer.device_name or device.name,
        "config": json.loads(json.dumps(dataclasses.asdict(layer.config))),
        "layer": {
            "in_features": layer.in_features,
            "out_features": layer.out_features,
            "dtype": dtype,
            "t_inference_s": layer.t_inference_s,
        },
    }


def adc_value(value: float) -> float | None:
    """A calibrated converter range for JSON: None while uncalibrated (NaN)."""
    return None if value != value else float(value)


__all__ = [
    "REEXPORT",
    "adc_value",
    "check_section",
    "layer_section",
    "one_line",
    "read_json",
    "read_npz",
    "require_files",
    "saved_layer",
    "write_json",
    "write_npz",
]
