"""The device contract, checked for every built-in device registered through its entry point."""

import dataclasses
import math
from importlib.metadata import entry_points

import pytest
import torch

from codesign.errors import ConfigError
from codesign.devices import REQUIRED_COST_KEYS, Choice, FloatRange, IntRange, create_device, list_devices

# built-ins are the entry points that point into our own devices package (plugins excluded)
BUILTINS = sorted(
    ep.name for ep in entry_points(group="codesign.devices") if ep.value.startswith("codesign.devices.")
)
NOISY = {"photonic_mzi", "analog_crossbar"}  # devices whose instances differ by seed
IN, OUT = 37, 5
# small tiles so that tiling, padding and partial sums are exercised at test sizes
SMALL = {"analog_crossbar": {"tile_rows": 16, "tile_cols": 4}, "photonic_mzi": {"block_size": 8}}
BIT_FIELDS = {
    "photonic_mzi": ["phase_bits", "dac_bits", "adc_bits"],
    "analog_crossbar": ["conductance_bits", "dac_bits", "adc_bits"],
    "fpga_fixed_point": ["weight_bits", "input_bits", "output_bits"],
    "ideal": [],
}
NOISE_FIELDS = {
    "photonic_mzi": ["phase_noise_rad", "bs_error", "detector_noise", "insertion_loss_db"],
    "analog_crossbar": ["prog_noise", "read_noise", "drift_nu", "drift_time_s"],
    "fpga_fixed_point": [],
    "ideal": [],
}
SIZE_FIELDS = {
    "photonic_mzi": ["block_size"],
    "analog_crossbar": ["tile_rows", "tile_cols"],
    "fpga_fixed_point": ["pe", "simd"],
    "ideal": ["macs_per_cycle"],
}


def test_builtins_are_registered():
    assert set(BUILTINS) == {"ideal", "photonic_mzi", "analog_crossbar", "fpga_fixed_point"}
    assert set(BUILTINS) <= set(list_devices())


def _layer(name, **overrides):
    dev = create_device(name, {**SMALL.get(name, {}), **overrides})
    layer = dev.layer(IN, OUT)
    gen = torch.Generator().manual_seed(1)
    layer.load_matrix(torch.randn(OUT, IN, generator=gen) * 0.2)
    return dev, layer


def _x(batch=16, seed=2):
    return torch.randn(batch, IN, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", BUILTINS)
def test_shapes_and_gradients(name):
    _, layer = _layer(name)
    layer.train()
    y = layer(_x())
    assert y.shape == (16, OUT) and torch.isfinite(y).all()
    y.square().sum().backward()
    params = [(n, p) for n, p in layer.named_parameters() if p.requires_grad]
    assert params
    for n, p in params:
        assert p.grad is not None and torch.isfinite(p.grad).all(), n
        assert p.grad.abs().sum() > 0, f"no gradient reaches {n}"
    layer.eval()
    assert layer(_x()).shape == (16, OUT)
    assert layer.effective_matrix().shape == (OUT, IN)


@pytest.mark.parametrize("name", BUILTINS)
def test_eval_is_deterministic_per_seed_and_leaves_global_rng_alone(name):
    _, layer = _layer(name)
    layer.eval()
    x = _x()
    layer.draw_instance(7)
    state = torch.get_rng_state()
    y1, y2 = layer(x), layer(x)
    layer.draw_instance(7)
    y3 = layer(x)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(y1, y2) and torch.equal(y1, y3)
    layer.draw_instance(8)
    y4 = layer(x)
    if name in NOISY:
        assert not torch.allclose(y1, y4)
    else:
        assert torch.equal(y1, y4)
    layer.clear_instance()
    assert torch.equal(layer(x), layer(x))


@pytest.mark.parametrize("name", BUILTINS)
def test_trained_layer_survives_a_state_dict_round_trip(name):
    # Saved students and the robustness table rebuild a trained layer from its state dict;
    # a fresh layer that loads it must evaluate exactly like the original.
    dev, layer = _layer(name)
    opt = torch.optim.Adam([p for p in layer.parameters() if p.requires_grad], lr=1e-3)
    layer.train()
    for step in range(3):
        opt.zero_grad()
        layer(_x(seed=10 + step)).square().sum().backward()
        opt.step()
    layer.eval()
    layer.draw_instance(3)
    expected = layer(_x())
    fresh = dev.layer(IN, OUT)
    fresh.load_state_dict(layer.state_dict())
    fresh.eval()
    fresh.draw_instance(3)
    assert torch.allclose(fresh(_x()), expected, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("name", BUILTINS)
def test_programmed_layer_round_trips_and_reprograms(name):
    # Post hoc: a layer that was only programmed (never run) must save and reload too, and
    # programming a new matrix must replace everything derived from the old one.
    dev, layer = _layer(name)
    fresh = dev.layer(IN, OUT)
    fresh.load_state_dict(layer.state_dict())
    assert torch.allclose(fresh.effective_matrix(), layer.effective_matrix(), atol=1e-6)
    K = torch.randn(OUT, IN, generator=torch.Generator().manual_seed(5))
    layer.load_matrix(K * 0.2)
    small = layer.effective_matrix()
    layer.load_matrix(K * 1.6)
    assert torch.allclose(layer.effective_matrix(), small * 8, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", BUILTINS)
def test_cost_has_required_keys_and_finite_values(name):
    dev = create_device(name)
    costs = dev.cost(861, 10)
    for key in REQUIRED_COST_KEYS:
        assert key in costs
    for key, value in costs.items():
        assert isinstance(value, float) and math.isfinite(value) and value >= 0, key
    assert costs["energy_pj"] > 0 and costs["latency_ns"] > 0 and costs["area_mm2"] > 0


@pytest.mark.parametrize("name", BUILTINS)
def test_cost_grows_with_size(name):
    dev = create_device(name)
    small, big = dev.cost(100, 10), dev.cost(1000, 10)
    assert big["energy_pj"] > small["energy_pj"]
    assert big["area_mm2"] >= small["area_mm2"]
    assert big["latency_ns"] >= small["latency_ns"]


@pytest.mark.parametrize("name", BUILTINS)
def test_invalid_configs_name_the_field_and_range(name):
    with pytest.raises(ConfigError, match="no_such_field"):
        create_device(name, {"no_such_field": 1})
    for field in BIT_FIELDS[name]:
        for bad in (0, 33):
            with pytest.raises(ConfigError, match=rf"{field}=.*allowed \[\d, 32\]"):
                create_device(name, {field: bad})
    for field in NOISE_FIELDS[name]:
        with pytest.raises(ConfigError, match=rf"{field}=-0.1 is out of range"):
            create_device(name, {field: -0.1})
    for field in SIZE_FIELDS[name]:
        with pytest.raises(ConfigError, match=field):
            create_device(name, {field: 0})


@pytest.mark.parametrize("name", BUILTINS)
def test_cli_strings_convert_and_search_space_is_valid(name):
    dev = create_device(name)
    fields = {f.name: f for f in dataclasses.fields(dev.config)}
    for field, spec in dev.search_space().items():
        assert field in fields
        assert isinstance(spec, (IntRange, FloatRange, Choice))
        ends = spec.values if isinstance(spec, Choice) else (spec.low, spec.high)
        for value in ends:
            assert getattr(dev.with_overrides({field: value}).config, field) == value
            assert getattr(dev.with_overrides({field: str(value)}).config, field) == value
    docs = dev.Config.field_docs()
    assert all(doc for _, doc in docs.values()), "every config field documents itself"
