"""Example codesign device plugin: a resistive crossbar with stuck-at faults.

A minimal third-party device, installed on its own and discovered through the
``codesign.devices`` entry point declared in this package's ``pyproject.toml``. Weights are
differential conductance pairs ``G+ - G-`` with ``2**conductance_bits`` levels in ``[0, g_max]``;
a fraction ``stuck_fraction`` of the devices is stuck at ``g_max`` (stuck-at-1, share
``stuck_on_ratio``) or at 0 (stuck-at-0), whatever value was programmed; stuck cells are a
common defect of fabricated RRAM arrays.

Faults are fixed per hardware instance (``draw_instance(seed)``) and drawn fresh at every
training step, so training learns weights that tolerate any fault pattern. The base
``DeviceLayer`` keeps the mode and the seed; this layer only fills the ``_draw`` / ``_clear``
hooks that fix and free the fault map of one chip. Stuck cells do not drift: the read time
(``layer.t_inference_s``) does not matter here.

It also shows how a plugin adds its own export format (``codesign export``): the device sets
``export_format`` and implements ``export_layer`` / ``load_layer_export``, writing the programmed
conductance levels and, for a drawn chip (``codesign export --instance SEED``), its fault map
(``stuck_crossbar.json`` + ``stuck_crossbar.npz``) with the helpers of
:mod:`codesign.devices.export_io`. A fault map belongs to one chip: the loaded layer holds it as
that chip, and drawing any instance afterwards simulates that seed's faults, never the file's.

Check it with the contract the built-in devices pass::

    from codesign.devices.testing import check_device
    check_device(StuckCrossbarDevice)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from codesign.errors import ConfigError, check_range
from codesign.devices.base import (
    CalibratedRange,
    Device,
    DeviceConfig,
    DeviceLayer,
    FloatRange,
    IntRange,
    Mode,
    Preset,
    SearchSpec,
    dac,
    instance_generator,
    preset_table,
    quantize_symmetric,
    ste,
)
from codesign.devices.export_io import (
    adc_value,
    check_section,
    layer_section,
    read_npz,
    saved_layer,
    write_json,
    write_npz,
)

# ISAAC (Shafiee et al., ISCA 2016): 0.3 mW x 100 ns per 128x128 array read, 1.67 pJ per
# 8-bit ADC conversion, 0.4167 pJ per 1-bit DAC drive.
CELL_READ_PJ = 0.3e-3 * 100e-9 * 1e12 / (128 * 128)
ADC_8BIT_PJ = 1.67
DAC_BIT_PJ = 0.41667


# The plugin's export format (``codesign export``): a JSON manifest and one NPZ of arrays.
EXPORT_FORMAT = "stuck-crossbar-faults/1"
EXPORT_JSON, EXPORT_NPZ = "stuck_crossbar.json", "stuck_crossbar.npz"
EXPORT_ARRAYS = {
    "level_plus_index": "[out, in] int64: G+ as a level 0..levels (G+ = level / levels * g_max)",
    "level_minus_index": "[out, in] int64: G- as a level 0..levels",
    "stuck_mask": "[2, out, in] bool, chip instance_seed only (export --instance): device (G+, G-) stuck",
    "stuck_at_gmax_mask": "[2, out, in] bool, chip instance_seed only: stuck at g_max (stuck-at-1; else at 0)",
}


@dataclass(frozen=True)
class StuckCrossbarConfig(DeviceConfig):
    """Configuration of :class:`StuckCrossbarDevice`."""

    stuck_fraction: float = field(
        default=0.02, metadata={"range": (0.0, 1.0), "doc": "fraction of devices stuck (0..1)"}
    )
    stuck_on_ratio: float = field(
        default=0.5, metadata={"range": (0.0, 1.0), "doc": "share of stuck devices stuck at g_max (rest at 0)"}
    )
    conductance_bits: int = field(default=4, metadata={"range": (1, 32), "doc": "levels per device = 2**bits"})
    dac_bits: int = field(default=8, metadata={"range": (1, 32), "doc": "input DAC resolution, bits"})
    adc_bits: int = field(default=8, metadata={"range": (1, 32), "doc": "output ADC resolution, bits"})
    read_time_ns: float = field(default=100.0, metadata={"range": (1e-3, 1e6), "doc": "read time per input bit, ns"})

    def validate(self) -> None:
        """Check every field; raise ``ConfigError`` naming the field and its allowed range."""
        check_range("stuck_fraction", self.stuck_fraction, 0.0, 1.0)
        check_range("stuck_on_ratio", self.stuck_on_ratio, 0.0, 1.0)
        for name in ("conductance_bits", "dac_bits", "adc_bits"):
            check_range(name, getattr(self, name), 1, 32, integer=True)
        check_range("read_time_ns", self.read_time_ns, 1e-3, 1e6)


class StuckCrossbarLayer(DeviceLayer):
    """``x @ K.T`` on one crossbar whose stuck devices ignore what is programmed."""

    def __init__(self, in_features: int, out_features: int, config: StuckCrossbarConfig) -> None:
        super().__init__(in_features, out_features, config)
        gen = torch.Generator().manual_seed(0)  # nn.Linear's init scale, no global RNG
        bound = 1.0 / math.sqrt(in_features)
        init = (torch.rand(out_features, in_features, generator=gen) * 2 - 1) * bound
        self.weight = torch.nn.Parameter(init)
        self.adc_range = CalibratedRange()
        self._faults: tuple[torch.Tensor, torch.Tensor] | None = None

    def load_matrix(self, matrix: torch.Tensor) -> None:
        """Program ``matrix`` (``[out, in]``)."""
        with torch.no_grad():
            self.weight.copy_(matrix.to(self.weight))
        self.adc_range.reset()

    def _draw_faults(self, gen: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (2, self.out_features, self.in_features)
        u = torch.rand(shape, generator=gen)
        v = torch.rand(shape, generator=gen)
        stuck = u < self.config.stuck_fraction
        value = (v < self.config.stuck_on_ratio).to(torch.float32)
        return stuck.to(self.weight.device), value.to(self.weight.device)

    def _draw(self, seed: int) -> None:
        """Hook of ``draw_instance``: fix the fault map of chip ``seed``."""
        self._faults = self._draw_faults(instance_generator(seed))

    def _clear(self) -> None:
        """Hook of ``clear_instance``: back to the fault-free nominal chip."""
        self._faults = None

    def fault_map(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``(stuck, at_gmax)`` boolean ``[2, out, in]`` maps of the drawn chip (None: no chip drawn)."""
        if self._faults is None:
            return None
        stuck, value = self._faults
        return stuck, stuck & (value > 0)

    def set_fault_map(self, stuck: torch.Tensor, at_gmax: torch.Tensor) -> None:
        """Replace the drawn chip's fault map, e.g. by one measured on a real chip (March test).

        Call after ``draw_instance(seed)``; ``stuck`` and ``at_gmax`` are boolean ``[2, out, in]``.
        """
        if self.instance_seed is None:
            raise ConfigError("set_fault_map replaces a drawn chip's faults: call draw_instance(seed) first")
        device = self.weight.device
        self._faults = (stuck.to(device, torch.bool), (stuck & at_gmax).to(device, torch.float32))

    def levels(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(level_plus, level_minus, scale)``: programmed level indices ``[out, in]`` and the scale."""
        with torch.no_grad():
            scale = self.weight.detach().abs().amax().clamp_min(1e-30)
            wn = self.weight.detach() / scale
            steps = 2**self.config.conductance_bits - 1
            plus = torch.round(torch.relu(wn) * steps).to(torch.int64)
            minus = torch.round(torch.relu(-wn) * steps).to(torch.int64)
        return plus.cpu(), minus.cpu(), scale.cpu()

    def conductances(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(g, scale)``: ``[2, out, in]`` conductances / g_max and the digital weight scale."""
        cfg = self.config
        scale = self.weight.detach().abs().amax().clamp_min(1e-30)
        wn = self.weight / scale
        g = torch.stack((torch.relu(wn), torch.relu(-wn)))
        levels = 2**cfg.conductance_bits - 1
        g = ste(g, torch.round(g * levels) / levels)
        # fresh faults at every training step; the drawn chip's in eval (None: nominal)
        faults = self._draw_faults(None) if self.mode is Mode.TRAINING else self._faults
        if faults is not None and cfg.stuck_fraction > 0:
            stuck, value = faults
            g = torch.where(stuck, value, g)  # no gradient reaches a stuck device
        return g, scale

    def effective_matrix(self) -> torch.Tensor:
        """The matrix of the current chip (the drawn instance, or fault-free), ``[out, in]``."""
        with torch.no_grad():
            g, scale = self.conductances()
            return (g[0] - g[1]) * scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """DAC, analog MVM, ADC, digital rescale."""
        cfg = self.config
        g, scale = self.conductances()
        codes, lsb, amax = dac(x, cfg.dac_bits)
        y = torch.nn.functional.linear(codes, g[0] - g[1]) * lsb
        y = quantize_symmetric(y, self.adc_range(y), cfg.adc_bits)
        return y * (amax * scale)


class StuckCrossbarDevice(Device):
    """A single-tile resistive crossbar with stuck-at-0 / stuck-at-g_max faults."""

    name = "stuck_crossbar"
    Config = StuckCrossbarConfig
    api_version = 3  # the device API it implements (codesign.devices.base.DEVICE_API_VERSION)
    description = "example plugin: resistive crossbar with seeded stuck-at faults"

    def layer(self, in_features: int, out_features: int) -> StuckCrossbarLayer:
        """A fresh layer of this configuration."""
        return StuckCrossbarLayer(in_features, out_features, self.config)

    #: Its calibrator (``codesign calibrate stuck_crossbar``): an import path, resolved on use.
    calibrator = "codesign_stuckat.calibration:StuckCalibrator"

    # ---------------------------------------------------------------- export (codesign export)
    #: The plugin's own export format, "name/version": a loader refuses any other.
    export_format = EXPORT_FORMAT

    def export_layer(self, layer: StuckCrossbarLayer, folder: Path) -> dict[str, Any]:
        """Write the programmed levels and, if a chip is drawn, its fault map into ``folder``.

        ``codesign export --instance SEED`` draws chip ``SEED`` before calling this; without a
        drawn chip there is no fault map to write (the levels only).
        """
        plus, minus, scale = layer.levels()
        arrays = {"level_plus_index": plus.numpy(), "level_minus_index": minus.numpy()}
        faults = layer.fault_map()
        if faults is not None:
            arrays["stuck_mask"] = faults[0].cpu().numpy()
            arrays["stuck_at_gmax_mask"] = faults[1].cpu().numpy()
        manifest = {
            "format": EXPORT_FORMAT,
            "version": 1,
            **layer_section(self, layer),  # device, config, sizes, dtype, read time
            "levels": 2**layer.config.conductance_bits - 1,
            "weight_scale_k_per_gmax": float(scale),  # K = (G+ - G-) / g_max * scale
            "adc_full_scale_gmax_units": adc_value(float(layer.adc_range.value)),
            "instance_seed": layer.instance_seed,  # the chip whose fault map is saved (None: none)
            "arrays": EXPORT_ARRAYS,
            "files": [EXPORT_JSON, EXPORT_NPZ],
        }
        write_npz(folder, EXPORT_NPZ, arrays)
        write_json(folder, EXPORT_JSON, manifest)
        return {"format": EXPORT_FORMAT, "files": [EXPORT_JSON, EXPORT_NPZ], "manifest": EXPORT_JSON}

    def load_layer_export(self, folder: Path, manifest: Mapping[str, Any]) -> StuckCrossbarLayer:
        """Rebuild the layer from the levels (no K); with a saved chip, that chip with the file's fault map.

        The file's map stands for the saved chip only: the layer is returned with chip
        ``instance_seed`` drawn and the map installed (so a map measured on the real chip can
        take the simulated one's place), and any later ``draw_instance`` (the saved seed
        included) draws that seed's simulated faults, never the file's.
        """
        folder = Path(folder)
        own = check_section(self, manifest, folder, EXPORT_JSON)  # format, version, files
        layer = saved_layer(self, own, folder / EXPORT_JSON)  # saved config, size, read time
        shape = (layer.out_features, layer.in_features)
        names = {"level_plus_index": shape, "level_minus_index": shape}
        seed = own.get("instance_seed")
        if seed is not None:
            names.update(stuck_mask=(2, *shape), stuck_at_gmax_mask=(2, *shape))
        arrays = read_npz(folder, EXPORT_NPZ, names)  # one-line ConfigError if damaged
        steps = own["levels"]
        diff = arrays["level_plus_index"].astype(np.float64) - arrays["level_minus_index"]
        with torch.no_grad():
            layer.weight.copy_(torch.from_numpy(diff / steps * own["weight_scale_k_per_gmax"]))
            full_scale = own["adc_full_scale_gmax_units"]
            layer.adc_range.value.fill_(float("nan") if full_scale is None else full_scale)
        if seed is not None:  # the saved chip, with the file's map (measured or simulated); later draws simulate
            layer.draw_instance(int(seed))
            layer.set_fault_map(torch.from_numpy(arrays["stuck_mask"]), torch.from_numpy(arrays["stuck_at_gmax_mask"]))
        return layer

    @classmethod
    def presets(cls) -> dict[str, Preset]:
        """The stuck-at fault rates measured on a 4 Mb HfO2 RRAM chip."""
        sa0, sa1 = 1.75, 9.04  # % of cells stuck at HRS (0) and at LRS (g_max) (Chen et al. 2015)
        return preset_table(
            Preset(
                "chen2015_hfo2",
                {
                    "stuck_fraction": (sa0 + sa1) / 100,  # 10.79 % stuck in all (Chen et al. 2015)
                    "stuck_on_ratio": sa1 / (sa0 + sa1),  # share stuck at g_max (Chen et al. 2015)
                },
                "C.-Y. Chen et al., 'RRAM defect modeling and failure analysis based on March test "
                "and a novel squeeze-search scheme', IEEE Trans. Computers 64(1), 180 (2015)",
                "stuck-at rates of a 4 Mb HfO2 RRAM test chip: 1.75 % stuck-at-0, 9.04 % stuck-at-1",
            ),
        )

    @classmethod
    def search_space(cls) -> dict[str, SearchSpec]:
        """What a search may vary: resolution, and how many faults a design must tolerate."""
        return {
            "conductance_bits": IntRange(2, 8),
            "adc_bits": IntRange(4, 10),
            "stuck_fraction": FloatRange(1e-3, 0.1, log=True),
        }

    def cost(self, in_features: int, out_features: int) -> dict[str, float]:
        """ISAAC-style energy, latency and area of one MVM on one crossbar."""
        cfg = self.config
        n_devices = 2 * in_features * out_features
        adc_pj = ADC_8BIT_PJ * 2.0 ** (cfg.adc_bits - 8)
        energy = (
            n_devices * CELL_READ_PJ * cfg.dac_bits
            + in_features * DAC_BIT_PJ * cfg.dac_bits
            + out_features * adc_pj
        )
        return {
            "energy_pj": energy,
            "latency_ns": cfg.dac_bits * cfg.read_time_ns,
            "area_mm2": (n_devices * 25.0 / (128 * 128) + out_features * 1200.0) * 1e-6,
            "n_devices": float(n_devices),
            "n_stuck_expected": n_devices * cfg.stuck_fraction,
        }
