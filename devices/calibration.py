"""Fitting a device model to measured data: the calibrator contract (issue 32).

A :class:`Calibrator` turns a measurement file of a user's own chip into config overrides of
its device (:class:`CalibrationFit`), which ``codesign calibrate`` writes as a preset file that
``--preset-file`` reads wherever ``--preset`` works. A device declares its calibrator with the
class attribute :attr:`codesign.devices.base.Device.calibrator`; a plugin does the same, and
``check_device`` runs it on measurements its own model generates (:meth:`Calibrator.generate`)
and checks that the fit recovers the parameters they were drawn with.

The contract, for every calibrator:

* :attr:`Calibrator.columns` documents the measurement format (name, unit, meaning) and
  :meth:`Calibrator.read` enforces it: a missing column, a NaN, a value in the wrong unit's
  range or too few samples is a one-line :class:`MeasurementError` naming the file, the column
  and the fix, never a traceback from numpy;
* :meth:`Calibrator.fit` returns the fitted fields with their standard errors;
* :meth:`Calibrator.generate` draws measurements from the device's own noise model with a
  given config, in the format :meth:`Calibrator.write` writes and :meth:`Calibrator.read`
  reads back, so parameter recovery is testable;
* :meth:`Calibrator.plot` draws the data against the fitted model.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Mapping

import numpy as np

from codesign.errors import CodesignError

if TYPE_CHECKING:  # pragma: no cover
    from .base import DeviceConfig

#: Measurements as read from a file: ``{column: 1-D array}`` (all columns the same length for a
#: table; a calibrator whose input is not a table, such as FPGA tool reports, documents its keys).
Measurements = Mapping[str, np.ndarray]


class MeasurementError(CodesignError, ValueError):
    """A measurement file is missing, malformed, in the wrong units or too small to fit."""


@dataclass(frozen=True)
class Column:
    """One column of a calibrator's measurement file.

    Attributes:
        name: the column header, as it must appear in the file.
        unit: its unit (``"uS"``, ``"s"``, ``"rad"``, ``"dB"``, ``"1"`` for a count or ratio).
        description: what is measured, in one line.
        required: whether a file must have it.
    """

    name: str
    unit: str
    description: str
    required: bool = True


@dataclass(frozen=True)
class CalibrationFit:
    """The result of a fit: config overrides of one device, with their uncertainties.

    Attributes:
        device: the device's registered name.
        overrides: ``{config field: fitted value}``; the device's config accepts them as they are.
        uncertainty: ``{config field: one standard error of the fit}``, same units as the field
            (a bootstrap or the fit's covariance; the calibrator's docstring says which).
        samples: ``{what: count}`` the fit used (devices, reads, MZIs, reports...).
        notes: lines for the user (a field held at its default because the data cannot
            identify it, a range clipped...).
    """

    device: str
    overrides: Mapping[str, Any]
    uncertainty: Mapping[str, float] = field(default_factory=dict)
    samples: Mapping[str, int] = field(default_factory=dict)
    notes: tuple[str, ...] = ()


class Calibrator(abc.ABC):
    """Fits a device's config fields to measurements of a real chip (see the module docstring).

    Subclasses set :attr:`device`, :attr:`description`, :attr:`columns` and :attr:`fields`.
    """

    #: The registered name of the device this calibrator fits.
    device: ClassVar[str]
    #: One line: what is measured and what is fitted.
    description: ClassVar[str] = ""
    #: The measurement file's columns (the documented format).
    columns: ClassVar[tuple[Column, ...]] = ()
    #: The config fields :meth:`fit` sets.
    fields: ClassVar[tuple[str, ...]] = ()
    #: Parameter recovery the calibrator promises at :meth:`generate`'s default size:
    #: ``{field: (absolute, relative)}``, a fitted value within ``absolute + relative * |true|``
    #: of the value the data were generated with (a text field: equal). ``check_device`` checks
    #: the fields named here; a field left out is not checked.
    tolerances: ClassVar[Mapping[str, tuple[float, float]]] = {}
    #: Config overrides of a second, perturbed config ``check_device`` recovers (besides the
    #: default config); empty: the default config alone.
    perturbed: ClassVar[Mapping[str, Any]] = {}

    @abc.abstractmethod
    def read(self, path: Path) -> Measurements:
        """Read and validate a measurement file; :class:`MeasurementError` on any defect."""

    @abc.abstractmethod
    def fit(self, data: Measurements) -> CalibrationFit:
        """Fit :attr:`fields` to validated measurements."""

    @abc.abstractmethod
    def generate(self, config: "DeviceConfig", seed: int = 0, size: int | None = None) -> Measurements:
        """Measurements drawn from the device's own model with ``config`` (``size``: the
        number of devices/MZIs/reports, None for the calibrator's realistic default)."""

    @abc.abstractmethod
    def write(self, data: Measurements, path: Path) -> None:
        """Write ``data`` in the format :meth:`read` reads (atomically)."""

    def recovery_errors(self, fit: CalibrationFit, config: "DeviceConfig") -> list[str]:
        """The fields of :attr:`tolerances` that ``fit`` did not recover from data generated
        with ``config``, one line each (empty: every field within its tolerance). A field the
        fit does not set counts at the config's default (what its preset file gives)."""
        errors = []
        default = type(config)()  # a field the fit leaves out stays at its default in the preset
        for name, (absolute, relative) in self.tolerances.items():
            true = getattr(config, name)
            got = fit.overrides.get(name, getattr(default, name))
            if isinstance(true, str) or isinstance(got, str):
                if got != true:
                    errors.append(f"{name}: fitted {got!r}, true {true!r}")
                continue
            allowed = absolute + relative * abs(float(true))
            if not abs(float(got) - float(true)) <= allowed:
                errors.append(f"{name}: fitted {float(got):.6g}, true {float(true):.6g} (allowed +- {allowed:.3g})")
        return errors

    @abc.abstractmethod
    def plot(self, data: Measurements, fit: CalibrationFit, path: Path) -> None:
        """Draw the data against the fitted model into ``path`` (PNG or PDF)."""


def calibrator_for(device_cls: Any) -> Calibrator | None:
    """An instance of the calibrator ``device_cls.calibrator`` declares (a class or an import
    path ``"package.module:ClassName"``), or None where it declares none.

    Raises:
        CodesignError: the declaration names no importable :class:`Calibrator` subclass.
    """
    import importlib

    declared = getattr(device_cls, "calibrator", None)
    if declared is None:
        return None
    if isinstance(declared, str):
        module, _, attr = declared.partition(":")
        try:
            declared = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise CodesignError(f"device {getattr(device_cls, 'name', device_cls)!r} declares calibrator "
                                f"{declared!r}, which does not import ({exc}); fix the declaration") from None
    if not (isinstance(declared, type) and issubclass(declared, Calibrator)):
        raise CodesignError(f"device {getattr(device_cls, 'name', device_cls)!r} declares calibrator {declared!r}, "
                            "not a codesign.devices.calibration.Calibrator subclass")
    return declared()


# --------------------------------------------------------------------------- CSV tables
def read_csv_table(path: Path | str, columns: tuple[Column, ...], *, text: tuple[str, ...] = (),
                   min_rows: int = 1) -> dict[str, np.ndarray]:
    """Read a measurement table (CSV with a header row) into ``{column: array}``.

    Every required column of ``columns`` must be present (others are ignored); values are
    floats, except the columns named in ``text`` (kept as strings, e.g. a device identifier).
    Optional columns that are absent are left out of the result.

    Raises:
        MeasurementError: a missing file, no header, a missing column (the message lists the
            file's columns), a value that is not a number, a NaN or infinite value (its row and
            column), fewer than ``min_rows`` rows.
    """
    import csv

    p = Path(path).expanduser()
    if not p.is_file():
        raise MeasurementError(f"{p}: no such measurement file; give a CSV file with the columns "
                               + ", ".join(c.name for c in columns if c.required))
    try:
        with open(p, newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise MeasurementError(f"{p}: not a readable CSV file ({exc}); give a UTF-8 CSV with a header row") from None
    rows = [r for r in rows if r and not (len(r) == 1 and not r[0].strip()) and not r[0].lstrip().startswith("#")]
    if not rows:
        raise MeasurementError(f"{p}: empty file; give a CSV with a header row of "
                               + ", ".join(c.name for c in columns if c.required))
    header = [h.strip() for h in rows[0]]
    missing = [c.name for c in columns if c.required and c.name not in header]
    if missing:
        raise MeasurementError(f"{p}: missing column(s) {', '.join(missing)} (the file has: {', '.join(header)}); "
                               "see the measurement format in `codesign calibrate --help` or docs/how-to/calibrate.md")
    body = rows[1:]
    if len(body) < min_rows:
        raise MeasurementError(f"{p}: {len(body)} data row(s); the fit needs at least {min_rows}")
    out: dict[str, np.ndarray] = {}
    for c in columns:
        if c.name not in header:
            continue
        j = header.index(c.name)
        values = []
        for i, r in enumerate(body):
            if j >= len(r):
                raise MeasurementError(f"{p}: row {i + 2} has {len(r)} field(s), no value for column {c.name}")
            values.append(r[j].strip())
        if c.name in text:
            out[c.name] = np.asarray(values, dtype=object)
            continue
        try:
            arr = np.asarray([float(v) for v in values], dtype=np.float64)
        except ValueError:
            bad = next(i for i, v in enumerate(values) if not _is_float(v))
            raise MeasurementError(f"{p}: row {bad + 2}, column {c.name}: {values[bad]!r} is not a number "
                                   f"(unit {c.unit})") from None
        finite = np.isfinite(arr)
        if not finite.all():
            bad = int(np.flatnonzero(~finite)[0])
            raise MeasurementError(f"{p}: row {bad + 2}, column {c.name}: {values[bad]} is not a finite number; "
                                   "drop the row or give the value")
        out[c.name] = arr
    return out


def _is_float(v: str) -> bool:
    try:
        float(v)
    except ValueError:
        return False
    return True


def write_csv_table(data: Measurements, columns: tuple[Column, ...], path: Path | str,
                    formats: Mapping[str, str] | None = None) -> None:
    """Write ``data`` as a CSV with a header row of the ``columns`` present, atomically.

    ``formats``: ``{column: format spec}`` (e.g. ``".6g"``); default ``repr`` of floats.
    """
    import io

    from codesign.cache import atomic_write_text

    names = [c.name for c in columns if c.name in data]
    formats = dict(formats or {})
    n = len(np.asarray(data[names[0]])) if names else 0
    buf = io.StringIO()
    buf.write(",".join(names) + "\n")
    cols = [np.asarray(data[k]) for k in names]
    fmts = [formats.get(k) for k in names]
    for i in range(n):
        buf.write(",".join(str(c[i]) if f is None else format(c[i], f) for c, f in zip(cols, fmts)) + "\n")
    atomic_write_text(Path(path).expanduser(), buf.getvalue())
