"""The device API every hardware model implements, built-in or third-party (API v2).

A device is kept in separate pieces (aihwkit's pipeline, brevitas's count/cost split):

* a frozen dataclass **config** of plain values (units in the field names), validated at
  construction; ``Device.with_overrides({"field": value})`` is how the CLI's ``--set`` reaches it,
  and :meth:`Device.presets` names configs of published chips (:class:`Preset`, with a citation);
* a **layer** factory: ``device.layer(in_features, out_features)`` returns a
  :class:`DeviceLayer`, a drop-in ``torch.nn.Module`` for the student's ``x @ K.T``. It is
  programmed from a float matrix with :meth:`DeviceLayer.load_matrix`. The base class owns the
  bookkeeping every device shares: the :class:`Mode` (training: fresh noise at every call;
  nominal; one seeded instance after :meth:`DeviceLayer.draw_instance`), the instance seed, the
  evaluation time ``t_inference_s`` (time since programming, an argument of the evaluation as in
  aihwkit's ``drift_analog_weights(t_inference)``, not a device setting), seeded noise
  (:meth:`DeviceLayer.noise`) and the device name and config in the state dict;
* a **cost** model: ``device.cost(in_features, out_features)`` returns named metrics whose names
  carry their units. Every device reports at least ``energy_pj`` (per inference, i.e. one
  matrix-vector product), ``latency_ns`` (per inference) and ``area_mm2``, plus its own counts.

and the **search space** of its own constraints, declared with the plain specs below so that
``search/`` can turn them into Ray Tune distributions without the device importing Ray.

Devices are discovered through the ``codesign.devices`` entry-point group (see
:mod:`codesign.devices.registry`); the built-ins register there too.
:func:`codesign.devices.testing.check_device` runs the whole contract on any device.
"""

from __future__ import annotations

import abc
import dataclasses
import enum
import functools
import json
import math
import numbers
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Mapping, Sequence

import torch
from torch import nn

from codesign.errors import ConfigError, check_range
from codesign.options import PlainConfig, convert_text
from codesign.specs import Choice, FloatRange, IntRange, SearchSpec

#: Cost keys every device must report; ``search --cost energy`` picks ``energy_pj`` and so on.
REQUIRED_COST_KEYS = ("energy_pj", "latency_ns", "area_mm2")

#: Time since programming at which a layer is evaluated when none is given, s: one hour, the
#: pre-v2 default of the analog crossbar's ``drift_time_s`` (kept so that results do not move).
DEFAULT_T_INFERENCE_S = 3600.0


# Search specs live in the bottom layer (plugins of every kind use them); re-exported here.


# --------------------------------------------------------------------------- config
@dataclass(frozen=True)
class DeviceConfig(PlainConfig):
    """Base of every device config: frozen plain data, validated in ``__post_init__``.

    Subclasses declare fields with defaults (a published device) and implement
    :meth:`validate`, raising :class:`codesign.errors.ConfigError` with the field name and the
    allowed range (use :func:`codesign.errors.check_range`); :meth:`field_docs` lists them.
    """

    def __post_init__(self) -> None:
        self.check_ranges()
        self.validate()

    def check_ranges(self) -> None:
        """Refuse a value outside the physical range a field declares (``metadata={"range": (lo, hi)}``).

        Run by the base class before :meth:`validate`, so a plugin's own checks see only values
        inside every declared range. An ``int`` field (its default an int) must hold an integer.
        """
        for f, (lo, hi) in field_ranges(type(self)).items():
            default = f.default
            check_range(f.name, getattr(self, f.name), lo, hi,
                        integer=isinstance(default, int) and not isinstance(default, bool))

    #: Fields renamed or retired since a config was saved: ``{old name: new name}``. Saved
    #: configs (``from_dict``) and saved layer states are read through it; ``--set OLD=...``
    #: is refused with a hint, since an old field may have changed meaning.
    LEGACY_FIELDS: ClassVar[Mapping[str, str]] = {}

    def replace(self, overrides: Mapping[str, Any]) -> "DeviceConfig":
        """A copy with ``overrides`` applied; an unknown field is an error listing the known ones.

        String values (from ``--set field=value``) are converted to the field's default type.
        """
        names = {f.name: f for f in dataclasses.fields(self)}
        converted = {}
        for key, value in overrides.items():
            if key not in names:
                hint = ""
                if key in self.LEGACY_FIELDS:
                    hint = f" ({key!r} was replaced by {self.LEGACY_FIELDS[key]!r}; see its doc)"
                raise ConfigError(
                    f"unknown field {key!r} for {type(self).__name__}{hint}; "
                    f"known fields: {', '.join(names)}"
                )
            converted[key] = convert_text(key, value, getattr(self, key))
        return dataclasses.replace(self, **converted)

    @classmethod
    def upgrade_fields(cls, fields: Mapping[str, Any]) -> dict[str, Any]:
        """``fields`` of a saved config with renamed fields mapped (:attr:`LEGACY_FIELDS`).

        A saved value is kept only where the new name is not given too.
        """
        out = {k: v for k, v in fields.items() if k not in cls.LEGACY_FIELDS}
        for old, new in cls.LEGACY_FIELDS.items():
            if old in fields and new not in out:
                out[new] = fields[old]
        return out

    @classmethod
    def from_dict(cls, fields: Mapping[str, Any]) -> "DeviceConfig":
        """A config from saved ``fields`` (``dataclasses.asdict`` of an older one, say).

        Renamed fields are mapped (:meth:`upgrade_fields`); missing fields take their defaults;
        unknown fields are an error listing the known ones.
        """
        return cls().replace(cls.upgrade_fields(fields))


def physical_range(low: float | None, high: float | None) -> dict[str, Any]:
    """``field(metadata=...)`` entry declaring a field's physical range, inclusive: ``{"range": (low, high)}``.

    None leaves that side open. :class:`DeviceConfig` refuses values outside;
    ``codesign.devices.testing.check_physical_ranges`` checks that every numeric field declares
    one and that values just outside it are refused.
    """
    return {"range": (low, high)}


def field_ranges(config_cls: type) -> dict[dataclasses.Field, tuple[Any, Any]]:
    """``{field: (low, high)}`` of the fields of ``config_cls`` that declare a physical range."""
    out = {}
    for f in dataclasses.fields(config_cls):
        r = f.metadata.get("range")
        if r is not None:
            if not (isinstance(r, (tuple, list)) and len(r) == 2):
                raise ConfigError(f"{config_cls.__name__}.{f.name}: metadata range {r!r} is not (low, high)")
            out[f] = (r[0], r[1])
    return out


#: Version of the device API this codesign implements; a device declares the one it was written
#: for as ``api_version`` (:data:`API_CHANGES` says what changed at each step).
DEVICE_API_VERSION = 3
#: ``{version: (what changed from the version before, how to port a device)}``.
API_CHANGES: dict[int, tuple[str, str]] = {
    2: ("the read time became an argument of the evaluation: draw_instance(seed) is now "
        "draw_instance(seed, t_inference_s=None), the time is layer.t_inference_s, and the base class keeps the "
        "mode and seed",
        "drop your draw_instance override; fix per-chip tensors in _draw(seed) (free them in _clear()) and read "
        "self.t_inference_s in forward; call self.noise(...) for seeded noise"),
    3: ("config fields declare their physical ranges (field(metadata={'range': (low, high), 'doc': ...}), "
        "enforced by DeviceConfig), every cost value is finite and >= 0 at any size, and held power is "
        "static_power_mw with *_static_mw components",
        "add a 'range' to every int and float field's metadata, report static power as static_power_mw, "
        "never a negative energy; then set api_version = 3 and run codesign.devices.testing.check_device"),
}


# --------------------------------------------------------------------------- layer
class Mode(enum.Enum):
    """What a :class:`DeviceLayer` computes (``layer.mode``).

    * ``TRAINING`` (``layer.train()``): non-idealities drawn fresh at every forward pass;
    * ``NOMINAL`` (``layer.eval()``, no instance drawn): the noise-free device, still quantized;
    * ``INSTANCE`` (``layer.eval()`` after ``draw_instance(seed)``): one concrete, seeded chip.
    """

    TRAINING = "training"
    NOMINAL = "nominal"
    INSTANCE = "instance"


def check_inference_time(t_inference_s: Any, name: str = "t_inference_s") -> float:
    """``t_inference_s`` as a float; ``ConfigError`` unless it is a finite number >= 0 (seconds)."""
    if isinstance(t_inference_s, bool) or not isinstance(t_inference_s, numbers.Real):
        raise ConfigError(f"{name}={t_inference_s!r}: expected a time since programming in seconds (>= 0)")
    value = float(t_inference_s)
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"{name}={t_inference_s!r}: expected a finite time since programming >= 0 s")
    return value


def _check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ConfigError(f"seed={seed!r}: expected an integer")
    return int(seed)


class DeviceLayer(nn.Module, abc.ABC):
    """Drop-in for the student's matrix product ``x @ K.T`` on one piece of hardware.

    ``forward(x)`` takes ``x`` of shape ``[batch, in_features]`` and returns
    ``[batch, out_features]``; what it computes depends on :attr:`mode`:

    * ``Mode.TRAINING``: non-idealities drawn fresh at every forward pass; quantizers pass
      gradients straight through; gradients reach the layer's trainable parameters (which
      represent K).
    * ``Mode.INSTANCE`` after ``draw_instance(seed)``: one concrete, seeded hardware instance
      (its programming errors fixed); the output is a deterministic function of ``x``, ``seed``
      and :attr:`t_inference_s`.
    * ``Mode.NOMINAL`` with no instance drawn: the nominal device (quantization applied, no noise).

    The base class keeps the mode, the instance seed and the evaluation time; a device reads
    them and fills in small hooks:

    * implement ``load_matrix``, ``effective_matrix`` and ``forward``;
    * draw random non-idealities with :meth:`noise` (fresh in training, seeded per instance);
    * override ``_draw(seed)`` / ``_clear()`` only to precompute or free per-instance tensors
      (e.g. a fault map), reading time-dependent effects from :attr:`t_inference_s` in ``forward``.

    Layers built by :meth:`Device.layer` know their device name and config; the state dict
    carries both (``get_extra_state``), so that loading a state into a layer of another device
    or config is refused with the differing fields named.

    Args:
        in_features: inputs (columns of K).
        out_features: outputs (rows of K).
        config: the device config this layer models (``Device.layer`` sets it in any case).
    """

    def __init__(self, in_features: int, out_features: int, config: DeviceConfig | None = None) -> None:
        super().__init__()
        if in_features < 1 or out_features < 1:
            raise ConfigError(
                f"layer size {out_features}x{in_features}: both sizes must be >= 1"
            )
        self.in_features = in_features
        self.out_features = out_features
        self.config = config
        #: Registered name of the device that built this layer (set by :meth:`Device.layer`).
        self.device_name: str | None = None
        self._instance_seed: int | None = None
        self._t_inference_s = DEFAULT_T_INFERENCE_S
        self.register_load_state_dict_pre_hook(_accept_state_without_extra)

    # ------------------------------------------------------------------ to implement
    @abc.abstractmethod
    def load_matrix(self, matrix: torch.Tensor) -> None:
        """Program the float matrix ``matrix`` (shape ``[out_features, in_features]``)."""

    @abc.abstractmethod
    def effective_matrix(self) -> torch.Tensor:
        """The noise-free matrix the layer currently implements, ``[out, in]`` (for reports)."""

    @abc.abstractmethod
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[batch, in_features] -> [batch, out_features]`` in the current :attr:`mode`."""

    def _draw(self, seed: int) -> None:
        """Hook: fix per-instance random tensors of instance ``seed`` (default: nothing to fix)."""

    def _clear(self) -> None:
        """Hook: free what ``_draw`` fixed (default: nothing)."""

    # ------------------------------------------------------------------ mode and instance
    @property
    def mode(self) -> Mode:
        """``TRAINING`` if ``self.training``, else ``INSTANCE`` if an instance is drawn, else ``NOMINAL``."""
        if self.training:
            return Mode.TRAINING
        return Mode.INSTANCE if self._instance_seed is not None else Mode.NOMINAL

    @property
    def instance_seed(self) -> int | None:
        """Seed of the drawn hardware instance, or None."""
        return self._instance_seed

    @property
    def t_inference_s(self) -> float:
        """Time since programming at which the layer is read in eval, s."""
        return self._t_inference_s

    def set_inference_time(self, t_inference_s: float) -> None:
        """Read the programmed layer at ``t_inference_s`` seconds after programming.

        Nothing is reprogrammed and a drawn instance is kept: the same chip is read later.
        Devices without time dependence ignore it.

        Raises:
            ConfigError: unless ``t_inference_s`` is a finite number >= 0.
        """
        self._t_inference_s = check_inference_time(t_inference_s)

    def draw_instance(self, seed: int, t_inference_s: float | None = None) -> None:
        """Fix the concrete hardware instance ``seed``; eval is then deterministic.

        Args:
            seed: the instance; the same seed gives the same chip.
            t_inference_s: time since programming to read it at, s (:meth:`set_inference_time`);
                None keeps the layer's current time (:data:`DEFAULT_T_INFERENCE_S` unless set).
        """
        seed = _check_seed(seed)
        if t_inference_s is not None:
            self.set_inference_time(t_inference_s)
        self._instance_seed = seed
        self._draw(seed)

    def clear_instance(self) -> None:
        """Forget the drawn instance: eval goes back to the nominal device (the time is kept)."""
        self._instance_seed = None
        self._clear()

    def noise(
        self,
        shape: Sequence[int],
        stream: int,
        like: torch.Tensor,
        mode: Mode | None = None,
    ) -> torch.Tensor:
        """Standard normal noise of ``shape`` (dtype and device of ``like``) for ``mode``.

        ``TRAINING``: fresh from the global RNG at every call (seed it with ``torch.manual_seed``).
        ``INSTANCE``: drawn from ``instance_generator(seed, stream)``, re-seeded at every call, so
        eval is a deterministic function of ``x`` and the seed, and the same draw serves both
        fixed programming errors and per-read noise. ``NOMINAL``: zeros. Give each independent
        noise source its own ``stream``, so that adding one does not shift the others.

        Args:
            shape: shape of the noise tensor.
            stream: the noise source's stream number within an instance.
            like: a tensor whose dtype and device the noise takes.
            mode: the mode to draw for (default: :attr:`mode`).
        """
        mode = self.mode if mode is None else mode
        shape = tuple(shape)
        if mode is Mode.TRAINING:
            return torch.randn(shape, dtype=like.dtype, device=like.device)
        if mode is Mode.NOMINAL:
            return torch.zeros(shape, dtype=like.dtype, device=like.device)
        if self._instance_seed is None:
            raise ConfigError("instance noise requested, but no instance is drawn: call draw_instance(seed)")
        gen = instance_generator(self._instance_seed, stream)
        return torch.randn(shape, generator=gen, dtype=like.dtype).to(like.device)

    # ------------------------------------------------------------------ state dict
    def device_spec(self) -> dict[str, Any]:
        """``{"device": name, "config": {field: value}}`` of this layer (None where unknown)."""
        config = None if self.config is None else _plain(dataclasses.asdict(self.config))
        return {"device": self.device_name, "config": config}

    def get_extra_state(self) -> torch.Tensor:
        """The device name and config, saved with the state dict.

        Stored as a ``uint8`` tensor of the JSON text of :meth:`device_spec`, so that a state dict
        stays tensors only: code that maps ``.cpu()``, ``.clone()`` or ``.to()`` over it, and
        ``torch.load(..., weights_only=True)``, keep working.
        """
        text = json.dumps(self.device_spec(), sort_keys=True)
        return torch.tensor(list(text.encode("utf-8")), dtype=torch.uint8)

    def set_extra_state(self, state: Any) -> None:
        """Check a saved device name and config against this layer's.

        Raises:
            ConfigError: the state was saved from another device, or from a config whose fields
                differ (each differing field is named with both values).
        """
        saved = decode_device_spec(state)
        if saved is None:  # saved before API v2, or by a layer that knew no device
            return
        mine = self.device_spec()
        name, saved_name = mine["device"], saved.get("device")
        if name is not None and saved_name is not None and name != saved_name:
            raise ConfigError(
                f"layer state was saved from device {saved_name!r}; this layer is a {name!r} layer"
            )
        if mine["config"] is None or saved.get("config") is None:
            return
        # a field the saved config predates takes its default, as ``DeviceConfig.from_dict`` reads it
        defaults = _plain(dataclasses.asdict(type(self.config)()))
        old = {**defaults, **_plain(type(self.config).upgrade_fields(saved["config"]))}
        new = mine["config"]
        missing = object()
        diffs = [
            f"{k}: saved {old.get(k, '(absent)')!r}, this layer {new.get(k, '(absent)')!r}"
            for k in sorted(set(old) | set(new))
            if old.get(k, missing) != new.get(k, missing)
        ]
        if diffs:
            raise ConfigError(
                f"layer state of device {name or saved_name!r} was saved with another config; "
                f"differing fields: {'; '.join(diffs)}"
            )


def _plain(value: Any) -> Any:
    """``value`` as it reads back from JSON (tuples become lists), for comparisons."""
    return json.loads(json.dumps(value))


def decode_device_spec(state: Any) -> dict[str, Any] | None:
    """The ``{"device", "config"}`` dict of a saved extra state (tensor or dict), or None."""
    if state is None:
        return None
    if isinstance(state, torch.Tensor):
        state = json.loads(bytes(state.detach().cpu().to(torch.uint8).tolist()).decode("utf-8"))
    if not isinstance(state, Mapping):
        raise ConfigError(f"unreadable device layer extra state: {type(state).__name__}")
    return dict(state)


def _accept_state_without_extra(module: nn.Module, state_dict: dict, prefix: str, *args: Any) -> None:
    """``load_state_dict`` pre-hook: a state saved before API v2 has no extra state; accept it."""
    state_dict.setdefault(prefix + "_extra_state", None)


# --------------------------------------------------------------------------- layer helpers
# Small building blocks shared by the built-in devices and open to plugins.
def quantize_symmetric(x: torch.Tensor, full_scale: torch.Tensor | float, bits: int) -> torch.Tensor:
    """Uniform mid-tread quantizer on ``[-full_scale, full_scale]`` with a straight-through gradient.

    ``bits >= 2`` gives the ``2**bits - 1`` symmetric levels ``j * full_scale / (2**(bits-1) - 1)``
    (zero exactly representable, as in narrow-range integer quantization); ``bits == 1`` gives
    the two levels ``+-full_scale``. Values beyond the range saturate; the gradient is 1 inside
    the range and 0 where the value saturated (the clipped straight-through estimator).

    Args:
        x: values to quantize.
        full_scale: positive range (a float or a tensor broadcastable to ``x``).
        bits: bit width, >= 1.
    """
    fs = torch.as_tensor(full_scale, dtype=x.dtype, device=x.device).clamp_min(1e-30)
    with torch.no_grad():
        if bits == 1:
            q = torch.where(x >= 0, fs, -fs)
        else:
            qmax = 2 ** (bits - 1) - 1
            step = fs / qmax
            # (round, clamp, rescale) beats torch.fake_quantize_* several times on CPU
            q = torch.round(x / step).clamp_(-qmax, qmax).mul_(step)
    if not x.requires_grad:
        return q
    inside = (x.abs() <= fs).to(x.dtype)
    return q + (x - x.detach()) * inside


def shared_budget_reasons(shared: Mapping[str, Mapping[str, Any]], *, skip_single: bool = True) -> list[str]:
    """Why the matrices of :meth:`Device.shared_resources` do not fit together, one line per
    resource whose total exceeds its budget (naming each matrix's count, the total and the
    budget). With ``skip_single``, a resource that one matrix alone exceeds is left to that
    matrix's :meth:`Device.feasibility`, which names it already."""
    reasons = []
    for entry in shared.values():
        by = {k: int(v) for k, v in entry["by"].items()}
        if entry["used"] <= entry["budget"] or (skip_single and any(v > entry["budget"] for v in by.values())):
            continue
        parts = " + ".join(f"{label} {n:,}" for label, n in by.items() if n)
        reasons.append(f"{entry['name']} on one {entry['of']}: {parts} = {int(entry['used']):,}, more than its "
                       f"{int(entry['budget']):,}; {entry['fix']}")
    return reasons


def dac(x: torch.Tensor, bits: int) -> tuple[torch.Tensor, float, torch.Tensor]:
    """A per-vector input DAC: digital abs-max scaling of each row into ``[-1, 1]``, ``bits`` levels.

    This is aihwkit's ``NoiseManagementType.ABS_MAX`` input scaling followed by a
    :func:`quantize_symmetric` DAC. The integer codes are returned unscaled so that the large
    ``[batch, in]`` tensor gets no rescaling pass of its own: fold ``lsb * amax`` into the small
    output instead.

    Args:
        x: ``[batch, in]`` inputs.
        bits: DAC resolution, >= 1.

    Returns:
        ``(codes, lsb, amax)`` with ``x ~= codes * lsb * amax``; ``codes`` are integers in
        ``[-(2**(bits-1) - 1), 2**(bits-1) - 1]`` (``+-1`` for one bit), ``amax`` is ``[batch, 1]``.
        Gradients reach ``x`` straight through when it requires them.
    """
    xd = x.detach()
    amax = torch.maximum(xd.amax(1, keepdim=True), -xd.amin(1, keepdim=True)).clamp_min(1e-30)
    qmax = 1 if bits == 1 else 2 ** (bits - 1) - 1
    if x.requires_grad:
        return quantize_symmetric(x / amax, 1.0, bits) * qmax, 1.0 / qmax, amax
    with torch.no_grad():
        codes = torch.where(x >= 0, 1.0, -1.0) if bits == 1 else (x * (qmax / amax)).round_()
    return codes, 1.0 / qmax, amax


def ste(x: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """``value`` in the forward pass, identity gradient to ``x`` in the backward pass."""
    return x + (value - x).detach()


def instance_generator(seed: int, stream: int = 0, device: torch.device | str = "cpu") -> torch.Generator:
    """A fresh ``torch.Generator`` for hardware instance ``seed``; never touches global RNG state.

    ``stream`` separates independent draws of one instance (programming errors, read noise...)
    so that adding a noise source does not shift the others.
    """
    gen = torch.Generator(device=device)
    gen.manual_seed((int(seed) * 1_000_003 + int(stream) * 7919) % (2**63 - 1))
    return gen


class CalibratedRange(nn.Module):
    """Full-scale range of a converter (an ADC), calibrated the way QAT observers are.

    In training mode each call updates an exponential moving average of the batch's absolute
    maximum (the first batch initialises it; PyTorch's ``MovingAverageMinMaxObserver`` does the
    same). In eval mode the calibrated value is frozen; if the layer was never trained, the
    first batch it sees calibrates it once (a calibration pass), so eval stays deterministic.
    """

    def __init__(self, momentum: float = 0.1) -> None:
        super().__init__()
        self.momentum = momentum
        self.register_buffer("value", torch.tensor(float("nan")))

    def reset(self) -> None:
        """Forget the calibration (e.g. after a new matrix is programmed)."""
        self.value.fill_(float("nan"))

    def batch_value(self, y: torch.Tensor) -> torch.Tensor:
        """The range one batch asks for: its absolute maximum (subclasses: a percentile...)."""
        return y.detach().abs().amax()

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        """Update (training) or read (eval) the range for values ``y``; returns a scalar tensor."""
        with torch.no_grad():
            if self.training or bool(torch.isnan(self.value)):
                batch_max = self.batch_value(y).clamp_min(1e-30).to(self.value.dtype)
                if bool(torch.isnan(self.value)):
                    self.value.copy_(batch_max)
                else:
                    self.value.lerp_(batch_max, self.momentum)
        return self.value


# --------------------------------------------------------------------------- device
@dataclass(frozen=True)
class Preset:
    """A named config of a published chip or design (aihwkit's ``simulator/presets``).

    Attributes:
        name: the preset's name (``--preset NAME``, ``create_device(..., preset=NAME)``).
        overrides: ``{config field: value}`` applied to the device's default config.
        source: the paper, datasheet or repository the values come from.
        description: one line on what the preset models.
    """

    name: str
    overrides: Mapping[str, Any]
    source: str
    description: str = ""


def preset_table(*presets: Preset) -> dict[str, Preset]:
    """``{preset.name: preset}`` for :meth:`Device.presets`; a repeated name is an error."""
    table: dict[str, Preset] = {}
    for p in presets:
        if p.name in table:
            raise ConfigError(f"preset {p.name!r} is defined twice")
        table[p.name] = p
    return table


class Device(abc.ABC):
    """A named hardware model: config + layer factory + cost model + search space (+ presets).

    Subclasses set ``name``, ``Config`` and ``description`` and implement :meth:`layer`,
    :meth:`cost` and :meth:`search_space`; :meth:`presets` is optional. The layers that
    :meth:`layer` returns are tagged with the device's name and config automatically.
    """

    name: ClassVar[str]
    Config: ClassVar[type[DeviceConfig]]
    description: ClassVar[str] = ""
    #: The device API version this device was written for (:data:`DEVICE_API_VERSION`); None:
    #: not declared, checked as the current one. An older version is refused with what changed.
    api_version: ClassVar[int | None] = None
    #: The :class:`~codesign.devices.calibration.Calibrator` subclass that fits this device's
    #: config to measurements of a real chip (``codesign calibrate``), or its import path
    #: ``"package.module:ClassName"`` (resolved on first use, so that a calibrator module may
    #: import its device's module); None: none declared.
    #: :func:`codesign.devices.calibration.calibrator_for` resolves it.
    calibrator: ClassVar[type | str | None] = None

    @classmethod
    def lifts(cls) -> dict[str, type]:
        """The nonlinear primitives this device computes, ``{name: Lift subclass}`` (issue 30).

        Each becomes the dictionary ``<device>.<name>`` computed on the device
        (``--lift-placement device``): a :class:`~codesign.devices.lifts.Lift` simulates the
        device's noise and quantisation in the lift and prices it in :meth:`cost`'s
        conventions. Default: none (the lift runs on the host). Optional: devices that do not
        declare it keep the same API version.
        """
        return {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        make = cls.__dict__.get("layer")
        if make is None or getattr(make, "_tags_layer", False) or getattr(make, "__isabstractmethod__", False):
            return

        @functools.wraps(make)
        def layer(self: "Device", in_features: int, out_features: int, *args: Any, **kw: Any) -> DeviceLayer:
            built = make(self, in_features, out_features, *args, **kw)
            if isinstance(built, DeviceLayer):  # the state dict then carries name and config
                built.device_name = self.name
                built.config = self.config
            return built

        layer._tags_layer = True  # type: ignore[attr-defined]
        cls.layer = layer  # type: ignore[method-assign]

    def __init__(self, config: DeviceConfig | None = None, **overrides: Any) -> None:
        config = config if config is not None else self.Config()
        if not isinstance(config, self.Config):
            raise ConfigError(
                f"device {self.name!r} takes a {self.Config.__name__}, got {type(config).__name__}"
            )
        self.config = config.replace(overrides) if overrides else config

    def with_overrides(self, overrides: Mapping[str, Any]) -> "Device":
        """A new device of the same kind with ``overrides`` applied to its config."""
        return type(self)(self.config.replace(overrides))

    @classmethod
    def presets(cls) -> dict[str, Preset]:
        """Named configs of published chips: ``{name: Preset}`` (default: none)."""
        return {}

    @classmethod
    def from_preset(cls, name: str, overrides: Mapping[str, Any] | None = None) -> "Device":
        """The device configured as preset ``name``, then ``overrides`` (field -> value).

        Raises:
            ConfigError: an unknown preset (the message lists the device's presets), or a bad
                override.
        """
        presets = cls.presets()
        if name not in presets:
            known = ", ".join(presets) or "(none)"
            raise ConfigError(f"unknown preset {name!r} for device {cls.name!r}; its presets: {known}")
        config = cls.Config().replace(presets[name].overrides)
        return cls(config.replace(overrides) if overrides else config)

    @abc.abstractmethod
    def layer(self, in_features: int, out_features: int) -> DeviceLayer:
        """A fresh :class:`DeviceLayer` of the given size for this config."""

    #: Energy components of :meth:`cost` (keys ending in ``_pj``) spent converting between the
    #: digital host and the device: DACs, modulators, detectors, TIAs, ADCs. The whole-inference
    #: cost reports them as the ``conversion`` stage and the rest of ``energy_pj`` as ``matrix``.
    conversion_keys: ClassVar[tuple[str, ...]] = ()

    @abc.abstractmethod
    def cost(self, in_features: int, out_features: int) -> dict[str, float]:
        """Metrics of one ``out x in`` matrix-vector product on this device.

        Keys carry units (``energy_pj``, ``latency_ns``, ``area_mm2``, ``n_mzi``...) and must
        include :data:`REQUIRED_COST_KEYS`. The cost separates what is spent per operation from
        what is drawn while state is held (the time base, :data:`OPERATING_MODES`):

        * ``energy_pj``: the *dynamic* energy of one product; every other key ending in ``_pj``
          is a component of it (converters, array, memory traffic...) and they sum to it. Those
          that are conversions are named in :attr:`conversion_keys`.
        * ``static_power_mw`` (optional, 0 when absent): the power drawn while the device holds
          its state (heaters, lasers that are not gated, leakage, bias and reference circuits),
          whatever it computes; each component is a key ending in ``_static_mw`` and they sum
          to it. The device does not multiply it by a time: the whole inference decides how
          long it is held (:func:`held_time_ns`).
        * ``latency_ns``: one product from input to output; ``interval_ns`` (optional, defaults
          to ``latency_ns``): the time between successive products when they stream through
          the device's pipeline.
        """

    def feasibility(self, in_features: int, out_features: int) -> list[str]:
        """Why an ``out x in`` matrix cannot be built on this device ([] when it can).

        Each reason names the physical or resource limit broken and by how much (optical power
        per waveguide, loss budget, an FPGA part's LUTs, a chip's tile count...). An infeasible
        design is reported with its reasons, not priced, and kept off a search's front.
        """
        return []

    def shared_resources(self, costs: Mapping[str, Mapping[str, float]]) -> dict[str, dict[str, Any]]:
        """The budgets that several matrices of one inference share when they sit on this device
        at once (K, a device lift's projection, the PCA projection on one chip).

        :meth:`feasibility` checks each matrix alone against the whole device; this adds up what
        they use together. Optional; default ``{}`` (no shared budget).

        Args:
            costs: ``{label: cost}``, each matrix's :meth:`cost` (its counts: an FPGA's LUTs,
                a crossbar's tiles...) under a label naming it (``matrix K (10 x 91)``).

        Returns:
            ``{resource: {"name": what it is, "used": the total, "budget": the device's,
            "by": {label: its count}, "of": the device it is counted on, "fix": how to fit}}``,
            one entry per shared resource. The whole-inference cost
            (:func:`codesign.inference_cost.inference_cost`) reports them and refuses a design
            whose total exceeds a budget, naming the resource and the numbers.
        """
        return {}

    def power_feasibility(self, power_mw: float, area_mm2: float) -> list[str]:
        """Why the device cannot draw ``power_mw`` (average, at the operating rate) on ``area_mm2``.

        ``[]`` when it can (the default: no power limit). A device with a thermal design power or
        a power-density limit checks them here (:func:`power_limit_reasons`); the whole-inference
        cost calls it with the device's dynamic power at the operating rate plus its held power,
        and reports a design above a limit as infeasible with the reason.
        """
        return []

    @classmethod
    @abc.abstractmethod
    def search_space(cls) -> dict[str, SearchSpec]:
        """The device's own constraints a search may vary: ``{config field: spec}``."""

    #: Device-native export format this device writes, ``"name/version"`` (e.g.
    #: ``"photonic-mesh/2"``); None: the device has none (``codesign export`` still writes the
    #: ONNX graph and the front end).
    export_format: ClassVar[str | None] = None

    def export_layer(self, layer: DeviceLayer, folder: Path) -> dict[str, Any]:
        """Write the programmed ``layer`` in the device's own terms into ``folder``.

        ``folder`` exists and is empty; write only inside it. Implement together with
        :meth:`load_layer_export` and set :attr:`export_format`.

        Args:
            layer: a layer of this device, programmed (``load_matrix`` or a loaded state).
            folder: where to write the device's files.

        Returns:
            The JSON-able manifest section: at least ``{"format": self.export_format,
            "files": [names relative to folder]}``.

        Raises:
            NotImplementedError: the device has no native export format (the default).
        """
        raise NotImplementedError(f"device {self.name!r} has no native export format (export_format is None)")

    def load_layer_export(self, folder: Path, manifest: Mapping[str, Any]) -> DeviceLayer:
        """Rebuild a layer from the files :meth:`export_layer` wrote, alone (no K).

        The layer has the same config, the same nominal effective matrix and the same seeded
        hardware draws (``draw_instance(seed)``) as the exported one.

        Args:
            folder: the folder :meth:`export_layer` wrote.
            manifest: the section :meth:`export_layer` returned (as read back from JSON).

        Raises:
            ConfigError: wrong format or version, or missing or damaged files: one line naming
                the file and the fix (:func:`check_export_manifest` covers the format).
            NotImplementedError: the device has no native export format (the default).
        """
        raise NotImplementedError(f"device {self.name!r} has no native export format (export_format is None)")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config})"


def check_export_manifest(manifest: Any, expected_format: str, folder: Path) -> None:
    """Check a device export's manifest section names ``expected_format`` (``"name/version"``).

    Args:
        manifest: the section read back from ``export.json`` (a mapping).
        expected_format: the device's :attr:`Device.export_format`.
        folder: the device's export folder (named in the message).

    Raises:
        ConfigError: one line naming the folder, the format found and the fix, if the section is
            not a mapping, lacks ``"format"`` or names another format or version.
    """
    where = f"device export in {folder}"
    if not isinstance(manifest, Mapping):
        raise ConfigError(
            f"{where}: manifest section is {type(manifest).__name__}, expected a mapping with "
            f"format {expected_format!r}; re-export the student with `codesign export`"
        )
    found = manifest.get("format")
    if found is None:
        raise ConfigError(
            f"{where}: manifest section has no 'format' (expected {expected_format!r}); "
            "re-export the student with `codesign export`"
        )
    if found != expected_format:
        name, _, version = str(found).partition("/")
        want_name, _, want_version = expected_format.partition("/")
        if name == want_name:
            fix = (f"it was written by another version of codesign (format version {version!r}, "
                   f"this one reads {want_version!r}); re-export with this version")
        else:
            fix = f"it is not this device's export; load it with the device that wrote it"
        raise ConfigError(f"{where}: format {found!r}, expected {expected_format!r}: {fix}")


def read_export_arrays(path: Path, names: Sequence[str] = ()) -> dict[str, Any]:
    """The arrays of an ``.npz`` file of a device export, read without unpickling anything.

    Args:
        path: the file.
        names: arrays that must be present.

    Returns:
        ``{name: numpy array}``.

    Raises:
        ConfigError: one line naming the file if it is missing, unreadable (damaged) or lacks
            one of ``names``.
    """
    import numpy as np

    fix = "re-export the student with `codesign export`"
    if not Path(path).is_file():
        raise ConfigError(f"{path}: missing file of the device export; {fix}")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same one-line error
        raise ConfigError(f"{path}: damaged or not an .npz file ({type(exc).__name__}); {fix}") from None
    missing = [n for n in names if n not in arrays]
    if missing:
        raise ConfigError(f"{path}: lacks the array(s) {', '.join(missing)}; {fix}")
    return arrays


#: How inferences follow each other, which decides how long held (static) power is charged:
#: ``latency``: one inference at a time, the device held for the whole inference (host stages
#: included: heaters, lasers and leakage cannot be gated at nanosecond scale); ``stream``:
#: inferences pipelined back to back, each charged for the pipeline's initiation interval.
OPERATING_MODES = ("latency", "stream")
#: The conservative choice: a single inference holds the hardware for its whole latency.
DEFAULT_OPERATING_MODE = "latency"


def held_time_ns(costs: Mapping[str, float], operating_mode: str = DEFAULT_OPERATING_MODE) -> float:
    """How long one product holds the device alone (no host) in ``operating_mode``, in ns."""
    if operating_mode not in OPERATING_MODES:
        raise ConfigError(f"operating_mode={operating_mode!r} is not one of {', '.join(OPERATING_MODES)}")
    latency = float(costs["latency_ns"])
    return latency if operating_mode == "latency" else float(costs.get("interval_ns", latency))


def standalone_energy_pj(costs: Mapping[str, float], operating_mode: str = DEFAULT_OPERATING_MODE) -> float:
    """Dynamic energy of one product plus the held power over :func:`held_time_ns` (mW x ns = pJ).

    The figure to set against a chip's measured energy per product or TOPS/W (two operations per
    multiply-accumulate) when the device runs products alone, without a host.
    """
    return float(costs["energy_pj"]) + float(costs.get("static_power_mw", 0.0)) * held_time_ns(costs, operating_mode)


#: Config fields ``<component>_energy_scale`` / ``<component>_area_scale`` calibrate one component
#: of a device's cost (as CiMLoop's ``ADC_ENERGY_SCALE``): see :func:`calibrate`.
ENERGY_SCALE_SUFFIX = "_energy_scale"
AREA_SCALE_SUFFIX = "_area_scale"


def scale_field(what: str) -> Any:
    """A ``<component>_energy_scale`` / ``_area_scale`` config field: default 1, documented as the
    calibration factor of ``what`` (:func:`calibrate` applies it, :func:`check_scales` checks it)."""
    return dataclasses.field(default=1.0, metadata={"range": (1e-9, 1e6), "doc": f"calibration factor of {what} (1 = as cited)"})


def calibrate(
    config: DeviceConfig, energy: Mapping[str, float], area_um2: Mapping[str, float] | None = None
) -> tuple[dict[str, float], dict[str, float]]:
    """Per-component calibration: scale each cost component by the config's scale field.

    ``energy`` holds dynamic components ``<name>_pj`` and held ones ``<name>_static_mw``; each is
    multiplied by the config field ``<name>_energy_scale`` when the config has one (the energy
    scale of a component is the scale of its power too). ``area_um2`` maps component names to
    areas, each multiplied by ``<name>_area_scale``. Components without a field are unchanged,
    so a device declares scale fields only for the components it prices (the generic
    mechanism of issue 26; :func:`check_scales` validates the fields).

    Returns:
        The scaled ``energy`` and ``area_um2`` (new dicts).
    """

    def scale(name: str, suffix: str) -> float:
        return float(getattr(config, name + suffix, 1.0))

    out_e = {}
    for key, value in energy.items():
        name = key[: -len("_static_mw")] if key.endswith("_static_mw") else key[: -len("_pj")] if key.endswith("_pj") else key
        out_e[key] = float(value) * scale(name, ENERGY_SCALE_SUFFIX)
    out_a = {k: float(v) * scale(k, AREA_SCALE_SUFFIX) for k, v in (area_um2 or {}).items()}
    return out_e, out_a


def check_scales(config: DeviceConfig) -> None:
    """``ConfigError`` unless every ``*_energy_scale`` / ``*_area_scale`` field is in (0, 1e6]."""
    from codesign.errors import check_range

    for f in dataclasses.fields(config):
        if f.name.endswith(ENERGY_SCALE_SUFFIX) or f.name.endswith(AREA_SCALE_SUFFIX):
            check_range(f.name, getattr(config, f.name), 1e-9, 1e6)


def power_limit_reasons(
    power_mw: float,
    area_mm2: float,
    *,
    max_power_w: float,
    max_power_density_w_per_cm2: float | None = None,
    power_field: str = "max_power_w",
    density_field: str = "max_power_density_w_per_cm2",
    what: str = "chip",
) -> list[str]:
    """Why ``power_mw`` drawn on ``area_mm2`` breaks a power or power-density limit ([] if not).

    A limit of 0 (or None) is not checked. Each reason names the figure, the limit and the
    config field that sets it, as :meth:`Device.feasibility` does for physical limits.
    """
    reasons = []
    watts = power_mw * 1e-3
    if max_power_w and watts > max_power_w:
        reasons.append(f"{what} power {watts:.4g} W at the operating rate exceeds {power_field}="
                       f"{max_power_w:.4g} W; lower its held (static) power or its rate, or raise {power_field}")
    if max_power_density_w_per_cm2 and area_mm2 > 0:
        density = watts / (area_mm2 * 1e-2)
        if density > max_power_density_w_per_cm2:
            reasons.append(f"{what} power density {density:.4g} W/cm^2 ({watts:.4g} W on {area_mm2:.4g} mm^2) "
                           f"exceeds {density_field}={max_power_density_w_per_cm2:.4g} W/cm^2; lower its held "
                           f"(static) power or its rate, or raise {density_field}")
    return reasons


def required_cost_check(device: Device, costs: Mapping[str, float], size: tuple[int, int] | None = None) -> None:
    """Raise ``ConfigError`` if a device's cost breaks the cost rules (plugin contract).

    Every device reports :data:`REQUIRED_COST_KEYS`; every numeric value is finite and >= 0
    (a negative energy, latency or area is refused at whatever size it appears).

    Args:
        device: the device that priced it (named in the message).
        costs: what ``device.cost(in, out)`` returned.
        size: ``(in, out)`` it was priced at, for the message.
    """
    where = "" if size is None else f" at {size[1]}x{size[0]}"
    missing = [k for k in REQUIRED_COST_KEYS if k not in costs]
    if missing:
        raise ConfigError(
            f"device {device.name!r} cost model lacks {', '.join(missing)}; "
            f"every device must report {', '.join(REQUIRED_COST_KEYS)}"
        )
    for key, value in costs.items():
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            continue
        if not math.isfinite(value) or value < 0:
            raise ConfigError(f"device {device.name!r} (plugin): cost {key} = {value!r}{where} breaks the cost rules "
                              "(every cost value finite and >= 0); fix the plugin's cost()")


__all__: Sequence[str] = (
    "AREA_SCALE_SUFFIX",
    "CalibratedRange",
    "ENERGY_SCALE_SUFFIX",
    "calibrate",
    "check_scales",
    "scale_field",
    "power_limit_reasons",
    "Choice",
    "DEFAULT_OPERATING_MODE",
    "DEFAULT_T_INFERENCE_S",
    "dac",
    "Device",
    "DeviceConfig",
    "DeviceLayer",
    "FloatRange",
    "IntRange",
    "Mode",
    "OPERATING_MODES",
    "API_CHANGES",
    "DEVICE_API_VERSION",
    "Preset",
    "REQUIRED_COST_KEYS",
    "field_ranges",
    "physical_range",
    "SearchSpec",
    "check_export_manifest",
    "check_inference_time",
    "decode_device_spec",
    "held_time_ns",
    "instance_generator",
    "preset_table",
    "quantize_symmetric",
    "read_export_arrays",
    "required_cost_check",
    "shared_budget_reasons",
    "standalone_energy_pj",
    "ste",
)
