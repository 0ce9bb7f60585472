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


@pytest.mark.parametrize("name", BUILTINS)
def test_out_of_range_values_are_one_line_naming_the_field_and_its_range(name):
    """Every declared range is enforced by DeviceConfig (validate() no longer repeats it): a value
    just outside either end is one line naming the field and the allowed range."""
    from codesign.devices.base import field_ranges

    cls = get_device_class(name)
    ranges = field_ranges(cls.Config)
    assert ranges
    for f, (lo, hi) in ranges.items():
        integer = isinstance(f.default, int) and not isinstance(f.default, bool)
        for value in ([lo - (1 if integer else max(abs(lo), 1.0) * 0.01)] if lo is not None else []) + \
                     ([hi + (1 if integer else max(abs(hi), 1.0) * 0.01)] if hi is not None else []):
            with pytest.raises(ConfigError) as info:
                cls(**{f.name: value})
            message = str(info.value)
            assert "\n" not in message and message.startswith(f"{f.name}=")
            assert f"allowed [{lo}, {hi}]" in message, message


def test_calibration_scales_are_positive_on_every_builtin():
    """``*_energy_scale`` / ``*_area_scale`` fields are ``scale_field``s: (1e-9, 1e6], so 0 is refused
    (the crossbar's five accepted 0 before)."""
    from codesign.devices.base import AREA_SCALE_SUFFIX, ENERGY_SCALE_SUFFIX, field_ranges

    seen = 0
    for name in BUILTINS:
        for f, rng in field_ranges(get_device_class(name).Config).items():
            if f.name.endswith((ENERGY_SCALE_SUFFIX, AREA_SCALE_SUFFIX)):
                seen += 1
                assert rng == (1e-9, 1e6) and f.default == 1.0, (name, f.name)
                with pytest.raises(ConfigError, match=rf"^{f.name}=0\.0 is out of range: allowed \[1e-09, 1000000\.0\]$"):
                    create_device(name, {f.name: 0.0})
    assert seen >= 5 + 14 + 6  # crossbar, photonic, FPGA
