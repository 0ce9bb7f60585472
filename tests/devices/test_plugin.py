"""The example plugin installs with pip, registers through its entry point, and runs.

The package is installed into this interpreter's environment for the duration of the test and
uninstalled afterwards, so that other tests see only the built-in devices.
"""

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PLUGIN = Path(__file__).resolve().parents[2] / "experiments" / "example_plugin"

CHECK = textwrap.dedent(
    """
    import torch
    from codesign import devices
    from codesign.devices.testing import check_device
    assert "stuck_crossbar" in devices.list_devices(), devices.list_devices()
    assert not devices.broken_devices(), devices.broken_devices()
    dev = devices.create_device("stuck_crossbar", {"stuck_fraction": "0.1"})
    check_device(dev)                      # the whole shipped contract, as on the built-ins
    check_device(devices.get_device_class("stuck_crossbar"))   # the class: default config
    preset = devices.create_device("stuck_crossbar", {"adc_bits": 6}, preset="chen2015_hfo2")
    assert abs(preset.config.stuck_fraction - 0.1079) < 1e-12 and preset.config.adc_bits == 6
    layer = dev.layer(20, 3)
    layer.load_matrix(torch.randn(3, 20))
    x = torch.randn(8, 20)
    layer.eval()
    layer.draw_instance(1, t_inference_s=86400.0)
    a, b = layer(x), layer(x)
    layer.draw_instance(2)
    assert torch.equal(a, b) and not torch.equal(a, layer(x))
    from codesign.devices.describe import describe_devices, devices_json
    assert "stuck_fraction" in describe_devices() and "chen2015_hfo2" in describe_devices()
    assert "chen2015_hfo2" in devices_json()["devices"]["stuck_crossbar"]["presets"]
    print("PLUGIN_OK")
    """
)


def _pip(*args):
    cmd = [sys.executable, "-m", "pip", *args, "--quiet", "--disable-pip-version-check"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=240)


@pytest.mark.slow
def test_example_plugin_installs_registers_and_runs(tmp_path):
    # build from a copy so that setuptools' build/ and egg-info never land in the repository
    src = tmp_path / "example_plugin"
    shutil.copytree(PLUGIN, src, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    installed = _pip("install", "--no-deps", "--no-build-isolation", "--no-compile", str(src))
    if installed.returncode != 0:
        pytest.skip(f"pip could not install the example plugin: {installed.stderr[-500:]}")
    try:
        run = subprocess.run(
            [sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=240,
            cwd=tmp_path,
        )
        assert run.returncode == 0, run.stderr[-2000:]
        assert "PLUGIN_OK" in run.stdout
    finally:
        _pip("uninstall", "-y", "codesign-stuckat")
    # entry-point metadata only: no need to import torch again to see that it is gone
    probe = "from importlib.metadata import entry_points as e; print(e(group='codesign.devices'))"
    gone = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert "stuck_crossbar" not in gone.stdout
