"""Dictionaries psi that lift PCA scores into the space where the student is linear.

A dictionary is one subclass of :class:`Dictionary`: a ``name``, a frozen dataclass ``Params``
of its constructor's parameters (plain values, validated at construction), a ``search_space()``
over those parameters (the plain specs of :mod:`codesign.specs`), ``n_features``, ``fit`` and
``transform``. Dictionaries are discovered through the ``codesign.dictionaries`` entry-point
group, loaded lazily and cached; the built-ins register there exactly as a third-party plugin
does (see ``pyproject.toml``). Every dictionary's first output column is the constant 1, which
folds the student's bias into K.

* ``monomial`` (``degree=d``): every monomial of the r PCA scores up to total degree d,
  constant and cross terms included, in graded order (1, z1..zr, z1^2, z1 z2, ...):
  ``C(r + d, d)`` features.
* ``rbf`` (``centers=n``): ``[1, z, exp(-|z - c_j|^2 / (2 sigma^2))]`` with the n centres c_j
  placed by k-means (k-means++ seeding, Lloyd iterations) on the training scores. Width rule
  (the "median heuristic"): sigma is the median Euclidean distance between pairs of distinct
  centres, so a centre's neighbours sit about one width away whatever the rank. The linear
  terms are kept, as is usual for EDMD's RBF dictionaries, so the RBF student can never be
  worse than a linear one. ``1 + r + n`` features.
* ``rff`` (``features=n``, ``bandwidth=b``): random Fourier features (Rahimi & Recht, "Random
  features for large-scale kernel machines", NIPS 2007), ``[1, z, cos(W z + u)]`` with
  ``W`` ``[n, r]`` drawn from ``N(0, 1 / sigma^2)`` and phases ``u`` uniform in ``[0, 2 pi)``,
  both from the seed. ``2 cos(w.x + u) cos(w.y + u)`` averages to the Gaussian kernel
  ``exp(-|x - y|^2 / (2 sigma^2))``, so the student is a linear model on a Monte-Carlo
  approximation of that kernel's features. Width rule: ``sigma = bandwidth x`` the median
  Euclidean distance between training scores (the median heuristic, on a seeded sample of
  :data:`RFF_MEDIAN_ROWS` rows), so ``bandwidth`` is scale-free and one search range fits every
  PCA rank; the fitted ``sigma_``, ``W`` and ``u`` are the dictionary's state, so a reloaded or
  exported student lifts exactly as the fitted one. The constant and linear terms are kept as
  in ``rbf``. ``1 + r + n`` features. The lift itself is :func:`draw_fourier_features` and
  :func:`fourier_features`, for device-native lifts that compute the same cosines.
"""

from __future__ import annotations

import abc
import dataclasses
import inspect
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterable, Mapping

import numpy as np
import torch

from .errors import ConfigError, check_range
from .opcounts import OpCounts
from .options import PlainConfig, convert_text
from .plugins import PluginRegistry
from .specs import Choice, FloatRange, IntRange, SearchSpec

GROUP = "codesign.dictionaries"
#: The dictionary a :class:`~codesign.distill.DistillConfig` uses unless told otherwise.
DEFAULT_DICTIONARY = "monomial"


# --------------------------------------------------------------------------- parameters
@dataclass(frozen=True)
class DictionaryParams(PlainConfig):
    """Base of every dictionary's ``Params``: frozen plain data, validated in ``__post_init__``
    (see :class:`~codesign.options.PlainConfig`)."""


# --------------------------------------------------------------------------- the base class
class Dictionary(abc.ABC):
    """A fixed nonlinear lift ``psi: R^r -> R^F`` whose column 0 is the constant 1.

    The constructor only stores its parameters (``Monomial(3)``, ``RBF(centers=50)``) in
    ``self.config``, an instance of the class's ``Params``; :meth:`fit` learns data-dependent
    state (trailing underscore) and returns ``self``.

    Class attributes a subclass sets:
        name: the registry name (the entry point's name).
        Params: a frozen dataclass (subclass of :class:`DictionaryParams`) whose fields all
            have defaults.
        uses_seed: whether ``fit`` depends on its seed (False for a deterministic lift, whose
            cached features are then shared by every seed).

    The search caps every :class:`~codesign.specs.IntRange` parameter of ``search_space()`` by
    bisection under the memory budget, so ``n_features`` must not decrease as such a parameter
    grows.
    """

    name: ClassVar[str]
    Params: ClassVar[type[DictionaryParams]] = DictionaryParams
    uses_seed: ClassVar[bool] = True

    def __init__(self, *args: Any, **params: Any) -> None:
        names = [f.name for f in dataclasses.fields(self.Params)]
        if len(args) > len(names):
            raise ConfigError(
                f"{self.name}: {len(args)} positional parameters given, but it takes at most {len(names)} "
                f"({', '.join(names) or 'none'})"
            )
        for key, value in zip(names, args):
            if key in params:
                raise ConfigError(f"{self.name}: parameter {key!r} given twice")
            params[key] = value
        self.config = self.make_params(params)

    @classmethod
    def make_params(cls, values: Mapping[str, Any]) -> DictionaryParams:
        """``cls.Params`` from ``values`` (missing fields take their defaults).

        A string value (from a command line) is converted to the type of the field's default;
        an unknown key is an error that lists the dictionary's parameters.
        """
        fields = {f.name: f for f in dataclasses.fields(cls.Params)}
        unknown = sorted(set(values) - set(fields))
        if unknown:
            raise ConfigError(
                f"unknown parameter(s) {', '.join(map(repr, unknown))} for dictionary {cls.name!r}; "
                f"its parameters: {', '.join(fields) or '(none)'}"
            )
        converted = {k: convert_text(k, v, fields[k].default) for k, v in values.items()}
        return cls.Params(**converted)

    @classmethod
    def search_space(cls) -> dict[str, SearchSpec]:
        """``{param: IntRange | FloatRange | Choice}``: what a co-design search varies by default."""
        return {}

    @classmethod
    def limits(cls, n_samples: int) -> dict[str, int]:
        """Upper bounds on integer parameters set by the training data (``n_samples`` rows)."""
        return {}

    @abc.abstractmethod
    def n_features(self, rank: int) -> int:
        """F for PCA rank ``rank`` (constant included)."""

    def fit(self, z: torch.Tensor, seed: int = 0) -> "Dictionary":
        """Learn data-dependent parameters (e.g. centres) from training scores; returns self."""
        self.rank_ = int(z.shape[1])
        return self

    @abc.abstractmethod
    def transform(self, z: torch.Tensor) -> torch.Tensor:
        """Lift ``z`` (``[n, r]`` float32) to ``[n, F]``."""

    def linear_part(self, z: torch.Tensor) -> torch.Tensor:
        """``[n, F]`` for ``z``'s ``n`` rows with the constant and linear columns ``[1, z]`` set;
        :meth:`transform` fills the nonlinear columns ``r + 1:``.

        Raises:
            ConfigError: ``z``'s width is not the rank the dictionary was fitted for.
        """
        n, r = z.shape
        fitted = getattr(self, "rank_", r)
        if r != fitted:
            raise ConfigError(f"{self.name} dictionary fitted for rank {fitted}, got inputs of width {r}")
        out = torch.empty(n, self.n_features(r), dtype=z.dtype)
        out[:, 0] = 1.0
        out[:, 1 : r + 1] = z
        return out

    def lift_ops(self, rank: int) -> OpCounts:
        """The arithmetic of lifting one vector of PCA rank ``rank``, for the hardware cost.

        Count the multiplies, adds and exponentials of :meth:`transform` for one input vector,
        the stored values it reads (centres...), its ``rank`` inputs and ``n_features(rank)``
        outputs. Every dictionary must say: the cost of an inference includes its lifting.
        """
        raise ConfigError(
            f"dictionary {self.name!r} does not count its operations, so its lifting cannot be priced; "
            f"implement {type(self).__name__}.lift_ops(rank) returning codesign.opcounts.OpCounts"
        )

    def params(self) -> dict:
        """Every parameter's value (defaults filled), for configs, cache keys and saved students."""
        return dataclasses.asdict(self.config)

    def state_dict(self) -> dict:
        """Fitted state as plain values and arrays (for saving a student)."""
        return {"rank_": self.rank_}

    def load_state_dict(self, state: dict) -> None:
        """Restore everything :meth:`fit` learned; the dictionary can ``transform`` afterwards."""
        self.rank_ = int(state["rank_"])

    def describe(self) -> str:
        """``name(param=value, ...)``: the searched parameters, and the others where not default."""
        searched = self.search_space()
        shown = {
            f.name: getattr(self.config, f.name) for f in dataclasses.fields(self.config)
            if f.name in searched or getattr(self.config, f.name) != f.default
        }
        return f"{self.name}(" + ", ".join(f"{k}={v}" for k, v in shown.items()) + ")"


# --------------------------------------------------------------------------- registry
def contract_problem(cls: Any, name: str) -> str | None:
    """Why ``cls`` cannot serve as dictionary ``name`` (None if it can).

    The static contract: a concrete :class:`Dictionary` subclass whose ``name`` is ``name``, a
    ``Params`` dataclass (a subclass of the frozen :class:`DictionaryParams`, hence frozen)
    whose fields all have defaults that validate,
    a boolean ``uses_seed``, and a ``search_space()`` of plain specs over ``Params`` fields whose
    bounds and choices are valid parameter values.
    """
    if not (isinstance(cls, type) and issubclass(cls, Dictionary)):
        return f"{cls!r} is not a codesign.dictionaries.Dictionary subclass"
    if inspect.isabstract(cls):
        return f"{cls.__name__} leaves abstract methods unimplemented: {', '.join(sorted(cls.__abstractmethods__))}"
    if getattr(cls, "name", None) != name:
        return f"{cls.__name__}.name is {getattr(cls, 'name', None)!r}, but it is registered as {name!r}"
    params = cls.Params
    if not (isinstance(params, type) and issubclass(params, DictionaryParams) and dataclasses.is_dataclass(params)):
        return f"{cls.__name__}.Params is not a dataclass subclass of codesign.dictionaries.DictionaryParams"
    if params.__dict__.get("__annotations__") and "__dataclass_fields__" not in params.__dict__:
        return f"{cls.__name__}.Params declares fields but is not decorated with @dataclass(frozen=True)"
    fields = {f.name: f for f in dataclasses.fields(params)}
    no_default = [n for n, f in fields.items() if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if no_default:
        return f"{cls.__name__}.Params field(s) without a default: {', '.join(no_default)}"
    if not isinstance(cls.uses_seed, bool):
        return f"{cls.__name__}.uses_seed is {cls.uses_seed!r}; expected True or False"
    try:
        params()
    except Exception as exc:  # noqa: BLE001 - reported as the reason
        return f"{cls.__name__}.Params() does not validate its own defaults: {type(exc).__name__}: {exc}"
    try:
        space = cls.search_space()
    except Exception as exc:  # noqa: BLE001
        return f"{cls.__name__}.search_space() raised {type(exc).__name__}: {exc}"
    if not isinstance(space, Mapping):
        return f"{cls.__name__}.search_space() returned {type(space).__name__}; expected a dict {{param: spec}}"
    for key, spec in space.items():
        if key not in fields:
            return f"{cls.__name__}.search_space() has {key!r}, which is not a Params field ({', '.join(fields)})"
        if isinstance(spec, Choice):
            values = list(spec.values)
        elif isinstance(spec, (IntRange, FloatRange)):
            values = [spec.low, spec.high]
        else:
            return f"{cls.__name__}.search_space()[{key!r}] is {spec!r}; expected IntRange, FloatRange or Choice"
        if not values:
            return f"{cls.__name__}.search_space()[{key!r}] is empty"
        for v in values:
            try:
                params(**{key: v})
            except Exception as exc:  # noqa: BLE001
                return f"{cls.__name__}.search_space()[{key!r}] holds the invalid value {v!r}: {exc}"
    return None


#: Every installed dictionary (built-ins included), loaded on first use.
REGISTRY = PluginRegistry(GROUP, "dictionary", "known dictionaries", contract_problem)


def register_dictionary(cls: type[Dictionary]) -> type[Dictionary]:
    """Class decorator: make ``cls`` available under ``cls.name`` in this process.

    Installed plugins use the ``codesign.dictionaries`` entry-point group instead (and so do
    the built-ins); this is for a dictionary defined in a script, a notebook or a test.
    """
    return REGISTRY.register(cls)


def refresh() -> None:
    """Forget the cached entry points (after installing a plugin in the same process)."""
    REGISTRY.refresh()


def list_dictionaries(pattern: str | None = None) -> list[str]:
    """Names of the dictionaries that load, sorted; ``pattern`` filters them (``"rb*"``)."""
    return REGISTRY.names(pattern)


def broken_dictionaries() -> dict[str, str]:
    """Installed dictionary plugins that failed to load or break the contract, with the reason."""
    return REGISTRY.failures()


def get_dictionary_class(name: str) -> type[Dictionary]:
    """The dictionary class registered as ``name``; an unknown name lists the installed ones."""
    return REGISTRY.get(name)


def create_dictionary(name: str, **params: Any) -> Dictionary:
    """Build dictionary ``name`` with ``params`` (missing ones take their defaults)."""
    return get_dictionary_class(name)(**params)


def params_by_name(dictionaries: Iterable[str] | None = None) -> dict[str, list[str]]:
    """``{param: [dictionaries that take it]}`` over ``dictionaries`` (default: every installed one).

    This is what a command line needs to offer one flag per parameter (``--degree``,
    ``--centers``) and to tell which dictionary a parameter belongs to.
    """
    out: dict[str, list[str]] = {}
    for name in list_dictionaries() if dictionaries is None else dictionaries:
        for f in dataclasses.fields(get_dictionary_class(name).Params):
            out.setdefault(f.name, []).append(name)
    return out


# --------------------------------------------------------------------------- built-ins
class Monomial(Dictionary):
    """All monomials up to total degree ``degree`` (constant and cross terms included)."""

    name = "monomial"
    uses_seed = False  # a deterministic lift: every seed shares its features

    @dataclass(frozen=True)
    class Params(DictionaryParams):
        """Parameters of the monomial dictionary."""

        degree: int = field(default=2, metadata={"doc": "total degree d; C(r + d, d) features at PCA rank r"})

        def validate(self) -> None:
            check_range("degree", self.degree, 1, 10, integer=True)

    @classmethod
    def search_space(cls) -> dict[str, SearchSpec]:
        return {"degree": Choice((2, 3))}

    def n_features(self, rank: int) -> int:
        return math.comb(rank + self.config.degree, self.config.degree)

    def fit(self, z: torch.Tensor, seed: int = 0) -> "Monomial":
        super().fit(z, seed)
        self._build_index(self.rank_)
        return self

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self._build_index(self.rank_)

    def _build_index(self, r: int) -> None:
        # Each degree-k monomial is a degree-(k-1) monomial times one variable whose index is
        # >= the largest index already in it; storing (parent, variable) pairs lets one
        # gather-and-multiply per degree build the whole block without Python loops over terms.
        self._levels: list[tuple[torch.Tensor, torch.Tensor]] = []
        last = torch.arange(r)  # largest variable index of each degree-1 monomial
        for _ in range(2, self.config.degree + 1):
            parents, variables = [], []
            for j in range(r):
                p = torch.nonzero(last <= j).flatten()
                parents.append(p)
                variables.append(torch.full_like(p, j))
            parent = torch.cat(parents)
            var = torch.cat(variables)
            self._levels.append((parent, var))
            last = var

    def lift_ops(self, rank: int) -> OpCounts:
        """One multiply per monomial of degree >= 2 (its parent monomial times one variable)."""
        n = self.n_features(rank)
        return OpCounts(mults=n - 1 - rank, inputs=rank, outputs=n)

    def transform(self, z: torch.Tensor) -> torch.Tensor:
        out, r = self.linear_part(z), z.shape[1]
        prev, col = z, r + 1
        for parent, var in self._levels:
            block = prev[:, parent] * z[:, var]
            out[:, col : col + block.shape[1]] = block
            col += block.shape[1]
            prev = block
        return out


class RBF(Dictionary):
    """Gaussian radial basis functions at k-means centres, plus the constant and linear terms."""

    name = "rbf"

    @dataclass(frozen=True)
    class Params(DictionaryParams):
        """Parameters of the RBF dictionary."""

        centers: int = field(default=200, metadata={
            "doc": "Gaussian centres n, placed by k-means on the training scores; 1 + r + n features"})
        kmeans_iters: int = field(default=25, metadata={"doc": "most Lloyd iterations of k-means"})

        def validate(self) -> None:
            check_range("centers", self.centers, 1, 100_000, integer=True)
            check_range("kmeans_iters", self.kmeans_iters, 1, 10_000, integer=True)

    @classmethod
    def search_space(cls) -> dict[str, SearchSpec]:
        return {"centers": IntRange(16, 300, log=True)}

    @classmethod
    def limits(cls, n_samples: int) -> dict[str, int]:
        return {"centers": n_samples}  # k-means places at most one centre per sample

    def n_features(self, rank: int) -> int:
        return 1 + rank + self.config.centers

    def fit(self, z: torch.Tensor, seed: int = 0) -> "RBF":
        super().fit(z, seed)
        k = self.config.centers
        if k > z.shape[0]:
            raise ConfigError(f"centers={k} exceeds the {z.shape[0]} training samples; use fewer centres")
        self.centers_ = kmeans(z, k, self.config.kmeans_iters, seed)
        if k == 1:
            self.sigma_ = float(z.std(0).norm())
        else:
            d = torch.cdist(self.centers_.double(), self.centers_.double())
            iu = torch.triu_indices(k, k, 1)
            # np.median: the mean of the two middle distances for an even count of pairs
            # (torch's median would return the lower one).
            self.sigma_ = float(np.median(d[iu[0], iu[1]].cpu().numpy()))
        if not self.sigma_ > 0:
            raise ConfigError("rbf: all k-means centres coincide (the data has no spread); use fewer centres")
        return self

    def lift_ops(self, rank: int) -> OpCounts:
        """Per centre: ``r`` subtractions, ``r`` squares, ``r - 1`` adds, a scale and an exponential;
        the centres (``n x r`` values) are read from memory."""
        c = self.config.centers
        return OpCounts(mults=c * (rank + 1), adds=c * (2 * rank - 1), exps=c, params=c * rank, inputs=rank,
                        outputs=self.n_features(rank))

    def transform(self, z: torch.Tensor) -> torch.Tensor:
        out, r = self.linear_part(z), z.shape[1]
        d2 = torch.cdist(z, self.centers_.to(z.dtype)).square_()
        out[:, r + 1 :] = torch.exp(d2 * (-0.5 / self.sigma_**2))
        return out

    def state_dict(self) -> dict:
        return {**super().state_dict(), "centers_": self.centers_.numpy(), "sigma_": self.sigma_}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.centers_ = torch.as_tensor(np.asarray(state["centers_"]), dtype=torch.float32)
        self.sigma_ = float(state["sigma_"])


def kmeans(z: torch.Tensor, k: int, iters: int, seed: int) -> torch.Tensor:
    """Lloyd's k-means with k-means++ seeding; deterministic for a seed. Returns ``[k, r]``."""
    gen = torch.Generator().manual_seed(seed)
    z = z.float()
    n = z.shape[0]
    # Seeding on a subsample keeps k-means++ O(sample * k) on 60k points.
    sample = z[torch.randperm(n, generator=gen)[: min(n, max(20 * k, 5000))]]
    centres = [sample[torch.randint(len(sample), (1,), generator=gen)].squeeze(0)]
    d2 = (sample - centres[0]).square().sum(1)
    for _ in range(1, k):
        probs = d2 / d2.sum() if d2.sum() > 0 else torch.full_like(d2, 1.0 / len(d2))
        idx = torch.multinomial(probs, 1, generator=gen)
        centres.append(sample[idx].squeeze(0))
        d2 = torch.minimum(d2, (sample - centres[-1]).square().sum(1))
    c = torch.stack(centres)
    for _ in range(iters):
        assign = _nearest(z, c)
        sums = torch.zeros_like(c).index_add_(0, assign, z)
        counts = torch.bincount(assign, minlength=k).unsqueeze(1).float()
        empty = counts.squeeze(1) == 0
        new = torch.where(empty.unsqueeze(1), c, sums / counts.clamp_min(1))
        if torch.allclose(new, c, atol=1e-6):
            c = new
            break
        c = new
    return c


def _nearest(z: torch.Tensor, c: torch.Tensor, chunk: int = 16384) -> torch.Tensor:
    out = torch.empty(z.shape[0], dtype=torch.long)
    for i in range(0, z.shape[0], chunk):
        out[i : i + chunk] = torch.cdist(z[i : i + chunk], c).argmin(1)
    return out


# --------------------------------------------------------------------------- random Fourier features
#: Training rows the median heuristic of ``rff`` measures distances on (a seeded sample):
#: 2000 rows give ~2 million pairs, whose median moves by well under 1 % between samples.
RFF_MEDIAN_ROWS = 2000


def median_distance(z: torch.Tensor, seed: int = 0, rows: int = RFF_MEDIAN_ROWS) -> float:
    """Median Euclidean distance between distinct rows of ``z`` (on a seeded sample of ``rows`` rows).

    The "median heuristic" for a Gaussian kernel's width (Schoelkopf & Smola, "Learning with
    kernels", 2002; Garreau et al., "Large sample analysis of the median heuristic", 2017).
    Computed in float64; ``np.median`` takes the mean of the two middle values of an even count.
    """
    n = int(z.shape[0])
    if n < 2:
        raise ConfigError(f"the median heuristic needs at least 2 training rows, got {n}")
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randperm(n, generator=gen)[: min(n, rows)]
    sample = z[idx].double()
    d = torch.cdist(sample, sample)
    iu = torch.triu_indices(len(sample), len(sample), 1)
    return float(np.median(d[iu[0], iu[1]].numpy()))


def draw_fourier_features(rank: int, n: int, sigma: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(W, u)`` of ``n`` random Fourier features of a Gaussian kernel of width ``sigma`` on ``R^rank``.

    ``W`` ``[n, rank]`` float32 with entries ``N(0, 1 / sigma^2)`` (the kernel's spectral
    density), ``u`` ``[n]`` float32 uniform in ``[0, 2 pi)``; both drawn from a
    ``torch.Generator`` seeded with ``seed`` (the same seed gives the same draws on every
    machine), ``W`` first. For a Gaussian kernel ``k(x, y) = exp(-|x - y|^2 / (2 sigma^2))``,
    ``E[2 cos(w.x + u) cos(w.y + u)] = k(x, y)`` (Rahimi & Recht 2007, Claim 1).
    """
    check_range("rank", rank, 1, None, integer=True)
    check_range("n", n, 1, None, integer=True)
    if not (math.isfinite(sigma) and sigma > 0):
        raise ConfigError(f"sigma={sigma!r}: the kernel width must be a positive finite number")
    gen = torch.Generator().manual_seed(seed)
    g = torch.randn(n, rank, generator=gen, dtype=torch.float64)
    u = torch.rand(n, generator=gen, dtype=torch.float64) * (2 * math.pi)
    return (g / sigma).float(), u.float()


def fourier_features(z: torch.Tensor, weights: torch.Tensor, phases: torch.Tensor) -> torch.Tensor:
    """``cos(z @ weights.T + phases)``: ``[n, r]`` scores to ``[n, F]`` features, in ``z``'s dtype."""
    arg = torch.addmm(phases.to(z.dtype), z, weights.to(z.dtype).T)
    return arg.cos_()


class RFF(Dictionary):
    """Random Fourier features of a Gaussian kernel, plus the constant and linear terms."""

    name = "rff"

    @dataclass(frozen=True)
    class Params(DictionaryParams):
        """Parameters of the random-Fourier-feature dictionary."""

        features: int = field(default=1000, metadata={
            "doc": "random Fourier features n, cos(w.z + u) each; 1 + r + n features"})
        bandwidth: float = field(default=1.0, metadata={
            "doc": "kernel width sigma in units of the median distance between training scores (median heuristic)"})

        def validate(self) -> None:
            check_range("features", self.features, 1, 1_000_000, integer=True)
            check_range("bandwidth", self.bandwidth, 1e-3, 1e3)

    @classmethod
    def search_space(cls) -> dict[str, SearchSpec]:
        return {"features": IntRange(64, 4096, log=True), "bandwidth": FloatRange(0.5, 2.0, log=True)}

    def n_features(self, rank: int) -> int:
        return 1 + rank + self.config.features

    def fit(self, z: torch.Tensor, seed: int = 0) -> "RFF":
        super().fit(z, seed)
        med = median_distance(z, seed)
        if not med > 0:
            raise ConfigError("rff: the training scores all coincide (median distance 0), so the median heuristic "
                              "gives no kernel width; check the data")
        self.sigma_ = self.config.bandwidth * med
        self.weights_, self.phases_ = draw_fourier_features(self.rank_, self.config.features, self.sigma_, seed)
        return self

    def lift_ops(self, rank: int) -> OpCounts:
        """Per feature: ``r`` multiplies and ``r - 1`` adds of ``w.z``, one add of the phase, one
        cosine; ``W`` (``n x r``) and ``u`` (``n``) are read from memory.

        The cosine is counted in ``exps``: the digital host prices an elementary function as
        ``devices.digital.EXP_MULTS`` = 8 multiplies and ``EXP_ADDS`` = 9 adds (Cody-Waite
        range reduction and a degree-6 polynomial, Cephes' ``expf``). Cephes' ``cosf`` costs the
        same order: reduction modulo pi/4 (1 multiply, then 3 multiplies and 3 subtractions of
        the three-part pi/4), ``x^2``, and a degree-3 polynomial in ``x^2`` with ``1 - x^2 / 2``
        (5 multiplies, 4 adds): 10 multiplies and 7 adds.
        """
        n = self.config.features
        return OpCounts(mults=n * rank, adds=n * rank, exps=n, params=n * (rank + 1), inputs=rank,
                        outputs=self.n_features(rank))

    def transform(self, z: torch.Tensor) -> torch.Tensor:
        out, r = self.linear_part(z), z.shape[1]
        out[:, r + 1 :] = fourier_features(z, self.weights_, self.phases_)
        return out

    def state_dict(self) -> dict:
        return {**super().state_dict(), "sigma_": self.sigma_, "weights_": self.weights_.numpy(),
                "phases_": self.phases_.numpy()}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.sigma_ = float(state["sigma_"])
        self.weights_ = torch.as_tensor(np.asarray(state["weights_"]), dtype=torch.float32)
        self.phases_ = torch.as_tensor(np.asarray(state["phases_"]), dtype=torch.float32)
