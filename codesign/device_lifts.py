"""Device-native lifts as dictionaries: ``<device>.<primitive>`` (issue 30).

A device's primitive (:mod:`codesign.devices.lifts`) becomes a
:class:`~codesign.dictionaries.Dictionary` ``[1, z, phi(z)]`` named ``<device>.<primitive>``
(``photonic_mzi.cosine``): its ``transform`` is the primitive's exact math (noise and
quantisation off), on which the student is fitted, saved and exported; the device's simulation
of it (:meth:`~codesign.devices.lifts.Lift.layer`) runs in every hardware draw and its price
(:meth:`~codesign.devices.lifts.Lift.cost`) replaces the host's lifting in the inference cost.

These names are not in the dictionary registry (a host search does not pick them up): the
functions here resolve both kinds, host dictionaries by the registry and device lifts by their
device's :meth:`~codesign.devices.base.Device.lifts`.

Primitives that take the ``rff`` dictionary's parameters (``features``, ``bandwidth``) and a
cosine of ``W z + u`` (``uses_offset``) are fitted with ``rff``'s own draw of ``W`` and ``u``
(:func:`codesign.dictionaries.draw_fourier_features`, width by its median heuristic) when the
``rff`` dictionary is installed, so that the same seed gives the host's ``rff`` and the device's
cosine the same projection.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Iterable

import torch

from .devices import get_device_class, list_devices
from .devices.lifts import LIFT_SEPARATOR, Lift, ProjectionLift, device_lifts, lift_name, lift_problem, split_lift_name
from .dictionaries import Dictionary, create_dictionary, get_dictionary_class
from .errors import ConfigError
from .opcounts import OpCounts
from .specs import SearchSpec

#: Where the dictionary lift may run.
LIFT_PLACEMENTS = ("host", "device")


def is_device_lift(name: str) -> bool:
    """Whether ``name`` is a device-native dictionary (``<device>.<primitive>``)."""
    return LIFT_SEPARATOR in str(name)


def primitives(device: str) -> dict[str, type[Lift]]:
    """``{primitive: Lift subclass}`` of installed device ``device`` (checked against the contract)."""
    cls = get_device_class(device)
    lifts = device_lifts(cls)
    for name, lift in lifts.items():
        problem = lift_problem(lift, name)
        if problem:
            raise ConfigError(f"device {device!r} declares a broken lift {name!r}: {problem}")
    return lifts


def device_lift_names(device: str) -> list[str]:
    """The device-native dictionaries of ``device`` (``<device>.<primitive>``), in declared order."""
    return [lift_name(device, p) for p in primitives(device)]


def resolve_lift(device: str, dictionary: str, *, default_ok: bool = False) -> str:
    """The device-native dictionary ``<device>.<primitive>`` that ``--dictionary`` names on ``device``.

    ``dictionary`` is the primitive (``cosine``) or its full name (``photonic_mzi.cosine``). With
    ``default_ok``, the default host dictionary stands for the device's first primitive.

    Raises:
        ConfigError: a device with no primitives, or one that does not compute ``dictionary``,
            in one line listing what it computes.
    """
    lifts = primitives(device)
    if not lifts:
        raise ConfigError(f"device {device!r} declares no nonlinear primitives, so the lift cannot run on it; "
                          "use --lift-placement host (devices with primitives: "
                          f"{', '.join(d for d in list_devices() if device_lifts(get_device_class(d))) or 'none'})")
    parts = split_lift_name(dictionary)
    primitive = dictionary
    if parts is not None:
        if parts[0] != device:
            raise ConfigError(f"dictionary {dictionary!r} is a lift of device {parts[0]!r}, not of {device!r}; "
                              f"{device} computes {', '.join(lifts)}")
        primitive = parts[1]
    if primitive not in lifts:
        if default_ok:
            return lift_name(device, next(iter(lifts)))
        raise ConfigError(f"device {device!r} cannot compute the dictionary {dictionary!r} (--lift-placement device); "
                          f"its primitives: {', '.join(lifts)} (--dictionary NAME), or use --lift-placement host")
    return lift_name(device, primitive)


@functools.cache
def _adapter(device: str, primitive: str) -> type[Dictionary]:
    lift_cls = primitives(device)[primitive]
    name = lift_name(device, primitive)
    return type(f"DeviceLift_{device}_{primitive}", (DeviceLiftDictionary,), {
        "name": name, "Params": lift_cls.Params, "lift_class": lift_cls, "device_name": device,
        "uses_seed": bool(lift_cls.uses_seed), "__doc__": f"{name}: {lift_cls.description}"})


def dictionary_class(name: str) -> type[Dictionary]:
    """The dictionary class of ``name``: a registered dictionary or a device-native one."""
    parts = split_lift_name(name)
    if parts is None:
        return get_dictionary_class(name)
    device, primitive = parts
    resolve_lift(device, name)  # one line if the device or the primitive is unknown
    return _adapter(device, primitive)


def make_dictionary(name: str, **params: Any) -> Dictionary:
    """Build dictionary ``name`` (registered or device-native) with ``params``."""
    if not is_device_lift(name):
        return create_dictionary(name, **params)
    return dictionary_class(name)(**params)


class DeviceLiftDictionary(Dictionary):
    """``[1, z, phi(z)]`` with ``phi`` a device primitive's exact math (a subclass per primitive).

    ``lift_`` is the fitted :class:`~codesign.devices.lifts.Lift` (no device attached: the
    pipeline needs only its math); :meth:`device_lift` attaches a device to simulate and price it.
    """

    name = "device_lift"
    lift_class: type[Lift]
    device_name: str

    @classmethod
    def search_space(cls) -> dict[str, SearchSpec]:
        return dict(cls.lift_class.search_space())

    def n_features(self, rank: int) -> int:
        return 1 + rank + self.lift_class(None, **self.params()).n_outputs(rank)

    def fit(self, z: torch.Tensor, seed: int = 0) -> "DeviceLiftDictionary":
        super().fit(z, seed)
        lift = self.lift_class(None, **self.params())
        projection = _rff_projection(lift, z, seed)
        if projection is not None:
            lift.set_projection(z, *projection)
        else:
            lift.fit(z, seed)
        self.lift_ = lift
        return self

    def transform(self, z: torch.Tensor) -> torch.Tensor:
        out = self.linear_part(z)
        out[:, z.shape[1] + 1 :] = self.lift_.ideal(z)
        return out

    def lift_ops(self, rank: int) -> OpCounts:
        """The same math on the digital host (for a comparison; ``--lift-placement device`` prices
        the device's :meth:`~codesign.devices.lifts.Lift.cost` instead): a projection's
        multiplies and adds and one elementary function per feature."""
        m = self.lift_class(None, **self.params()).n_outputs(rank)
        return OpCounts(mults=m * rank, adds=m * rank, exps=m, params=m * (rank + 1), inputs=rank,
                        outputs=self.n_features(rank))

    def device_lift(self, device) -> Lift:
        """The fitted lift with ``device`` attached (to build its layer and price it)."""
        if device.name != self.device_name:
            raise ConfigError(f"dictionary {self.name!r} is computed on {self.device_name!r}, not on {device.name!r}")
        lift = self.lift_class(device, **self.params())
        lift.load_state_dict(self.lift_.state_dict())
        return lift

    def onnx_columns(self, g, z: str) -> str:
        """The lift's nonlinear columns in an ONNX graph ``g`` from the scores ``z`` (the exact
        math, noise off): the primitive's :meth:`~codesign.devices.lifts.ProjectionLift.onnx`."""
        onnx = getattr(self.lift_, "onnx", None)
        if onnx is None:
            raise ConfigError(f"the device lift {self.name!r} has no ONNX form (its Lift defines no onnx(g, z)); "
                              "export its student with --no-onnx or give the primitive an onnx method")
        return onnx(g, z)

    def state_dict(self) -> dict:
        """``rank_`` and the lift's fitted state, its keys prefixed ``lift_`` (flat: the export
        writes each array to ``frontend.npz``)."""
        return {**super().state_dict(), **{f"lift_{k}": v for k, v in self.lift_.state_dict().items()}}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.lift_ = self.lift_class(None, **self.params())
        self.lift_.load_state_dict({k[len("lift_"):]: v for k, v in state.items() if k.startswith("lift_")})


def _rff_projection(lift: Lift, z: torch.Tensor, seed: int):
    """``(W, u, sigma)`` drawn exactly as the ``rff`` dictionary draws them, or None (not a
    cosine projection lift, or no ``rff`` dictionary installed)."""
    if not (isinstance(lift, ProjectionLift) and lift.uses_offset):
        return None
    try:
        from . import dictionaries as d

        draw, median = d.draw_fourier_features, d.median_distance
    except AttributeError:  # an older codesign without rff: the lift draws the same distribution itself
        return None
    sigma = lift.config.bandwidth * median(z, seed)
    if not sigma > 0:
        return None
    w, u = draw(int(z.shape[1]), lift.n_outputs(int(z.shape[1])), sigma, seed)
    return w, u, sigma


def lift_params_by_name(devices: Iterable[str] | None = None) -> dict[str, list[tuple[str, dataclasses.Field]]]:
    """``{param: [(device-native dictionary, field), ...]}`` over every installed device's primitives."""
    out: dict[str, list[tuple[str, dataclasses.Field]]] = {}
    for device in list_devices() if devices is None else devices:
        try:
            lifts = primitives(device)
        except ConfigError:
            continue
        for primitive, cls in lifts.items():
            for f in dataclasses.fields(cls.Params):
                out.setdefault(f.name, []).append((lift_name(device, primitive), f))
    return out


__all__ = ["LIFT_PLACEMENTS", "DeviceLiftDictionary", "device_lift_names", "dictionary_class", "is_device_lift",
           "lift_params_by_name", "make_dictionary", "primitives", "resolve_lift"]
