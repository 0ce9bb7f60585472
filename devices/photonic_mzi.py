"""Coherent photonic MZI-mesh device: K tiled into ``U diag(s) V^T`` blocks on Clements meshes.

Mapping (Shen et al., Nat. Photonics 11, 441 (2017); torchonn's ``MZIBlockLinear``): K is cut
into ``k x k`` tiles (edge tiles zero-padded); each tile's SVD ``U diag(s) V^T`` is realised by a
``k``-mode Clements mesh for ``V^T``, a column of ``k`` attenuators for ``s`` and a mesh for ``U``.
The trainable parameters are the physical ones: every mesh phase and the singular values.
A per-layer scale ``max|s|`` is kept digitally (attenuators can only attenuate).

Signal path per inference: digital scaling of ``x`` into ``[-1, 1]`` (``input_range``: each
vector by its abs-max, or by one range calibrated at a percentile of the training inputs, the
inputs beyond it clipped; :mod:`codesign.devices.input_range`) and an input DAC driving the
modulators -> meshes (phases quantized by the shifters' DACs, uniform in phase or
in heater voltage; phase errors correlated between neighbouring heaters by thermal crosstalk) ->
coherent (homodyne) detection of the real part -> receiver noise -> output ADC -> digital rescale.
By default the photocurrents of the tiles in one block row are summed in analog before a single
ADC per output (``analog_accumulation``); otherwise each tile output is converted and the partial
sums are added digitally.

Receiver noise follows from the optical power on the detectors (:func:`optical_link`, the same
link budget the cost model prices): one input waveguide carries ``P_wg`` (LT's laser formula,
times ``laser_margin_db``); a tile output of value ``u`` (in units of one waveguide's full drive
through the normalized tile, ``|s| <= 1``) brings ``P_fs |u|`` to its balanced detectors, with
``P_fs = P_wg 10^(-loss/10)`` (LT's link model: signal power proportional to the output value, its
sign from the balanced pair). Its photocurrent ``R P_fs u`` carries shot noise of variance
``2 q R P_fs |u| B`` and the TIA's input-referred noise ``i_n^2 B`` (``B`` = the sample rate).
Summing the photocurrents of ``T`` tiles sums their shot variances; their one TIA adds its noise once
(:func:`receivers`, the count the cost prices). ``detection="homodyne"`` reads each tile against a
local oscillator instead (:func:`homodyne_noise_coefficients`). Lowering the laser power
(``adc_bits``, ``detector_sensitivity_dbm``, ``laser_margin_db``) lowers the SNR.

Cost model (``cost``, per inference = one matrix-vector product; weight-stationary: every tile
is present at once and the chip streams one input vector per sample period ``1/clock_ghz``):

* conversions (:attr:`PhotonicMZIDevice.conversion_keys`): input DACs and modulators, balanced
  photodetectors + TIAs, output ADCs (Lightening-Transformer simulator constants);
* dynamic, per product: the digital input scaling the layer simulates (a multiply per input
  and per output, and with ``input_range="vector_absmax"`` the max over the inputs, one compare
  per input) and, without analog accumulation, digital partial-sum additions. Stationary weights cost no memory traffic;
* held (``*_static_mw``, charged by the whole inference for the time they are held in its
  operating mode): the laser (continuous wave), the thermo-optic heaters of every programmed
  phase (``phase_shifter``: ~P_pi each, Harris et al. 2014; non-volatile shifters none, Rios et
  al. 2022), one static DAC per programmed phase (written once, ``reprogram_nj``), and with
  ``detection='homodyne'`` the local oscillators. Power limits (``max_power_w``,
  ``max_power_density_w_per_cm2``) make a design above them infeasible
  (:meth:`PhotonicMZIDevice.power_feasibility`).

The laser follows the Lightening-Transformer simulator (Zhu et al., HPCA 2024,
github.com/zhuhanqing/Lightening-Transformer, ``hardware_simulator/hardware/photonic_MZI.py``):
detector sensitivity + insertion loss + the ``1:k`` split, times ``2**adc_bits`` so that the
smallest ADC level stays above the sensitivity. :meth:`PhotonicMZIDevice.feasibility` refuses a
design whose launch power per input waveguide exceeds what a silicon waveguide carries
(``max_waveguide_power_dbm``; equivalently, whose insertion loss exceeds the link budget).
Every constant below cites its source.

Export (``codesign export``): :meth:`PhotonicMZIDevice.export_layer` writes a programmed layer as
format ``photonic-mesh/2`` (phase-DAC codes of every mesh and screen, attenuators, tile layout,
converters and digital scales; :mod:`codesign.devices.photonic_export`), and
:meth:`PhotonicMZIDevice.load_layer_export` rebuilds it bit for bit from those files.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Mapping

import numpy as np
import torch

from codesign.errors import ConfigError, check_choice, check_range

from .base import (
    CalibratedRange,
    Choice,
    Device,
    DeviceConfig,
    DeviceLayer,
    FloatRange,
    IntRange,
    Mode,
    Preset,
    SearchSpec,
    calibrate,
    scale_field,
    dac,
    power_limit_reasons,
    preset_table,
    quantize_symmetric,
    ste,
)
from .clements import decompose, mesh_layout, rebuild
from .digital import DATAPATHS
from .input_range import (
    INPUT_RANGES,
    PercentileRange,
    check_input_range,
    input_percentile_field,
    input_range_field,
    range_dac,
)
from .photonic_export import FORMAT as EXPORT_FORMAT
from .photonic_export import export_mesh, load_mesh

# --- Lightening-Transformer simulator (Zhu et al., HPCA 2024; github.com/zhuhanqing/
# Lightening-Transformer, hardware_simulator/params/device_params/default.yaml, Bs_mzi_8bit.yaml,
# hardware/ADC.py, hardware/DAC.py) ---
MZI_AREA_UM2 = 180.0 * 100.0  # default.yaml mzi: length 180 um x width 100 um (couplers + shifter)
MODULATOR_AREA_UM2 = 260.0 * 20.0  # default.yaml mzi_modulator: 260 um x 20 um (inputs, Sigma)
MODULATOR_IL_DB = 1.2  # default.yaml mzi_modulator: insertion_loss 1.2 dB (input modulator)
MODULATOR_PJ = 0.450  # default.yaml mzi_modulator: energy_per_bit 450 fJ; scaled by dac_bits / 8
PHOTODETECTOR_MW = 1.1  # default.yaml photo_detector: power 1.1 mW
PHOTODETECTOR_AREA_UM2 = 4.0 * 10.0  # default.yaml photo_detector: 4 um x 10 um
DETECTOR_SENSITIVITY_DBM = -25.0  # default.yaml photo_detector: sensitivity -25 dBm
TIA_MW = 3.0  # Bs_mzi_8bit.yaml core.interface.TIA: power 3 mW
TIA_AREA_UM2 = 50.0  # Bs_mzi_8bit.yaml core.interface.TIA: area 50 um^2
LASER_WALL_PLUG_EFF = 0.2  # default.yaml laser: wall_plug_eff 0.2
# ADC.py ADC_list[1]: 8-bit SAR, 14.8 mW at 10 GS/s, 2850 um^2; power ~ bits x rate (SAR)
ADC_MW_8BIT, ADC_GSPS, ADC_AREA_UM2 = 14.8, 10.0, 2850.0
# DAC.py DAC_list[1]: 8-bit capacitive, 50 mW at 14 GS/s, 11000 um^2; power ~ 2^b / b x rate
DAC_MW_8BIT, DAC_GSPS, DAC_AREA_UM2 = 50.0, 14.0, 11000.0
LT_MZI_IL_DB = 0.99  # default.yaml mzi: insertion_loss 0.99 dB (LT's MZI; the old default)

# --- phase shifters ---
# Thermo-optic: N. C. Harris et al., "Efficient, compact and low loss thermo-optic phase shifter in
# silicon", Opt. Express 22, 10487 (2014) (arXiv:1410.3616), abstract/results: P_pi = 24.77 +-
# 0.43 mW, insertion loss 0.23 +- 0.13 dB, 61.6 um long. The same group's shifters drive the
# Shen et al. (2017) mesh (Harris is its co-first author).
HARRIS_P_PI_MW = 24.77
HARRIS_P_PI_TOL_MW = 0.43
HARRIS_SHIFTER_IL_DB = 0.23
# Non-volatile: C. Rios et al., "Ultra-compact nonvolatile phase shifter based on electrically
# reprogrammable transparent phase change materials", PhotoniX 3, 26 (2022), abstract: Sb2Se3 on
# SOI, zero static power, insertion loss 0.3 dB per pi of phase shift.
SB2SE3_IL_DB_PER_PI = 0.3
# Directional coupler: 0.04 dB each, the value in the comment of LT default.yaml's mzi entry
# ("two directional coupler 0.04 + ..."); LT's own mzi total (0.99 dB) instead counts 0.33 dB
# per coupler. Not independently confirmed here; it is small next to the shifter's loss.
COUPLER_IL_DB = 0.04
# Loss per MZI on the optical path, LT's accounting (two couplers + one shifter in the path):
THERMO_OPTIC_MZI_IL_DB = 2 * COUPLER_IL_DB + HARRIS_SHIFTER_IL_DB  # 0.31 dB
# Sb2Se3 at its mean programmed phase (pi for phases spread over [0, 2 pi)):
NONVOLATILE_MZI_IL_DB = 2 * COUPLER_IL_DB + SB2SE3_IL_DB_PER_PI * 1.0  # 0.38 dB
# Mean holding power of a thermo-optic shifter as a fraction of P_pi: the heater power is
# proportional to the phase (Delta n ~ Delta T ~ P), and the programmed phases are taken as
# spread uniformly over their range: MZI internal phases theta and the Sigma attenuators' phases
# lie in [0, pi] (mean pi/2 -> 0.5 P_pi); external phases phi and output screens in [0, 2 pi)
# (mean pi -> 1.0 P_pi), as ``clements.decompose`` returns them.
MEAN_HOLD_INTERNAL = 0.5
MEAN_HOLD_EXTERNAL = 1.0

# --- phase settings held between reprogrammings ---
# Every programmed phase (MZI theta/phi, output screens, Sigma attenuators) is written once and
# held: a static DAC per phase (weights are stationary; the 14 GS/s input DACs of LT are for the
# input vector, not for phases). austriamicrosystems' DAC8 macro cell (asic.austriamicrosystems.com
# /databooks/cxx_a/dac8.html): an 8-bit resistor-string DAC, area 0.133 mm^2 (358 x 372 um), power
# 0.13 mW (Vref span 1 V), settling < 1 us into 30 pF. An older CMOS node: its area and power are
# upper bounds for a modern one (phase_dac_area_scale / phase_dac_energy_scale calibrate them).
PHASE_DAC_AREA_UM2 = 358.0 * 372.0
PHASE_DAC_STATIC_MW = 0.13
PHASE_DAC_SETTLE_NS = 1000.0  # < 1 us: the write energy is bounded by the power over the settling
PHASE_DAC_WRITE_PJ = PHASE_DAC_STATIC_MW * PHASE_DAC_SETTLE_NS  # mW x ns = pJ, per phase written

# --- digital input scaling (input_range: the max over the inputs of each vector, or a calibrated
# constant; one multiply per input and per output either way) ---
# Horowitz, ISSCC 2014, 45 nm: a 32-bit compare as a 32-bit add (0.1 pJ) for the running max
# (vector_absmax only), a 32-bit integer multiply (3.1 pJ) for each input's scaling and each
# output's rescale.
SCALE_COMPARE_PJ = DATAPATHS["int32"].add_pj
SCALE_MULT_PJ = DATAPATHS["int32"].mult_pj

# --- power limits of the chip ---
# Thermal design power: 300 W, the most a full-size PCI Express add-in card may draw (75 W from
# the x16 slot + 75 W 6-pin + 150 W 8-pin auxiliary connectors; PCI-SIG PCI Express Card
# Electromechanical Specification, power limits of a 300 W card).
MAX_POWER_W = 300.0
# Power density: 100 W/cm^2, the order of the heat flux high-end air-cooled processors dissipate
# and the usual ceiling quoted for air cooling (I. Mudawar, "Assessment of high-heat-flux thermal
# management schemes", IEEE Trans. Compon. Packag. Technol. 24(2), 122 (2001)); not re-checked
# here: set max_power_density_w_per_cm2 for a liquid-cooled package.
MAX_POWER_DENSITY_W_PER_CM2 = 100.0

# --- optical power a silicon waveguide carries ---
# Two-photon absorption in silicon at 1550 nm: beta_TPA = 0.45-0.9 cm/GW (photonica.io glossary
# "Two-photon absorption (TPA)", table of TPA coefficients); a single-mode silicon wire has
# A_eff ~ 0.1 um^2 (same page). At 100 mW (20 dBm) the intensity is 0.1 GW/cm^2 and the TPA loss
# alone 0.05-0.09 /cm (0.2-0.4 dB/cm), the order of the linear loss of the wire, and the free
# carriers it generates add absorption growing as P^2: 20 dBm is the onset of nonlinear loss
# used as the default limit (the order of magnitude quoted by scaling studies such as Al-Qadasi
# et al., "Scaling up silicon photonic-based accelerators", APL Photonics 7, 020902 (2022)).
MAX_WAVEGUIDE_POWER_DBM = 20.0

# --- receiver noise ---
Q_E_C = 1.602176634e-19  # elementary charge, C (SI, exact since 2019)
# Photodiode responsivity: q lambda / (h c) = 1.25 A/W at 1550 nm for unit quantum efficiency; the
# photontorch simulator (docs.photontorch.com "detectors"; flaport/photontorch
# photontorch/detectors/photodetector.py, Photodetector(responsivity=1.0)) takes 1 A/W, the value
# of a Ge-on-Si waveguide photodiode (quantum efficiency ~0.8).
RESPONSIVITY_A_PER_W = 1.0
# TIA input-referred noise current density: J. Xie et al., "A 25Gbps differential low noise TIA
# with 10.9 pA/sqrt(Hz) in 45RFSOI", IEEE iWEM 2021 (doi 10.1109/iwem53379.2021.9790575),
# abstract: 10.9 pA/sqrt(Hz) average input noise over a 22.6 GHz bandwidth (covers 5 GS/s).
# (M. Atef, H. Zimmermann, IEEE TCAS-I 60, 1929 (2013): 7.2 pA/sqrt(Hz) up to 1.5 GHz at 4.1 mW,
# close to LT's 3 mW TIA, is a lower-bandwidth alternative.)
TIA_NOISE_PA_PER_RTHZ = 10.9
# The shot-noise variance 2 q I B and the noise bandwidth B = sample rate follow photontorch's
# Photodetector (var_shot_noise = 2 q R P f_c, thermal variance added on top).

# --- thermal crosstalk ---
# Heat of one thermo-optic heater shifts the phase of its neighbours by a fraction of its own
# phase: a few % for heaters at ~10-20 um pitch without isolation trenches (M. Jacques et al.,
# "Optimization of thermo-optic phase-shifter design and mitigation of thermal crosstalk on the
# SOI platform", Opt. Express 27, 10456 (2019); modelled per neighbour in A. Shafiee et al., "LoCI:
# an analysis of the impact of optical loss and crosstalk noise in integrated silicon-photonic
# neural networks", NoCS 2022, arXiv:2204.03835). 5 % per adjacent heater is taken as the
# default; the exact figure depends on pitch and trenches and was not re-checked here.
THERMAL_CROSSTALK = 0.05
PHASE_QUANTIZATIONS = ("phase", "voltage")

# --- other constants ---
INT32_ADD_PJ = DATAPATHS["int32"].add_pj  # Horowitz, ISSCC 2014, 45 nm: 32-bit add (digital partial sums)
GROUP_INDEX = 4.2  # group index of a 500 x 220 nm SOI strip waveguide (typical value, e.g.
# Chrostowski & Hochberg, Silicon Photonics Design, CUP 2015, ch. 3; not re-checked here)
C_UM_PER_NS = 299_792.458  # speed of light
PHASE_SHIFTERS = ("thermo_optic", "nonvolatile")
#: Receiver models (``detection``): LT's link budget, or balanced homodyne with a local oscillator.
DETECTIONS = ("link_budget", "homodyne")


@dataclass(frozen=True)
class PhotonicMZIConfig(DeviceConfig):
    """Configuration of :class:`PhotonicMZIDevice`.

    Defaults: an 8-bit, 5 GHz accelerator of 12 x 12 Clements cores (LT's MZI baseline) built from
    published components: thermo-optic shifters of Harris et al. (2014), 0.31 dB per MZI, holding
    power charged. The ``lightening_transformer_mzi`` preset keeps LT's own 0.99 dB per MZI and
    zero holding power.
    """

    block_size: int = field(
        default=12,
        metadata={"range": (2, 128), "doc": "k: K is cut into k x k tiles, each two k-mode meshes (LT cores: 12)"},
    )
    phase_bits: int = field(
        default=8, metadata={"range": (1, 32), "doc": "phase-shifter DAC resolution over [0, 2 pi), bits"}
    )
    phase_quantization: str = field(
        default="phase",
        metadata={
            "doc": "what the phase DAC is uniform in: 'phase' (levels 2 pi n / 2^bits) or "
            "'voltage' (a heater's phase ~ P ~ V^2, so levels 2 pi (n / 2^bits)^2: fine near 0, "
            "coarse near 2 pi)"
        },
    )
    phase_noise_rad: float = field(
        default=0.01,
        metadata={"range": (0.0, math.pi), "doc": "std of the random error on every programmed phase (drive noise), rad"},
    )
    thermal_crosstalk: float = field(
        default=THERMAL_CROSSTALK,
        metadata={"range": (0.0, 0.5), 
            "doc": "fraction of a thermo-optic heater's phase that reaches each adjacent heater "
            "(same mesh column; screens: adjacent modes): phase errors of neighbours correlate "
            "(Jacques et al. 2019: a few %; 0 = independent; ignored for nonvolatile shifters)"
        },
    )
    crosstalk_calibrated: bool = field(
        default=True,
        metadata={
            "doc": "the programmed phases are pre-compensated for crosstalk (inverse crosstalk "
            "matrix, as on calibrated chips): only the errors leak; False: the programmed phases "
            "leak too (a systematic error)"
        },
    )
    bs_error: float = field(
        default=0.005,
        metadata={"range": (0.0, 0.5), "doc": "std of each coupler's power splitting ratio error (0.01 = 50+-1 %)"},
    )
    insertion_loss_db: float = field(
        default=THERMO_OPTIC_MZI_IL_DB,
        metadata={"range": (0.0, 10.0), 
            "doc": "insertion loss per MZI on the optical path, dB: two couplers (0.04 dB) + one "
            "shifter (thermo-optic 0.23 dB, Harris 2014: 0.31; Sb2Se3 0.3 dB/pi: 0.38; LT: 0.99)"
        },
    )
    phase_shifter: str = field(
        default="thermo_optic",
        metadata={
            "doc": "mesh phase shifters: 'thermo_optic' (heaters hold ~P_pi each, see "
            "heater_p_pi_mw) or 'nonvolatile' (phase-change Sb2Se3: no holding power; set "
            "insertion_loss_db to its loss, 0.38 dB, as the rios2022_sb2se3 preset does)"
        },
    )
    heater_p_pi_mw: float = field(
        default=HARRIS_P_PI_MW,
        metadata={"range": (0.0, 1000.0), 
            "doc": "thermo-optic heater power for a pi phase shift, mW (Harris et al. 2014: 24.77); "
            "held for every programmed phase while the chip runs (cost only)"
        },
    )
    detector_sensitivity_dbm: float = field(
        default=DETECTOR_SENSITIVITY_DBM,
        metadata={"range": (-80.0, 20.0), "doc": "photodetector sensitivity, dBm (LT simulator: -25); sets the laser power"},
    )
    max_waveguide_power_dbm: float = field(
        default=MAX_WAVEGUIDE_POWER_DBM,
        metadata={"range": (-30.0, 50.0), 
            "doc": "most optical power one silicon input waveguide may carry, dBm (20 dBm = 100 mW: "
            "onset of two-photon / free-carrier absorption); above it the design is infeasible"
        },
    )
    dac_bits: int = field(default=8, metadata={"range": (1, 32), "doc": "input DAC / modulator resolution, bits"})
    adc_bits: int = field(default=8, metadata={"range": (1, 32), "doc": "output ADC resolution, bits"})
    input_range: str = input_range_field()
    input_percentile: float = input_percentile_field()
    laser_margin_db: float = field(
        default=0.0,
        metadata={"range": (-100.0, 40.0), 
            "doc": "laser power above (+) or below (-) LT's budget (sensitivity + loss + "
            "10 log10 2^adc_bits per input waveguide), dB: scales the laser's cost, the power "
            "per waveguide and the power on the detectors (hence shot/TIA SNR)"
        },
    )
    responsivity_a_per_w: float = field(
        default=RESPONSIVITY_A_PER_W,
        metadata={"range": (1e-3, 2.0), "doc": "photodiode responsivity, A/W (photontorch: 1.0; 1.25 at unit QE, 1550 nm)"},
    )
    tia_noise_pa_per_rthz: float = field(
        default=TIA_NOISE_PA_PER_RTHZ,
        metadata={"range": (0.0, 1e4), 
            "doc": "TIA input-referred noise current density per tile detector pair, pA/sqrt(Hz) "
            "(Xie et al. 2021, 25 Gb/s TIA: 10.9); bandwidth = clock_ghz"
        },
    )
    detection: str = field(
        default="link_budget",
        metadata={"doc": "receiver model: 'link_budget' (LT's: a unit output brings P_fs to its balanced pair, "
                  "shot noise 2 q R P_fs |u| B) or 'homodyne' (balanced homodyne against a local oscillator of "
                  "lo_power_mw per pair: current 2 R sqrt(P_LO P_fs) u, shot noise 2 q R (P_LO + P_fs u^2) B; "
                  "the LO is priced as held laser power)"},
    )
    lo_power_mw: float = field(
        default=0.0,
        metadata={"range": (0.0, 1e4), "doc": "local-oscillator power per balanced pair with detection='homodyne', mW; 0 = the power "
                  "of one input waveguide (split from the same laser)"},
    )
    receiver_noise: bool = field(
        default=True,
        metadata={
            "doc": "shot and TIA noise from the received optical power (False: a noiseless "
            "receiver, for ablations)"
        },
    )
    detector_noise: float = field(
        default=0.0,
        metadata={"range": (0.0, 1.0), 
            "doc": "extra receiver noise std relative to the ADC full scale, on top of shot and "
            "TIA noise (before issue 12 the only receiver noise, 0.001; shen2017 keeps 0.001)"
        },
    )
    analog_accumulation: bool = field(
        default=True,
        metadata={"doc": "sum tile photocurrents of a block row before one ADC per output"},
    )
    clock_ghz: float = field(
        default=5.0, metadata={"range": (1e-3, ADC_GSPS), "doc": "sample rate of DACs/ADCs, GHz (LT: 5 GHz; ADC max 10)"}
    )
    max_power_w: float = field(
        default=MAX_POWER_W,
        metadata={"range": (0.0, 1e6), "doc": "thermal design power of the chip, W (a 300 W PCIe card): the device's power at "
                  "the operating rate (dynamic / interval + held) above it is infeasible; 0 = unchecked"},
    )
    max_power_density_w_per_cm2: float = field(
        default=MAX_POWER_DENSITY_W_PER_CM2,
        metadata={"range": (0.0, 1e6), "doc": "most power per chip area, W/cm^2 (air cooling ~100): above it the design is "
                  "infeasible; 0 = unchecked"},
    )
    laser_energy_scale: float = scale_field("the laser's power")
    lo_energy_scale: float = scale_field("the local oscillator's power")
    heater_energy_scale: float = scale_field("the heaters' held power")
    phase_dac_energy_scale: float = scale_field("the phase-holding DACs' power and write energy")
    phase_dac_area_scale: float = scale_field("the phase DACs' area")
    dac_energy_scale: float = scale_field("the input DACs' energy")
    dac_area_scale: float = scale_field("the input DACs' area")
    modulator_energy_scale: float = scale_field("the modulators' energy")
    detector_energy_scale: float = scale_field("the photodetectors' and TIAs' energy")
    adc_energy_scale: float = scale_field("the ADCs' energy")
    adc_area_scale: float = scale_field("the ADCs' (and TIAs') area")
    mzi_area_scale: float = scale_field("the MZIs' area")
    modulator_area_scale: float = scale_field("the modulators' and attenuators' area")
    detector_area_scale: float = scale_field("the photodetectors' area")

    def validate(self) -> None:
        """Choices and boolean fields; raise ``ConfigError`` naming the field and the fix.

        Each numeric field's range is its metadata's (``DeviceConfig`` checks it first).
        """
        check_choice("phase_shifter", self.phase_shifter, PHASE_SHIFTERS)
        check_choice("phase_quantization", self.phase_quantization, PHASE_QUANTIZATIONS)
        check_choice("detection", self.detection, DETECTIONS)
        check_input_range(self.input_range)
        for name in ("crosstalk_calibrated", "receiver_noise"):
            if not isinstance(getattr(self, name), bool):
                check_range(name, getattr(self, name), 0, 1, integer=True)
        if not isinstance(self.analog_accumulation, bool):
            check_range("analog_accumulation", self.analog_accumulation, 0, 1, integer=True)


class PhotonicMZILayer(DeviceLayer):
    """``x @ K.T`` on tiled Clements meshes; trainable phases and singular values.

    Parameters (all tiles at once, ``T`` tiles of size ``k``, ``M = k(k-1)/2``):
    ``theta``, ``phi`` (``[2T, M]``, the ``U`` meshes then the ``V^T`` meshes), ``delta``
    (``[2T, k]`` output phase screens) and ``sigma`` (``[T, k]`` singular values).
    """

    def __init__(self, in_features: int, out_features: int, config: PhotonicMZIConfig) -> None:
        super().__init__(in_features, out_features, config)
        k = config.block_size
        self.k = k
        self.tile_rows = -(-out_features // k)
        self.tile_cols = -(-in_features // k)
        self.n_tiles = self.tile_rows * self.tile_cols
        n_mzi = mesh_layout(k).n_mzi
        self.theta = torch.nn.Parameter(torch.zeros(2 * self.n_tiles, n_mzi))
        self.phi = torch.nn.Parameter(torch.zeros(2 * self.n_tiles, n_mzi))
        self.delta = torch.nn.Parameter(torch.zeros(2 * self.n_tiles, k))
        self.sigma = torch.nn.Parameter(torch.zeros(self.n_tiles, k))
        self.adc_range = CalibratedRange()
        if config.input_range == "calibrated":  # the modulators' full drive: one range, saved with the layer
            self.input_range = PercentileRange(config.input_percentile)
        # a valid starting point (nn.Linear's init scale) from a local generator
        gen = torch.Generator().manual_seed(0)
        bound = 1.0 / math.sqrt(in_features)
        self.load_matrix((torch.rand(out_features, in_features, generator=gen) * 2 - 1) * bound)

    # ------------------------------------------------------------------ programming
    def load_matrix(self, matrix: torch.Tensor) -> None:
        """Decompose ``matrix`` once: per-tile SVD, then Clements phases of ``U`` and ``V^T``."""
        k, out, inp = self.k, self.out_features, self.in_features
        m = np.zeros((self.tile_rows * k, self.tile_cols * k))
        m[:out, :inp] = matrix.detach().to("cpu", torch.float64).numpy()
        tiles = m.reshape(self.tile_rows, k, self.tile_cols, k).transpose(0, 2, 1, 3)
        u, s, vh = np.linalg.svd(tiles.reshape(-1, k, k))
        theta_u, phi_u, delta_u = decompose(u)
        theta_v, phi_v, delta_v = decompose(vh)
        with torch.no_grad():
            for p, a, b in (
                (self.theta, theta_u, theta_v),
                (self.phi, phi_u, phi_v),
                (self.delta, delta_u, delta_v),
            ):
                p.copy_(torch.from_numpy(np.concatenate([a, b])))
            self.sigma.copy_(torch.from_numpy(s))
        self.adc_range.reset()

    # ------------------------------------------------------------------ physics
    def realized_phases(self, mode: Mode | None = None) -> dict[str, torch.Tensor]:
        """The phases and coupler angles the hardware actually has in ``mode``.

        Noise streams of an instance: 0..2 phase errors of theta, phi, delta; 3, 4 the
        couplers; 5 the attenuators (:meth:`realized_attenuators`); 101 the receiver (in
        ``forward``). Phases are quantized by
        :func:`quantize_phase` (``phase_quantization``); with thermo-optic shifters the random
        error of each heater leaks ``thermal_crosstalk`` of itself to its neighbours
        (:func:`neighbour_matrix`), and the programmed phases too unless
        ``crosstalk_calibrated``.

        Args:
            mode: ``Mode.TRAINING`` (fresh noise), ``Mode.INSTANCE`` (the drawn instance) or
                ``Mode.NOMINAL`` (quantized, noise-free); default: the layer's current mode.

        Returns:
            ``theta``, ``phi``, ``delta`` (after quantization and noise) and ``kappa1``,
            ``kappa2`` (coupling angles, ``pi/4`` is 50:50; None when couplers are ideal).
        """
        cfg = self.config
        mode = self.mode if mode is None else mode
        heaters = cfg.phase_shifter == "thermo_optic" and cfg.thermal_crosstalk > 0
        noisy = mode is not Mode.NOMINAL
        out: dict[str, torch.Tensor | None] = {}
        for stream, name in enumerate(("theta", "phi", "delta")):
            p = getattr(self, name)
            p = ste(p, quantize_phase(p.detach(), cfg.phase_bits, cfg.phase_quantization))
            adj = None
            if heaters:
                adj = neighbour_matrix(self.k, name == "delta").to(p.dtype)
                if not cfg.crosstalk_calibrated:
                    # each heater's power ~ its programmed phase in [0, 2 pi) leaks to neighbours
                    p = p + cfg.thermal_crosstalk * (torch.remainder(p, 2 * math.pi) @ adj)
            if cfg.phase_noise_rad > 0 and noisy:
                err = cfg.phase_noise_rad * self.noise(p.shape, stream, p, mode)
                if adj is not None:  # the error's heat leaks too: neighbours' errors correlate
                    err = err + cfg.thermal_crosstalk * (err @ adj)
                p = p + err
            out[name] = p
        out["kappa1"] = out["kappa2"] = None
        if cfg.bs_error > 0 and mode is not Mode.NOMINAL:
            for stream, name in ((3, "kappa1"), (4, "kappa2")):
                z = self.noise(self.theta.shape, stream, self.theta, mode)
                ratio = (0.5 + cfg.bs_error * z).clamp(0.0, 1.0)  # cross-coupled power share
                out[name] = torch.asin(torch.sqrt(ratio))
        return out

    def realized_attenuators(self, ratio: torch.Tensor, mode: Mode | None = None) -> torch.Tensor:
        """The amplitude ratios the attenuator column realises for the ideal ``ratio`` (``[T, k]``).

        Each attenuator is an MZI whose internal phase ``theta = 2 asin |ratio|`` in ``[0, pi]``
        sets its amplitude transmission ``sin(theta / 2)`` (the sign is the output screen's
        pi): the phase is quantized by the same phase DAC as the meshes (``phase_bits``,
        ``phase_quantization``) and carries the same drive noise (``phase_noise_rad``, noise
        stream 5), as priced (one held phase DAC and heater per attenuator).
        """
        cfg = self.config
        mode = self.mode if mode is None else mode
        theta = 2 * torch.asin(ratio.abs().clamp(0.0, 1.0))
        theta = quantize_phase(theta, cfg.phase_bits, cfg.phase_quantization)
        if cfg.phase_noise_rad > 0 and mode is not Mode.NOMINAL:
            theta = theta + cfg.phase_noise_rad * self.noise(theta.shape, 5, theta, mode)
        return torch.sin(theta / 2) * torch.where(ratio < 0, -1.0, 1.0).to(ratio.dtype)

    def transmission(self) -> float:
        """Amplitude transmission of the deepest path: ``10^(-IL * (2k+1) / 20)``.

        Every mode crosses ``k`` columns of each mesh plus the attenuator column; idle edge
        positions are assumed to carry loss-matched dummy sections (Clements et al.'s balanced
        loss), so the loss is a uniform attenuation that the laser power must compensate.
        """
        return 10 ** (-self.config.insertion_loss_db * optical_depth(self.k) / 20)

    def _field_tiles(self, mode: Mode) -> tuple[torch.Tensor, torch.Tensor]:
        """Complex optical tile matrices ``[T, k, k]`` (``|s| <= 1``, lossy: the output fields of
        unit input fields) and the digital gain.

        With ideal phases the tiles are real (the Clements phases of real ``U`` and ``V^T``);
        phase errors and coupler errors give them an imaginary part.
        """
        ph = self.realized_phases(mode)
        mats = rebuild(ph["theta"], ph["phi"], ph["delta"], ph["kappa1"], ph["kappa2"])
        u, vh = mats[: self.n_tiles], mats[self.n_tiles :]
        scale = self.sigma.detach().abs().amax().clamp_min(1e-30)
        att = self.sigma / scale
        att = ste(att, self.realized_attenuators(att.detach(), mode)).to(u.dtype)
        return ((u * att[:, None, :]) @ vh) * self.transmission(), scale / self.transmission()

    def _normalized_tiles(self, mode: Mode) -> tuple[torch.Tensor, torch.Tensor]:
        """Optical tile matrices ``[T, k, k]`` as the coherent receivers read them (real) and the
        digital gain.

        ``tiles * gain`` is the end-to-end matrix: the gain restores the per-layer singular value
        scale and divides out the known optical transmission.
        """
        tiles, gain = self._field_tiles(mode)
        return torch.real(tiles), gain  # coherent detection reads Re(y)

    def output_field(self, x: torch.Tensor) -> torch.Tensor:
        """The complex optical field at the outputs, ``[batch, in] -> [batch, out]`` complex, in
        the units of :meth:`forward` (times the digital gain): the input DAC and the mesh as
        :meth:`forward` has them in the layer's mode (same noise streams, so its real part is
        what the coherent receivers read before their noise and ADC), no detection.

        The tiles of a block row are combined coherently (their fields add) into one output
        waveguide: what a photodiode reading the whole row of ``W`` in intensity sees, ``|.|^2``
        of this field (:class:`~codesign.devices.native_lifts.PhotonicIntensity`).
        """
        tiles, gain = self._field_tiles(self.mode)
        codes, lsb, amax = self._inputs(x)
        k, b = self.k, x.shape[0]
        xp = torch.nn.functional.pad(codes, (0, self.tile_cols * k - self.in_features)).to(tiles.dtype)
        t = tiles.view(self.tile_rows, self.tile_cols, k, k)
        field = torch.einsum("bcj,rcij->bri", xp.view(b, self.tile_cols, k), t).reshape(b, -1)[:, : self.out_features]
        return field * (lsb * amax * gain).to(tiles.dtype)

    def _assemble(self, tiles: torch.Tensor) -> torch.Tensor:
        k = self.k
        full = tiles.view(self.tile_rows, self.tile_cols, k, k).permute(0, 2, 1, 3)
        full = full.reshape(self.tile_rows * k, self.tile_cols * k)
        # contiguous, so that autograd picks the fast transposed GEMM for the weight gradient
        return full[: self.out_features, : self.in_features].contiguous()

    def effective_matrix(self) -> torch.Tensor:
        """The nominal end-to-end matrix (phase-quantized, noise-free), ``[out, in]``."""
        with torch.no_grad():
            tiles, gain = self._normalized_tiles(Mode.NOMINAL)
            return self._assemble(tiles) * gain

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[batch, in] -> [batch, out]`` through DAC, meshes, detectors and ADC."""
        cfg, mode = self.config, self.mode
        tiles, gain = self._normalized_tiles(mode)
        codes, lsb, amax = self._inputs(x)  # modulator drive = codes * lsb in [-1, 1]
        if cfg.analog_accumulation:
            # photocurrents summed across the block row
            ya = torch.nn.functional.linear(codes, self._assemble(tiles)) * lsb
        else:
            k, b = self.k, x.shape[0]
            xp = torch.nn.functional.pad(codes, (0, self.tile_cols * k - self.in_features))
            t = tiles.view(self.tile_rows, self.tile_cols, k, k)
            ya = torch.einsum("bcj,rcij->brci", xp.view(b, self.tile_cols, k), t) * lsb
        full_scale = self.adc_range(ya)
        if mode is not Mode.NOMINAL and (cfg.receiver_noise or cfg.detector_noise > 0):
            with torch.no_grad():  # noise sizes are constants to autograd
                std = self.receiver_noise_std(codes.detach(), lsb, tiles.detach(), ya.detach())
                if cfg.detector_noise > 0:
                    std = torch.sqrt(std.square() + (cfg.detector_noise * full_scale) ** 2)
            # eval: re-seeded per call, so the output is a function of (x, seed)
            ya = ya + std * self.noise(ya.shape, 101, ya, mode)
        yq = quantize_symmetric(ya, full_scale, cfg.adc_bits)
        if not cfg.analog_accumulation:  # digital partial-sum accumulation per block row
            yq = yq.sum(dim=2).reshape(x.shape[0], -1)[:, : self.out_features]
        # the digital gain undoes the input scale (per vector, or the calibrated range), the weight
        # scale and the known, uniform optical transmission (its cost is the extra laser power)
        return yq * (amax * gain)

    def _inputs(self, x: torch.Tensor) -> tuple[torch.Tensor, float, torch.Tensor]:
        """``(codes, lsb, scale)``: the input DAC's integer codes, their step and the digital input
        scale (``input_range``): each vector's abs-max, or the calibrated range with the inputs
        beyond it clipped. Either way the modulators' full drive is code ``+-(2**(dac_bits-1) - 1)``,
        the drive the link budget, the receiver noise and the ADC range are set for."""
        cfg = self.config
        if cfg.input_range == "vector_absmax":
            return dac(x, cfg.dac_bits)
        return range_dac(x, self.input_range(x), cfg.dac_bits)

    def receiver_noise_std(
        self, codes: torch.Tensor, lsb: float, tiles: torch.Tensor, ya: torch.Tensor
    ) -> torch.Tensor:
        """Shot + TIA noise std of the detected signal ``ya`` (same shape, same units).

        ``ya`` is in units of one waveguide's full drive through the lossy tile (``u`` times the
        amplitude transmission ``t``). Per tile output ``u`` the variance is ``a |u| + c``
        (:func:`receiver_noise_coefficients`); with analog accumulation the ``tile_cols`` tiles
        of a block row add their variances. Zeros when ``receiver_noise`` is off.
        """
        cfg = self.config
        if not cfg.receiver_noise:
            return torch.zeros_like(ya)
        t = self.transmission()
        if cfg.detection == "homodyne":
            return t * torch.sqrt(self._homodyne_variance(codes, lsb, tiles, ya))
        shot, floor = receiver_noise_coefficients(cfg)
        if cfg.analog_accumulation:
            # sum over the block row of |u| per tile (the per-tile outputs, as without analog
            # accumulation)
            k, b, c = self.k, codes.shape[0], self.tile_cols
            xp = torch.nn.functional.pad(codes, (0, c * k - self.in_features))
            t4 = tiles.view(self.tile_rows, c, k, k)
            per_tile = torch.einsum("bcj,rcij->brci", xp.view(b, c, k), t4)  # [b, R, C, k]
            abs_sum = per_tile.abs_().sum(2).reshape(b, -1)[:, : self.out_features] * (lsb / t)
            # the block row's photocurrents meet at one TIA: one noise floor per output (receivers)
            var = shot * abs_sum + floor * receivers(cfg, self.in_features, self.out_features)["tias_per_output"]
        else:
            var = shot * ya.abs() / t + floor
        return t * torch.sqrt(var)

    def _homodyne_variance(self, codes: torch.Tensor, lsb: float, tiles: torch.Tensor, ya: torch.Tensor) -> torch.Tensor:
        """Per-output noise variance (in ``u^2``) of balanced homodyne receivers
        (:func:`homodyne_noise_coefficients`): every tile's pair adds its LO and signal shot
        noise, each TIA its floor (:func:`receivers`)."""
        cfg = self.config
        lo, sig, tia = homodyne_noise_coefficients(cfg)
        t = self.transmission()
        if not cfg.analog_accumulation:
            u = ya / t
            return lo + sig * u.square() + tia
        k, b, c = self.k, codes.shape[0], self.tile_cols
        xp = torch.nn.functional.pad(codes, (0, c * k - self.in_features))
        per_tile = torch.einsum("bcj,rcij->brci", xp.view(b, c, k), tiles.view(self.tile_rows, c, k, k)) * (lsb / t)
        u2 = per_tile.square().sum(2).reshape(b, -1)[:, : self.out_features]
        return c * lo + sig * u2 + tia * receivers(cfg, self.in_features, self.out_features)["tias_per_output"]


def optical_depth(k: int) -> int:
    """MZIs on the deepest path of one tile: ``k`` (V^T mesh) + 1 (attenuator) + ``k`` (U mesh)."""
    return 2 * mesh_layout(k).depth + 1


def quantize_phase(p: torch.Tensor, bits: int, how: str = "phase") -> torch.Tensor:
    """Phases ``p`` on the levels of a ``bits``-bit phase DAC (no gradient; wrap with ``ste``).

    ``how == "phase"``: levels ``2 pi n / N`` (``N = 2**bits``), uniform in phase. ``"voltage"``:
    a thermo-optic heater's phase is proportional to its power ``V^2 / R`` (Harris et al. 2014:
    phase ~ Delta T ~ P), so a DAC uniform in voltage over ``[0, V_2pi]`` gives the levels
    ``2 pi (n / N)^2``: dense near 0, ``~4 pi / N`` apart near ``2 pi``. Each phase is wrapped
    into ``[0, 2 pi)``, quantized, and its multiple of ``2 pi`` put back.
    """
    two_pi = 2 * math.pi
    n = 2**bits
    if how == "phase":
        step = two_pi / n
        return torch.round(p / step) * step
    wraps = torch.floor(p / two_pi) * two_pi
    level = torch.round(torch.sqrt((p - wraps).clamp_min(0.0) / two_pi) * n)
    return wraps + two_pi * (level / n) ** 2


@functools.lru_cache(maxsize=None)
def neighbour_matrix(k: int, screen: bool = False) -> torch.Tensor:
    """Symmetric 0/1 adjacency of the heaters of one ``k``-mode mesh (float64, cached).

    Mesh phases (``screen=False``, ``[M, M]`` in :func:`mesh_layout`'s column-major order):
    the MZIs of one column sit side by side across the chip, so MZI ``j`` and ``j + 1`` of a
    column are neighbours. Output screen (``screen=True``, ``[k, k]``): adjacent modes.
    ``err @ neighbour_matrix(k)`` sums each heater's neighbours.
    """
    if screen:
        adj = np.eye(k, k, 1) + np.eye(k, k, -1)
    else:
        layout = mesh_layout(k)
        adj = np.zeros((layout.n_mzi, layout.n_mzi))
        for (_, n), off in zip(layout.columns, layout.offsets):
            for j in range(n - 1):
                adj[off + j, off + j + 1] = adj[off + j + 1, off + j] = 1.0
    return torch.from_numpy(adj)


def optical_link(cfg: PhotonicMZIConfig) -> dict[str, float]:
    """The link budget of one tile's optical path: what the cost model prices and the noise uses.

    * ``loss_db``: insertion loss of the path, ``insertion_loss_db`` x :func:`optical_depth`
      + the input modulator (LT ``cal_insertion_loss``);
    * ``headroom_db``: ``10 log10(2**adc_bits)``, so the smallest ADC level stays above the
      detector sensitivity (LT ``cal_laser_power``);
    * ``waveguide_dbm``: optical power launched into one input waveguide, ``sensitivity + loss +
      headroom + laser_margin_db``; the laser feeds ``k`` of them per tile;
    * ``received_dbm``: what reaches an output's detectors for a full-drive unit output,
      ``waveguide_dbm - loss_db`` (= sensitivity x 2^adc_bits at zero margin);
    * ``link_budget_db``: the most insertion loss that fits under ``max_waveguide_power_dbm``.
    """
    loss_db = cfg.insertion_loss_db * optical_depth(cfg.block_size) + MODULATOR_IL_DB
    headroom_db = 10 * math.log10(2.0**cfg.adc_bits)
    waveguide_dbm = cfg.detector_sensitivity_dbm + loss_db + headroom_db + cfg.laser_margin_db
    return {
        "loss_db": loss_db,
        "headroom_db": headroom_db,
        "waveguide_dbm": waveguide_dbm,
        "received_dbm": waveguide_dbm - loss_db,
        "link_budget_db": cfg.max_waveguide_power_dbm - cfg.detector_sensitivity_dbm
        - headroom_db - cfg.laser_margin_db,
    }


def receivers(cfg: PhotonicMZIConfig, in_features: int, out_features: int) -> dict[str, int]:
    """The receivers of an ``out x in`` layer: the one count the noise model and the cost read.

    Every tile output has a balanced pair of photodetectors (``n_detectors = 2 x tile_cols x
    out``). With ``analog_accumulation`` the photocurrents of a block row's tiles are summed on
    one node before a single TIA and ADC per output (``tias_per_output`` 1: one TIA noise
    floor per output, the shot noise of every tile); otherwise each tile output has its own TIA
    and ADC (``tile_cols`` of them per output, their noise floors added with the digital partial
    sums).
    """
    cols = -(-in_features // cfg.block_size)
    per_output = 1 if cfg.analog_accumulation else cols
    return {"n_detectors": 2 * cols * out_features, "n_tias": per_output * out_features,
            "n_adcs": per_output * out_features, "tias_per_output": per_output, "tile_cols": cols}


def lo_power_mw(cfg: PhotonicMZIConfig) -> float:
    """The local oscillator's power per balanced pair, mW (0 unless ``detection='homodyne'``)."""
    if cfg.detection != "homodyne":
        return 0.0
    return cfg.lo_power_mw if cfg.lo_power_mw > 0 else 10 ** (optical_link(cfg)["waveguide_dbm"] / 10)


def homodyne_noise_coefficients(cfg: PhotonicMZIConfig) -> tuple[float, float, float]:
    """``(lo, sig, tia)``: a balanced homodyne pair reading tile output ``u`` has noise variance
    ``lo + sig u^2`` (in ``u^2``), its TIA adds ``tia``.

    The pair's current difference is ``2 R sqrt(P_LO P_fs) u`` (``P_fs``: :func:`optical_link`'s
    ``received_dbm``, ``P_LO``: :func:`lo_power_mw`); its shot noise ``2 q R (P_LO + P_fs u^2) B``
    (both photodiodes' mean currents) and the TIA's ``i_n^2 B`` (``B = clock_ghz``), divided by
    the squared gain: ``lo = q B / (2 R P_fs)`` (the LO-limited shot noise, independent of
    ``P_LO``), ``sig = q B / (2 R P_LO)``, ``tia = i_n^2 B / (4 R^2 P_LO P_fs)``.
    """
    p_fs = 10 ** (optical_link(cfg)["received_dbm"] / 10) * 1e-3
    p_lo = lo_power_mw(cfg) * 1e-3
    r, bandwidth, i_n = cfg.responsivity_a_per_w, cfg.clock_ghz * 1e9, cfg.tia_noise_pa_per_rthz * 1e-12
    return (Q_E_C * bandwidth / (2 * r * p_fs), Q_E_C * bandwidth / (2 * r * p_lo),
            i_n**2 * bandwidth / (4 * r**2 * p_lo * p_fs))


def receiver_noise_coefficients(cfg: PhotonicMZIConfig) -> tuple[float, float]:
    """``(a, c)``: a tile output ``u`` is read with noise variance ``a |u| + c`` (in ``u^2``).

    ``u`` is in units of one input waveguide's full drive through the normalized tile; a unit
    output brings ``P_fs`` (:func:`optical_link` ``received_dbm``) to the detectors and gives the
    photocurrent ``I_fs = R P_fs``. Shot noise ``2 q I_fs |u| B`` and the TIA's input-referred
    noise ``i_n^2 B`` (``B = clock_ghz``), divided by ``I_fs^2``:
    ``a = 2 q B / I_fs``, ``c = i_n^2 B / I_fs^2``.
    """
    p_fs_w = 10 ** (optical_link(cfg)["received_dbm"] / 10) * 1e-3
    i_fs = cfg.responsivity_a_per_w * p_fs_w
    bandwidth_hz = cfg.clock_ghz * 1e9
    i_n = cfg.tia_noise_pa_per_rthz * 1e-12
    return 2 * Q_E_C * bandwidth_hz / i_fs, i_n**2 * bandwidth_hz / i_fs**2


class PhotonicMZIDevice(Device):
    """Coherent MZI-mesh photonic accelerator (tiled SVD on Clements meshes)."""

    name = "photonic_mzi"
    Config = PhotonicMZIConfig
    api_version = 3  # the device API it implements (codesign.devices.base.DEVICE_API_VERSION)
    calibrator = "codesign.devices.photonic_calibration:PhotonicMZICalibrator"  # per-MZI data (issue 32)
    description = (
        "coherent photonic MZI meshes: k x k tiles as U diag(s) V^T on Clements meshes, "
        "phase quantization (phase or heater voltage)/noise with thermal crosstalk, coupler "
        "imbalance, insertion loss, DAC/ADC, shot + TIA noise from the received optical power"
    )
    #: DACs + input modulators, photodetectors + TIAs, ADCs; laser, phase holding and digital
    #: partial sums are the matrix stage.
    conversion_keys: ClassVar[tuple[str, ...]] = ("input_scaling_pj", "dac_pj", "modulator_pj", "detector_pj", "adc_pj")

    @classmethod
    def lifts(cls) -> dict[str, type]:
        """The nonlinear primitives this device computes (:mod:`codesign.devices.native_lifts`)."""
        from .native_lifts import photonic_lifts

        return photonic_lifts()

    def layer(self, in_features: int, out_features: int) -> PhotonicMZILayer:
        """A fresh layer of this configuration."""
        return PhotonicMZILayer(in_features, out_features, self.config)

    #: ``photonic-mesh/2``: per tile, the phase-DAC codes of both meshes and their output
    #: screens, the attenuators, the tile layout, converters and digital scales
    #: (:mod:`codesign.devices.photonic_export` documents every field).
    export_format: ClassVar[str | None] = EXPORT_FORMAT

    def export_layer(self, layer: DeviceLayer, folder: Path) -> dict[str, Any]:
        """Write ``layer`` as ``photonic_mesh.json`` + ``photonic_mesh.npz`` into ``folder``."""
        if not isinstance(layer, PhotonicMZILayer):
            raise ConfigError(f"photonic_mzi cannot export a {type(layer).__name__}; give a layer of this device")
        cfg = layer.config
        return export_mesh(self, layer, folder, optical_link(cfg), receiver_noise_coefficients(cfg))

    def load_layer_export(self, folder: Path, manifest: Mapping[str, Any]) -> PhotonicMZILayer:
        """The layer :meth:`export_layer` wrote, rebuilt from its DAC codes and settings (no K)."""
        return load_mesh(self, folder, manifest)

    @classmethod
    def presets(cls) -> dict[str, Preset]:
        """The LT MZI baseline, Shen et al.'s 2017 thermo-optic chip and an Sb2Se3 mesh.

        Each preset's headline figure is checked through :meth:`cost` in
        ``tests/devices/test_photonic_published.py`` (tolerances stated there and below).
        """
        return preset_table(
            Preset(
                "lightening_transformer_mzi",
                {
                    "block_size": 12,  # LT photonic cores are 12 x 12 (Bs_mzi_8bit.yaml core)
                    "phase_bits": 8,  # LT's 8-bit baseline (Bs_mzi_8bit.yaml precision)
                    "dac_bits": 8,  # Bs_mzi_8bit.yaml: in_bit 8
                    "adc_bits": 8,  # Bs_mzi_8bit.yaml: act_bit 8
                    "insertion_loss_db": LT_MZI_IL_DB,  # default.yaml mzi: 0.99 dB per MZI
                    "clock_ghz": 5.0,  # Bs_mzi_8bit.yaml core: work_freq 5 GHz
                    "phase_shifter": "thermo_optic",
                    # default.yaml phase_shifter / mzi: static_power 0 -- LT charges no holding
                    # power (kept to reproduce LT; a real heater holds ~P_pi, see the defaults)
                    "heater_p_pi_mw": 0.0,
                    "detector_sensitivity_dbm": DETECTOR_SENSITIVITY_DBM,  # default.yaml: -25
                },
                "H. Zhu et al., 'Lightening-Transformer: a dynamically-operated optically-"
                "interconnected photonic Transformer accelerator', HPCA 2024 (MZI baseline; "
                "github.com/zhuhanqing/Lightening-Transformer hardware_simulator). Checked: the "
                "12x12 core's laser power of hardware/photonic_MZI.py cal_laser_power, exact "
                "(rel. 1e-9), and its DAC/ADC energies per conversion at 5 GHz, exact.",
                "LT's 8-bit MZI-mesh baseline: 12 x 12 Clements cores at 5 GHz, 0.99 dB/MZI, "
                "no heater holding power (LT's assumption)",
            ),
            Preset(
                "shen2017",
                {
                    # 4 x 4 matrices on a programmable nanophotonic processor of 56 MZIs
                    "block_size": 4,
                    # phase-encoding noise sigma_Phi ~ 5e-3 rad (thermal crosstalk), as measured
                    "phase_noise_rad": 0.005,
                    # photodetection noise sigma_D ~ 0.1 % of the signal, as measured: kept as
                    # the extra receiver term on top of the shot/TIA noise of our link budget
                    "detector_noise": 0.001,
                    # thermo-optic shifters of the same group: Harris et al., Opt. Express 22,
                    # 10487 (2014): P_pi = 24.77 +- 0.43 mW, 0.23 +- 0.13 dB per shifter
                    "phase_shifter": "thermo_optic",
                    "heater_p_pi_mw": HARRIS_P_PI_MW,
                    "insertion_loss_db": THERMO_OPTIC_MZI_IL_DB,
                },
                "Y. Shen et al., 'Deep learning with coherent nanophotonic circuits', "
                "Nat. Photonics 11, 441 (2017); shifters: N. C. Harris et al., Opt. Express 22, "
                "10487 (2014). Checked: holding power per pi = P_pi 24.77 mW within the paper's "
                "+-0.43 mW, shifter loss 0.23 dB within +-0.13 dB, on Shen's 4x4 workload.",
                "the first coherent ONN chip: 4-mode meshes, measured phase and detector noise, "
                "thermo-optic shifters holding their phase with heater power",
            ),
            Preset(
                "rios2022_sb2se3",
                {
                    "phase_shifter": "nonvolatile",
                    # 2 couplers x 0.04 dB + Sb2Se3 0.3 dB/pi at the mean phase pi (Rios 2022)
                    "insertion_loss_db": NONVOLATILE_MZI_IL_DB,
                },
                "C. Rios et al., 'Ultra-compact nonvolatile phase shifter based on electrically "
                "reprogrammable transparent phase change materials', PhotoniX 3, 26 (2022): "
                "zero static power, 0.3 dB per pi. Checked: zero holding energy and 0.3 dB/pi in "
                "the per-MZI loss (exact) on a 12 x 12 tile.",
                "the default 12 x 12 8-bit mesh with non-volatile Sb2Se3 phase shifters",
            ),
        )

    @classmethod
    def search_space(cls) -> dict[str, SearchSpec]:
        """Design choices a search may vary."""
        # k = 64 is valid but left out: its training step costs ~15x an ideal one (k = 12: ~2.4x)
        return {
            "block_size": Choice((8, 12, 16, 32)),
            "phase_bits": IntRange(3, 10),
            "dac_bits": IntRange(4, 10),
            "adc_bits": IntRange(4, 10),
            "input_range": Choice(INPUT_RANGES),
            # laser power around LT's budget: energy against receiver SNR
            "laser_margin_db": FloatRange(-20.0, 10.0),
        }

    # ------------------------------------------------------------------ optics
    def _optics(self) -> dict[str, float]:
        """:func:`optical_link` of this config (the same numbers the layer's noise uses)."""
        return optical_link(self.config)

    def feasibility(self, in_features: int, out_features: int) -> list[str]:
        """Reasons the design cannot be built ([] if it can).

        The optical power in one input waveguide must stay under ``max_waveguide_power_dbm``
        (two-photon and free-carrier absorption in silicon); equivalently the path's insertion
        loss must fit the link budget ``max_waveguide_power_dbm - detector_sensitivity_dbm -
        10 log10(2**adc_bits) - laser_margin_db``. Both depend on the tile (``block_size``), not on the matrix size.
        """
        cfg = self.config
        o = self._optics()
        if o["waveguide_dbm"] <= cfg.max_waveguide_power_dbm:
            return []
        k = cfg.block_size
        return [
            f"optical power per input waveguide {o['waveguide_dbm']:.1f} dBm "
            f"({10 ** (o['waveguide_dbm'] / 10):.3g} mW) exceeds the silicon waveguide limit "
            f"max_waveguide_power_dbm={cfg.max_waveguide_power_dbm:g} dBm: the insertion loss "
            f"{o['loss_db']:.1f} dB ({optical_depth(k)} MZIs x insertion_loss_db="
            f"{cfg.insertion_loss_db:g} dB + {MODULATOR_IL_DB:g} dB modulator) exceeds the link "
            f"budget {o['link_budget_db']:.1f} dB (limit - detector_sensitivity_dbm="
            f"{cfg.detector_sensitivity_dbm:g} dBm - {o['headroom_db']:.1f} dB for "
            f"adc_bits={cfg.adc_bits}"
            + (f" - laser_margin_db={cfg.laser_margin_db:g} dB" if cfg.laser_margin_db else "")
            + f"); lower block_size={k}, insertion_loss_db or adc_bits"
        ]

    def power_feasibility(self, power_mw: float, area_mm2: float) -> list[str]:
        """The chip's power at the operating rate against ``max_power_w`` and its density against
        ``max_power_density_w_per_cm2`` (heaters and laser held, converters at the rate)."""
        cfg = self.config
        return power_limit_reasons(power_mw, area_mm2, max_power_w=cfg.max_power_w,
                                   max_power_density_w_per_cm2=cfg.max_power_density_w_per_cm2,
                                   what="photonic chip")

    def cost(self, in_features: int, out_features: int) -> dict[str, float]:
        """Component counts, losses, dynamic energy, held power, latency and area of one MVM.

        All tiles are present at once (weight-stationary; no weight traffic per inference); the
        chip takes one input vector per sample period ``1/clock_ghz`` (``interval_ns``).

        Dynamic energy per product (``*_pj``, summing to ``energy_pj``): the digital input
        scaling the layer simulates (``input_scaling_pj``: one multiply per input and per output,
        plus, with ``input_range="vector_absmax"``, one compare per input for the vector's max;
        a calibrated range is a constant), input DACs and modulators, photodetectors
        and TIAs, ADCs (:func:`receivers` counts them, the same count the receiver noise uses),
        and, without analog accumulation, the digital partial sums.

        Held power (``*_static_mw``, summing to ``static_power_mw``; the whole inference charges
        it for the time it is held): the laser (continuous wave, not gated), the thermo-optic
        heaters (every programmed phase -- MZI ``theta`` and ``phi``, the output screens and the
        Sigma attenuators -- draws ``heater_p_pi_mw`` times its mean phase over pi: 0.5 for
        phases in ``[0, pi]``, 1.0 for ``[0, 2 pi)``; none for non-volatile shifters) and one
        static DAC per programmed phase (``phase_dac``), written once when the layer is
        programmed (``reprogram_nj``, not a per-inference cost). ``<component>_energy_scale`` /
        ``_area_scale`` fields calibrate each component (:func:`~codesign.devices.base.calibrate`).
        """
        cfg = self.config
        k = cfg.block_size
        f = cfg.clock_ghz
        rows, cols = -(-out_features // k), -(-in_features // k)
        n_tiles = rows * cols
        mzi_per_mesh = mesh_layout(k).n_mzi
        n_mzi = n_tiles * 2 * mzi_per_mesh
        n_phase_shifters = n_tiles * 2 * (2 * mzi_per_mesh + k)  # theta, phi per MZI + screen
        n_attenuators = n_tiles * k
        n_held = n_phase_shifters + n_attenuators  # every programmed phase has its static DAC
        depth = optical_depth(k)
        optics = self._optics()
        loss_db = optics["loss_db"]
        # LT: P_laser[dBm] = sensitivity + loss + 10 log10(k) (split over k inputs), times
        # 2^bits so the smallest ADC level stays above the detector sensitivity; i.e. k input
        # waveguides per tile at optical_link's waveguide power (which adds laser_margin_db).
        waveguide_mw = 10 ** (optics["waveguide_dbm"] / 10)
        laser_mw = n_tiles * k * waveguide_mw / LASER_WALL_PLUG_EFF
        hold_mw = 0.0
        if cfg.phase_shifter == "thermo_optic":
            n_internal = n_tiles * 2 * mzi_per_mesh + n_attenuators  # phases in [0, pi]
            n_external = n_tiles * 2 * (mzi_per_mesh + k)  # phi + output screens, [0, 2 pi)
            hold_mw = cfg.heater_p_pi_mw * (
                MEAN_HOLD_INTERNAL * n_internal + MEAN_HOLD_EXTERNAL * n_external
            )
        rc = receivers(cfg, in_features, out_features)
        n_dac = rows * in_features  # each block row gets its own copy of the input vector
        n_adc = rc["n_adcs"]
        dac_pj = DAC_MW_8BIT / DAC_GSPS * (2**cfg.dac_bits / cfg.dac_bits) / (2**8 / 8)
        adc_pj = ADC_MW_8BIT / ADC_GSPS * cfg.adc_bits / 8
        # vector_absmax: a compare per input finds the vector's max; calibrated: the range is a constant
        compare_pj = SCALE_COMPARE_PJ if cfg.input_range == "vector_absmax" else 0.0
        parts = {
            "input_scaling_pj": in_features * (compare_pj + SCALE_MULT_PJ) + out_features * SCALE_MULT_PJ,
            "dac_pj": n_dac * dac_pj,
            "modulator_pj": n_dac * MODULATOR_PJ * cfg.dac_bits / 8,
            "detector_pj": (rc["n_detectors"] * PHOTODETECTOR_MW + rc["n_tias"] * TIA_MW) / f,
            "adc_pj": n_adc * adc_pj,
            "digital_pj": 0.0 if cfg.analog_accumulation else (cols - 1) * out_features * INT32_ADD_PJ,
            "laser_static_mw": laser_mw,
            # homodyne: one LO per balanced pair, from the same laser (wall-plug efficiency)
            "lo_static_mw": rc["n_detectors"] / 2 * lo_power_mw(cfg) / LASER_WALL_PLUG_EFF,
            "heater_static_mw": hold_mw,
            "phase_dac_static_mw": n_held * PHASE_DAC_STATIC_MW,
        }
        areas = {
            "mzi": n_mzi * MZI_AREA_UM2,
            "modulator": (n_attenuators + n_tiles * k) * MODULATOR_AREA_UM2,  # Sigma + input modulators
            "detector": rc["n_detectors"] * PHOTODETECTOR_AREA_UM2,
            "adc": n_adc * (TIA_AREA_UM2 + ADC_AREA_UM2),  # one TIA per ADC (receivers)
            "dac": n_tiles * k * DAC_AREA_UM2,  # input DACs, one per modulator (as LT)
            "phase_dac": n_held * PHASE_DAC_AREA_UM2,
        }
        parts, areas = calibrate(cfg, parts, areas)
        energy = {key: v for key, v in parts.items() if key.endswith("_pj")}
        static = {key: v for key, v in parts.items() if key.endswith("_static_mw")}
        acc_cycles = 0 if cfg.analog_accumulation else math.ceil(math.log2(cols)) if cols > 1 else 0
        propagation_ns = depth * 180.0 * GROUP_INDEX / C_UM_PER_NS  # 180 um long MZIs
        out = {
            "energy_pj": sum(energy.values()),
            "static_power_mw": sum(static.values()),
            "latency_ns": (1 + acc_cycles) / f + propagation_ns,
            "interval_ns": 1.0 / f,  # converters and the accumulation pipeline take a vector per period
            "area_mm2": sum(areas.values()) * 1e-6,
            "n_tiles": float(n_tiles),
            "n_mzi": float(n_mzi),
            "n_phase_shifters": float(n_phase_shifters),
            "n_attenuators": float(n_attenuators),
            "n_phase_dacs": float(n_held),
            "n_detectors": float(rc["n_detectors"]),
            "n_tias": float(rc["n_tias"]),
            "optical_depth": float(depth),
            "total_insertion_loss_db": loss_db,
            "waveguide_power_mw": waveguide_mw,
            "received_power_mw": 10 ** (optics["received_dbm"] / 10),
            "reprogram_nj": n_held * PHASE_DAC_WRITE_PJ * cfg.phase_dac_energy_scale * 1e-3,
            "n_dac_conversions": float(n_dac),
            "n_adc_conversions": float(n_adc),
            **{f"{name}_area_mm2": a * 1e-6 for name, a in areas.items()},
        }
        out.update(energy)
        out.update(static)
        return out
