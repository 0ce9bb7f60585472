"""Coherent photonic MZI-mesh device: K tiled into ``U diag(s) V^T`` blocks on Clements meshes.

Mapping (Shen et al., Nat. Photonics 11, 441 (2017); torchonn's ``MZIBlockLinear``): K is cut
into ``k x k`` tiles (edge tiles zero-padded); each tile's SVD ``U diag(s) V^T`` is realised by a
``k``-mode Clements mesh for ``V^T``, a column of ``k`` attenuators for ``s`` and a mesh for ``U``.
The trainable parameters are the physical ones: every mesh phase and the singular values.
A per-layer scale ``max|s|`` is kept digitally (attenuators can only attenuate).

Signal path per inference: per-vector digital scaling of ``x`` into ``[-1, 1]`` and an input
DAC driving the modulators -> meshes -> coherent (homodyne) detection of the real part ->
detector noise -> output ADC -> digital rescale. By default the photocurrents of the tiles in one
block row are summed in analog before a single ADC per output (``analog_accumulation``);
otherwise each tile output is converted and the partial sums are added digitally.

Cost constants come from the Lightening-Transformer simulator (Zhu et al., HPCA 2024,
github.com/zhuhanqing/Lightening-Transformer, ``hardware_simulator/params/device_params``),
whose MZI baseline uses the same Clements ``U Sigma V`` structure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from codesign.errors import check_range

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
from .clements import decompose, mesh_layout, rebuild

# --- published constants (Lightening-Transformer simulator, default.yaml / ADC.py / DAC.py) ---
MZI_AREA_UM2 = 180.0 * 100.0  # MZI footprint incl. couplers and phase shifter, um x um
MODULATOR_AREA_UM2 = 260.0 * 20.0  # MZI modulator (inputs and Sigma attenuators)
MODULATOR_IL_DB = 1.2  # insertion loss of the input modulator
MODULATOR_PJ = 0.450  # 450 fJ per modulated symbol at 8 bit; LT scales it by in_bit / 8
PHOTODETECTOR_MW = 1.1  # per photodetector
PHOTODETECTOR_AREA_UM2 = 4.0 * 10.0
DETECTOR_SENSITIVITY_DBM = -25.0
TIA_MW = 3.0
TIA_AREA_UM2 = 50.0
LASER_WALL_PLUG_EFF = 0.2
ADC_MW_8BIT, ADC_GSPS, ADC_AREA_UM2 = 14.8, 10.0, 2850.0  # 8-bit SAR, power ~ bits x rate
DAC_MW_8BIT, DAC_GSPS, DAC_AREA_UM2 = 50.0, 14.0, 11000.0  # 8-bit, power ~ 2^b / b x rate
# --- other constants ---
INT32_ADD_PJ = 0.1  # Horowitz, ISSCC 2014, 45 nm: digital partial-sum accumulation
GROUP_INDEX = 4.2  # silicon wire waveguide group index (typical SOI value)
C_UM_PER_NS = 299_792.458  # speed of light


@dataclass(frozen=True)
class PhotonicMZIConfig(DeviceConfig):
    """Configuration of :class:`PhotonicMZIDevice` (defaults: an 8-bit MZI-mesh accelerator)."""

    block_size: int = field(
        default=12,
        metadata={"doc": "k: K is cut into k x k tiles, each two k-mode meshes (LT cores: 12)"},
    )
    phase_bits: int = field(
        default=8, metadata={"doc": "phase-shifter DAC resolution over [0, 2 pi), bits"}
    )
    phase_noise_rad: float = field(
        default=0.01,
        metadata={"doc": "std of the error on every programmed phase, rad (thermal crosstalk)"},
    )
    bs_error: float = field(
        default=0.005,
        metadata={"doc": "std of each coupler's power splitting ratio error (0.01 = 50+-1 %)"},
    )
    insertion_loss_db: float = field(
        default=0.99, metadata={"doc": "insertion loss per MZI, dB (LT simulator: 0.99 dB)"}
    )
    dac_bits: int = field(default=8, metadata={"doc": "input DAC / modulator resolution, bits"})
    adc_bits: int = field(default=8, metadata={"doc": "output ADC resolution, bits"})
    detector_noise: float = field(
        default=0.001,
        metadata={"doc": "std of receiver noise relative to the ADC full scale"},
    )
    analog_accumulation: bool = field(
        default=True,
        metadata={"doc": "sum tile photocurrents of a block row before one ADC per output"},
    )
    clock_ghz: float = field(
        default=5.0, metadata={"doc": "sample rate of DACs/ADCs, GHz (LT: 5 GHz; ADC max 10)"}
    )

    def validate(self) -> None:
        """Check every field; raise ``ConfigError`` naming the field and its allowed range."""
        check_range("block_size", self.block_size, 2, 128, integer=True)
        for name in ("phase_bits", "dac_bits", "adc_bits"):
            check_range(name, getattr(self, name), 1, 32, integer=True)
        check_range("phase_noise_rad", self.phase_noise_rad, 0.0, math.pi)
        check_range("bs_error", self.bs_error, 0.0, 0.5)
        check_range("insertion_loss_db", self.insertion_loss_db, 0.0, 10.0)
        check_range("detector_noise", self.detector_noise, 0.0, 1.0)
        check_range("clock_ghz", self.clock_ghz, 1e-3, ADC_GSPS)
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
        couplers; 101 the receiver (in ``forward``).

        Args:
            mode: ``Mode.TRAINING`` (fresh noise), ``Mode.INSTANCE`` (the drawn instance) or
                ``Mode.NOMINAL`` (quantized, noise-free); default: the layer's current mode.

        Returns:
            ``theta``, ``phi``, ``delta`` (after quantization and noise) and ``kappa1``,
            ``kappa2`` (coupling angles, ``pi/4`` is 50:50; None when couplers are ideal).
        """
        cfg = self.config
        mode = self.mode if mode is None else mode
        step = 2 * math.pi / 2**cfg.phase_bits
        out: dict[str, torch.Tensor | None] = {}
        for stream, name in enumerate(("theta", "phi", "delta")):
            p = getattr(self, name)
            p = ste(p, torch.round(p / step) * step)  # phase DAC, straight-through
            if cfg.phase_noise_rad > 0 and mode is not Mode.NOMINAL:
                p = p + cfg.phase_noise_rad * self.noise(p.shape, stream, p, mode)
            out[name] = p
        out["kappa1"] = out["kappa2"] = None
        if cfg.bs_error > 0 and mode is not Mode.NOMINAL:
            for stream, name in ((3, "kappa1"), (4, "kappa2")):
                z = self.noise(self.theta.shape, stream, self.theta, mode)
                ratio = (0.5 + cfg.bs_error * z).clamp(0.0, 1.0)  # cross-coupled power share
                out[name] = torch.asin(torch.sqrt(ratio))
        return out

    def transmission(self) -> float:
        """Amplitude transmission of the deepest path: ``10^(-IL * (2k+1) / 20)``.

        Every mode crosses ``k`` columns of each mesh plus the attenuator column; idle edge
        positions are assumed to carry loss-matched dummy sections (Clements et al.'s balanced
        loss), so the loss is a uniform attenuation that the laser power must compensate.
        """
        return 10 ** (-self.config.insertion_loss_db * optical_depth(self.k) / 20)

    def _normalized_tiles(self, mode: Mode) -> tuple[torch.Tensor, torch.Tensor]:
        """Optical tile matrices ``[T, k, k]`` (``|s| <= 1``, lossy) and the digital gain.

        ``tiles * gain`` is the end-to-end matrix: the gain restores the per-layer singular value
        scale and divides out the known optical transmission.
        """
        ph = self.realized_phases(mode)
        mats = rebuild(ph["theta"], ph["phi"], ph["delta"], ph["kappa1"], ph["kappa2"])
        u, vh = mats[: self.n_tiles], mats[self.n_tiles :]
        scale = self.sigma.detach().abs().amax().clamp_min(1e-30)
        att = (self.sigma / scale).to(u.dtype)
        tiles = torch.real((u * att[:, None, :]) @ vh)  # coherent detection reads Re(y)
        return tiles * self.transmission(), scale / self.transmission()

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
        codes, lsb, amax = dac(x, cfg.dac_bits)  # modulator drive = codes * lsb in [-1, 1]
        if cfg.analog_accumulation:
            # photocurrents summed across the block row
            ya = torch.nn.functional.linear(codes, self._assemble(tiles)) * lsb
        else:
            k, b = self.k, x.shape[0]
            xp = torch.nn.functional.pad(codes, (0, self.tile_cols * k - self.in_features))
            t = tiles.view(self.tile_rows, self.tile_cols, k, k)
            ya = torch.einsum("bcj,rcij->brci", xp.view(b, self.tile_cols, k), t) * lsb
        full_scale = self.adc_range(ya)
        if cfg.detector_noise > 0 and mode is not Mode.NOMINAL:
            # eval: re-seeded per call, so the output is a function of (x, seed)
            ya = ya + cfg.detector_noise * full_scale * self.noise(ya.shape, 101, ya, mode)
        yq = quantize_symmetric(ya, full_scale, cfg.adc_bits)
        if not cfg.analog_accumulation:  # digital partial-sum accumulation per block row
            yq = yq.sum(dim=2).reshape(x.shape[0], -1)[:, : self.out_features]
        # the digital gain undoes the per-vector input scale, the weight scale and the known,
        # uniform optical transmission (its cost is the extra laser power, see ``cost``)
        return yq * (amax * gain)


def optical_depth(k: int) -> int:
    """MZIs on the deepest path of one tile: ``k`` (V^T mesh) + 1 (attenuator) + ``k`` (U mesh)."""
    return 2 * mesh_layout(k).depth + 1


class PhotonicMZIDevice(Device):
    """Coherent MZI-mesh photonic accelerator (tiled SVD on Clements meshes)."""

    name = "photonic_mzi"
    Config = PhotonicMZIConfig
    description = (
        "coherent photonic MZI meshes: k x k tiles as U diag(s) V^T on Clements meshes, "
        "phase quantization/noise, coupler imbalance, insertion loss, DAC/ADC, detector noise"
    )

    def layer(self, in_features: int, out_features: int) -> PhotonicMZILayer:
        """A fresh layer of this configuration."""
        return PhotonicMZILayer(in_features, out_features, self.config)

    @classmethod
    def presets(cls) -> dict[str, Preset]:
        """The Lightening-Transformer MZI baseline (the defaults) and Shen et al.'s 2017 chip."""
        return preset_table(
            Preset(
                "lightening_transformer_mzi",
                {
                    "block_size": 12,  # LT photonic cores are 12 x 12 (Zhu et al., HPCA 2024)
                    "phase_bits": 8,  # LT's 8-bit baseline precision (in_bit = w_bit = 8)
                    "dac_bits": 8,  # LT default.yaml: 8-bit DACs
                    "adc_bits": 8,  # LT default.yaml: 8-bit ADCs
                    "insertion_loss_db": 0.99,  # LT device_params: MZI insertion loss 0.99 dB
                    "clock_ghz": 5.0,  # LT default.yaml: 5 GHz core clock
                },
                "H. Zhu et al., 'Lightening-Transformer: a dynamically-operated optically-"
                "interconnected photonic Transformer accelerator', HPCA 2024 (MZI baseline; "
                "github.com/zhuhanqing/Lightening-Transformer hardware_simulator)",
                "8-bit MZI-mesh accelerator, 12 x 12 Clements cores at 5 GHz (the defaults)",
            ),
            Preset(
                "shen2017",
                {
                    # 4 x 4 matrices on a programmable nanophotonic processor of 56 MZIs
                    "block_size": 4,
                    # phase-encoding noise sigma_Phi ~ 5e-3 rad (thermal crosstalk), as measured
                    "phase_noise_rad": 0.005,
                    # photodetection noise sigma_D ~ 0.1 % of the signal
                    "detector_noise": 0.001,
                },
                "Y. Shen et al., 'Deep learning with coherent nanophotonic circuits', "
                "Nat. Photonics 11, 441 (2017)",
                "the first coherent ONN chip: 4-mode Clements meshes, measured phase and detector noise",
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
        }

    def cost(self, in_features: int, out_features: int) -> dict[str, float]:
        """Component counts, losses, laser power, energy, latency and area of one MVM.

        All tiles are present at once (weight-stationary); one MVM takes one sample period.
        Phase shifters hold their state without dynamic energy (LT's static power is 0).
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
        depth = optical_depth(k)
        loss_db = cfg.insertion_loss_db * depth + MODULATOR_IL_DB
        # LT: P_laser[dBm] = sensitivity + loss + 10 log10(k) (split over k inputs), times
        # 2^bits so the smallest ADC level stays above the detector sensitivity.
        laser_dbm = DETECTOR_SENSITIVITY_DBM + loss_db + 10 * math.log10(k)
        laser_mw = n_tiles * 10 ** (laser_dbm / 10) / LASER_WALL_PLUG_EFF * 2**cfg.adc_bits
        n_dac = rows * in_features  # each block row gets its own copy of the input vector
        n_adc = out_features * (1 if cfg.analog_accumulation else cols)
        n_pd = 2 * cols * out_features  # balanced detection
        dac_pj = DAC_MW_8BIT / DAC_GSPS * (2**cfg.dac_bits / cfg.dac_bits) / (2**8 / 8)
        adc_pj = ADC_MW_8BIT / ADC_GSPS * cfg.adc_bits / 8
        energy = {
            "dac_pj": n_dac * dac_pj,
            "modulator_pj": n_dac * MODULATOR_PJ * cfg.dac_bits / 8,
            "laser_pj": laser_mw / f,
            "detector_pj": (n_pd * PHOTODETECTOR_MW + n_adc * TIA_MW) / f,
            "adc_pj": n_adc * adc_pj,
            "digital_pj": 0.0 if cfg.analog_accumulation else (cols - 1) * out_features * INT32_ADD_PJ,
        }
        acc_cycles = 0 if cfg.analog_accumulation else math.ceil(math.log2(cols)) if cols > 1 else 0
        propagation_ns = depth * 180.0 * GROUP_INDEX / C_UM_PER_NS  # 180 um long MZIs
        n_adc_units = rows * k if cfg.analog_accumulation else n_tiles * k
        area_um2 = (
            n_mzi * MZI_AREA_UM2
            + (n_attenuators + n_tiles * k) * MODULATOR_AREA_UM2  # Sigma + input modulators
            + n_tiles * k * 2 * PHOTODETECTOR_AREA_UM2
            + n_adc_units * (TIA_AREA_UM2 + ADC_AREA_UM2)
            + (n_tiles * k + n_phase_shifters) * DAC_AREA_UM2  # input + phase DACs (as LT)
        )
        out = {
            "energy_pj": sum(energy.values()),
            "latency_ns": (1 + acc_cycles) / f + propagation_ns,
            "area_mm2": area_um2 * 1e-6,
            "n_tiles": float(n_tiles),
            "n_mzi": float(n_mzi),
            "n_phase_shifters": float(n_phase_shifters),
            "n_attenuators": float(n_attenuators),
            "optical_depth": float(depth),
            "total_insertion_loss_db": loss_db,
            "laser_power_mw": laser_mw,
            "n_dac_conversions": float(n_dac),
            "n_adc_conversions": float(n_adc),
        }
        out.update(energy)
        return out
