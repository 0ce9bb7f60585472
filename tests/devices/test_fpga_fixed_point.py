"""fpga_fixed_point: brevitas fixed-point quantizers, fast path equivalence, QONNX, FINN costs."""

import math

import pytest

from codesign.devices.base import standalone_energy_pj
import torch

from codesign.devices.fpga_fixed_point import FPGAFixedPointDevice, export_qonnx

IN, OUT = 37, 5


def _layer(**overrides):
    layer = FPGAFixedPointDevice(**overrides).layer(IN, OUT)
    k_mat = torch.randn(OUT, IN, generator=torch.Generator().manual_seed(0)) * 0.3
    layer.load_matrix(k_mat)
    return layer, k_mat


def _x(batch=64, seed=1):
    return torch.randn(batch, IN, generator=torch.Generator().manual_seed(seed))


def _is_power_of_two(t):
    e = torch.log2(t.detach())
    return torch.equal(e, e.round())


def test_wide_fixed_point_equals_ideal():
    layer, k_mat = _layer(weight_bits=32, input_bits=32, output_bits=32)
    layer.eval()
    x = _x()
    assert torch.allclose(layer(x), x @ k_mat.T, atol=1e-5, rtol=1e-5)
    assert torch.allclose(layer.effective_matrix(), k_mat, atol=1e-7)


@pytest.mark.parametrize("bits", [3, 4])
def test_weight_quantizer_is_power_of_two_with_the_configured_width(bits):
    layer = FPGAFixedPointDevice(weight_bits=bits).layer(50, 4)
    layer.load_matrix(torch.linspace(-1, 1, 200).reshape(4, 50))  # spans every level
    qw = layer.linear.quant_weight()
    assert qw.bit_width.item() == bits
    assert _is_power_of_two(qw.scale)
    levels = (qw.value / qw.scale).detach().unique()
    assert len(levels) <= 2**bits and len(levels) == 2**bits - 1  # narrow range: symmetric
    assert torch.equal(levels, levels.round())


@pytest.mark.parametrize("bits", [3, 5])
def test_input_and_output_quantizers_are_power_of_two_with_the_configured_width(bits):
    layer, _ = _layer(input_bits=bits, output_bits=bits)
    layer.train()
    x = torch.linspace(-4, 4, 64 * IN).reshape(64, IN)  # reaches both ends of the code range
    layer(x)
    tq = layer._tensor_quant("input")
    xq, scale, _, bit_width = tq(x)
    assert bit_width.item() == bits and _is_power_of_two(scale)
    assert len((xq / scale).unique()) == 2**bits  # signed, full range
    out_tq = layer._tensor_quant("output")
    yq, out_scale, _, out_bits = out_tq(torch.linspace(-5, 5, 1000))
    assert out_bits.item() == bits and _is_power_of_two(out_scale)
    assert len((yq / out_scale).unique()) <= 2**bits


def test_fast_input_path_equals_brevitas_quant_linear():
    layer, _ = _layer(weight_bits=4, input_bits=5, output_bits=6)
    layer.train()
    for seed in range(3):  # a few training steps move the running statistics
        layer(_x(seed=seed)).sum().backward()
    layer.eval()
    x = _x(seed=9)
    assert torch.equal(layer(x), layer.linear(x))


def test_eval_without_training_calibrates_the_radix_points():
    layer, k_mat = _layer(weight_bits=16, input_bits=16, output_bits=16)
    layer.eval()
    x = _x() * 5  # far beyond the uncalibrated +-1 range
    assert torch.allclose(layer(x), x @ k_mat.T, rtol=1e-3, atol=1e-2)  # 16-bit steps ~1e-3


def test_gradients_pass_straight_through():
    layer, _ = _layer(weight_bits=2, input_bits=2, output_bits=4)
    layer.train()
    layer(_x()).sum().backward()
    assert layer.linear.weight.grad.abs().sum() > 0


def test_export_qonnx_writes_a_loadable_model_that_matches(tmp_path):
    import onnx
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx

    layer, _ = _layer(weight_bits=4, input_bits=6, output_bits=8)
    path = export_qonnx(layer, tmp_path / "student.onnx")
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    assert [n.op_type for n in model.graph.node].count("Quant") == 3
    wrapper = ModelWrapper(str(path))
    x = _x(1)
    out = execute_onnx(wrapper, {wrapper.graph.input[0].name: x.numpy()})
    layer.eval()
    expect = layer(x).detach().numpy()
    assert abs(next(iter(out.values())) - expect).max() < 1e-5


def test_cost_hand_count_matches_finn_formulas():
    dev = FPGAFixedPointDevice(weight_bits=4, input_bits=4, output_bits=8, pe=1, simd=2,
                               clock_mhz=100.0)
    c = dev.cost(4, 2)
    # MW=4, MH=2, PE=1, SIMD=2: WMEM = 4, cycles = (2/1)*(4/2) = 4
    assert c["cycles"] == 4 and c["latency_ns"] == pytest.approx(40.0)
    # acc: alpha = log2(4) + 4 + 4 - 2 = 8 -> ceil(8 + log2(1 + 2^-8) + 1) = 10
    assert c["acc_bits"] == 10
    # requant (shift, 2 rows per PE): shift amounts sb = ceil(log2(10 + 8 + 1)) = 5 bits in
    # 1 LUTRAM word group (5 LUTs), barrel shifter 10 * ceil(5/2) = 30, round + saturate 10 + 8
    # LUT = 300 + 1.1 * 1 * (mult 2*(2*2-1)*8 + adders 8*3 + acc 10 + requant 53) = 448
    assert c["lut"] == 448
    assert c["bram_18k"] == 1  # mem width 8 bits <= 9: ceil(4/2048) * ceil(8/9)
    assert c["dsp"] == 0
    d = dev.with_overrides({"mult_resource": "dsp"}).cost(4, 2)
    assert d["dsp"] == 2 and d["lut"] == int(300 + 1.1 * (24 + 10 + 53))


def test_cost_energy_and_area_hand_count():
    dev = FPGAFixedPointDevice(weight_bits=4, input_bits=4, output_bits=8, pe=1, simd=2,
                               clock_mhz=100.0)
    c = dev.cost(4, 2)
    # 8 MACs; acc 10 bits: add 0.1 pJ * 10/32 * 14 = 0.4375, 4x4 multiply 0.2 * 16/64 * 14 = 0.7
    assert c["mac_pj"] == pytest.approx(8 * (0.7 + 0.4375))
    assert c["bram_pj"] == pytest.approx(8 * 4 * 10 / 64)  # 32 weight bits at 10 pJ / 64 bits
    assert c["requant_pj"] == pytest.approx(2 * 0.4375)  # one shift (an acc-wide add) per output
    assert c["fpga_static_mw"] == c["static_power_mw"] == pytest.approx(113.0)  # xc7z020: 0.113 W, held
    assert c["energy_pj"] == pytest.approx(9.1 + 5.0 + 0.875)  # dynamic only
    assert c["bram_pj_at_ds512_bound"] == pytest.approx(32 * 21e-3 / 300e6 * 1e12 / 36)  # the bound beside it
    # 2 MAC units: 4x4 multiplier 282 um^2 * 16/64 and 10-bit add 137 * 10/32, both x35; 1 BRAM18
    assert c["area_mm2"] == pytest.approx((2 * (282 * 16 / 64 + 137 * 10 / 32) * 35 + 18432 * 0.346) * 1e-6)
    d = dev.with_overrides({"mult_resource": "dsp"}).cost(4, 2)
    # a DSP48 multiply at 7x Horowitz, the adder tree still in LUTs (14x)
    assert d["mac_pj"] == pytest.approx(8 * (0.2 * 16 / 64 * 7 + 0.4375))
    # the DSP48E1's full 25 x 18 multiplier at 5x the ASIC area, the adder at 35x
    dsp_um2 = 2 * (282 * 25 * 18 / 64 * 5 + 137 * 10 / 32 * 35) + 18432 * 0.346
    assert d["area_mm2"] == pytest.approx(dsp_um2 * 1e-6)
    assert d["energy_pj"] < c["energy_pj"] and d["area_mm2"] != c["area_mm2"]


def test_energy_components_sum_and_static_power_dominates_at_the_defaults():
    dev = FPGAFixedPointDevice()
    c = dev.cost(862, 10)
    parts = ("mac_pj", "bram_pj", "requant_pj")
    assert sum(c[k] for k in parts) == pytest.approx(c["energy_pj"])
    assert FPGAFixedPointDevice.conversion_keys == ()
    # PE 2 x SIMD 16 at 200 MHz: (10/2) * (864/16) = 270 cycles = 1.35 us of 0.113 W static
    assert c["latency_ns"] == c["interval_ns"] == pytest.approx(1350.0)
    static_pj = standalone_energy_pj(c) - c["energy_pj"]
    assert static_pj == pytest.approx(0.113 * 1350.0 * 1e3)
    assert static_pj > c["mac_pj"] + c["bram_pj"]  # the audit's point: static dominates
    # energy per MAC at the defaults (862 x 10, 8-bit, LUT multipliers): 22.85 pJ. The cited
    # figures bound it: MAC 1.95-3.89 pJ (Horowitz x 7..14, Kuon & Rose), weight reads
    # 1.25-15.5 pJ (8 bits at 0.156 pJ/bit Horowitz .. 1.94 pJ/bit DS512) and 17.7 pJ of static
    # power (0.113 W x 1.35 us / 8620 MACs): 20.9 .. 37.1 pJ/MAC
    from codesign.devices.fpga_fixed_point import BRAM_PJ_PER_BIT_DS512

    assert BRAM_PJ_PER_BIT_DS512 == pytest.approx(1.944, rel=1e-3)
    per_mac = standalone_energy_pj(c) / (862 * 10)
    assert per_mac == pytest.approx(22.854, rel=1e-3)
    assert 20.9 < per_mac < 37.1
    dsp = dev.with_overrides({"mult_resource": "dsp"}).cost(862, 10)
    assert standalone_energy_pj(dsp) / (862 * 10) == pytest.approx(21.451, rel=1e-3)
    assert dsp["lut"] < c["lut"] and dsp["dsp"] == 32


def test_static_energy_follows_the_part_and_the_override():
    from codesign.errors import ConfigError

    dev = FPGAFixedPointDevice()
    assert dev.with_overrides({"static_power_w": 0.5}).cost(862, 10)["fpga_static_mw"] == pytest.approx(500.0)
    # a part without a cited static power needs the figure from the user
    with pytest.raises(ConfigError, match="static_power_w"):
        dev.with_overrides({"part": "xczu3eg"})
    ultra96 = dev.with_overrides({"part": "xczu3eg", "static_power_w": 0.3})
    assert ultra96.cost(862, 10)["fpga_static_mw"] == pytest.approx(300.0)
    # a part without a rated power is not checked unless max_power_w is given
    assert ultra96.power_feasibility(10_000.0, 1.0) == []
    assert ultra96.with_overrides({"max_power_w": 5.0}).power_feasibility(10_000.0, 1.0)
    with pytest.raises(ConfigError, match="part"):
        dev.with_overrides({"part": "xc9000"})


def test_threshold_requantizer_matches_finn_lut_estimation():
    # FINN lut_estimation with thresholds in LUTRAM: (2^B - 1) * acc * ceil(TMEM / 64) + (2^B - 1) * acc
    dev = FPGAFixedPointDevice(weight_bits=2, input_bits=2, output_bits=2, pe=4, simd=16,
                               requant="thresholds")
    c = dev.cost(64, 64)
    # acc 10; per PE: mult 16 * 1 * 4 + adders 4 * 31 + acc 10 + thresholds 3 * 10 * 1 + comparators 3 * 10
    assert c["lut"] == int(300 + 1.1 * 4 * (64 + 124 + 10 + 30 + 30))
    shift = dev.with_overrides({"requant": "shift"}).cost(64, 64)
    # shift: 16 rows per PE, sb = ceil(log2(10 + 2 + 1)) = 4: 4 LUTRAM + 10 * 2 mux + 10 + 2
    assert shift["lut"] == int(300 + 1.1 * 4 * (64 + 124 + 10 + 4 + 20 + 12))
    assert c["requant_pj"] == pytest.approx(3 * shift["requant_pj"])  # 3 compares vs 1 add per output


def test_feasibility_against_the_part_budget():
    dev = FPGAFixedPointDevice()
    assert dev.feasibility(862, 10) == []
    # a PE beyond the matrix's 10 rows is padded (to 16 rows), not refused, as long as it fits
    padded = dev.with_overrides({"pe": 16, "simd": 8})
    assert padded.cost(862, 10)["cycles"] == 1 * 108 and padded.feasibility(862, 10) == []
    huge = dev.with_overrides({"pe": 64, "simd": 512})
    reasons = huge.feasibility(862, 10)
    assert len(reasons) == 2
    lut, bram = reasons
    # (acc 26 bits; the per-row shift requantizer: 6 + 26 * 3 + 26 + 8 = 118 LUTs per PE)
    assert "LUTs" in lut and "4046328" in lut and "53200" in lut and "xc7z020" in lut
    assert "pe" in lut and "part" in lut
    assert "RAMB18" in bram and "7282" in bram and "280" in bram
    # the same design fits the VU9P's budget except its BRAM18s
    vu9p = huge.with_overrides({"part": "xcvu9p", "static_power_w": 3.0}).feasibility(862, 10)
    assert len(vu9p) == 2 and "1182240" in vu9p[0] and "4320" in vu9p[1]
    dsp = dev.with_overrides({"mult_resource": "dsp", "pe": 10, "simd": 32})  # 320 DSPs > 220
    (reason,) = dsp.feasibility(862, 10)
    assert "DSP48" in reason and "320" in reason and "220" in reason and "mult_resource" in reason
    assert dsp.with_overrides({"part": "xczu3eg", "static_power_w": 0.3}).feasibility(862, 10) == []


def test_cost_pads_to_the_folding():
    dev = FPGAFixedPointDevice(pe=4, simd=8)
    assert dev.cost(861, 10)["cycles"] == math.ceil(10 / 4) * math.ceil(861 / 8)


def test_cost_grows_with_size_and_bits():
    dev = FPGAFixedPointDevice()
    base = dev.cost(400, 10)
    assert dev.cost(800, 10)["cycles"] > base["cycles"]
    for field in ("weight_bits", "input_bits", "output_bits"):
        more = dev.with_overrides({field: 12}).cost(400, 10)
        assert more["lut"] > base["lut"], field
    wide = dev.with_overrides({"weight_bits": 16, "input_bits": 16}).cost(400, 10)
    assert wide["energy_pj"] > base["energy_pj"] and wide["bram_18k"] >= base["bram_18k"]
    faster = dev.with_overrides({"simd": 64}).cost(400, 10)
    assert faster["latency_ns"] < base["latency_ns"] and faster["lut"] > base["lut"]


def test_inputs_that_require_gradients_take_brevitas_own_path():
    layer, _ = _layer(weight_bits=6, input_bits=6, output_bits=8)
    layer.eval()
    x = _x()
    fast = layer(x)
    x.requires_grad_(True)
    slow = layer(x)
    assert torch.allclose(fast, slow, atol=1e-6)
    slow.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_input_radix_point_from_the_999th_percentile_so_outliers_saturate():
    from codesign.devices.fpga_fixed_point import FPGAFixedPointDevice

    layer = FPGAFixedPointDevice(weight_bits=8, input_bits=4).layer(100, 3)
    layer.load_matrix(torch.eye(3, 100))
    x = torch.randn(4000, 100, generator=torch.Generator().manual_seed(0))
    x[0, 0] = 50.0  # one outlier must not set the range
    layer.eval()
    with torch.no_grad():
        layer(x)  # calibration pass (the layer was never trained)
        codes, scale = layer._quantized_input(x)
    q999 = x.abs().flatten().kthvalue(int(0.999 * x.numel())).values
    assert scale.item() == 2.0 ** math.ceil(math.log2(q999.item() / 7))  # 4-bit signed: 7 levels up
    assert codes[0, 0].item() == 7.0  # saturated


def test_weights_use_one_power_of_two_scale_per_output_row():
    from codesign.devices.fpga_fixed_point import FPGAFixedPointDevice

    layer = FPGAFixedPointDevice(weight_bits=4, input_bits=8).layer(64, 2)
    k_mat = torch.randn(2, 64, generator=torch.Generator().manual_seed(0))
    k_mat[1] *= 0.01
    layer.load_matrix(k_mat)
    scale = layer.linear.quant_weight().scale.flatten()
    assert scale.shape == (2,)
    assert torch.allclose(torch.log2(scale), torch.log2(scale).round())
    assert scale[1] < scale[0] / 32  # the small row gets its own fine grid
    w = layer.effective_matrix()
    assert (w[1] != 0).sum() > 32  # and is not rounded away
