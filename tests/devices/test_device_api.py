"""codesign.devices.base, API v2: mode, seeding, read time, presets and the state dict's device spec."""

import dataclasses

import pytest
import torch

from codesign.devices import DEFAULT_T_INFERENCE_S, Mode, create_device
from codesign.devices.base import Device, DeviceLayer, Preset, decode_device_spec, preset_table
from codesign.devices.ideal import IdealDevice, IdealLayer
from codesign.errors import ConfigError


def _crossbar(**overrides):
    layer = create_device("analog_crossbar", {"tile_rows": 16, "tile_cols": 4, **overrides}).layer(37, 5)
    layer.load_matrix(torch.randn(5, 37, generator=torch.Generator().manual_seed(0)) * 0.3)
    return layer


def test_mode_follows_training_flag_and_instance():
    layer = _crossbar()
    assert layer.mode is Mode.TRAINING  # a fresh module trains
    layer.eval()
    assert layer.mode is Mode.NOMINAL and layer.instance_seed is None
    layer.draw_instance(4)
    assert layer.mode is Mode.INSTANCE and layer.instance_seed == 4
    layer.train()
    assert layer.mode is Mode.TRAINING  # training draws fresh noise whatever was drawn
    layer.eval()
    layer.clear_instance()
    assert layer.mode is Mode.NOMINAL and layer.instance_seed is None


def test_noise_is_fresh_in_training_seeded_per_instance_and_zero_nominal():
    layer = _crossbar()
    like = torch.zeros(())
    assert not torch.equal(layer.noise((3, 4), 0, like, Mode.TRAINING), layer.noise((3, 4), 0, like, Mode.TRAINING))
    assert torch.equal(layer.noise((3, 4), 0, like, Mode.NOMINAL), torch.zeros(3, 4))
    with pytest.raises(ConfigError, match="draw_instance"):
        layer.noise((3, 4), 0, like, Mode.INSTANCE)
    layer.draw_instance(9)
    a = layer.noise((3, 4), 0, like, Mode.INSTANCE)
    assert torch.equal(a, layer.noise((3, 4), 0, like, Mode.INSTANCE))  # re-seeded per call
    assert not torch.equal(a, layer.noise((3, 4), 1, like, Mode.INSTANCE))  # streams differ
    layer.draw_instance(10)
    assert not torch.equal(a, layer.noise((3, 4), 0, like, Mode.INSTANCE))


def test_read_time_is_an_argument_with_a_one_hour_default():
    assert DEFAULT_T_INFERENCE_S == 3600.0
    layer = _crossbar()
    assert layer.t_inference_s == DEFAULT_T_INFERENCE_S
    layer.draw_instance(1, t_inference_s=86400.0)
    assert layer.t_inference_s == 86400.0
    layer.draw_instance(2)  # None keeps the time
    assert layer.t_inference_s == 86400.0
    layer.clear_instance()
    assert layer.t_inference_s == 86400.0
    for bad in (-1.0, float("nan"), float("inf"), "1h", True):
        with pytest.raises(ConfigError, match="t_inference_s"):
            layer.set_inference_time(bad)
    with pytest.raises(ConfigError, match="seed"):
        layer.draw_instance(1.5)


def test_layers_know_their_device_and_the_state_dict_carries_it():
    layer = _crossbar(adc_bits=6)
    assert layer.device_name == "analog_crossbar" and layer.config.adc_bits == 6
    state = layer.state_dict()
    spec = decode_device_spec(state["_extra_state"])
    assert spec["device"] == "analog_crossbar"
    assert spec["config"] == dataclasses.asdict(layer.config)
    # tensors only: code that maps .cpu()/.clone() over a state dict keeps working
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    copy = _crossbar(adc_bits=6)
    copy.load_state_dict({k: v.clone() for k, v in state.items()})
    copy.set_extra_state(spec)  # the plain dict form is accepted too


def test_loading_into_another_config_names_the_differing_fields():
    state = _crossbar(adc_bits=6, dac_bits=5).state_dict()
    other = _crossbar(adc_bits=7)
    with pytest.raises(ConfigError, match=r"adc_bits: saved 6, this layer 7; dac_bits: saved 5, this layer 8"):
        other.load_state_dict(state)


def test_loading_into_another_device_names_both():
    state = IdealDevice().layer(37, 5).state_dict()
    with pytest.raises(ConfigError, match="saved from device 'ideal'; this layer is a 'analog_crossbar'"):
        _crossbar().load_state_dict(state, strict=False)


def test_a_state_saved_before_v2_still_loads():
    layer = _crossbar()
    legacy = {k: v for k, v in layer.state_dict().items() if k != "_extra_state"}
    fresh = create_device("analog_crossbar", {"tile_rows": 16, "tile_cols": 4}).layer(37, 5)
    fresh.load_state_dict(legacy)
    assert torch.equal(fresh.weight, layer.weight)


def test_a_layer_built_without_a_device_checks_nothing():
    bare = IdealLayer(4, 3)
    assert bare.device_name is None and bare.config is None
    bare.load_state_dict(IdealDevice().layer(4, 3).state_dict())


def test_device_subclasses_tag_layers_without_any_code():
    class Twice(IdealDevice):
        name = "twice"

        def layer(self, in_features, out_features):
            return IdealLayer(in_features, out_features)

    layer = Twice(datapath="int8").layer(4, 3)
    assert layer.device_name == "twice" and layer.config.datapath == "int8"


def test_presets_and_from_preset():
    assert set(IdealDevice.presets()) == {"horowitz45_fp32", "horowitz45_int8"}
    dev = IdealDevice.from_preset("horowitz45_int8", {"clock_mhz": 500.0})
    assert dev.config.datapath == "int8" and dev.config.clock_mhz == 500.0
    with pytest.raises(ConfigError, match="its presets: horowitz45_fp32, horowitz45_int8"):
        IdealDevice.from_preset("tpu")
    with pytest.raises(ConfigError, match="defined twice"):
        preset_table(Preset("a", {}, "x"), Preset("a", {}, "y"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        IdealDevice.presets()["horowitz45_int8"].name = "other"


def test_forward_is_abstract():
    class NoForward(DeviceLayer):
        def load_matrix(self, matrix):
            pass

        def effective_matrix(self):
            return torch.zeros(1, 1)

    with pytest.raises(TypeError, match="forward"):
        NoForward(1, 1)
    assert issubclass(IdealDevice, Device)


def test_a_layer_state_saved_before_a_field_existed_loads_with_its_default():
    import json

    from codesign.devices import create_device

    layer = create_device("photonic_mzi").layer(6, 4)
    state = layer.state_dict()
    spec = json.loads(bytes(state["_extra_state"].tolist()).decode())
    del spec["config"]["thermal_crosstalk"]  # a field added later
    state["_extra_state"] = torch.tensor(list(json.dumps(spec).encode()), dtype=torch.uint8)
    create_device("photonic_mzi").layer(6, 4).load_state_dict(state)
    other = create_device("photonic_mzi", {"thermal_crosstalk": 0.2}).layer(6, 4)
    with pytest.raises(ConfigError, match="thermal_crosstalk: saved 0.05"):
        other.load_state_dict(state)  # the missing field reads as its default, 0.05
