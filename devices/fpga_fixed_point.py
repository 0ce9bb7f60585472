"""FPGA fixed-point matrix-vector unit, simulated with brevitas and costed with FINN's models.

The layer is a ``brevitas.nn.QuantLinear`` whose weights, inputs and outputs are quantized to
signed fixed point (power-of-two scales, i.e. a binary radix point) with the configured bit
widths: brevitas's ``Int8WeightPerChannelFixedPointMSE`` (narrow range, one power-of-two scale
per output row initialised to minimise the quantization MSE, so outlier weights saturate) and
``Int8ActPerTensorFixedPoint``-based activation quantizers (power-of-two scale from runtime
statistics: the 99.9th percentile of the inputs, the abs-max of the outputs), with
``bit_width`` overridden. Fixed-point hardware
has no analog noise, so every instance is identical and eval is deterministic.

The cost model is FINN's matrix-vector-activation unit (MVAU) with ``PE`` output and ``SIMD``
input parallelism: the LUT model of FINN-R (Blott et al., ACM TRETS 2018) and the BRAM18 and
DSP models exactly as in FINN's ``MVAU_hls.lut_estimation``, ``MVAU.bram_estimation`` and
``MVAU_hls.dsp_estimation``; ``PE * SIMD`` DSPs equals hls4ml's ``n_in * n_out / reuse_factor``.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from brevitas.inject.enum import ScalingImplType, StatsOp
from brevitas.nn import QuantLinear
from brevitas.quant import Int8ActPerTensorFixedPoint
from brevitas.quant.fixed_point import Int8WeightPerChannelFixedPointMSE

from codesign.errors import check_choice, check_range

from .base import Device, DeviceConfig, DeviceLayer, IntRange, Preset, SearchSpec, preset_table

# Horowitz, ISSCC 2014 (45 nm): 8x8-bit multiply 0.2 pJ / 282 um^2 (array multiplier energy and
# area ~ product of the widths), 32-bit add 0.1 pJ / 137 um^2 (~ width).
MULT_8X8_PJ, MULT_8X8_UM2 = 0.2, 282.0
ADD_32_PJ, ADD_32_UM2 = 0.1, 137.0
# Kuon & Rose, "Measuring the gap between FPGAs and ASICs", IEEE TCAD 2007: soft logic needs
# ~35x the area and ~14x the dynamic power of a standard-cell ASIC.
FPGA_AREA_GAP, FPGA_ENERGY_GAP = 35.0, 14.0
BRAM_PJ_PER_BIT = 10.0 / 64  # 64-bit read from an 8 KB SRAM: 10 pJ (Horowitz 2014)
SRAM_BITCELL_UM2 = 0.346  # 45 nm 6T cell (Mistry et al., IEDM 2007)
BRAM18_BITS = 18 * 1024


class FixedPointActQuant(Int8ActPerTensorFixedPoint):
    """brevitas's signed fixed-point activation quantizer with a running abs-max radix point.

    Same quantizer as ``Int8ActPerTensorFixedPoint`` (signed, ``2**bits`` levels, power-of-two
    scale), but the scale comes from runtime statistics (abs-max, running average for eval)
    instead of a learned parameter: an FPGA datapath's radix point is a design-time constant,
    the power-of-two restriction then holds in every phase (brevitas's learned variant returns
    raw statistics during its first 300 training steps), and no gradient has to flow through the
    full input tensor to a scale parameter.
    """

    scaling_impl_type = ScalingImplType.STATS
    scaling_stats_op = StatsOp.MAX


#: Entries of a training batch the input's percentile statistic is taken on.
STATS_SAMPLE = 1 << 16


class FixedPointInputQuant(FixedPointActQuant):
    """The input quantizer: radix point from the 99.9th percentile of ``|x|``, outliers saturate.

    Standardized features are heavy-tailed (``|x|`` > 10 in a few entries): an abs-max radix
    point leaves a 4-bit grid with almost no levels for the typical ``|x| ~ 1``. Calibrating the
    range on a high percentile and clipping beyond it is brevitas's own default for activations
    (``ParamFromRuntimePercentileScaling``, ``scaling_stats_op = StatsOp.PERCENTILE``; 99.9 is
    the percentile of Wu et al., "Integer quantization for deep learning inference", NVIDIA 2020,
    and of TensorRT's percentile calibrator). The scale is still rounded up to a power of two.
    """

    scaling_stats_op = StatsOp.PERCENTILE
    high_percentile_q = 99.9


@dataclass(frozen=True)
class FPGAFixedPointConfig(DeviceConfig):
    """Configuration of :class:`FPGAFixedPointDevice` (defaults: an 8-bit FINN MVAU at 200 MHz)."""

    weight_bits: int = field(default=8, metadata={"doc": "signed fixed-point weight width, bits"})
    input_bits: int = field(default=8, metadata={"doc": "signed fixed-point input width, bits"})
    output_bits: int = field(
        default=8, metadata={"doc": "signed fixed-point output width (requantized), bits"}
    )
    clock_mhz: float = field(default=200.0, metadata={"doc": "fabric clock, MHz"})
    pe: int = field(default=2, metadata={"doc": "FINN PE: output rows computed in parallel"})
    simd: int = field(default=16, metadata={"doc": "FINN SIMD: inputs consumed per PE per cycle"})
    mult_resource: str = field(
        default="lut", metadata={"doc": "multipliers in 'lut' (soft logic) or 'dsp' slices"}
    )

    def validate(self) -> None:
        """Check every field; raise ``ConfigError`` naming the field and its allowed range."""
        # 1-bit signed narrow-range fixed point has the single level 0, so bits start at 2
        for name in ("weight_bits", "input_bits", "output_bits"):
            check_range(name, getattr(self, name), 2, 32, integer=True)
        check_range("clock_mhz", self.clock_mhz, 1e-3, 1e4)
        check_range("pe", self.pe, 1, 1 << 16, integer=True)
        check_range("simd", self.simd, 1, 1 << 16, integer=True)
        check_choice("mult_resource", self.mult_resource, ("lut", "dsp"))


class FPGAFixedPointLayer(DeviceLayer):
    """A ``QuantLinear`` (no bias) with fixed-point weight, input and output quantizers.

    Digital hardware has no device variation: every instance is the nominal one.
    """

    def __init__(self, in_features: int, out_features: int, config: FPGAFixedPointConfig) -> None:
        super().__init__(in_features, out_features, config)
        self.linear = QuantLinear(
            in_features,
            out_features,
            bias=False,
            # one power-of-two scale per output row, chosen to minimise the quantization MSE
            # (brevitas Int8WeightPerChannelFixedPointMSE; FINN folds per-channel scales into its
            # per-output thresholds): an abs-max scale would put most 4-bit weights at 0
            weight_quant=Int8WeightPerChannelFixedPointMSE,
            weight_bit_width=config.weight_bits,
            input_quant=FixedPointInputQuant,
            input_bit_width=config.input_bits,
            output_quant=FixedPointActQuant,
            output_bit_width=config.output_bits,
            return_quant_tensor=False,
        )
        self.register_load_state_dict_post_hook(_mark_loaded_stats)

    def load_matrix(self, matrix: torch.Tensor) -> None:
        """Store ``matrix`` (``[out, in]``) as the float weight and set its radix points from it.

        brevitas initialises a learned weight scale from the weights' statistics on the first
        quantization and keeps it from then on; programming a new matrix must redo that, and
        doing it here (not lazily at the first forward) also makes the state dict complete, so
        a programmed layer saves and reloads like a trained one.
        """
        with torch.no_grad():
            self.linear.weight.copy_(matrix.to(self.linear.weight))
            scaling = self.linear.weight_quant.tensor_quant.scaling_impl
            if hasattr(scaling, "init_done"):
                scaling.value.fill_(1.0)  # brevitas's initial value, multiplied by the stats
                scaling.init_done = False
            self.linear.quant_weight()

    def effective_matrix(self) -> torch.Tensor:
        """The fixed-point weights (dequantized), ``[out, in]``."""
        with torch.no_grad():
            return self.linear.quant_weight().value.detach().clone()

    def _tensor_quant(self, which: str) -> torch.nn.Module:
        proxy = getattr(self.linear, f"{which}_quant")
        return proxy.fused_activation_quant_proxy.tensor_quant

    def _calibrate_if_needed(self, x: torch.Tensor) -> None:
        """Never trained: fix the input/output radix points on this batch (brevitas's PTQ pass)."""
        stats = [self._tensor_quant(w).scaling_impl.runtime_stats for w in ("input", "output")]
        if self.training or all(s.counter > 0 for s in stats):
            return
        with warnings.catch_warnings():  # brevitas.graph: optional-kernel and deprecation notices
            warnings.simplefilter("ignore")
            from brevitas.graph.calibrate import calibration_mode

        with torch.no_grad(), calibration_mode(self.linear):
            self.linear(x)

    def _quantized_input(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Fixed-point input as ``(codes, scale)`` with brevitas's scale, bit width and clamp.

        Equal to brevitas's own input quantizer (tested), but the ``[batch, in]`` tensor is only
        scaled, rounded and clamped in place, which is several times faster on CPU than
        brevitas's generic graph; the codes then meet the weights in one GEMM.
        """
        tq = self._tensor_quant("input")
        if x.requires_grad:  # keep brevitas's straight-through graph when x needs gradients
            xq = tq(x)[0]
            return xq, torch.ones((), dtype=xq.dtype, device=xq.device)
        bit_width = tq.msb_clamp_bit_width_impl()
        # The percentile statistic (a k-th value over the whole batch) would cost more than the
        # product itself; in training it is taken on an evenly strided sample of at most
        # 2^16 entries, the way calibrators sample activations. Eval uses the running value.
        stats_input = x
        if self.training and x.numel() > STATS_SAMPLE:
            stats_input = x.reshape(-1)[:: x.numel() // STATS_SAMPLE].reshape(1, -1)
        scale = tq.scaling_impl(stats_input, tq.int_scaling_impl(bit_width))  # running percentile, 2^n
        lo, hi = tq.int_quant.min_int(bit_width), tq.int_quant.max_int(bit_width)
        with torch.no_grad():
            codes = (x * (1.0 / scale)).round_().clamp_(float(lo), float(hi))
        return codes, scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[batch, in] -> [batch, out]`` in fixed point (dequantized floats)."""
        self._calibrate_if_needed(x)
        codes, in_scale = self._quantized_input(x)
        acc = torch.nn.functional.linear(codes, self.linear.quant_weight().value) * in_scale
        return self._tensor_quant("output")(acc)[0]


def _mark_loaded_stats(module: "FPGAFixedPointLayer", incompatible_keys) -> None:
    """After ``load_state_dict``: treat loaded radix points as calibrated.

    brevitas keeps the count of statistics updates in a plain attribute, not in the state
    dict; a freshly built layer has count 0, and its next statistics pass would *multiply* the
    loaded running value by the new batch statistic (it assumes the initial 1.0) instead of
    replacing it, which silently wrecks a trained layer reloaded for evaluation.
    """
    for which in ("input", "output"):
        stats = module._tensor_quant(which).scaling_impl.runtime_stats
        if stats.counter == 0 and not bool(torch.all(stats.running_stats == 1.0)):
            stats.counter = 1


def export_qonnx(layer: FPGAFixedPointLayer, path: str | Path) -> Path:
    """Write ``layer`` as a cleaned-up QONNX model (brevitas ``Quant`` nodes) for FINN.

    Args:
        layer: a layer from :class:`FPGAFixedPointDevice`; uncalibrated activation scales are
            calibrated on a zero-mean, unit-variance batch first.
        path: destination ``.onnx`` file.

    Returns:
        The path written.
    """
    with warnings.catch_warnings():  # brevitas.graph: optional-kernel and deprecation notices
        warnings.simplefilter("ignore")
        from brevitas.export import export_qonnx as brevitas_export_qonnx
    from qonnx.util.cleanup import cleanup

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    was_training = layer.training
    layer.eval()
    try:
        example = torch.randn(8, layer.in_features, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            layer(example)  # calibrates the radix points if the layer was never trained
        # TorchScript export (FINN's long-standing QONNX path) is ~30x faster than dynamo here
        brevitas_export_qonnx(
            layer.linear, input_t=example[:1], export_path=str(path), dynamo=False
        )
        cleanup(str(path), out_file=str(path))  # FINN's first step: shapes, folding, names
    finally:
        layer.train(was_training)
    return path


def _acc_bits(in_features: int, w: int, a: int) -> int:
    """FINN's minimal accumulator width for signed inputs (Colbert et al., arXiv:2301.13376)."""
    alpha = math.log2(in_features) + w + a - 1 - 1
    return int(math.ceil(alpha + math.log2(1 + 2.0**-alpha) + 1))


def _bram18(omega: int, mem_width: int) -> int:
    """FINN ``MVAU.bram_estimation``: RAMB18s in SDP mode for ``omega`` words of ``mem_width`` bits."""
    if mem_width == 1:
        return math.ceil(omega / 16384)
    if mem_width == 2:
        return math.ceil(omega / 8192)
    if mem_width <= 4:
        return math.ceil(omega / 4096) * math.ceil(mem_width / 4)
    if mem_width <= 9:
        return math.ceil(omega / 2048) * math.ceil(mem_width / 9)
    if mem_width <= 18 or omega > 512:
        return math.ceil(omega / 1024) * math.ceil(mem_width / 18)
    return math.ceil(omega / 512) * math.ceil(mem_width / 36)


class FPGAFixedPointDevice(Device):
    """Fixed-point FPGA matrix-vector unit (brevitas simulation, FINN cost model)."""

    name = "fpga_fixed_point"
    Config = FPGAFixedPointConfig
    description = (
        "FPGA fixed-point MVAU: brevitas QuantLinear with power-of-two scales; "
        "FINN-R LUT/BRAM/DSP cost model with PE x SIMD folding"
    )

    def layer(self, in_features: int, out_features: int) -> FPGAFixedPointLayer:
        """A fresh layer of this configuration."""
        return FPGAFixedPointLayer(in_features, out_features, self.config)

    @classmethod
    def presets(cls) -> dict[str, Preset]:
        """FINN's TFC-w2a2 MNIST network as built by finn-examples (its first MVAU)."""
        return preset_table(
            Preset(
                "finn_tfc_w2a2",
                {
                    "weight_bits": 2,  # TFC-w2a2: 2-bit weights
                    "input_bits": 2,  # 2-bit activations
                    "output_bits": 2,
                    # folding_config/tfc-w2a2_folding_config.json, StreamingFCLayer_Batch_0
                    # (the 784-input layer): PE 16, SIMD 49
                    "pe": 16,
                    "simd": 49,
                    "clock_mhz": 100.0,  # build.py: synth_clk_period_ns = 10.0
                    "mult_resource": "lut",  # FINN's default for low-bit MVAUs (no DSPs)
                },
                "Xilinx/finn-examples build/bnn-pynq (tfc-w2a2 folding config and build.py), "
                "the BNN-PYNQ TFC network of Umuroglu et al., 'FINN', FPGA 2017",
                "FINN TFC-w2a2 first layer on Pynq-Z1: 2-bit weights and activations, PE 16 x SIMD 49 at 100 MHz",
            ),
        )

    @classmethod
    def search_space(cls) -> dict[str, SearchSpec]:
        """Design choices a search may vary."""
        return {
            "weight_bits": IntRange(2, 8),
            "input_bits": IntRange(2, 8),
            "output_bits": IntRange(4, 16),
        }

    def cost(self, in_features: int, out_features: int) -> dict[str, float]:
        """FINN resource estimates, cycles, latency, energy and area of one MVM.

        The matrix is padded to multiples of ``SIMD`` (inputs) and ``PE`` (outputs), as FINN
        requires divisibility. LUTs: FINN-R ``c0 + c1 * PE * (mult + adder tree + accumulator)``
        with ``c0 = 300, c1 = 1.1``, plus a power-of-two requantizer per PE (a saturating shift,
        ``acc_bits + output_bits`` LUTs: our estimate; FINN's threshold units would need
        ``2^output_bits`` comparators). Weights in BRAM (``internal_decoupled``, ``ram_style``
        block). Energy: dynamic only, Horowitz MAC energies times the FPGA gap, plus BRAM reads.
        """
        cfg = self.config
        p, q = cfg.pe, cfg.simd
        w, a = cfg.weight_bits, cfg.input_bits
        mh = -(-out_features // p) * p
        mw = -(-in_features // q) * q
        omega = (mw * mh) // (p * q)  # weight memory depth (FINN's WMEM)
        cycles = (mh // p) * (mw // q)  # FINN get_exp_cycles
        acc = _acc_bits(mw, w, a)
        mult_luts = 0 if cfg.mult_resource == "dsp" else q * (2 * math.ceil((w + a) / 6) - 1) * (w + a)
        adder_luts = (w + a) * (2 * q - 1)
        requant_luts = acc + cfg.output_bits
        lut = int(300 + 1.1 * p * (mult_luts + adder_luts + acc + requant_luts))
        dsp = p * q * math.ceil((w + a) / 48) if cfg.mult_resource == "dsp" else 0
        bram = _bram18(omega, p * q * w)
        macs = mw * mh
        mac_pj = macs * (MULT_8X8_PJ * w * a / 64 + ADD_32_PJ * acc / 32) * FPGA_ENERGY_GAP
        bram_pj = mw * mh * w * BRAM_PJ_PER_BIT
        logic_um2 = p * q * (MULT_8X8_UM2 * w * a / 64 + ADD_32_UM2 * acc / 32) * FPGA_AREA_GAP
        area_um2 = logic_um2 + bram * BRAM18_BITS * SRAM_BITCELL_UM2
        return {
            "energy_pj": mac_pj + bram_pj,
            "latency_ns": cycles * 1e3 / cfg.clock_mhz,
            "area_mm2": area_um2 * 1e-6,
            "lut": float(lut),
            "dsp": float(dsp),
            "bram_18k": float(bram),
            "cycles": float(cycles),
            "parallelism_macs_per_cycle": float(p * q),
            "acc_bits": float(acc),
            "mac_pj": mac_pj,
            "bram_pj": bram_pj,
        }
