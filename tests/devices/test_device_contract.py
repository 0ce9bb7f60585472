"""The device contract (codesign.devices.testing), run on every registered device.

The checks themselves ship with the package, so a plugin author runs the same ones; here they
are parametrized over everything installed (one test per device and check). The example plugin
is checked in a fresh interpreter where it is installed (``test_plugin.py``).
"""

from importlib.metadata import entry_points

import pytest
import torch

from codesign.devices import broken_devices, create_device, get_device_class, list_devices
from codesign.devices.testing import parametrize_with_checks
from codesign.errors import ConfigError

# built-ins are the entry points that point into our own devices package (plugins excluded)
BUILTINS = sorted(
    ep.name for ep in entry_points(group="codesign.devices") if ep.value.startswith("codesign.devices.")
)


def test_builtins_are_registered_and_pass_the_static_checks():
    assert set(BUILTINS) == {"ideal", "photonic_mzi", "analog_crossbar", "fpga_fixed_point"}
    assert set(BUILTINS) <= set(list_devices())
    assert not set(BUILTINS) & set(broken_devices())


@parametrize_with_checks([get_device_class(name) for name in list_devices()])
def test_device_contract(device, check):
    check(device)


# ------------------------------------------------------------------ beyond the shipped contract
@pytest.mark.parametrize("name", BUILTINS)
def test_builtin_costs_are_positive_and_grow_with_size(name):
    dev = create_device(name)
    small, big = dev.cost(100, 10), dev.cost(1000, 10)
    assert small["energy_pj"] > 0 and small["latency_ns"] > 0 and small["area_mm2"] > 0
    assert big["energy_pj"] > small["energy_pj"]
    assert big["area_mm2"] >= small["area_mm2"]
    assert big["latency_ns"] >= small["latency_ns"]


@pytest.mark.parametrize("name", BUILTINS)
def test_builtin_layers_keep_a_digital_scale(name):
    # programming 8 K (a power of two: exact in fixed point too) implements 8 times the matrix
    layer = create_device(name).layer(37, 5)
    K = torch.randn(5, 37, generator=torch.Generator().manual_seed(5))
    layer.load_matrix(K * 0.2)
    small = layer.effective_matrix()
    layer.load_matrix(K * 1.6)
    assert torch.allclose(layer.effective_matrix(), small * 8, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", BUILTINS)
def test_builtins_have_cited_presets(name):
    presets = get_device_class(name).presets()
    assert presets, f"{name} has no preset of a published design"
    for preset in presets.values():
        assert preset.source and preset.description
        dev = create_device(name, preset=preset.name)
        for field, value in preset.overrides.items():
            assert getattr(dev.config, field) == value


def test_create_device_applies_the_preset_then_the_overrides():
    dev = create_device("analog_crossbar", {"adc_bits": "6"}, preset="isaac")
    assert (dev.config.tile_rows, dev.config.bits_per_cell, dev.config.adc_bits) == (128, 2, 6)
    lt = create_device("photonic_mzi", preset="lightening_transformer_mzi").config
    # LT's pessimistic 0.99 dB per MZI and no holding power; the defaults use published components
    assert (lt.insertion_loss_db, lt.heater_p_pi_mw) == (0.99, 0.0)
    assert lt.block_size == create_device("photonic_mzi").config.block_size == 12


def test_unknown_preset_lists_the_device_presets():
    with pytest.raises(ConfigError, match=r"unknown preset 'nope' for device 'analog_crossbar'.*isaac, ibm_hermes"):
        create_device("analog_crossbar", preset="nope")
