"""Device-native lifts: nonlinear primitives a device computes, offered as dictionaries (issue 30).

A device declares the primitives it offers in :meth:`Device.lifts`
(``{name: Lift subclass}``; default none). Each primitive is a fixed nonlinear lift
``phi: R^r -> R^m`` the device computes with its own physics (a photodetector's square law, a
modulator's cosine, a crossbar periphery's rectifier, an FPGA's look-up tables), so the host no
longer pays for the lifting. The pipeline turns it into a dictionary ``[1, z, phi(z)]`` (the
constant and the PCA scores kept, as ``rbf`` and ``rff`` keep them) named
``<device>.<primitive>`` (:mod:`codesign.device_lifts`); ``--lift-placement device`` picks it.

A :class:`Lift` has four parts, each read by one consumer:

* ``ideal(z)``: the exact math, noise and quantisation off. The student is fitted on these
  features (as ``--protocol posthoc`` fits on the ideal K), the export writes them
  (``frontend.npz``) and ``--verify`` checks them.
* ``layer()``: a :class:`LiftLayer`, the device's simulation of the lift, with the device's
  quantisation always and its noise in training and in each seeded hardware instance, exactly as
  a :class:`~codesign.devices.base.DeviceLayer` (``draw_instance(seed)``, ``clear_instance()``,
  ``train()`` / ``eval()``); the hardware accuracy runs every draw's test inputs through it.
* ``cost(rank)``: one lift of one vector, priced by the device in the
  :meth:`Device.cost <codesign.devices.base.Device.cost>` conventions (``energy_pj`` the sum of
  its ``*_pj`` components, held power ``static_power_mw`` the sum of its ``*_static_mw``,
  ``latency_ns``, ``area_mm2``), with :meth:`Lift.conversion_keys` naming its converters.
* ``Params`` and ``search_space()``: the lift's own parameters (a frozen
  :class:`~codesign.options.PlainConfig`), searched as a dictionary's are.

Most primitives are a *random projection* computed by the device's own matrix layer followed by
an elementwise nonlinearity of the device's periphery: :class:`ProjectionLift` implements that
shape once (the projection's noise is the device layer's, programmed with the seeded matrix),
and a primitive implements only its nonlinearity, its extra cost and its physics. The built-in
primitives are in :mod:`codesign.devices.native_lifts`; :func:`check_lift` (run by
``check_device`` for every declared primitive) is the contract a plugin's primitive passes.
"""

from __future__ import annotations

import abc
import dataclasses
import inspect
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Mapping

import numpy as np
import torch
from torch import nn

from codesign.errors import ConfigError, check_range
from codesign.options import PlainConfig, convert_text
from codesign.specs import Choice, FloatRange, IntRange, SearchSpec

from .base import DEFAULT_T_INFERENCE_S, DeviceLayer, Mode, check_inference_time, instance_generator

if TYPE_CHECKING:  # pragma: no cover
    from .base import Device

#: Separator of a device-native dictionary's name: ``<device>.<primitive>`` (``photonic_mzi.cosine``).
LIFT_SEPARATOR = "."
#: Training rows the median heuristic measures distances on (a seeded sample), as ``rff``'s.
MEDIAN_ROWS = 2000


@dataclass(frozen=True)
class LiftParams(PlainConfig):
    """Base of every primitive's ``Params``: frozen plain data, validated in ``__post_init__``."""


# --------------------------------------------------------------------------- the layer
class LiftLayer(nn.Module, abc.ABC):
    """The device's simulation of a lift: ``[batch, rank] -> [batch, n_outputs]``.

    The modes are those of a :class:`~codesign.devices.base.DeviceLayer`: ``train()`` draws
    fresh noise per call; ``eval()`` after :meth:`draw_instance` is one seeded chip
    (deterministic); ``eval()`` with no instance is the nominal device (quantised, noise-free).
    """

    def __init__(self, rank: int, n_outputs: int) -> None:
        super().__init__()
        self.rank, self.n_outputs = int(rank), int(n_outputs)
        self._instance_seed: int | None = None
        self._t_inference_s = DEFAULT_T_INFERENCE_S

    @property
    def mode(self) -> Mode:
        if self.training:
            return Mode.TRAINING
        return Mode.INSTANCE if self._instance_seed is not None else Mode.NOMINAL

    @property
    def instance_seed(self) -> int | None:
        return self._instance_seed

    def set_inference_time(self, t_inference_s: float) -> None:
        """Read the lift's programmed state at ``t_inference_s`` seconds after programming."""
        self._t_inference_s = check_inference_time(t_inference_s)

    def draw_instance(self, seed: int, t_inference_s: float | None = None) -> None:
        """Fix the concrete hardware instance ``seed`` (eval is then deterministic)."""
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise ConfigError(f"seed={seed!r}: expected an integer")
        if t_inference_s is not None:
            self.set_inference_time(t_inference_s)
        self._instance_seed = int(seed)
        self._draw(int(seed))

    def clear_instance(self) -> None:
        """Forget the drawn instance: eval goes back to the nominal device."""
        self._instance_seed = None
        self._clear()

    def _draw(self, seed: int) -> None:
        """Hook: fix per-instance state (default: nothing)."""

    def _clear(self) -> None:
        """Hook: free what ``_draw`` fixed (default: nothing)."""

    def noise(self, shape: tuple[int, ...], stream: int, like: torch.Tensor) -> torch.Tensor:
        """Standard normal noise for the current mode (fresh in training, seeded per instance,
        zeros nominal), as :meth:`DeviceLayer.noise <codesign.devices.base.DeviceLayer.noise>`."""
        mode = self.mode
        if mode is Mode.TRAINING:
            return torch.randn(shape, dtype=like.dtype, device=like.device)
        if mode is Mode.NOMINAL:
            return torch.zeros(shape, dtype=like.dtype, device=like.device)
        gen = instance_generator(self._instance_seed, stream)
        return torch.randn(shape, generator=gen, dtype=like.dtype).to(like.device)

    @abc.abstractmethod
    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """``[batch, rank]`` PCA scores to ``[batch, n_outputs]`` lifted features."""


# --------------------------------------------------------------------------- the primitive
class Lift(abc.ABC):
    """A nonlinear primitive a device computes (see the module docstring).

    Class attributes a subclass sets:
        name: the primitive's name (the key under which its device declares it).
        description: one line: what the device computes and the physics behind it.
        Params: a frozen dataclass (subclass of :class:`LiftParams`) whose fields all have defaults.
        nominal_tolerance: largest relative RMS difference between the nominal layer (the
            device's quantisation, no noise) and :meth:`ideal` that :func:`check_lift` accepts.

    The constructor stores the device (which simulates and prices the lift; None for the ideal
    math alone, as the feature pipeline uses it) and the parameters; :meth:`fit` draws and
    calibrates the lift's state (trailing underscore) from training scores and a seed.
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""
    Params: ClassVar[type[LiftParams]] = LiftParams
    nominal_tolerance: ClassVar[float] = 0.1

    def __init__(self, device: "Device | None" = None, **params: Any) -> None:
        self.device = device
        self.config = self.make_params(params)

    @classmethod
    def make_params(cls, values: Mapping[str, Any]) -> LiftParams:
        """``cls.Params`` from ``values``; strings are converted to the field's type, an unknown
        key is an error that lists the parameters."""
        fields = {f.name: f for f in dataclasses.fields(cls.Params)}
        unknown = sorted(set(values) - set(fields))
        if unknown:
            raise ConfigError(f"unknown parameter(s) {', '.join(map(repr, unknown))} for the device lift {cls.name!r}; "
                              f"its parameters: {', '.join(fields) or '(none)'}")
        return cls.Params(**{k: convert_text(k, v, fields[k].default) for k, v in values.items()})

    @classmethod
    def search_space(cls) -> dict[str, SearchSpec]:
        """``{param: IntRange | FloatRange | Choice}`` a search varies (``n_outputs`` must not
        decrease as an ``IntRange`` parameter grows: the search caps it by memory)."""
        return {}

    uses_seed: ClassVar[bool] = True

    @abc.abstractmethod
    def n_outputs(self, rank: int) -> int:
        """m, the nonlinear features of PCA rank ``rank`` (the dictionary adds 1 + r)."""

    @abc.abstractmethod
    def fit(self, z: torch.Tensor, seed: int = 0) -> "Lift":
        """Draw and calibrate the lift's state from training scores ``z`` ``[n, r]``; returns self."""

    @abc.abstractmethod
    def ideal(self, z: torch.Tensor) -> torch.Tensor:
        """The exact lift, noise and quantisation off: ``[n, r] -> [n, m]`` in ``z``'s dtype."""

    @abc.abstractmethod
    def layer(self) -> LiftLayer:
        """The device's simulation of the fitted lift (needs ``self.device``)."""

    @abc.abstractmethod
    def cost(self, rank: int) -> dict[str, float]:
        """One lift of one vector on the device, in the ``Device.cost`` conventions."""

    def conversion_keys(self) -> tuple[str, ...]:
        """The ``*_pj`` components of :meth:`cost` that are conversions (default: the device's)."""
        return tuple(type(self.device).conversion_keys) if self.device is not None else ()

    def feasibility(self, rank: int) -> list[str]:
        """Why the device cannot build the lift at PCA rank ``rank`` ([] when it can)."""
        return []

    def params(self) -> dict:
        """Every parameter's value (defaults filled)."""
        return dataclasses.asdict(self.config)

    def state_dict(self) -> dict:
        """Fitted state as plain values and arrays."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`fit` learned."""

    def _need_device(self) -> "Device":
        if self.device is None:
            raise ConfigError(f"device lift {self.name!r} was built without its device; "
                              "build it with the device (Lift(device, **params)) to simulate or price it")
        return self.device


def median_distance(z: torch.Tensor, seed: int = 0, rows: int = MEDIAN_ROWS) -> float:
    """Median Euclidean distance between distinct rows of ``z`` on a seeded sample (the median
    heuristic of a Gaussian kernel's width; the same rule as the ``rff`` dictionary's)."""
    n = int(z.shape[0])
    if n < 2:
        raise ConfigError(f"the median heuristic needs at least 2 training rows, got {n}")
    gen = torch.Generator().manual_seed(seed)
    sample = z[torch.randperm(n, generator=gen)[: min(n, rows)]].double()
    d = torch.cdist(sample, sample)
    iu = torch.triu_indices(len(sample), len(sample), 1)
    return float(np.median(d[iu[0], iu[1]].numpy()))


def draw_projection(rank: int, n: int, sigma: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(W [n, rank], u [n])``: ``W`` entries ``N(0, 1/sigma^2)``, ``u`` uniform in ``[0, 2 pi)``,
    from a generator seeded with ``seed``, ``W`` first (the draw of the ``rff`` dictionary, so that
    a device lift and ``rff`` with the same seed and width use the same projection)."""
    gen = torch.Generator().manual_seed(seed)
    g = torch.randn(n, rank, generator=gen, dtype=torch.float64)
    u = torch.rand(n, generator=gen, dtype=torch.float64) * (2 * math.pi)
    return (g / sigma).float(), u.float()


@dataclass(frozen=True)
class ProjectionParams(LiftParams):
    """Parameters of a random-projection lift."""

    features: int = field(default=256, metadata={"doc": "nonlinear features m computed on the device; 1 + r + m features"})
    bandwidth: float = field(default=1.0, metadata={
        "doc": "projection width sigma in units of the median distance between training scores (W ~ N(0, 1/sigma^2))"})

    def validate(self) -> None:
        check_range("features", self.features, 1, 1_000_000, integer=True)
        check_range("bandwidth", self.bandwidth, 1e-3, 1e3)


class ProjectionLift(Lift):
    """``phi(z) = f(W z + u)``: a seeded random projection on the device's matrix layer, then the
    periphery's elementwise nonlinearity ``f``.

    ``W`` (``m x r``, entries ``N(0, 1/sigma^2)``, sigma = ``bandwidth`` x the median distance
    between training scores) and the offsets ``u`` (uniform in ``[0, 2 pi)``; a primitive that
    takes no offset ignores them) are drawn from the seed, not trained: the student stays a
    linear model on a fixed dictionary, fitted in closed form, and random features of a kernel
    approximate it better as m grows (Rahimi & Recht, NIPS 2007). ``W`` is programmed into a layer
    of the device (``device.layer(r, m)``), so the projection carries the device's programming
    errors, read noise and converters as the device models them for K.

    Subclasses implement :meth:`f` (the exact nonlinearity), :meth:`periphery` (the device's
    nonlinearity on the projected values, quantised and noisy), :meth:`extra_cost` and may set
    :attr:`uses_offset`.
    """

    Params = ProjectionParams
    #: Whether the nonlinearity takes the offsets ``u`` (cosines do; square laws and rectifiers do not).
    uses_offset: ClassVar[bool] = False

    @classmethod
    def search_space(cls) -> dict[str, SearchSpec]:
        return {"features": IntRange(64, 1024, log=True), "bandwidth": FloatRange(0.5, 2.0, log=True)}

    def n_outputs(self, rank: int) -> int:
        return int(self.config.features)

    def fit(self, z: torch.Tensor, seed: int = 0) -> "ProjectionLift":
        med = median_distance(z, seed)
        if not med > 0:
            raise ConfigError(f"{self.name}: the training scores all coincide (median distance 0); check the data")
        self.sigma_ = self.config.bandwidth * med
        self.weights_, self.offsets_ = draw_projection(int(z.shape[1]), self.config.features, self.sigma_, seed)
        self.calibrate(z)
        return self

    def set_projection(self, z: torch.Tensor, weights: torch.Tensor, offsets: torch.Tensor,
                       sigma: float) -> "ProjectionLift":
        """Fit with the projection ``(W, u)`` drawn elsewhere (the pipeline passes the ``rff``
        dictionary's draw), calibrated on training scores ``z``."""
        self.weights_ = torch.as_tensor(weights, dtype=torch.float32)
        self.offsets_ = torch.as_tensor(offsets, dtype=torch.float32)
        self.sigma_ = float(sigma)
        self.calibrate(z)
        return self

    def calibrate(self, z: torch.Tensor) -> None:
        """Hook: set data-dependent ranges from training scores ``z`` once ``W`` is drawn (default: none)."""

    def projected(self, z: torch.Tensor) -> torch.Tensor:
        """``W z`` exactly, ``[n, m]``."""
        return z @ self.weights_.to(z.dtype).T

    @abc.abstractmethod
    def f(self, a: torch.Tensor) -> torch.Tensor:
        """The exact nonlinearity of the projected values ``a = W z`` (offsets added inside)."""

    @abc.abstractmethod
    def periphery(self, a: torch.Tensor, layer: "ProjectionLiftLayer") -> torch.Tensor:
        """The device's nonlinearity of the projected values ``a`` as the device computes them:
        its quantisation, and its noise through ``layer.noise`` (zeros nominal)."""

    def extra_cost(self, rank: int) -> tuple[dict[str, float], dict[str, float], float]:
        """``(energy and held-power components, area components in um^2, latency in ns)`` of the
        nonlinearity after the projection (default: nothing)."""
        return {}, {}, 0.0

    def ideal(self, z: torch.Tensor) -> torch.Tensor:
        return self.f(self.projected(z))

    def onnx(self, g: Any, z: str) -> str:
        """Write :meth:`ideal` into an ONNX graph: ``g.const(name, array)`` and
        ``g.op(op_type, inputs, output=None)`` add initializers and nodes; returns the output's name.

        The projection is a ``MatMul`` by ``W^T``; the nonlinearity is :meth:`onnx_f`.
        """
        a = g.op("MatMul", [z, g.const(f"{self.name}_weights_t", np.ascontiguousarray(self.weights_.numpy().T))],
                 f"{self.name}_projection")
        return self.onnx_f(g, a)

    def onnx_f(self, g: Any, a: str) -> str:
        """:meth:`f` of the projected values ``a`` as ONNX nodes (default: none, no ONNX form)."""
        raise ConfigError(f"device lift {self.name!r} has no ONNX form of its nonlinearity (define onnx_f)")

    def layer(self) -> "ProjectionLiftLayer":
        return ProjectionLiftLayer(self)

    def projection_size(self, rank: int) -> tuple[int, int]:
        """``(in, out)`` of the device matrix that computes the projection."""
        return rank, self.n_outputs(rank)

    def feasibility(self, rank: int) -> list[str]:
        n_in, n_out = self.projection_size(rank)
        return self._need_device().feasibility(n_in, n_out)

    def cost(self, rank: int) -> dict[str, float]:
        """The device's cost of the ``m x r`` projection plus the nonlinearity's :meth:`extra_cost`."""
        n_in, n_out = self.projection_size(rank)
        base = dict(self._need_device().cost(n_in, n_out))
        parts, areas_um2, latency = self.extra_cost(rank)
        for k, v in parts.items():
            base[k] = base.get(k, 0.0) + float(v)
        base["energy_pj"] = float(base["energy_pj"]) + sum(float(v) for k, v in parts.items() if k.endswith("_pj"))
        static = sum(float(v) for k, v in parts.items() if k.endswith("_static_mw"))
        if static:
            base["static_power_mw"] = float(base.get("static_power_mw", 0.0)) + static
        base["area_mm2"] = float(base["area_mm2"]) + sum(areas_um2.values()) * 1e-6
        base["latency_ns"] = float(base["latency_ns"]) + latency
        if "interval_ns" in base:  # the nonlinearity is one more pipeline stage
            base["interval_ns"] = max(float(base["interval_ns"]), latency)
        base["lift_features"] = float(n_out)
        return base

    def state_dict(self) -> dict:
        return {"sigma_": self.sigma_, "weights_": self.weights_.numpy(), "offsets_": self.offsets_.numpy()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.sigma_ = float(state["sigma_"])
        self.weights_ = torch.as_tensor(np.asarray(state["weights_"]), dtype=torch.float32)
        self.offsets_ = torch.as_tensor(np.asarray(state["offsets_"]), dtype=torch.float32)


class ProjectionLiftLayer(LiftLayer):
    """The device layer programmed with ``W``, then the lift's :meth:`ProjectionLift.periphery`."""

    def __init__(self, lift: ProjectionLift) -> None:
        device = lift._need_device()
        n_in, n_out = lift.projection_size(lift.weights_.shape[1])
        super().__init__(lift.weights_.shape[1], lift.n_outputs(lift.weights_.shape[1]))
        self.lift = lift
        self.projection: DeviceLayer = device.layer(n_in, n_out)
        self.projection.load_matrix(self.program_matrix())
        self.projection.eval()

    def program_matrix(self) -> torch.Tensor:
        """The matrix programmed into the device layer (``W``, ``[m, r]``)."""
        return self.lift.weights_

    def set_inference_time(self, t_inference_s: float) -> None:
        super().set_inference_time(t_inference_s)
        self.projection.set_inference_time(t_inference_s)

    def _draw(self, seed: int) -> None:
        self.projection.draw_instance(seed, t_inference_s=self._t_inference_s)

    def _clear(self) -> None:
        self.projection.clear_instance()

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            a = self.projection(z)
            return self.lift.periphery(a, self)


# --------------------------------------------------------------------------- names and lookup
def device_lifts(device: Any) -> dict[str, type[Lift]]:
    """``{primitive: Lift subclass}`` a device (class or instance) declares (``Device.lifts()``)."""
    cls = device if isinstance(device, type) else type(device)
    lifts = getattr(cls, "lifts", None)
    found = dict(lifts()) if callable(lifts) else {}
    return found


def lift_name(device_name: str, primitive: str) -> str:
    """The dictionary name of a device primitive: ``<device>.<primitive>``."""
    return f"{device_name}{LIFT_SEPARATOR}{primitive}"


def split_lift_name(name: str) -> tuple[str, str] | None:
    """``(device, primitive)`` of a device-native dictionary name, None for a host dictionary."""
    if LIFT_SEPARATOR not in name:
        return None
    device, _, primitive = name.partition(LIFT_SEPARATOR)
    return device, primitive


def lift_problem(cls: Any, name: str) -> str | None:
    """Why ``cls`` cannot serve as the primitive ``name`` (None if it can): the static contract."""
    if not (isinstance(cls, type) and issubclass(cls, Lift)):
        return f"{cls!r} is not a codesign.devices.lifts.Lift subclass"
    if inspect.isabstract(cls):
        return f"{cls.__name__} leaves abstract methods unimplemented: {', '.join(sorted(cls.__abstractmethods__))}"
    if getattr(cls, "name", None) != name:
        return f"{cls.__name__}.name is {getattr(cls, 'name', None)!r}, but it is declared as {name!r}"
    if LIFT_SEPARATOR in name or not name:
        return f"primitive name {name!r} must be non-empty and hold no {LIFT_SEPARATOR!r}"
    params = cls.Params
    if not (isinstance(params, type) and issubclass(params, LiftParams) and dataclasses.is_dataclass(params)):
        return f"{cls.__name__}.Params is not a dataclass subclass of codesign.devices.lifts.LiftParams"
    try:
        params()
    except Exception as exc:  # noqa: BLE001 - reported as the reason
        return f"{cls.__name__}.Params() does not validate its own defaults: {type(exc).__name__}: {exc}"
    fields = {f.name for f in dataclasses.fields(params)}
    for key, spec in cls.search_space().items():
        if key not in fields:
            return f"{cls.__name__}.search_space() has {key!r}, which is not a Params field"
        if not isinstance(spec, (IntRange, FloatRange, Choice)):
            return f"{cls.__name__}.search_space()[{key!r}] is {spec!r}; expected IntRange, FloatRange or Choice"
        values = list(spec.values) if isinstance(spec, Choice) else [spec.low, spec.high]
        for v in values:
            try:
                params(**{key: v})
            except Exception as exc:  # noqa: BLE001
                return f"{cls.__name__}.search_space()[{key!r}] holds the invalid value {v!r}: {exc}"
    return None


__all__ = ["LIFT_SEPARATOR", "Lift", "LiftLayer", "LiftParams", "ProjectionLift", "ProjectionLiftLayer",
           "ProjectionParams", "device_lifts", "draw_projection", "lift_name", "lift_problem", "median_distance",
           "split_lift_name"]
