"""The built-in devices' nonlinear primitives (issue 30), each a :class:`~codesign.devices.lifts.ProjectionLift`.

Every primitive is a seeded random projection ``a = W z`` computed by its device's own matrix
layer (the device's programming errors, noise and converters, as it models them for K), then a
nonlinearity of the device's periphery:

* ``photonic_mzi.intensity`` (:class:`PhotonicIntensity`): square-law photodetection of the mesh's
  outputs, ``|W z|^2``: quadratic features;
* ``photonic_mzi.cosine`` (:class:`PhotonicCosine`): the mesh's outputs drive Mach-Zehnder
  modulators, whose field transmission is a cosine of the drive: ``cos(W z + u)``, random
  Fourier features in optics (the ``rff`` dictionary's projection and offsets);
* ``analog_crossbar.relu`` (:class:`CrossbarReLU`): the column periphery's rectifier after the
  ADC, ``max(W z, 0)``;
* ``fpga_fixed_point.lut`` (:class:`FPGALookUp`): a look-up table of the MVAU's fixed-point
  outputs, ``cos(W z + u)``, ``tanh(W z)`` or ``(W z)^2``.

``W`` is random, not trained (see :class:`~codesign.devices.lifts.ProjectionLift`): training it
would turn the fixed lift into a learned hidden layer, and the method's closed-form fit of one
matrix K on a fixed dictionary would be gone.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from types import ModuleType

import torch

from codesign.errors import check_choice, check_range
from codesign.specs import Choice, FloatRange, IntRange, SearchSpec

from .base import quantize_symmetric, shared_budget_reasons
from .digital import DATAPATHS
from .lifts import ProjectionLift, ProjectionLiftLayer, ProjectionParams

#: Relative RMS quantisation error the nominal layers stay within at the devices' default
#: 8-bit converters (measured: 1-4 %, tests/devices/test_native_lifts.py); the contract's bound.
NOMINAL_TOLERANCE = 0.1

def _figures(lift: ProjectionLift) -> ModuleType:
    """The module that defines the lift's device: its per-unit figures (each cited there) price
    the periphery. Read through the device, not imported, because the device module declares
    these primitives (no import cycle between the two)."""
    return sys.modules[type(lift.device).__module__]


#: Noise streams of the periphery (the projection layer uses its device's own streams).
STREAM_DETECTION = 3001
STREAM_BIAS = 3002


# --------------------------------------------------------------------------- photonic mesh
def _photonic_receiver(layer: ProjectionLiftLayer, signal: torch.Tensor, full_scale: torch.Tensor) -> torch.Tensor:
    """``signal`` read by a photodetector, TIA and ADC of the photonic device's config.

    Noise (off nominal): the device's shot + TIA model, variance ``a |s| + c`` in units of the full
    scale (:func:`~codesign.devices.photonic_mzi.receiver_noise_coefficients`: a full-scale
    output brings the link budget's received power to the detector, as the device's own
    receivers assume), when ``receiver_noise`` is on, plus ``detector_noise`` x full scale; then
    the ADC (``adc_bits``, symmetric mid-tread over the full scale).
    """
    receiver_noise_coefficients = _figures(layer.lift).receiver_noise_coefficients
    cfg = layer.lift.device.config
    fs = full_scale.clamp_min(1e-30)
    s = signal / fs
    var = torch.zeros_like(s)
    if cfg.receiver_noise:
        shot, floor = receiver_noise_coefficients(cfg)
        var = var + shot * s.abs() + floor
    if cfg.detector_noise > 0:
        var = var + cfg.detector_noise**2
    s = s + var.sqrt() * layer.noise(tuple(s.shape), STREAM_DETECTION, s)
    return quantize_symmetric(s, 1.0, cfg.adc_bits) * fs


class _PhotonicProjectionLayer(ProjectionLiftLayer):
    """The photonic mesh programmed with ``W``, read as an analog field: the mesh's DAC, phase
    quantisation, phase noise, crosstalk and coupler errors are the device's; its coherent
    receivers are replaced by the primitive's own detection (receiver noise off, a 32-bit ADC
    standing for no conversion), which adds the receiver noise and the ADC of the device's config."""

    def __init__(self, lift: ProjectionLift) -> None:
        real = lift.device
        lift.device = real.with_overrides({"receiver_noise": False, "detector_noise": 0.0, "adc_bits": 32})
        try:
            super().__init__(lift)
        finally:
            lift.device = real


class _PhotonicFieldLayer(_PhotonicProjectionLayer):
    """The programmed mesh read by photodiodes without a local oscillator: the primitive's
    :meth:`~codesign.devices.lifts.ProjectionLift.periphery` gets the complex output field
    (:meth:`~codesign.devices.photonic_mzi.PhotonicMZILayer.output_field`), not its real part."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.lift.periphery(self.projection.output_field(z), self)


class PhotonicIntensity(ProjectionLift):
    """Square-law detection of a random mesh's outputs: ``phi_j(z) = (w_j . z)^2``.

    Physics: a photodiode's current is proportional to the optical *intensity* ``|E|^2``, so
    reading a programmed mesh's outputs directly (without a local oscillator) gives quadratic
    forms of its input field: the random-feature scheme of optical processors that read a
    random medium in intensity (Saade et al., "Random projections through multiple optical
    scattering: approximating kernels at the speed of light", ICASSP 2016). Here the random
    matrix is a Gaussian ``W`` programmed into the device's SVD mesh tiles, seeded, not trained.

    Simulated: the mesh as the device models it (DAC, quantised and noisy phases, crosstalk,
    coupler errors), giving the complex output field ``E`` of each output (the tiles of a block
    row combined coherently, :meth:`~codesign.devices.photonic_mzi.PhotonicMZILayer.output_field`);
    the photodiode detects the whole field, ``I = |E|^2 = Re(E)^2 + Im(E)^2``: with ideal phases
    ``E`` is real and ``I = (w_j . z)^2``, while phase and coupler errors rotate part of the
    field into quadrature, whose power the diode adds (a coherent receiver, as K's, would read
    ``Re(E)`` alone). Then the device's shot + TIA noise on the intensity (variance linear in
    it, in units of the calibrated full scale) and its ADC (``adc_bits``).

    Priced: the device's cost of the ``m x r`` mesh as it prices K (its receivers included: a
    balanced pair per output where one diode would do, so the detection is priced high).
    """

    name = "intensity"
    description = "square-law photodetection of a random mesh's outputs: |W z|^2 (quadratic features)"
    nominal_tolerance = NOMINAL_TOLERANCE

    def f(self, a: torch.Tensor) -> torch.Tensor:
        return a.square()

    def onnx_f(self, g, a: str) -> str:
        return g.op("Mul", [a, a], "intensity_features")

    def layer(self) -> ProjectionLiftLayer:
        return _PhotonicFieldLayer(self)

    def periphery(self, a: torch.Tensor, layer: ProjectionLiftLayer) -> torch.Tensor:
        """``a``: the output field, complex (the layer's) or real; the diode's intensity ``|a|^2``."""
        intensity = a.real.square() + a.imag.square() if a.is_complex() else a.square()
        full = intensity.amax(1, keepdim=True)  # the receivers' range: each vector's brightest output
        return _photonic_receiver(layer, intensity, full)


class PhotonicCosine(ProjectionLift):
    """Mach-Zehnder modulators driven by a random mesh's outputs: ``phi_j(z) = cos(w_j . z + u_j)``.

    Physics: a push-pull MZM's field transmission is ``cos(dphi / 2)`` with ``dphi = pi V / V_pi``
    (Reed et al., "Silicon optical modulators", Nature Photonics 4, 2010), and a detected mesh
    output can drive it directly, the electro-optic activation of Williamson et al.,
    "Reprogrammable electro-optic nonlinear activation functions for optical neural networks",
    IEEE JSTQE 26(1), 2020. Driving modulator ``j`` with ``w_j . z`` on a static bias phase
    ``u_j`` computes a random Fourier feature of a Gaussian kernel (Rahimi & Recht, NIPS 2007):
    ``W`` and ``u`` are the ``rff`` dictionary's draw (the pipeline passes it), seeded, not trained.

    Simulated: the mesh as the device models it, the drive quantised by the modulators' DAC
    (``dac_bits``, per-vector full scale as the device's input DACs), the bias phase quantised
    by the phase DACs (``phase_bits`` over ``[0, 2 pi)``) and drawn with ``phase_noise_rad`` per
    instance, then the output field read by the device's receivers (shot + TIA noise,
    ``detector_noise``, ``adc_bits``).

    Priced: the device's cost of the mesh, plus per feature one modulator with its drive DAC,
    one detector with its TIA and ADC (the device's per-unit figures), the laser power of one
    more waveguide, and the bias phase held by a heater (thermo-optic shifters) and its static
    DAC; one more clock period of latency.
    """

    name = "cosine"
    description = "MZM cosine transfer driven by a random mesh's outputs: cos(W z + u) (random Fourier features)"
    nominal_tolerance = NOMINAL_TOLERANCE
    uses_offset = True

    def f(self, a: torch.Tensor) -> torch.Tensor:
        return torch.cos(a + self.offsets_.to(a.dtype))

    def onnx_f(self, g, a: str) -> str:
        return g.op("Cos", [g.op("Add", [a, g.const("cosine_offsets", self.offsets_.numpy())])], "cosine_features")

    def layer(self) -> ProjectionLiftLayer:
        return _PhotonicProjectionLayer(self)

    def bias_phases(self, layer: ProjectionLiftLayer, like: torch.Tensor) -> torch.Tensor:
        """The programmed bias phases: quantised to ``phase_bits`` over ``[0, 2 pi)``, plus the
        device's phase noise (per instance; none nominal)."""
        cfg = self.device.config
        step = 2 * math.pi / 2**cfg.phase_bits
        u = torch.round(self.offsets_.to(like.dtype) / step) * step
        return u + cfg.phase_noise_rad * layer.noise((u.shape[0],), STREAM_BIAS, like)

    def periphery(self, a: torch.Tensor, layer: ProjectionLiftLayer) -> torch.Tensor:
        cfg = self.device.config
        amax = a.abs().amax(1, keepdim=True).clamp_min(1e-30)
        drive = quantize_symmetric(a, amax, cfg.dac_bits)
        field_out = torch.cos(drive + self.bias_phases(layer, a))
        return _photonic_receiver(layer, field_out, torch.ones_like(amax))

    def conversion_keys(self) -> tuple[str, ...]:
        return (*super().conversion_keys(), "eo_dac_pj", "eo_modulator_pj", "eo_detector_pj", "eo_adc_pj")

    def extra_cost(self, rank: int):
        ph = _figures(self)
        cfg = self.device.config
        m = self.n_outputs(rank)
        f = cfg.clock_ghz
        dac_pj = ph.DAC_MW_8BIT / ph.DAC_GSPS * (2**cfg.dac_bits / cfg.dac_bits) / (2**8 / 8)
        adc_pj = ph.ADC_MW_8BIT / ph.ADC_GSPS * cfg.adc_bits / 8
        waveguide_mw = 10 ** (ph.optical_link(cfg)["waveguide_dbm"] / 10)
        parts = {
            "eo_dac_pj": m * dac_pj * cfg.dac_energy_scale,
            "eo_modulator_pj": m * ph.MODULATOR_PJ * cfg.dac_bits / 8 * cfg.modulator_energy_scale,
            "eo_detector_pj": m * (ph.PHOTODETECTOR_MW + ph.TIA_MW) / f * cfg.detector_energy_scale,
            "eo_adc_pj": m * adc_pj * cfg.adc_energy_scale,
            "eo_laser_static_mw": m * waveguide_mw / ph.LASER_WALL_PLUG_EFF * cfg.laser_energy_scale,
            # a bias uniform in [0, 2 pi) holds on average one p_pi (MEAN_HOLD_EXTERNAL)
            "eo_bias_heater_static_mw": (m * cfg.heater_p_pi_mw * ph.MEAN_HOLD_EXTERNAL * cfg.heater_energy_scale
                                         if cfg.phase_shifter == "thermo_optic" else 0.0),
            "eo_bias_dac_static_mw": m * ph.PHASE_DAC_STATIC_MW * cfg.phase_dac_energy_scale,
        }
        areas = {
            "eo_modulator": m * ph.MODULATOR_AREA_UM2 * cfg.modulator_area_scale,
            "eo_dac": m * ph.DAC_AREA_UM2 * cfg.dac_area_scale,
            "eo_detector": m * ph.PHOTODETECTOR_AREA_UM2 * cfg.detector_area_scale,
            "eo_adc": m * (ph.TIA_AREA_UM2 + ph.ADC_AREA_UM2) * cfg.adc_area_scale,
            "eo_bias_dac": m * ph.PHASE_DAC_AREA_UM2 * cfg.phase_dac_area_scale,
        }
        return parts, areas, 1.0 / f  # the modulators and receivers take one more sample period


# --------------------------------------------------------------------------- analog crossbar
class CrossbarReLU(ProjectionLift):
    """The crossbar's column periphery rectifies: ``phi_j(z) = max(w_j . z, 0)``.

    Physics: PRIME (Chi et al., "PRIME: a novel processing-in-memory architecture for neural
    network computation in ReRAM-based main memory", ISCA 2016) computes ReLU in the crossbar
    subarray's output periphery, after the sense amplifiers, by the sign of the converted
    column output, so a layer's activation never leaves the array's periphery. With a seeded
    Gaussian ``W`` programmed in the crossbar, ``max(W z, 0)`` are random features of the
    first-order arc-cosine kernel (Cho & Saul, "Kernel methods for deep learning", NIPS 2009).

    Simulated: the crossbar layer as the device models it for K (programming noise, drift, read
    noise, IR drop, stuck cells, DACs and ADCs of its config), then the rectifier on the ADC's
    output codes (exact: a code's sign bit selects it or zero).

    Priced: the device's cost of the ``m x r`` crossbar, plus one 8-bit compare-and-select per
    column (Horowitz's 45 nm 8-bit add, ISSCC 2014, for the comparator; its area likewise).
    """

    name = "relu"
    description = "ReLU in the crossbar's column periphery after the ADC (PRIME, ISCA 2016): max(W z, 0)"
    nominal_tolerance = NOMINAL_TOLERANCE

    @classmethod
    def search_space(cls) -> dict[str, SearchSpec]:
        # a rectifier of W z is scale-free (the standardisation removes the width): only m varies
        return {"features": IntRange(64, 1024, log=True)}

    def f(self, a: torch.Tensor) -> torch.Tensor:
        return a.clamp_min(0.0)

    def onnx_f(self, g, a: str) -> str:
        return g.op("Relu", [a], "relu_features")

    def periphery(self, a: torch.Tensor, layer: ProjectionLiftLayer) -> torch.Tensor:
        return a.clamp_min(0.0)

    def extra_cost(self, rank: int):
        m = self.n_outputs(rank)
        return ({"relu_pj": m * DATAPATHS["int8"].add_pj}, {"relu": m * DATAPATHS["int8"].add_um2}, 0.0)


# --------------------------------------------------------------------------- FPGA
LUT_FUNCTIONS = ("cos", "tanh", "square")
#: Bits of a Xilinx RAMB18 (UG473, 7 Series FPGAs Memory Resources), the table's home when it
#: exceeds a LUT6's six address bits.
BRAM18_BITS = 18 * 1024
#: A RAMB18's read latency with its output register, cycles (UG473: DO_REG = 1).
BRAM_READ_CYCLES = 2
#: A LUT6 stores one output bit of any function of six input bits (UG474, 7 Series CLB guide).
LUT6_INPUTS = 6


@dataclass(frozen=True)
class LookUpParams(ProjectionParams):
    """Parameters of the FPGA's look-up-table lift."""

    function: str = field(default="cos", metadata={"doc": "the tabulated function: cos (of W z + u), tanh or square (of W z)"})
    lut_bits: int = field(default=10, metadata={"doc": "address bits of the table (2^lut_bits entries of output_bits)"})

    def validate(self) -> None:
        super().validate()
        check_choice("function", self.function, LUT_FUNCTIONS)
        check_range("lut_bits", self.lut_bits, 2, 16, integer=True)


class FPGALookUp(ProjectionLift):
    """A look-up table of the MVAU's fixed-point outputs: ``cos(W z + u)``, ``tanh(W z)`` or ``(W z)^2``.

    Physics: a k-input LUT (or a block RAM addressed by k bits) evaluates *any* function of k
    bits in one read (Xilinx UG474: a LUT6 is a 64-bit ROM; UG473: a RAMB18 a 2^10 x 18 one).
    ``cos`` is the phase-to-amplitude table of direct digital synthesis (Vankka, "Methods of
    mapping from phase to sine amplitude in direct digital synthesis", IEEE TUFFC 44(2), 1997):
    ``w . z + u`` in units of ``2 pi / 2^k`` wraps modulo the table as a two's-complement phase
    accumulator does; ``tanh`` and ``square`` tabulate ``W z`` over ``[-R, R)`` with ``R`` the
    power of two above its largest training value (the MVAU's own power-of-two scales).

    Simulated: the MVAU as the device models it (fixed-point weights, inputs and outputs), the
    offset added at the output's precision, the table's address rounded to ``lut_bits`` and its
    value rounded to ``output_bits``. An FPGA has no noise: every instance is the nominal one.

    Priced: the device's FINN cost of the ``m x r`` MVAU without a second charge of the part's
    static power (one part holds both), plus ``ceil(PE / 2)`` dual-port copies of the table (one
    lookup per PE per cycle) in LUT6s or RAMB18s, one read per feature (BRAM at the device's
    per-bit read energy, LUT logic at the FPGA's soft-logic gap), the offsets' adds, and
    ``ceil(m / PE) + 2`` cycles of latency.
    """

    name = "lut"
    description = "LUT/BRAM-evaluated elementwise function of the MVAU's fixed-point W z: cos, tanh or square"
    nominal_tolerance = NOMINAL_TOLERANCE
    Params = LookUpParams

    @classmethod
    def search_space(cls) -> dict[str, SearchSpec]:
        return {"features": IntRange(64, 1024, log=True), "bandwidth": FloatRange(0.5, 2.0, log=True),
                "function": Choice(("cos", "tanh", "square"))}

    def calibrate(self, z: torch.Tensor) -> None:
        """The table's range ``R`` for tanh and square: the power of two above max ``|W z|``."""
        top = float(self.projected(z).abs().max()) if len(z) else 1.0
        self.range_ = 2.0 ** math.ceil(math.log2(max(top, 1e-6)))

    def f(self, a: torch.Tensor) -> torch.Tensor:
        fn = self.config.function
        if fn == "cos":
            return torch.cos(a + self.offsets_.to(a.dtype))
        return torch.tanh(a) if fn == "tanh" else a.square()

    def onnx_f(self, g, a: str) -> str:
        fn = self.config.function
        if fn == "cos":
            return g.op("Cos", [g.op("Add", [a, g.const("lut_offsets", self.offsets_.numpy())])], "lut_features")
        return g.op("Tanh", [a], "lut_features") if fn == "tanh" else g.op("Mul", [a, a], "lut_features")

    def periphery(self, a: torch.Tensor, layer: ProjectionLiftLayer) -> torch.Tensor:
        cfg, k = self.device.config, self.config.lut_bits
        fn = self.config.function
        if fn == "cos":
            step = 2 * math.pi / 2**k
            phase = torch.remainder(torch.round((a + self.offsets_.to(a.dtype)) / step), 2**k) * step
            value, top = torch.cos(phase), 1.0
        else:
            step = 2 * self.range_ / 2**k
            addr = torch.clamp(torch.round(a / step), -(2 ** (k - 1)), 2 ** (k - 1) - 1) * step
            value, top = (torch.tanh(addr), 1.0) if fn == "tanh" else (addr.square(), self.range_**2)
        return quantize_symmetric(value, top, cfg.output_bits)

    def table(self) -> dict[str, int]:
        """``{copies, lut, bram_18k}``: the table's resources (``ceil(PE / 2)`` dual-port copies)."""
        cfg, k = self.device.config, self.config.lut_bits
        copies = max(1, math.ceil(cfg.pe / 2))
        if k <= LUT6_INPUTS:
            return {"copies": copies, "lut": copies * cfg.output_bits * 2, "bram_18k": 0}  # 2 ports: 2 LUT6 per bit
        return {"copies": copies, "lut": 0, "bram_18k": copies * math.ceil(2**k * cfg.output_bits / BRAM18_BITS)}

    def feasibility(self, rank: int) -> list[str]:
        """The projection's MVAU alone (the device's check), then the MVAU and its tables
        together against the part (:meth:`~codesign.devices.base.Device.shared_resources`). K's
        MVAU shares the same part: the whole inference's cost adds this lift's counts to K's."""
        reasons = super().feasibility(rank)
        if reasons:
            return reasons
        n_in, n_out = self.projection_size(rank)
        device = self._need_device()
        shared = device.shared_resources({f"the {n_out}x{n_in} MVAU": device.resources(n_in, n_out),
                                          "its look-up tables": self.table()})
        return shared_budget_reasons(shared, skip_single=False)

    def cost(self, rank: int) -> dict[str, float]:
        """The MVAU's and the tables' price; ``lut`` and ``bram_18k`` count both (the tables'
        share in ``table_lut`` and ``table_bram_18k``), so that the part's budget is checked on
        the lift and K together."""
        base = super().cost(rank)
        held = float(base.pop("fpga_static_mw", 0.0))  # the same part holds the MVAU of K: charged once there
        base["static_power_mw"] = max(0.0, float(base.get("static_power_mw", 0.0)) - held)
        t = self.table()
        base["table_lut"], base["table_bram_18k"] = float(t["lut"]), float(t["bram_18k"])
        base["lut"] = float(base.get("lut", 0.0)) + t["lut"]
        base["bram_18k"] = float(base.get("bram_18k", 0.0)) + t["bram_18k"]
        return base

    def extra_cost(self, rank: int):
        fp = _figures(self)
        cfg = self.device.config
        m = self.n_outputs(rank)
        t = self.table()
        if t["bram_18k"]:
            read_pj = cfg.output_bits * fp.BRAM_PJ_PER_BIT * cfg.bram_energy_scale
            area = t["bram_18k"] * fp.BRAM18_BITS * fp.SRAM_BITCELL_UM2 * cfg.bram_area_scale
        else:  # LUT6 logic: a 64-bit ROM per output bit, at the soft-logic energy gap
            read_pj = cfg.output_bits * fp.ADD_32_PJ / 32 * fp.FPGA_ENERGY_GAP * cfg.mac_energy_scale
            area = t["lut"] * fp.ADD_32_UM2 / 32 * fp.FPGA_AREA_GAP * cfg.mac_area_scale
        add_pj = (m * fp.ADD_32_PJ * cfg.output_bits / 32 * fp.FPGA_ENERGY_GAP * cfg.mac_energy_scale
                  if self.config.function == "cos" else 0.0)
        cycles = math.ceil(m / cfg.pe) + BRAM_READ_CYCLES
        parts = {"lut_read_pj": m * read_pj, "lut_offset_pj": add_pj}
        return parts, {"lut_table": area}, cycles * 1e3 / cfg.clock_mhz

    def state_dict(self) -> dict:
        return {**super().state_dict(), "range_": self.range_}

    def load_state_dict(self, state) -> None:
        super().load_state_dict(state)
        self.range_ = float(state["range_"])


def photonic_lifts() -> dict[str, type[ProjectionLift]]:
    """The photonic mesh's primitives."""
    return {"intensity": PhotonicIntensity, "cosine": PhotonicCosine}


def crossbar_lifts() -> dict[str, type[ProjectionLift]]:
    """The analog crossbar's primitives."""
    return {"relu": CrossbarReLU}


def fpga_lifts() -> dict[str, type[ProjectionLift]]:
    """The FPGA's primitives."""
    return {"lut": FPGALookUp}


__all__ = ["CrossbarReLU", "FPGALookUp", "LUT_FUNCTIONS", "LookUpParams", "PhotonicCosine", "PhotonicIntensity",
           "crossbar_lifts", "fpga_lifts", "photonic_lifts"]
