"""The zero-noise reference device: an exact float matrix product on a digital MAC array.

The layer computes ``x @ K.T`` exactly; only the cost model depends on the configured datapath.
Costs use the 45 nm energy and area table of M. Horowitz, "Computing's energy problem (and what
we can do about it)", ISSCC 2014 (per operation: 8-bit int multiply 0.2 pJ / 282 um^2, 32-bit
int add 0.1 pJ / 137 um^2, 32-bit int multiply 3.1 pJ / 3495 um^2, 16-bit float add 0.4 pJ /
1360 um^2 and multiply 1.1 pJ / 1640 um^2, 32-bit float add 0.9 pJ / 4184 um^2 and multiply
3.7 pJ / 7700 um^2; a 64-bit SRAM read 10 pJ from 8 KB, 20 pJ from 32 KB, 100 pJ from 1 MB,
and 1.3-2.6 nJ from DRAM).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from codesign.errors import check_choice, check_range

from .base import Device, DeviceConfig, DeviceLayer, Preset, SearchSpec, preset_table

# datapath -> (word bits, multiply pJ, accumulate pJ, multiply um^2, accumulate um^2);
# integer datapaths accumulate in 32 bits, float ones in their own format (Horowitz 2014)
DATAPATHS: dict[str, tuple[int, float, float, float, float]] = {
    "fp32": (32, 3.7, 0.9, 7700.0, 4184.0),
    "fp16": (16, 1.1, 0.4, 1640.0, 1360.0),
    "int32": (32, 3.1, 0.1, 3495.0, 137.0),
    "int8": (8, 0.2, 0.1, 282.0, 137.0),
}
# 64-bit SRAM/DRAM word access energy by capacity (Horowitz 2014); DRAM: midpoint of 1.3-2.6 nJ
MEMORY_TIERS_PJ: tuple[tuple[float, float], ...] = (
    (8 * 1024, 10.0),
    (32 * 1024, 20.0),
    (1024 * 1024, 100.0),
    (math.inf, 1950.0),
)
SRAM_BITCELL_UM2 = 0.346  # 45 nm 6T SRAM cell (Mistry et al., IEDM 2007), periphery excluded


@dataclass(frozen=True)
class IdealConfig(DeviceConfig):
    """Configuration of :class:`IdealDevice`; only the cost model depends on it."""

    datapath: str = field(
        default="fp32",
        metadata={"doc": "MAC number format for the cost model: fp32, fp16, int32 or int8"},
    )
    clock_mhz: float = field(default=1000.0, metadata={"doc": "MAC array clock, MHz"})
    macs_per_cycle: int = field(
        default=64, metadata={"doc": "parallel multiply-accumulate units in the array"}
    )

    def validate(self) -> None:
        """Check every field; raise ``ConfigError`` naming the field and its allowed range."""
        check_choice("datapath", self.datapath, DATAPATHS)
        check_range("clock_mhz", self.clock_mhz, 1e-3, 1e5)
        check_range("macs_per_cycle", self.macs_per_cycle, 1, 1 << 20, integer=True)


class IdealLayer(DeviceLayer):
    """Exact ``x @ K.T``; ``weight`` is K itself. Every instance is the nominal device."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__(in_features, out_features)
        self.weight = torch.nn.Parameter(torch.zeros(out_features, in_features))
        gen = torch.Generator().manual_seed(0)  # nn.Linear's init scale, no global RNG
        bound = 1.0 / math.sqrt(in_features)
        with torch.no_grad():
            self.weight.uniform_(-bound, bound, generator=gen)

    def load_matrix(self, matrix: torch.Tensor) -> None:
        """Store ``matrix`` (``[out, in]``) as the weight."""
        with torch.no_grad():
            self.weight.copy_(matrix.to(self.weight))

    def effective_matrix(self) -> torch.Tensor:
        """The weight itself."""
        return self.weight.detach().clone()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x @ K.T``."""
        return torch.nn.functional.linear(x, self.weight)


class IdealDevice(Device):
    """Exact float matrix product; the cost of a digital MAC array (Horowitz 2014)."""

    name = "ideal"
    Config = IdealConfig
    description = "exact float matrix product (zero-noise reference), digital MAC array cost"

    def layer(self, in_features: int, out_features: int) -> IdealLayer:
        """A fresh exact layer."""
        return IdealLayer(in_features, out_features)

    @classmethod
    def search_space(cls) -> dict[str, SearchSpec]:
        """Nothing to co-design: the reference has no hardware constraints."""
        return {}

    @classmethod
    def presets(cls) -> dict[str, Preset]:
        """The fp32 and int8 datapaths of Horowitz's 45 nm energy table."""
        horowitz = (
            'M. Horowitz, "Computing\'s energy problem (and what we can do about it)", '
            "ISSCC 2014, 45 nm energy and area table"
        )
        return preset_table(
            Preset(
                "horowitz45_fp32",
                # fp32 multiply 3.7 pJ, add 0.9 pJ (Horowitz 2014)
                {"datapath": "fp32"},
                horowitz,
                "45 nm fp32 multiply-accumulate datapath",
            ),
            Preset(
                "horowitz45_int8",
                # 8-bit multiply 0.2 pJ, 32-bit accumulate 0.1 pJ (Horowitz 2014)
                {"datapath": "int8"},
                horowitz,
                "45 nm int8 multiply, int32 accumulate datapath",
            ),
        )

    def cost(self, in_features: int, out_features: int) -> dict[str, float]:
        """Energy, latency and area of one ``out x in`` matrix-vector product.

        Energy: one multiply and one accumulate per weight, plus 64-bit memory accesses for the
        weights, the input vector and the output vector, priced by the total footprint's tier.
        Latency: ``ceil(MACs / macs_per_cycle)`` cycles. Area: the MAC units plus SRAM cells.
        """
        cfg = self.config
        bits, mult_pj, add_pj, mult_um2, add_um2 = DATAPATHS[cfg.datapath]
        macs = in_features * out_features
        storage_bits = (macs + in_features + out_features) * bits
        words = math.ceil(storage_bits / 64)
        word_pj = next(pj for cap, pj in MEMORY_TIERS_PJ if storage_bits / 8 <= cap)
        cycles = math.ceil(macs / cfg.macs_per_cycle)
        mac_pj = macs * (mult_pj + add_pj)
        memory_pj = words * word_pj
        area_um2 = cfg.macs_per_cycle * (mult_um2 + add_um2) + storage_bits * SRAM_BITCELL_UM2
        return {
            "energy_pj": mac_pj + memory_pj,
            "latency_ns": cycles * 1e3 / cfg.clock_mhz,
            "area_mm2": area_um2 * 1e-6,
            "n_macs": float(macs),
            "cycles": float(cycles),
            "mac_pj": mac_pj,
            "memory_pj": memory_pj,
            "memory_words_64b": float(words),
            "storage_bits": float(storage_bits),
        }
