"""codesign.devices.describe: the text behind ``codesign devices``."""

import dataclasses

from codesign.devices import create_device
from codesign.devices.describe import config_fields, describe_device, describe_devices


def test_describe_lists_every_builtin_with_fields_defaults_and_docs():
    text = describe_devices()
    for name in ("ideal", "photonic_mzi", "analog_crossbar", "fpga_fixed_point"):
        assert name in text
        dev = create_device(name)
        for f in dataclasses.fields(dev.config):
            assert f.name in text
            assert f.metadata["doc"] in text
    assert "phase_bits           = 8" in describe_device("photonic_mzi")
    assert "block_size: one of 8, 12, 16, 32" in text
    assert "conductance_bits: int 2..8" in text
    assert "search space: (none)" in describe_device("ideal")


def test_config_fields():
    assert config_fields("fpga_fixed_point")[:4] == [
        "weight_bits", "input_bits", "output_bits", "clock_mhz"
    ]
