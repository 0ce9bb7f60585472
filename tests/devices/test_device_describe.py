"""codesign.devices.describe: the text behind ``codesign devices``."""

import dataclasses
import re

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
    assert re.search(r"\n    phase_bits +?= 8 ", describe_device("photonic_mzi"))
    # each device says where the stages of an inference run, and which energies are conversions
    assert "PCA projection on the digital host" in describe_device("photonic_mzi")
    assert "conversion energy: input_scaling_pj, dac_pj, modulator_pj, detector_pj, adc_pj" in describe_device("photonic_mzi")
    assert "block_size: one of 8, 12, 16, 32" in text
    assert "bits_per_cell: int 1..4" in text and "weight_slices: int 1..8" in text
    assert "search space: (none)" in describe_device("ideal")


def test_config_fields():
    assert config_fields("fpga_fixed_point")[:4] == [
        "weight_bits", "input_bits", "output_bits", "clock_mhz"
    ]


def test_describe_lists_presets_with_their_sources():
    text = describe_device("analog_crossbar")
    assert "presets (--preset NAME):" in text
    assert "isaac: ReRAM crossbars of 128 x 128" in text and "Shafiee" in text and "Wan et al." in text
    assert "ibm_hermes" in text and "Le Gallo" in text
    assert "finn_tfc_w2a2" in describe_devices()


def test_devices_json_is_json_and_complete():
    import json

    from codesign.devices import list_devices
    from codesign.devices.describe import devices_json

    data = json.loads(json.dumps(devices_json(), allow_nan=False))
    assert set(data) == {"devices", "broken"}
    assert set(data["devices"]) == set(list_devices())
    xbar = data["devices"]["analog_crossbar"]
    assert xbar["fields"]["adc_bits"] == {"default": 8, "type": "int", "doc": "output ADC resolution, bits",
                                          "range": [1, 32]}
    assert xbar["fields"]["drift_compensation"]["range"] is None and xbar["fields"]["read_noise"]["range"] == [0.0, 1.0]
    assert xbar["api_version"] == 3
    assert xbar["contract"]["ok"] is True and xbar["contract"]["message"] == ""
    assert xbar["contract"]["plugin"].startswith("codesign ")
    assert xbar["fields"]["drift_compensation"]["type"] == "bool"
    assert xbar["search_space"]["tile_rows"] == {"kind": "choice", "values": [64, 128, 256, 512, 1024]}
    assert xbar["search_space"]["adc_bits"] == {"kind": "int", "low": 4, "high": 10, "log": False}
    assert xbar["presets"]["isaac"]["overrides"]["bits_per_cell"] == 2
    assert "Shafiee" in xbar["presets"]["isaac"]["source"]
    assert data["devices"]["ideal"]["search_space"] == {}
    assert data["devices"]["ideal"]["class"] == "codesign.devices.ideal.IdealDevice"
