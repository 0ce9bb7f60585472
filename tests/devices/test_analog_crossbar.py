"""analog_crossbar: exactness with non-idealities off, each non-ideality's size, costs."""

import math

import pytest
import torch

from codesign.devices.analog_crossbar import (
    CELL_READ_PJ,
    DAC_BIT_PJ,
    INT32_ADD_PJ,
    READ_NOISE_EXPONENT,
    T0_S,
    AnalogCrossbarDevice,
    adc_energy_pj,
    prog_noise_std,
)

OFF = dict(conductance_bits=32, prog_noise=0.0, read_noise=0.0, drift_time_s=0.0,
           dac_bits=32, adc_bits=32)
IN, OUT = 37, 5


def _layer(**overrides):
    cfg = {"tile_rows": 16, "tile_cols": 4, **overrides}
    layer = AnalogCrossbarDevice(**cfg).layer(IN, OUT)
    k_mat = torch.randn(OUT, IN, generator=torch.Generator().manual_seed(0)) * 0.3
    layer.load_matrix(k_mat)
    return layer, k_mat


def _x(batch=64, seed=1, unit_rows=False):
    gen = torch.Generator().manual_seed(seed)
    if unit_rows:
        x = torch.rand(batch, IN, generator=gen) * 2 - 1
        x[:, 0] = 1.0
        return x
    return torch.randn(batch, IN, generator=gen)


def test_all_nonidealities_off_equals_ideal_across_tiles():
    layer, k_mat = _layer(**OFF)
    assert len(layer.row_slices) == 3  # 37 inputs on 16-row tiles
    x = _x()
    ref = x @ k_mat.T
    assert torch.allclose(layer.effective_matrix(), k_mat, atol=1e-6)
    for train in (True, False):
        layer.train(train)
        assert torch.allclose(layer(x), ref, atol=1e-5, rtol=1e-5)
    layer.draw_instance(2)
    assert torch.allclose(layer(x), ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("bits", [1, 3])
def test_conductance_levels_per_device(bits):
    layer = AnalogCrossbarDevice(**{**OFF, "conductance_bits": bits}).layer(50, 4)
    layer.load_matrix(torch.linspace(-1, 1, 200).reshape(4, 50))  # spans every level
    g, _ = layer.conductances("nominal")
    assert len(g.unique()) == 2**bits
    assert g.min().item() == 0.0 and g.max().item() == pytest.approx(1.0)


def test_programming_noise_follows_the_pcm_polynomial_fixed_per_instance():
    big = AnalogCrossbarDevice(**{**OFF, "prog_noise": 0.05}).layer(300, 40)
    target = torch.full((40, 300), 0.5)
    target[:, 0] = 1.0  # every column's max maps to g_max, the rest to g_max / 2
    big.load_matrix(target)
    big.draw_instance(9)
    g_nom, _ = big.conductances("nominal")
    g_inst, _ = big.conductances("instance")
    half = g_nom[0][:, 1:]
    assert half.unique().tolist() == [pytest.approx(0.5, abs=0.04)]  # 4-bit level near 1/2
    expected = prog_noise_std(half[0, 0], 0.05).item()
    assert expected == pytest.approx(0.05, rel=0.05)
    assert (g_inst[0][:, 1:] - half).std().item() == pytest.approx(expected, rel=0.05)
    # std grows with the conductance as aihwkit's PCMLikeNoiseModel: 1.05 % -> 3.8 % -> 4.2 %
    at = prog_noise_std(torch.tensor([0.0, 0.5, 1.0]), 0.0381)
    assert at.tolist() == pytest.approx([0.01054, 0.0381, 0.04222], rel=0.01)
    assert torch.equal(g_inst, big.conductances("instance")[0])
    assert not torch.equal(big.conductances("train")[0], big.conductances("train")[0])
    assert (g_inst >= 0).all()  # no negative conductance


def test_columnwise_scaling_maps_each_output_max_to_gmax():
    k_mat = torch.randn(OUT, IN, generator=torch.Generator().manual_seed(0))
    k_mat[1] *= 0.01  # a small row still uses the full conductance range
    for scaling in ("column", "layer"):
        layer = AnalogCrossbarDevice(**{**OFF, "weight_scaling": scaling}).layer(IN, OUT)
        layer.load_matrix(k_mat)
        g, gain = layer.conductances("nominal")
        gmax_per_row = g.amax(dim=(0, 2))
        if scaling == "column":
            assert torch.allclose(gmax_per_row, torch.ones(OUT))
            assert torch.allclose(gain.flatten(), k_mat.abs().amax(1))
        else:
            assert gmax_per_row[1].item() < 0.05
            assert torch.allclose(gain.flatten(), k_mat.abs().max().expand(OUT))
        assert torch.allclose(layer.effective_matrix(), k_mat, atol=1e-6)
        x = _x()
        assert torch.allclose(layer(x), x @ k_mat.T, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("t", [3600.0, 86400.0 * 365])
def test_drift_factor_follows_power_law(t):
    nu = 0.06
    layer, k_mat = _layer(**{**OFF, "drift_time_s": t, "drift_nu": nu, "drift_nu_std": 0.0,
                             "drift_compensation": False})
    factor = (t / T0_S) ** -nu
    assert torch.allclose(layer.effective_matrix(), k_mat * factor, atol=1e-6)
    compensated, _ = _layer(**{**OFF, "drift_time_s": t, "drift_nu": nu, "drift_nu_std": 0.0})
    assert torch.allclose(compensated.effective_matrix(), k_mat, atol=1e-6)


def test_no_drift_before_reference_time():
    layer, k_mat = _layer(**{**OFF, "drift_time_s": T0_S / 2, "drift_compensation": False})
    assert torch.allclose(layer.effective_matrix(), k_mat, atol=1e-6)


def test_drift_exponent_spread_per_device():
    t, nu, spread = 3600.0, 0.05, 0.02
    big = AnalogCrossbarDevice(**{**OFF, "drift_time_s": t, "drift_nu": nu,
                                  "drift_nu_std": spread, "drift_compensation": False})
    layer = big.layer(200, 30)
    layer.load_matrix(torch.rand(30, 200) + 0.5)
    layer.draw_instance(1)
    g_nominal, _ = layer.conductances("nominal")  # every device drifted with nu
    g, _ = layer.conductances("instance")
    on = g_nominal[0] > 0
    nus = nu - torch.log(g[0][on] / g_nominal[0][on]) / math.log(t / T0_S)
    assert nus.mean().item() == pytest.approx(nu, abs=0.002)
    assert nus.std().item() == pytest.approx(spread, rel=0.1)


def test_read_noise_matches_closed_form_per_input_vector():
    read = 0.02
    layer, k_mat = _layer(**{**OFF, "read_noise": read})
    layer.eval()
    x = _x(4000)
    nominal = layer(x)
    layer.draw_instance(3)
    noisy = layer(x)
    scale = k_mat.abs().amax(1)  # per-column mapping: row i of K to g_max
    g = (k_mat / scale[:, None]).abs()  # one device of each pair is on, the other at 0
    amax = x.abs().amax(1, keepdim=True)
    var = (x / amax) ** 2 @ (g ** (2 * READ_NOISE_EXPONENT)).T
    expected = read * var.sqrt()
    z = (noisy - nominal) / (expected * amax * scale)
    assert z.std().item() == pytest.approx(1.0, rel=0.05)
    assert z.mean().abs().item() < 0.05


def test_read_noise_is_zero_for_reset_devices():
    layer = AnalogCrossbarDevice(**{**OFF, "read_noise": 0.05}).layer(IN, OUT)
    k_mat = torch.zeros(OUT, IN)
    k_mat[:, 0] = 1.0  # only the first input's devices conduct
    layer.load_matrix(k_mat)
    layer.eval()
    x = _x()
    x[:, 0] = 0.0
    layer.draw_instance(1)
    assert torch.allclose(layer(x), torch.zeros(64, OUT), atol=1e-6)


def test_adc_output_levels_single_tile():
    layer, _ = _layer(**{**OFF, "adc_bits": 3, "tile_rows": 64})
    layer.eval()
    y = layer(_x(256, unit_rows=True)).detach()
    for col in y.T:  # one ADC grid per tile, times each column's digital out-scale
        assert len(col.unique()) <= 2**3 - 1
    assert len(y.unique()) >= 4


def test_dac_levels():
    layer, k_mat = _layer(**{**OFF, "dac_bits": 2})
    layer.eval()
    x = _x()
    amax = x.abs().amax(1, keepdim=True)
    xq = torch.round(x / amax) * amax  # 2 bits: levels -1, 0, 1 (times amax)
    assert torch.allclose(layer(x), xq @ k_mat.T, atol=1e-5, rtol=1e-5)


def test_cost_hand_count():
    dev = AnalogCrossbarDevice(tile_rows=2, tile_cols=2, dac_bits=4, adc_bits=6, read_time_ns=50.0)
    c = dev.cost(4, 3)
    assert c["n_tiles"] == 4  # 2 row tiles x 2 column tiles
    assert c["n_devices"] == 24 and c["n_cells"] == 32
    assert c["n_adc_conversions"] == 6 and c["n_dac_conversions"] == 8
    expect = 24 * CELL_READ_PJ * 4 + 8 * DAC_BIT_PJ * 4 + 6 * adc_energy_pj(6) + 3 * INT32_ADD_PJ
    assert c["energy_pj"] == pytest.approx(expect)
    assert c["latency_ns"] == pytest.approx(4 * 50.0 + 1.0)
    assert adc_energy_pj(8) == pytest.approx(1.67, rel=0.01)  # ISAAC's 8-bit ADC


def test_cost_grows_with_size_and_bits():
    dev = AnalogCrossbarDevice()
    base = dev.cost(600, 10)
    assert dev.cost(1200, 10)["n_tiles"] > base["n_tiles"]
    for field in ("adc_bits", "dac_bits"):
        more = dev.with_overrides({field: 10}).cost(600, 10)
        assert more["energy_pj"] > base["energy_pj"] and more["area_mm2"] > base["area_mm2"]
    assert dev.with_overrides({"tile_rows": 128}).cost(600, 10)["n_adc_conversions"] > (
        base["n_adc_conversions"]
    )
