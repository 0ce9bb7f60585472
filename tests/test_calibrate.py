"""``codesign calibrate`` and ``--preset-file`` (issue 32): the command, preset files in distill and search."""

from __future__ import annotations

import json
import shutil
import tomllib

import pytest

from codesign import cli
from codesign.devices import crossbar_calibration as cc
from codesign.distill import DistillConfig
from codesign.errors import ConfigError
from codesign.search.config import SearchConfig
from codesign.search.runner import identity


@pytest.fixture
def measured(tmp_path, monkeypatch):
    """A synthetic measurement file of 200 devices, as the worked example is made."""
    monkeypatch.setattr(cc, "BOOTSTRAP", 10)
    path = tmp_path / "m.csv"
    assert cli.main(["calibrate", "analog_crossbar", "--generate", str(path), "--size", "200", "--seed", "3",
                     "--set", "prog_noise=0.05"]) == 0
    return path


def test_calibrate_writes_preset_and_plot(measured, tmp_path, capsys):
    capsys.readouterr()
    out = tmp_path / "chip.toml"
    assert cli.main(["calibrate", "analog_crossbar", str(measured), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "prog_noise" in text and "+-" in text and f"--preset-file {out}" in text
    doc = tomllib.loads(out.read_text())
    assert doc["device"] == "analog_crossbar" and doc["format"] == "codesign-preset/1"
    assert doc["overrides"]["prog_noise"] == pytest.approx(0.05, rel=0.2)
    assert doc["source"]["file"] == "m.csv" and len(doc["source"]["sha256"]) == 64
    assert doc["fit"]["samples"]["devices"] == 200 and doc["fit"]["uncertainty"]["prog_noise"] > 0
    assert doc["codesign_version"]
    assert (tmp_path / "chip.png").read_bytes()[:4] == b"\x89PNG"
    assert cli.main(["calibrate", "analog_crossbar", str(measured), "--out", str(tmp_path / "j.toml"), "--json",
                     "--no-plot"]) == 0
    js = json.loads(capsys.readouterr().out)
    assert js["plot"] is None and js["overrides"]["g_max_us"] == 25.0


@pytest.mark.parametrize("args, message", [
    (["calibrate", "ideal", "x.csv", "--out", "p.toml"], "declares no calibrator; devices with one: analog_crossbar"),
    (["calibrate", "analog_crossbar", "--out", "p.toml"], "give one of"),
    (["calibrate", "analog_crossbar", "x.csv"], "give --out"),
    (["calibrate", "analog_crossbar", "x.csv", "--out", "p.txt"], "ending in .toml"),
    (["calibrate", "analog_crossbar", "x.csv", "--out", "p.toml", "--preset", "isaac"], "a fit takes none"),
    (["calibrate", "analog_crossbar", "--write-preset", "nope", "--out", "p.toml"], "its presets: isaac"),
    (["calibrate", "analog_crossbar", "nofile.csv", "--out", "p.toml"], "no such measurement file"),
])
def test_calibrate_errors_are_one_line(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_write_preset_and_preset_file_rules(tmp_path, capsys):
    path = tmp_path / "hermes.toml"
    assert cli.main(["calibrate", "analog_crossbar", "--write-preset", "ibm_hermes", "--out", str(path)]) == 0
    cfg = DistillConfig(device="analog_crossbar", device_preset_file=str(path), device_overrides={"adc_bits": 6})
    assert dict(cfg.device_preset_file_overrides)["tile_rows"] == 256
    assert cfg.device_config_overrides()["adc_bits"] == 6  # --set after the file
    # a config rebuilt from its dict (a search's trial) does not need the file any more
    saved = cfg.to_dict()
    path.unlink()
    assert DistillConfig.from_dict(saved) == cfg
    with pytest.raises(ConfigError, match="not both"):
        DistillConfig(device="analog_crossbar", device_preset="isaac", device_preset_file=str(path))
    with pytest.raises(ConfigError, match="give --device NAME"):
        DistillConfig(device_preset_file=str(path))
    with pytest.raises(ConfigError, match="no such file"):
        DistillConfig(device="analog_crossbar", device_preset_file=str(path))


def test_search_identity_is_the_preset_files_content(tmp_path):
    a = tmp_path / "a.toml"
    assert cli.main(["calibrate", "analog_crossbar", "--write-preset", "isaac", "--out", str(a)]) == 0
    b = tmp_path / "b.toml"
    shutil.copy(a, b)
    c = tmp_path / "c.toml"
    c.write_text(a.read_text().replace("w_noise = 0.01", "w_noise = 0.02"))
    ids = [identity(SearchConfig(device="analog_crossbar", device_preset_file=str(p))) for p in (a, b, c)]
    assert ids[0] == ids[1]  # another path, the same content
    assert ids[0]["preset_file"] != ids[2]["preset_file"] and ids[0] != ids[2]
    assert identity(SearchConfig(device="analog_crossbar"))["preset_file"] is None
    cfg = SearchConfig(device="analog_crossbar", device_preset_file=str(c))
    assert dict(cfg.trial_base().device_preset_file_overrides)["w_noise"] == 0.02
    assert SearchConfig.from_options(cfg.options()) == cfg


@pytest.mark.slow
def test_calibrate_then_distill_with_the_preset_file(measured, tmp_path, digits_teacher, capsys):
    out = tmp_path / "chip.toml"
    assert cli.main(["calibrate", "analog_crossbar", str(measured), "--out", str(out), "--no-plot"]) == 0
    fitted = tomllib.loads(out.read_text())["overrides"]
    capsys.readouterr()
    assert cli.main(["distill", "--pca-rank", "8", "--device", "analog_crossbar", "--preset-file", str(out),
                     "--set", "adc_bits=6", "--hw-draws", "2", "--out", str(tmp_path / "run"), "--json"]) == 0
    m = json.loads(capsys.readouterr().out)
    assert m["device_config"]["prog_noise"] == fitted["prog_noise"]
    assert m["device_config"]["read_noise"] == fitted["read_noise"] and m["device_config"]["adc_bits"] == 6
    assert m["device_preset_file"]["file"] == "chip.toml" and len(m["device_preset_file"]["digest"]) == 64
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["device_preset_file"] == m["device_preset_file"]
    assert 'preset_file = "' in (tmp_path / "run" / "config.toml").read_text()
    assert cli.main(["distill", "--device", "analog_crossbar", "--preset", "isaac", "--preset-file", str(out)]) == 2
    assert "not both" in capsys.readouterr().err
    # the export manifest records the preset file too
    assert cli.main(["export", str(tmp_path / "run" / "student.pt"), "--out", str(tmp_path / "exp")]) == 0
    manifest = json.loads((tmp_path / "exp" / "export.json").read_text())
    assert manifest["device"]["preset_file"]["digest"] == m["device_preset_file"]["digest"]


def test_robustness_tables_take_preset_files(experiment_script, tmp_path):
    robustness = experiment_script("robustness.py")
    from codesign.devices.preset_file import read_preset_file

    path = tmp_path / "chip.toml"
    assert cli.main(["calibrate", "analog_crossbar", "--write-preset", "isaac", "--out", str(path)]) == 0
    rows = robustness.chips("analog_crossbar", [read_preset_file(path)])
    assert rows[0] == ("(defaults)", None, {}) and rows[-1][0] == "chip.toml"
    assert rows[-1][2]["w_noise"] == 0.01 and len(robustness.chips("photonic_mzi", [read_preset_file(path)])) == \
        1 + len(robustness.get_device_class("photonic_mzi").presets())


EXAMPLES = "experiments/calibration"


def test_generate_photonic_csv_and_fpga_report_folder(tmp_path, capsys):
    csv = tmp_path / "mzis.csv"
    assert cli.main(["calibrate", "photonic_mzi", "--generate", str(csv), "--size", "28", "--set", "block_size=8",
                     "--set", "phase_noise_rad=0.02"]) == 0
    assert csv.read_text().startswith("mesh,mzi_column,mzi_mode,read,theta_set_rad")
    assert cli.main(["calibrate", "photonic_mzi", str(csv), "--out", str(tmp_path / "p.toml"), "--no-plot"]) == 0
    assert tomllib.loads((tmp_path / "p.toml").read_text())["overrides"]["phase_noise_rad"] == \
        pytest.approx(0.02, rel=0.1)
    folder = tmp_path / "reports"
    assert cli.main(["calibrate", "fpga_fixed_point", "--generate", str(folder), "--set", "static_power_w=0.2"]) == 0
    assert f"wrote {folder}" in capsys.readouterr().out
    assert (folder / "designs.csv").is_file() and len(list(folder.glob("*_power_routed.rpt"))) == 6
    assert cli.main(["calibrate", "fpga_fixed_point", str(folder), "--out", str(tmp_path / "f.toml"), "--no-plot"]) == 0
    doc = tomllib.loads((tmp_path / "f.toml").read_text())
    assert doc["overrides"]["static_power_w"] == pytest.approx(0.2, rel=0.03)
    # the source digest covers the reports the index names, not only the index
    report = next(folder.glob("*_power_routed.rpt"))
    report.write_text(report.read_text().replace("Junction Temperature", "Junction  Temperature"))
    assert cli.main(["calibrate", "fpga_fixed_point", str(folder / "designs.csv"), "--out", str(tmp_path / "g.toml"),
                     "--no-plot"]) == 0
    assert tomllib.loads((tmp_path / "g.toml").read_text())["source"]["sha256"] != doc["source"]["sha256"]


@pytest.mark.slow
@pytest.mark.parametrize("device, measurements, truth", [
    ("photonic_mzi", "photonic_measurements.csv", {"phase_noise_rad": (0.015, 0.05), "bs_error": (0.008, 0.15)}),
    ("fpga_fixed_point", "fpga_reports/designs.csv", {"static_power_w": (0.15, 0.03), "mac_energy_scale": (1.6, 0.1)}),
])
def test_calibrate_shipped_example_then_distill(device, measurements, truth, tmp_path, digits_teacher, capsys):
    from pathlib import Path

    src = Path(__file__).resolve().parent.parent / EXAMPLES / measurements
    out = tmp_path / "chip.toml"
    assert cli.main(["calibrate", device, str(src), "--out", str(out)]) == 0
    assert (tmp_path / "chip.png").read_bytes()[:4] == b"\x89PNG"
    fitted = tomllib.loads(out.read_text())["overrides"]
    for name, (value, rel) in truth.items():  # the truth make_photonic_fpga_examples.py drew them with
        assert fitted[name] == pytest.approx(value, rel=rel), name
    capsys.readouterr()
    assert cli.main(["distill", "--pca-rank", "8", "--device", device, "--preset-file", str(out), "--hw-draws", "2",
                     "--out", str(tmp_path / "run"), "--json"]) == 0
    m = json.loads(capsys.readouterr().out)
    for name in truth:
        assert m["device_config"][name] == fitted[name]
    assert m["device_preset_file"]["file"] == "chip.toml" and m["test_accuracy"] > 0.5


def test_codesign_devices_names_the_calibrator():
    from codesign.devices.describe import describe_device, device_json

    info = device_json("analog_crossbar")["calibrator"]
    assert [c["name"] for c in info["columns"]] == ["device_id", "g_target_uS", "t_s", "read_index", "g_read_uS"]
    assert "prog_noise" in info["fields"] and device_json("ideal")["calibrator"] is None
    assert "codesign calibrate analog_crossbar MEASUREMENTS" in describe_device("analog_crossbar")
