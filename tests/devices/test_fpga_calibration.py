"""FPGACalibrator (issue 32): Vivado report parsing, parameter recovery from the device's own
cost model, and one-line errors for bad report sets.

Sample count: 6 implemented MVAU designs (the calibrator's default), reports with 5 % spread
per power category, 2 % on the static power, 3 % on LUTs and Vivado's 1 mW rounding.
Tolerances: static power 3 %, energy factors 10 % (MAC), 25 % (requantizer, a small share of
the power in all but one design), 10 % (BRAM), LUT/area factor 6 %, BRAM area exact.
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest

from codesign.devices.calibration import MeasurementError, calibrator_for
from codesign.devices.fpga_calibration import FPGACalibrator, parse_power, parse_utilization
from codesign.devices.fpga_fixed_point import FPGAFixedPointConfig, FPGAFixedPointDevice

CAL = FPGACalibrator()

# Hand-written in the layout of Vivado 2020-2022 reports of a Zynq-7000 part (numbers invented).
UTIL_7SERIES = """\
Copyright 1986-2022 Xilinx, Inc. All Rights Reserved.
-------------------------------------------------------------------------------------------
| Tool Version : Vivado v.2022.2 (lin64) Build 3671981 Fri Oct 14 04:59:54 MDT 2022
| Date         : Wed Apr 19 17:17:32 2023
| Command      : report_utilization -file top_utilization_placed.rpt -pb top_utilization_placed.pb
| Design       : top
| Device       : 7z020clg400-1
| Design State : Fully Placed
-------------------------------------------------------------------------------------------

Utilization Design Information

1. Slice Logic
--------------

+----------------------------+------+-------+------------+-----------+-------+
|          Site Type         | Used | Fixed | Prohibited | Available | Util% |
+----------------------------+------+-------+------------+-----------+-------+
| Slice LUTs*                | 2175 |     0 |          0 |     53200 |  4.09 |
|   LUT as Logic             | 2049 |     0 |          0 |     53200 |  3.85 |
| Slice Registers            | 3218 |     0 |          0 |    106400 |  3.02 |
+----------------------------+------+-------+------------+-----------+-------+

2. Slice Logic Distribution
---------------------------

+--------------------------------------------+------+-------+------------+-----------+-------+
|                  Site Type                 | Used | Fixed | Prohibited | Available | Util% |
+--------------------------------------------+------+-------+------------+-----------+-------+
| Slice LUTs                                 | 9999 |     0 |          0 |     53200 | 18.79 |
+--------------------------------------------+------+-------+------------+-----------+-------+

3. Memory
---------

+-------------------+------+-------+------------+-----------+-------+
|     Site Type     | Used | Fixed | Prohibited | Available | Util% |
+-------------------+------+-------+------------+-----------+-------+
| Block RAM Tile    |  1.5 |     0 |          0 |       140 |  1.07 |
|   RAMB36/FIFO*    |    1 |     0 |          0 |       140 |  0.71 |
|   RAMB18          |    1 |     0 |          0 |       280 |  0.36 |
+-------------------+------+-------+------------+-----------+-------+

4. DSP
------

+-----------+------+-------+------------+-----------+-------+
| Site Type | Used | Fixed | Prohibited | Available | Util% |
+-----------+------+-------+------------+-----------+-------+
| DSPs      |   12 |     0 |          0 |       220 |  5.45 |
+-----------+------+-------+------------+-----------+-------+
"""

# UltraScale+ site names, an older table without the Prohibited column
UTIL_ULTRASCALE = """\
| Command      : report_utilization -file u.rpt
| Device       : xczu3eg-sbva484-1-e
+-------------------+-------+-------+-----------+-------+
|     Site Type     |  Used | Fixed | Available | Util% |
+-------------------+-------+-------+-----------+-------+
| CLB LUTs          | 12000 |     0 |     70560 | 17.01 |
| CLB Registers     | 15000 |     0 |    141120 | 10.63 |
| Block RAM Tile    |    10 |     0 |       216 |  4.63 |
| DSPs              |     0 |     0 |       360 |  0.00 |
+-------------------+-------+-------+-----------+-------+
"""

POWER_7SERIES = """\
| Command          : report_power -file top_power_routed.rpt -pb top_power_summary_routed.pb
| Design           : top
| Device           : xc7z020clg400-1
| Design State     : routed

Power Report

1. Summary
----------

+--------------------------+----------------------------------+
| Total On-Chip Power (W)  | 0.265 (Junction temp exceeded!)  |
| Design Power Budget (W)  | Unspecified*                     |
| Dynamic (W)              | 0.152                            |
| Device Static (W)        | 0.113                            |
| Confidence Level         | Low                              |
+--------------------------+----------------------------------+

1.1 On-Chip Components
----------------------

+--------------------------+-----------+----------+-----------+-----------------+
| On-Chip                  | Power (W) | Used     | Available | Utilization (%) |
+--------------------------+-----------+----------+-----------+-----------------+
| Clocks                   |     0.012 |        3 |       --- |             --- |
| Slice Logic              |    <0.001 |     6473 |       --- |             --- |
|   LUT as Logic           |     0.300 |     2049 |     53200 |            3.85 |
| Signals                  |     0.041 |     4871 |       --- |             --- |
| Block RAM                |     0.090 |      1.5 |       140 |            1.07 |
| I/O                      |     0.008 |        8 |       125 |            6.40 |
| Static Power             |     0.113 |          |           |                 |
| Total                    |     0.265 |          |           |                 |
+--------------------------+-----------+----------+-----------+-----------------+
"""


def test_declared_on_the_device():
    assert type(calibrator_for(FPGAFixedPointDevice)) is FPGACalibrator
    assert CAL.device == FPGAFixedPointDevice.name


def test_parse_vivado_layouts(tmp_path):
    u = tmp_path / "u.rpt"
    u.write_text(UTIL_7SERIES)
    assert parse_utilization(u) == {"part": "7z020clg400-1", "lut": 2175.0, "ff": 3218.0, "bram_tiles": 1.5,
                                    "dsp": 12.0}
    u.write_text(UTIL_ULTRASCALE)
    assert parse_utilization(u) == {"part": "xczu3eg-sbva484-1-e", "lut": 12000.0, "ff": 15000.0,
                                    "bram_tiles": 10.0, "dsp": 0.0}
    p = tmp_path / "p.rpt"
    p.write_text(POWER_7SERIES)
    got = parse_power(p)
    assert got == {"total_w": 0.265, "dynamic_w": 0.152, "static_w": 0.113, "clocks_w": 0.012,
                   "logic_w": 0.0005, "signals_w": 0.041, "bram_w": 0.090, "io_w": 0.008, "dsp_w": 0.0}


TRUE = FPGAFixedPointConfig(static_power_w=0.15, mac_energy_scale=1.6, requant_energy_scale=1.6,
                            bram_energy_scale=3.0, mac_area_scale=0.7, bram_area_scale=1.0)


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fpga_reports")
    CAL.write(CAL.generate(TRUE, seed=0), folder / "designs.csv")
    return folder


@pytest.mark.parametrize("seed", [0, 1])
def test_recovers_static_power_and_factors(tmp_path, seed):
    CAL.write(CAL.generate(TRUE, seed=seed), tmp_path / "designs.csv")
    data = CAL.read(tmp_path)  # the folder holding designs.csv
    fit = CAL.fit(data)
    ov, se = fit.overrides, fit.uncertainty
    assert fit.samples == {"designs": 6}
    assert ov["part"] == "xc7z020" and ov["fpga_static_energy_scale"] == 1.0
    assert ov["static_power_w"] == pytest.approx(0.15, rel=0.03)
    assert ov["mac_energy_scale"] == pytest.approx(1.6, rel=0.10)
    assert ov["requant_energy_scale"] == pytest.approx(1.6, rel=0.25)
    assert ov["bram_energy_scale"] == pytest.approx(3.0, rel=0.10)
    assert ov["mac_area_scale"] == pytest.approx(0.7, rel=0.06)
    assert ov["bram_area_scale"] == pytest.approx(1.0, abs=1e-9)
    for name in ("static_power_w", "mac_energy_scale", "requant_energy_scale", "bram_energy_scale", "mac_area_scale"):
        assert 0 < se[name] < 0.2 * ov[name], name
    # the fit is a valid config whose cost reproduces the true one within the tolerances
    fitted = FPGAFixedPointDevice(FPGAFixedPointConfig(**ov)).cost(64, 64)
    true = FPGAFixedPointDevice(TRUE).cost(64, 64)
    assert fitted["energy_pj"] == pytest.approx(true["energy_pj"], rel=0.1)
    assert fitted["static_power_mw"] == pytest.approx(true["static_power_mw"], rel=0.03)


def test_default_factors_recovered_and_plot(reports, tmp_path):
    data = CAL.read(reports / "designs.csv")
    fit = CAL.fit(data)
    out = tmp_path / "fit.png"
    CAL.plot(data, fit, out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 20_000
    assert any("I/O" in n for n in fit.notes)


# ---------------------------------------------------------------------- bad inputs
def _copy(reports: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "r"
    shutil.copytree(reports, dest)
    return dest


def _rows(index: Path) -> tuple[list[str], list[dict[str, str]]]:
    with index.open() as fh:
        r = csv.DictReader(fh)
        return list(r.fieldnames or []), list(r)


def _rewrite(index: Path, names: list[str], rows: list[dict[str, str]]) -> None:
    with index.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=names, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)


def _error(path: Path) -> str:
    with pytest.raises(MeasurementError) as info:
        CAL.read(path)
    msg = str(info.value)
    assert "\n" not in msg
    return msg


def test_not_a_vivado_report(reports, tmp_path):
    folder = _copy(reports, tmp_path)
    names, rows = _rows(folder / "designs.csv")
    bad = folder / rows[2]["power_report"]
    bad.write_text("Total power: about half a watt\n")
    msg = _error(folder)
    assert str(bad) in msg and "not a Vivado report_power report" in msg


def test_summary_only_power_report(reports, tmp_path):
    folder = _copy(reports, tmp_path)
    names, rows = _rows(folder / "designs.csv")
    report = folder / rows[0]["power_report"]
    report.write_text(report.read_text().split("1.1 On-Chip Components")[0])
    assert "On-Chip Components" in _error(folder)


def test_missing_report_file_and_column(reports, tmp_path):
    folder = _copy(reports, tmp_path)
    index = folder / "designs.csv"
    names, rows = _rows(index)
    (folder / rows[1]["utilization_report"]).unlink()
    assert "no such report" in _error(index)
    _rewrite(index, [n for n in names if n != "clock_mhz"], rows)
    msg = _error(index)
    assert str(index) in msg and "missing column clock_mhz" in msg


def test_too_few_designs(reports, tmp_path):
    folder = _copy(reports, tmp_path)
    names, rows = _rows(folder / "designs.csv")
    _rewrite(folder / "designs.csv", names, rows[:2])
    assert "too few" in _error(folder)


def test_wrong_units_and_nan(reports, tmp_path):
    folder = _copy(reports, tmp_path)
    index = folder / "designs.csv"
    names, rows = _rows(index)
    _rewrite(index, names, [{**r, "clock_mhz": str(float(r["clock_mhz"]) / 1000)} for r in rows])
    assert "GHz" in _error(index)
    _rewrite(index, names, [{**r, "clock_mhz": "nan"} if i == 3 else r for i, r in enumerate(rows)])
    msg = _error(index)
    assert "row 5" in msg and "clock_mhz" in msg


def test_unknown_and_mixed_parts(reports, tmp_path):
    folder = _copy(reports, tmp_path)
    names, rows = _rows(folder / "designs.csv")
    for i, r in enumerate(rows):
        p = folder / r["utilization_report"]
        p.write_text(p.read_text().replace("7z020clg400-1", "xcku040-ffva1156-2-e" if i == 0 else "7z020clg400-1"))
    assert "several parts" in _error(folder)
    for r in rows:
        p = folder / r["utilization_report"]
        p.write_text(p.read_text().replace("7z020clg400-1", "xcku040-ffva1156-2-e"))
    assert "no budget for" in _error(folder)


def test_generated_reports_parse_as_vivado_layout(reports):
    names, rows = _rows(reports / "designs.csv")
    util = parse_utilization(reports / rows[0]["utilization_report"])
    power = parse_power(reports / rows[0]["power_report"])
    assert util["part"] == "7z020clg400-1" and util["lut"] > 1000
    parts = sum(power[k] for k in ("clocks_w", "logic_w", "signals_w", "bram_w", "dsp_w", "io_w"))
    assert parts == pytest.approx(power["dynamic_w"], abs=0.004)
    assert np.isclose(power["total_w"], power["dynamic_w"] + power["static_w"], atol=0.0015)


def test_requantizer_factor_is_shared_without_designs_that_separate_it(tmp_path):
    # the first five designs have requantizer shares of 0.1-5 %: one logic factor for both
    CAL.write(CAL.generate(TRUE, seed=0, size=5), tmp_path / "designs.csv")
    fit = CAL.fit(CAL.read(tmp_path))
    assert fit.overrides["requant_energy_scale"] == fit.overrides["mac_energy_scale"]
    assert fit.overrides["mac_energy_scale"] == pytest.approx(1.6, rel=0.10)
    assert any("share one factor" in n for n in fit.notes)


def test_other_part_budgets_in_generated_reports(tmp_path):
    cfg = FPGAFixedPointConfig(part="xczu3eg", static_power_w=0.3)
    CAL.write(CAL.generate(cfg, seed=0, size=3), tmp_path / "designs.csv")
    data = CAL.read(tmp_path)
    assert set(data["part"]) == {"xczu3eg"}
    assert "70560" in (tmp_path / str(data["utilization_report"][0])).read_text()
    assert CAL.fit(data).overrides["static_power_w"] == pytest.approx(0.3, rel=0.03)
