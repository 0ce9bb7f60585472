"""Calibrating the FPGA MVAU (``fpga_fixed_point``) to Vivado's reports of your designs (issue 32).

:class:`FPGACalibrator` reads, for a few implemented MVAU designs, the text reports Vivado
writes (``report_utilization`` and ``report_power``) and fits the cost model's calibration
fields of :class:`~codesign.devices.fpga_fixed_point.FPGAFixedPointConfig` by least squares
over the designs: the static power and the energy and resource factors
(``*_energy_scale`` / ``*_area_scale``, applied by :func:`codesign.devices.base.calibrate`).
:meth:`FPGACalibrator.generate` writes such reports from the device's own cost model, so
recovery is testable (``tests/devices/test_fpga_calibration.py``).

The parser is written for the layout of Vivado's reports (the ``| name | value |`` tables with
``+---+`` rules, 7 series and UltraScale site names, ``<0.001`` entries); it reads the
numbers it needs by row name and the ``Used`` / ``Power (W)`` column by header, so added or
reordered columns and tables do not break it.
"""

from __future__ import annotations

import importlib
import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from codesign.cache import atomic_write_text

from .calibration import CalibrationFit, Calibrator, Column, MeasurementError, Measurements
from .measurement_csv import read_csv_table, write_csv_table, write_figure

#: Fewest designs a fit accepts: three give the static power's spread and one factor per
#: resource with a degree of freedom left; a separate requantizer factor needs four.
MIN_DESIGNS = 3
#: Designs :meth:`FPGACalibrator.generate` writes by default (the brief's realistic count).
DEFAULT_DESIGNS = 6
N_BOOT = 500
#: Spread of the reports :meth:`FPGACalibrator.generate` writes around the model (assumed,
#: not model parameters): Vivado's vectorless power estimate per resource 5 %, the device
#: static power 2 % (junction temperature differs between designs), placed-and-routed LUTs
#: 3 % (synthesis and packing); reports round power to 1 mW, as Vivado does.
POWER_SPREAD, STATIC_SPREAD, LUT_SPREAD = 0.05, 0.02, 0.03
#: Shares of the datapath's dynamic power :meth:`FPGACalibrator.generate` books to Vivado's
#: categories (assumed; the fit sums them): clock tree 10 %, routing ("Signals") 35 %, the rest
#: "Slice Logic", of which DSP designs book 30 % to "DSPs".
CLOCK_SHARE, SIGNAL_SHARE, DSP_SHARE = 0.10, 0.35, 0.30

#: Designs of :meth:`FPGACalibrator.generate`: (in, out, weight, input, output bits, PE, SIMD,
#: clock MHz, multipliers, requantizer), MVAUs of the sizes and foldings FINN examples use, each
#: within the xc7z020's LUT, BRAM and DSP budget; the sixth (8-bit thresholds on 32 inputs) gives
#: the requantizer a share of the datapath power that separates its factor from the MACs'.
DESIGNS = (
    (64, 64, 8, 8, 8, 4, 16, 200.0, "lut", "shift"),
    (128, 64, 4, 4, 4, 8, 32, 200.0, "lut", "thresholds"),
    (256, 128, 8, 8, 16, 8, 16, 250.0, "dsp", "shift"),
    (784, 64, 2, 2, 2, 16, 49, 100.0, "lut", "thresholds"),
    (128, 128, 6, 6, 8, 8, 16, 200.0, "dsp", "shift"),
    (32, 64, 4, 4, 8, 2, 16, 200.0, "lut", "thresholds"),
    (512, 256, 4, 8, 8, 16, 16, 150.0, "lut", "shift"),
    (64, 32, 8, 8, 3, 2, 64, 250.0, "lut", "thresholds"),
)
_DESIGN_FIELDS = ("weight_bits", "input_bits", "output_bits", "pe", "simd", "clock_mhz", "mult_resource", "requant")
_UTIL_ROWS = {"Slice LUTs": "lut", "CLB LUTs": "lut", "Slice Registers": "ff", "CLB Registers": "ff",
              "Block RAM Tile": "bram_tiles", "DSPs": "dsp"}
_POWER_ROWS = {"Clocks": "clocks_w", "Signals": "signals_w", "Slice Logic": "logic_w", "CLB Logic": "logic_w",
               "Block RAM": "bram_w", "DSPs": "dsp_w", "I/O": "io_w"}
_SUMMARY_ROWS = {"Total On-Chip Power (W)": "total_w", "Dynamic (W)": "dynamic_w", "Device Static (W)": "static_w"}


class FPGACalibrator(Calibrator):
    """Fits ``fpga_fixed_point``'s static power and cost factors to Vivado reports of MVAUs.

    **Measurement file**: a CSV index (``designs.csv``, or the folder holding it) with one
    row per implemented design: its name, the paths of its two Vivado text reports
    (``report_utilization`` and ``report_power`` of the routed design, relative to the index)
    and the design's shape and folding, the fields of ``fpga_fixed_point`` it was built with
    (matrix ``in_features`` x ``out_features``, bit widths, FINN ``pe`` / ``simd``, clock,
    multipliers in LUTs or DSPs, requantizer). Each design is one MVAU streaming one vector
    per initiation interval (as the cost model prices it); all designs on one part, read from
    the reports' ``Device`` line (``7z020clg400-1`` -> ``xc7z020``).

    From ``report_utilization``: ``Slice LUTs`` (``CLB LUTs`` on UltraScale), ``Slice
    Registers``, ``Block RAM Tile`` (RAMB36 tiles; a RAMB18 counts 0.5) and ``DSPs``, column
    ``Used``. From ``report_power``: ``Total On-Chip Power``, ``Dynamic`` and ``Device Static``
    (W) of the summary, and the ``Power (W)`` of ``Clocks``, ``Signals``, ``Slice Logic``,
    ``Block RAM``, ``DSPs`` and ``I/O`` in the on-chip components table (``<0.001`` is read
    as 0.0005 W; a row Vivado leaves out, such as ``DSPs`` in a design without any, is 0).

    **Fit** (least squares over designs; the model is evaluated for each design with every
    factor at 1):

    * ``static_power_w``: the mean ``Device Static`` (and ``fpga_static_energy_scale`` = 1,
      so the measured figure is the one charged); ``part`` from the reports;
    * ``mac_energy_scale`` and ``requant_energy_scale``: the datapath's dynamic power
      (``Clocks + Signals + Slice Logic + DSPs``) against the model's MAC and requantizer
      power (energy per vector / initiation interval), weighted least squares with variance
      proportional to the power; the two are fitted apart only when the designs' requantizer
      shares differ enough to give it a standard error under 25 % (else one shared factor:
      both are LUT logic at the same FPGA/ASIC gap in the model);
    * ``bram_energy_scale``: ``Block RAM`` power against the model's weight reads;
    * ``mac_area_scale``: placed LUTs against FINN's LUT estimate (the MAC array's area scales
      with the logic it occupies); ``bram_area_scale``: RAMB18s against FINN's BRAM estimate.

    Held, with a note: I/O and processor-system power (the model prices neither), the LUT
    and BRAM counts the feasibility check compares with the part's budget (FINN's formulas,
    no calibration field; the fitted ratios are in the notes), DSP counts (FINN's formula,
    compared in a note).

    **Uncertainty**: one standard error from a bootstrap over designs (500 resamples); for
    MAC and requantizer factors fitted apart, from the weighted least squares covariance
    instead (a resample that misses the requantizer-heavy designs cannot separate them). With
    six designs the bootstrap is coarse: read it as the order of the error.
    """

    device = "fpga_fixed_point"
    description = ("Vivado report_utilization + report_power of implemented MVAUs -> static_power_w, "
                   "mac/requant/bram energy scales, mac/bram area scales")
    columns = (
        Column("design", "1", "name of the design (used in messages and plots)"),
        Column("utilization_report", "path", "its Vivado report_utilization text report, relative to the index"),
        Column("power_report", "path", "its Vivado report_power text report, relative to the index"),
        Column("in_features", "1", "MVAU input size (matrix columns)"),
        Column("out_features", "1", "MVAU output size (matrix rows)"),
        Column("weight_bits", "bit", "signed weight width"),
        Column("input_bits", "bit", "signed input width"),
        Column("output_bits", "bit", "requantized output width"),
        Column("pe", "1", "FINN PE (output rows in parallel)"),
        Column("simd", "1", "FINN SIMD (inputs per PE per cycle)"),
        Column("clock_mhz", "MHz", "fabric clock the reports were made at"),
        Column("mult_resource", "-", "multipliers in 'lut' or 'dsp' (default lut)", required=False),
        Column("requant", "-", "requantizer 'shift' or 'thresholds' (default shift)", required=False),
    )
    fields = ("part", "static_power_w", "fpga_static_energy_scale", "mac_energy_scale", "requant_energy_scale",
              "bram_energy_scale", "mac_area_scale", "bram_area_scale")

    #: Recovery from the 6 default designs (tests/devices/test_fpga_calibration.py): static power
    #: 3 %, MAC and BRAM energy 10 %, requantizer energy 25 % (separable from the MACs only
    #: through the designs' requantizer shares), MAC area 6 %, BRAM area and the part exactly.
    #: The static power is compared with what the config charges (:meth:`recovery_errors`).
    tolerances = {"part": (0.0, 0.0), "static_power_w": (0.0, 0.03), "mac_energy_scale": (0.0, 0.10),
                  "requant_energy_scale": (0.0, 0.25), "bram_energy_scale": (0.0, 0.10),
                  "mac_area_scale": (0.0, 0.06), "bram_area_scale": (1e-9, 0.0)}
    #: A part with its own static power and costlier MACs and BRAM reads, smaller MAC arrays.
    perturbed = {"static_power_w": 0.15, "mac_energy_scale": 1.6, "requant_energy_scale": 1.6,
                 "bram_energy_scale": 3.0, "mac_area_scale": 0.7}

    _TEXT = ("design", "utilization_report", "power_report", "mult_resource", "requant")
    _INTEGER = ("in_features", "out_features", "weight_bits", "input_bits", "output_bits", "pe", "simd")

    # ------------------------------------------------------------------ read / write
    @staticmethod
    def _index(path: Path) -> Path:
        path = Path(path)
        return path / "designs.csv" if path.is_dir() or not path.suffix else path

    def read(self, path: Path) -> Measurements:
        """Read the index CSV (or the folder holding ``designs.csv``) and every report it names."""
        index = self._index(path)
        data = read_csv_table(index, self.columns, text=self._TEXT, integer=self._INTEGER)
        n = len(data["design"])
        data.setdefault("mult_resource", np.array(["lut"] * n))
        data.setdefault("requant", np.array(["shift"] * n))
        self._check_index(data, str(index))
        parsed: dict[str, list[Any]] = {}
        for i in range(n):
            for kind, parse in (("utilization_report", parse_utilization), ("power_report", parse_power)):
                report = index.parent / str(data[kind][i])
                for key, value in parse(report).items():
                    parsed.setdefault(key, []).append(value)
        parts = sorted(set(parsed["part"]))
        if len(parts) > 1:
            raise MeasurementError(f"{index}: the reports are of several parts ({', '.join(parts)}); calibrate one "
                                   "part at a time (one index per part)")
        out = dict(data)
        for key, values in parsed.items():
            out[key] = np.array(values, dtype=str if key == "part" else float)
        out["part"] = np.array([self._part(parts[0], index)] * n)
        return out

    def recovery_errors(self, fit: CalibrationFit, config: Any) -> list[str]:
        """As :meth:`Calibrator.recovery_errors`, with the static power the config charges:
        ``static_power_w=0`` means the part's own figure, which is what its reports show and
        the fit returns (times ``fpga_static_energy_scale``, which the fit sets to 1)."""
        charged = self._device_class()(config).static_w() * config.fpga_static_energy_scale
        return super().recovery_errors(fit, config.replace({"static_power_w": charged, "fpga_static_energy_scale": 1.0}))

    def measurement_files(self, path: Path) -> list[Path]:
        """The index and every report it names, in its order."""
        index = self._index(Path(path).expanduser())
        data = read_csv_table(index, self.columns, text=self._TEXT, integer=self._INTEGER)
        return [index] + [index.parent / str(data[kind][i]) for i in range(len(data["design"]))
                          for kind in ("utilization_report", "power_report")]

    def _check_index(self, data: Measurements, where: str) -> None:
        n = len(data["design"])
        if n < MIN_DESIGNS:
            raise MeasurementError(f"{where}: {n} design(s), too few to fit; give at least {MIN_DESIGNS} implemented "
                                   "designs that differ in size or folding (e.g. 6)")
        if len(set(map(str, data["design"]))) != n:
            raise MeasurementError(f"{where}: design names repeat; give each design once")
        clock = np.asarray(data["clock_mhz"], float)
        if clock.min() < 1.0 or clock.max() > 1e4:
            bad = clock[(clock < 1.0) | (clock > 1e4)][0]
            hint = "GHz? multiply by 1000" if bad < 1.0 else "Hz? divide by 1e6"
            raise MeasurementError(f"{where}: clock_mhz {bad:g} is outside 1..10000 MHz ({hint})")
        for name in ("weight_bits", "input_bits", "output_bits"):
            v = np.asarray(data[name])
            if v.min() < 2 or v.max() > 32:
                raise MeasurementError(f"{where}: {name} {v[(v < 2) | (v > 32)][0]} is outside 2..32 bits")
        for name in ("in_features", "out_features", "pe", "simd"):
            if np.asarray(data[name]).min() < 1:
                raise MeasurementError(f"{where}: {name} must be >= 1")
        for name, allowed in (("mult_resource", ("lut", "dsp")), ("requant", ("shift", "thresholds"))):
            bad = [v for v in map(str, data[name]) if v not in allowed]
            if bad:
                raise MeasurementError(f"{where}: {name} {bad[0]!r}; use one of {', '.join(allowed)}")

    def _part(self, device: str, where: Path) -> str:
        """The model's part for a report's ``Device`` (``7z020clg400-1`` -> ``xc7z020``)."""
        from codesign.errors import ConfigError

        name = device.lower()
        name = name if name.startswith("xc") else "xc" + name
        cls = self._device_class()
        for end in range(len(name), 3, -1):
            try:
                cls.Config(part=name[:end], static_power_w=1.0)
            except ConfigError:
                continue
            return name[:end]
        raise MeasurementError(f"{where}: the reports are of part {device}, which fpga_fixed_point has no budget for "
                               f"(field part: {cls.Config.__dataclass_fields__['part'].metadata['doc'].split('; ')[-1]}); "
                               "add the part to fpga_fixed_point.PARTS or use reports of a known part")

    def _device_class(self) -> Any:
        from .registry import get_device_class

        return get_device_class(self.device)

    def write(self, data: Measurements, path: Path) -> None:
        """Write the index CSV and each design's two reports beside it (atomically)."""
        index = self._index(path)
        n = len(data["design"])
        for i in range(n):
            row = {k: np.asarray(v)[i] for k, v in data.items()}
            atomic_write_text(index.parent / str(row["utilization_report"]), render_utilization(row))
            atomic_write_text(index.parent / str(row["power_report"]), render_power(row))
        write_csv_table(data, self.columns, index)

    # ------------------------------------------------------------------ model
    def _model(self, data: Measurements) -> dict[str, np.ndarray]:
        """The cost model per design with every factor at 1: powers (mW) and resources."""
        cls = self._device_class()
        part = str(np.asarray(data["part"])[0])
        base = cls.Config(part=part, static_power_w=1.0)
        rows: dict[str, list[float]] = {}
        for i in range(len(data["design"])):
            fields = {f: (str(data[f][i]) if f in ("mult_resource", "requant") else
                          float(data[f][i]) if f == "clock_mhz" else int(data[f][i])) for f in _DESIGN_FIELDS}
            dev = cls(base.replace(fields))
            n_in, n_out = int(data["in_features"][i]), int(data["out_features"][i])
            cost = dev.cost(n_in, n_out)
            interval = cost["interval_ns"]
            for key, value in (("mac_mw", cost["mac_pj"] / interval), ("requant_mw", cost["requant_pj"] / interval),
                               ("bram_mw", cost["bram_pj"] / interval), ("lut", cost["lut"]),
                               ("bram18", cost["bram_18k"]), ("dsp", cost["dsp"])):
                rows.setdefault(key, []).append(value)
        return {k: np.array(v) for k, v in rows.items()}

    # ------------------------------------------------------------------ generate
    def generate(self, config: Any, seed: int = 0, size: int | None = None) -> Measurements:
        """Reports of ``size`` designs (default 6; :data:`DESIGNS`) drawn from ``config``'s cost model.

        Each design is ``config`` with the design's shape and folding; its true dynamic power
        per category is the model's energy per vector (with ``config``'s ``*_energy_scale``)
        over the initiation interval, its LUTs FINN's estimate times ``mac_area_scale``, its
        RAMB18s FINN's estimate times ``bram_area_scale``, its static power ``config``'s;
        reports carry the spread of :data:`POWER_SPREAD`, :data:`STATIC_SPREAD` and
        :data:`LUT_SPREAD` and Vivado's 1 mW rounding.
        """
        n = size or DEFAULT_DESIGNS
        rng = np.random.default_rng(seed)
        dev_cls = self._device_class()
        part = importlib.import_module(dev_cls.__module__).PARTS[config.part]  # the part's budgets
        rows: dict[str, list[Any]] = {}
        for i in range(n):
            fin, fout, w, a, o, pe, simd, clk, mult, requant = DESIGNS[i % len(DESIGNS)]
            if i >= len(DESIGNS):  # more designs than the table: vary the clock
                clk = clk * (1 + 0.25 * (i // len(DESIGNS)))
            cfg = config.replace({"weight_bits": w, "input_bits": a, "output_bits": o, "pe": pe, "simd": simd,
                                  "clock_mhz": clk, "mult_resource": mult, "requant": requant})
            dev = dev_cls(cfg)
            cost = dev.cost(fin, fout)
            interval = cost["interval_ns"]

            def spread(x: float, s: float) -> float:
                return float(x * math.exp(s * rng.standard_normal()))

            datapath_w = (cost["mac_pj"] + cost["requant_pj"]) / interval * 1e-3
            dsp_w = DSP_SHARE * (1 - CLOCK_SHARE - SIGNAL_SHARE) * datapath_w if mult == "dsp" else 0.0
            values = {
                "clocks_w": spread(CLOCK_SHARE * datapath_w, POWER_SPREAD),
                "signals_w": spread(SIGNAL_SHARE * datapath_w, POWER_SPREAD),
                "logic_w": spread((1 - CLOCK_SHARE - SIGNAL_SHARE) * datapath_w - dsp_w, POWER_SPREAD),
                "dsp_w": spread(dsp_w, POWER_SPREAD),
                "bram_w": spread(cost["bram_pj"] / interval * 1e-3, POWER_SPREAD),
                "io_w": float(rng.uniform(0.001, 0.004)),
                "static_w": spread(cost["fpga_static_mw"] * 1e-3, STATIC_SPREAD),
            }
            values = {k: round(v, 3) for k, v in values.items()}
            values["dynamic_w"] = round(sum(v for k, v in values.items() if k != "static_w"), 3)
            values["total_w"] = round(values["dynamic_w"] + values["static_w"], 3)
            lut = int(round(spread(cost["lut"] * cfg.mac_area_scale, LUT_SPREAD)))
            bram18 = int(round(cost["bram_18k"] * cfg.bram_area_scale))
            name = f"mvau_{fout}x{fin}_w{w}a{a}o{o}_pe{pe}_simd{simd}_{mult}_{requant}"
            design = {
                "design": name, "utilization_report": f"{name}_utilization_routed.rpt",
                "power_report": f"{name}_power_routed.rpt", "in_features": fin, "out_features": fout,
                "weight_bits": w, "input_bits": a, "output_bits": o, "pe": pe, "simd": simd, "clock_mhz": clk,
                "mult_resource": mult, "requant": requant, "part": cfg.part, "lut": lut,
                "ff": int(round(1.3 * lut)), "bram_tiles": bram18 / 2, "dsp": int(cost["dsp"]), **values,
                "lut_available": part.lut, "bram_tiles_available": part.bram18 / 2, "dsp_available": part.dsp,
            }
            for key, value in design.items():
                rows.setdefault(key, []).append(value)
        out: dict[str, np.ndarray] = {}
        for key, values in rows.items():
            out[key] = np.array(values)
        return out

    # ------------------------------------------------------------------ fit
    def fit(self, data: Measurements) -> CalibrationFit:
        """Fit :attr:`fields` (see the class docstring)."""
        self._check_index(data, "measurements")
        m = self._model(data)
        y = _measured(data)
        n = len(data["design"])
        est, tied = _fit(m, y, None)
        rng = np.random.default_rng(0)
        boots = []
        for _ in range(N_BOOT):
            idx = rng.integers(0, n, n)
            boots.append(_fit(m, y, idx, tied=tied)[0])
        uncertainty = {k: float(np.nanstd([b[k] for b in boots], ddof=1)) for k in est}
        if not tied:  # a resample without the requantizer-heavy designs cannot separate the two
            uncertainty.update(_two_factor_se(m, y))
        overrides: dict[str, Any] = {"part": str(np.asarray(data["part"])[0]), **{k: float(v) for k, v in est.items()}}
        overrides["fpga_static_energy_scale"] = 1.0
        notes = [
            "mac_energy_scale and requant_energy_scale " + ("share one factor: the designs' requantizer shares do "
                                                            "not separate them" if tied else "fitted apart"),
            f"LUTs placed / FINN's estimate: {est['mac_area_scale']:.3g} (-> mac_area_scale; the feasibility check "
            "still compares FINN's unscaled LUT count with the part's budget)",
        ]
        if np.any(m["bram18"] > 0):
            notes.append(f"RAMB18s used / FINN's estimate: {est['bram_area_scale']:.3g} (-> bram_area_scale)")
        dsp_model, dsp_meas = m["dsp"], y["dsp"]
        if dsp_model.sum() > 0:
            notes.append(f"DSPs used / FINN's estimate: {dsp_meas.sum() / dsp_model.sum():.3g} (held: no field)")
        io = float(np.asarray(data["io_w"], float).sum() * 1e3)
        other = float(np.sum(y["dynamic"] - y["datapath"] - y["bram"]) * 1e3) - io
        notes.append(f"not priced by the model, left out: I/O {io:.0f} mW and other dynamic power {max(other, 0):.0f} mW "
                     f"summed over the {n} designs")
        return CalibrationFit(device=self.device, overrides=overrides, uncertainty=uncertainty,
                              samples={"designs": n}, notes=tuple(notes))

    # ------------------------------------------------------------------ plot
    def plot(self, data: Measurements, fit: CalibrationFit, path: Path) -> None:
        """Per design, measured against fitted: static power, datapath and BRAM dynamic
        power, LUTs."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        m, y, ov = self._model(data), _measured(data), fit.overrides
        fig = Figure(figsize=(10, 7.5))
        FigureCanvasAgg(fig)
        axes = fig.subplots(2, 2)
        x = np.arange(len(data["design"]))
        ax = axes[0, 0]
        ax.plot(x, y["static"] * 1e3, "o", color="0.4", label="Device Static (report)")
        ax.axhline(ov["static_power_w"] * 1e3, color="C0", label=f"fit: {ov['static_power_w'] * 1e3:.1f} mW")
        ax.set(xlabel="design", ylabel="static power (mW)", title="static power")
        ax.legend(fontsize=7)
        panels = (
            (axes[0, 1], y["datapath"] * 1e3, ov["mac_energy_scale"] * m["mac_mw"] + ov["requant_energy_scale"]
             * m["requant_mw"], "datapath dynamic power (mW)", "Clocks + Signals + Logic + DSPs"),
            (axes[1, 0], y["bram"] * 1e3, ov["bram_energy_scale"] * m["bram_mw"], "Block RAM dynamic power (mW)",
             "Block RAM"),
            (axes[1, 1], y["lut"], ov["mac_area_scale"] * m["lut"], "LUTs", "LUTs placed"),
        )
        for ax, meas, model, label, what in panels:
            ax.plot(model, meas, "o", color="0.4", label=f"{what} (report)")
            hi = max(float(np.max(meas)), float(np.max(model)), 1e-9) * 1.1
            ax.plot([0, hi], [0, hi], "C1", label="fitted model = report")
            ax.set(xlabel=f"fitted model: {label}", ylabel=f"report: {label}", xlim=(0, hi), ylim=(0, hi))
            ax.legend(fontsize=7)
        fig.suptitle(f"fpga_fixed_point calibration: {len(x)} designs on {ov['part']}")
        fig.tight_layout()
        write_figure(fig, Path(path))


def _measured(data: Measurements) -> dict[str, np.ndarray]:
    """The reports' figures the fit uses (W, counts)."""
    g = {k: np.asarray(data[k], float) for k in ("clocks_w", "signals_w", "logic_w", "dsp_w", "bram_w", "static_w",
                                                   "dynamic_w", "lut", "bram_tiles", "dsp")}
    return {"datapath": g["clocks_w"] + g["signals_w"] + g["logic_w"] + g["dsp_w"], "bram": g["bram_w"],
            "static": g["static_w"], "dynamic": g["dynamic_w"], "lut": g["lut"], "bram18": 2 * g["bram_tiles"],
            "dsp": g["dsp"]}


def _ratio(meas: np.ndarray, model: np.ndarray) -> float:
    """Least squares ``meas ~ s * model`` with variance proportional to ``model``: ``sum meas / sum model``."""
    total = float(model.sum())
    return float(meas.sum() / total) if total > 0 else float("nan")


def _two_factor_se(m: dict[str, np.ndarray], y: dict[str, np.ndarray]) -> dict[str, float]:
    """Standard errors of the separate MAC and requantizer factors from the weighted least
    squares covariance (residual variance x (A^T W A)^-1)."""
    mac, rq, dp = m["mac_mw"], m["requant_mw"], y["datapath"] * 1e3
    w = 1 / np.sqrt(np.maximum(mac + rq, 1e-12))
    a = np.stack([mac, rq], 1) * w[:, None]
    coef, *_ = np.linalg.lstsq(a, dp * w, rcond=None)
    resid = dp * w - a @ coef
    cov = np.linalg.inv(a.T @ a) * float(resid @ resid) / max(len(dp) - 2, 1)
    return {"mac_energy_scale": float(math.sqrt(cov[0, 0])), "requant_energy_scale": float(math.sqrt(cov[1, 1]))}


def _fit(m: dict[str, np.ndarray], y: dict[str, np.ndarray], idx: np.ndarray | None,
         tied: bool | None = None) -> tuple[dict[str, float], bool]:
    """Every factor from the designs ``idx`` (None: all); ``tied``: force (True/False) or decide (None)."""
    if idx is None:
        idx = np.arange(len(y["static"]))
    mm = {k: v[idx] for k, v in m.items()}
    yy = {k: v[idx] for k, v in y.items()}
    mac, rq, dp = mm["mac_mw"], mm["requant_mw"], yy["datapath"] * 1e3
    if tied is None:
        tied = True
        if len(idx) >= 4:
            w = 1 / np.sqrt(np.maximum(mac + rq, 1e-12))  # variance ~ power
            a = np.stack([mac, rq], 1) * w[:, None]
            coef, *_ = np.linalg.lstsq(a, dp * w, rcond=None)
            dof = len(idx) - 2
            resid = dp * w - a @ coef
            try:
                cov = np.linalg.inv(a.T @ a) * float(resid @ resid) / dof
                tied = not (coef.min() > 0 and math.sqrt(cov[1, 1]) < 0.25 * coef[1])
            except np.linalg.LinAlgError:
                tied = True
    if tied:
        s_mac = s_rq = _ratio(dp, mac + rq)
    else:
        w = 1 / np.sqrt(np.maximum(mac + rq, 1e-12))
        coef, *_ = np.linalg.lstsq(np.stack([mac, rq], 1) * w[:, None], dp * w, rcond=None)
        s_mac, s_rq = float(coef[0]), float(coef[1])
    out = {
        "static_power_w": float(yy["static"].mean()),
        "mac_energy_scale": s_mac,
        "requant_energy_scale": s_rq,
        "bram_energy_scale": _ratio(yy["bram"] * 1e3, mm["bram_mw"]),
        "mac_area_scale": _ratio(yy["lut"], mm["lut"]),
        "bram_area_scale": _ratio(yy["bram18"], mm["bram18"]),
    }
    return {k: v for k, v in out.items() if math.isfinite(v)}, tied


# ---------------------------------------------------------------------- Vivado text reports
_NUMBER = re.compile(r"[-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?")


def _cells(line: str) -> list[str]:
    """The cells of a ``| a | b |`` table row (raw, with their padding)."""
    return line.strip().strip("|").split("|")


def _value(cell: str) -> float | None:
    """A report number: ``<0.001`` is 0.0005; ``---``, ``NA`` and blanks are None."""
    cell = cell.strip()
    if cell.startswith("<"):
        num = _NUMBER.search(cell)
        return float(num.group()) / 2 if num else None
    num = _NUMBER.match(cell)
    return float(num.group()) if num else None


def _read_report(path: Path, command: str, title: str) -> list[str]:
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        raise MeasurementError(f"{path}: no such report; fix its path in the index (relative to the index file)") from None
    except OSError as exc:
        raise MeasurementError(f"{path}: cannot read it ({exc.strerror}); give a readable text report") from None
    if command not in text and title not in text:
        raise MeasurementError(f"{path}: not a Vivado {command} report (no '{command}' command line nor '{title}' "
                               f"title); write it with `{command} -file {Path(path).name}` on the routed design")
    return text.splitlines()


def _device(lines: list[str], path: Path) -> str:
    for line in lines:
        cells = _cells(line)
        if line.lstrip().startswith("|") and len(cells) == 1 and ":" in cells[0]:
            key, _, value = cells[0].partition(":")
            if key.strip() == "Device":
                return value.strip()
    raise MeasurementError(f"{path}: no '| Device : ...' line in the report header; give the report as Vivado wrote it")


def parse_utilization(path: Path) -> dict[str, Any]:
    """``part``, ``lut``, ``ff``, ``bram_tiles``, ``dsp`` (``Used``) of a ``report_utilization`` report."""
    lines = _read_report(path, "report_utilization", "Utilization Design Information")
    out: dict[str, Any] = {"part": _device(lines, path)}
    used = None
    for line in lines:
        if not line.lstrip().startswith("|"):
            continue
        cells = [c.strip() for c in _cells(line)]
        if "Site Type" in cells and "Used" in cells:
            used = cells.index("Used")
            continue
        name = cells[0].rstrip("*").strip()
        key = _UTIL_ROWS.get(name)
        if key and used is not None and key not in out and used < len(cells):
            value = _value(cells[used])
            if value is not None:
                out[key] = value
    missing = [k for k in ("lut", "ff", "bram_tiles", "dsp") if k not in out]
    if missing:
        names = {"lut": "Slice LUTs", "ff": "Slice Registers", "bram_tiles": "Block RAM Tile", "dsp": "DSPs"}
        raise MeasurementError(f"{path}: no {', '.join(names[k] for k in missing)} row with a Used column; give the "
                               "full report_utilization of the routed design")
    return out


def parse_power(path: Path) -> dict[str, Any]:
    """Summary (``total_w``, ``dynamic_w``, ``static_w``) and on-chip components (``*_w``) of a
    ``report_power`` report, in W."""
    lines = _read_report(path, "report_power", "Power Report")
    out: dict[str, Any] = {"part_power": _device(lines, path)}
    power_col = None
    for line in lines:
        if not line.lstrip().startswith("|"):
            continue
        raw = _cells(line)
        cells = [c.strip() for c in raw]
        if len(cells) == 2 and cells[0] in _SUMMARY_ROWS and _SUMMARY_ROWS[cells[0]] not in out:
            value = _value(cells[1])
            if value is not None:
                out[_SUMMARY_ROWS[cells[0]]] = value
            continue
        if cells and cells[0] == "On-Chip" and "Power (W)" in cells:
            power_col = cells.index("Power (W)")
            continue
        top_level = raw and raw[0].startswith(" ") and not raw[0].startswith("  ")
        key = _POWER_ROWS.get(cells[0]) if cells else None
        if power_col is not None and top_level and key and key not in out and power_col < len(cells):
            value = _value(cells[power_col])
            if value is not None:
                out[key] = value
    missing = [k for k in ("total_w", "dynamic_w", "static_w") if k not in out]
    if missing:
        raise MeasurementError(f"{path}: the summary lacks {', '.join(missing)} (Total On-Chip Power, Dynamic, "
                               "Device Static in W); give the full report_power of the routed design")
    if power_col is None or not any(k in out for k in ("logic_w", "signals_w", "clocks_w")):
        raise MeasurementError(f"{path}: no On-Chip Components table (Clocks, Signals, Slice Logic, Block RAM, DSPs); "
                               "give the full report_power, not only its summary")
    for key in _POWER_ROWS.values():
        out.setdefault(key, 0.0)  # Vivado leaves out the rows of resources a design does not use
    out.pop("part_power")  # the part is read from the utilization report
    return out


def _w(v: float) -> str:
    return "<0.001" if 0 < v < 0.001 else f"{v:.3f}"


def _header(command: str, design: str, part: str, extra: tuple[str, ...] = ()) -> list[str]:
    from codesign import __version__

    rule = "-" * 100
    return [f"Copyright (c) codesign {__version__}: synthetic report in Vivado's layout (FPGACalibrator.generate)",
            rule, f"| Tool Version     : codesign {__version__} (the fpga_fixed_point cost model)",
            f"| Command          : {command} -file {design}_{'utilization' if 'util' in command else 'power'}_routed.rpt",
            f"| Design           : {design}", f"| Device           : {part[2:] if part.startswith('xc') else part}clg400-1",
            "| Design State     : Routed", *extra, rule, ""]


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(str(r[i])) for r in (header, *rows)) for i in range(len(header))]
    rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+"

    def fmt(r: tuple[str, ...]) -> str:
        return "| " + " | ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)
                                 for i, (c, w) in enumerate(zip(r, widths))) + " |"

    return [rule, fmt(header), rule, *[fmt(r) for r in rows], rule]


def render_utilization(row: dict[str, Any]) -> str:
    """A ``report_utilization`` text report of one design (the rows :func:`parse_utilization` reads)."""
    lut, ff, bram, dsp = int(row["lut"]), int(row["ff"]), float(row["bram_tiles"]), int(row["dsp"])
    n_lut, n_bram, n_dsp = (int(row.get("lut_available", 53_200)), float(row.get("bram_tiles_available", 140)),
                            int(row.get("dsp_available", 220)))  # default: the xc7z020's budget
    lines = _header("report_utilization", str(row["design"]), str(row["part"]))
    lines += ["Utilization Design Information", "", "1. Slice Logic", "--------------", ""]
    lines += _table(("Site Type", "Used", "Fixed", "Prohibited", "Available", "Util%"), [
        ("Slice LUTs", str(lut), "0", "0", str(n_lut), f"{100 * lut / n_lut:.2f}"),
        ("  LUT as Logic", str(lut), "0", "0", str(n_lut), f"{100 * lut / n_lut:.2f}"),
        ("Slice Registers", str(ff), "0", "0", str(2 * n_lut), f"{50 * ff / n_lut:.2f}"),
    ])
    lines += ["", "", "3. Memory", "---------", ""]
    lines += _table(("Site Type", "Used", "Fixed", "Prohibited", "Available", "Util%"), [
        ("Block RAM Tile", f"{bram:g}", "0", "0", f"{n_bram:g}", f"{100 * bram / n_bram:.2f}"),
        ("  RAMB36/FIFO*", str(int(bram)), "0", "0", f"{n_bram:g}", f"{100 * int(bram) / n_bram:.2f}"),
        ("  RAMB18", str(int(round(2 * (bram - int(bram))))), "0", "0", f"{2 * n_bram:g}", ""),
    ])
    lines += ["", "", "4. DSP", "------", ""]
    lines += _table(("Site Type", "Used", "Fixed", "Prohibited", "Available", "Util%"),
                    [("DSPs", str(dsp), "0", "0", str(n_dsp), f"{100 * dsp / n_dsp:.2f}")])
    return "\n".join(lines) + "\n"


def render_power(row: dict[str, Any]) -> str:
    """A ``report_power`` text report of one design (the rows :func:`parse_power` reads)."""
    lines = _header("report_power", str(row["design"]), str(row["part"]),
                    ("| Grade            : commercial", "| Process          : typical"))
    lines += ["Power Report", "", "1. Summary", "----------", ""]
    rule = "+" + "-" * 26 + "+" + "-" * 14 + "+"
    lines += [rule] + [f"| {name:<24} | {value:<12} |" for name, value in (
        ("Total On-Chip Power (W)", _w(float(row["total_w"]))), ("Dynamic (W)", _w(float(row["dynamic_w"]))),
        ("Device Static (W)", _w(float(row["static_w"]))), ("Junction Temperature (C)", "26.4"),
        ("Confidence Level", "Low"))] + [rule]
    lines += ["", "", "1.1 On-Chip Components", "----------------------", ""]
    lut, ff = int(row["lut"]), int(row["ff"])
    n_lut, n_bram, n_dsp = (int(row.get("lut_available", 53_200)), float(row.get("bram_tiles_available", 140)),
                            int(row.get("dsp_available", 220)))
    comp = [("Clocks", _w(float(row["clocks_w"])), "1", "---", "---"),
            ("Slice Logic", _w(float(row["logic_w"])), str(lut + ff), "---", "---"),
            ("  LUT as Logic", _w(float(row["logic_w"]) * 0.7), str(lut), str(n_lut), f"{100 * lut / n_lut:.2f}"),
            ("Signals", _w(float(row["signals_w"])), str(2 * lut), "---", "---"),
            ("Block RAM", _w(float(row["bram_w"])), f"{float(row['bram_tiles']):g}", f"{n_bram:g}", "")]
    if int(row["dsp"]) > 0:  # Vivado lists only the resources a design uses
        comp.append(("DSPs", _w(float(row["dsp_w"])), str(int(row["dsp"])), str(n_dsp), ""))
    comp += [("I/O", _w(float(row["io_w"])), "40", "125", ""), ("Static Power", _w(float(row["static_w"])), "", "", ""),
             ("Total", _w(float(row["total_w"])), "", "", "")]
    lines += _table(("On-Chip", "Power (W)", "Used", "Available", "Utilization (%)"), comp)
    return "\n".join(lines) + "\n"
