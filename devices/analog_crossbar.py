"""Analog in-memory crossbar (PCM-like): K as differential conductance pairs on tiles.

Mapping (aihwkit's inference pipeline): by default one digital scale per output (column) maps
that output's ``max|K|`` to ``g_max`` (aihwkit ``MappingParameter(weight_scaling_omega=1.0,
weight_scaling_columnwise=True)`` with digital out-scaling), so that every column uses the whole
conductance range; ``weight_scaling="layer"`` keeps one scale for the matrix. Each weight is a
pair ``G+ - G-`` of devices with ``2**conductance_bits`` programmable levels in ``[0, g_max]``.
Non-idealities, in units of ``g_max``:

* programming noise: Gaussian, fixed per instance, fresh per training step, clipped at 0 (no
  negative conductance), with aihwkit's ``PCMLikeNoiseModel`` conductance dependence (std
  ``c0 + c1 g + c2 g^2``: 1.05 % of ``g_max`` at 0, 3.8 % at ``g_max/2``), scaled by
  ``prog_noise`` (its std at ``g_max/2``);
* drift: ``g(t) = g(t0) (t / t0)^-nu`` with ``t0 = 20 s`` (aihwkit's ``t_0``), per-device
  ``nu ~ N(drift_nu, drift_nu_std)``; optional global drift compensation (aihwkit's
  ``GlobalDriftCompensation``: one digital gain from the summed conductances). The time ``t``
  is an evaluation condition, as aihwkit's ``drift_analog_weights(t_inference)``: eval reads the
  layer at ``layer.t_inference_s`` (``draw_instance(seed, t_inference_s=...)`` or
  ``set_inference_time``), so one programmed chip can be read at 1 s, 1 h, 1 day...;
  hardware-aware training simulates ``train_drift_time_s`` after programming;
* read noise: Gaussian on every device at every read, 1/f-like, so its std grows with the
  conductance as ``read_noise (g/g_max)^0.35`` (aihwkit's ``Q_s ~ g^-0.65`` relative noise);
  a RESET device (``g = 0``) adds none. Its effect on a column current is Gaussian with variance
  ``read_noise^2 sum_j x_j^2 ((G+_j)^0.7 + (G-_j)^0.7)``, sampled in that closed form per input
  vector;
* input DAC with per-vector abs-max scaling, output ADC per tile with a calibrated range.

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
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar, Mapping

import torch

from codesign.errors import check_choice, check_range

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
INT32_ADD_PJ = 0.1  # Horowitz, ISSCC 2014 (45 nm): 32-bit add, for row-tile partial sums
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
# PCM read (1/f) noise is relative to the conductance: aihwkit's PCMLikeNoiseModel uses a
# relative std Q_s = 0.0088 (g/g_max)^-0.65, i.e. an absolute std ~ (g/g_max)^0.35; a device in
# the RESET state (g ~ 0) carries no read current and adds no noise.
READ_NOISE_EXPONENT = 0.35


def prog_noise_std(g: torch.Tensor, at_half: float) -> torch.Tensor:
    """Programming error std / g_max at target conductances ``g`` (units of g_max).

    aihwkit's PCM polynomial, rescaled so that the std at ``g = g_max / 2`` is ``at_half``
    (the preset gives 0.0381 there, 0.0105 at g = 0 and 0.0422 at g_max).
    """
    c0, c1, c2 = PCM_PROG_COEFF
    half = c0 + c1 * 0.5 + c2 * 0.25
    return (c0 + g * (c1 + c2 * g)) * (at_half / half)


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
        default=512, metadata={"doc": "inputs (word lines) per crossbar tile, as aihwkit's 512"}
    )
    tile_cols: int = field(
        default=512, metadata={"doc": "outputs (bit-line pairs) per crossbar tile"}
    )
    conductance_bits: int = field(
        default=4, metadata={"doc": "programmable levels per device = 2**bits over [0, g_max]"}
    )
    g_max_us: float = field(
        default=25.0, metadata={"doc": "largest conductance, uS (aihwkit PCM preset: 25 uS)"}
    )
    prog_noise: float = field(
        default=0.04,
        metadata={"doc": "programming error std / g_max at g = g_max/2; conductance-dependent as "
                  "aihwkit's PCMLikeNoiseModel (its preset: 3.8 % here, 1.05 % at g = 0)"},
    )
    read_noise: float = field(
        default=0.01,
        metadata={"doc": "per-read noise std / g_max of a device at g_max (~ (g/g_max)^0.35 below)"},
    )
    train_drift_time_s: float = field(
        default=3600.0,
        metadata={"doc": "time since programming simulated by hardware-aware training, s "
                  "(<= t0 = 20 s: no drift); eval reads at layer.t_inference_s instead"},
    )
    drift_nu: float = field(
        default=0.05, metadata={"doc": "mean drift exponent nu (PCM: ~0.05, aihwkit 0.049-0.1)"}
    )
    drift_nu_std: float = field(
        default=0.01, metadata={"doc": "device-to-device std of nu (aihwkit: 0.008-0.045)"}
    )
    drift_compensation: bool = field(
        default=True, metadata={"doc": "global digital drift compensation (aihwkit default)"}
    )
    weight_scaling: str = field(
        default="column",
        metadata={"doc": "'column': one digital scale per output maps its max |K| to g_max "
                  "(aihwkit weight_scaling_columnwise); 'layer': one scale for the whole matrix"},
    )
    dac_bits: int = field(default=8, metadata={"doc": "input DAC resolution, bits"})
    adc_bits: int = field(default=8, metadata={"doc": "output ADC resolution, bits"})
    read_time_ns: float = field(
        default=100.0,
        metadata={"doc": "bit_serial: crossbar read cycle per input bit, ns (ISAAC: 100 ns)"},
    )
    input_encoding: str = field(
        default="pulse_width",
        metadata={"doc": "'pulse_width': one pulse of up to 2**(dac_bits-1) unit pulses, one ADC "
                  "conversion per column (IBM HERMES); 'bit_serial': one 1-bit drive, read cycle "
                  "and ADC conversion per input bit per column, digital shift-and-add (ISAAC)"},
    )
    pulse_unit_ns: float = field(
        default=HERMES_CLOCK_NS,
        metadata={"doc": "pulse_width: unit pulse duration, ns (HERMES: 1 ns, its 1 GHz clock)"},
    )
    read_voltage_v: float = field(
        default=READ_VOLTAGE_V,
        metadata={"doc": "read voltage across a conducting device, V (cost only; 0.2 V PCM-like)"},
    )
    mean_conductance_fraction: float = field(
        default=MEAN_CONDUCTANCE_FRACTION,
        metadata={"doc": "mean programmed conductance per device / g_max, both devices of each "
                  "pair (cost only; 0.12: Gaussian weights, column max mapped to g_max)"},
    )
    max_tiles: int = field(
        default=HERMES_CORES,
        metadata={"doc": "crossbar tiles (cores) on the chip; more is infeasible (HERMES: 64)"},
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
        check_range("drift_nu", self.drift_nu, 0.0, 1.0)
        check_range("drift_nu_std", self.drift_nu_std, 0.0, 1.0)
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

        Noise streams of an instance: 0 programming errors, 1 drift exponents, 101 read noise
        (in ``forward``).

        Args:
            mode: ``Mode.TRAINING``, ``Mode.INSTANCE`` or ``Mode.NOMINAL``; default: the
                current mode.

        Returns:
            ``(g, gain)``: ``g`` after quantization, programming noise and drift; ``gain`` is the
            digital factor (weight scale / drift compensation) so that ``(g[0] - g[1]) * gain``
            is the implemented matrix.
        """
        cfg = self.config
        mode = self.mode if mode is None else mode
        t = self.drift_time_s(mode)
        w_abs = self.weight.detach().abs()
        if cfg.weight_scaling == "column":  # aihwkit weight_scaling_columnwise: one scale per output
            scale = w_abs.amax(1, keepdim=True).clamp_min(1e-30)
        else:
            scale = w_abs.amax().clamp_min(1e-30).expand(self.out_features, 1)
        wn = self.weight / scale
        g = torch.stack((torch.relu(wn), torch.relu(-wn)))
        levels = 2**cfg.conductance_bits - 1
        g = ste(g, torch.round(g * levels) / levels)  # finite programmable levels
        noisy = mode is not Mode.NOMINAL
        if cfg.prog_noise > 0 and noisy:
            z = self.noise(g.shape, 0, g, mode)
            with torch.no_grad():
                sigma = prog_noise_std(g.detach(), cfg.prog_noise)
            g = ste(g, (g + sigma * z).clamp_min(0.0))
        g_prog = g
        if t > T0_S:
            nu = torch.full_like(g, cfg.drift_nu)
            if cfg.drift_nu_std > 0 and noisy:
                nu = nu + cfg.drift_nu_std * self.noise(g.shape, 1, g, mode)
            g = g * torch.exp(-nu.clamp_min(0.0) * math.log(t / T0_S))
        gain = scale
        if cfg.drift_compensation and t > T0_S:
            # one digital gain from a reference read of the whole array (aihwkit: global)
            alpha = (g.detach().sum() / g_prog.detach().sum().clamp_min(1e-30)).clamp_min(1e-30)
            gain = scale / alpha
        return g, gain

    def effective_matrix(self) -> torch.Tensor:
        """The nominal implemented matrix (quantized, mean drift at ``t_inference_s``, compensated)."""
        with torch.no_grad():
            g, gain = self.conductances(Mode.NOMINAL)
            return (g[0] - g[1]) * gain

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[batch, in] -> [batch, out]``: DAC, tiled analog MVMs, read noise, ADC, digital sum."""
        cfg, mode = self.config, self.mode
        g, gain = self.conductances(mode)
        w = g[0] - g[1]
        codes, lsb, amax = dac(x, cfg.dac_bits)
        parts = [
            torch.nn.functional.linear(codes[:, sl], w[:, sl].contiguous()) for sl in self.row_slices
        ]
        y = torch.stack(parts, dim=1) * lsb  # [batch, row tiles, out] column currents
        if cfg.read_noise > 0 and mode is not Mode.NOMINAL:
            with torch.no_grad():  # std of the summed device noise: sqrt(sum_j x_j^2 s_j^2)
                # s_j^2 = read_noise^2 ((G+_j)^(2a) + (G-_j)^(2a)) in units of g_max
                v = g.detach().clamp_min(0.0).pow(2 * READ_NOISE_EXPONENT).sum(0)
                x2 = codes.detach().square()
                var = [torch.nn.functional.linear(x2[:, sl], v[:, sl].contiguous()) for sl in self.row_slices]
                sigma = (cfg.read_noise * lsb) * torch.stack(var, 1).sqrt_()
            y = y + sigma * self.noise(y.shape, 101, y, mode)  # eval: re-seeded per call
        full_scale = self.adc_range(y)
        y = quantize_symmetric(y, full_scale, cfg.adc_bits).sum(dim=1)
        return y * (amax * gain.reshape(1, -1))


class AnalogCrossbarDevice(Device):
    """PCM-like analog crossbar with differential conductance pairs (aihwkit-style)."""

    name = "analog_crossbar"
    Config = AnalogCrossbarConfig
    description = (
        "analog in-memory crossbar: differential conductance pairs, finite levels, "
        "programming/read noise, PCM drift, DAC/ADC, tiles with digital partial sums"
    )

    def layer(self, in_features: int, out_features: int) -> AnalogCrossbarLayer:
        """A fresh layer of this configuration."""
        return AnalogCrossbarLayer(in_features, out_features, self.config)

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
                    # ISAAC assumes ideal ReRAM cells: no PCM drift (noise left at defaults)
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
