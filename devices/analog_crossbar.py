"""Analog in-memory crossbar (PCM or ReRAM): K as differential conductances on tiles.

Mapping (aihwkit's inference pipeline): by default one digital scale per output (column) maps
that output's ``max|K|`` to ``g_max`` (aihwkit ``MappingParameter(weight_scaling_omega=1.0,
weight_scaling_columnwise=True)`` with digital out-scaling), so that every column uses the whole
conductance range; ``weight_scaling="layer"`` keeps one scale for the matrix. Each weight is
``weight_slices`` columns (base-``2**bits_per_cell`` digits, shifted and added after the ADCs;
NeuroSim ``numColPerSynapse``, ISAAC) of ``devices_per_polarity`` pairs ``G+ - G-`` summed on the
column (aihwkit's single and dual pair converters, filled in order, the second weighted
``pair_significance``), every device with ``2**bits_per_cell`` levels in ``[0, g_max]``
(:meth:`AnalogCrossbarLayer.target_levels`). Non-idealities, in units of ``g_max``, after
aihwkit's ``PCMLikeNoiseModel`` (``src/aihwkit/inference/noise/pcm.py``; the formulas are
re-implemented here) or, for ``prog_noise_model="reram_wan2022"``, its ``ReRamWan2022NoiseModel``:

* stuck devices (``stuck_off_fraction`` at 0, ``stuck_on_fraction`` at ``g_max``): their target
  is replaced and they are not programmed; fixed per instance, fresh per training step;
* programming noise (``apply_programming_noise_to_conductance``): Gaussian, fixed per instance,
  fresh per training step, clipped at 0, std ``c0 + c1 g + c2 g^2`` (1.05 % of ``g_max`` at 0,
  3.8 % at ``g_max/2``), scaled by ``prog_noise`` (its std at ``g_max/2``);
* drift (``generate_drift_coefficients``, ``apply_drift_noise_to_conductance``):
  ``g(t) = g_prog ((t + t0) / t0)^-nu``, ``t`` the time since programming, ``t0 = 20 s``; one
  ``nu = |N(mu(g_T), sigma(g_T))|`` per device, fixed per instance, with the mean and spread
  depending on the target conductance ``g_T``: ``mu = clip(-0.0155 ln g_T + 0.0244, 0.049,
  0.1)``, ``sigma = clip(-0.0125 ln g_T - 0.0059, 0.008, 0.045)`` (0.079 +- 0.038 at 0.03
  ``g_max``, 0.049 +- 0.008 at ``g_max``); ``drift_model="constant"`` draws
  ``N(drift_nu, drift_nu_std)`` instead. Optional drift compensation from reference reads of
  an all-ones input through the periphery (output noise, ADC) at programming and at the read,
  one gain (aihwkit ``GlobalDriftCompensation``) or one per column
  (``PerColumnDriftCompensation``); training divides the global gain out either way;
* accumulated 1/f read noise (``apply_drift_noise_to_conductance``): ``g += |g(t)| Q_s
  sqrt(ln((t + t0 + t_read) / (2 t_read))) z`` with ``Q_s = min(read_noise / max(g_prog^0.65,
  1e-3), 0.2)`` and ``t_read = 250 ns``, then clipped at 0: it grows with the time since
  programming. An instance draws it once per read time (as aihwkit's ``drift_analog_weights(t)``
  draws it once per ``t``), fixed for a given seed and ``t_inference_s``, not per read. Training
  samples its effect on each column current in closed form per input vector (variance
  ``sum_j x_j^2 s_j^2`` over the devices' stds ``s_j``), which is much cheaper than a per-sample
  weight draw;
* IR drop along the bit lines (aihwkit ``IOParameters.ir_drop``, rpucuda
  ``ForwardBackwardPassIOManaged::applyIrDrop``): per row tile of ``n`` rows, ``a_i = n R g_max
  sum_j |w_ij x_j|``, ``c_i = a_i (a_i (0.05 a_i - 0.2) + 0.5)`` and ``y_i -= c_i sum_j w_ij x_j
  (1 - (1 - j/n)^2)``: output ``i``'s current runs along its bit line past the rows ``j``, so
  the drop grows with the row position ``j`` in the tile, the column current and
  the wire resistance ``R = wire_resistance_ohm`` per cell. Deterministic: applied in the nominal
  and instance modes, not in training (as aihwkit's ``IOParametersIRDropT``, which turns it off
  during hardware-aware training);
* output (bit-line) noise (aihwkit ``IOParameters.out_noise``): Gaussian, ``out_noise`` times the
  current of one ``g_max`` device at full-scale input (aihwkit's normalised output unit), added to
  each column output before the ADC at every conversion (re-seeded per call in an instance);
  per-read weight noise ``w_noise`` (aihwkit's additive weight noise) joins it as ``w_noise
  ||x||_2``;
* inputs: per-vector abs-max scaling or one calibrated, clipping range (``input_range``);
  ``pulse_width`` one drive, ``bit_serial`` one product per input bit plane, each converted with
  its own noise (``input_code``: sign-magnitude planes at the input's polarity, or two's
  complement); output ADCs with a calibrated range per slice, ``adc_share`` columns per ADC.

The time ``t`` is an evaluation condition, as aihwkit's ``drift_analog_weights(t_inference)``:
eval reads the layer at ``layer.t_inference_s`` (``draw_instance(seed, t_inference_s=...)`` or
``set_inference_time``), so one programmed chip can be read at 1 s, 1 h, 1 day...;
hardware-aware training simulates the read at ``t_inference_s`` too (``train_read_time="eval"``;
``codesign distill`` sets it to ``--eval-time``), or ``train_drift_time_s`` (``"fixed"``) or a
log-uniform range (``"range"``). As in aihwkit, ``t``
counts from the end of programming and the drift reference is ``t + t0``, so a chip read at
``t = 0`` has not drifted yet but carries the 1/f noise accumulated during ``t0``.

Matrices larger than a tile are split: ``tile_rows`` inputs (word lines) by ``tile_cols``
outputs (bit lines) per tile; the ADC-converted partial sums of row tiles are added digitally.

Cost (:meth:`AnalogCrossbarDevice.cost`; weights are stationary: no weight memory traffic):

* array read energy from physics, ``V_read^2 G t`` per device: ``read_voltage_v``; the mean
  programmed conductance ``mean_conductance_fraction * g_max_us`` per device (cost() does not
  see K, so a documented mean over both devices of every differential pair); the integration
  time of the input encoding, every input driven at full scale (an upper bound);
* ``input_encoding="bit_serial"`` (ISAAC, Shafiee et al., ISCA 2016): one 1-bit drive, one
  ``read_time_ns`` read cycle and one ADC conversion per input bit plane per slice column per
  row tile, then one digital shift-and-add per conversion; ``"pulse_width"`` (IBM HERMES, Le
  Gallo et al., Nat. Electron. 6, 680 (2023)): one pulse of up to ``2**(dac_bits-1)`` unit
  pulses of ``pulse_unit_ns`` (sign by polarity, one phase), one conversion per slice column per
  row tile; a shared ADC converts its ``adc_share`` columns in turn at ``adc_rate_gsps``;
* converters: ISAAC's 1-bit drive (0.41667 pJ) per input line per drive (a PWM pulse is one
  drive); a SAR ADC at ISAAC's 1.67 pJ for 8 bits, scaled with resolution as Saberi et al.
  (2011) in the hwcomponents-library ``IsaacADC`` model, for both encodings (no per-conversion
  energy of HERMES's CCO-based ADC was found);
* digital: ISAAC's shift-and-add per conversion of a sliced or bit-serial output, the input
  scaling the layer simulates, a 32-bit add (Horowitz, ISSCC 2014, 45 nm: 0.1 pJ) per row-tile
  partial sum;
* held power: ``periphery_static_mw`` per tile (``static_power_mw``); calibration factors
  ``*_energy_scale`` / ``*_area_scale`` (CiMLoop's style).

``feasibility`` refuses a matrix that needs more tiles than the chip's ``max_tiles``.

Export (``codesign export``): :meth:`AnalogCrossbarDevice.export_layer` writes a programmed layer
as format ``crossbar-conductance/2`` (G+ and G- per tile and pair in microsiemens and as levels,
slices as columns, column scales, drift-compensation procedure, converters, and a CSV;
:mod:`codesign.devices.crossbar_export`), and :meth:`AnalogCrossbarDevice.load_layer_export`
rebuilds it bit for bit from those files.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Mapping

import torch

from codesign.errors import ConfigError, check_choice, check_range

from .base import (
    CalibratedRange,
    Choice,
    Device,
    DeviceConfig,
    DeviceLayer,
    IntRange,
    Mode,
    Preset,
    SearchSpec,
    dac,
    preset_table,
    quantize_symmetric,
    scale_field,
    ste,
)
from .crossbar_export import FORMAT as EXPORT_FORMAT
from .crossbar_export import export_crossbar, load_crossbar
from .digital import DATAPATHS
from .input_range import (
    INPUT_RANGES,
    PercentileRange,
    check_input_range,
    input_percentile_field,
    input_range_field,
    range_dac,
)

T0_S = 20.0  # drift reference time after programming (aihwkit PCMLikeNoiseModel.t_0)
# --- ISAAC (Shafiee et al., ISCA 2016, 32 nm; its IMA component table) ---
ISAAC_ARRAY_CELLS = 128 * 128
CELL_AREA_UM2 = 25.0 / ISAAC_ARRAY_CELLS  # ISAAC: 0.0002 mm^2 for 8 arrays of 128 x 128
DAC_BIT_PJ = 0.41667  # ISAAC 1-bit DAC: energy per drive of one input line (see below)
DAC_BIT_AREA_UM2 = 0.166  # ISAAC: 8 x 128 1-bit DACs in 170 um^2
# ISAAC chip: 12 IMAs per tile and 8 crossbars per IMA (ISAAC; the per-IMA derivations in
# hwcomponents-library isaac.py agree), 168 tiles per chip as recalled from the paper's chosen
# design point: not re-checked against its table in this model's sources
ISAAC_CROSSBARS = 168 * 12 * 8
# ISAAC's numbers as tabulated with their derivations in Accelergy-Project/hwcomponents-library,
# hwcomponents_library/library/isaac.py: 1-bit DAC 4 mW for 8 x 128 DACs at the ADC-limited
# drive rate -> 0.41667 pJ per drive; shift-and-add 0.2 mW for 4 units at 8 x 1.2 GS/s ->
# 0.021 pJ per 16-bit shift-and-add; ADC 16 mW for 8 ADCs at 1.2 GS/s -> 1.667 pJ (Kull et al.,
# ISSCC 2013, 8-bit 1.2 GS/s SAR ADC in 32 nm), with Saberi et al. (2011) resolution scaling.
ISAAC_SHIFT_ADD_PJ = 0.021
INT32_ADD_PJ = DATAPATHS["int32"].add_pj  # Horowitz, ISSCC 2014 (45 nm): 32-bit add, row-tile partial sums
# --- mean programmed conductance ---
# Mean over a column of |w| / max|w| for iid Gaussian weights: 0.237 for 862 weights, 0.265 for
# 256 (Monte Carlo, 4000 columns; computed for this model). With column-wise mapping max|w| ->
# g_max and differential pairs (one device at |w|/max|w| g_max, the other RESET, ~0), the mean
# conductance per device is half of that: ~0.12 g_max.
GAUSSIAN_MEAN_ABS_OVER_MAX = 0.237
MEAN_CONDUCTANCE_FRACTION = 0.12  # per device, both devices of each pair: 0.237 / 2, rounded
# --- HERMES (IBM, 14 nm PCM) ---
# Khaddam-Aljameh et al., IEEE JSSC 2022 (HERMES core), abstract: main clock 1 GHz. The PWM
# unit pulse is taken as one clock period: 2^7 of them (128 ns) agree with the 133 ns per MVM
# implied by the 64-core chip's 63.1 TOPS (Le Gallo et al. 2023), see the published test.
HERMES_CLOCK_NS = 1.0
HERMES_CORES = 64  # Le Gallo et al., Nat. Electron. 6, 680 (2023): 64 cores of 256 x 256
# --- read voltage ---
# 0.2 V: a typical low-field read bias of PCM/RRAM arrays (well below the PCM threshold
# switching voltage). Not traced to a table of the HERMES papers in this model's sources; the
# NeuRRAM model in CiMLoop (mit-emze/cimloop, Wan et al., Nature 608, 504 (2022)) uses 0.5 V
# input pulses for RRAM (set read_voltage_v=0.5 for it).
READ_VOLTAGE_V = 0.2


# aihwkit PCMLikeNoiseModel.prog_coeff (uS at g_max = 25 uS), from Nandakumar et al. (2019) and
# Joshi et al., Nat. Commun. 11, 2473 (2020): std = c0 + c1 (g/g_max) + c2 (g/g_max)^2.
PCM_PROG_COEFF = (0.26348, 1.9650, -1.1731)
# aihwkit ReRamWan2022NoiseModel (src/aihwkit/inference/noise/reram.py), its fit to the ReRAM
# chip of Wan et al., 'A compute-in-memory chip based on resistive random-access memory',
# Nature 608, 504 (2022), 1 s after programming: std in uS at g_max = 40 uS,
# c0 + c1 g + ... + c4 g^4 in g/g_max (0.348 uS at 0, 2.02 uS = 5.1 % at g_max/2, 1.10 uS at g_max).
# aihwkit's note: no 1/f read-noise data; short-term read noise ~1 %: forward.w_noise = 0.01.
RERAM_WAN2022_PROG_COEFF = (0.348, 16.030, -43.853, 45.393, -16.815)
RERAM_WAN2022_G_MAX_US = 40.0
RERAM_W_NOISE = 0.01  # aihwkit ReRamWan2022NoiseModel docstring: w_noise ~ 0.01 for read noise
PROG_NOISE_MODELS = ("pcm", "reram_wan2022")
# std / g_max at g_max/2 of that fit: 2.0229 uS / 40 uS
RERAM_WAN2022_PROG_AT_HALF = sum(c * 0.5**i for i, c in enumerate(RERAM_WAN2022_PROG_COEFF)) / RERAM_WAN2022_G_MAX_US
# --- calibrations (tests/devices/test_crossbar_published.py reproduces each) ---
# ISAAC: the memristor arrays of an IMA draw 2.4 mW for 8 crossbars (ISAAC's IMA table; the
# same 0.3 mW per array in hwcomponents-library isaac.py), over 16 cycles of 100 ns = 480 pJ per
# full 128-row MVM; the V^2 G t model at the preset (32768 devices: 16 weights x 8 slices x 2
# polarities per row, 0.2 V, 0.12 x 25 uS, 1600 ns) gives 6291.456 pJ: scale 0.0763
ISAAC_ARRAY_ENERGY_SCALE = (2.4 / 8 * 16 * 100.0) / (128 * 16 * 8 * 2 * READ_VOLTAGE_V**2 * MEAN_CONDUCTANCE_FRACTION
                                                     * 25.0 * 1600.0 * 1e-3)
# HERMES: the measured 9.76 TOPS/W (Le Gallo et al. 2023; one-phase 8-bit MVMs) is 2 x 65536 /
# 9.76 = 13429.5 pJ per 256 x 256 MVM; the model's dynamic energy at the preset is 5410.8 pJ
# (array 4026.5 with four devices per weight, ADC 428.0, drives 106.7, scaling 849.6), so the
# core holds (13429.5 - 5410.8) pJ / 128 ns = 62.65 mW that the paper does not break down
# (LDPU, clock distribution, CCO and reference bias, PWM generators, leakage)
HERMES_PERIPHERY_STATIC_MW = 62.65
# HERMES core area: 1.59 TOPS/mm^2 (Khaddam-Aljameh et al., JSSC 2022, abstract) at the model's
# 128 ns MVM (1.024 TOPS) is 0.6440 mm^2; the model's cells (ISAAC 1R area, 400 um^2) and SAR
# ADCs (307202 um^2) are scaled alike to it (PWM drivers 340 um^2 unscaled): factor 2.0926
HERMES_AREA_SCALE = 2.0926
# --- drift exponent: aihwkit src/aihwkit/inference/noise/pcm.py,
# PCMLikeNoiseModel.generate_drift_coefficients: with g_T = max(|g_target| / g_max, 1e-7),
# mu = clip(-0.0155 ln g_T + 0.0244, 0.049, 0.1), sigma = clip(-0.0125 ln g_T - 0.0059, 0.008,
# 0.045), nu = |mu + sigma z| ---
DRIFT_G_CLIP = 1e-7  # aihwkit _ZERO_CLIP
DRIFT_MU_COEFF = (-0.0155, 0.0244)  # mu = a ln g + b
DRIFT_MU_CLIP = (0.049, 0.1)
DRIFT_SIGMA_COEFF = (-0.0125, -0.0059)  # sigma = a ln g + b
DRIFT_SIGMA_CLIP = (0.008, 0.045)
# --- accumulated 1/f read noise: aihwkit pcm.py, PCMLikeNoiseModel.apply_drift_noise_to_conductance:
# Q_s = min(0.0088 / max((g_prog/g_max)^0.65, 1e-3), 0.2), sigma = Q_s sqrt(ln((t + t_read) /
# (2 t_read))) with t = t_inference + t_0 and t_read = 250 ns (PCMLikeNoiseModel.t_read), applied
# as g += |g_drift| sigma z ---
READ_NOISE_Q = 0.0088  # aihwkit's Q_s at g = g_max (the default of the read_noise field)
READ_NOISE_EXPONENT = 0.65  # Q_s ~ (g/g_max)^-0.65 (relative noise; absolute ~ g^0.35)
READ_NOISE_FLOOR = 1e-3  # aihwkit clamps (g/g_max)^0.65 at 1e-3 ...
READ_NOISE_Q_MAX = 0.2  # ... and Q_s at 0.2
T_READ_S = 250e-9  # aihwkit PCMLikeNoiseModel.t_read
# --- output (bit-line) noise: aihwkit's PCM inference preset StandardHWATrainingPreset
# (src/aihwkit/simulator/presets/inference.py; it cites Rasch et al., arXiv:2302.08469, 2023)
# sets forward out_noise=0.04 with out_bound=10 (0.4 % of the output range);
# IOParameters' default (src/aihwkit/simulator/parameters/io.py, used by InferenceRPUConfig) is
# 0.06 with out_bound=12. Unit: one device at g_max driven at full-scale input. ---
OUT_NOISE = 0.04
# --- IR drop: aihwkit IOParameters.ir_drop / ir_drop_g_ratio (io.py) and rpucuda
# ForwardBackwardPassIOManaged::applyIrDrop (rpu_forward_backward_pass.cpp): ir_drop_g_ratio =
# wire conductance per cell / g_max = 1 / (0.35 Ohm * 5e-6 S) by default ("0.35 Ohm wire
# resistance", its doc), i.e. 0.35 Ohm of wire between adjacent cells; with our g_max_us the ratio
# is 1 / (R g_max), so at 25 uS the drop is 5x that of aihwkit's default ratio (which assumes a
# 5 uS device). aihwkit's PCM preset StandardHWATrainingPreset turns it on (ir_drop=1.0). ---
WIRE_RESISTANCE_OHM = 0.35
IR_DROP_POLY = (0.5, -0.2, 0.05)  # c = a (0.5 + a (-0.2 + 0.05 a)), applyIrDrop


def prog_noise_std(g: torch.Tensor, at_half: float, model: str = "pcm") -> torch.Tensor:
    """Programming error std / g_max at target conductances ``g`` (units of g_max).

    ``model="pcm"``: aihwkit's PCM polynomial (the preset gives 0.0381 at ``g_max/2``, 0.0105 at
    g = 0 and 0.0422 at g_max); ``"reram_wan2022"``: aihwkit's quartic fit to Wan et al. (2022)
    (0.0506 at ``g_max/2``, 0.0087 at 0, 0.0276 at g_max). Either shape is rescaled so that the
    std at ``g = g_max / 2`` is ``at_half``.
    """
    coeff = PCM_PROG_COEFF if model == "pcm" else RERAM_WAN2022_PROG_COEFF
    half = sum(c * 0.5**i for i, c in enumerate(coeff))
    out = torch.full_like(g, coeff[-1])
    for c in reversed(coeff[:-1]):  # Horner
        out = out * g + c
    return out * (at_half / half)


def drift_nu_mean(g: torch.Tensor) -> torch.Tensor:
    """Mean drift exponent at target conductances ``g`` (units of g_max), aihwkit's PCM fit."""
    lg = g.abs().clamp_min(DRIFT_G_CLIP).log()
    return (DRIFT_MU_COEFF[0] * lg + DRIFT_MU_COEFF[1]).clamp(*DRIFT_MU_CLIP)


def drift_nu_std(g: torch.Tensor) -> torch.Tensor:
    """Device-to-device std of the drift exponent at target conductances ``g``, aihwkit's PCM fit."""
    lg = g.abs().clamp_min(DRIFT_G_CLIP).log()
    return (DRIFT_SIGMA_COEFF[0] * lg + DRIFT_SIGMA_COEFF[1]).clamp(*DRIFT_SIGMA_CLIP)


def read_noise_relative(g_prog: torch.Tensor, q_at_gmax: float = READ_NOISE_Q) -> torch.Tensor:
    """aihwkit's relative 1/f noise coefficient ``Q_s`` at programmed conductances ``g_prog``.

    ``min(q_at_gmax / max(g^0.65, 1e-3), 0.2)``; the std of the accumulated noise is
    ``Q_s * read_time_factor(t) * |g(t)|``.
    """
    floor = g_prog.abs().pow(READ_NOISE_EXPONENT).clamp_min(READ_NOISE_FLOOR)
    return (q_at_gmax / floor).clamp_max(READ_NOISE_Q_MAX)


def read_time_factor(t_s: float) -> float:
    """``sqrt(ln((t + t0 + t_read) / (2 t_read)))``: growth of the accumulated 1/f noise (aihwkit)."""
    t = t_s + T0_S
    return math.sqrt(math.log((t + T_READ_S) / (2.0 * T_READ_S)))


def drift_factor(nu: torch.Tensor, t_s: float) -> torch.Tensor:
    """``((t + t0) / t0)^-nu``: conductance drift ``t_s`` seconds after programming (aihwkit)."""
    if t_s <= 0:
        return torch.ones_like(nu)
    return torch.exp(-nu * math.log((t_s + T0_S) / T0_S))


def ir_drop_coefficient(a: torch.Tensor) -> torch.Tensor:
    """aihwkit's IR-drop factor ``c = a (0.5 - 0.2 a + 0.05 a^2)`` of the normalised current ``a``."""
    p0, p1, p2 = IR_DROP_POLY
    return a * (p0 + a * (p1 + p2 * a))


def _time_stream(t_s: float) -> int:
    """Noise stream of the 1/f noise read at ``t_s``: one draw per read time (its float bits)."""
    return 1000 + int.from_bytes(struct.pack("<d", float(t_s)), "little")


def adc_energy_pj(bits: int) -> float:
    """SAR ADC energy per conversion: ``0.19586 b + 4.106e-4 * 2^b`` pJ.

    A comparator/logic term linear in the bits plus a capacitive-DAC term in ``2^b``, fitted to
    the ISAAC ADC scaled by Saberi et al. (0.79 pJ at 4 bits, 1.67 at 8, 2.38 at 10; <1 % error).
    """
    return 0.19586 * bits + 4.1059e-4 * 2.0**bits


def scaling_multiply_pj(bits: int) -> float:
    """A ``bits`` x ``bits`` integer multiply, pJ: Horowitz's 32-bit 3.1 pJ scaled by ``(bits/32)^2``.

    An array multiplier's energy grows with the square of the width; the scaling reproduces
    Horowitz's (ISSCC 2014, 45 nm) 8-bit multiply, 0.2 pJ (0.19 here).
    """
    return DATAPATHS["int32"].mult_pj * (bits / 32) ** 2


def adc_area_um2(bits: int) -> float:
    """SAR ADC area: ``81.726 b + 2.1336 * 2^b`` um^2 (361 at 4 bits, 1200 at 8, 3002 at 10)."""
    return 81.726 * bits + 2.1336 * 2.0**bits


# --- converters shared by columns (column multiplexing) ---
# ISAAC: one 8-bit 1.2 GS/s SAR ADC per 128 x 128 crossbar (Kull et al., ISSCC 2013), which
# converts the 128 columns of one 100 ns read cycle (ISAAC; CiMLoop's isaac_isca_2016 macro
# and hwcomponents-library isaac.py use the same 1.2 GS/s)
ADC_RATE_GSPS = 1.2
#: How the weights' one-cycle digital significances are recombined after the ADCs (ISAAC
#: "shift-and-add"); one per conversion of a sliced or bit-serial MVM.
TRAIN_READ_TIMES = ("eval", "fixed", "range")
INPUT_CODES = ("sign_magnitude", "twos_complement")
DRIFT_COMPENSATIONS = ("global", "column")


@dataclass(frozen=True)
class AnalogCrossbarConfig(DeviceConfig):
    """Configuration of :class:`AnalogCrossbarDevice` (defaults: a PCM crossbar).

    The time at which the crossbar is read is not a config field: it is an argument of the
    evaluation (``layer.t_inference_s``). Hardware-aware training reads the chip at the time
    ``train_read_time`` says (default: the evaluation time). Configs saved before that change
    have a field ``drift_time_s`` (mapped to ``train_drift_time_s``) and ``conductance_bits``
    (now ``bits_per_cell``).
    """

    LEGACY_FIELDS: ClassVar[Mapping[str, str]] = {
        "drift_time_s": "train_drift_time_s", "conductance_bits": "bits_per_cell"}

    tile_rows: int = field(
        default=512, metadata={"range": (1, 8192), "doc": "inputs (word lines) per crossbar tile, as aihwkit's 512"}
    )
    tile_cols: int = field(
        default=512, metadata={"range": (1, 8192), "doc": "columns (bit-line pairs) per tile; a weight of weight_slices "
                               "slices takes that many columns (tile_cols // weight_slices outputs per tile)"}
    )
    bits_per_cell: int = field(
        default=4, metadata={"range": (1, 32), "doc": "programmable levels per device = 2**bits over [0, g_max] (NeuroSim "
                             "cellBit, CiMLoop BITS_PER_CELL; ISAAC: 2)"}
    )
    weight_slices: int = field(
        default=1, metadata={"range": (1, 32), "doc": "columns (slices) one weight is spread over, bits_per_cell bits each, "
                             "recombined by shift-and-add after the ADCs (NeuroSim numColPerSynapse; "
                             "ISAAC: 8 slices of 2 bits = 16-bit weights)"}
    )
    devices_per_polarity: int = field(
        default=1, metadata={"range": (1, 2), "doc": "devices per polarity of a weight, summed on the column: 1 (a pair, "
                             "aihwkit SinglePairConductanceConverter) or 2 (two pairs, four devices, "
                             "aihwkit DualPairConductanceConverter; IBM HERMES)"}
    )
    pair_significance: float = field(
        default=1.0, metadata={"range": (1e-3, 1e3), "doc": "devices_per_polarity=2: weight F of the second pair relative to the "
                               "first (aihwkit f_lst=[1, F]); the first pair is filled before the second; "
                               "with weight_slices > 1 the pairs are equal (the slices carry the significance)"}
    )
    g_max_us: float = field(
        default=25.0, metadata={"range": (1e-3, 1e4), "doc": "largest conductance, uS (aihwkit PCM preset: 25 uS)"}
    )
    prog_noise_model: str = field(
        default="pcm", metadata={"doc": "shape of the programming error against the conductance: 'pcm' "
                                 "(aihwkit PCMLikeNoiseModel) or 'reram_wan2022' (aihwkit "
                                 "ReRamWan2022NoiseModel, Wan et al., Nature 2022)"}
    )
    prog_noise: float = field(
        default=0.04,
        metadata={"range": (0.0, 1.0), "doc": "programming error std / g_max at g = g_max/2; conductance-dependent as "
                  "prog_noise_model (aihwkit PCM preset: 3.8 % here, 1.05 % at g = 0; Wan 2022 ReRAM 5.06 %)"},
    )
    read_noise: float = field(
        default=READ_NOISE_Q,
        metadata={"range": (0.0, 1.0), "doc": "relative 1/f read noise Q_s of a device at g_max (aihwkit PCMLikeNoiseModel: "
                  "0.0088, ~ (g/g_max)^-0.65 below, times sqrt(ln((t+t0+t_read)/(2 t_read))))"},
    )
    w_noise: float = field(
        default=0.0,
        metadata={"range": (0.0, 1.0), "doc": "per-read weight noise std / g_max, fresh at every read and conversion (aihwkit "
                  "IOParameters.w_noise, ADDITIVE_CONSTANT: output noise w_noise * ||x||_2; ReRAM ~0.01)"},
    )
    train_read_time: str = field(
        default="eval",
        metadata={"doc": "read time hardware-aware training simulates: 'eval' the time the layer is "
                  "evaluated at (--eval-time), 'fixed' train_drift_time_s, 'range' log-uniform in "
                  "[train_read_time_min_s, train_read_time_max_s] drawn at every step"},
    )
    train_drift_time_s: float = field(
        default=3600.0,
        metadata={"range": (0.0, 1e10), "doc": "train_read_time='fixed': time since programming training simulates, s"},
    )
    train_read_time_min_s: float = field(
        default=1.0, metadata={"range": (0.0, 1e10), "doc": "train_read_time='range': shortest read time, s"}
    )
    train_read_time_max_s: float = field(
        default=3.15e8, metadata={"range": (0.0, 1e10), "doc": "train_read_time='range': longest read time, s (10 years)"}
    )
    drift_model: str = field(
        default="pcm",
        metadata={"doc": "'pcm': drift exponent mean and spread depend on the conductance as aihwkit's "
                  "PCMLikeNoiseModel (0.079 +- 0.038 at 0.03 g_max, 0.049 +- 0.008 at g_max); "
                  "'constant': nu ~ N(drift_nu, drift_nu_std) for every device"},
    )
    drift_nu: float = field(
        default=0.05, metadata={"range": (0.0, 1.0), "doc": "drift_model='constant': mean drift exponent (aihwkit range 0.049-0.1)"}
    )
    drift_nu_std: float = field(
        default=0.01, metadata={"range": (0.0, 1.0), "doc": "drift_model='constant': device-to-device std of nu (aihwkit 0.008-0.045)"}
    )
    drift_compensation: bool = field(
        default=True, metadata={"doc": "digital drift compensation from reference reads of an all-ones input "
                                "through the periphery at programming and at read time (aihwkit default)"}
    )
    drift_compensation_type: str = field(
        default="global", metadata={"doc": "'global': one gain (aihwkit GlobalDriftCompensation); 'column': one "
                                    "gain per column (aihwkit PerColumnDriftCompensation)"}
    )
    out_noise: float = field(
        default=OUT_NOISE,
        metadata={"range": (0.0, 10.0), "doc": "output (bit-line) noise std per column per conversion, in units of one g_max "
                  "device at full-scale input (aihwkit StandardHWATrainingPreset out_noise: 0.04)"},
    )
    wire_resistance_ohm: float = field(
        default=WIRE_RESISTANCE_OHM,
        metadata={"range": (0.0, 1e3), "doc": "bit-line wire resistance between adjacent cells, Ohm, for the IR drop "
                  "(aihwkit ir_drop_g_ratio: 0.35 Ohm); 0 turns the IR drop off"},
    )
    stuck_off_fraction: float = field(
        default=0.0,
        metadata={"range": (0.0, 1.0), "doc": "fraction of devices stuck at 0 (RESET), fixed per instance (no published "
                  "PCM figure adopted: 0)"},
    )
    stuck_on_fraction: float = field(
        default=0.0,
        metadata={"range": (0.0, 1.0), "doc": "fraction of devices stuck at g_max (SET), fixed per instance (no published "
                  "PCM figure adopted: 0)"},
    )
    weight_scaling: str = field(
        default="column",
        metadata={"doc": "'column': one digital scale per output maps its max |K| to g_max "
                  "(aihwkit weight_scaling_columnwise); 'layer': one scale for the whole matrix"},
    )
    input_range: str = input_range_field()
    input_percentile: float = input_percentile_field()
    dac_bits: int = field(default=8, metadata={"range": (1, 32), "doc": "input resolution, bits (bit_serial: one cycle per bit)"})
    adc_bits: int = field(default=8, metadata={"range": (1, 32), "doc": "output ADC resolution, bits"})
    adc_share: int = field(
        default=1, metadata={"range": (1, 8192), "doc": "columns sharing one ADC (column multiplexing: fewer ADCs, conversions "
                             "in sequence; ISAAC: 128, one ADC per crossbar)"}
    )
    adc_rate_gsps: float = field(
        default=ADC_RATE_GSPS, metadata={"range": (1e-6, 1e3), "doc": "conversions per ns of one ADC, GS/s (ISAAC: 1.2)"}
    )
    read_time_ns: float = field(
        default=100.0,
        metadata={"range": (1e-3, 1e6), "doc": "bit_serial: crossbar read cycle per input bit, ns (ISAAC: 100 ns)"},
    )
    input_encoding: str = field(
        default="pulse_width",
        metadata={"doc": "'pulse_width': one pulse of up to 2**(dac_bits-1) unit pulses, one ADC "
                  "conversion per column (IBM HERMES); 'bit_serial': one 1-bit drive, read cycle, output "
                  "noise and ADC conversion per input bit per column, digital shift-and-add (ISAAC)"},
    )
    input_code: str = field(
        default="sign_magnitude",
        metadata={"doc": "bit_serial: 'sign_magnitude' drives each magnitude bit plane at the input's polarity "
                  "(+V or -V, as HERMES's PWM sign; dac_bits - 1 cycles), 'twos_complement' drives 0/1 planes "
                  "with the top one weighted -2^(dac_bits-1) (dac_bits cycles; a small negative input sets every "
                  "high plane, whose errors the shift-and-add multiplies)"},
    )
    pulse_unit_ns: float = field(
        default=HERMES_CLOCK_NS,
        metadata={"range": (1e-3, 1e6), "doc": "pulse_width: unit pulse duration, ns (HERMES: 1 ns, its 1 GHz clock)"},
    )
    read_voltage_v: float = field(
        default=READ_VOLTAGE_V,
        metadata={"range": (0.0, 5.0), "doc": "read voltage across a conducting device, V (cost only; 0.2 V PCM-like)"},
    )
    mean_conductance_fraction: float = field(
        default=MEAN_CONDUCTANCE_FRACTION,
        metadata={"range": (0.0, 1.0), "doc": "mean programmed conductance per device / g_max, every device of each "
                  "weight (cost only; 0.12: Gaussian weights, column max mapped to g_max)"},
    )
    periphery_static_mw: float = field(
        default=0.0,
        metadata={"range": (0.0, 1e6), "doc": "power held per tile while programmed (bias and reference circuits, clocking, "
                  "leakage), mW; no generic cited figure: 0 (ibm_hermes: calibrated to its TOPS/W)"},
    )
    # CiMLoop's *_ENERGY_SCALE / *_AREA_SCALE (ADC_ENERGY_SCALE...)
    array_energy_scale: float = scale_field("the array's read energy")
    dac_energy_scale: float = scale_field("the input drives' energy")
    adc_energy_scale: float = scale_field("the ADCs' energy")
    cell_area_scale: float = scale_field("the cells' area")
    adc_area_scale: float = scale_field("the ADCs' area")
    max_tiles: int = field(
        default=HERMES_CORES,
        metadata={"range": (1, 10**9), "doc": "crossbar tiles (cores) on the chip; more is infeasible (HERMES: 64)"},
    )

    def validate(self) -> None:
        """Choices and cross-field rules; raise ``ConfigError`` naming the field and the fix.

        Each numeric field's range is its metadata's (``DeviceConfig`` checks it first).
        """
        if self.weight_slices > self.tile_cols:
            raise ConfigError(f"weight_slices={self.weight_slices} needs that many columns per weight, more than "
                              f"tile_cols={self.tile_cols}; raise tile_cols or lower weight_slices")
        if self.bits_per_cell * self.weight_slices > 32:
            raise ConfigError(f"bits_per_cell={self.bits_per_cell} x weight_slices={self.weight_slices} is more "
                              "than a 32-bit weight; lower one of them")
        if self.input_encoding == "bit_serial" and self.dac_bits > 24:
            raise ConfigError(f"dac_bits={self.dac_bits} with input_encoding='bit_serial' runs one cycle per bit: "
                              "use at most 24 bits")
        check_choice("prog_noise_model", self.prog_noise_model, PROG_NOISE_MODELS)
        check_choice("train_read_time", self.train_read_time, TRAIN_READ_TIMES)
        if self.train_read_time_max_s < self.train_read_time_min_s:
            raise ConfigError(f"train_read_time_max_s={self.train_read_time_max_s} is below train_read_time_min_s="
                              f"{self.train_read_time_min_s}; give max >= min")
        check_choice("drift_model", self.drift_model, ("pcm", "constant"))
        check_choice("drift_compensation_type", self.drift_compensation_type, DRIFT_COMPENSATIONS)
        if self.stuck_off_fraction + self.stuck_on_fraction > 1.0:
            raise ConfigError(
                f"stuck_off_fraction={self.stuck_off_fraction} + stuck_on_fraction="
                f"{self.stuck_on_fraction}: the stuck fractions must sum to at most 1"
            )
        check_input_range(self.input_range)
        check_range("input_percentile", self.input_percentile, 50.0, 100.0)
        check_choice("input_encoding", self.input_encoding, ("pulse_width", "bit_serial"))
        check_choice("input_code", self.input_code, INPUT_CODES)
        check_choice("weight_scaling", self.weight_scaling, ("column", "layer"))
        if not isinstance(self.drift_compensation, bool):
            check_range("drift_compensation", self.drift_compensation, 0, 1, integer=True)

    # ------------------------------------------------------------------ derived
    @property
    def cycles(self) -> int:
        """Products (drives, conversions) per MVM: one per input bit plane (bit_serial), else one.

        ``sign_magnitude``: the ``dac_bits - 1`` magnitude bits (the sign is the drive's
        polarity); ``twos_complement``: all ``dac_bits`` bits.
        """
        if self.input_encoding != "bit_serial":
            return 1
        return self.dac_bits if self.input_code == "twos_complement" else max(1, self.dac_bits - 1)

    def pair_factors(self) -> tuple[float, ...]:
        """Significance of each device pair on a column (aihwkit f_lst): ``(1,)`` or ``(1, F)``.

        With ``weight_slices > 1`` the slices carry the significance and the pairs of a slice are
        equal (``(1, 1)``): a slice's digit is then exact on its pairs.
        """
        if self.devices_per_polarity == 1:
            return (1.0,)
        return (1.0, float(self.pair_significance) if self.weight_slices == 1 else 1.0)

    def slice_significances(self) -> tuple[float, ...]:
        """Digital weight of each slice, least significant first, summing to 1.

        Slice ``s`` holds the digit of base ``2**bits_per_cell`` at position ``s`` of the weight's
        ``bits_per_cell * weight_slices``-bit magnitude: ``L (L+1)^s / ((L+1)^S - 1)``, ``L = 2**b - 1``.
        """
        base = 2**self.bits_per_cell
        total = float(base**self.weight_slices - 1)
        return tuple((base - 1) * base**s / total for s in range(self.weight_slices))

    def outputs_per_tile(self) -> int:
        """Outputs one tile holds: its columns over the slices of a weight."""
        return self.tile_cols // self.weight_slices


class AnalogCrossbarLayer(DeviceLayer):
    """``x @ K.T`` on differential crossbar columns; ``weight`` holds K (float, trainable).

    Every weight is ``weight_slices`` columns (slices) of ``devices_per_polarity`` device pairs:
    :meth:`device_conductances` has shape ``[2 polarities, devices_per_polarity, weight_slices,
    out, in]``. Each slice column is read by the ADC on its own (per input bit with
    ``bit_serial``) and the digital periphery shifts and adds them.
    """

    #: Noise streams of an instance (:meth:`DeviceLayer.noise`): fixed per instance...
    STREAM_PROG, STREAM_DRIFT, STREAM_STUCK = 0, 1, 2
    #: ... re-seeded at every read (output noise; bit-serial chunks take the next streams); the
    #: 1/f noise uses one stream per read time; the drift-compensation reference reads their own.
    STREAM_OUT = 101
    STREAM_REF_PROGRAMMED, STREAM_REF_READ = 201, 202
    #: Rows of a bit-serial batch simulated at once in eval (the planes of every input bit are held).
    EVAL_CHUNK = 1024

    def __init__(self, in_features: int, out_features: int, config: AnalogCrossbarConfig) -> None:
        super().__init__(in_features, out_features, config)
        self.weight = torch.nn.Parameter(torch.zeros(out_features, in_features))
        gen = torch.Generator().manual_seed(0)  # nn.Linear's init scale, no global RNG
        bound = 1.0 / math.sqrt(in_features)
        with torch.no_grad():
            self.weight.uniform_(-bound, bound, generator=gen)
        self.row_slices = [
            slice(a, min(a + config.tile_rows, in_features))
            for a in range(0, in_features, config.tile_rows)
        ]
        # IR-drop position coding of every input within its row tile (aihwkit applyIrDrop):
        # 1 - (1 - j/n)^2 for row j of a tile of n rows, along the bit line; not saved
        pos = torch.cat([
            1.0 - (1.0 - torch.arange(sl.stop - sl.start, dtype=torch.float32) / (sl.stop - sl.start)) ** 2
            for sl in self.row_slices
        ])
        self.register_buffer("ir_position", pos, persistent=False)
        # one calibrated ADC full scale per slice significance (slice 0 keeps the pre-slicing name)
        self.adc_range = CalibratedRange()
        if config.weight_slices > 1:
            self.adc_range_slices = torch.nn.ModuleList(CalibratedRange() for _ in range(config.weight_slices - 1))
        if config.input_range == "calibrated":
            self.input_range = PercentileRange(config.input_percentile)

    def adc_ranges(self) -> list[CalibratedRange]:
        """The ADC full-scale calibrations, one per slice, least significant first."""
        extra = list(self.adc_range_slices) if self.config.weight_slices > 1 else []
        return [self.adc_range, *extra]

    def load_matrix(self, matrix: torch.Tensor) -> None:
        """Program ``matrix`` (``[out, in]``): the float weight the conductances are mapped from."""
        with torch.no_grad():
            self.weight.copy_(matrix.to(self.weight))
        for r in self.adc_ranges():
            r.reset()

    def drift_time_s(self, mode: Mode | None = None) -> float:
        """Time since programming the conductances are read at in ``mode``, s.

        Eval (nominal and instance): :attr:`t_inference_s`. Training, by ``train_read_time``:
        ``"eval"`` the same :attr:`t_inference_s` (``codesign distill`` and the search set it to
        ``--eval-time`` before training); ``"fixed"`` ``train_drift_time_s``; ``"range"`` a fresh
        log-uniform draw of ``t + t0`` over ``[train_read_time_min_s, train_read_time_max_s]``
        at every call (global RNG, as training noise).
        """
        cfg = self.config
        mode = self.mode if mode is None else mode
        if mode is not Mode.TRAINING or cfg.train_read_time == "eval":
            return self.t_inference_s
        if cfg.train_read_time == "fixed":
            return cfg.train_drift_time_s
        lo, hi = math.log(cfg.train_read_time_min_s + T0_S), math.log(cfg.train_read_time_max_s + T0_S)
        return max(0.0, math.exp(lo + (hi - lo) * float(torch.rand(()))) - T0_S)

    # ------------------------------------------------------------------ programming
    def target_levels(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Target conductances ``[2, P, S, out, in]`` (units of g_max, on the level grid) and the
        digital column scale ``[out, 1]``; the float weight's gradient passes straight through.

        The weight over its column scale, ``|w| <= 1``, becomes a magnitude of
        ``bits_per_cell * weight_slices`` bits whose base-``2**bits_per_cell`` digits are the
        slices (NeuroSim, ISAAC); within a slice the pairs are filled in order, the first up to
        g_max before the second (aihwkit ``NPairConductanceConverter``), each device rounded to
        its ``2**bits_per_cell`` levels and the next pair programmed to what remains. The sign
        picks the polarity (``G+`` or ``G-``); the other device is RESET (0).
        """
        cfg = self.config
        w_abs = self.weight.detach().abs()
        if cfg.weight_scaling == "column":  # aihwkit weight_scaling_columnwise: one scale per output
            scale = w_abs.amax(1, keepdim=True).clamp_min(1e-30)
        else:
            scale = w_abs.amax().clamp_min(1e-30).expand(self.out_features, 1)
        wn = self.weight / scale
        L = 2**cfg.bits_per_cell - 1
        S, factors = cfg.weight_slices, cfg.pair_factors()
        with torch.no_grad():
            m = wn.detach().abs().clamp_max(1.0)
            if S > 1:  # integer magnitude in base L+1, one digit per slice
                mag = torch.round(m.double() * float((L + 1) ** S - 1))
                digits = [torch.remainder(torch.floor(mag / float((L + 1) ** s)), L + 1).to(m) / L for s in range(S)]
            else:
                digits = [m]
            slices = []
            for v in digits:  # fill the pairs of the slice: x in units of one device at g_max
                x = v * sum(factors)
                devs = []
                for f in factors:
                    u = torch.round((x / f).clamp(0.0, 1.0) * L) / L
                    devs.append(u)
                    x = x - f * u
                slices.append(torch.stack(devs))  # [P, out, in]
            mag_q = torch.stack(slices, 1)  # [P, S, out, in]
            pos = (wn.detach() > 0).to(m)
            g_q = torch.stack((mag_q * pos, mag_q * (1.0 - pos)))  # [2, P, S, out, in]
        # gradient: every device carries its share of the weight (sum of significances = 1); the
        # value is exactly the level grid (x - x is exactly 0), whatever the float weight
        g_float = torch.stack((torch.relu(wn), torch.relu(-wn)))[:, None, None]
        return g_q + (g_float - g_float.detach()), scale

    def device_conductances(self, mode: Mode | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Device conductances ``[2, P, S, out, in]`` in units of g_max and the digital gain ``[S, out, 1]``.

        The gain (column scale over drift compensation) multiplies each slice column's output
        after its ADC, together with the slice's significance (:meth:`effective_matrix`).
        """
        g, scale, col_gain, _ = self._conductances(mode)
        return g, scale.unsqueeze(0) * col_gain.unsqueeze(-1)

    def conductances(self, mode: Mode | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """G+ and G- ``[2, out, in]`` and the digital gain ``[out, 1]`` of a one-pair, one-slice layer.

        ``(g[0] - g[1]) * gain`` is the implemented matrix. Layers with several devices per
        weight: :meth:`device_conductances`.
        """
        cfg = self.config
        if cfg.weight_slices != 1 or cfg.devices_per_polarity != 1:
            raise ConfigError("conductances() is the one-pair, one-slice view; use device_conductances() "
                              f"(weight_slices={cfg.weight_slices}, devices_per_polarity={cfg.devices_per_polarity})")
        g, gain = self.device_conductances(mode)
        return g[:, 0, 0], gain[0]

    def _conductances(
        self, mode: Mode | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """``(g, scale, col_gain, read_std)``: devices ``[2, P, S, out, in]``, column scale ``[out, 1]``,
        drift-compensation gain ``[S, out]`` and, in training, the per-device 1/f std.

        Noise streams of an instance: 0 programming errors, 1 drift exponents, 2 stuck devices,
        one stream per read time for the 1/f noise (fixed for a seed and a time), 101+ output
        noise (``forward``, re-seeded per read), 201/202 the reference reads.
        """
        cfg = self.config
        mode = self.mode if mode is None else mode
        t = self.drift_time_s(mode)
        noisy = mode is not Mode.NOMINAL
        g, scale = self.target_levels()
        stuck = None
        if noisy and (cfg.stuck_off_fraction > 0 or cfg.stuck_on_fraction > 0):
            # stuck devices: target replaced by 0 or g_max, not programmed (no programming noise)
            u = torch.special.ndtr(self.noise(g.shape, self.STREAM_STUCK, g, mode))  # uniform
            off = u < cfg.stuck_off_fraction
            on = (u >= cfg.stuck_off_fraction) & (u < cfg.stuck_off_fraction + cfg.stuck_on_fraction)
            stuck = off | on
            g = torch.where(on, torch.ones_like(g), torch.where(off, torch.zeros_like(g), g))
        g_target = g.detach()
        if cfg.prog_noise > 0 and noisy:
            z = self.noise(g.shape, self.STREAM_PROG, g, mode)
            sigma = prog_noise_std(g_target, cfg.prog_noise, cfg.prog_noise_model)
            if stuck is not None:
                sigma = sigma.masked_fill(stuck, 0.0)
            g = ste(g, (g + sigma * z).clamp_min(0.0))
        g_prog_d = g.detach()
        # drift exponents, drawn from the target conductances (aihwkit generate_drift_coefficients)
        if cfg.drift_model == "pcm":
            nu = drift_nu_mean(g_target)
            if noisy:
                z = self.noise(g.shape, self.STREAM_DRIFT, g, mode)
                nu = (nu + drift_nu_std(g_target) * z).abs()
        else:
            nu = torch.full_like(g_target, cfg.drift_nu)
            if cfg.drift_nu_std > 0 and noisy:
                nu = (nu + cfg.drift_nu_std * self.noise(g.shape, self.STREAM_DRIFT, g, mode)).clamp_min(0.0)
        if t > 0:
            g = g * drift_factor(nu, t)
        read_std = None
        if cfg.read_noise > 0 and noisy:
            # accumulated 1/f noise: std |g(t)| Q_s(g_prog) sqrt(ln((t + t0 + t_read)/(2 t_read)))
            with torch.no_grad():
                std = g.detach().abs() * read_noise_relative(g_prog_d, cfg.read_noise) * read_time_factor(t)
            if mode is Mode.TRAINING:
                read_std = std  # sampled per input vector in forward (closed form)
            else:  # one draw per instance and read time, as aihwkit's drift_analog_weights(t)
                z = self.noise(g.shape, _time_stream(t), g, mode)
                g = ste(g, (g + std * z).clamp_min(0.0))
        col_gain = torch.ones(cfg.weight_slices, self.out_features, dtype=g.dtype, device=g.device)
        # Training always divides out the global drift gain, compensation on or off: a global
        # gain cannot change an argmax at evaluation, so training must not depend on it (without
        # it the loss sees logits at ~0.75 of their scale at 1 h: another effective temperature).
        if cfg.drift_compensation or mode is Mode.TRAINING:
            kind = cfg.drift_compensation_type if cfg.drift_compensation else "global"
            col_gain = self._compensation(g_prog_d, g.detach(), kind, mode, t).to(col_gain)
        return g, scale, col_gain, read_std

    def _reference_read(self, g: torch.Tensor, full_scale: torch.Tensor | None, stream: int,
                        mode: Mode) -> tuple[torch.Tensor, torch.Tensor]:
        """One read of an all-ones input through the periphery: ``[2, S, tiles, out]`` ADC codes.

        Each polarity's column current (the pairs weighted by their significance) per row tile,
        plus the output noise of a conversion, through the ADC at ``full_scale`` (None: set to the
        largest current of this read, as when the reference is first taken at programming).
        """
        cfg = self.config
        f = torch.tensor(cfg.pair_factors(), dtype=g.dtype, device=g.device).view(1, -1, 1, 1, 1)
        cur = (g * f).sum(1)  # [2, S, out, in]
        cur = torch.stack([cur[..., sl].sum(-1) for sl in self.row_slices], 2)  # [2, S, T, out]
        if cfg.out_noise > 0 and mode is not Mode.NOMINAL:
            cur = cur + cfg.out_noise * self.noise(cur.shape, stream, cur, mode)
        if full_scale is None:
            full_scale = cur.abs().amax().clamp_min(1e-30)
        return quantize_symmetric(cur, full_scale, cfg.adc_bits), full_scale

    def _compensation(self, g_prog: torch.Tensor, g_now: torch.Tensor, kind: str, mode: Mode,
                      t: float) -> torch.Tensor:
        """Drift-compensation gain ``[S, out]`` from reference reads at programming and at ``t``.

        As aihwkit's drift compensation (``init_baseline`` after programming, ``apply`` at the
        read): an all-ones input is read through the noisy periphery (output noise, ADC) on the
        programmed chip and again at the read time; the gain is the ratio of the readouts, one
        for the layer (``global``: the summed column codes, aihwkit GlobalDriftCompensation reads
        out the abs max) or one per slice column (``column``: aihwkit PerColumnDriftCompensation).
        No noise-free conductance is read.
        """
        with torch.no_grad():
            ref0, fs = self._reference_read(g_prog, None, self.STREAM_REF_PROGRAMMED, mode)
            ref_t, _ = self._reference_read(g_now, fs, self.STREAM_REF_READ, mode)
            if kind == "global":
                ratio = ref0.abs().sum() / ref_t.abs().sum().clamp_min(1e-30)
                return ratio.expand(self.config.weight_slices, self.out_features)
            a0, at = ref0.abs().sum((0, 2)), ref_t.abs().sum((0, 2))  # [S, out]
            # a column that reads 0 (no conductance, or below one ADC step) keeps gain 1
            return torch.where((a0 > 0) & (at > 0), a0 / at.clamp_min(1e-30), torch.ones_like(a0))

    def effective_matrix(self) -> torch.Tensor:
        """The nominal implemented matrix (quantized, mean drift at ``t_inference_s``, compensated).

        The IR drop and the converters depend on the input and are not part of it.
        """
        with torch.no_grad():
            g, scale, col_gain, _ = self._conductances(Mode.NOMINAL)
            return (self._slice_weights(g) * self._digital_weights(col_gain).unsqueeze(-1)).sum(0) * scale

    def _slice_weights(self, g: torch.Tensor) -> torch.Tensor:
        """Column weights ``[S, out, in]`` in units of one g_max device: the pairs' currents summed."""
        factors = self.config.pair_factors()
        w = g[0, 0] - g[1, 0]
        for p in range(1, len(factors)):
            w = w + factors[p] * (g[0, p] - g[1, p])
        return w

    def _digital_weights(self, col_gain: torch.Tensor) -> torch.Tensor:
        """Digital factor ``[S, out]`` of each slice column after its ADC: significance x compensation."""
        cfg = self.config
        sig = torch.tensor(cfg.slice_significances(), dtype=col_gain.dtype, device=col_gain.device)
        return col_gain * (sig / sum(cfg.pair_factors())).unsqueeze(1)

    # ------------------------------------------------------------------ reading
    def _inputs(self, x: torch.Tensor) -> tuple[torch.Tensor, float, torch.Tensor]:
        """``(codes, lsb, amax)``: integer input codes, their step and the digital input scale."""
        cfg = self.config
        if cfg.input_range == "vector_absmax":
            return dac(x, cfg.dac_bits)
        return range_dac(x, self.input_range(x), cfg.dac_bits)  # clipped at the range

    def _adc(self, y: torch.Tensor) -> torch.Tensor:
        """Quantize slice outputs ``[..., S, out]`` with each slice's calibrated full scale."""
        ranges = self.adc_ranges()
        if len(ranges) == 1:
            return quantize_symmetric(y, ranges[0](y), self.config.adc_bits)
        fs = torch.stack([r(y[..., s, :]) for s, r in enumerate(ranges)]).to(y)
        return quantize_symmetric(y, fs.unsqueeze(-1), self.config.adc_bits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[batch, in] -> [batch, out]``: inputs, tiled analog MVMs per slice (per input bit),
        read and output noise, IR drop, ADCs, digital shift-and-add, scales."""
        cfg, mode = self.config, self.mode
        g, scale, col_gain, read_std = self._conductances(mode)
        w = self._slice_weights(g)  # [S, out, in]
        digital = self._digital_weights(col_gain)  # [S, out]
        codes, lsb, amax = self._inputs(x)
        if cfg.cycles == 1:
            y = self._one_cycle(codes, lsb, w, read_std, digital, g)
        else:
            y = self._bit_serial(codes, lsb, w, read_std, digital, g)
        return y * (amax * scale.reshape(1, -1))

    def _noise_sigma(self, x2_tiles: torch.Tensor) -> torch.Tensor | float | None:
        """Std of the fresh per-conversion noise: output noise and per-read weight noise.

        ``x2_tiles``: ``[..., tiles, 1]`` sums of the squared drives of each row tile (aihwkit's
        additive weight noise is output noise ``w_noise * ||x||_2``).
        """
        cfg = self.config
        if self.mode is Mode.NOMINAL or (cfg.out_noise == 0 and cfg.w_noise == 0):
            return None
        if cfg.w_noise == 0:
            return cfg.out_noise
        return (x2_tiles * cfg.w_noise**2 + cfg.out_noise**2).sqrt()

    def _tile_sums(self, drives: torch.Tensor, w_all: torch.Tensor) -> torch.Tensor:
        """``[rows, tiles, cols]``: every row tile's column sums of ``drives @ w_all.T``."""
        return torch.stack([torch.nn.functional.linear(drives[:, sl], w_all[:, sl].contiguous())
                            for sl in self.row_slices], dim=1)

    def _one_cycle(self, codes, lsb, w, read_std, digital, g) -> torch.Tensor:
        """One drive per MVM (``pulse_width``): the gradient flows through the product and ADC."""
        cfg, mode = self.config, self.mode
        S, out = w.shape[0], self.out_features
        w_flat = w.reshape(S * out, -1)
        # IR drop in eval only, as aihwkit's IOParametersIRDropT ("automatically turned off
        # during HWA training"); it would add a pass over the inputs to every training step
        ir = cfg.wire_resistance_ohm > 0 and mode is not Mode.TRAINING
        w_all = torch.cat((w_flat, (w_flat * self.ir_position.to(w)).detach())) if ir else w_flat
        y_all = self._tile_sums(codes, w_all) * lsb  # [batch, tiles, S*out (x2)] column currents
        y = y_all[..., : S * out]
        extra = None  # detached additions to y: IR drop, read noise, output noise
        with torch.no_grad():
            if ir:
                extra = self._ir_drop(codes.detach(), w_flat.detach(), lsb, y_all[..., S * out:].detach()).neg_()
            x2 = codes.detach().square()
            x2_tiles = torch.stack([x2[:, sl].sum(1) for sl in self.row_slices], 1).unsqueeze(-1) * (lsb * lsb)
            sigma = self._noise_sigma(x2_tiles)
            if read_std is not None:  # training: std of the summed device noise sqrt(sum_j x_j^2 s_j^2)
                f2 = torch.tensor(cfg.pair_factors(), dtype=w.dtype, device=w.device).square().view(1, -1, 1, 1, 1)
                v = (read_std.square() * f2).sum((0, 1)).reshape(S * out, -1)
                var = self._tile_sums(x2, v).mul_(lsb * lsb)
                if sigma is not None:  # independent conversion noise joins the same Gaussian draw
                    var = var + (sigma**2 if isinstance(sigma, float) else sigma.square())
                sigma = var.sqrt_()
            if sigma is not None:  # eval: re-seeded per read
                noise = self.noise(y.shape, self.STREAM_OUT, y, mode).mul_(sigma)
                extra = noise if extra is None else extra.add_(noise)
        if extra is not None:
            y = y + extra
        y = self._adc(y.unflatten(-1, (S, out))).sum(dim=1)  # [batch, S, out]
        return (y * digital).sum(1)

    def _bit_serial(self, codes, lsb, w, read_std, digital, g) -> torch.Tensor:
        """One product per input bit, each converted with its own noise; digital shift-and-add.

        ``sign_magnitude``: the magnitude bit planes of the integer codes drive the word lines at the
        input's polarity (+1, 0 or -1 of full scale), least significant first, weighted ``2**k``;
        ``twos_complement``: the two's-complement planes drive 0 or full scale and the most
        significant plane counts ``-2**(B-1)``. Every plane,
        slice column and row tile is one ADC conversion with its own output and weight noise.
        Simulated without gradient, all planes and tiles in one batched product; in training the
        gradient is that of the ideal product (straight through). The 1/f conductance noise is
        the same for every plane of a read and is added, in training, to the recombined output.
        """
        cfg, mode = self.config, self.mode
        B, S, out, n = cfg.cycles, w.shape[0], self.out_features, cfg.tile_rows
        T = len(self.row_slices)
        signed = cfg.input_code == "sign_magnitude"
        pad = T * n - self.in_features
        ir = cfg.wire_resistance_ohm > 0 and mode is not Mode.TRAINING
        with torch.no_grad():
            w_flat = w.detach().reshape(S * out, -1)
            parts = [w_flat]
            if ir:  # the IR drop's position-filtered and absolute products ride along
                parts += [w_flat * self.ir_position.to(w), w_flat.abs()]
            w_all = torch.nn.functional.pad(torch.cat(parts), (0, pad))  # [C, T*n]
            w_tiles = w_all.reshape(-1, T, n).permute(1, 2, 0).contiguous()  # [T, n, C]
            top = 2.0 ** (B - 1) if signed else -(2.0 ** (B - 1))
            plane = torch.tensor([2.0**k for k in range(B - 1)] + [top], dtype=w.dtype, device=w.device)
            shifts = torch.arange(B, device=codes.device).view(1, B, 1, 1)
            r_gmax = cfg.wire_resistance_ohm * cfg.g_max_us * 1e-6
            widths = torch.tensor([sl.stop - sl.start for sl in self.row_slices], dtype=w.dtype,
                                  device=w.device).view(T, 1, 1)
            cd = codes.detach()
            chunk = cd.shape[0] if mode is Mode.TRAINING else self.EVAL_CHUNK
            outs = []
            for k, start in enumerate(range(0, cd.shape[0], chunk)):
                c = torch.nn.functional.pad(cd[start:start + chunk], (0, pad))
                rows = c.shape[0]
                c = c.round().long()
                code = c.abs() if signed else torch.remainder(c, 2**B)
                code = code.reshape(rows, T, n).transpose(0, 1)
                bits = ((code.unsqueeze(1) >> shifts) & 1).to(w.dtype)  # [T, B, rows, n]
                drives = bits * c.sign().to(w.dtype).reshape(rows, T, n).transpose(0, 1).unsqueeze(1) if signed else bits
                bits, drives = bits.reshape(T, B * rows, n), drives.reshape(T, B * rows, n)
                y_all = torch.bmm(drives, w_tiles[..., : (2 if ir else 1) * S * out])  # [T, B*rows, C]
                y = y_all[..., : S * out]
                if ir:  # |x| |w| over the wire conductance, times the position-filtered product
                    a = torch.bmm(bits, w_tiles[..., 2 * S * out:]).mul_(widths * r_gmax)
                    y = y - ir_drop_coefficient(a).mul_(y_all[..., S * out:])
                sigma = self._noise_sigma(bits.sum(-1, keepdim=True))
                if sigma is not None:
                    y = y + self.noise(y.shape, self.STREAM_OUT + k, y, mode).mul_(sigma)
                q = self._adc(y.unflatten(-1, (S, out))).sum(0)  # [B*rows, S, out]
                q = (q * digital).sum(1).unflatten(0, (B, rows))  # [B, rows, out]
                outs.append(torch.einsum("b,bro->ro", plane, q) * lsb)
            y_sim = torch.cat(outs)
            if read_std is not None:  # training: the 1/f noise of the read, on the recombined output
                f2 = torch.tensor(cfg.pair_factors(), dtype=w.dtype, device=w.device).square().view(1, -1, 1, 1, 1)
                v = ((read_std.square() * f2).sum((0, 1)) * digital.square().unsqueeze(-1)).sum(0)  # [out, in]
                var = torch.nn.functional.linear(cd.square(), v) * (lsb * lsb)
                y_sim = y_sim + var.sqrt_() * torch.randn_like(y_sim)
        if not (codes.requires_grad or w.requires_grad):
            return y_sim
        w_eff = (w * digital.unsqueeze(-1)).sum(0)  # the ideal product carries the gradient
        y_lin = torch.nn.functional.linear(codes, w_eff) * lsb
        return y_lin + (y_sim - y_lin).detach()

    def _ir_drop(self, codes: torch.Tensor, w: torch.Tensor, lsb: float, filtered: torch.Tensor) -> torch.Tensor:
        """IR drop along the bit lines of every tile's column outputs ``[batch, row tiles, cols]``.

        aihwkit applyIrDrop: per row tile of ``n`` rows, ``a_i = n R g_max sum_j |w_ij| |x_j|``
        (the column current over the wire conductance), ``c_i = a_i (0.5 - 0.2 a_i + 0.05
        a_i^2)`` and the drop ``c_i sum_j w_ij x_j (1 - (1 - j/n)^2)`` (``filtered``, computed by
        the caller): output ``i``'s current flows along its bit line past the rows ``j``, so the
        drop grows with the input's row position in the tile, not with the column index.
        """
        cfg = self.config
        r_gmax = cfg.wire_resistance_ohm * cfg.g_max_us * 1e-6  # = g_max / wire conductance per cell
        x_abs, w_abs = codes.abs(), w.abs()
        a = [
            torch.nn.functional.linear(x_abs[:, sl], w_abs[:, sl].contiguous()).mul_(lsb * (sl.stop - sl.start) * r_gmax)
            for sl in self.row_slices
        ]
        return ir_drop_coefficient(torch.stack(a, 1)).mul_(filtered)


class AnalogCrossbarDevice(Device):
    """Analog crossbar with differential conductance pairs (aihwkit-style), sliced weights, bit-serial or PWM inputs."""

    name = "analog_crossbar"
    Config = AnalogCrossbarConfig
    api_version = 3  # the device API it implements (codesign.devices.base.DEVICE_API_VERSION)
    description = (
        "analog in-memory crossbar: differential conductance pairs (one or two per polarity), weights "
        "sliced over columns, finite levels, aihwkit's PCM or ReRAM programming noise, drift and 1/f read "
        "noise, per-read weight noise, output noise, IR drop, stuck devices, bit-serial or PWM inputs, "
        "shared ADCs, drift compensation by reference reads, tiles with digital partial sums"
    )

    @classmethod
    def lifts(cls) -> dict[str, type]:
        """The nonlinear primitives this device computes (:mod:`codesign.devices.native_lifts`)."""
        from .native_lifts import crossbar_lifts

        return crossbar_lifts()

    def layer(self, in_features: int, out_features: int) -> AnalogCrossbarLayer:
        """A fresh layer of this configuration."""
        return AnalogCrossbarLayer(in_features, out_features, self.config)

    #: Fits the noise model to measured conductances (``codesign calibrate analog_crossbar``).
    calibrator = "codesign.devices.crossbar_calibration:CrossbarCalibrator"

    #: ``crossbar-conductance/2``: per device plane (pair, slice) and tile, G+ and G- in
    #: microsiemens and as level indices, column scales, converters, drift-compensation reference
    #: reads; plus a CSV of the conductances (:mod:`codesign.devices.crossbar_export`).
    export_format: ClassVar[str | None] = EXPORT_FORMAT

    def export_layer(self, layer: DeviceLayer, folder: Path) -> dict[str, Any]:
        """Write ``layer`` as ``crossbar.json``, ``crossbar.npz`` and ``crossbar_conductances.csv``."""
        if not isinstance(layer, AnalogCrossbarLayer):
            raise ConfigError(f"analog_crossbar cannot export a {type(layer).__name__}; give a layer of this device")
        return export_crossbar(self, layer, folder)

    def load_layer_export(self, folder: Path, manifest: Mapping[str, Any]) -> AnalogCrossbarLayer:
        """The layer :meth:`export_layer` wrote, rebuilt from its conductance levels (no K)."""
        return load_crossbar(self, folder, manifest)

    @classmethod
    def presets(cls) -> dict[str, Preset]:
        """ISAAC (ReRAM architecture, ISCA 2016) and IBM HERMES (PCM chip, Nat. Electron. 2023)."""
        return preset_table(
            Preset(
                "isaac",
                {
                    "tile_rows": 128,  # ISAAC: 128 x 128 crossbar arrays
                    "tile_cols": 128,
                    # ISAAC: 16-bit weights as eight 2-bit ReRAM cells in eight columns, shifted
                    # and added after the ADCs (CiMLoop isaac_isca_2016: BITS_PER_CELL 2)
                    "bits_per_cell": 2,
                    "weight_slices": 8,
                    # ISAAC streams 16-bit inputs as 16 one-bit drives (one per 100 ns cycle);
                    # its inputs are unsigned activations, ours signed features: 16 magnitude
                    # bits with the sign as the drive's polarity (a 17-bit signed code, 16 cycles)
                    "dac_bits": 17,
                    "input_encoding": "bit_serial",
                    "input_code": "sign_magnitude",
                    "adc_bits": 8,  # ISAAC: one 8-bit 1.2 GS/s SAR ADC per crossbar ...
                    "adc_share": 128,  # ... shared by its 128 columns
                    "adc_rate_gsps": ADC_RATE_GSPS,
                    "read_time_ns": 100.0,  # ISAAC: 100 ns crossbar read cycle
                    # 168 tiles x 12 IMAs x 8 crossbars (see ISAAC_CROSSBARS: 168 as recalled)
                    "max_tiles": ISAAC_CROSSBARS,
                    # ReRAM, not PCM: aihwkit ReRamWan2022NoiseModel (Wan et al., Nature 2022)
                    # programming error, no drift (aihwkit: "ReRAM does not show drift in the
                    # usual sense"), no 1/f data: read noise as w_noise = 0.01 (its note)
                    "prog_noise_model": "reram_wan2022",
                    "prog_noise": RERAM_WAN2022_PROG_AT_HALF,
                    "read_noise": 0.0,
                    "w_noise": RERAM_W_NOISE,
                    "drift_model": "constant",
                    "drift_nu": 0.0,
                    "drift_nu_std": 0.0,
                    # ISAAC's memristor arrays: 2.4 mW for the 8 crossbars of an IMA; the V^2 G t
                    # array model is calibrated to that 0.3 mW per crossbar (its conductances are
                    # not known here); see tests/devices/test_crossbar_published.py
                    "array_energy_scale": ISAAC_ARRAY_ENERGY_SCALE,
                },
                "A. Shafiee et al., 'ISAAC: a convolutional neural network accelerator with "
                "in-situ analog arithmetic in crossbars', ISCA 2016; ReRAM noise: W. Wan et al., "
                "Nature 608, 504 (2022) as fitted in aihwkit's ReRamWan2022NoiseModel",
                "ReRAM crossbars of 128 x 128: 16-bit weights in eight 2-bit slices, 16 bit-serial input "
                "cycles, one shared 8-bit ADC per crossbar",
            ),
            Preset(
                "ibm_hermes",
                {
                    # HERMES cores: 256 x 256 PCM crossbars (Le Gallo et al. 2023;
                    # Khaddam-Aljameh et al., IEEE JSSC 2022)
                    "tile_rows": 256,
                    "tile_cols": 256,
                    # four PCM devices per weight, two per polarity (8T4R unit cell: Le Gallo et
                    # al. 2023; Khaddam-Aljameh et al. 2022), equal significance
                    "devices_per_polarity": 2,
                    "pair_significance": 1.0,
                    "dac_bits": 8,  # 8-bit input MVMs (pulse-width-modulated inputs)
                    "adc_bits": 8,  # 8-bit output: 256 CCO-based ADCs per core, one per column
                    "adc_share": 1,
                    # PWM inputs in one phase (Le Gallo et al., Extended Data Fig. 4): one
                    # pulse of up to 2^7 unit pulses of one 1 GHz clock period (JSSC 2022)
                    "input_encoding": "pulse_width",
                    "pulse_unit_ns": HERMES_CLOCK_NS,
                    "max_tiles": HERMES_CORES,  # 64 cores
                    # Calibrated so that a 256 x 256 MVM reproduces the measured 9.76 TOPS/W
                    # (one-phase, 8-bit in/out; Le Gallo et al. 2023): the core's held power
                    # (LDPU, clocking, CCO bias, PWM generators, leakage), whose split is not
                    # published, is the measured energy per MVM less the priced dynamic energy,
                    # over the 128 ns MVM; see tests/devices/test_crossbar_published.py
                    "periphery_static_mw": HERMES_PERIPHERY_STATIC_MW,
                    # area: the core's 1.59 TOPS/mm^2 (Khaddam-Aljameh et al., JSSC 2022) at the
                    # model's 128 ns MVM, cells and ADCs scaled alike (no cell or CCO-ADC area
                    # figure of the 14 nm 8T4R core was found; ISAAC's 1R cell and SAR ADC
                    # areas are only the shape)
                    "cell_area_scale": HERMES_AREA_SCALE,
                    "adc_area_scale": HERMES_AREA_SCALE,
                    # PCM programming/read noise and drift: aihwkit's PCM model (the defaults)
                },
                "M. Le Gallo et al., 'A 64-core mixed-signal in-memory compute chip based on "
                "phase-change memory for deep neural network inference', Nat. Electron. 6, 680 "
                "(2023); R. Khaddam-Aljameh et al., 'HERMES-Core', IEEE JSSC 57, 1027 (2022)",
                "IBM HERMES Project Chip: 14 nm, 64 PCM cores of 256 x 256, four devices per weight, "
                "8-bit PWM in / CCO ADC out",
            ),
        )

    @classmethod
    def search_space(cls) -> dict[str, SearchSpec]:
        """Design choices a search may vary."""
        return {
            # at most 4 bits per cell, so that 8 slices stay within the 32-bit weight the config allows
            # (multi-level cells of 1-4 bits: ISAAC 2, NeuroSim's cellBit examples 1-4)
            "bits_per_cell": IntRange(1, 4),
            "weight_slices": IntRange(1, 8),
            "devices_per_polarity": Choice((1, 2)),
            "dac_bits": IntRange(4, 10),
            "adc_bits": IntRange(4, 10),
            "adc_share": Choice((1, 2, 4, 8, 16, 32)),
            "input_encoding": Choice(("pulse_width", "bit_serial")),
            "input_code": Choice(INPUT_CODES),
            "input_range": Choice(INPUT_RANGES),
            "drift_compensation_type": Choice(("global", "column")),
            "tile_rows": Choice((64, 128, 256, 512, 1024)),
            "tile_cols": Choice((64, 128, 256, 512)),
        }

    #: Energy components that are digital <-> analog conversions (input drivers, ADCs).
    conversion_keys = ("dac_pj", "adc_pj")

    def _tiles(self, in_features: int, out_features: int) -> tuple[int, int]:
        cfg = self.config
        return -(-in_features // cfg.tile_rows), -(-out_features // cfg.outputs_per_tile())

    def integration_time_ns(self) -> float:
        """Time the devices conduct during one MVM, ns (the encoding's full-scale drive).

        ``bit_serial``: one read cycle of ``read_time_ns`` per bit plane (``cycles``); ``pulse_width``: a pulse
        of ``2**(dac_bits-1)`` unit pulses of ``pulse_unit_ns`` (the sign is the polarity).
        """
        cfg = self.config
        if cfg.input_encoding == "bit_serial":
            return cfg.cycles * cfg.read_time_ns
        return 2.0 ** (cfg.dac_bits - 1) * cfg.pulse_unit_ns

    def conversions(self, in_features: int, out_features: int) -> int:
        """ADC conversions of one MVM, as the layer simulates them: one per slice column per row
        tile per input cycle (one per bit plane bit-serial, one pulse-width)."""
        cfg = self.config
        row_tiles = -(-in_features // cfg.tile_rows)
        return row_tiles * out_features * cfg.weight_slices * cfg.cycles

    def cost(self, in_features: int, out_features: int) -> dict[str, float]:
        """Tile, device and conversion counts, energy, held power, latency and area of one MVM.

        Every tile is present (weight-stationary: no weight memory traffic) and reads in
        parallel. A weight takes ``weight_slices`` columns of ``2 * devices_per_polarity``
        devices per row. Energy components (``*_pj``, summing to ``energy_pj``):

        * ``array_pj``: ``V_read^2 G t`` over every device of every weight, at the mean
          conductance ``mean_conductance_fraction * g_max`` and the full-scale integration
          time (:meth:`integration_time_ns`): an upper bound for inputs below full scale;
        * ``dac_pj`` (conversion): one ISAAC 1-bit drive per input line per column tile per
          input bit (``bit_serial``) or per pulse (``pulse_width``);
        * ``adc_pj`` (conversion): :meth:`conversions`, the count the layer simulates;
        * ``shift_add_pj``: one ISAAC shift-and-add per conversion when an output is assembled
          from several (bit-serial cycles or weight slices);
        * ``scaling_pj``: the digital input scaling the layer simulates: ``vector_absmax`` a
          ``dac_bits`` compare and multiply per input (:func:`scaling_multiply_pj`; the compare
          as an add, linear in the bits), ``calibrated`` the multiply alone; plus one 32-bit
          multiply per output for its scale (Horowitz 2014, 45 nm);
        * ``digital_pj``: row-tile partial sums, one 32-bit add per output per extra row tile.

        Held power: ``periphery_static_mw`` per tile (``static_power_mw``). Latency:
        ``bit_serial``: per input bit, the longer of the read cycle and the shared ADC's
        ``adc_share / adc_rate_gsps`` conversions; ``pulse_width``: the pulse, then the other
        ``adc_share - 1`` columns of a shared ADC; plus a 1 GHz adder tree over the row tiles.
        """
        cfg = self.config
        row_tiles, col_tiles = self._tiles(in_features, out_features)
        n_tiles = row_tiles * col_tiles
        n_weights = in_features * out_features
        n_devices = 2 * cfg.devices_per_polarity * cfg.weight_slices * n_weights
        n_cells = 2 * cfg.devices_per_polarity * n_tiles * cfg.tile_rows * cfg.tile_cols
        bit_serial = cfg.input_encoding == "bit_serial"
        cycles = cfg.cycles
        n_adc = self.conversions(in_features, out_features)
        n_dac = in_features * col_tiles * cycles
        t_ns = self.integration_time_ns()
        conversion_ns = cfg.adc_share / cfg.adc_rate_gsps  # one shared ADC through its columns
        if bit_serial:
            mvm_ns = cycles * max(cfg.read_time_ns, conversion_ns)
        else:
            mvm_ns = t_ns + (cfg.adc_share - 1) / cfg.adc_rate_gsps
        # V^2 G t per device: uS * V^2 * ns = 1e-15 J = 1e-3 pJ
        device_pj = cfg.read_voltage_v**2 * cfg.mean_conductance_fraction * cfg.g_max_us * t_ns * 1e-3
        shift_adds = n_adc if (bit_serial or cfg.weight_slices > 1) else 0
        int32 = DATAPATHS["int32"]
        per_input = scaling_multiply_pj(cfg.dac_bits)
        if cfg.input_range == "vector_absmax":  # the max: one compare per input
            per_input += int32.add_pj * cfg.dac_bits / 32
        energy = {
            "array_pj": n_devices * device_pj * cfg.array_energy_scale,
            "dac_pj": n_dac * DAC_BIT_PJ * cfg.dac_energy_scale,
            "adc_pj": n_adc * adc_energy_pj(cfg.adc_bits) * cfg.adc_energy_scale,
            "shift_add_pj": shift_adds * ISAAC_SHIFT_ADD_PJ,
            "scaling_pj": in_features * per_input + out_features * int32.mult_pj,
            "digital_pj": (row_tiles - 1) * out_features * INT32_ADD_PJ,
        }
        adder_levels = math.ceil(math.log2(row_tiles)) if row_tiles > 1 else 0
        # ISAAC: one 1-bit DAC per row (bit_serial); a b-bit pulse-width generator per row is
        # priced as b such 1-bit drivers (its counter/comparator grow with b): an area proxy
        dac_units = 1 if bit_serial else cfg.dac_bits
        n_adcs = n_tiles * -(-cfg.tile_cols // cfg.adc_share)
        # cells: ISAAC's 1R cell per device (CELL_AREA_UM2)
        area_um2 = (
            n_cells * CELL_AREA_UM2 * cfg.cell_area_scale
            + n_adcs * adc_area_um2(cfg.adc_bits) * cfg.adc_area_scale
            + n_tiles * cfg.tile_rows * DAC_BIT_AREA_UM2 * dac_units
        )
        static = {"periphery_static_mw": n_tiles * cfg.periphery_static_mw}
        out = {
            "energy_pj": sum(energy.values()),
            "static_power_mw": sum(static.values()),
            "latency_ns": mvm_ns + adder_levels * 1.0,  # 1 GHz adders
            "area_mm2": area_um2 * 1e-6,
            "n_tiles": float(n_tiles),
            "n_devices": float(n_devices),
            "n_cells": float(n_cells),
            "n_columns": float(row_tiles * out_features * cfg.weight_slices),
            "n_adcs": float(n_adcs),
            "n_adc_conversions": float(n_adc),
            "n_dac_conversions": float(n_dac),
            "n_shift_adds": float(shift_adds),
            "integration_time_ns": float(t_ns),
        }
        out.update(energy)
        out.update(static)
        return out

    def shared_resources(self, costs: Mapping[str, Mapping[str, float]]) -> dict[str, dict[str, Any]]:
        """The chip's tiles: every matrix of one inference is stationary on tiles of its own
        (``n_tiles`` of its :meth:`cost`), all on one chip of ``max_tiles``."""
        by = {label: int(round(float(c.get("n_tiles", 0.0)))) for label, c in costs.items()}
        return {"tiles": {"name": "tiles", "used": sum(by.values()), "budget": int(self.config.max_tiles), "by": by,
                          "of": "chip", "fix": "raise max_tiles or tile_rows/tile_cols, or shrink the matrices "
                                               "(fewer lift features)"}}

    def feasibility(self, in_features: int, out_features: int) -> list[str]:
        """Why an ``out x in`` matrix does not fit the chip: more tiles than ``max_tiles``.

        Every weight is stationary on its own tile, so the matrix needs
        ``ceil(in / tile_rows) * ceil(out / (tile_cols // weight_slices))`` tiles at once.
        """
        cfg = self.config
        row_tiles, col_tiles = self._tiles(in_features, out_features)
        n_tiles = row_tiles * col_tiles
        if n_tiles <= cfg.max_tiles:
            return []
        return [
            f"tile count: a {out_features}x{in_features} matrix needs {n_tiles} tiles of "
            f"{cfg.tile_rows}x{cfg.tile_cols} ({row_tiles} row x {col_tiles} column tiles, "
            f"{cfg.weight_slices} column(s) per weight), more than the chip's max_tiles={cfg.max_tiles}; "
            f"raise max_tiles or tile_rows/tile_cols, or shrink the matrix"
        ]
