"""The device contract where a plugin runs: ``distill``, ``search`` and ``export`` refuse a plugin
that fails it, in one line naming the plugin, the failed check and the fix; ``codesign devices``
shows the verdict; the verdict is cached per plugin version and codesign version.

The plugins are the example plugin (well-behaved) and its broken variants
(``broken_plugins.py``), installed as a third-party package is.
"""

from __future__ import annotations

import importlib
import json
import shutil
import sys
from pathlib import Path

import pytest

from codesign.cli import main

HERE = Path(__file__).parent
PLUGIN = HERE.parents[1] / "experiments" / "example_plugin"
PACKAGE = "codesign-brokenplugins 0.2"
#: Variant -> the check that refuses it (where the platform runs the contract at first use).
RUNTIME = {
    "stuck_identical": "check_seeds_differ",
    "stuck_negative_energy": "check_cost",
    "stuck_lax_config": "check_physical_ranges",
    "stuck_quiet_training": "check_training_noise",
}
#: Variants the registry refuses when it loads them (the static part: the device API version).
STATIC = {"stuck_api_v1": "draw_instance(seed), the device API v1 signature", "stuck_api_v2": "written for device API v2"}
ENTRY = {"stuck_identical": "IdenticalChips", "stuck_negative_energy": "NegativeEnergy",
         "stuck_lax_config": "LaxConfigDevice", "stuck_quiet_training": "QuietTraining", "stuck_api_v1": "ApiV1",
         "stuck_api_v2": "ApiV2"}


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    from codesign import devices

    site = tmp_path_factory.mktemp("broken-site")
    shutil.copy(HERE / "broken_plugins.py", site / "codesign_broken_plugins.py")
    info = site / "codesign_brokenplugins-0.2.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: codesign-brokenplugins\nVersion: 0.2\n")
    lines = [f"{n} = codesign_broken_plugins:{c}" for n, c in ENTRY.items()]
    lines.append("stuck_crossbar = codesign_stuckat:StuckCrossbarDevice")
    (info / "entry_points.txt").write_text("[codesign.devices]\n" + "\n".join(lines) + "\n")
    added = [str(site), str(PLUGIN)]
    sys.path[:0] = added
    importlib.invalidate_caches()
    devices.refresh()
    yield
    for path in added:
        sys.path.remove(path)
    for mod in ("codesign_broken_plugins", "codesign_stuckat"):
        sys.modules.pop(mod, None)
    importlib.invalidate_caches()
    devices.refresh()


def _argv(command: str, name: str, tmp_path: Path) -> list:
    """A tiny ``distill`` or ``search`` on device ``name``."""
    if command == "distill":
        return ["distill", "--dataset", "digits", "--pca-rank", "4", "--device", name]
    return ["search", "--dataset", "digits", "--ranks", "4", "8", "--samples", "1", "--device", name,
            "--out", tmp_path / "s", "--quiet"]


def _one_line(capsys, argv) -> str:
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("codesign: error: "), err
    return lines[0]


def test_the_example_plugin_passes_and_its_verdict_is_cached(installed):
    from codesign.devices.verdict import device_verdict

    first = device_verdict("stuck_crossbar")
    assert first.ok is True and first.plugin == PACKAGE and first.message == ""
    again = device_verdict("stuck_crossbar")
    assert again.cached and again.ok


@pytest.mark.parametrize("name", list(RUNTIME))
@pytest.mark.parametrize("command", ["distill", "search"])
def test_distill_and_search_refuse_a_plugin_failing_the_contract(installed, capsys, tmp_path, name, command):
    line = _one_line(capsys, _argv(command, name, tmp_path))
    assert f"{command} refuses device {name!r} of plugin {PACKAGE}" in line
    assert f"fails {RUNTIME[name]}" in line and "fix the plugin" in line
    assert not (tmp_path / "s" / "trials.jsonl").exists()


@pytest.fixture(scope="module")
def good_student(installed, digits_teacher, tmp_path_factory):
    from codesign.artifacts import save_student
    from codesign.distill import DistillConfig, run_distill

    path = tmp_path_factory.mktemp("student") / "student.pt"
    save_student(path, run_distill(DistillConfig(dataset="digits", pca_rank=4, device="stuck_crossbar")))
    return path


@pytest.mark.parametrize("name", list(RUNTIME))
def test_export_refuses_a_student_of_a_plugin_failing_the_contract(good_student, capsys, tmp_path, name):
    from codesign.artifacts import _read, _write

    payload = _read(good_student)
    payload["device"] = name  # a student saved before the contract was checked where it runs
    _write(tmp_path / "old.pt", payload)
    line = _one_line(capsys, ["export", tmp_path / "old.pt", "--out", tmp_path / "b"])
    assert f"export refuses device {name!r} of plugin {PACKAGE}" in line and f"fails {RUNTIME[name]}" in line
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("name", list(STATIC))
@pytest.mark.parametrize("command", ["distill", "search"])
def test_a_plugin_for_an_earlier_api_gets_one_line_saying_how_to_port(installed, capsys, tmp_path, name, command):
    line = _one_line(capsys, _argv(command, name, tmp_path))
    assert name in line and f"codesign_broken_plugins:{ENTRY[name]}" in line and STATIC[name] in line
    assert "fails static_checks" in line and "port:" in line and "api_version = 3" in line
    if name == "stuck_api_v1":  # every change since v1, the draw_instance signature first
        assert "draw_instance(seed, t_inference_s=None)" in line and "add a 'range'" in line
    else:
        assert "add a 'range' to every int and float field" in line and "draw_instance(seed, t" not in line


def test_devices_shows_every_verdict(installed, capsys):
    assert main(["devices", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["devices"]["stuck_crossbar"]["contract"]["ok"] is True
    for name, check in RUNTIME.items():
        contract = data["devices"][name]["contract"]
        assert contract["ok"] is False and f"fails {check}" in contract["message"]
        assert contract["plugin"] == PACKAGE
    for name, text in STATIC.items():
        assert name not in data["devices"] and text in data["broken"][name]
    assert main(["devices"]) == 0
    out = capsys.readouterr().out
    assert "contract: FAILED, refused by distill, search and export: device 'stuck_identical' fails " \
           "check_seeds_differ" in out
    assert "contract: passed (plugin codesign-brokenplugins 0.2, device API v3)" in out


def test_negative_energy_is_refused_wherever_the_cost_is_computed(installed):
    from codesign.devices import get_device_class
    from codesign.devices.base import required_cost_check
    from codesign.errors import ConfigError

    dev = get_device_class("stuck_negative_energy")()
    required_cost_check(dev, dev.cost(37, 5), (37, 5))  # small sizes are fine
    with pytest.raises(ConfigError, match=r"cost energy_pj = -[0-9.e+-]+ at 10x861 breaks the cost rules"):
        required_cost_check(dev, dev.cost(861, 10), (861, 10))
