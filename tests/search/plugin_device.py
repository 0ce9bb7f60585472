"""A third-party device plugin for the search tests, installed at test time (not part of codesign).

``brittle`` declares a search space wider than the part it models supports: its weights are
quantised to ``bits`` bits, the config accepts 1..8 but a layer of more than 5 bits cannot be
built, while ``search_space()`` offers 2..8. Trials that draw 6..8 bits fail when they build their
layer, which is how the tests see failed trials recorded while the rest of the search completes.
It passes the device contract (``check_device``, run at first use), which builds layers of the
default config only.

Device API v2: the layer is noise-free, so it needs no ``_draw`` hook; the base ``DeviceLayer``
keeps the mode, the instance seed and the read time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from codesign.errors import check_range
from codesign.devices.base import Device, DeviceConfig, DeviceLayer, IntRange, quantize_symmetric


@dataclass(frozen=True)
class BrittleConfig(DeviceConfig):
    """Config of :class:`BrittleDevice`."""

    bits: int = field(default=4, metadata={"range": (1, 8), "doc": "weight bits; this part builds layers of 1..5"})

    def validate(self) -> None:
        check_range("bits", self.bits, 1, 8, integer=True)


class BrittleLayer(DeviceLayer):
    """``x @ Q(K).T`` with K quantised per tensor to ``bits`` bits (every instance is nominal)."""

    def __init__(self, in_features: int, out_features: int, bits: int) -> None:
        super().__init__(in_features, out_features)
        self.bits = bits
        self.weight = torch.nn.Parameter(torch.zeros(out_features, in_features))

    def load_matrix(self, matrix: torch.Tensor) -> None:
        with torch.no_grad():
            self.weight.copy_(matrix)

    def effective_matrix(self) -> torch.Tensor:
        w = self.weight.detach()
        return quantize_symmetric(w, w.abs().max(), self.bits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = quantize_symmetric(self.weight, self.weight.detach().abs().max(), self.bits)
        return torch.nn.functional.linear(x, w)


class BrittleDevice(Device):
    """A quantised digital part whose declared search space is wider than what it accepts."""

    name = "brittle"
    Config = BrittleConfig
    api_version = 3
    description = "test plugin: k-bit weights, k <= 5 (search space offers 2..8)"

    def layer(self, in_features: int, out_features: int) -> BrittleLayer:
        check_range("bits", self.config.bits, 1, 5, integer=True)  # what the part supports
        return BrittleLayer(in_features, out_features, self.config.bits)

    @classmethod
    def search_space(cls):
        return {"bits": IntRange(2, 8)}

    def cost(self, in_features: int, out_features: int) -> dict[str, float]:
        macs = in_features * out_features
        return {
            "energy_pj": 0.05 * macs * self.config.bits,
            "latency_ns": float(out_features),
            "area_mm2": 1e-5 * macs * self.config.bits,
            "n_macs": float(macs),
        }


class HopelessDevice(BrittleDevice):
    """A plugin whose layer fails at every size but the contract's check size (37 inputs): it
    passes ``check_device`` and every trial of a search on it fails."""

    name = "hopeless"
    description = "test plugin: its layer raises on every call but at 37 inputs"

    def layer(self, in_features: int, out_features: int) -> BrittleLayer:
        layer = BrittleLayer(in_features, out_features, self.config.bits)
        if in_features == 37:  # codesign.devices.testing.IN
            return layer

        def forward(x):
            raise RuntimeError("this test device cannot compute anything")

        layer.forward = forward
        return layer

    @classmethod
    def search_space(cls):
        return {"bits": IntRange(2, 5)}
