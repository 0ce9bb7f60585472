"""What ``codesign calibrate`` does (issue 32): fit a device to measurements and write a preset file.

* :func:`calibrate` reads a measurement file with the device's calibrator, fits it, writes the
  preset file (:mod:`codesign.devices.preset_file`) and the data-vs-model plot beside it
  (``PRESET.png``);
* :func:`generate` writes synthetic measurements drawn from the device's own model with a config
  (the default, a preset, a preset file, ``--set`` overrides): how the repository's worked example
  ``experiments/calibration/crossbar_measurements.csv`` is made;
* :func:`write_builtin_preset` writes a built-in preset (``--preset NAME``) out as a preset file.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Mapping

from codesign.errors import ConfigError

from .calibration import CalibrationFit, Calibrator, calibrator_for
from .preset_file import preset_document, read_preset_file, write_preset_file
from .registry import create_device, get_device_class, list_devices


def devices_with_calibrators() -> list[str]:
    """Installed devices that declare a calibrator."""
    return [n for n in list_devices() if getattr(get_device_class(n), "calibrator", None) is not None]


def calibrator_of(device: str) -> Calibrator:
    """The calibrator of installed device ``device``; a one-line error if it declares none."""
    cal = calibrator_for(get_device_class(device))
    if cal is None:
        raise ConfigError(f"device {device!r} declares no calibrator; devices with one: "
                          f"{', '.join(devices_with_calibrators()) or '(none)'}")
    return cal


def sha256_file(path: Path) -> str:
    """SHA-256 of a file's bytes."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def sha256_files(paths: list[Path]) -> str:
    """SHA-256 of one file's bytes, or of several files' digests in order (an index and its reports)."""
    if len(paths) == 1:
        return sha256_file(paths[0])
    return hashlib.sha256("\n".join(sha256_file(p) for p in paths).encode("ascii")).hexdigest()


def plot_path(preset: Path) -> Path:
    """Where the data-vs-model plot of ``preset`` goes: beside it, ``PRESET.png``."""
    return preset.with_suffix(".png")


def calibrate(device: str, measurements: str | Path, out: str | Path, plot: bool = True) -> tuple[CalibrationFit, Path, Path | None]:
    """Fit ``device`` to ``measurements``; write the preset file ``out`` and its plot.

    Returns:
        ``(fit, preset path, plot path or None)``.
    """
    cal = calibrator_of(device)
    src = Path(measurements).expanduser()
    out = Path(out).expanduser()
    if out.suffix.lower() != ".toml":
        raise ConfigError(f"--out {out}: a preset file is TOML; give a name ending in .toml")
    if out.is_dir():
        raise ConfigError(f"--out {out} is a folder; give a preset file name such as my_chip.toml")
    data = cal.read(src)
    fit = cal.fit(data)
    get_device_class(device).Config().replace(fit.overrides)  # the device accepts what was fitted
    kind = type(cal)
    doc = preset_document(
        device, fit.overrides,
        {"kind": "measurements", "file": src.name, "sha256": sha256_files(cal.measurement_files(src))},
        {"calibrator": f"{kind.__module__}:{kind.__name__}", "uncertainty": dict(fit.uncertainty),
         "samples": dict(fit.samples), "notes": list(fit.notes)},
        description=f"{device} calibrated to {src.name}")
    out.parent.mkdir(parents=True, exist_ok=True)
    write_preset_file(out, doc)
    png = None
    if plot:
        png = plot_path(out)
        cal.plot(data, fit, png)
    return fit, out, png


def generate(device: str, out: str | Path, *, preset: str | None = None, preset_file: str | None = None,
             overrides: Mapping[str, Any] | None = None, seed: int = 0, size: int | None = None) -> Path:
    """Write measurements of ``device`` drawn from its model with the given config to ``out``
    (what :meth:`Calibrator.write` makes of it: a CSV file, or for ``fpga_fixed_point`` a folder
    of reports with their index ``designs.csv``); returns ``out``, the path ``calibrate`` reads."""
    if preset is not None and preset_file is not None:
        raise ConfigError("give --preset or --preset-file, not both")
    cal = calibrator_of(device)
    base = dict(read_preset_file(preset_file, device).overrides) if preset_file else {}
    dev = create_device(device, {**base, **dict(overrides or {})}, preset=preset)
    data = cal.generate(dev.config, seed=seed, size=size)
    path = Path(out).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    cal.write(data, path)
    return path


def write_builtin_preset(device: str, name: str, out: str | Path) -> Path:
    """Write built-in preset ``name`` of ``device`` as a preset file ``out``."""
    from .preset_file import builtin_preset_document

    path = Path(out).expanduser()
    if path.suffix.lower() != ".toml":
        raise ConfigError(f"--out {path}: a preset file is TOML; give a name ending in .toml")
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_preset_file(path, builtin_preset_document(device, name))


def fit_lines(fit: CalibrationFit) -> list[str]:
    """The fitted values with their standard errors, one per line, then the samples and notes."""
    lines = [f"{fit.device}: fitted config fields (value +- one standard error)"]
    width = max((len(k) for k in fit.overrides), default=0)
    for k, v in fit.overrides.items():
        err = fit.uncertainty.get(k)
        value = f"{v:.6g}" if isinstance(v, float) else str(v)
        lines.append(f"  {k:<{width}}  {value}" + (f" +- {err:.2g}" if err is not None else ""))
    lines.append("samples: " + ", ".join(f"{k} {v}" for k, v in fit.samples.items()))
    lines.extend(f"note: {n}" for n in fit.notes)
    return lines
