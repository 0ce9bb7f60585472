"""The device contract, shipped: run on any device the checks the built-ins pass.

In the spirit of scikit-learn's ``check_estimator`` and ``parametrize_with_checks``: a plugin
author checks a device in one call, and a failing check names the device and what broke::

    from codesign.devices.testing import check_device, parametrize_with_checks

    check_device(StuckCrossbarDevice)          # raises DeviceContractError on the first failure

    @parametrize_with_checks([StuckCrossbarDevice, IdealDevice(datapath="int8")])
    def test_contract(device, check):           # one pytest test per (device, check)
        check(device)

(For an installed device by name: ``check_device(get_device_class(name))``; this module does
not import the registry, which runs :func:`static_checks` on every device it loads.)

What is checked (each a function below, run in this order):

* ``check_static``: :func:`static_checks`, the cheap part the registry runs when it loads a device
  (a declared ``api_version`` older than :data:`~codesign.devices.base.DEVICE_API_VERSION`, or a
  layer with the v1 ``draw_instance(seed)``, is refused with what changed and how to port);
* ``check_output_shape``: ``[batch, out]`` in every mode, finite; ``effective_matrix`` ``[out, in]``;
* ``check_gradients``: training gradients reach every trainable parameter, finite and non-zero;
* ``check_training_noise``: a device whose instances differ from the nominal device draws fresh
  noise at every training call, and a device with training noise models it in its instances
  (derived from the outputs, no per-device tables);
* ``check_instances_deterministic``: the same seed gives the same output, read twice, redrawn,
  and after moving the read time away and back; the global RNG is left alone;
* ``check_seeds_differ``: where instances are noisy, two seeds give two chips;
* ``check_clear_instance``: ``clear_instance`` returns to the nominal device;
* ``check_inference_time``: ``draw_instance(seed, t_inference_s=...)`` and
  ``set_inference_time`` set ``t_inference_s`` and refuse negative or non-finite times;
* ``check_state_dict``: a trained layer reloads into a fresh layer and evaluates the same; a
  state saved before API v2 (no extra state) loads; a layer of another config refuses it;
* ``check_reprogramming``: ``load_matrix`` twice equals once with the second matrix;
* ``check_cost``: required keys, finite non-negative floats, units in the key names;
* ``check_search_space``: keys are config fields, specs are valid and the config accepts them
  at their bounds (as values and as ``--set`` strings);
* ``check_config_validation``: unknown fields and wrong types are refused with a ``ConfigError``
  naming the field; probes (negative, huge, infinite values) never crash with anything else;
* ``check_physical_ranges``: every int and float field declares its physical range in its
  metadata, and values just outside it are refused;
* ``check_presets``: every preset builds a valid config whose layer runs;
* ``check_export``: a device with an ``export_format`` rebuilds a layer from its own export
  (``export_layer`` / ``load_layer_export``): same nominal matrix, same seeded instance;
* ``check_calibrator``: a device that declares a calibrator (``Device.calibrator``) recovers,
  within the calibrator's ``tolerances``, the parameters of measurements its own model generates
  (default config and the calibrator's ``perturbed`` one), and its reader refuses a file without
  a required column and one with a NaN.
* ``check_lifts``: every nonlinear primitive the device declares (``Device.lifts()``, issue 30)
  passes :func:`~codesign.devices.lifts.lift_problem`, lifts ``[n, r]`` to ``[n, n_outputs(r)]``
  finite values in every mode, equals its exact math with the noise off (the nominal layer
  within the primitive's ``nominal_tolerance``, relative RMS), is deterministic for a seed
  (and leaves the global RNG alone), draws two chips from two seeds where it is noisy, returns
  to the nominal lift on ``clear_instance``, reloads its fitted state, and prices itself with
  the device's required cost keys (finite, >= 0) and conversion keys among its ``*_pj`` keys.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
import re
from typing import Any, Callable, Iterable, Sequence

import torch

from codesign.errors import ConfigError

from .base import (
    API_CHANGES,
    DEFAULT_T_INFERENCE_S,
    DEVICE_API_VERSION,
    REQUIRED_COST_KEYS,
    Choice,
    Device,
    DeviceConfig,
    DeviceLayer,
    FloatRange,
    IntRange,
    Mode,
    Preset,
    decode_device_spec,
    field_ranges,
)

#: Layer size the checks use: 37 inputs (not a multiple of common tile sizes), 5 outputs.
IN, OUT, BATCH = 37, 5, 16
#: Sizes for the cost checks: the check layer, the 861 features of a degree-2 student of rank 40,
#: an MNIST PCA projection on the device (784 pixels to rank 128), and a wide lift (20000 features).
COST_SIZES = ((IN, OUT), (861, 10), (784, 128), (20000, 10))
#: Words that name a physical quantity: a cost key containing one must end in a unit.
QUANTITY_WORDS = frozenset(
    {"energy", "power", "latency", "delay", "time", "area", "loss", "frequency", "clock"}
)
#: Unit suffixes a cost key may end in.
UNIT_SUFFIXES = (
    "_fj", "_pj", "_nj", "_uj", "_mj", "_j", "_uw", "_mw", "_w", "_ps", "_ns", "_us", "_ms",
    "_s", "_um2", "_mm2", "_db", "_dbm", "_hz", "_khz", "_mhz", "_ghz",
)


class DeviceContractError(AssertionError):
    """A device breaks the device contract; the message names the device and the check."""


DeviceLike = Device | type[Device]


def _resolve(device: DeviceLike) -> Device:
    """A device instance from a device or a device class (default config)."""
    if isinstance(device, Device):
        return device
    if isinstance(device, type) and issubclass(device, Device):
        return device()
    raise DeviceContractError(f"{device!r} is not a Device or a Device subclass")


def _label(device: DeviceLike) -> str:
    cls = device if isinstance(device, type) else type(device)
    return getattr(cls, "name", None) or cls.__name__


def _check(fn: Callable[[Device], None]) -> Callable[[DeviceLike], None]:
    """Make ``fn(device)`` a contract check: resolve the device, name device and check on failure."""

    name = "static_checks" if fn is _static else fn.__name__

    @functools.wraps(fn)
    def run(device: DeviceLike) -> None:
        label = _label(device)
        try:
            fn(device if fn is _static else _resolve(device))
        except DeviceContractError as exc:
            if str(exc).startswith(f"device {label!r} fails "):
                raise
            raise DeviceContractError(f"device {label!r} fails {name}: {exc}") from None
        except Exception as exc:  # a crash inside a check is a failure of that check
            raise DeviceContractError(f"device {label!r} fails {name}: {type(exc).__name__}: {exc}") from exc

    return run


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise DeviceContractError(message)


def _layer(device: Device, seed: int = 1) -> tuple[DeviceLayer, torch.Tensor]:
    layer = device.layer(IN, OUT)
    _require(isinstance(layer, DeviceLayer), f"layer() returned a {type(layer).__name__}, not a DeviceLayer")
    matrix = torch.randn(OUT, IN, generator=torch.Generator().manual_seed(seed)) * 0.2
    layer.load_matrix(matrix)
    return layer, matrix


def _x(batch: int = BATCH, seed: int = 2) -> torch.Tensor:
    return torch.randn(batch, IN, generator=torch.Generator().manual_seed(seed))


def _eval(layer: DeviceLayer, x: torch.Tensor) -> torch.Tensor:
    layer.eval()
    with torch.no_grad():
        return layer(x)


def _shape(y: Any, batch: int, where: str) -> None:
    _require(isinstance(y, torch.Tensor), f"forward returned a {type(y).__name__} {where}, not a tensor")
    _require(
        tuple(y.shape) == (batch, OUT),
        f"forward returned shape {list(y.shape)} {where}; expected [batch, out] = [{batch}, {OUT}]",
    )
    _require(bool(torch.isfinite(y).all()), f"forward returned non-finite values {where}")


# --------------------------------------------------------------------------- static part
def static_checks(cls: type[Device]) -> None:
    """The cheap part of the contract, run by the registry on every device it loads.

    The class is a concrete :class:`Device` subclass with a ``name`` and a dataclass ``Config``;
    the default config builds; ``search_space()`` keys are config fields with valid specs;
    every preset builds; the cost of a 4 x 3 layer has the required keys as finite, non-negative
    floats.

    Raises:
        DeviceContractError: naming the device and the broken check.
    """
    _check(_static)(cls)  # type: ignore[arg-type]


def _static(cls: Any) -> None:
    _require(isinstance(cls, type) and issubclass(cls, Device), f"{cls!r} is not a codesign.devices.base.Device subclass")
    if inspect.isabstract(cls):
        missing = ", ".join(sorted(getattr(cls, "__abstractmethods__", ())))
        raise DeviceContractError(f"the class is abstract: implement {missing}")
    _require(isinstance(getattr(cls, "name", None), str) and bool(cls.name), "the class has no name")
    config_cls = getattr(cls, "Config", None)
    _require(
        isinstance(config_cls, type) and issubclass(config_cls, DeviceConfig) and dataclasses.is_dataclass(config_cls),
        "Config is not a DeviceConfig dataclass",
    )
    _api_version(cls)
    try:
        device = cls()
    except ConfigError as exc:
        raise DeviceContractError(f"the default config does not build: {exc}") from None
    _layer_api(device)
    _search_space_fields(cls)
    _presets_build(cls)
    _cost_keys(device, 4, 3)


def _porting(since: int) -> str:
    """What changed in the device API after version ``since``, and how to port, as one sentence."""
    steps = [f"v{v}: {API_CHANGES[v][0]} (port: {API_CHANGES[v][1]})" for v in sorted(API_CHANGES) if v > since]
    return "; ".join(steps)


def _api_version(cls: type[Device]) -> None:
    """The declared ``api_version``: refused, with what changed and how to port, when it is old."""
    declared = getattr(cls, "api_version", None)
    if declared is None:
        return  # not declared: checked as the current version by every other check
    _require(isinstance(declared, int) and not isinstance(declared, bool),
             f"api_version = {declared!r} is not an integer; set api_version = {DEVICE_API_VERSION}")
    if declared > DEVICE_API_VERSION:
        raise DeviceContractError(f"it was written for device API v{declared}, but this codesign implements "
                                  f"v{DEVICE_API_VERSION}; upgrade codesign")
    if declared < DEVICE_API_VERSION:
        raise DeviceContractError(f"it was written for device API v{declared}, this codesign implements "
                                  f"v{DEVICE_API_VERSION}; what changed: {_porting(declared)}")


def _layer_api(device: Device) -> None:
    """A layer written for device API v1 (``draw_instance(seed)``, no read time) is named as such."""
    try:
        layer = device.layer(4, 3)
    except Exception:  # noqa: BLE001 - a layer that does not build is check_output_shape's to report
        return
    draw = getattr(type(layer), "draw_instance", None)
    if draw is None or draw is DeviceLayer.draw_instance:
        return
    try:
        inspect.signature(draw).bind(layer, 0, 3600.0)
    except TypeError:
        params = ", ".join(list(inspect.signature(draw).parameters)[1:])
        raise DeviceContractError(f"its layer overrides draw_instance({params}), the device API v1 signature; "
                                  f"what changed: {_porting(1)}") from None


def _fields(config_cls: type[DeviceConfig]) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(config_cls)}


def _search_space_fields(cls: type[Device]) -> dict[str, Any]:
    space = cls.search_space()
    _require(isinstance(space, dict), f"search_space() returned a {type(space).__name__}, not a dict")
    fields = _fields(cls.Config)
    for key, spec in space.items():
        _require(key in fields, f"search_space key {key!r} is not a config field (fields: {', '.join(fields)})")
        _require(
            isinstance(spec, (IntRange, FloatRange, Choice)),
            f"search_space[{key!r}] is a {type(spec).__name__}, not an IntRange, FloatRange or Choice",
        )
        if isinstance(spec, Choice):
            _require(len(spec.values) > 0, f"search_space[{key!r}] is an empty Choice")
        else:
            _require(spec.low <= spec.high, f"search_space[{key!r}] has low {spec.low} > high {spec.high}")
            _require(not spec.log or spec.low > 0, f"search_space[{key!r}] is log-scaled but low <= 0")
    return space


def _presets_build(cls: type[Device]) -> dict[str, Preset]:
    presets = cls.presets()
    _require(isinstance(presets, dict), f"presets() returned a {type(presets).__name__}, not a dict")
    for key, preset in presets.items():
        _require(isinstance(preset, Preset), f"preset {key!r} is a {type(preset).__name__}, not a Preset")
        _require(key == preset.name, f"preset {preset.name!r} is listed under the key {key!r}")
        _require(bool(preset.source), f"preset {key!r} cites no source")
        try:
            cls.from_preset(key)
        except ConfigError as exc:
            raise DeviceContractError(f"preset {key!r} does not build: {exc}") from None
    return presets


def _cost_keys(device: Device, in_features: int, out_features: int) -> dict[str, float]:
    costs = device.cost(in_features, out_features)
    _require(isinstance(costs, dict), f"cost() returned a {type(costs).__name__}, not a dict")
    missing = [k for k in REQUIRED_COST_KEYS if k not in costs]
    _require(not missing, f"cost lacks {', '.join(missing)}; every device reports {', '.join(REQUIRED_COST_KEYS)}")
    for key, value in costs.items():
        _require(
            isinstance(value, float) and math.isfinite(value) and value >= 0,
            f"cost[{key!r}] = {value!r} at {out_features}x{in_features}: expected a finite float >= 0",
        )
    parts = {k: v for k, v in costs.items() if k.endswith("_pj") and k != "energy_pj"}
    if parts:
        total = sum(parts.values())
        _require(
            math.isclose(total, costs["energy_pj"], rel_tol=1e-6, abs_tol=1e-9),
            f"cost components {', '.join(parts)} sum to {total:.6g} pJ, not energy_pj = "
            f"{costs['energy_pj']:.6g}: every other *_pj key is a component of energy_pj",
        )
    unknown = [k for k in type(device).conversion_keys if k not in parts]
    _require(not unknown, f"conversion_keys {unknown} are not *_pj components of cost()")
    held = {k: v for k, v in costs.items() if k.endswith("_static_mw")}
    if held:  # held power (issue 26): components ending in _static_mw sum to static_power_mw
        total = sum(held.values())
        _require(
            math.isclose(total, costs.get("static_power_mw", 0.0), rel_tol=1e-6, abs_tol=1e-9),
            f"held components {', '.join(held)} sum to {total:.6g} mW, not static_power_mw = "
            f"{costs.get('static_power_mw', 0.0):.6g}: every *_static_mw key is a component of static_power_mw",
        )
    power = device.power_feasibility(float(costs["energy_pj"]) / float(costs.get("interval_ns", costs["latency_ns"]) or 1.0)
                                     + float(costs.get("static_power_mw", 0.0)), float(costs["area_mm2"]))
    _require(
        isinstance(power, list) and all(isinstance(r, str) and r for r in power),
        f"power_feasibility() returned {power!r}: expected a list of non-empty reason strings",
    )
    reasons = device.feasibility(in_features, out_features)
    _require(
        isinstance(reasons, list) and all(isinstance(r, str) and r for r in reasons),
        f"feasibility() returned {reasons!r}: expected a list of non-empty reason strings",
    )
    return costs


# --------------------------------------------------------------------------- the checks
def check_static(device: DeviceLike) -> None:
    """:func:`static_checks` on the device's class."""
    _check(_static)(device if isinstance(device, type) else type(_resolve(device)))


@_check
def check_output_shape(device: Device) -> None:
    """``[batch, out]`` in training, nominal and instance modes (batch 16 and 1); finite values."""
    layer, _ = _layer(device)
    for batch in (BATCH, 1):
        x = _x(batch)
        layer.train()
        with torch.no_grad():
            _shape(layer(x), batch, "in training")
        _shape(_eval(layer, x), batch, "in the nominal mode")
        layer.draw_instance(0)
        _shape(_eval(layer, x), batch, "for an instance")
        layer.clear_instance()
    m = layer.effective_matrix()
    _require(tuple(m.shape) == (OUT, IN), f"effective_matrix has shape {list(m.shape)}; expected [out, in] = [{OUT}, {IN}]")


@_check
def check_gradients(device: Device) -> None:
    """In training, gradients reach every trainable parameter, finite and non-zero."""
    layer, _ = _layer(device)
    layer.train()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        y = layer(_x())
    _require(y.requires_grad, "the training output does not depend on the layer's parameters")
    y.square().sum().backward()
    params = [(n, p) for n, p in layer.named_parameters() if p.requires_grad]
    _require(bool(params), "the layer has no trainable parameters")
    for name, p in params:
        _require(p.grad is not None, f"no gradient reaches parameter {name!r}")
        _require(bool(torch.isfinite(p.grad).all()), f"the gradient of {name!r} is not finite")
        _require(bool(p.grad.abs().sum() > 0), f"the gradient of {name!r} is zero")


def _noisy(device: Device) -> bool:
    """Whether an instance of the device differs from its nominal version (on the check input)."""
    layer, _ = _layer(device)
    x = _x()
    nominal = _eval(layer, x)
    layer.draw_instance(0)
    return not torch.equal(_eval(layer, x), nominal)


@_check
def check_training_noise(device: Device) -> None:
    """Noise in instances implies fresh noise in every training call, and conversely."""
    noisy = _noisy(device)
    layer, _ = _layer(device)
    x = _x()
    _eval(layer, x)  # calibrate converters on the nominal device first
    layer.train()
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(0)
        first, second = layer(x), layer(x)
    fresh = not torch.equal(first, second)
    _require(
        fresh or not noisy,
        "instances differ from the nominal device, but two training passes on the same input "
        "are identical: training must draw fresh noise on every call (DeviceLayer.noise)",
    )
    _require(
        noisy or not fresh,
        "training draws noise, but an instance equals the nominal device: draw_instance must "
        "fix that noise for the instance",
    )


@_check
def check_instances_deterministic(device: Device) -> None:
    """Same seed, same output: read twice, redrawn, and after a read at another time and back."""
    layer, _ = _layer(device)
    x = _x()
    layer.eval()
    layer.draw_instance(7)
    _require(layer.mode is Mode.INSTANCE, f"after draw_instance in eval, layer.mode is {layer.mode}, not Mode.INSTANCE")
    _require(layer.instance_seed == 7, f"after draw_instance(7), layer.instance_seed is {layer.instance_seed!r}")
    state = torch.get_rng_state()
    y1, y2 = _eval(layer, x), _eval(layer, x)
    _require(torch.equal(y1, y2), "the same instance read twice gives two outputs")
    layer.draw_instance(7)
    _require(torch.equal(_eval(layer, x), y1), "drawing the same seed again gives another output")
    t = layer.t_inference_s
    layer.set_inference_time(t * 10 + 86400.0)
    _require(layer.instance_seed == 7, "set_inference_time forgot the drawn instance")
    _eval(layer, x)
    layer.set_inference_time(t)
    _require(torch.equal(_eval(layer, x), y1), "reading at another time and back changes the output")
    _require(torch.equal(torch.get_rng_state(), state), "evaluating an instance changed the global RNG state")


@_check
def check_seeds_differ(device: Device) -> None:
    """Where instances differ from the nominal device, two seeds give two different chips."""
    if not _noisy(device):
        return
    layer, _ = _layer(device)
    x = _x()
    layer.draw_instance(7)
    a = _eval(layer, x)
    layer.draw_instance(8)
    _require(not torch.equal(a, _eval(layer, x)), "seeds 7 and 8 give the same instance")


@_check
def check_clear_instance(device: Device) -> None:
    """``clear_instance`` returns to the nominal device (mode, seed and output)."""
    layer, _ = _layer(device)
    x = _x()
    nominal = _eval(layer, x)
    _require(layer.mode is Mode.NOMINAL, f"a fresh layer in eval is in mode {layer.mode}, not Mode.NOMINAL")
    layer.draw_instance(3)
    _eval(layer, x)
    layer.clear_instance()
    _require(layer.mode is Mode.NOMINAL and layer.instance_seed is None, "clear_instance did not forget the instance")
    _require(torch.equal(_eval(layer, x), nominal), "after clear_instance the output is not the nominal one")


@_check
def check_inference_time(device: Device) -> None:
    """``t_inference_s``: default, set by ``draw_instance`` and ``set_inference_time``, validated."""
    layer, _ = _layer(device)
    _require(
        layer.t_inference_s == DEFAULT_T_INFERENCE_S,
        f"a fresh layer reads at t_inference_s={layer.t_inference_s}, not DEFAULT_T_INFERENCE_S",
    )
    layer.draw_instance(1, t_inference_s=86400.0)
    _require(layer.t_inference_s == 86400.0, "draw_instance(seed, t_inference_s=86400) did not set t_inference_s")
    layer.set_inference_time(1.0)
    _require(layer.t_inference_s == 1.0, "set_inference_time(1.0) did not set t_inference_s")
    for bad in (-1.0, float("nan"), float("inf")):
        try:
            layer.set_inference_time(bad)
        except ConfigError:
            continue
        raise DeviceContractError(f"set_inference_time({bad}) was accepted")


def _changed_config(device: Device) -> tuple[str, Any] | None:
    """A field and a valid value different from the device's (search-space values first)."""
    cfg = device.config
    candidates: list[tuple[str, Any]] = []
    for key, spec in type(device).search_space().items():
        values = spec.values if isinstance(spec, Choice) else (spec.low, spec.high)
        candidates += [(key, v) for v in values]
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        if isinstance(v, bool):
            candidates.append((f.name, not v))
        elif isinstance(v, int):
            candidates += [(f.name, v + 1), (f.name, v - 1)]
        elif isinstance(v, float):
            candidates += [(f.name, v * 2 if v else 0.5), (f.name, v / 2), (f.name, v + 0.01)]
    for key, value in candidates:
        if value == getattr(cfg, key):
            continue
        try:
            dataclasses.replace(cfg, **{key: value})
        except ConfigError:
            continue
        return key, value
    return None


@_check
def check_state_dict(device: Device) -> None:
    """Reload a trained layer; accept a pre-v2 state; refuse a state of another config."""
    layer, _ = _layer(device)
    params = [p for p in layer.parameters() if p.requires_grad]
    layer.train()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        opt = torch.optim.Adam(params, lr=1e-3)
        for step in range(3):
            opt.zero_grad()
            layer(_x(seed=10 + step)).square().sum().backward()
            opt.step()
    layer.draw_instance(3)
    expected = _eval(layer, _x())
    state = layer.state_dict()
    _require("_extra_state" in state, f"the state dict carries no device name and config (keys: {', '.join(state)})")
    spec = decode_device_spec(state["_extra_state"])
    _require(spec is not None and spec.get("device") == device.name, f"the state dict names device {spec and spec.get('device')!r}")
    fresh = device.layer(IN, OUT)
    fresh.load_state_dict(state)
    fresh.draw_instance(3)
    got = _eval(fresh, _x())
    _require(
        torch.allclose(got, expected, atol=1e-6, rtol=1e-5),
        f"a fresh layer loading the state evaluates differently (max diff {float((got - expected).abs().max()):.3g})",
    )
    legacy = {k: v for k, v in state.items() if k != "_extra_state"}
    device.layer(IN, OUT).load_state_dict(legacy)  # saved before API v2: no extra state
    changed = _changed_config(device)
    if changed is None:
        return
    key, value = changed
    other = type(device)(dataclasses.replace(device.config, **{key: value}))
    try:
        other.layer(IN, OUT).load_state_dict(state)
    except ConfigError as exc:
        _require(key in str(exc), f"loading a state into a layer with {key}={value!r} raised, but the message does not name {key!r}: {exc}")
        return
    raise DeviceContractError(f"a layer with {key}={value!r} accepted a state saved with {key}={getattr(device.config, key)!r}")


@_check
def check_reprogramming(device: Device) -> None:
    """``load_matrix`` twice gives the same layer as once with the second matrix."""
    twice, _ = _layer(device, seed=1)
    second = torch.randn(OUT, IN, generator=torch.Generator().manual_seed(5)) * 0.5
    twice.load_matrix(second)
    once = device.layer(IN, OUT)
    once.load_matrix(second)
    x = _x()
    a, b = _eval(twice, x), _eval(once, x)
    _require(torch.allclose(a, b, atol=1e-6, rtol=1e-5), "programming a second matrix leaves traces of the first (eval outputs differ)")
    _require(
        torch.allclose(twice.effective_matrix(), once.effective_matrix(), atol=1e-6, rtol=1e-5),
        "programming a second matrix leaves traces of the first (effective matrices differ)",
    )


@_check
def check_cost(device: Device) -> None:
    """Required keys; finite, non-negative floats; snake_case keys, a unit on every quantity."""
    for in_features, out_features in COST_SIZES:
        costs = _cost_keys(device, in_features, out_features)
        for key in costs:
            _require(bool(re.fullmatch(r"[a-z][a-z0-9_]*", key)), f"cost key {key!r} is not snake_case")
            words = set(key.split("_"))
            if words & QUANTITY_WORDS:
                _require(
                    key.endswith(UNIT_SUFFIXES),
                    f"cost key {key!r} names a quantity but no unit (end it in one of {', '.join(UNIT_SUFFIXES)})",
                )


@_check
def check_search_space(device: Device) -> None:
    """Keys are fields; specs valid; the config accepts every bound, as a value and as a string."""
    space = _search_space_fields(type(device))
    for key, spec in space.items():
        values = spec.values if isinstance(spec, Choice) else (spec.low, spec.high)
        for value in values:
            for given in (value, str(value)):
                try:
                    got = getattr(device.with_overrides({key: given}).config, key)
                except ConfigError as exc:
                    raise DeviceContractError(f"search_space offers {key}={given!r}, but the config refuses it: {exc}") from None
                _require(got == value, f"--set {key}={given!r} gives {key}={got!r}, not {value!r}")
    # a search draws every field at once: the config must also accept the bounds together (a
    # cross-field rule such as bits per cell x slices <= 32 would otherwise fail trials)
    for corner in ("low", "high"):
        combo = {key: (spec.values[0 if corner == "low" else -1] if isinstance(spec, Choice)
                       else getattr(spec, corner)) for key, spec in space.items()}
        try:
            device.with_overrides(combo)
        except ConfigError as exc:
            raise DeviceContractError(f"search_space offers every field at its {corner} bound together "
                                      f"({combo}), but the config refuses it: {exc}") from None


def _must_reject(default: Any) -> list[Any]:
    """Values of the wrong type for a field whose default is ``default`` (never valid)."""
    if isinstance(default, bool):
        return ["not-a-bool", None]
    if isinstance(default, int):
        return [1.5, None, "7"]
    if isinstance(default, float):
        return [float("nan"), None, "0.5"]
    if isinstance(default, str):
        return [3, None]
    return []


def _probes(default: Any) -> list[Any]:
    """Out-of-range candidates a field may refuse or accept, but must not crash on."""
    if isinstance(default, bool):
        return [2]
    if isinstance(default, int):
        return [-1, 0, 10**12]
    if isinstance(default, float):
        return [-1.0, 1e30, float("inf"), float("-inf")]
    if isinstance(default, str):
        return ["", "no-such-value"]
    return []


def _refused(cfg: DeviceConfig, name: str, value: Any) -> bool:
    """Whether the config refuses ``name=value`` with a ``ConfigError`` naming the field (False: accepted);
    any other error, or one that does not name the field, breaks the contract."""
    try:
        dataclasses.replace(cfg, **{name: value})
    except ConfigError as exc:
        _require(name in str(exc), f"the error for {name}={value!r} does not name the field: {exc}")
        return True
    except Exception as exc:
        raise DeviceContractError(f"{name}={value!r} raised {type(exc).__name__} instead of ConfigError: {exc}") from None
    return False


@_check
def check_config_validation(device: Device) -> None:
    """Unknown fields and wrong types raise ``ConfigError`` naming the field; probes never crash."""
    cfg = device.config
    try:
        device.with_overrides({"no_such_field": 1})
    except ConfigError as exc:
        _require("no_such_field" in str(exc), f"the error for an unknown field does not name it: {exc}")
    else:
        raise DeviceContractError("the config accepts an unknown field 'no_such_field'")
    for f in dataclasses.fields(cfg):
        _require(bool(f.metadata.get("doc")), f"config field {f.name!r} has no doc (field(metadata={{'doc': ...}}))")
        default = getattr(cfg, f.name)
        for bad in _must_reject(default):
            if _refused(cfg, f.name, bad):
                continue
            raise DeviceContractError(f"the config accepts {f.name}={bad!r} (a {type(bad).__name__} for a {type(default).__name__} field)")
        for probe in _probes(default):  # refused or accepted, but never a crash
            _refused(cfg, f.name, probe)


def _outside(low: Any, high: Any, integer: bool) -> list[Any]:
    """Values just outside ``[low, high]`` (and the infinities and NaN for float fields)."""
    out: list[Any] = []
    if low is not None:
        out.append(low - 1 if integer else math.nextafter(float(low), -math.inf) - abs(float(low)) * 1e-9)
    if high is not None:
        out.append(high + 1 if integer else math.nextafter(float(high), math.inf) + abs(float(high)) * 1e-9)
    if not integer:
        out += [math.nan] + ([-math.inf] if low is not None else []) + ([math.inf] if high is not None else [])
    return out


@_check
def check_physical_ranges(device: Device) -> None:
    """Every int and float config field declares its physical range, and values outside are refused.

    A range is ``field(metadata={"range": (low, high), "doc": ...})`` (None: that side open);
    :class:`DeviceConfig` enforces it. The default must lie inside; a value just below ``low``,
    just above ``high`` (and NaN, the infinities) must raise ``ConfigError`` naming the field.
    """
    cfg = device.config
    ranges = {f.name: r for f, r in field_ranges(type(cfg)).items()}
    for f in dataclasses.fields(cfg):
        default = getattr(cfg, f.name)
        if isinstance(default, bool) or not isinstance(default, (int, float)):
            continue
        _require(f.name in ranges, f"config field {f.name!r} declares no physical range: add "
                                   "field(metadata={'range': (low, high), ...}) (None for an open side)")
        low, high = ranges[f.name]
        _require(low is not None or high is not None, f"config field {f.name!r} declares the range (None, None)")
        _require((low is None or low <= default) and (high is None or default <= high),
                 f"config field {f.name!r}: the default {default!r} lies outside its range [{low}, {high}]")
        integer = isinstance(default, int)
        for bad in _outside(low, high, integer):
            if _refused(cfg, f.name, bad):
                continue
            raise DeviceContractError(f"the config accepts {f.name}={bad!r}, outside its physical range "
                                      f"[{low}, {high}] (let DeviceConfig.__post_init__ run: call "
                                      "super().__post_init__() if you override it)")


@_check
def check_presets(device: Device) -> None:
    """Every preset builds a valid config whose layer runs and costs."""
    cls = type(device)
    for name in _presets_build(cls):
        dev = cls.from_preset(name)
        layer, _ = _layer(dev)
        _shape(_eval(layer, _x()), BATCH, f"for preset {name!r}")
        _cost_keys(dev, IN, OUT)


@_check
def check_export(device: Device) -> None:
    """A device with an ``export_format`` round-trips a layer through its own files.

    The layer is programmed and read once (so that calibrated converter ranges are set), exported
    with ``export_layer`` into an empty folder and rebuilt with ``load_layer_export`` from the
    files and the returned manifest section alone: the nominal effective matrix and one seeded
    instance's outputs must match. Devices without an export format pass (nothing to check).
    """
    fmt = type(device).export_format
    if fmt is None:
        return
    import json
    import tempfile
    from pathlib import Path

    layer, _ = _layer(device)
    x = _x()
    _eval(layer, x)  # calibrate converter ranges, as training or a first read does
    layer.draw_instance(3)
    expected = _eval(layer, x)
    layer.clear_instance()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "device"
        folder.mkdir()
        section = device.export_layer(layer, folder)
        _require(isinstance(section, dict), f"export_layer returned a {type(section).__name__}, not a dict")
        _require(section.get("format") == fmt, f"export_layer's section has format {section.get('format')!r}, expected {fmt!r}")
        files = section.get("files")
        _require(isinstance(files, list) and files, "export_layer's section lists no 'files'")
        for name in files:
            _require((folder / name).is_file(), f"export_layer lists {name!r} but wrote no such file")
        section = json.loads(json.dumps(section))  # as read back from export.json
        rebuilt = device.load_layer_export(folder, section)
        _require(isinstance(rebuilt, DeviceLayer), f"load_layer_export returned a {type(rebuilt).__name__}")
        rebuilt.eval()
        a, b = layer.effective_matrix().detach(), rebuilt.effective_matrix().detach()
        _require(
            tuple(a.shape) == tuple(b.shape) and torch.allclose(a, b, atol=1e-6, rtol=1e-5),
            "the re-imported layer's nominal effective matrix differs"
            + (f" (max diff {float((a - b).abs().max()):.3g})" if a.shape == b.shape else f" (shape {list(b.shape)})"),
        )
        rebuilt.draw_instance(3, t_inference_s=layer.t_inference_s)
        got = _eval(rebuilt, x)
        _require(
            torch.allclose(got, expected, atol=1e-5, rtol=1e-4),
            f"the re-imported layer's seeded instance evaluates differently (max diff {float((got - expected).abs().max()):.3g})",
        )
        bad = {**section, "format": fmt.partition("/")[0] + "/999"}
        try:
            device.load_layer_export(folder, bad)
        except ConfigError:
            pass
        else:
            raise DeviceContractError("load_layer_export accepted a section with a wrong format version")


@_check
def check_calibrator(device: Device) -> None:
    """A declared calibrator recovers the parameters its measurements were generated with.

    Measurements drawn with :meth:`~codesign.devices.calibration.Calibrator.generate` from the
    device's config, and from it with the calibrator's ``perturbed`` overrides, are written and
    read back and fitted: every field of its ``tolerances`` must be recovered within them, and
    the device must accept the fitted overrides. A table format must refuse a file that lacks a
    required column and one with a NaN (a :class:`~codesign.devices.calibration.MeasurementError`).
    Devices without a calibrator pass.
    """
    import tempfile
    from pathlib import Path

    import numpy as np

    from .calibration import MeasurementError, calibrator_for

    cal = calibrator_for(type(device))
    if cal is None:
        return
    _require(cal.device == device.name, f"its calibrator {type(cal).__name__} fits device {cal.device!r}")
    configs = [("its config", device.config)]
    if cal.perturbed:
        configs.append((f"its config with {dict(cal.perturbed)}", device.config.replace(cal.perturbed)))
    required = [c.name for c in cal.columns if c.required]
    with tempfile.TemporaryDirectory() as tmp:
        for label, config in configs:
            data = cal.generate(config, seed=0)
            table = bool(required) and all(k in data for k in required)  # a CSV of the documented columns
            path = Path(tmp) / ("measurements.csv" if table else "measurements.txt")
            cal.write(data, path)
            fit = cal.fit(cal.read(path))
            config.replace(fit.overrides)  # the device accepts what was fitted
            errors = cal.recovery_errors(fit, config)
            _require(not errors, f"its calibrator does not recover {label}: " + "; ".join(errors))
        if not table:
            return  # not a table of the documented columns (e.g. tool reports): nothing to mutilate
        bad = Path(tmp) / "bad.csv"
        cal.write({k: v for k, v in data.items() if k != required[-1]}, bad)
        try:
            cal.read(bad)
        except MeasurementError:
            pass
        else:
            raise DeviceContractError(f"its calibrator read a file without the required column {required[-1]!r}")
        numeric = [k for k in required if np.asarray(data[k]).dtype.kind in "fiu"]
        if numeric:
            holed = {k: np.array(v, dtype=np.float64 if k == numeric[-1] else None, copy=True) for k, v in data.items()}
            holed[numeric[-1]][len(holed[numeric[-1]]) // 2] = np.nan
            cal.write(holed, bad)
            try:
                cal.read(bad)
            except MeasurementError:
                pass
            else:
                raise DeviceContractError(f"its calibrator read a file with a NaN in column {numeric[-1]!r}")


#: Every check, in the order :func:`check_device` runs them.
CHECKS: tuple[Callable[[DeviceLike], None], ...] = (
    check_static,
    check_output_shape,
    check_gradients,
    check_training_noise,
    check_instances_deterministic,
    check_seeds_differ,
    check_clear_instance,
    check_inference_time,
    check_state_dict,
    check_reprogramming,
    check_cost,
    check_search_space,
    check_config_validation,
    check_physical_ranges,
    check_presets,
    check_export,
    check_calibrator,
)


#: Rows, PCA rank and features of the lift checks (small, so that the check runs in seconds).
LIFT_ROWS, LIFT_RANK, LIFT_FEATURES = 64, 6, 24


def _lift_output(y: Any, n: int, m: int, where: str) -> torch.Tensor:
    _require(isinstance(y, torch.Tensor), f"returned a {type(y).__name__} {where}, not a tensor")
    _require(tuple(y.shape) == (n, m), f"returned shape {list(y.shape)} {where}; expected [n, n_outputs] = [{n}, {m}]")
    _require(bool(torch.isfinite(y).all()), f"returned non-finite values {where}")
    return y


@_check
def check_lifts(device: Device) -> None:
    from .base import required_cost_check
    from .lifts import device_lifts, lift_problem

    lifts = device_lifts(device)
    _require(isinstance(lifts, dict), f"lifts() returned a {type(lifts).__name__}; expected {{name: Lift subclass}}")
    z = torch.randn(LIFT_ROWS, LIFT_RANK, generator=torch.Generator().manual_seed(5))
    for name, cls in lifts.items():
        problem = lift_problem(cls, name)
        _require(problem is None, f"lift {name!r}: {problem}")
        fields = {f.name for f in dataclasses.fields(cls.Params)}
        params = {"features": LIFT_FEATURES} if "features" in fields else {}
        lift = cls(device, **params).fit(z, seed=3)
        m = lift.n_outputs(LIFT_RANK)
        ideal = _lift_output(lift.ideal(z), LIFT_ROWS, m, f"from lift {name!r}'s ideal()")
        again = cls(device, **params).fit(z, seed=3).ideal(z)
        _require(torch.equal(ideal, again), f"lift {name!r}: fit(z, seed) twice gives two lifts (seed it)")
        layer = lift.layer()
        layer.eval()
        with torch.no_grad():
            nominal = _lift_output(layer(z), LIFT_ROWS, m, f"from lift {name!r}'s nominal layer")
            spread = (ideal - ideal.mean(0)).norm().clamp_min(1e-12)
            err = float((nominal - ideal).norm() / spread)
            _require(err <= cls.nominal_tolerance,
                     f"lift {name!r}: with the noise off the layer differs from the exact math by {err:.3g} (relative "
                     f"RMS), above its nominal_tolerance {cls.nominal_tolerance:g}; noise off must be the ideal "
                     "math up to the device's quantisation")
            rng = torch.get_rng_state()
            layer.draw_instance(11)
            a = _lift_output(layer(z), LIFT_ROWS, m, f"from lift {name!r}'s instance 11")
            b = layer(z)
            layer.draw_instance(11)
            c = layer(z)
            _require(torch.equal(a, b) and torch.equal(a, c), f"lift {name!r}: instance 11 gives two outputs; "
                     "draw instance noise with layer.noise(shape, stream, like)")
            _require(torch.equal(rng, torch.get_rng_state()), f"lift {name!r}: an instance draw moved the global RNG")
            if not torch.equal(a, nominal):
                layer.draw_instance(12)
                _require(not torch.equal(layer(z), a), f"lift {name!r}: instances 11 and 12 are the same chip")
            layer.clear_instance()
            _require(torch.equal(layer(z), nominal), f"lift {name!r}: clear_instance() does not return to the nominal lift")
            layer.train()
            _lift_output(layer(z), LIFT_ROWS, m, f"from lift {name!r}'s layer in training mode")
        reloaded = cls(device, **params)
        reloaded.load_state_dict(lift.state_dict())
        _require(torch.equal(reloaded.ideal(z), ideal), f"lift {name!r}: load_state_dict(state_dict()) changes the lift")
        cost = lift.cost(LIFT_RANK)
        try:
            required_cost_check(device, cost, None)
        except ConfigError as exc:
            raise DeviceContractError(f"lift {name!r} cost: {exc}") from None
        parts = sum(float(v) for k, v in cost.items() if k.endswith("_pj") and k != "energy_pj")
        _require(math.isclose(parts, float(cost["energy_pj"]), rel_tol=1e-6, abs_tol=1e-9),
                 f"lift {name!r} cost: its *_pj components sum to {parts:g}, not to energy_pj {cost['energy_pj']:g}")
        stray = [k for k in lift.conversion_keys() if not k.endswith("_pj")]
        _require(not stray, f"lift {name!r}: conversion_keys() names non-energy keys {stray}")


CHECKS = (*CHECKS, check_lifts)


def check_device(device: DeviceLike, checks: Sequence[Callable[[DeviceLike], None]] = CHECKS) -> None:
    """Run the device contract on ``device``; raise on the first broken check.

    Args:
        device: a :class:`Device`, or a ``Device`` subclass (checked with its default config).
        checks: the checks to run (default: all of :data:`CHECKS`).

    Raises:
        DeviceContractError: an ``AssertionError`` whose message names the device and the check.
    """
    for check in checks:
        check(device)


def parametrize_with_checks(devices: Iterable[DeviceLike]):
    """A ``pytest.mark.parametrize`` of ``(device, check)`` over every device and check.

    Ids read ``<device>-<check>``, e.g. ``stuck_crossbar-state_dict``::

        @parametrize_with_checks([MyDevice, "ideal"])
        def test_contract(device, check):
            check(device)
    """
    import pytest

    params = [
        pytest.param(dev, check, id=f"{_label(dev)}-{check.__name__.removeprefix('check_')}")
        for dev in devices
        for check in CHECKS
    ]
    return pytest.mark.parametrize("device, check", params)


__all__ = [
    "CHECKS",
    "DeviceContractError",
    "check_device",
    "parametrize_with_checks",
    "static_checks",
    *(c.__name__ for c in CHECKS),
]
