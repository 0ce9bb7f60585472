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


def test_describe_lists_each_devices_nonlinear_primitives_with_their_parameters():
    photonic = describe_device("photonic_mzi")
    assert "nonlinear primitives (--lift-placement device --dictionary NAME):" in photonic
    assert ("    intensity (photonic_mzi.intensity): square-law photodetection of a random mesh's outputs: "
            "|W z|^2 (quadratic features)") in photonic
    assert "    cosine (photonic_mzi.cosine): MZM cosine transfer" in photonic
    assert re.search(r"\n      --features +?= 256 +nonlinear features m computed on the device", photonic)
    assert "search space: features: int 64..1024; bandwidth: float 0.5..2.0 (log)" in photonic
    assert "(--lift-placement device: on photonic_mzi, one of its nonlinear primitives)" in photonic
    fpga = describe_device("fpga_fixed_point")
    assert "    lut (fpga_fixed_point.lut): LUT/BRAM-evaluated" in fpga
    assert re.search(r"\n      --lut-bits +?= 10 +address bits of the table", fpga)
    assert "function: one of cos, tanh, square" in fpga
    assert "    relu (analog_crossbar.relu): " in describe_device("analog_crossbar")
    ideal = describe_device("ideal")
    assert "nonlinear primitives: (none: the lift runs on the host)" in ideal
    assert "--lift-placement device" not in ideal


def test_devices_json_carries_the_primitives():
    import json

    from codesign.devices.describe import devices_json

    data = json.loads(json.dumps(devices_json(), allow_nan=False))["devices"]
    assert list(data["photonic_mzi"]["lifts"]) == ["intensity", "cosine"]
    intensity = data["photonic_mzi"]["lifts"]["intensity"]
    assert intensity["dictionary"] == "photonic_mzi.intensity"
    assert intensity["class"] == "codesign.devices.native_lifts.PhotonicIntensity"
    assert intensity["description"].startswith("square-law photodetection")
    assert intensity["params"]["features"] == {"default": 256, "type": "int",
                                              "doc": "nonlinear features m computed on the device; 1 + r + m features"}
    assert intensity["search_space"]["bandwidth"] == {"kind": "float", "low": 0.5, "high": 2.0, "log": True}
    lut = data["fpga_fixed_point"]["lifts"]["lut"]
    assert lut["params"]["function"]["default"] == "cos" and lut["params"]["lut_bits"]["default"] == 10
    assert lut["search_space"]["function"] == {"kind": "choice", "values": ["cos", "tanh", "square"]}
    assert list(data["analog_crossbar"]["lifts"]) == ["relu"]
    assert data["ideal"]["lifts"] == {}


def test_a_broken_primitive_declaration_is_reported_not_fatal():
    from codesign.devices.base import Device
    from codesign.devices.describe import lifts_json, lifts_text

    class Broken(Device):  # not registered: only its class is described
        name = "broken_lifts"

        @classmethod
        def lifts(cls):
            return {"square": int}

    assert lifts_json(Broken) == {"square": {"error": "<class 'int'> is not a codesign.devices.lifts.Lift subclass"}}
    assert lifts_text(Broken)[1] == ("    square: declared but broken: "
                                     "<class 'int'> is not a codesign.devices.lifts.Lift subclass")
