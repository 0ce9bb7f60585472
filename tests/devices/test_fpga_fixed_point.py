"""fpga_fixed_point: brevitas fixed-point quantizers, fast path equivalence, QONNX, FINN costs."""

import math

import pytest
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
    # LUT = 300 + 1.1 * 1 * (mult 2*(2*2-1)*8 + adders 8*3 + acc 10 + requant 10+8) = 410
    assert c["lut"] == 410
    assert c["bram_18k"] == 1  # mem width 8 bits <= 9: ceil(4/2048) * ceil(8/9)
    assert c["dsp"] == 0
    d = dev.with_overrides({"mult_resource": "dsp"}).cost(4, 2)
    assert d["dsp"] == 2 and d["lut"] == int(300 + 1.1 * (24 + 10 + 18))


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
