"""A device plugin adds its own export format through the device API: the example's fault map.

The example plugin (``experiments/example_plugin``, ``stuck-crossbar-faults/1``) is imported from
its source folder (``tests/devices/test_plugin.py`` installs it with pip; the layer tests need no
entry point): its layer round-trips bit for bit through ``export_layer`` /
``load_layer_export``, a drawn chip's fault map travels with it and stands for that chip only (a
map measured on a real chip can replace it; later draws simulate), it passes the shipped
``check_export`` contract, and damaged or wrong-version files give one-line errors. End to end,
with the plugin registered through an entry point: a digits student distilled on it and exported
with ``codesign export --instance 3 --verify`` carries chip 3's fault map, and ``load_export``
reproduces that chip's outputs exactly.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from codesign.devices.testing import check_export
from codesign.errors import ConfigError

PLUGIN = Path(__file__).resolve().parents[2] / "experiments" / "example_plugin"
IN, OUT = 24, 6


@pytest.fixture
def plugin(monkeypatch):
    monkeypatch.syspath_prepend(str(PLUGIN))
    return importlib.import_module("codesign_stuckat")


def _layer(plugin, **overrides):
    device = plugin.StuckCrossbarDevice(**overrides)
    layer = device.layer(IN, OUT)
    layer.load_matrix(torch.randn(OUT, IN, generator=torch.Generator().manual_seed(0)))
    layer.eval()
    x = torch.randn(32, IN, generator=torch.Generator().manual_seed(1))
    layer(x)  # calibrates the ADC range
    return device, layer, x


def _round_trip(device, layer, folder):
    folder.mkdir(exist_ok=True)
    section = json.loads(json.dumps(device.export_layer(layer, folder)))
    return device.load_layer_export(folder, section), section


def test_fault_map_of_a_drawn_chip_round_trips(tmp_path, plugin):
    device, layer, x = _layer(plugin, stuck_fraction=0.1)
    layer.draw_instance(5, t_inference_s=60.0)
    loaded, section = _round_trip(device, layer, tmp_path / "dev")
    assert section["format"] == device.export_format == "stuck-crossbar-faults/1"
    manifest = json.loads((tmp_path / "dev" / "stuck_crossbar.json").read_text())
    assert manifest["instance_seed"] == 5 and set(manifest["arrays"]) == set(np.load(tmp_path / "dev" / "stuck_crossbar.npz").files)
    assert loaded.instance_seed == 5 and loaded.t_inference_s == 60.0
    stuck = np.load(tmp_path / "dev" / "stuck_crossbar.npz")["stuck_mask"]
    assert 0.05 < stuck.mean() < 0.15  # the chip's faults, about stuck_fraction of the devices
    assert torch.equal(layer(x), loaded(x))
    assert torch.equal(layer.effective_matrix(), loaded.effective_matrix())
    layer.clear_instance()
    loaded.clear_instance()
    assert torch.equal(layer.effective_matrix(), loaded.effective_matrix())
    for seed in (1, 2):
        layer.draw_instance(seed)
        loaded.draw_instance(seed)
        assert torch.equal(layer(x), loaded(x))


def test_a_measured_fault_map_in_the_file_wins(tmp_path, plugin):
    device, layer, x = _layer(plugin, stuck_fraction=0.1)
    layer.draw_instance(5)
    folder = tmp_path / "dev"
    folder.mkdir()
    section = json.loads(json.dumps(device.export_layer(layer, folder)))
    with np.load(folder / "stuck_crossbar.npz") as z:
        arrays = {k: z[k] for k in z.files}
    arrays["stuck_mask"][:] = False
    arrays["stuck_mask"][0, 0, :] = True  # G+ of every weight of output 0 stuck at g_max
    arrays["stuck_at_gmax_mask"][:] = arrays["stuck_mask"]
    np.savez(folder / "stuck_crossbar.npz", **arrays)
    loaded = device.load_layer_export(folder, section)
    eff = loaded.effective_matrix()
    scale = json.loads((folder / "stuck_crossbar.json").read_text())["weight_scale_k_per_gmax"]
    minus = torch.from_numpy(arrays["level_minus_index"][0]).float() / 15
    assert torch.allclose(eff[0], (1.0 - minus) * scale)  # output 0 reads the measured faults
    layer.clear_instance()
    assert torch.equal(eff[1:], layer.effective_matrix()[1:])  # the other outputs are fault-free


def test_without_a_drawn_chip_only_the_levels_are_saved(tmp_path, plugin):
    device, layer, x = _layer(plugin)
    loaded, _ = _round_trip(device, layer, tmp_path / "dev")
    assert "stuck_mask" not in np.load(tmp_path / "dev" / "stuck_crossbar.npz").files
    assert loaded.instance_seed is None
    assert torch.equal(layer(x), loaded(x))


def test_plugin_passes_the_export_contract(plugin):
    check_export(plugin.StuckCrossbarDevice(stuck_fraction=0.05))


def test_damaged_and_wrong_version_files_are_refused(tmp_path, plugin):
    device, layer, _ = _layer(plugin)
    folder = tmp_path / "dev"
    folder.mkdir()
    section = json.loads(json.dumps(device.export_layer(layer, folder)))
    with pytest.raises(ConfigError, match="stuck-crossbar-faults/2") as info:
        device.load_layer_export(folder, {**section, "format": "stuck-crossbar-faults/2"})
    assert "\n" not in str(info.value)
    npz = folder / "stuck_crossbar.npz"
    npz.write_bytes(npz.read_bytes()[:-40])
    with pytest.raises(ConfigError, match="stuck_crossbar.npz") as info:
        device.load_layer_export(folder, section)
    assert "\n" not in str(info.value)


def test_the_files_map_stands_for_the_saved_chip_only(tmp_path, plugin):
    device, layer, x = _layer(plugin, stuck_fraction=0.1)
    layer.draw_instance(5)
    folder = tmp_path / "dev"
    folder.mkdir()
    section = json.loads(json.dumps(device.export_layer(layer, folder)))
    with np.load(folder / "stuck_crossbar.npz") as z:
        arrays = {k: z[k] for k in z.files}
    arrays["stuck_mask"][:] = False  # a "measured" chip 5 without a single fault
    arrays["stuck_at_gmax_mask"][:] = False
    np.savez(folder / "stuck_crossbar.npz", **arrays)
    loaded = device.load_layer_export(folder, section)
    layer.clear_instance()
    assert loaded.instance_seed == 5 and torch.equal(loaded.effective_matrix(), layer.effective_matrix())
    for seed in (7, 5):  # any draw afterwards, the saved seed's included, simulates that seed's faults
        layer.draw_instance(seed)
        loaded.draw_instance(seed)
        assert torch.equal(loaded(x), layer(x)) and torch.equal(loaded.effective_matrix(), layer.effective_matrix())
        assert loaded.fault_map()[0].any()


# --------------------------------------------------------------------------- end to end: codesign export
@pytest.fixture(scope="module")
def registered(tmp_path_factory):
    """The plugin registered as a third-party package is: its source folder on ``sys.path`` and a
    ``*.dist-info`` folder with its ``codesign.devices`` entry point; removed afterwards."""
    from codesign import devices

    site = tmp_path_factory.mktemp("stuckat-site")
    info = site / "codesign_stuckat-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: codesign-stuckat\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text("[codesign.devices]\nstuck_crossbar = codesign_stuckat:StuckCrossbarDevice\n")
    added = [str(site), str(PLUGIN)]
    sys.path[:0] = added
    importlib.invalidate_caches()
    devices.refresh()
    assert "stuck_crossbar" in devices.list_devices(), devices.broken_devices()
    yield
    for path in added:
        sys.path.remove(path)
    sys.modules.pop("codesign_stuckat", None)
    importlib.invalidate_caches()
    devices.refresh()


@pytest.fixture(scope="module")
def student(registered, digits_teacher, tmp_path_factory):
    """A digits student (rank 10, degree 2) distilled on the plugin with 10 % stuck devices."""
    from codesign.artifacts import save_student
    from codesign.distill import DistillConfig, Workspace, run_distill

    path = tmp_path_factory.mktemp("stuckat-student") / "student.pt"
    cfg = DistillConfig(pca_rank=10, device="stuck_crossbar", device_overrides={"stuck_fraction": 0.1})
    save_student(path, run_distill(cfg, Workspace(verbose=False)))
    return path


def test_codesign_export_instance_writes_the_chips_fault_map(student, digits, tmp_path, capsys):
    from codesign.artifacts import load_student
    from codesign.cli import main
    from codesign.export import load_export

    out = tmp_path / "chip3"
    code = main(["export", str(student), "--out", str(out), "--instance", "3", "--verify"])
    text = capsys.readouterr().out
    assert code == 0, text
    rows = {name: line for line in text.splitlines() for name in ("exported chip", "hw accuracy") if line.startswith(name)}
    assert " pass " in rows["exported chip"] and "read from the device files" in rows["exported chip"]
    assert " pass " in rows["hw accuracy"]  # the student's own seeds, draw for draw, unaffected

    manifest = json.loads((out / "export.json").read_text())
    assert manifest["device"]["instance"]["seed"] == 3 and manifest["device"]["native"]["format"] == "stuck-crossbar-faults/1"
    own = json.loads((out / "device" / "stuck_crossbar.json").read_text())
    assert own["instance_seed"] == 3
    with np.load(out / "device" / "stuck_crossbar.npz") as z:
        assert set(z.files) == {"level_plus_index", "level_minus_index", "stuck_mask", "stuck_at_gmax_mask"}
        stuck, at_gmax = z["stuck_mask"], z["stuck_at_gmax_mask"]
    st = load_student(student)
    original = st.device_layer()
    original.draw_instance(3, manifest["device"]["instance"]["t_inference_s"])
    assert stuck.shape == (2, 10, 66) and 0.07 < stuck.mean() < 0.13  # about stuck_fraction of 1320 devices
    assert np.array_equal(stuck, original.fault_map()[0].numpy()) and np.array_equal(at_gmax, original.fault_map()[1].numpy())

    exp = load_export(out)
    assert exp.chip.instance_seed == 3 and exp.chip_from_files and exp.layer.instance_seed is None
    with torch.no_grad():
        reference = original(st.features(digits.x_test))
    chip = exp.chip_logits(digits.x_test)
    assert torch.equal(chip, reference)
    assert not torch.equal(chip, exp.logits(digits.x_test))  # the chip's faults, not the nominal crossbar


def test_codesign_export_without_instance_writes_no_fault_map(student, tmp_path):
    from codesign.export import export_student, load_export

    out = export_student(student, tmp_path / "b")
    with np.load(out / "device" / "stuck_crossbar.npz") as z:
        assert set(z.files) == {"level_plus_index", "level_minus_index"}
    exp = load_export(out)
    assert exp.manifest["device"]["instance"] is None and exp.chip is None and exp.instance_seed is None
