"""The crossbar calibrator (issue 32): parameter recovery from the model's own measurements, bad files.

Recovery runs at the realistic size the calibrator states: 1000 devices read at 1 s, 1 h and 1 day
after programming, 8 repeated reads each (24000 reads), within ``CrossbarCalibrator.tolerances``.
"""

from __future__ import annotations

import numpy as np
import pytest

from codesign.devices import create_device, get_device_class
from codesign.devices import crossbar_calibration as cc
from codesign.devices.calibration import MeasurementError, calibrator_for
from codesign.devices.crossbar_calibration import CrossbarCalibrator

CLS = get_device_class("analog_crossbar")


@pytest.fixture
def cal(monkeypatch):
    monkeypatch.setattr(cc, "BOOTSTRAP", 8)  # the recovery does not depend on the standard errors
    return CrossbarCalibrator()


def test_declared_on_the_device():
    assert isinstance(calibrator_for(CLS), CrossbarCalibrator)
    assert calibrator_for(get_device_class("ideal")) is None


@pytest.mark.parametrize("name, overrides, preset", [
    ("default PCM", {}, None),
    ("perturbed", CrossbarCalibrator.perturbed, None),
    ("isaac ReRAM", {}, "isaac"),
    ("hermes", {}, "ibm_hermes"),
    ("stuck and noisy", {"stuck_off_fraction": 0.05, "stuck_on_fraction": 0.02, "prog_noise": 0.02,
                         "read_noise": 0.004, "w_noise": 0.002}, None),
])
@pytest.mark.parametrize("seed", [0, 7])
def test_recovers_the_parameters_it_was_generated_with(cal, name, overrides, preset, seed):
    config = create_device("analog_crossbar", overrides, preset=preset).config
    data = cal.generate(config, seed=seed)
    assert len(data["g_read_uS"]) == 1000 * 3 * 8
    fit = cal.fit(data)
    assert cal.recovery_errors(fit, config) == []
    CLS.Config().replace(fit.overrides)  # the device accepts the fit
    assert fit.samples == {"devices": 1000, "times": 3, "reads": 24000}


def test_drift_and_fit_values_against_the_truth(cal):
    """The numbers behind the tolerances: the perturbed constant drift and the 1/f noise."""
    config = CLS.Config().replace(cal.perturbed)
    fit = cal.fit(cal.generate(config, seed=3))
    assert fit.overrides["drift_model"] == "constant"
    assert fit.overrides["drift_nu"] == pytest.approx(0.03, abs=0.002)
    assert fit.overrides["drift_nu_std"] == pytest.approx(0.01, abs=0.002)
    assert fit.overrides["read_noise"] == pytest.approx(0.015, rel=0.03)
    assert fit.overrides["g_max_us"] == 40.0
    # a standard error for every fitted number, and a few times smaller than the value
    assert 0 < fit.uncertainty["prog_noise"] < 0.2 * fit.overrides["prog_noise"]
    assert any("bootstrap over devices" in n for n in fit.notes)


def test_standard_errors_cover_seed_to_seed_spread(monkeypatch):
    """The bootstrap's standard error of prog_noise is of the size of its spread over chips."""
    monkeypatch.setattr(cc, "BOOTSTRAP", 40)
    cal = CrossbarCalibrator()
    fits = [cal.fit(cal.generate(CLS.Config(), seed=s)) for s in range(4)]
    spread = np.std([f.overrides["prog_noise"] for f in fits], ddof=1)
    se = np.mean([f.uncertainty["prog_noise"] for f in fits])
    assert 0.3 * spread < se < 4 * spread + 1e-4


def test_one_read_time_holds_the_drift(cal):
    data = cal.generate(CLS.Config(), seed=1)
    one = {k: v[data["t_s"] == 1.0] for k, v in data.items()}
    fit = cal.fit(one)
    assert "drift_model" not in fit.overrides and any("one read time" in n for n in fit.notes)
    assert fit.overrides["prog_noise"] == pytest.approx(0.04, rel=0.15)


def test_file_round_trip_and_plot(cal, tmp_path):
    data = cal.generate(CLS.Config(), seed=2, size=300)
    cal.write(data, tmp_path / "m.csv")
    back = cal.read(tmp_path / "m.csv")
    assert np.allclose(back["g_read_uS"], data["g_read_uS"], rtol=1e-5, atol=1e-6)
    fit = cal.fit(back)
    cal.plot(back, fit, tmp_path / "m.png")
    assert (tmp_path / "m.png").read_bytes()[:4] == b"\x89PNG"


def _csv(tmp_path, data, name="bad.csv"):
    path = tmp_path / name
    CrossbarCalibrator().write(data, path)
    return path


@pytest.fixture
def small():
    return CrossbarCalibrator().generate(CLS.Config(), seed=0, size=100, reads=2)


@pytest.mark.parametrize("mutate, message", [
    (lambda d: {k: v for k, v in d.items() if k != "g_read_uS"}, "missing column g_read_uS"),
    (lambda d: {**d, "g_read_uS": np.where(np.arange(len(d["g_read_uS"])) == 5, np.nan, d["g_read_uS"])},
     "every measurement must be finite"),
    (lambda d: {**d, "g_target_uS": d["g_target_uS"] * 1e-6, "g_read_uS": d["g_read_uS"] * 1e-6},
     "look like siemens"),
    (lambda d: {**d, "g_target_uS": d["g_target_uS"] * 1e3, "g_read_uS": d["g_read_uS"] * 1e3}, "nanosiemens"),
    (lambda d: {**d, "g_read_uS": d["g_read_uS"] * 1e6}, "give the reads in microsiemens"),
    (lambda d: {k: v[d["device_id"] < 40] for k, v in d.items()}, "40 devices; the fit needs at least 50"),
    (lambda d: {k: v[d["read_index"] == 0] for k, v in d.items()}, "at least 2 repeated reads"),
    (lambda d: {**d, "t_s": -d["t_s"]}, "is negative"),
    (lambda d: {**d, "g_target_uS": np.where(d["t_s"] > 10, d["g_target_uS"] + 1, d["g_target_uS"])},
     "give one g_target_uS per device_id"),
])
def test_bad_files_get_one_line_errors(tmp_path, small, mutate, message):
    path = _csv(tmp_path, mutate(small))
    with pytest.raises(MeasurementError) as exc:
        CrossbarCalibrator().read(path)
    assert message in str(exc.value) and "\n" not in str(exc.value)


def test_not_a_number_and_missing_file(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("device_id,g_target_uS,t_s,g_read_uS\n1,abc,1,2\n" * 1)
    with pytest.raises(MeasurementError, match="data row"):
        CrossbarCalibrator().read(path)
    path.write_text("device_id,g_target_uS,t_s,g_read_uS\n" + "1,abc,1,2\n" * 300)
    with pytest.raises(MeasurementError, match="'abc', not a number"):
        CrossbarCalibrator().read(path)
    with pytest.raises(MeasurementError, match="no such measurement file"):
        CrossbarCalibrator().read(tmp_path / "none.csv")
