"""The crossbar's native export (``crossbar-conductance/2``) round-trips bit for bit from its files.

A layer is exported with ``AnalogCrossbarDevice.export_layer`` (NPZ + JSON + CSV) and rebuilt
with ``load_layer_export`` from the conductance levels, column scales and ADC range alone (no
K): the nominal effective matrix and the outputs of seeded hardware instances (stuck devices,
programming noise, drift, 1/f noise, IR drop, output noise) must be identical at the default
read time and a year later, for several tile layouts, both weight scalings, every preset and
digits students (post hoc and hardware-aware). The CSV and the microsiemens maps must say the
same as the levels; damaged, truncated, wrong-version, missing and edited files give one-line
errors.
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from codesign.devices import create_device
from codesign.devices.analog_crossbar import AnalogCrossbarDevice
from codesign.devices.crossbar_export import ARRAYS, CSV_COLUMNS, FORMAT, MANIFEST, TABLE
from codesign.errors import ConfigError

IN, OUT = 40, 10
YEAR_S = 365 * 86400.0


def _programmed(device, seed=0, dtype=torch.float32):
    layer = device.layer(IN, OUT).to(dtype)
    gen = torch.Generator().manual_seed(seed)
    layer.load_matrix(torch.randn(OUT, IN, generator=gen, dtype=torch.float64))
    layer.eval()
    x = torch.randn(64, IN, generator=gen, dtype=torch.float64).to(dtype)
    layer(x)  # the first read calibrates the ADC range
    return layer, x


def _round_trip(device, layer, folder):
    folder.mkdir(exist_ok=True)
    section = json.loads(json.dumps(device.export_layer(layer, folder)))  # as read back from export.json
    return device.load_layer_export(folder, section), section


def _assert_identical(layer, loaded, x, seeds=(0, 1, 7), times=(None, YEAR_S)):
    a, b = layer.effective_matrix(), loaded.effective_matrix()
    assert torch.equal(a, b), f"nominal effective matrix differs by {float((a - b).abs().max()):.3g}"
    for t in times:
        for seed in seeds:
            layer.draw_instance(seed, t_inference_s=t)
            loaded.draw_instance(seed, t_inference_s=t)
            assert torch.equal(layer(x), loaded(x)), f"instance {seed} at t={t} evaluates differently"
    layer.clear_instance()
    loaded.clear_instance()


CONFIGS = {
    "default-one-tile": {"stuck_off_fraction": 0.02, "stuck_on_fraction": 0.01},
    "tiled-6x4": {"tile_rows": 16, "tile_cols": 4, "stuck_off_fraction": 0.02, "stuck_on_fraction": 0.01},
    "layer-scaling-constant-drift": {"tile_rows": 32, "weight_scaling": "layer", "drift_model": "constant",
                                     "bits_per_cell": 6, "drift_compensation": False},
    "bit-serial-1bit-cells": {"bits_per_cell": 1, "input_encoding": "bit_serial", "tile_cols": 3},
    # issue 27: sliced weights over two pairs with unequal significance, shared ADC, per-column
    # compensation, calibrated input range, per-read weight noise
    "sliced-dual-pair-calibrated": {"bits_per_cell": 2, "weight_slices": 3, "devices_per_polarity": 2,
                                    "tile_cols": 7, "tile_rows": 16, "adc_share": 4,
                                    "drift_compensation_type": "column", "input_range": "calibrated",
                                    "w_noise": 0.02, "input_encoding": "bit_serial", "dac_bits": 6},
    "dual-pair-unequal-significance": {"devices_per_polarity": 2, "pair_significance": 3.0, "tile_rows": 16},
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_round_trip_is_exact(tmp_path, name):
    device = create_device("analog_crossbar", CONFIGS[name])
    layer, x = _programmed(device)
    layer.set_inference_time(86400.0)  # the read time travels with the layer
    loaded, section = _round_trip(device, layer, tmp_path / "xbar")
    assert section["format"] == FORMAT == "crossbar-conductance/2"
    assert loaded.config == layer.config and loaded.t_inference_s == 86400.0
    _assert_identical(layer, loaded, x)


@pytest.mark.parametrize("preset", sorted(AnalogCrossbarDevice.presets()))
def test_presets_round_trip(tmp_path, preset):
    device = create_device("analog_crossbar", preset=preset)
    layer, x = _programmed(device, seed=3)
    loaded, _ = _round_trip(device, layer, tmp_path / "xbar")
    _assert_identical(layer, loaded, x)


def test_float64_layer_and_uncalibrated_adc_round_trip(tmp_path):
    device = create_device("analog_crossbar", {"tile_rows": 16})
    layer = device.layer(IN, OUT).double()
    layer.load_matrix(torch.randn(OUT, IN, generator=torch.Generator().manual_seed(1)))
    layer.eval()  # never read: the ADC range is not calibrated yet (null in the manifest)
    loaded, _ = _round_trip(device, layer, tmp_path / "xbar")
    assert json.loads((tmp_path / "xbar" / MANIFEST).read_text())["output_adc"]["full_scale_gmax_units"] == [None]
    assert loaded.weight.dtype == torch.float64
    x = torch.randn(32, IN, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    _assert_identical(layer, loaded, x)  # both calibrate on the same first batch


def test_csv_alone_gives_the_programmed_matrix(tmp_path):
    """The spreadsheet's view: K = (G+ - G-) / g_max * column scale, one line per weight."""
    device = create_device("analog_crossbar", {"tile_rows": 16, "tile_cols": 4})
    layer, _ = _programmed(device)
    device.export_layer(layer, tmp_path)
    man = json.loads((tmp_path / MANIFEST).read_text())
    with open(tmp_path / TABLE, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0]) == CSV_COLUMNS and len(rows) == IN * OUT
    assert man["csv"]["columns"] == list(CSV_COLUMNS)
    scale = np.load(tmp_path / ARRAYS)["column_scale_k_per_gmax"]
    g_max = man["conductance"]["g_max_uS"]
    k = np.full((OUT, IN), np.nan)
    for r in rows:
        o, i = int(r["k_out"]), int(r["k_in"])
        assert not (int(r["level_plus"]) and int(r["level_minus"]))  # one device per pair
        k[o, i] = (float(r["g_plus_uS"]) - float(r["g_minus_uS"])) / g_max * scale[o]
    layer.set_inference_time(0.0)  # before any drift: the effective matrix is the programmed one
    eff = layer.effective_matrix().double().numpy()
    assert np.abs(k - eff).max() <= 1e-6 * np.abs(eff).max()


def test_manifest_documents_every_array_with_a_unit(tmp_path):
    device = create_device("analog_crossbar", {"tile_rows": 16, "tile_cols": 4})
    layer, _ = _programmed(device)
    device.export_layer(layer, tmp_path)
    man = json.loads((tmp_path / MANIFEST).read_text())
    with np.load(tmp_path / ARRAYS) as z:
        assert set(man["arrays"]) == set(z.files)
        for name in z.files:
            assert name.endswith(("_uS", "_index", "_per_gmax")), name
        assert z["g_plus_uS"].shape == (3 * 3, 1, 16, 4)  # 3 row tiles x 3 column tiles, one pair
        assert z["g_plus_uS"].max() == pytest.approx(25.0)
    assert man["version"] == 2 and man["tiles"]["count"] == 9
    assert man["drift_compensation"]["type"] == "global" and "all-ones" in man["drift_compensation"]["reference"]
    assert man["output_adc"]["full_scale_uA"] == pytest.approx(
        [f * 25.0 * 0.2 for f in man["output_adc"]["full_scale_gmax_units"]])


# --------------------------------------------------------------------------- damaged files
@pytest.fixture
def exported(tmp_path):
    device = create_device("analog_crossbar", {"tile_rows": 16, "tile_cols": 4})
    layer, _ = _programmed(device)
    section = json.loads(json.dumps(device.export_layer(layer, tmp_path)))
    return device, tmp_path, section


def _one_line_error(device, folder, section, *names):
    with pytest.raises(ConfigError) as info:
        device.load_layer_export(folder, section)
    message = str(info.value)
    assert "\n" not in message
    for name in names:
        assert name in message, message
    return message


def test_flipped_bytes_in_the_npz_are_refused(exported):
    device, folder, section = exported
    data = bytearray((folder / ARRAYS).read_bytes())
    middle = len(data) // 2
    data[middle : middle + 16] = bytes(b ^ 0xFF for b in data[middle : middle + 16])
    (folder / ARRAYS).write_bytes(bytes(data))
    assert "codesign export" in _one_line_error(device, folder, section, ARRAYS, "damaged")


def test_truncated_npz_is_refused(exported):
    device, folder, section = exported
    data = (folder / ARRAYS).read_bytes()
    (folder / ARRAYS).write_bytes(data[: len(data) // 2])
    _one_line_error(device, folder, section, ARRAYS)


def test_wrong_version_is_refused(exported):
    device, folder, section = exported
    man = json.loads((folder / MANIFEST).read_text())
    man["version"] = 3
    (folder / MANIFEST).write_text(json.dumps(man))
    _one_line_error(device, folder, section, MANIFEST, "version 3")
    _one_line_error(device, folder, {**section, "format": "crossbar-conductance/0"}, "crossbar-conductance/0")


@pytest.mark.parametrize("name", [ARRAYS, TABLE, MANIFEST])
def test_missing_file_is_refused(exported, name):
    device, folder, section = exported
    (folder / name).unlink()
    _one_line_error(device, folder, section, name, "missing")


def test_csv_that_disagrees_with_the_levels_is_refused(exported):
    device, folder, section = exported
    lines = (folder / TABLE).read_text().splitlines()
    cells = lines[5].split(",")
    cells[9] = str(int(cells[9]) + 1)  # level_plus of one weight
    lines[5] = ",".join(cells)
    (folder / TABLE).write_text("\n".join(lines) + "\n")
    _one_line_error(device, folder, section, TABLE, "disagrees")


def test_both_devices_of_a_pair_set_is_refused(exported):
    device, folder, section = exported
    with np.load(folder / ARRAYS) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["level_plus_index"][0, 0, 0] = arrays["level_minus_index"][0, 0, 0] = 3
    arrays["g_plus_uS"][0, 0, 0] = arrays["g_minus_uS"][0, 0, 0] = 3 / 15 * 25.0
    np.savez(folder / ARRAYS, **arrays)
    _one_line_error(device, folder, section, ARRAYS, "both G+ and G-")


# --------------------------------------------------------------------------- real students
@pytest.fixture(scope="module")
def students(digits_teacher):
    """Two digits students on 32 x 4 tiles: mapped post hoc, and after hardware-aware training."""
    from codesign.distill import DistillConfig, Workspace, run_distill
    from codesign.students import FitConfig

    ws = Workspace()
    out = {}
    for protocol in ("posthoc", "aware"):
        cfg = DistillConfig(device="analog_crossbar", pca_rank=10, hw_draws=1, protocol=protocol,
                            device_overrides={"tile_rows": 32, "tile_cols": 4, "stuck_off_fraction": 0.01},
                            fit=FitConfig(aware_steps=15))
        out[protocol] = (run_distill(cfg, ws), cfg)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["posthoc", "aware"])
def test_digits_students_round_trip(tmp_path, digits, students, protocol):
    from codesign.distill import hardware_accuracy

    result, cfg = students[protocol]
    layer = result.layer
    device = create_device("analog_crossbar", dict(cfg.device_overrides))
    if protocol == "aware":  # training moved the weights off the fitted K
        assert not torch.equal(layer.weight, result.student.K_.to(layer.weight))
    loaded, _ = _round_trip(device, layer, tmp_path / "xbar")
    psi, y = result.features.test, torch.from_numpy(digits.y_test)
    _assert_identical(layer, loaded, psi[:200])
    for t in (cfg.eval_time_s, YEAR_S):
        a = hardware_accuracy(layer, psi, y, 3, cfg.seed, t)
        b = hardware_accuracy(loaded, psi, y, 3, cfg.seed, t)
        assert a == b and min(a) > 0.8, (t, a, b)
