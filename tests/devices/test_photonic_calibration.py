"""PhotonicMZICalibrator (issue 32): parameter recovery from the device's own noise model, and
one-line errors for bad measurement files.

Sample count: one 16-mode Clements mesh (120 MZIs) read 20 times, theta and phi of every MZI
(2400 rows), the count of a realistic per-MZI characterisation. Tolerances (set from 40
simulated chips, see the calibrator's docstring for the spread): phase noise 5 %, crosstalk
+-0.025 absolute (spread 0.011), coupler error 15 %, loss per MZI +-0.02 dB; the DAC grid exact.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from codesign.devices.calibration import MeasurementError, calibrator_for
from codesign.devices.photonic_calibration import PhotonicMZICalibrator
from codesign.devices.photonic_mzi import PhotonicMZIConfig, PhotonicMZIDevice

CAL = PhotonicMZICalibrator()


def _roundtrip(cfg: PhotonicMZIConfig, tmp_path: Path, seed: int = 0):
    path = tmp_path / "mzi.csv"
    CAL.write(CAL.generate(cfg, seed=seed), path)
    data = CAL.read(path)
    return data, CAL.fit(data)


def test_declared_on_the_device():
    assert type(calibrator_for(PhotonicMZIDevice)) is PhotonicMZICalibrator
    assert CAL.device == PhotonicMZIDevice.name
    assert {c.name for c in CAL.columns if c.required} >= {"theta_set_rad", "theta_meas_rad", "read"}


@pytest.mark.parametrize("seed", [0, 1])
def test_recovers_the_default_chip(tmp_path, seed):
    cfg = PhotonicMZIConfig(block_size=16)
    data, fit = _roundtrip(cfg, tmp_path, seed)
    ov, se = fit.overrides, fit.uncertainty
    assert fit.samples["mzis"] == 120 and fit.samples["reads"] == 20
    assert ov["phase_bits"] == 8 and ov["phase_quantization"] == "phase"
    assert ov["phase_noise_rad"] == pytest.approx(cfg.phase_noise_rad, rel=0.05)
    assert abs(ov["thermal_crosstalk"] - cfg.thermal_crosstalk) < 0.025
    assert ov["crosstalk_calibrated"] is True
    assert ov["bs_error"] == pytest.approx(cfg.bs_error, rel=0.15)
    assert ov["insertion_loss_db"] == pytest.approx(cfg.insertion_loss_db, abs=0.02)
    for name in ("phase_noise_rad", "thermal_crosstalk", "bs_error", "insertion_loss_db"):
        assert 0 < se[name] < 0.3 * ov[name], name
    # the fitted overrides are a valid config
    PhotonicMZIConfig(**ov)


def test_recovers_other_parameters_and_a_voltage_dac(tmp_path):
    cfg = PhotonicMZIConfig(block_size=12, phase_noise_rad=0.03, thermal_crosstalk=0.12, bs_error=0.02,
                            insertion_loss_db=0.8, phase_bits=6, phase_quantization="voltage")
    _, fit = _roundtrip(cfg, tmp_path, seed=3)
    ov = fit.overrides
    assert fit.samples["mzis"] == 132  # two 12-mode meshes: whole meshes, >= 120 MZIs
    assert (ov["phase_bits"], ov["phase_quantization"]) == (6, "voltage")
    assert ov["phase_noise_rad"] == pytest.approx(0.03, rel=0.05)
    assert abs(ov["thermal_crosstalk"] - 0.12) < 0.025
    assert ov["bs_error"] == pytest.approx(0.02, rel=0.15)
    assert ov["insertion_loss_db"] == pytest.approx(0.8, abs=0.02)


def test_uncalibrated_crosstalk_is_detected(tmp_path):
    cfg = PhotonicMZIConfig(block_size=16, crosstalk_calibrated=False, thermal_crosstalk=0.03)
    _, fit = _roundtrip(cfg, tmp_path)
    assert fit.overrides["crosstalk_calibrated"] is False
    assert fit.overrides["thermal_crosstalk"] == pytest.approx(0.03, abs=0.003)
    assert fit.overrides["phase_noise_rad"] == pytest.approx(0.01, rel=0.05)


def test_no_crosstalk_no_coupler_error(tmp_path):
    cfg = PhotonicMZIConfig(block_size=16, thermal_crosstalk=0.0, bs_error=0.0)
    _, fit = _roundtrip(cfg, tmp_path)
    assert fit.overrides["thermal_crosstalk"] < 0.025
    assert fit.overrides["bs_error"] < 0.002  # the 60 dB extinction floor alone


def test_optional_columns_are_held(tmp_path):
    data = dict(CAL.generate(PhotonicMZIConfig(block_size=16)))
    for name in ("phi_set_rad", "phi_meas_rad", "er_bar_db", "er_cross_db", "loss_db"):
        del data[name]
    path = tmp_path / "theta_only.csv"
    CAL.write(data, path)
    fit = CAL.fit(CAL.read(path))
    assert "bs_error" not in fit.overrides and "insertion_loss_db" not in fit.overrides
    assert any("bs_error" in n and "insertion_loss_db" in n for n in fit.notes)
    assert fit.overrides["phase_noise_rad"] == pytest.approx(0.01, rel=0.05)


def test_plot(tmp_path):
    data, fit = _roundtrip(PhotonicMZIConfig(block_size=16), tmp_path)
    out = tmp_path / "fit.png"
    CAL.plot(data, fit, out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 20_000


# ---------------------------------------------------------------------- bad files
@pytest.fixture(scope="module")
def rows():
    data = CAL.generate(PhotonicMZIConfig(block_size=8), seed=0, size=28)  # one 8-mode mesh: 28 MZIs x 20 reads
    names = [c.name for c in CAL.columns]
    return names, [{n: data[n][i] for n in names} for i in range(len(data["read"]))]


def _write(path: Path, names, rows) -> Path:
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=names, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow(r)
    return path


def _error(path: Path) -> str:
    with pytest.raises(MeasurementError) as info:
        CAL.read(path)
    msg = str(info.value)
    assert "\n" not in msg and str(path) in msg
    return msg


def test_missing_column(tmp_path, rows):
    names, data = rows
    msg = _error(_write(tmp_path / "m.csv", [n for n in names if n != "theta_meas_rad"], data))
    assert "missing column theta_meas_rad" in msg


def test_degrees_instead_of_radians(tmp_path, rows):
    names, data = rows
    deg = [{**r, "theta_meas_rad": np.degrees(r["theta_meas_rad"]), "theta_set_rad": np.degrees(r["theta_set_rad"])}
           for r in data]
    assert "degrees" in _error(_write(tmp_path / "d.csv", names, deg))


def test_nan(tmp_path, rows):
    names, data = rows
    bad = [dict(r) for r in data]
    bad[5]["loss_db"] = float("nan")
    msg = _error(_write(tmp_path / "n.csv", names, bad))
    assert "row 7" in msg and "loss_db" in msg


def test_not_a_number_and_empty_cell(tmp_path, rows):
    names, data = rows
    bad = [dict(r) for r in data]
    bad[0]["theta_set_rad"] = "1,57"
    assert "not a number" in _error(_write(tmp_path / "x.csv", names, bad))
    bad[0]["theta_set_rad"] = ""
    assert "empty" in _error(_write(tmp_path / "e.csv", names, bad))


def test_too_few_mzis_and_reads(tmp_path, rows):
    names, data = rows
    few = [r for r in data if r["mesh"] == 0 and r["mzi_column"] < 2]  # 7 MZIs
    assert "too few" in _error(_write(tmp_path / "few.csv", names, few))
    once = [r for r in data if r["read"] < 2]
    assert "at least 3" in _error(_write(tmp_path / "once.csv", names, once))


def test_wrong_loss_and_extinction_units(tmp_path, rows):
    names, data = rows
    neg = [{**r, "loss_db": -r["loss_db"] - 1} for r in data]
    assert "positive" in _error(_write(tmp_path / "neg.csv", names, neg))
    lin = [{**r, "er_bar_db": 10 ** (r["er_bar_db"] / 10)} for r in data]
    assert "linear" in _error(_write(tmp_path / "lin.csv", names, lin))


def test_incomplete_pair_and_duplicates(tmp_path, rows):
    names, data = rows
    assert "without phi_meas_rad" in _error(_write(tmp_path / "p.csv", [n for n in names if n != "phi_meas_rad"], data))
    assert "twice" in _error(_write(tmp_path / "dup.csv", names, data + data[:1]))


def test_missing_file(tmp_path):
    assert "no such measurement file" in _error(tmp_path / "nothing.csv")


def test_mzis_missing_some_reads(tmp_path):
    data = CAL.generate(PhotonicMZIConfig(block_size=16), seed=2)
    keep = np.ones(len(data["read"]), bool)
    keep[np.random.default_rng(0).choice(len(keep), 200, replace=False)] = False  # ~8 % of rows lost
    path = tmp_path / "gaps.csv"
    CAL.write({k: np.asarray(v)[keep] for k, v in data.items()}, path)
    fit = CAL.fit(CAL.read(path))
    assert fit.overrides["phase_noise_rad"] == pytest.approx(0.01, rel=0.05)
    assert abs(fit.overrides["thermal_crosstalk"] - 0.05) < 0.025
