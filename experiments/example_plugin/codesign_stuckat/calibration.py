"""The example plugin's calibrator: stuck-at rates from March tests of real arrays (issue 32).

A plugin declares a calibrator as the built-in devices do (``StuckCrossbarDevice.calibrator``,
here as an import path, so that this module may import the device's); ``codesign calibrate
stuck_crossbar MEASUREMENTS --out chip.toml`` then fits it and ``check_device`` checks that it
recovers the parameters of measurements the plugin's own model generates.

Measurement format (CSV, one row per tested array): ``array_id``, ``n_cells`` (devices tested),
``stuck_at_0`` and ``stuck_at_1`` (devices a March test found stuck at 0 and at g_max). Fitted:
``stuck_fraction = (s0 + s1) / n`` and ``stuck_on_ratio = s1 / (s0 + s1)`` over all arrays, with
binomial standard errors.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from codesign.devices.calibration import CalibrationFit, Calibrator, Column, MeasurementError, Measurements
from codesign.devices.measurement_csv import read_csv_table, write_csv_table, write_figure

COLUMNS = (
    Column("array_id", "1", "identifier of the tested array"),
    Column("n_cells", "1", "devices tested in the array"),
    Column("stuck_at_0", "1", "devices found stuck at 0 (stuck-at-0)"),
    Column("stuck_at_1", "1", "devices found stuck at g_max (stuck-at-1)"),
)


class StuckCalibrator(Calibrator):
    """Stuck-at rates of :class:`~codesign_stuckat.StuckCrossbarDevice` from March-test counts."""

    device: ClassVar[str] = "stuck_crossbar"
    description: ClassVar[str] = "March-test counts of stuck cells per array: the stuck fraction and its split"
    columns: ClassVar[tuple[Column, ...]] = COLUMNS
    fields: ClassVar[tuple[str, ...]] = ("stuck_fraction", "stuck_on_ratio")
    #: At 64 arrays of 128 x 128 pairs (2 x 16384 devices each).
    tolerances: ClassVar[dict[str, tuple[float, float]]] = {"stuck_fraction": (0.001, 0.05),
                                                             "stuck_on_ratio": (0.03, 0.05)}
    perturbed: ClassVar[dict[str, Any]] = {"stuck_fraction": 0.05, "stuck_on_ratio": 0.8}

    def read(self, path: Path) -> Measurements:
        data = read_csv_table(path, COLUMNS, text=("array_id",))
        n, s0, s1 = (data[k] for k in ("n_cells", "stuck_at_0", "stuck_at_1"))
        if (n < 1).any() or (s0 < 0).any() or (s1 < 0).any() or (s0 + s1 > n).any():
            raise MeasurementError(f"{path}: counts must satisfy 0 <= stuck_at_0 + stuck_at_1 <= n_cells, n_cells >= 1")
        return data

    def write(self, data: Measurements, path: Path) -> None:
        write_csv_table(data, COLUMNS, path)

    def generate(self, config, seed: int = 0, size: int | None = None) -> Measurements:
        """``size`` arrays (default 64) of 128 x 128 pairs, each one instance of the plugin's layer."""
        from . import StuckCrossbarDevice

        arrays = int(size or 64)
        layer = StuckCrossbarDevice(config).layer(128, 128)
        rows: dict[str, list] = {"array_id": [], "n_cells": [], "stuck_at_0": [], "stuck_at_1": []}
        for a in range(arrays):
            layer.draw_instance(seed * 100_003 + a)  # the plugin's own fault draw, one chip per array
            stuck, at_gmax = layer.fault_map()
            rows["array_id"].append(a)
            rows["n_cells"].append(int(stuck.numel()))
            rows["stuck_at_1"].append(int(at_gmax.sum()))
            rows["stuck_at_0"].append(int((stuck & ~at_gmax).sum()))
        return {k: np.asarray(v) for k, v in rows.items()}

    def fit(self, data: Measurements) -> CalibrationFit:
        n, s0, s1 = (float(np.sum(data[k])) for k in ("n_cells", "stuck_at_0", "stuck_at_1"))
        p = (s0 + s1) / n
        r = s1 / (s0 + s1) if s0 + s1 > 0 else 0.5
        notes = [] if s0 + s1 > 0 else ["no stuck cell found: stuck_on_ratio held at 0.5"]
        return CalibrationFit(
            self.device, {"stuck_fraction": p, "stuck_on_ratio": r},
            {"stuck_fraction": math.sqrt(p * (1 - p) / n), "stuck_on_ratio": math.sqrt(r * (1 - r) / max(s0 + s1, 1))},
            {"arrays": len(data["n_cells"]), "cells": int(n)}, tuple(notes + ["standard errors: binomial"]))

    def plot(self, data: Measurements, fit: CalibrationFit, path: Path) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        frac = (np.asarray(data["stuck_at_0"]) + np.asarray(data["stuck_at_1"])) / np.asarray(data["n_cells"])
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.plot(frac, "o", label="arrays: stuck fraction")
        ax.axhline(fit.overrides["stuck_fraction"], color="C1", label="fitted stuck_fraction")
        ax.set(xlabel="array", ylabel="stuck fraction", title="stuck_crossbar calibration")
        ax.legend()
        write_figure(fig, path)
        plt.close(fig)
