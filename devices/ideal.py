"""The zero-noise reference device: an exact float matrix product on a digital MAC array.

The layer computes ``x @ K.T`` exactly; only the cost model depends on the configured datapath.
Costs come from :mod:`codesign.devices.digital`: M. Horowitz's 45 nm per-operation energies and
areas ("Computing's energy problem (and what we can do about it)", ISSCC 2014), with every
weight read from an SRAM sized to the matrix at each inference (a digital array keeps no
weights in its MAC units), priced smoothly by capacity.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from codesign.errors import ConfigError, check_choice

from .base import (
    Device, DeviceConfig, DeviceLayer, Preset, SearchSpec, check_export_manifest, preset_table, read_export_arrays,
)
from .digital import DATAPATHS, digital_cost, matvec_ops


@dataclass(frozen=True)
class IdealConfig(DeviceConfig):
    """Configuration of :class:`IdealDevice`; only the cost model depends on it."""

    datapath: str = field(
        default="fp32",
        metadata={"doc": "MAC number format for the cost model: fp32, fp16, int32 or int8"},
    )
    clock_mhz: float = field(default=1000.0, metadata={"range": (1e-3, 1e5), "doc": "MAC array clock, MHz"})
    macs_per_cycle: int = field(
        default=64, metadata={"range": (1, 1 << 20), "doc": "parallel multiply-accumulate units in the array"}
    )

    def validate(self) -> None:
        """Choices; raise ``ConfigError`` naming the field (each numeric field's range is its
        metadata's, which ``DeviceConfig`` checks first)."""
        check_choice("datapath", self.datapath, DATAPATHS)


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
    api_version = 3  # the device API it implements (codesign.devices.base.DEVICE_API_VERSION)
    description = "exact float matrix product (zero-noise reference), digital MAC array cost"

    def layer(self, in_features: int, out_features: int) -> IdealLayer:
        """A fresh exact layer."""
        return IdealLayer(in_features, out_features)

    #: ``matrix.npz`` (the float32 matrix) and ``matrix.csv``.
    export_format = "ideal-matrix/1"

    def export_layer(self, layer: DeviceLayer, folder: Path) -> dict[str, Any]:
        """Write the layer's matrix: ``matrix.npz`` (``matrix``, float32 ``[out, in]``) and
        ``matrix.csv`` (the same values, one row per output, printed to float32 precision)."""
        matrix = layer.effective_matrix().numpy().astype(np.float32)
        np.savez(folder / "matrix.npz", matrix=matrix)
        np.savetxt(folder / "matrix.csv", matrix, fmt="%.9g", delimiter=",")
        return {"format": self.export_format, "files": ["matrix.npz", "matrix.csv"],
                "in_features": layer.in_features, "out_features": layer.out_features}

    def load_layer_export(self, folder: Path, manifest: Mapping[str, Any]) -> DeviceLayer:
        """Rebuild the layer from ``matrix.npz``."""
        check_export_manifest(manifest, self.export_format, folder)
        matrix = read_export_arrays(folder / "matrix.npz", ("matrix",))["matrix"]
        if matrix.ndim != 2 or matrix.dtype != np.float32:
            raise ConfigError(f"{folder / 'matrix.npz'}: matrix is {matrix.dtype} of shape {list(matrix.shape)}, "
                              "expected float32 [out, in]; re-export the student with `codesign export`")
        layer = self.layer(matrix.shape[1], matrix.shape[0])
        layer.load_matrix(torch.from_numpy(matrix))
        return layer.eval()

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
        weights, the input vector and the output vector, priced by their total footprint
        (:func:`~codesign.devices.digital.sram_access_pj`). Latency:
        ``ceil(MACs / macs_per_cycle)`` cycles. Area: the MAC units plus SRAM cells.
        """
        cfg = self.config
        out = digital_cost(matvec_ops(in_features, out_features), cfg.datapath, cfg.clock_mhz, cfg.macs_per_cycle)
        arithmetic = out.pop("arithmetic_pj")
        return {"energy_pj": out.pop("energy_pj"), "latency_ns": out.pop("latency_ns"),
                "area_mm2": out.pop("area_mm2"), "n_macs": float(in_features * out_features),
                "mac_pj": arithmetic, **out}
