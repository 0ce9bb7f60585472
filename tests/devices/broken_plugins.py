"""Broken variants of the example plugin (``experiments/example_plugin``), one defect each.

Installed at test time as a third-party package (``codesign-brokenplugins 0.2``, module
``codesign_broken_plugins``) by ``test_plugin_contract.py``. Each variant is the well-behaved
``stuck_crossbar`` device with one defect the issue found running silently:

* ``stuck_identical``: every chip is the same (``_draw`` ignores the seed), though it claims noise;
* ``stuck_negative_energy``: a negative energy at real sizes (more than 5000 weights);
* ``stuck_lax_config``: a physically impossible config is accepted (``stuck_fraction`` has no range);
* ``stuck_quiet_training``: no noise in training (faults only on drawn chips);
* ``stuck_api_v1``: written for device API v1 (the layer overrides ``draw_instance(seed)``);
* ``stuck_api_v2``: declares ``api_version = 2``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from codesign_stuckat import StuckCrossbarConfig, StuckCrossbarDevice, StuckCrossbarLayer

from codesign.devices.base import instance_generator
from codesign.errors import check_range


class IdenticalChipsLayer(StuckCrossbarLayer):
    def _draw(self, seed: int) -> None:
        self._faults = self._draw_faults(instance_generator(0))  # the defect: every seed draws chip 0


class IdenticalChips(StuckCrossbarDevice):
    name = "stuck_identical"

    def layer(self, in_features: int, out_features: int) -> StuckCrossbarLayer:
        return IdenticalChipsLayer(in_features, out_features, self.config)


class NegativeEnergy(StuckCrossbarDevice):
    name = "stuck_negative_energy"

    def cost(self, in_features: int, out_features: int) -> dict[str, float]:
        costs = super().cost(in_features, out_features)
        if in_features * out_features > 5000:  # the defect: a sign error in a large-array term
            costs = {k: -v if k.endswith("_pj") else v for k, v in costs.items()}
        return costs


@dataclass(frozen=True)
class LaxConfig(StuckCrossbarConfig):
    stuck_fraction: float = field(default=0.02, metadata={"doc": "fraction of devices stuck"})  # the defect: no range

    def validate(self) -> None:  # a finite number, but any: -0.5 or 3 "devices stuck" pass
        check_range("stuck_fraction", self.stuck_fraction)


class LaxConfigDevice(StuckCrossbarDevice):
    name = "stuck_lax_config"
    Config = LaxConfig


class QuietTrainingLayer(StuckCrossbarLayer):
    def _draw_faults(self, gen: torch.Generator | None):
        if gen is None:  # the defect: training draws no faults
            shape = (2, self.out_features, self.in_features)
            return torch.zeros(shape, dtype=torch.bool), torch.zeros(shape)
        return super()._draw_faults(gen)


class QuietTraining(StuckCrossbarDevice):
    name = "stuck_quiet_training"

    def layer(self, in_features: int, out_features: int) -> StuckCrossbarLayer:
        return QuietTrainingLayer(in_features, out_features, self.config)


class ApiV1Layer(StuckCrossbarLayer):
    def draw_instance(self, seed):  # device API v1: no read time
        super().draw_instance(seed)


class ApiV1(StuckCrossbarDevice):
    name = "stuck_api_v1"
    api_version = None  # v1 plugins declared nothing

    def layer(self, in_features: int, out_features: int) -> StuckCrossbarLayer:
        return ApiV1Layer(in_features, out_features, self.config)


class ApiV2(StuckCrossbarDevice):
    name = "stuck_api_v2"
    api_version = 2
