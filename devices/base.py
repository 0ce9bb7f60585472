"""The device API every hardware model implements, built-in or third-party.

A device is three things kept apart (aihwkit's pipeline, brevitas's count/cost split):

* a frozen dataclass **config** of plain values (units in the field names), validated at
  construction; ``Device.with_overrides({"field": value})`` is how the CLI's ``--set`` reaches it;
* a **layer** factory: ``device.layer(in_features, out_features)`` returns a
  :class:`DeviceLayer`, a drop-in ``torch.nn.Module`` for the student's ``x @ K.T``. It is
  programmed from a float matrix with :meth:`DeviceLayer.load_matrix`, draws fresh noise in each
  training forward pass, passes gradients straight through quantizers, and after
  :meth:`DeviceLayer.draw_instance` evaluates deterministically as one concrete piece of hardware;
* a **cost** model: ``device.cost(in_features, out_features)`` returns named metrics whose names
  carry their units. Every device reports at least ``energy_pj`` (per inference, i.e. one
  matrix-vector product), ``latency_ns`` (per inference) and ``area_mm2``, plus its own counts.

and the **search space** of its own constraints, declared with the plain specs below so that
``search/`` can turn them into Ray Tune distributions without the device importing Ray.

Devices are discovered through the ``codesign.devices`` entry-point group (see
:mod:`codesign.devices.registry`); the built-ins register there too.
"""

from __future__ import annotations

import abc
import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping, Sequence

import torch
from torch import nn

from codesign.errors import ConfigError
from codesign.specs import Choice, FloatRange, IntRange, SearchSpec

#: Cost keys every device must report; ``search --cost energy`` picks ``energy_pj`` and so on.
REQUIRED_COST_KEYS = ("energy_pj", "latency_ns", "area_mm2")


# Search specs live in the bottom layer (plugins of every kind use them); re-exported here.


# --------------------------------------------------------------------------- config
@dataclass(frozen=True)
class DeviceConfig:
    """Base of every device config: frozen plain data, validated in ``__post_init__``.

    Subclasses declare fields with defaults (a published device) and implement
    :meth:`validate`, raising :class:`codesign.errors.ConfigError` with the field name and the
    allowed range (use :func:`codesign.errors.check_range`).
    """

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:  # pragma: no cover - trivial default
        """Check every field; raise ``ConfigError`` naming the field and its allowed range."""

    @classmethod
    def field_docs(cls) -> dict[str, tuple[Any, str]]:
        """``{field: (default, one-line doc)}`` for ``codesign devices``."""
        out = {}
        for f in dataclasses.fields(cls):
            default = f.default if f.default is not dataclasses.MISSING else None
            out[f.name] = (default, f.metadata.get("doc", ""))
        return out

    def replace(self, overrides: Mapping[str, Any]) -> "DeviceConfig":
        """A copy with ``overrides`` applied; an unknown field is an error listing the known ones.

        String values (from ``--set field=value``) are converted to the field's default type.
        """
        names = {f.name: f for f in dataclasses.fields(self)}
        converted = {}
        for key, value in overrides.items():
            if key not in names:
                raise ConfigError(
                    f"unknown field {key!r} for {type(self).__name__}; "
                    f"known fields: {', '.join(names)}"
                )
            converted[key] = _convert(key, value, getattr(self, key))
        return dataclasses.replace(self, **converted)


def _convert(name: str, value: Any, current: Any) -> Any:
    """Convert a CLI string to the type of the field's current value."""
    if not isinstance(value, str) or isinstance(current, str):
        return value
    try:
        if isinstance(current, bool):
            if value.lower() in ("1", "true", "yes", "on"):
                return True
            if value.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if isinstance(current, int):
            return int(value)
        if isinstance(current, float):
            return float(value)
    except ValueError:
        raise ConfigError(
            f"{name}={value!r}: expected a value of type {type(current).__name__}"
        ) from None
    return value


# --------------------------------------------------------------------------- layer
class DeviceLayer(nn.Module, abc.ABC):
    """Drop-in for the student's matrix product ``x @ K.T`` on one piece of hardware.

    ``forward(x)`` takes ``x`` of shape ``[batch, in_features]`` and returns
    ``[batch, out_features]``. Modes:

    * ``train()``: non-idealities drawn fresh at every forward pass; quantizers pass gradients
      straight through; gradients reach the layer's trainable parameters (which represent K).
    * ``eval()`` after ``draw_instance(seed)``: one concrete, seeded hardware instance (its
      programming errors fixed); the output is a deterministic function of ``x`` and ``seed``.
    * ``eval()`` with no instance drawn: the nominal device (quantization applied, no noise).
    """

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        if in_features < 1 or out_features < 1:
            raise ConfigError(
                f"layer size {out_features}x{in_features}: both sizes must be >= 1"
            )
        self.in_features = in_features
        self.out_features = out_features

    @abc.abstractmethod
    def load_matrix(self, matrix: torch.Tensor) -> None:
        """Program the float matrix ``matrix`` (shape ``[out_features, in_features]``)."""

    @abc.abstractmethod
    def effective_matrix(self) -> torch.Tensor:
        """The noise-free matrix the layer currently implements, ``[out, in]`` (for reports)."""

    @abc.abstractmethod
    def draw_instance(self, seed: int) -> None:
        """Fix a concrete hardware instance drawn with ``seed``; eval is then deterministic."""

    def clear_instance(self) -> None:
        """Forget a drawn instance (eval goes back to the nominal device)."""


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

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        """Update (training) or read (eval) the range for values ``y``; returns a scalar tensor."""
        with torch.no_grad():
            if self.training or bool(torch.isnan(self.value)):
                batch_max = y.detach().abs().amax().clamp_min(1e-30).to(self.value.dtype)
                if bool(torch.isnan(self.value)):
                    self.value.copy_(batch_max)
                else:
                    self.value.lerp_(batch_max, self.momentum)
        return self.value


# --------------------------------------------------------------------------- device
class Device(abc.ABC):
    """A named hardware model: config + layer factory + cost model + search space.

    Subclasses set ``name``, ``Config`` and ``description`` and implement :meth:`layer`,
    :meth:`cost` and :meth:`search_space`.
    """

    name: ClassVar[str]
    Config: ClassVar[type[DeviceConfig]]
    description: ClassVar[str] = ""

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

    @abc.abstractmethod
    def layer(self, in_features: int, out_features: int) -> DeviceLayer:
        """A fresh :class:`DeviceLayer` of the given size for this config."""

    @abc.abstractmethod
    def cost(self, in_features: int, out_features: int) -> dict[str, float]:
        """Metrics of one ``out x in`` matrix-vector product on this device.

        Keys carry units (``energy_pj``, ``latency_ns``, ``area_mm2``, ``n_mzi``...) and must
        include :data:`REQUIRED_COST_KEYS`.
        """

    @classmethod
    @abc.abstractmethod
    def search_space(cls) -> dict[str, SearchSpec]:
        """The device's own constraints a search may vary: ``{config field: spec}``."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config})"


def required_cost_check(device: Device, costs: Mapping[str, float]) -> None:
    """Raise ``ConfigError`` if a device's cost dict lacks a required key (plugin contract)."""
    missing = [k for k in REQUIRED_COST_KEYS if k not in costs]
    if missing:
        raise ConfigError(
            f"device {device.name!r} cost model lacks {', '.join(missing)}; "
            f"every device must report {', '.join(REQUIRED_COST_KEYS)}"
        )


__all__: Sequence[str] = (
    "CalibratedRange",
    "Choice",
    "dac",
    "Device",
    "DeviceConfig",
    "DeviceLayer",
    "FloatRange",
    "IntRange",
    "REQUIRED_COST_KEYS",
    "SearchSpec",
    "instance_generator",
    "quantize_symmetric",
    "required_cost_check",
    "ste",
)
