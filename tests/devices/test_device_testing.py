"""codesign.devices.testing catches broken devices, names the problem, and the registry lists them."""

import pytest
import torch

from codesign.devices import registry
from codesign.devices.base import IntRange
from codesign.devices.ideal import IdealDevice, IdealLayer
from codesign.devices.testing import (
    CHECKS,
    DeviceContractError,
    check_device,
    check_search_space,
    parametrize_with_checks,
    static_checks,
)


class NoLatency(IdealDevice):
    """A cost model that forgot ``latency_ns``."""

    name = "no_latency"

    def cost(self, in_features, out_features):
        costs = super().cost(in_features, out_features)
        del costs["latency_ns"]
        return costs


class StraySearchKey(IdealDevice):
    """A search space offering a field the config does not have."""

    name = "stray_key"

    @classmethod
    def search_space(cls):
        return {"adc_bits": IntRange(4, 8)}


class OneColumnLayer(IdealLayer):
    def forward(self, x):
        return super().forward(x)[:, :1]  # [batch, 1]


class TransposedLayer(IdealLayer):
    def forward(self, x):
        return super().forward(x).T  # [out, batch]


class OneColumn(IdealDevice):
    name = "one_column"

    def layer(self, in_features, out_features):
        return OneColumnLayer(in_features, out_features)


class Transposed(IdealDevice):
    name = "transposed"

    def layer(self, in_features, out_features):
        return TransposedLayer(in_features, out_features)


class ForgetfulLayer(IdealLayer):
    """Training noise that no instance reproduces."""

    def forward(self, x):
        y = super().forward(x)
        return y + 0.1 * torch.randn_like(y) if self.training else y


class Forgetful(IdealDevice):
    name = "forgetful"

    def layer(self, in_features, out_features):
        return ForgetfulLayer(in_features, out_features)


class UnitlessCost(IdealDevice):
    name = "unitless"

    def cost(self, in_features, out_features):
        return {**super().cost(in_features, out_features), "laser_power": 1.0}


@pytest.mark.parametrize(
    "device, message",
    [
        (NoLatency, r"device 'no_latency' fails static_checks: cost lacks latency_ns"),
        (StraySearchKey, r"device 'stray_key' fails static_checks: search_space key 'adc_bits' is not a config field"),
        (OneColumn, r"device 'one_column' fails check_output_shape: forward returned shape \[16, 1\] in training; expected \[batch, out\] = \[16, 5\]"),
        (Transposed, r"device 'transposed' fails check_output_shape: forward returned shape \[5, 16\] in training"),
        (Forgetful, r"device 'forgetful' fails check_training_noise: training draws noise, but an instance equals the nominal device"),
        (UnitlessCost, r"device 'unitless' fails check_cost: cost key 'laser_power' names a quantity but no unit"),
    ],
)
def test_check_device_names_the_device_and_the_broken_check(device, message):
    with pytest.raises(DeviceContractError, match=message):
        check_device(device)
    assert issubclass(DeviceContractError, AssertionError)


def test_static_checks_pass_a_good_device_and_catch_a_bad_one():
    static_checks(IdealDevice)
    with pytest.raises(DeviceContractError, match="cost lacks latency_ns"):
        static_checks(NoLatency)
    with pytest.raises(DeviceContractError, match="not a codesign.devices.base.Device subclass"):
        static_checks(int)


def test_a_device_whose_search_space_the_config_refuses_fails_the_full_check():
    class TooWide(IdealDevice):
        name = "too_wide"

        @classmethod
        def search_space(cls):
            return {"macs_per_cycle": IntRange(1, 1 << 30)}

    static_checks(TooWide)  # the cheap part does not try values
    with pytest.raises(DeviceContractError, match=r"fails check_search_space: search_space offers macs_per_cycle=1073741824"):
        check_device(TooWide)


class _FakeEntryPoint:
    def __init__(self, name, obj):
        self.name, self.value, self._obj = name, f"tests:{obj.__name__}", obj

    def load(self):
        return self._obj


def test_registry_lists_a_contract_violator_as_failed_with_the_reason(monkeypatch):
    eps = {"ideal": _FakeEntryPoint("ideal", IdealDevice), "no_latency": _FakeEntryPoint("no_latency", NoLatency),
           "stray_key": _FakeEntryPoint("stray_key", StraySearchKey)}
    monkeypatch.setattr(registry.REGISTRY, "_eps", eps)
    monkeypatch.setattr(registry.REGISTRY, "loaded", {})
    monkeypatch.setattr(registry.REGISTRY, "broken", {})
    assert registry.list_devices() == ["ideal"]
    broken = registry.broken_devices()
    assert set(broken) == {"no_latency", "stray_key"}
    assert "cost lacks latency_ns" in broken["no_latency"]
    assert "search_space key 'adc_bits' is not a config field" in broken["stray_key"]
    with pytest.raises(Exception, match="unknown device 'no_latency' .*failed to load.*latency_ns"):
        registry.get_device_class("no_latency")


@parametrize_with_checks([IdealDevice])
def test_parametrize_with_checks_gives_one_test_per_check(device, check, request):
    assert request.node.callspec.id == f"ideal-{check.__name__.removeprefix('check_')}"
    check(device)


def test_every_check_is_run_by_check_device():
    assert len(CHECKS) == len(set(CHECKS)) >= 10
    check_device(IdealDevice(datapath="int8"))


def test_search_space_bounds_must_be_accepted_together():
    """Each bound alone is valid, but 8 bits per cell x 8 slices is a 64-bit weight the crossbar's
    config refuses: a search would fail such trials, so the contract refuses the space."""
    from codesign.devices.analog_crossbar import AnalogCrossbarDevice

    class Oversliced(AnalogCrossbarDevice):
        name = "oversliced"

        @classmethod
        def search_space(cls):
            return {"bits_per_cell": IntRange(1, 8), "weight_slices": IntRange(1, 8)}

    with pytest.raises(DeviceContractError, match="high bound together.*32-bit weight"):
        check_search_space(Oversliced())
    check_search_space(AnalogCrossbarDevice())  # the shipped space: 4 bits x 8 slices = 32
