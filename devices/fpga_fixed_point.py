"""FPGA fixed-point matrix-vector unit, simulated with brevitas and costed with FINN's models.

The layer is a ``brevitas.nn.QuantLinear`` whose weights, inputs and outputs are quantized to
signed fixed point (power-of-two scales, i.e. a binary radix point) with the configured bit
widths: brevitas's ``Int8WeightPerChannelFixedPointMSE`` (narrow range, one power-of-two scale
per output row initialised to minimise the quantization MSE, so outlier weights saturate) and
``Int8ActPerTensorFixedPoint``-based activation quantizers (power-of-two scale from runtime
statistics: the 99.9th percentile of the inputs, the abs-max of the outputs), with
``bit_width`` overridden. Fixed-point hardware
has no analog noise, so every instance is identical and eval is deterministic.

:func:`export_qonnx` writes the layer as a QONNX graph (``Quant -> MatMul -> Quant``) for FINN,
:func:`execute_qonnx` runs such a graph on a batch, and
:meth:`FPGAFixedPointLayer.integer_forward` computes what the hardware does in int64 (input and
weight codes, integer accumulator, the output ``Quant`` as a per-row rounding, saturating
shift); ``tests/devices/test_fpga_reference.py`` checks that all three agree bit for bit.

The cost model is FINN's matrix-vector-activation unit (MVAU) with ``PE`` output and ``SIMD``
input parallelism on a named FPGA ``part``: the LUT model of FINN-R (Blott et al., ACM TRETS
2018) and the BRAM18 and DSP models exactly as in FINN's ``MVAU_hls.lut_estimation``,
``MVAU.bram_estimation`` and ``MVAU_hls.dsp_estimation``; ``PE * SIMD`` DSPs equals hls4ml's
``n_in * n_out / reuse_factor``. ``energy_pj`` is the sum of its components: the MACs
(``mac_pj``: Horowitz's 45 nm arithmetic energies times the FPGA/ASIC gap, smaller for DSP48
multipliers than for LUT multipliers), the BRAM weight reads (``bram_pj``, per bit read), the
output requantizer (``requant_pj``). The part's static power is a held component
(``fpga_static_mw``): the whole inference charges it for the time the part is held per
inference in the operating mode (the whole latency, or the pipeline's interval), not only the
MVAU's cycles. There are no digital/analog conversions. :meth:`FPGAFixedPointDevice.feasibility`
checks the LUT, BRAM18 and DSP counts against the part's budget.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch
from brevitas.inject.enum import ScalingImplType, StatsOp
from brevitas.nn import QuantLinear
from brevitas.quant import Int8ActPerTensorFixedPoint
from brevitas.quant.fixed_point import Int8WeightPerChannelFixedPointMSE

from codesign.errors import ConfigError, check_choice

from .base import (
    Choice,
    Device,
    DeviceConfig,
    DeviceLayer,
    IntRange,
    Preset,
    SearchSpec,
    calibrate,
    scale_field,
    power_limit_reasons,
    preset_table,
)
from .digital import DATAPATHS, SRAM_BITCELL_UM2

# Horowitz, "Computing's energy problem (and what we can do about it)", ISSCC 2014, energy and
# area table of 45 nm operations (codesign.devices.digital): 8x8-bit multiply 0.2 pJ / 282 um^2
# (array multiplier energy and area ~ product of the widths), 32-bit add 0.1 pJ / 137 um^2 (~ width).
MULT_8X8_PJ, MULT_8X8_UM2 = DATAPATHS["int8"].mult_pj, DATAPATHS["int8"].mult_um2
ADD_32_PJ, ADD_32_UM2 = DATAPATHS["int32"].add_pj, DATAPATHS["int32"].add_um2
# Kuon & Rose, "Measuring the gap between FPGAs and ASICs", IEEE TCAD 26(2) 2007, abstract
# (90 nm FPGA vs 90 nm standard cells): soft logic (LUTs and flip-flops) needs ~35x the area
# and ~14x the dynamic power of a standard-cell ASIC.
FPGA_AREA_GAP, FPGA_ENERGY_GAP = 35.0, 14.0
# Hard blocks (multiplier/accumulators, block RAMs) shrink both gaps. The same abstract: their
# extensive use "could potentially lower the [area] gap to below five", and the 14x dynamic
# power gap "generally becomes smaller" with them; an FPGA-power chapter (CRC Press,
# doi:10.1201/b19388-15, introduction) puts FPGA power at "7-14x higher than an equivalent ASIC
# implementation". A DSP48 multiplier is priced at 7x the ASIC energy (the low end of that
# range) and 5x the ASIC area (Kuon & Rose's hard-block estimate); its adder tree and
# accumulator stay in LUTs, as in FINN's ``MVAU_hls`` (``lut_estimation`` keeps the adder-tree
# LUTs with ``resType = dsp``).
DSP_ENERGY_GAP, DSP_AREA_GAP = 7.0, 5.0
# A DSP48E1 slice (Xilinx UG479, 7 Series DSP48E1 Slice User Guide, ch. 1) holds a 25 x 18-bit
# multiplier whatever the operand widths: its silicon is that of the full-width multiplier.
DSP_MULT_BITS = (25, 18)
# BRAM reads, per bit read: a 64-bit read from an 8 KB SRAM costs 10 pJ at 45 nm (Horowitz,
# ISSCC 2014, same table); FPGA block RAM is a hard SRAM macro (Kuon & Rose 2007: memories are
# hard blocks, no soft-logic gap applied). Upper bound for comparison: Xilinx DS512 (LogiCORE
# Block Memory Generator v6.1, Table 41, Virtex-5 XPE 11.1, 65 nm, 300 MHz, 50% toggle and 50%
# write rate): a 2k x 36 true-dual-port memory in the low-power mapping draws 21 mW for single
# reads/writes, i.e. 70 pJ per 36-bit access = 1.9 pJ/bit (an older node, writes included).
BRAM_PJ_PER_BIT = 10.0 / 64
BRAM_PJ_PER_BIT_DS512 = 21e-3 / 300e6 * 1e12 / 36  # 1.94 pJ/bit: the bound quoted above
BRAM18_BITS = 18 * 1024  # RAMB18: 18 Kb (Xilinx UG473, 7 Series FPGAs Memory Resources)


@dataclass(frozen=True)
class FPGAPart:
    """An FPGA part's resource budget and static power (the values and their sources).

    Attributes:
        name: the part (Xilinx/AMD ordering code without package and speed grade).
        lut: CLB LUTs.
        bram18: RAMB18 block RAMs (two per RAMB36).
        dsp: DSP48 slices.
        static_w: device static power, W, with its measurement conditions in ``static_source``;
            None where no published figure was found (the config must then give
            ``static_power_w``).
        source: where the budgets come from.
        static_source: where ``static_w`` comes from and under which conditions.
    """

    name: str
    lut: int
    bram18: int
    dsp: int
    static_w: float | None
    source: str
    static_source: str = ""
    max_w: float | None = None


#: FPGA parts the cost model knows: ``{part: FPGAPart}`` (the config field ``part``).
PARTS: dict[str, FPGAPart] = {
    p.name: p
    for p in (
        # Pynq-Z1, Pynq-Z2, Zedboard, Zybo Z7-20
        FPGAPart(
            "xc7z020", lut=53_200, bram18=280, dsp=220,
            # DS190 (Zynq-7000 SoC Data Sheet: Overview), Table 1, Z-7020: 53,200 LUTs, 140
            # 36 Kb block RAMs (280 RAMB18), 220 DSP48E1 slices; the same "Available" counts in
            # the Vivado utilization report of Xilinx/BNN-PYNQ bnn/src/network/lfc-pynq/README.md
            static_w=0.113,
            source="Xilinx DS190 Table 1 (Z-7020); Vivado report in Xilinx/BNN-PYNQ lfc-pynq/README.md",
            # Vivado 2020.1 report_power, "Device Static (W)" 0.113 of a routed CV32A6 design on
            # xc7z020clg400-1 (Zybo Z7-20), typical process, junction 28.1 C, confidence Medium:
            # ThalesGroup/cva6-softcore-contest, README.md ("Power analysis")
            static_source="Vivado 2020.1 report_power, xc7z020clg400-1, typical process, Tj 28.1 C "
            "(ThalesGroup/cva6-softcore-contest README.md)",
            # Rated power without a heat sink at 25 C ambient: (Tj,max - T_a) / theta_JA =
            # (85 - 25) / 11.5 = 5.2 W. The same Vivado report gives "Effective TJA (C/W) 11.5" and
            # "Max Ambient (C) 81.9" at 0.265 W, i.e. Tj,max = 81.9 + 0.265 x 11.5 = 85 C (the
            # commercial grade's junction limit); 25 C is Vivado's default ambient.
            max_w=(85.0 - 25.0) / 11.5,
        ),
        # Ultra96 (v1/v2)
        FPGAPart(
            "xczu3eg", lut=70_560, bram18=432, dsp=360,
            # DS891 (Zynq UltraScale+ MPSoC Data Sheet: Overview), ZU3EG: 70,560 CLB LUTs, 216
            # 36 Kb block RAMs (432 RAMB18), 360 DSP48E2; same counts for "ultra96" in
            # necst/faber_fpga src/model/boards.py
            static_w=None,
            source="Xilinx DS891 (ZU3EG); necst/faber_fpga src/model/boards.py",
        ),
        # VCU118, VCU1525
        FPGAPart(
            "xcvu9p", lut=1_182_240, bram18=4_320, dsp=6_840,
            # DS890 (UltraScale Architecture and Product Overview), Virtex UltraScale+ table,
            # VU9P: 1,182,240 CLB LUTs, 2,160 36 Kb block RAMs (4,320 RAMB18), 6,840 DSP48E2
            static_w=None,
            source="Xilinx DS890 (Virtex UltraScale+, VU9P)",
        ),
    )
}


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

    weight_bits: int = field(default=8, metadata={"range": (2, 32), "doc": "signed fixed-point weight width, bits"})
    input_bits: int = field(default=8, metadata={"range": (2, 32), "doc": "signed fixed-point input width, bits"})
    output_bits: int = field(
        default=8, metadata={"range": (2, 32), "doc": "signed fixed-point output width (requantized), bits"}
    )
    clock_mhz: float = field(default=200.0, metadata={"range": (1e-3, 1e4), "doc": "fabric clock, MHz"})
    pe: int = field(default=2, metadata={"range": (1, 1 << 16), "doc": "FINN PE: output rows computed in parallel"})
    simd: int = field(default=16, metadata={"range": (1, 1 << 16), "doc": "FINN SIMD: inputs consumed per PE per cycle"})
    mult_resource: str = field(
        default="lut", metadata={"doc": "multipliers in 'lut' (soft logic) or 'dsp' slices"}
    )
    part: str = field(
        default="xc7z020",
        metadata={"doc": "FPGA part: its LUT/BRAM18/DSP budget (feasibility) and static power "
                  f"(cost); one of {', '.join(PARTS)}"},
    )
    static_power_w: float = field(
        default=0.0,
        metadata={"range": (0.0, 1e3), "doc": "device static power, W, charged for the time an inference occupies the "
                  "MVAU; 0 = the part's cited figure (required for parts without one)"},
    )
    max_power_w: float = field(
        default=0.0,
        metadata={"range": (0.0, 1e4), "doc": "most power the part may draw, W (the MVAU's dynamic power at the operating rate + "
                  "static); 0 = the part's rated figure (xc7z020: 5.2 W, no heat sink, 25 C ambient)"},
    )
    mac_energy_scale: float = scale_field("the MACs' energy")
    bram_energy_scale: float = scale_field("the BRAM reads' energy")
    requant_energy_scale: float = scale_field("the requantizer's energy")
    fpga_static_energy_scale: float = scale_field("the static power")
    mac_area_scale: float = scale_field("the MAC array's area")
    bram_area_scale: float = scale_field("the BRAMs' area")
    requant: str = field(
        default="shift",
        metadata={"doc": "output requantizer per PE: 'shift' (power-of-two saturating shift) or "
                  "'thresholds' (FINN's multi-threshold unit, 2^output_bits - 1 comparators)"},
    )

    def validate(self) -> None:
        """Choices and cross-field rules; raise ``ConfigError`` naming the field and the fix.

        Each numeric field's range is its metadata's (``DeviceConfig`` checks it first; the bit
        widths start at 2: 1-bit signed narrow-range fixed point has the single level 0).
        """
        check_choice("mult_resource", self.mult_resource, ("lut", "dsp"))
        check_choice("part", self.part, tuple(PARTS))
        check_choice("requant", self.requant, ("shift", "thresholds"))
        if self.static_power_w == 0 and PARTS[self.part].static_w is None:
            raise ConfigError(
                f"static_power_w=0 asks for part {self.part!r}'s cited static power, but this model "
                "has none for it; set static_power_w (W), e.g. the 'Device Static' of a Vivado "
                "report_power of your design on that part"
            )


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

    def integer_forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """What the fixed-point hardware computes, in int64: ``(output codes, output scale)``.

        The radix points are the eval ones (calibrated first if the layer was never trained, as
        :meth:`forward` does); the layer's mode is restored afterwards. Step by step, exactly
        as the exported QONNX graph (:func:`export_qonnx`) defines it:

        1. input codes ``a = clamp(round(x / 2^e_in), -2^(A-1), 2^(A-1) - 1)`` (``A =
           input_bits``, round half to even: QONNX ``Quant`` with ``rounding_mode=ROUND``,
           ``signed=1, narrow=0``);
        2. weight codes ``w[j, i]`` in ``[-(2^(W-1) - 1), 2^(W-1) - 1]`` (``narrow=1``) with one
           exponent ``e_w[j]`` per output row;
        3. the integer accumulation ``acc[j] = sum_i a[i] * w[j, i]`` (int64; the hardware needs
           only ``resources()['acc_bits']`` bits);
        4. the requantizer of the output ``Quant`` node (per-tensor scale ``2^e_out``, ``B =
           output_bits``, ``signed=1, narrow=0``): ``acc * 2^(e_in + e_w[j] - e_out)``, i.e. an
           arithmetic shift by ``s[j] = e_out - e_in - e_w[j]`` (right when ``s > 0``, rounding
           half to even like QONNX's ``np.round``; left otherwise, exact), then saturation to
           ``[-2^(B-1), 2^(B-1) - 1]``.

        The dequantized output is ``codes * scale``, which equals :meth:`forward` in eval
        whenever the float32 products there are exact (``tests/devices/test_fpga_reference.py``).

        Args:
            x: ``[batch, in_features]`` floats.

        Returns:
            ``(codes, scale)``: int64 codes ``[batch, out_features]`` and the output scale
            ``2^e_out`` (a float32 scalar tensor).

        Raises:
            ValueError: a scale is not a power of two (cannot happen with this layer's
                quantizers; a guard for subclasses that swap them).
        """
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                self._calibrate_if_needed(x)
                codes, in_scale = self._quantized_input(x.detach())
                a = codes.to(torch.int64)
                qw = self.linear.quant_weight()
                w_scale = qw.scale.detach().reshape(-1)  # [out]: one power of two per row
                w = torch.round(qw.value.detach() / qw.scale.detach()).to(torch.int64)
                out_tq = self._tensor_quant("output")
                _, out_scale, _, out_bits = out_tq(torch.zeros(1, self.out_features))
                e_in = _exponent(in_scale, "input")
                e_w = _exponent(w_scale, "weight")
                e_out = _exponent(out_scale, "output")
                acc = a @ w.T  # int64 accumulation
                shift = (e_out - e_in - e_w).expand_as(acc)  # [batch, out]
                y = _round_shift(acc, shift)
                lo, hi = out_tq.int_quant.min_int(out_bits), out_tq.int_quant.max_int(out_bits)
                y = y.clamp_(int(lo), int(hi))
        finally:
            self.train(was_training)
        return y, out_scale.detach().reshape(())

    def fixed_point(self) -> dict[str, Any]:
        """The programmed layer in hardware terms: integer codes and radix points (eval ones).

        Returns:
            ``{"weight_codes": int64 [out, in], "weight_exponents": int64 [out],
            "input_exponent": int, "output_exponent": int, "weight_bits", "input_bits",
            "output_bits"}``: weight ``[j, i] = weight_codes[j, i] * 2^weight_exponents[j]``,
            input codes ``clamp(round(x / 2^input_exponent))``, output codes
            ``clamp(round(acc / 2^output_exponent))``, exactly as :meth:`integer_forward`.

        Raises:
            ConfigError: the activation radix points were never calibrated (the layer was
                neither trained nor evaluated on data).
        """
        stats = [self._tensor_quant(w).scaling_impl.runtime_stats for w in ("input", "output")]
        if any(s.counter == 0 for s in stats):
            raise ConfigError("the FPGA layer's input/output radix points are not calibrated yet; "
                              "train it or evaluate it on data first")
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                _, in_scale = self._quantized_input(torch.zeros(1, self.in_features))
                qw = self.linear.quant_weight()
                w_scale = qw.scale.detach().reshape(-1)
                codes = torch.round(qw.value.detach() / qw.scale.detach()).to(torch.int64)
                _, out_scale, _, _ = self._tensor_quant("output")(torch.zeros(1, self.out_features))
        finally:
            self.train(was_training)
        cfg = self.config
        return {
            "weight_codes": codes, "weight_exponents": _exponent(w_scale, "weight"),
            "input_exponent": int(_exponent(in_scale, "input")), "output_exponent": int(_exponent(out_scale, "output")),
            "weight_bits": cfg.weight_bits, "input_bits": cfg.input_bits, "output_bits": cfg.output_bits,
        }

    def load_fixed_point(self, weight_codes: torch.Tensor, weight_exponents: torch.Tensor,
                         input_exponent: int, output_exponent: int) -> None:
        """Program the layer from :meth:`fixed_point`'s codes and exponents (no float matrix).

        The weight is set to ``codes * 2^exponent`` and brevitas's scale state to the values
        whose power-of-two scales are those exponents (weights: the log2-domain parameter
        ``exponent + weight_bits - 1``; activations: the running statistic
        ``2^(exponent + bits - 1)``, the scale being ``2^ceil(log2 stat) / 2^(bits - 1)``); the
        radix points read back are checked against the given ones.

        Raises:
            ConfigError: the shapes do not fit the layer, or a code lies outside its bit width,
                or the quantizers do not reproduce the exponents.
        """
        cfg = self.config
        codes = torch.as_tensor(weight_codes, dtype=torch.int64)
        e_w = torch.as_tensor(weight_exponents, dtype=torch.int64).reshape(-1)
        if tuple(codes.shape) != (self.out_features, self.in_features) or e_w.numel() != self.out_features:
            raise ConfigError(f"fixed-point weights of shape {list(codes.shape)} with {e_w.numel()} row exponents "
                              f"do not fit a {self.out_features}x{self.in_features} layer")
        qmax = 2 ** (cfg.weight_bits - 1) - 1
        if codes.numel() and int(codes.abs().max()) > qmax:
            raise ConfigError(f"weight codes reach {int(codes.abs().max())}, beyond the {cfg.weight_bits}-bit "
                              f"narrow range +-{qmax}")
        with torch.no_grad():
            weight = codes.to(torch.float64) * torch.pow(2.0, e_w.to(torch.float64))[:, None]
            self.linear.weight.copy_(weight.to(self.linear.weight.dtype))
            scaling = self.linear.weight_quant.tensor_quant.scaling_impl
            scaling.value.copy_((e_w + cfg.weight_bits - 1).to(scaling.value.dtype).reshape(scaling.value.shape))
            if hasattr(scaling, "init_done"):
                scaling.init_done = True
            for which, e, bits in (("input", input_exponent, cfg.input_bits), ("output", output_exponent, cfg.output_bits)):
                stats = self._tensor_quant(which).scaling_impl.runtime_stats
                stats.running_stats.fill_(2.0 ** (int(e) + bits - 1))
                stats.counter = 1
        back = self.fixed_point()
        if not (torch.equal(back["weight_codes"], codes) and torch.equal(back["weight_exponents"], e_w)
                and back["input_exponent"] == int(input_exponent) and back["output_exponent"] == int(output_exponent)):
            raise ConfigError("the FPGA layer's quantizers did not reproduce the given codes and exponents "
                              "(a brevitas version whose scale parametrisation differs?)")


def _exponent(scale: torch.Tensor, which: str) -> torch.Tensor:
    """``log2(scale)`` as int64; ValueError unless every entry is an exact power of two."""
    e = torch.log2(scale.detach().to(torch.float64))
    if not torch.equal(e, e.round()):
        raise ValueError(f"the {which} scale {scale.tolist()} is not a power of two")
    return e.round().to(torch.int64)


def _round_shift(acc: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """``round_half_even(acc / 2^shift)`` in int64 (a left shift where ``shift <= 0``).

    This is QONNX ``Quant``'s ``np.round(x / scale)`` for an integer ``x`` and a power-of-two
    ``scale``: an arithmetic right shift plus a round bit that is set when the dropped bits
    exceed one half, or equal one half and the kept value is odd.
    """
    right = shift.clamp(min=0)
    left = (-shift).clamp(min=0)
    q = acc >> right  # floor division by 2^right (arithmetic shift)
    rem = acc - (q << right)  # dropped bits, in [0, 2^right)
    half = torch.where(right > 0, torch.ones_like(right) << (right - 1).clamp(min=0), torch.zeros_like(right))
    up = (right > 0) & ((rem > half) | ((rem == half) & (q & 1).bool()))
    return (q + up.to(q.dtype)) << left


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


def execute_qonnx(path: str | Path, x: torch.Tensor) -> torch.Tensor:
    """Run an exported graph on a ``[batch, in]`` batch with QONNX's reference executor.

    :func:`export_qonnx` writes a batch-1 graph (FINN's convention); this sets the batch
    dimension of the graph's input to ``len(x)``, re-infers the shapes (QONNX ``InferShapes``)
    and calls ``qonnx.core.onnx_exec.execute_onnx``, which runs ``Quant`` nodes with QONNX's
    numpy implementation and the rest with onnxruntime, all in float32.

    Returns:
        The graph's output, ``[batch, out]`` float32 (dequantized: codes times the output scale).
    """
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.transformation.infer_shapes import InferShapes

    model = ModelWrapper(str(path))
    x = x.detach().to(torch.float32).cpu()
    name_in, name_out = model.graph.input[0].name, model.graph.output[0].name
    if model.get_tensor_shape(name_in) != list(x.shape):
        model.set_tensor_shape(name_in, list(x.shape))
        out_shape = model.get_tensor_shape(name_out)
        model.set_tensor_shape(name_out, [len(x)] + list(out_shape[1:]))
        del model.graph.value_info[:]  # re-derived for the new batch
        model = model.transform(InferShapes())
    out = execute_onnx(model, {name_in: x.numpy()})[name_out]
    return torch.from_numpy(out)


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


def _shift_requant_luts(acc: int, out_bits: int, tmem: int) -> int:
    """LUTs of one PE's shift requantizer (our estimate; FINN has no shift unit to copy).

    The exported output ``Quant`` has one scale per tensor but the weights one per row, so row
    ``j``'s accumulator is shifted by its own ``s_j``; right shifts beyond ``acc`` bits and left
    shifts beyond ``out_bits`` give the same codes, so ``sb = ceil(log2(acc + out_bits + 1))``
    bits hold it. A PE serving ``tmem`` rows stores ``tmem`` shift amounts in LUTRAM (``sb``
    LUTs per 64 words, as FINN counts threshold memory), shifts the accumulator with a barrel
    shifter (``sb`` stages of 2:1 multiplexers, a LUT6 doing a 4:1: ``acc * ceil(sb / 2)``
    LUTs), then rounds half to even and saturates (an ``acc``-wide add and ``out_bits``
    saturation LUTs).
    """
    sb = math.ceil(math.log2(acc + out_bits + 1))
    return sb * math.ceil(tmem / 64) + acc * math.ceil(sb / 2) + acc + out_bits


class FPGAFixedPointDevice(Device):
    """Fixed-point FPGA matrix-vector unit (brevitas simulation, FINN cost model)."""

    name = "fpga_fixed_point"
    Config = FPGAFixedPointConfig
    api_version = 3  # the device API it implements (codesign.devices.base.DEVICE_API_VERSION)
    calibrator = "codesign.devices.fpga_calibration:FPGACalibrator"  # Vivado reports (issue 32)
    description = (
        "FPGA fixed-point MVAU: brevitas QuantLinear with power-of-two scales; "
        "FINN-R LUT/BRAM/DSP cost model with PE x SIMD folding, checked against an FPGA "
        "part's budget; energy with the part's static power"
    )

    @classmethod
    def lifts(cls) -> dict[str, type]:
        """The nonlinear primitives this device computes (:mod:`codesign.devices.native_lifts`)."""
        from .native_lifts import fpga_lifts

        return fpga_lifts()

    def layer(self, in_features: int, out_features: int) -> FPGAFixedPointLayer:
        """A fresh layer of this configuration."""
        return FPGAFixedPointLayer(in_features, out_features, self.config)

    #: ``layer.npz`` (integer weight codes and power-of-two exponents) and ``weight_codes.csv``.
    export_format = "fpga-fixed-point/1"

    def export_layer(self, layer: DeviceLayer, folder: Path) -> dict[str, Any]:
        """Write the layer's fixed-point program (:meth:`FPGAFixedPointLayer.fixed_point`).

        Files: ``layer.npz`` with ``weight_codes`` (int32 ``[out, in]``, signed narrow range)
        and ``weight_exponents`` (int32 ``[out]``: row ``j``'s weights are
        ``codes * 2^exponent``); ``weight_codes.csv`` (the same codes, one row per output, for
        spreadsheets). The section carries the bit widths and the input and output exponents.
        """
        if not isinstance(layer, FPGAFixedPointLayer):
            raise ConfigError(f"{type(layer).__name__} is not a layer of device {self.name!r}")
        fp = layer.fixed_point()
        codes = fp["weight_codes"].numpy().astype("int32")
        import numpy as np

        np.savez(folder / "layer.npz", weight_codes=codes, weight_exponents=fp["weight_exponents"].numpy().astype("int32"))
        np.savetxt(folder / "weight_codes.csv", codes, fmt="%d", delimiter=",")
        return {
            "format": self.export_format,
            "files": ["layer.npz", "weight_codes.csv"],
            "in_features": layer.in_features, "out_features": layer.out_features,
            "weight_bits": fp["weight_bits"], "input_bits": fp["input_bits"], "output_bits": fp["output_bits"],
            "input_exponent": fp["input_exponent"], "output_exponent": fp["output_exponent"],
            "semantics": "a = clamp(round_half_even(x / 2^input_exponent), -2^(input_bits-1), 2^(input_bits-1)-1); "
                         "acc[j] = sum_i a[i] * weight_codes[j, i] (integer); "
                         "y[j] = clamp(round_half_even(acc[j] * 2^(input_exponent + weight_exponents[j] - output_exponent)), "
                         "-2^(output_bits-1), 2^(output_bits-1)-1); outputs are y * 2^output_exponent",
        }

    def load_layer_export(self, folder: Path, manifest: Mapping[str, Any]) -> DeviceLayer:
        """Rebuild the layer from ``layer.npz`` and the section's exponents (no float matrix)."""
        from .base import check_export_manifest, read_export_arrays

        check_export_manifest(manifest, self.export_format, folder)
        arrays = read_export_arrays(folder / "layer.npz", ("weight_codes", "weight_exponents"))
        try:
            e_in, e_out = int(manifest["input_exponent"]), int(manifest["output_exponent"])
        except (KeyError, TypeError, ValueError):
            raise ConfigError(f"device export in {folder}: the manifest section lacks integer input_exponent and "
                              "output_exponent; re-export the student with `codesign export`") from None
        codes = torch.from_numpy(arrays["weight_codes"].astype("int64"))
        if codes.ndim != 2:
            raise ConfigError(f"{folder / 'layer.npz'}: weight_codes has shape {list(codes.shape)}, expected [out, in]")
        layer = self.layer(codes.shape[1], codes.shape[0])
        layer.load_fixed_point(codes, torch.from_numpy(arrays["weight_exponents"].astype("int64")), e_in, e_out)
        return layer.eval()

    @classmethod
    def presets(cls) -> dict[str, Preset]:
        """Two published FINN MVAUs on a Pynq-Z1 (xc7z020), each with its headline figure.

        Each preset's comment states the published figure, the workload shape that reproduces it
        and the tolerance; ``tests/devices/test_fpga_published.py`` checks them.
        """
        return preset_table(
            # Headline: finn-examples finn_examples/notebooks/0_mnist_with_fc_networks.ipynb,
            # accel.throughput_test() on a Pynq-Z1 at fclk 99.999 MHz, batch 1000:
            # 837,019 images/s (runtime 1.195 ms). That bitfile is tfc-w1a1, whose folding config
            # (tfc-w1a1_folding_config.json) has the same PE/SIMD in every MVAU as tfc-w2a2's, and
            # FINN's cycle count depends on PE, SIMD and the shape only. Workload: the 784-input,
            # 64-output first MVAU: 64 cycles = 640 ns, 1.5625 M frames/s, the same in the
            # 64x64 layers, so the dataflow pipeline's steady state. Tolerance: the measured rate
            # includes the PYNQ driver's per-batch overhead (1.195 ms measured vs 0.64 ms of
            # MVAU cycles), so the model's rate must lie in [1, 2] x the measured one.
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
                    "part": "xc7z020",  # Pynq-Z1
                    "requant": "thresholds",  # FINN's MVAU activation: multi-threshold unit
                },
                "Xilinx/finn-examples build/bnn-pynq (tfc-w2a2 folding config and build.py), "
                "the BNN-PYNQ TFC network of Umuroglu et al., 'FINN', FPGA 2017; throughput "
                "measured in finn_examples/notebooks/0_mnist_with_fc_networks.ipynb",
                "FINN TFC-w2a2 first layer on Pynq-Z1: 2-bit weights and activations, PE 16 x SIMD 49 at 100 MHz",
            ),
            # Headline: Xilinx/finn notebooks/end2end_example/cybersecurity/
            # 3-build-accelerator-with-finn.ipynb (UNSW-NB15 MLP, 2-bit weights and activations,
            # xc7z020clg400-1, synth_clk_period_ns 10, target_fps 1e6): final_hw_config.json
            # gives StreamingFCLayer_Batch_1 (64 inputs x 64 outputs) PE 4, SIMD 16, and
            # estimate_layer_resources.json / estimate_layer_cycles.json report for it
            # LUT 1435, BRAM_18K 4, DSP 0 and 64 cycles. Workload: 64 x 64. Tolerance: BRAM18,
            # DSP and cycles exact (the same FINN formulas), LUT within 1%. These are FINN's
            # analytical estimates; the same notebook's out-of-context synthesis of the whole
            # MLP used 7,073 LUTs against 11,360 estimated (the LUT model overestimates ~1.6x).
            Preset(
                "finn_cybsec_mlp_w2a2",
                {
                    "weight_bits": 2,
                    "input_bits": 2,  # the hidden layers' 2-bit activations
                    "output_bits": 2,
                    "pe": 4,
                    "simd": 16,
                    "clock_mhz": 100.0,  # synth_clk_period_ns = 10.0
                    "mult_resource": "lut",  # final_hw_config.json: resType "lut"
                    "part": "xc7z020",  # fpga_part xc7z020clg400-1 (Pynq-Z1)
                    "requant": "thresholds",  # FINN's MVAU activation: multi-threshold unit
                },
                "Xilinx/finn notebooks/end2end_example/cybersecurity/3-build-accelerator-with-finn.ipynb "
                "(final_hw_config.json and estimate reports of the UNSW-NB15 MLP)",
                "FINN cybersecurity MLP second layer on Pynq-Z1: 64x64, 2-bit weights and activations, "
                "PE 4 x SIMD 16 at 100 MHz",
            ),
        )

    @classmethod
    def search_space(cls) -> dict[str, SearchSpec]:
        """Design choices a search may vary."""
        return {
            "weight_bits": IntRange(2, 8),
            "input_bits": IntRange(2, 8),
            "output_bits": IntRange(4, 16),
            # FINN folding: more parallel MACs shorten the occupancy (less static energy per
            # inference) and cost LUTs/BRAM, checked against the part's budget (feasibility)
            "pe": Choice((1, 2, 4, 8, 16)),
            "simd": Choice((4, 8, 16, 32, 64)),
        }

    def max_w(self) -> float:
        """The power limit, W: ``max_power_w`` or the part's rated figure (0: none known)."""
        cfg = self.config
        return cfg.max_power_w if cfg.max_power_w > 0 else float(PARTS[cfg.part].max_w or 0.0)

    def power_feasibility(self, power_mw: float, area_mm2: float) -> list[str]:
        """The part's power at the operating rate against its rated power (field ``max_power_w``)."""
        return power_limit_reasons(power_mw, area_mm2, max_power_w=self.max_w(), what=f"FPGA {self.config.part}")

    def static_w(self) -> float:
        """Static power charged while an inference occupies the MVAU, W (config or part figure)."""
        cfg = self.config
        return cfg.static_power_w if cfg.static_power_w > 0 else float(PARTS[cfg.part].static_w)

    def resources(self, in_features: int, out_features: int) -> dict[str, int]:
        """FINN's folding and resource estimates of an ``out x in`` MVAU (integers).

        The matrix is padded to multiples of ``SIMD`` (inputs) and ``PE`` (outputs), as FINN
        requires divisibility. LUTs: FINN-R ``c0 + c1 * PE * (mult + adder tree + accumulator +
        requantizer)`` with ``c0 = 300, c1 = 1.1``; the requantizer (``B = output_bits``) is
        the exported output ``Quant`` node (see :meth:`cost`) built either as a per-row rounding,
        saturating shift (:func:`_shift_requant_luts`: our estimate) or as FINN's threshold unit
        (``(2^B - 1) * acc_bits`` comparator LUTs plus as many per 64 threshold words of LUTRAM,
        as in FINN's ``lut_estimation``). Weights in BRAM
        (``internal_decoupled``, ``ram_style`` block); DSPs ``PE * SIMD * ceil((W + A) / 48)``.
        """
        cfg = self.config
        p, q = cfg.pe, cfg.simd
        w, a = cfg.weight_bits, cfg.input_bits
        mh = -(-out_features // p) * p
        mw = -(-in_features // q) * q
        omega = (mw * mh) // (p * q)  # weight memory depth (FINN's WMEM)
        acc = _acc_bits(mw, w, a)
        mult_luts = 0 if cfg.mult_resource == "dsp" else q * (2 * math.ceil((w + a) / 6) - 1) * (w + a)
        adder_luts = (w + a) * (2 * q - 1)
        levels = 2**cfg.output_bits - 1
        tmem = mh // p  # output rows per PE, each with its own thresholds or shift (FINN's calc_tmem)
        if cfg.requant == "thresholds":
            requant_luts = levels * acc * math.ceil(tmem / 64) + levels * acc
        else:
            requant_luts = _shift_requant_luts(acc, cfg.output_bits, tmem)
        return {
            "mh": mh,
            "mw": mw,
            "omega": omega,
            "cycles": (mh // p) * (mw // q),  # FINN get_exp_cycles
            "acc_bits": acc,
            "lut": int(300 + 1.1 * p * (mult_luts + adder_luts + acc + requant_luts)),
            "dsp": p * q * math.ceil((w + a) / 48) if cfg.mult_resource == "dsp" else 0,
            "bram_18k": _bram18(omega, p * q * w),
        }

    def feasibility(self, in_features: int, out_features: int) -> list[str]:
        """The part's LUT, BRAM18 and DSP budgets broken by this MVAU ([] when it fits).

        The counts are FINN's estimates (:meth:`resources`) for this one matrix against the whole
        part. A ``PE * SIMD`` larger than the matrix is not an error: FINN pads it. The clock is
        not checked (no timing model).
        """
        cfg = self.config
        part = PARTS[cfg.part]
        r = self.resources(in_features, out_features)
        fix = "lower pe/simd (fields pe, simd){extra} or choose a larger part (field part)"
        limits = (
            ("LUTs", r["lut"], part.lut, fix.format(extra=", the bit widths")),
            ("RAMB18 block RAMs", r["bram_18k"], part.bram18, fix.format(extra=", weight_bits")),
            ("DSP48 slices", r["dsp"], part.dsp,
             fix.format(extra=", set mult_resource='lut'")),
        )
        return [
            f"{name}: the {out_features}x{in_features} MVAU (PE {cfg.pe} x SIMD {cfg.simd}) needs "
            f"{used}, part {part.name} has {budget}; {hint}"
            for name, used, budget, hint in limits
            if used > budget
        ]

    def shared_resources(self, costs: Mapping[str, Mapping[str, float]]) -> dict[str, dict[str, Any]]:
        """LUTs, RAMB18s and DSP48s of every MVAU (and look-up table) of one inference, summed
        against the one part that holds them all (each matrix is its own FINN layer: its own
        weights, PEs and ``c0`` overhead, :meth:`resources`)."""
        part = PARTS[self.config.part]
        fix = "lower pe/simd (fields pe, simd){extra}, fewer lift features, or a larger part (field part)"
        out = {}
        for key, name, budget, extra in (("lut", "LUTs", part.lut, ", the bit widths"),
                                         ("bram_18k", "RAMB18 block RAMs", part.bram18, ", weight_bits"),
                                         ("dsp", "DSP48 slices", part.dsp, ", set mult_resource='lut'")):
            by = {label: int(round(float(c.get(key, 0.0)))) for label, c in costs.items()}
            out[key] = {"name": name, "used": sum(by.values()), "budget": int(budget), "by": by,
                        "of": f"part {part.name}", "fix": fix.format(extra=extra)}
        return out

    def cost(self, in_features: int, out_features: int) -> dict[str, float]:
        """FINN resource estimates, cycles, latency, energy and area of one MVM.

        The requantizer priced is the last node of the graph :func:`export_qonnx` writes: a
        QONNX ``Quant`` after the ``MatMul`` with one power-of-two scale ``2^e_out`` per tensor,
        zero point 0, ``signed=1, narrow=0``, bit width ``output_bits`` and
        ``rounding_mode=ROUND`` (half to even). On the integer accumulator of output row ``j``
        (input scale ``2^e_in``, that row's weight scale ``2^e_w[j]``) it is an arithmetic
        shift by ``s_j = e_out - e_in - e_w[j]`` with round-half-even and saturation to
        ``[-2^(B-1), 2^(B-1) - 1]`` (:meth:`FPGAFixedPointLayer.integer_forward` computes
        exactly that, and ``tests/devices/test_fpga_reference.py`` checks it against the
        executed graph). ``requant='shift'`` prices that shift built directly (shift amount per
        row, barrel shifter, rounding adder, saturation); ``requant='thresholds'`` prices the
        same node as FINN lowers it (``ConvertQuantActToMultiThreshold``: a ``MultiThreshold``
        with ``2^B - 1`` thresholds per row, absorbed into the MVAU).

        Resources and cycles: :meth:`resources`. Energy (the ``*_pj`` components sum to
        ``energy_pj``): ``mac_pj``, every MAC of the padded matrix at Horowitz's 45 nm energies
        (multiplier ~ ``w * a``, accumulator add ~ ``acc_bits``) times the FPGA/ASIC gap (14x in
        LUTs; 7x for a DSP48 multiplier, whose adder tree stays in LUTs); ``bram_pj``, every weight
        bit read once from BRAM at Horowitz's 8 KB SRAM price (0.156 pJ/bit; ``bram_pj_at_ds512_bound``
        reports the same reads at Xilinx DS512's 1.94 pJ/bit, an upper bound from a 65 nm part
        with writes included, 12x higher: the figure used is the 45 nm macro price because block
        RAM is a hard SRAM macro, and the bound is shown beside it); ``requant_pj``, one
        ``acc_bits``-wide add (shift) or ``2^output_bits - 1`` compares (thresholds) per output.
        Held: ``fpga_static_mw``, the part's static power. Area: the MAC array (LUT logic at 35x
        the ASIC area, a DSP48 multiplier at 5x that of its full 25 x 18 multiplier) plus the used
        BRAM18s' bit cells. ``<component>_energy_scale`` / ``_area_scale`` calibrate each one.
        """
        cfg = self.config
        r = self.resources(in_features, out_features)
        p, q = cfg.pe, cfg.simd
        w, a, acc = cfg.weight_bits, cfg.input_bits, r["acc_bits"]
        macs = r["mw"] * r["mh"]
        add_pj = ADD_32_PJ * acc / 32 * FPGA_ENERGY_GAP
        add_um2 = ADD_32_UM2 * acc / 32 * FPGA_AREA_GAP
        if cfg.mult_resource == "dsp":
            mult_pj = MULT_8X8_PJ * w * a / 64 * DSP_ENERGY_GAP
            mult_um2 = MULT_8X8_UM2 * DSP_MULT_BITS[0] * DSP_MULT_BITS[1] / 64 * DSP_AREA_GAP
        else:
            mult_pj = MULT_8X8_PJ * w * a / 64 * FPGA_ENERGY_GAP
            mult_um2 = MULT_8X8_UM2 * w * a / 64 * FPGA_AREA_GAP
        mac_pj = macs * (mult_pj + add_pj)
        bram_pj = macs * w * BRAM_PJ_PER_BIT
        compares = 2**cfg.output_bits - 1 if cfg.requant == "thresholds" else 1
        requant_pj = r["mh"] * compares * add_pj
        latency_ns = r["cycles"] * 1e3 / cfg.clock_mhz
        parts, areas = calibrate(
            cfg,
            {"mac_pj": mac_pj, "bram_pj": bram_pj, "requant_pj": requant_pj,
             "fpga_static_mw": self.static_w() * 1e3},
            {"mac": p * q * (mult_um2 + add_um2), "bram": r["bram_18k"] * BRAM18_BITS * SRAM_BITCELL_UM2},
        )
        energy = {k: v for k, v in parts.items() if k.endswith("_pj")}
        return {
            "energy_pj": sum(energy.values()),
            "static_power_mw": parts["fpga_static_mw"],
            "latency_ns": latency_ns,
            # FINN's MVAU takes a new vector once its folded cycles are done (initiation interval)
            "interval_ns": latency_ns,
            "area_mm2": sum(areas.values()) * 1e-6,
            "lut": float(r["lut"]),
            "dsp": float(r["dsp"]),
            "bram_18k": float(r["bram_18k"]),
            "cycles": float(r["cycles"]),
            "parallelism_macs_per_cycle": float(p * q),
            "acc_bits": float(acc),
            # the bound beside the figure used: BRAM reads at Xilinx DS512's 1.94 pJ/bit
            "bram_pj_at_ds512_bound": macs * w * BRAM_PJ_PER_BIT_DS512 * cfg.bram_energy_scale,
            **energy,
            "fpga_static_mw": parts["fpga_static_mw"],
        }
