"""Analog in-memory crossbar (PCM-like): K as differential conductance pairs on tiles.

Mapping (aihwkit's inference pipeline): by default one digital scale per output (column) maps
that output's ``max|K|`` to ``g_max`` (aihwkit ``MappingParameter(weight_scaling_omega=1.0,
weight_scaling_columnwise=True)`` with digital out-scaling), so that every column uses the whole
conductance range; ``weight_scaling="layer"`` keeps one scale for the matrix. Each weight is a
pair ``G+ - G-`` of devices with ``2**conductance_bits`` programmable levels in ``[0, g_max]``.
Non-idealities, in units of ``g_max``, after aihwkit's ``PCMLikeNoiseModel``
(``src/aihwkit/inference/noise/pcm.py``; the formulas are re-implemented here):

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
  ``N(drift_nu, drift_nu_std)`` instead. Optional global drift compensation (aihwkit's
  ``GlobalDriftCompensation``: one digital gain from a read of the summed conductances);
* accumulated 1/f read noise (``apply_drift_noise_to_conductance``): ``g += |g(t)| Q_s
  sqrt(ln((t + t0 + t_read) / (2 t_read))) z`` with ``Q_s = min(read_noise / max(g_prog^0.65,
  1e-3), 0.2)`` and ``t_read = 250 ns``, then clipped at 0: it grows with the time since
  programming. An instance draws it once per read time (as aihwkit's ``drift_analog_weights(t)``
  draws it once per ``t``), fixed for a given seed and ``t_inference_s``, not per read. Training
  samples its effect on each column current in closed form per input vector (variance
  ``sum_j x_j^2 s_j^2`` over the devices' stds ``s_j``), which is much cheaper than a per-sample
  weight draw;
* IR drop along the word lines (aihwkit ``IOParameters.ir_drop``, rpucuda
  ``ForwardBackwardPassIOManaged::applyIrDrop``): per row tile of ``n`` rows, ``a_i = n R g_max
  sum_j |w_ij x_j|``, ``c_i = a_i (a_i (0.05 a_i - 0.2) + 0.5)`` and ``y_i -= c_i sum_j w_ij x_j
  (1 - (1 - j/n)^2)``: it grows with the row position ``j`` in the tile, the column current and
  the wire resistance ``R = wire_resistance_ohm`` per cell. Deterministic: applied in the nominal
  and instance modes, not in training (as aihwkit's ``IOParametersIRDropT``, which turns it off
  during hardware-aware training);
* output (bit-line) noise (aihwkit ``IOParameters.out_noise``): Gaussian, ``out_noise`` times the
  current of one ``g_max`` device at full-scale input (aihwkit's normalised output unit), added to
  each tile's column output before the ADC at every read (re-seeded per call in an instance);
* input DAC with per-vector abs-max scaling, output ADC per tile with a calibrated range.

The time ``t`` is an evaluation condition, as aihwkit's ``drift_analog_weights(t_inference)``:
eval reads the layer at ``layer.t_inference_s`` (``draw_instance(seed, t_inference_s=...)`` or
``set_inference_time``), so one programmed chip can be read at 1 s, 1 h, 1 day...;
hardware-aware training simulates ``train_drift_time_s`` after programming. As in aihwkit, ``t``
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
  ``read_time_ns`` read cycle and one ADC conversion per input bit per column per row tile,
  then one digital shift-and-add per conversion; ``"pulse_width"`` (IBM HERMES, Le Gallo et
  al., Nat. Electron. 6, 680 (2023)): one pulse of up to ``2**(dac_bits-1)`` unit pulses of
  ``pulse_unit_ns`` (sign by polarity, one phase), one conversion per column per row tile;
* converters: ISAAC's 1-bit drive (0.41667 pJ) per input line per drive (a PWM pulse is one
  drive); a SAR ADC at ISAAC's 1.67 pJ for 8 bits, scaled with resolution as Saberi et al.
  (2011) in the hwcomponents-library ``IsaacADC`` model, for both encodings (no per-conversion
  energy of HERMES's CCO-based ADC was found);
* digital: a 32-bit add (Horowitz, ISSCC 2014, 45 nm: 0.1 pJ) per shift-and-add and per
  row-tile partial sum. No static power is priced.

``feasibility`` refuses a matrix that needs more tiles than the chip's ``max_tiles``.

Export (``codesign export``): :meth:`AnalogCrossbarDevice.export_layer` writes a programmed layer
as format ``crossbar-conductance/1`` (G+ and G- per tile in microsiemens and as levels, column
scales, drift-compensation reference, converters, and a CSV;
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
    ste,
)
from .crossbar_export import FORMAT as EXPORT_FORMAT
from .crossbar_export import export_crossbar, load_crossbar
from .digital import DATAPATHS

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


def prog_noise_std(g: torch.Tensor, at_half: float) -> torch.Tensor:
    """Programming error std / g_max at target conductances ``g`` (units of g_max).

    aihwkit's PCM polynomial, rescaled so that the std at ``g = g_max / 2`` is ``at_half``
    (the preset gives 0.0381 there, 0.0105 at g = 0 and 0.0422 at g_max).
    """
    c0, c1, c2 = PCM_PROG_COEFF
    half = c0 + c1 * 0.5 + c2 * 0.25
    return (c0 + g * (c1 + c2 * g)) * (at_half / half)


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


def adc_area_um2(bits: int) -> float:
    """SAR ADC area: ``81.726 b + 2.1336 * 2^b`` um^2 (361 at 4 bits, 1200 at 8, 3002 at 10)."""
    return 81.726 * bits + 2.1336 * 2.0**bits


@dataclass(frozen=True)
class AnalogCrossbarConfig(DeviceConfig):
    """Configuration of :class:`AnalogCrossbarDevice` (defaults: a PCM crossbar).

    The time at which the crossbar is read is not a config field: it is an argument of the
    evaluation (``layer.t_inference_s``). Configs saved before that change have a field
    ``drift_time_s``; :meth:`from_dict` maps it to ``train_drift_time_s``.
    """

    LEGACY_FIELDS: ClassVar[Mapping[str, str]] = {"drift_time_s": "train_drift_time_s"}

    tile_rows: int = field(
        default=512, metadata={"range": (1, 8192), "doc": "inputs (word lines) per crossbar tile, as aihwkit's 512"}
    )
    tile_cols: int = field(
        default=512, metadata={"range": (1, 8192), "doc": "outputs (bit-line pairs) per crossbar tile"}
    )
    conductance_bits: int = field(
        default=4, metadata={"range": (1, 32), "doc": "programmable levels per device = 2**bits over [0, g_max]"}
    )
    g_max_us: float = field(
        default=25.0, metadata={"range": (1e-3, 1e4), "doc": "largest conductance, uS (aihwkit PCM preset: 25 uS)"}
    )
    prog_noise: float = field(
        default=0.04,
        metadata={"range": (0.0, 1.0), "doc": "programming error std / g_max at g = g_max/2; conductance-dependent as "
                  "aihwkit's PCMLikeNoiseModel (its preset: 3.8 % here, 1.05 % at g = 0)"},
    )
    read_noise: float = field(
        default=READ_NOISE_Q,
        metadata={"range": (0.0, 1.0), "doc": "relative 1/f read noise Q_s of a device at g_max (aihwkit PCMLikeNoiseModel: "
                  "0.0088, ~ (g/g_max)^-0.65 below, times sqrt(ln((t+t0+t_read)/(2 t_read))))"},
    )
    train_drift_time_s: float = field(
        default=3600.0,
        metadata={"range": (0.0, 1e10), "doc": "time since programming simulated by hardware-aware training, s "
                  "(eval reads at layer.t_inference_s instead)"},
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
        default=True, metadata={"doc": "global digital drift compensation (aihwkit default)"}
    )
    out_noise: float = field(
        default=OUT_NOISE,
        metadata={"range": (0.0, 10.0), "doc": "output (bit-line) noise std per tile column per read, in units of one g_max "
                  "device at full-scale input (aihwkit StandardHWATrainingPreset out_noise: 0.04)"},
    )
    wire_resistance_ohm: float = field(
        default=WIRE_RESISTANCE_OHM,
        metadata={"range": (0.0, 1e3), "doc": "word-line wire resistance between adjacent cells, Ohm, for the IR drop "
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
    dac_bits: int = field(default=8, metadata={"range": (1, 32), "doc": "input DAC resolution, bits"})
    adc_bits: int = field(default=8, metadata={"range": (1, 32), "doc": "output ADC resolution, bits"})
    read_time_ns: float = field(
        default=100.0,
        metadata={"range": (1e-3, 1e6), "doc": "bit_serial: crossbar read cycle per input bit, ns (ISAAC: 100 ns)"},
    )
    input_encoding: str = field(
        default="pulse_width",
        metadata={"doc": "'pulse_width': one pulse of up to 2**(dac_bits-1) unit pulses, one ADC "
                  "conversion per column (IBM HERMES); 'bit_serial': one 1-bit drive, read cycle "
                  "and ADC conversion per input bit per column, digital shift-and-add (ISAAC)"},
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
        metadata={"range": (0.0, 1.0), "doc": "mean programmed conductance per device / g_max, both devices of each "
                  "pair (cost only; 0.12: Gaussian weights, column max mapped to g_max)"},
    )
    max_tiles: int = field(
        default=HERMES_CORES,
        metadata={"range": (1, 10**9), "doc": "crossbar tiles (cores) on the chip; more is infeasible (HERMES: 64)"},
    )

    def validate(self) -> None:
        """Check every field; raise ``ConfigError`` naming the field and its allowed range."""
        check_range("tile_rows", self.tile_rows, 1, 8192, integer=True)
        check_range("tile_cols", self.tile_cols, 1, 8192, integer=True)
        for name in ("conductance_bits", "dac_bits", "adc_bits"):
            check_range(name, getattr(self, name), 1, 32, integer=True)
        check_range("g_max_us", self.g_max_us, 1e-3, 1e4)
        check_range("prog_noise", self.prog_noise, 0.0, 1.0)
        check_range("read_noise", self.read_noise, 0.0, 1.0)
        check_range("train_drift_time_s", self.train_drift_time_s, 0.0, 1e10)
        check_choice("drift_model", self.drift_model, ("pcm", "constant"))
        check_range("drift_nu", self.drift_nu, 0.0, 1.0)
        check_range("drift_nu_std", self.drift_nu_std, 0.0, 1.0)
        check_range("out_noise", self.out_noise, 0.0, 10.0)
        check_range("wire_resistance_ohm", self.wire_resistance_ohm, 0.0, 1e3)
        check_range("stuck_off_fraction", self.stuck_off_fraction, 0.0, 1.0)
        check_range("stuck_on_fraction", self.stuck_on_fraction, 0.0, 1.0)
        if self.stuck_off_fraction + self.stuck_on_fraction > 1.0:
            raise ConfigError(
                f"stuck_off_fraction={self.stuck_off_fraction} + stuck_on_fraction="
                f"{self.stuck_on_fraction}: the stuck fractions must sum to at most 1"
            )
        check_range("read_time_ns", self.read_time_ns, 1e-3, 1e6)
        check_choice("input_encoding", self.input_encoding, ("pulse_width", "bit_serial"))
        check_range("pulse_unit_ns", self.pulse_unit_ns, 1e-3, 1e6)
        check_range("read_voltage_v", self.read_voltage_v, 0.0, 5.0)
        check_range("mean_conductance_fraction", self.mean_conductance_fraction, 0.0, 1.0)
        check_range("max_tiles", self.max_tiles, 1, 10**9, integer=True)
        check_choice("weight_scaling", self.weight_scaling, ("column", "layer"))
        if not isinstance(self.drift_compensation, bool):
            check_range("drift_compensation", self.drift_compensation, 0, 1, integer=True)


class AnalogCrossbarLayer(DeviceLayer):
    """``x @ K.T`` on differential-pair crossbar tiles; ``weight`` holds K (float, trainable)."""

    #: Noise streams of an instance (:meth:`DeviceLayer.noise`): fixed per instance...
    STREAM_PROG, STREAM_DRIFT, STREAM_STUCK = 0, 1, 2
    #: ... re-seeded at every read (output noise); the 1/f noise uses one stream per read time.
    STREAM_OUT = 101

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
        # 1 - (1 - j/n)^2 for row j of a tile of n rows; not saved in the state dict
        pos = torch.cat([
            1.0 - (1.0 - torch.arange(sl.stop - sl.start, dtype=torch.float32) / (sl.stop - sl.start)) ** 2
            for sl in self.row_slices
        ])
        self.register_buffer("ir_position", pos, persistent=False)
        self.adc_range = CalibratedRange()

    def load_matrix(self, matrix: torch.Tensor) -> None:
        """Program ``matrix`` (``[out, in]``): the float weight the conductances are mapped from."""
        with torch.no_grad():
            self.weight.copy_(matrix.to(self.weight))
        self.adc_range.reset()

    def drift_time_s(self, mode: Mode | None = None) -> float:
        """Time since programming the conductances are read at in ``mode``, s.

        ``config.train_drift_time_s`` in training (what hardware-aware training simulates),
        :attr:`t_inference_s` in eval (nominal and instance modes).
        """
        mode = self.mode if mode is None else mode
        return self.config.train_drift_time_s if mode is Mode.TRAINING else self.t_inference_s

    def conductances(self, mode: Mode | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Device conductances ``[2, out, in]`` (G+, G-) in units of ``g_max``, and the digital gain.

        Args:
            mode: ``Mode.TRAINING``, ``Mode.INSTANCE`` or ``Mode.NOMINAL``; default: the
                current mode.

        Returns:
            ``(g, gain)``: ``g`` after quantization, stuck devices, programming noise, drift and,
            for an instance, the 1/f noise accumulated at the read time (training samples that
            noise per input vector in ``forward`` instead); ``gain`` is the digital factor
            (weight scale / drift compensation) so that ``(g[0] - g[1]) * gain`` is the
            implemented matrix.
        """
        g, gain, _ = self._conductances(mode)
        return g, gain

    def _conductances(self, mode: Mode | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """``(g, gain, read_std)``: :meth:`conductances` and, in training, the per-device 1/f std.

        Noise streams of an instance: 0 programming errors, 1 drift exponents, 2 stuck devices,
        one stream per read time for the 1/f noise (fixed for a seed and a time), 101 output
        noise (``forward``, re-seeded per read).
        """
        cfg = self.config
        mode = self.mode if mode is None else mode
        t = self.drift_time_s(mode)
        noisy = mode is not Mode.NOMINAL
        w_abs = self.weight.detach().abs()
        if cfg.weight_scaling == "column":  # aihwkit weight_scaling_columnwise: one scale per output
            scale = w_abs.amax(1, keepdim=True).clamp_min(1e-30)
        else:
            scale = w_abs.amax().clamp_min(1e-30).expand(self.out_features, 1)
        wn = self.weight / scale
        g = torch.stack((torch.relu(wn), torch.relu(-wn)))
        levels = 2**cfg.conductance_bits - 1
        g = ste(g, torch.round(g * levels) / levels)  # finite programmable levels
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
            sigma = prog_noise_std(g_target, cfg.prog_noise)
            if stuck is not None:
                sigma = sigma.masked_fill(stuck, 0.0)
            g = ste(g, (g + sigma * z).clamp_min(0.0))
        g_prog = g
        g_prog_d = g_prog.detach()
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
        gain = scale
        if cfg.drift_compensation:
            # one digital gain from a reference read of the whole array (aihwkit: global)
            alpha = (g.detach().sum() / g_prog_d.sum().clamp_min(1e-30)).clamp_min(1e-30)
            gain = scale / alpha
        return g, gain, read_std

    def effective_matrix(self) -> torch.Tensor:
        """The nominal implemented matrix (quantized, mean drift at ``t_inference_s``, compensated).

        The IR drop depends on the input and is not part of it.
        """
        with torch.no_grad():
            g, gain = self.conductances(Mode.NOMINAL)
            return (g[0] - g[1]) * gain

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[batch, in] -> [batch, out]``: DAC, tiled analog MVMs, read noise, IR drop, output
        noise, ADC, digital sum."""
        cfg, mode = self.config, self.mode
        g, gain, read_std = self._conductances(mode)
        w = g[0] - g[1]
        codes, lsb, amax = dac(x, cfg.dac_bits)
        # IR drop in eval only, as aihwkit's IOParametersIRDropT ("automatically turned off
        # during HWA training"); it would add a pass over the inputs to every training step
        ir = cfg.wire_resistance_ohm > 0 and mode is not Mode.TRAINING
        if ir:  # the IR drop's position-filtered product sum_j w_ij x_j p_j rides along (no gradient)
            w_all = torch.cat((w, (w * self.ir_position.to(w)).detach()))
        else:
            w_all = w
        out = self.out_features
        parts = [torch.nn.functional.linear(codes[:, sl], w_all[:, sl].contiguous()) for sl in self.row_slices]
        y_all = torch.stack(parts, dim=1) * lsb  # [batch, row tiles, out (x2)] column currents
        y = y_all[..., :out]
        extra = None  # detached additions to y: IR drop, read noise, output noise
        with torch.no_grad():
            if ir:
                extra = self._ir_drop(codes.detach(), w.detach(), lsb, y_all[..., out:].detach()).neg_()
            sigma = None
            if read_std is not None:  # training: std of the summed device noise sqrt(sum_j x_j^2 s_j^2)
                v = read_std.square().sum(0)
                x2 = codes.detach().square()
                var = [torch.nn.functional.linear(x2[:, sl], v[:, sl].contiguous()) for sl in self.row_slices]
                var = torch.stack(var, 1).mul_(lsb * lsb)
                if cfg.out_noise > 0:  # independent output noise joins the same Gaussian draw
                    var.add_(cfg.out_noise**2)
                sigma = var.sqrt_()
            elif cfg.out_noise > 0 and mode is not Mode.NOMINAL:
                sigma = cfg.out_noise
            if sigma is not None:  # eval: output noise re-seeded per read
                noise = self.noise(y.shape, self.STREAM_OUT, y, mode).mul_(sigma)
                extra = noise if extra is None else extra.add_(noise)
        if extra is not None:
            y = y + extra
        full_scale = self.adc_range(y)
        y = quantize_symmetric(y, full_scale, cfg.adc_bits).sum(dim=1)
        return y * (amax * gain.reshape(1, -1))

    def _ir_drop(self, codes: torch.Tensor, w: torch.Tensor, lsb: float, filtered: torch.Tensor) -> torch.Tensor:
        """IR drop of every tile's column outputs ``[batch, row tiles, out]`` (aihwkit applyIrDrop).

        Per row tile of ``n`` rows: ``a_i = n R g_max sum_j |w_ij| |x_j|`` (the column current
        over the wire conductance), ``c_i = a_i (0.5 - 0.2 a_i + 0.05 a_i^2)`` and the drop
        ``c_i sum_j w_ij x_j (1 - (1 - j/n)^2)`` (``filtered``, computed by the caller), with
        ``x`` in ``[-1, 1]`` and ``w`` in units of ``g_max``.
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
    """PCM-like analog crossbar with differential conductance pairs (aihwkit-style)."""

    name = "analog_crossbar"
    Config = AnalogCrossbarConfig
    api_version = 3  # the device API it implements (codesign.devices.base.DEVICE_API_VERSION)
    description = (
        "analog in-memory crossbar: differential conductance pairs, finite levels, aihwkit's PCM "
        "programming noise, conductance-dependent drift and 1/f read noise, output noise, IR drop, "
        "stuck devices, DAC/ADC, tiles with digital partial sums"
    )

    def layer(self, in_features: int, out_features: int) -> AnalogCrossbarLayer:
        """A fresh layer of this configuration."""
        return AnalogCrossbarLayer(in_features, out_features, self.config)

    #: ``crossbar-conductance/1``: per tile, G+ and G- in microsiemens and as level indices,
    #: column scales, drift-compensation reference, converters; plus a CSV of the conductances
    #: (:mod:`codesign.devices.crossbar_export` documents every field).
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
                    "conductance_bits": 2,  # ISAAC: 2 bits per ReRAM cell
                    # ISAAC streams 16-bit inputs as 16 one-bit DAC drives (one per 100 ns
                    # cycle); our dac_bits is the input resolution driven bit-serially
                    "dac_bits": 16,
                    "adc_bits": 8,  # ISAAC: one 8-bit 1.2 GS/s SAR ADC per crossbar
                    "read_time_ns": 100.0,  # ISAAC: 100 ns crossbar read cycle
                    # ISAAC: bit-serial inputs, one ADC conversion per input bit per column
                    # (one 1.2 GS/s ADC per crossbar converts its 128 columns in ~100 ns),
                    # digital shift-and-add of the partial products
                    "input_encoding": "bit_serial",
                    # 168 tiles x 12 IMAs x 8 crossbars (see ISAAC_CROSSBARS: 168 as recalled)
                    "max_tiles": ISAAC_CROSSBARS,
                    # Published check (tests/devices/test_crossbar_published.py): per crossbar
                    # the IMA's ADC 2 mW, DACs 0.5 mW, shift-and-add 0.025 mW (tolerance 10 %).
                    # Not reproduced: ISAAC's 0.3 mW per array (the array here is PCM at
                    # g_max_us=25 and 0.2 V: 3.9 mW); ISAAC's ReRAM conductance is not known here
                    # ISAAC assumes ideal ReRAM cells: no PCM drift (other noise left at defaults)
                    "drift_model": "constant",
                    "drift_nu": 0.0,
                    "drift_nu_std": 0.0,
                },
                "A. Shafiee et al., 'ISAAC: a convolutional neural network accelerator with "
                "in-situ analog arithmetic in crossbars', ISCA 2016",
                "ReRAM crossbar architecture: 128 x 128 arrays, 2-bit cells, 1-bit DACs, 8-bit ADCs",
            ),
            Preset(
                "ibm_hermes",
                {
                    # HERMES cores: 256 x 256 PCM crossbars (Le Gallo et al. 2023;
                    # Khaddam-Aljameh et al., IEEE JSSC 2022)
                    "tile_rows": 256,
                    "tile_cols": 256,
                    "dac_bits": 8,  # 8-bit input MVMs (pulse-width-modulated inputs)
                    "adc_bits": 8,  # 8-bit output: 256 CCO-based ADCs per core
                    # PWM inputs in one phase (Le Gallo et al., Extended Data Fig. 4): one
                    # pulse of up to 2^7 unit pulses of one 1 GHz clock period (JSSC 2022)
                    "input_encoding": "pulse_width",
                    "pulse_unit_ns": HERMES_CLOCK_NS,
                    "max_tiles": HERMES_CORES,  # 64 cores
                    # Published check (tests/devices/test_crossbar_published.py): 63.1 TOPS for
                    # 8-bit in/out MVMs in one-phase mode over 64 cores -> 133 ns per 256 x 256
                    # MVM; the model gives 128 ns (tolerance 5 %). The measured 9.76 TOPS/W
                    # (0.205 pJ/MAC) is NOT reproduced: the model prices no LDPU, clocking or
                    # static power and no HERMES ADC energy was found (see the test).
                    # PCM programming/read noise and drift: aihwkit's PCM model (the defaults)
                },
                "M. Le Gallo et al., 'A 64-core mixed-signal in-memory compute chip based on "
                "phase-change memory for deep neural network inference', Nat. Electron. 6, 680 "
                "(2023)",
                "IBM HERMES Project Chip: 14 nm, 64 PCM cores of 256 x 256, 8-bit in/out MVMs",
            ),
        )

    @classmethod
    def search_space(cls) -> dict[str, SearchSpec]:
        """Design choices a search may vary."""
        return {
            "conductance_bits": IntRange(2, 8),
            "dac_bits": IntRange(4, 10),
            "adc_bits": IntRange(4, 10),
            "tile_rows": Choice((64, 128, 256, 512, 1024)),
            "tile_cols": Choice((64, 128, 256, 512)),
        }

    #: Energy components that are digital <-> analog conversions (input drivers, ADCs).
    conversion_keys = ("dac_pj", "adc_pj")

    def _tiles(self, in_features: int, out_features: int) -> tuple[int, int]:
        cfg = self.config
        return -(-in_features // cfg.tile_rows), -(-out_features // cfg.tile_cols)

    def integration_time_ns(self) -> float:
        """Time the devices conduct during one MVM, ns (the encoding's full-scale drive).

        ``bit_serial``: ``dac_bits`` read cycles of ``read_time_ns``; ``pulse_width``: a pulse
        of ``2**(dac_bits-1)`` unit pulses of ``pulse_unit_ns`` (the sign is the polarity).
        """
        cfg = self.config
        if cfg.input_encoding == "bit_serial":
            return cfg.dac_bits * cfg.read_time_ns
        return 2.0 ** (cfg.dac_bits - 1) * cfg.pulse_unit_ns

    def cost(self, in_features: int, out_features: int) -> dict[str, float]:
        """Tile and device counts, conversions, energy, latency and area of one MVM.

        Every tile is present (weight-stationary: no weight memory traffic) and reads in
        parallel. Energy components (``*_pj``, summing to ``energy_pj``):

        * ``array_pj``: ``V_read^2 G t`` over both devices of every weight, at the mean
          conductance ``mean_conductance_fraction * g_max`` and the full-scale integration
          time (:meth:`integration_time_ns`): an upper bound for inputs below full scale;
        * ``dac_pj`` (conversion): one ISAAC 1-bit drive per input line per column tile per
          input bit (``bit_serial``) or per pulse (``pulse_width``);
        * ``adc_pj`` (conversion): one conversion per column per row tile per input bit
          (``bit_serial``) or per MVM (``pulse_width``);
        * ``shift_add_pj``: ``bit_serial`` only, one ISAAC shift-and-add per conversion;
        * ``digital_pj``: row-tile partial sums, one 32-bit add per output per extra row tile.

        No static power is priced. Latency: the integration time (conversions pipelined
        behind it, as ISAAC's; HERMES's CCO ADCs count during the pulse) plus a 1 GHz
        adder tree over the row tiles.
        """
        cfg = self.config
        row_tiles, col_tiles = self._tiles(in_features, out_features)
        n_tiles = row_tiles * col_tiles
        n_weights = in_features * out_features
        n_devices = 2 * n_weights
        n_cells = 2 * n_tiles * cfg.tile_rows * cfg.tile_cols
        bit_serial = cfg.input_encoding == "bit_serial"
        drives = cfg.dac_bits if bit_serial else 1  # input drives (and conversions) per MVM
        n_adc = row_tiles * out_features * drives
        n_dac = in_features * col_tiles * drives
        t_ns = self.integration_time_ns()
        # V^2 G t per device: uS * V^2 * ns = 1e-15 J = 1e-3 pJ
        device_pj = cfg.read_voltage_v**2 * cfg.mean_conductance_fraction * cfg.g_max_us * t_ns * 1e-3
        energy = {
            "array_pj": n_devices * device_pj,
            "dac_pj": n_dac * DAC_BIT_PJ,
            "adc_pj": n_adc * adc_energy_pj(cfg.adc_bits),
            "shift_add_pj": (n_adc * ISAAC_SHIFT_ADD_PJ) if bit_serial else 0.0,
            "digital_pj": (row_tiles - 1) * out_features * INT32_ADD_PJ,
        }
        adder_levels = math.ceil(math.log2(row_tiles)) if row_tiles > 1 else 0
        # ISAAC: one 1-bit DAC per row (bit_serial); a b-bit pulse-width generator per row is
        # priced as b such 1-bit drivers (its counter/comparator grow with b): an area proxy
        dac_units = 1 if bit_serial else cfg.dac_bits
        area_um2 = (
            n_cells * CELL_AREA_UM2
            + n_tiles * cfg.tile_cols * adc_area_um2(cfg.adc_bits)
            + n_tiles * cfg.tile_rows * DAC_BIT_AREA_UM2 * dac_units
        )
        out = {
            "energy_pj": sum(energy.values()),
            "latency_ns": t_ns + adder_levels * 1.0,  # 1 GHz adders
            "area_mm2": area_um2 * 1e-6,
            "n_tiles": float(n_tiles),
            "n_devices": float(n_devices),
            "n_cells": float(n_cells),
            "n_adc_conversions": float(n_adc),
            "n_dac_conversions": float(n_dac),
            "integration_time_ns": float(t_ns),
        }
        out.update(energy)
        return out

    def feasibility(self, in_features: int, out_features: int) -> list[str]:
        """Why an ``out x in`` matrix does not fit the chip: more tiles than ``max_tiles``.

        Every weight is stationary on its own tile, so the matrix needs
        ``ceil(in / tile_rows) * ceil(out / tile_cols)`` tiles at once.
        """
        cfg = self.config
        row_tiles, col_tiles = self._tiles(in_features, out_features)
        n_tiles = row_tiles * col_tiles
        if n_tiles <= cfg.max_tiles:
            return []
        return [
            f"tile count: a {out_features}x{in_features} matrix needs {n_tiles} tiles of "
            f"{cfg.tile_rows}x{cfg.tile_cols} ({row_tiles} row x {col_tiles} column tiles), "
            f"more than the chip's max_tiles={cfg.max_tiles}; raise max_tiles or "
            f"tile_rows/tile_cols, or shrink the matrix"
        ]
