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

    def measurement_files(self, path: Path) -> list[Path]:
        """The files the measurements at ``path`` consist of (their digest goes into the preset
        file's ``source``): ``path`` itself, unless the format spans several files (e.g. an
        index naming tool reports)."""
        return [Path(path).expanduser()]

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
