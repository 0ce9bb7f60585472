"""analog_crossbar as chips build it (issue 27): sliced weights, several devices per weight,
bit-serial inputs simulated per input bit, shared ADCs, calibrated input ranges, per-read
weight noise, drift compensation by reference reads, and the read time training simulates.

Every count the cost model prices is the count the layer simulates (instrumented here).
"""

import math

import pytest
import torch

from codesign.devices.analog_crossbar import (
    RERAM_WAN2022_PROG_AT_HALF,
    AnalogCrossbarDevice,
    prog_noise_std,
)
from codesign.devices.base import Mode
from codesign.devices.testing import check_device
from codesign.errors import ConfigError

QUIET = dict(prog_noise=0.0, read_noise=0.0, out_noise=0.0, wire_resistance_ohm=0.0, drift_nu=0.0,
             drift_nu_std=0.0, drift_model="constant")


def _k(out=6, n_in=40, seed=0):
    return torch.randn(out, n_in, generator=torch.Generator().manual_seed(seed)) * 0.3


def _x(batch=200, n_in=40, seed=1):
    return torch.randn(batch, n_in, generator=torch.Generator().manual_seed(seed))


def _nominal(device, k, x):
    layer = device.layer(k.shape[1], k.shape[0])
    layer.load_matrix(k)
    layer.eval()
    with torch.no_grad():
        return layer(x), layer


# --------------------------------------------------------------------------- contract
@pytest.mark.parametrize("overrides", [
    {"weight_slices": 4, "bits_per_cell": 2, "input_encoding": "bit_serial", "dac_bits": 6, "adc_share": 8,
     "w_noise": 0.01, "drift_compensation_type": "column", "tile_rows": 64, "tile_cols": 16},
    {"devices_per_polarity": 2, "pair_significance": 2.0, "input_range": "calibrated", "train_read_time": "range"},
])
def test_check_device_passes_with_the_new_fields(overrides):
    check_device(AnalogCrossbarDevice(**overrides))


def test_new_fields_are_validated_with_the_field_named():
    for bad in ({"weight_slices": 0}, {"devices_per_polarity": 3}, {"adc_share": 0}, {"w_noise": -1.0},
                {"input_range": "minmax"}, {"train_read_time": "later"}, {"prog_noise_model": "flash"},
                {"drift_compensation_type": "row"}, {"adc_energy_scale": -1.0}, {"periphery_static_mw": -1.0}):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            AnalogCrossbarDevice(**bad)
    with pytest.raises(ConfigError, match="train_read_time_max_s"):
        AnalogCrossbarDevice(train_read_time_min_s=10.0, train_read_time_max_s=1.0)
    # with slices the pairs of a slice are equal: the slices carry the significance
    assert AnalogCrossbarDevice(weight_slices=2, devices_per_polarity=2, pair_significance=2.0).config.pair_factors() \
        == (1.0, 1.0)
    # a saved config's conductance_bits is read as bits_per_cell
    assert AnalogCrossbarDevice.Config.from_dict({"conductance_bits": 3}).bits_per_cell == 3


# --------------------------------------------------------------------------- weights over devices
def test_slices_hold_the_base_four_digits_and_shift_add_to_a_16_bit_weight():
    dev = AnalogCrossbarDevice(bits_per_cell=2, weight_slices=8, adc_bits=24, dac_bits=24, **QUIET)
    k = _k()
    layer = dev.layer(40, 6)
    layer.load_matrix(k)
    g, _ = layer.device_conductances(Mode.NOMINAL)
    assert g.shape == (2, 1, 8, 6, 40)
    assert set((g * 3).round().unique().tolist()) <= {0.0, 1.0, 2.0, 3.0}  # 2-bit cells
    assert torch.equal(g * 3, (g * 3).round())
    scale = k.abs().amax(1, keepdim=True)
    digits = (g[0, 0] - g[1, 0]) * 3  # [slice, out, in], signed digits
    mag = sum(digits[s] * 4.0**s for s in range(8))
    assert torch.equal(mag, torch.round((k / scale).double() * 65535).float())  # 16-bit magnitude, sign by polarity
    eff = layer.effective_matrix()
    assert (eff - k).abs().max() <= 0.51 * scale.max() / 65535 * 1.0001
    # one slice of 2 bits: levels -3..3 only
    coarse = AnalogCrossbarDevice(bits_per_cell=2, **QUIET).layer(40, 6)
    coarse.load_matrix(k)
    assert (coarse.effective_matrix() - k).abs().max() > 100 * (eff - k).abs().max()


def test_two_pairs_fill_the_first_then_the_second_aihwkit_npair():
    dev = AnalogCrossbarDevice(bits_per_cell=2, devices_per_polarity=2, pair_significance=1.0, **QUIET)
    layer = dev.layer(4, 1)
    layer.load_matrix(torch.tensor([[1.0, 0.5, 1 / 6, -0.7]]))
    g, _ = layer.device_conductances(Mode.NOMINAL)
    # x = |w| / max * (1 + F) = 2, 1, 1/3, 1.4 in units of one device at g_max
    assert g[0, :, 0, 0].T.reshape(-1).tolist() == pytest.approx([1, 1, 1, 0, 1 / 3, 0, 0, 0])
    assert g[1, :, 0, 0, 3].tolist() == pytest.approx([1.0, 1 / 3])  # negative: G- devices, 1 + 0.4 -> 1/3
    assert layer.effective_matrix()[0].tolist() == pytest.approx([1.0, 0.5, 1 / 6, -2 / 3])
    # a significance F: the second pair counts F times (aihwkit f_lst = [1, F])
    dev3 = AnalogCrossbarDevice(bits_per_cell=4, devices_per_polarity=2, pair_significance=3.0, **QUIET)
    layer3 = dev3.layer(3, 1)
    layer3.load_matrix(torch.tensor([[1.0, 0.2, 0.6]]))
    g3, _ = layer3.device_conductances(Mode.NOMINAL)
    assert g3[0, :, 0, 0, 0].tolist() == pytest.approx([1.0, 1.0])
    assert g3[0, 1, 0, 0, 1].item() == 0.0  # 0.2 x 4 = 0.8 fits the first pair
    assert (layer3.effective_matrix() - torch.tensor([[1.0, 0.2, 0.6]])).abs().max() < 1 / 15


def test_four_devices_per_weight_are_priced_and_hermes_has_them():
    one = AnalogCrossbarDevice().cost(256, 10)
    two = AnalogCrossbarDevice(devices_per_polarity=2).cost(256, 10)
    assert two["n_devices"] == 2 * one["n_devices"] == 4 * 2560
    assert two["n_cells"] == 2 * one["n_cells"]
    assert two["array_pj"] == pytest.approx(2 * one["array_pj"])
    assert AnalogCrossbarDevice.from_preset("ibm_hermes").config.devices_per_polarity == 2


# --------------------------------------------------------------------------- inputs as applied
@pytest.mark.parametrize("code", ["sign_magnitude", "twos_complement"])
def test_bit_serial_and_pulse_width_differ_when_the_adc_is_coarse(code):
    """Same layer, same inputs: with a 4-bit ADC the bit-serial read quantizes every bit plane's
    partial sum and the pulse-width read the whole sum, so the outputs differ; with a fine ADC
    both are the product of the quantized inputs."""
    k, x = _k(), _x()
    fine = dict(QUIET, dac_bits=6, adc_bits=24, input_code=code)
    y_pw, _ = _nominal(AnalogCrossbarDevice(input_encoding="pulse_width", **fine), k, x)
    y_bs, _ = _nominal(AnalogCrossbarDevice(input_encoding="bit_serial", **fine), k, x)
    assert torch.allclose(y_pw, y_bs, atol=1e-4, rtol=1e-4)
    coarse = dict(fine, adc_bits=4)
    c_pw, _ = _nominal(AnalogCrossbarDevice(input_encoding="pulse_width", **coarse), k, x)
    c_bs, _ = _nominal(AnalogCrossbarDevice(input_encoding="bit_serial", **coarse), k, x)
    diff = (c_pw - c_bs).abs().mean() / y_pw.abs().mean()
    assert diff > 0.02
    # and each is off the fine product by the coarse ADC
    assert (c_pw - y_pw).abs().mean() > 0.01 * y_pw.abs().mean()
    assert (c_bs - y_pw).abs().mean() > 0.01 * y_pw.abs().mean()


def test_bit_serial_output_noise_is_drawn_per_input_bit():
    """Output noise per conversion: bit-serial adds sum_k 4^k sigma^2 over the planes (the shift
    weights), pulse-width one sigma^2 at full scale: the ratio of stds is measured."""
    k, x = _k(out=4, n_in=30), _x(batch=3000, n_in=30)
    base = dict(QUIET, dac_bits=4, adc_bits=24, out_noise=0.05, drift_compensation=False)
    stds = {}
    for enc, code in (("pulse_width", "sign_magnitude"), ("bit_serial", "sign_magnitude"),
                      ("bit_serial", "twos_complement")):
        dev = AnalogCrossbarDevice(input_encoding=enc, input_code=code, **base)
        ref, layer = _nominal(dev, k, x)
        layer.adc_range.value.mul_(10)  # calibrated on the noise-free read: room for the noise
        layer.draw_instance(3)
        with torch.no_grad():
            stds[enc, code] = ((layer(x) - ref) / x.abs().amax(1, keepdim=True)).std().item()
    # per unit of the digital input scale: pulse-width sigma / 1 (code 7 = full drive, lsb 1/7);
    # sign-magnitude planes 1, 2, 4 times lsb 1/7: sigma sqrt(1 + 4 + 16) / 7; two's complement
    # planes 1, 2, 4, -8: sigma sqrt(85) / 7
    pw = stds["pulse_width", "sign_magnitude"]
    assert stds["bit_serial", "sign_magnitude"] / pw == pytest.approx(math.sqrt(21) / 7, rel=0.1)
    assert stds["bit_serial", "twos_complement"] / pw == pytest.approx(math.sqrt(85) / 7, rel=0.1)


def _count_conversions(layer, x):
    """ADC conversions of one read of ``x``, counted where the layer quantizes (per input row)."""
    seen = []
    original = layer._adc

    def counting(y):
        seen.append(y[..., 0, 0].numel() * y.shape[-1] * y.shape[-2])
        return original(y)

    layer._adc = counting
    with torch.no_grad():
        layer(x)
    return sum(seen) / x.shape[0]


@pytest.mark.parametrize("overrides", [
    {"input_encoding": "bit_serial", "dac_bits": 5, "weight_slices": 3, "bits_per_cell": 2, "tile_rows": 16,
     "tile_cols": 9},
    {"input_encoding": "bit_serial", "input_code": "twos_complement", "dac_bits": 5, "tile_rows": 16, "adc_share": 3},
    {"input_encoding": "pulse_width", "weight_slices": 2, "tile_rows": 16, "tile_cols": 4, "adc_share": 2},
    {},
])
def test_cost_conversion_count_equals_the_simulated_one(overrides):
    dev = AnalogCrossbarDevice(**overrides)
    layer = dev.layer(37, 5)
    layer.load_matrix(_k(5, 37))
    layer.eval()
    simulated = _count_conversions(layer, _x(8, 37))
    assert simulated == dev.cost(37, 5)["n_adc_conversions"] == dev.conversions(37, 5)


def test_isaac_counts_eight_slices_and_one_conversion_per_input_bit_per_slice():
    dev = AnalogCrossbarDevice.from_preset("isaac")
    cfg = dev.config
    # 16 magnitude bits, sign by polarity: 16 cycles
    assert (cfg.bits_per_cell, cfg.weight_slices, cfg.cycles, cfg.adc_bits, cfg.adc_share) == (2, 8, 16, 8, 128)
    assert cfg.input_encoding == "bit_serial" and cfg.prog_noise_model == "reram_wan2022"
    assert cfg.drift_nu == 0.0 and cfg.w_noise == 0.01
    c = dev.cost(861, 10)
    row_tiles = math.ceil(861 / 128)
    assert c["n_devices"] == 2 * 8 * 861 * 10  # eight slices per weight, a pair each
    assert c["n_columns"] == row_tiles * 10 * 8
    assert c["n_adc_conversions"] == row_tiles * 10 * 8 * 16  # per input bit per slice column
    assert c["n_adcs"] == c["n_tiles"]  # one shared ADC per crossbar
    assert c["n_tiles"] == row_tiles * 1  # 16 outputs of 8 slices per 128 columns
    layer = dev.layer(861, 10)
    layer.load_matrix(_k(10, 861))
    layer.eval()
    assert _count_conversions(layer, _x(2, 861)) == c["n_adc_conversions"]


def test_adc_sharing_sets_latency_and_area():
    base = AnalogCrossbarDevice(input_encoding="bit_serial", input_code="twos_complement", tile_cols=128, tile_rows=128)
    shared = base.with_overrides({"adc_share": 128})
    a, b = base.cost(128, 128), shared.cost(128, 128)
    assert a["n_adcs"] == 128 and b["n_adcs"] == 1
    assert b["area_mm2"] < a["area_mm2"]
    assert a["latency_ns"] == pytest.approx(8 * 100.0)  # the 100 ns read cycle
    assert b["latency_ns"] == pytest.approx(8 * 128 / 1.2)  # 128 conversions at 1.2 GS/s per bit
    assert b["n_adc_conversions"] == a["n_adc_conversions"]
    pw = AnalogCrossbarDevice(adc_share=4).cost(100, 10)
    assert pw["latency_ns"] == pytest.approx(128 + 3 / 1.2)


# --------------------------------------------------------------------------- input range
def test_calibrated_input_range_clips_at_the_percentile_and_is_priced_without_the_max():
    dev = AnalogCrossbarDevice(input_range="calibrated", input_percentile=99.0, dac_bits=8, adc_bits=24, **QUIET)
    layer = dev.layer(40, 6)
    layer.load_matrix(_k())
    x = _x(500)
    layer.train()
    layer(x)
    want = torch.quantile(x.abs().reshape(-1), 0.99).item()
    assert layer.input_range.value.item() == pytest.approx(want, rel=0.01)
    layer.eval()
    big = x.clone()
    big[:, 0] = 100.0  # an outlier is clipped at the range
    layer.adc_range.value.mul_(4)  # room in the ADC for the clipped outlier's larger sums
    with torch.no_grad():
        y = layer(big)
    r = layer.input_range.value
    clipped = torch.round((big / r).clamp(-1, 1) * 127) / 127 * r  # clipped, then the 8-bit DAC
    assert torch.allclose(y, clipped @ layer.effective_matrix().T, rtol=1e-4, atol=1e-4)
    a = AnalogCrossbarDevice().cost(100, 10)["scaling_pj"]
    b = dev.cost(100, 10)["scaling_pj"]
    assert a - b == pytest.approx(100 * 0.1 * 8 / 32)  # the per-vector max's compares


# --------------------------------------------------------------------------- per-read weight noise
def test_w_noise_is_output_noise_w_times_the_input_norm():
    k, x = _k(out=3, n_in=50), torch.ones(4000, 50)
    dev = AnalogCrossbarDevice(w_noise=0.02, dac_bits=16, adc_bits=24, drift_compensation=False, **QUIET)
    ref, layer = _nominal(dev, k, x)
    layer.adc_range.value.mul_(10)  # calibrated on the noise-free read: room for the noise
    layer.draw_instance(0)
    with torch.no_grad():
        err = (layer(x) - ref) / k.abs().amax(1)  # in units of g_max at full-scale input
    assert err.std().item() == pytest.approx(0.02 * math.sqrt(50), rel=0.05)


# --------------------------------------------------------------------------- IR drop direction
def test_ir_drop_runs_along_the_bit_lines():
    """The drop of an output depends on where its inputs sit along the output's bit line (the row
    index j in the tile), not on the output's column: aihwkit applyIrDrop, README."""
    n = 64
    dev = AnalogCrossbarDevice(tile_rows=n, tile_cols=8, wire_resistance_ohm=5.0, dac_bits=16, adc_bits=24,
                               drift_compensation=False, **{k: v for k, v in QUIET.items() if k != "wire_resistance_ohm"})
    k = torch.full((4, n), 0.5)
    layer = dev.layer(n, 4)
    layer.load_matrix(k)
    layer.eval()
    drops = []
    for row in (0, n // 2, n - 1):
        x = torch.zeros(1, n)
        x[0, row] = 1.0
        x[0, (row + 1) % n] = 0.0
        with torch.no_grad():
            y = layer(x)
        drops.append((x @ k.T - y)[0])
    assert drops[0].abs().max() < 1e-6  # at the row j = 0 nothing drops
    assert (drops[2] > drops[1]).all() and (drops[1] > 0).all()
    assert torch.allclose(drops[2], drops[2][0].expand(4))  # the same for every column


# --------------------------------------------------------------------------- drift compensation
def test_compensation_reads_a_reference_through_the_noisy_periphery():
    k = _k(out=8, n_in=100)
    base = dict(drift_model="constant", drift_nu=0.06, drift_nu_std=0.0, prog_noise=0.0, read_noise=0.0,
                wire_resistance_ohm=0.0, adc_bits=8)
    t = 86400.0
    drift = ((t + 20.0) / 20.0) ** -0.06
    quiet = AnalogCrossbarDevice(out_noise=0.0, **base).layer(100, 8)
    quiet.load_matrix(k)
    quiet.set_inference_time(t)
    _, gain_q = quiet.conductances(Mode.NOMINAL)
    scale = k.abs().amax(1, keepdim=True)
    assert torch.allclose(gain_q, scale / drift, rtol=0.01)  # the drift is undone through the ADC
    noisy = AnalogCrossbarDevice(out_noise=0.5, **base).layer(100, 8)
    noisy.load_matrix(k)
    noisy.set_inference_time(t)
    gains = []
    for seed in (0, 1):
        noisy.draw_instance(seed)
        gains.append(noisy.conductances(Mode.INSTANCE)[1])
    assert not torch.equal(gains[0], gains[1])  # each chip reads its own noisy reference
    assert torch.allclose(gains[0], scale / drift, rtol=0.05)


def test_per_column_compensation_undoes_column_drift_that_the_global_gain_cannot():
    k = torch.ones(6, 200)  # positive weights: G+ carries every column, one conductance per column
    k[:3] *= 5 / 255  # three columns at level 5 of 255: they drift faster under the PCM model (nu 0.086)
    out = {}
    for kind in ("global", "column"):
        dev = AnalogCrossbarDevice(drift_compensation_type=kind, prog_noise=0.0, read_noise=0.0, out_noise=0.0,
                                   bits_per_cell=8,
                                   wire_resistance_ohm=0.0, adc_bits=12, weight_scaling="layer")
        layer = dev.layer(200, 6)
        layer.load_matrix(k)
        layer.set_inference_time(3.15e7)
        out[kind] = ((layer.effective_matrix() - k).abs().sum(1) / k.abs().sum(1))
    # per column: left with the ADC step of the low columns' reference read (one 12-bit range for all)
    assert out["column"].max() < 0.02 < 0.1 < out["global"].max()


def test_training_is_independent_of_global_compensation():
    k, x = _k(), _x()
    outs = []
    for comp in (True, False):
        dev = AnalogCrossbarDevice(drift_compensation=comp)
        layer = dev.layer(40, 6)
        layer.load_matrix(k)
        layer.set_inference_time(86400.0)
        layer.train()
        torch.manual_seed(5)
        outs.append(layer(x).detach())
    assert torch.equal(outs[0], outs[1])


# --------------------------------------------------------------------------- training read time
def test_training_reads_the_chip_at_the_evaluation_time_a_fixed_time_or_a_range():
    layer = AnalogCrossbarDevice().layer(10, 2)
    layer.set_inference_time(3.15e7)
    layer.train()
    assert layer.drift_time_s() == 3.15e7  # train_read_time="eval" (default)
    fixed = AnalogCrossbarDevice(train_read_time="fixed", train_drift_time_s=60.0).layer(10, 2)
    fixed.set_inference_time(3.15e7)
    assert fixed.drift_time_s(Mode.TRAINING) == 60.0 and fixed.drift_time_s(Mode.NOMINAL) == 3.15e7
    ranged = AnalogCrossbarDevice(train_read_time="range", train_read_time_min_s=10.0,
                                  train_read_time_max_s=1e6).layer(10, 2)
    torch.manual_seed(0)
    times = [ranged.drift_time_s(Mode.TRAINING) for _ in range(400)]
    assert 10.0 <= min(times) < 100.0 and 1e5 < max(times) <= 1e6
    # log-uniform in t + t0: about half the draws below the geometric middle
    middle = math.sqrt((10.0 + 20.0) * (1e6 + 20.0)) - 20.0
    assert 0.4 < sum(t < middle for t in times) / len(times) < 0.6


def test_distill_trains_for_the_eval_time(monkeypatch, digits_teacher):
    """Instrumented: every training read of an aware run with --eval-time 1y is at 1 y."""
    from codesign.devices.analog_crossbar import AnalogCrossbarLayer
    from codesign.distill import DistillConfig, Workspace, run_distill
    from codesign.students import FitConfig

    seen = []
    original = AnalogCrossbarLayer.drift_time_s

    def recording(self, mode=None):
        t = original(self, mode)
        if (self.mode if mode is None else mode) is Mode.TRAINING:
            seen.append((self, t))  # the layer itself: ids of freed layers are reused
        return t

    monkeypatch.setattr(AnalogCrossbarLayer, "drift_time_s", recording)
    cfg = DistillConfig(device="analog_crossbar", pca_rank=6, protocol="aware", hw_draws=1, eval_time_s="1y",
                        fit=FitConfig(method="kd", temperature=2.0, alpha=0.9, aware_steps=3))
    result = run_distill(cfg, Workspace(verbose=False))
    trained = [t for who, t in seen if who is result.layer]  # not the contract probe's layer
    assert len(trained) >= 3 and set(trained) == {31_557_600.0}
    assert result.metrics["eval_time_s"] == 31_557_600.0
    # a search's trials are run_distill runs of its trial_base: they train for its --eval-time too
    from codesign.search.config import SearchConfig

    base = SearchConfig(device="analog_crossbar", protocol="aware", eval_time_s="1y").trial_base()
    assert base.eval_time_s == 31_557_600.0 and base.protocol == "aware"


def test_reram_programming_noise_follows_wan_2022():
    g = torch.tensor([0.0, 0.5, 1.0])
    std = prog_noise_std(g, RERAM_WAN2022_PROG_AT_HALF, "reram_wan2022")
    assert std.tolist() == pytest.approx([0.348 / 40, 2.0229 / 40, 1.103 / 40], rel=1e-3)
