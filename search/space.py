"""The search space: dictionary, its parameters, PCA rank and the device's own constraints.

:class:`SearchSpace` is an Optuna define-by-run space (a picklable callable taking an Optuna
trial), which Ray Tune's ``OptunaSearch`` accepts as its ``space``. It is conditional:

* ``dictionary``: one of the dictionaries searched (any installed one);
* ``<dictionary>/<param>``: every entry of the drawn dictionary's ``search_space()``, narrowed or
  pinned with ``--space PARAM=SPEC`` (:func:`parse_space_option`). Integer ranges are capped by
  the training set (``Dictionary.limits``) and by the memory budget at the smallest rank
  (bisection: a dictionary's feature count grows with its integer parameters); choices that
  cannot fit even at the smallest rank are left out. The dictionary's name prefixes the
  parameter because Optuna refuses one name with two distributions, and two dictionaries may
  share a parameter name;
* ``pca_rank``: from ``--ranks MIN MAX``, capped by the data's input dimension and by the
  memory budget for the lifted feature matrix of the dictionary and parameters drawn (so a
  large lift is searched at smaller ranks than a small one when memory binds);
* ``device/<field>``: every entry of ``Device.search_space()`` not pinned by ``--set``.

Specs (:class:`~codesign.specs.IntRange` -> int, :class:`~codesign.specs.FloatRange` -> float,
:class:`~codesign.specs.Choice` -> categorical) are plain data; nothing here names a dictionary
or a device, so a plugin installed later is searchable by name.

Ray unflattens the ``/`` names, so a trial's config reads
``{"dictionary": D, D: {param: value}, "pca_rank": 18, "device": {"phase_bits": 6}}``. Records
of older searches kept the dictionary's parameters at the top level (``"degree": 2``);
:func:`normalize_config` reads both.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from codesign.device_lifts import dictionary_class as get_dictionary_class
from codesign.device_lifts import make_dictionary as create_dictionary
from codesign.dictionaries import list_dictionaries
from codesign.errors import ConfigError
from codesign.features import fit_memory, format_bytes
from codesign.students import FitConfig
from codesign.specs import Choice, FloatRange, IntRange, SearchSpec

DEVICE_PREFIX = "device/"
#: Prefix of the distillation dimensions (``kd/temperature``, ``kd/alpha``; method kd only).
KD_PREFIX = "kd/"
#: ``kd/temperature`` and ``kd/alpha`` of a kd search unless the user narrows them: "auto" (chosen
#: on a validation split of the trial's training rows, ``codesign.selection``) or a fixed value.
KD_SPACE = {"temperature": Choice(("auto", 1.0, 2.0, 4.0)), "alpha": Choice(("auto", 0.0, 0.5, 0.9))}
#: Top-level keys of a trial config; a dictionary with one of these names cannot be searched.
CONFIG_KEYS = ("dictionary", "pca_rank", "pca_placement", "device", "kd")
_PLAIN = (type(None), bool, int, float, str)


@dataclass(frozen=True)
class SearchSpace:
    """A conditional space over dictionaries, their parameters, PCA ranks and device fields (plain data).

    Attributes:
        dictionaries: ``{dictionary: {param: IntRange | FloatRange | Choice}}`` in sampling
            order, bounds already capped by the data and the memory budget.
        rank_min: smallest PCA rank.
        rank_max: largest PCA rank (already capped by the input dimension).
        n_rows: rows of the feature matrix (training + validation samples), for the memory cap.
        max_memory: bytes one lifted feature matrix may take.
        device: ``{field: IntRange | FloatRange | Choice}`` from ``Device.search_space()``.
        dropped: ``{dictionary: why}`` for requested dictionaries that cannot fit at all.
        placements: where the PCA projection may run; with more than one, ``pca_placement``
            is sampled (:data:`codesign.inference_cost.PCA_PLACEMENTS`).
        kd: ``{"temperature" | "alpha": IntRange | FloatRange | Choice}``, sampled as
            ``kd/<name>`` (a trial config reads ``{"kd": {"temperature": "auto", "alpha": 0.5}}``);
            empty unless the search's method is kd (:data:`KD_SPACE` by default).
    """

    dictionaries: Mapping[str, Mapping[str, Any]]
    rank_min: int = 2
    rank_max: int = 40
    n_rows: int = 1
    max_memory: int = 1 << 62
    device: Mapping[str, Any] = field(default_factory=dict)
    dropped: Mapping[str, str] = field(default_factory=dict)
    placements: tuple[str, ...] = ("host",)
    kd: Mapping[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------ bounds
    def n_features(self, dictionary: str, params: Mapping[str, Any], rank: int) -> int:
        """Lifted feature count of ``dictionary`` with ``params`` at PCA rank ``rank``."""
        return create_dictionary(dictionary, **params).n_features(rank)

    def max_rank(self, dictionary: str, params: Mapping[str, Any]) -> int:
        """Largest rank in ``[rank_min, rank_max]`` whose feature matrix fits ``max_memory``.

        Returns ``rank_min - 1`` when even ``rank_min`` does not fit.
        """
        lo, hi = self.rank_min, self.rank_max
        if not self._fits(dictionary, params, lo):
            return lo - 1
        while lo < hi:  # feature counts grow with the rank: bisect the last rank that fits
            mid = (lo + hi + 1) // 2
            if self._fits(dictionary, params, mid):
                lo = mid
            else:
                hi = mid - 1
        return lo

    def _fits(self, dictionary: str, params: Mapping[str, Any], rank: int) -> bool:
        return sum(fit_memory(self.n_rows, self.n_features(dictionary, params, rank)).values()) <= self.max_memory

    def smallest(self, dictionary: str, fixed: Mapping[str, Any] = ()) -> dict[str, Any] | None:
        """The parameters (``fixed`` ones kept) with the fewest features at ``rank_min``.

        Integer ranges count at their low end; choices and float ranges are tried in full
        (float ranges at both ends). None when no combination is valid.
        """
        fixed = dict(fixed)
        free = [(p, _candidates(s)) for p, s in self.dictionaries[dictionary].items() if p not in fixed]
        best, best_n = None, math.inf
        for combo in itertools.product(*(c for _, c in free)):
            params = {**fixed, **{p: v for (p, _), v in zip(free, combo)}}
            try:
                n = self.n_features(dictionary, params, self.rank_min)
            except ConfigError:  # a combination the dictionary's Params refuse
                continue
            if n < best_n:
                best, best_n = params, n
        return best

    def columns(self) -> list[str]:
        """CSV columns of the dictionary parameters: ``<dictionary>.<param>``."""
        return [f"{d}.{p}" for d, specs in self.dictionaries.items() for p in specs]

    # ------------------------------------------------------------------ define-by-run
    def __call__(self, trial) -> None:
        """Sample one configuration on an Optuna trial (Ray's define-by-run ``space``)."""
        dictionary = trial.suggest_categorical("dictionary", list(self.dictionaries))
        params = {p: _suggest(trial, f"{dictionary}/{p}", spec) for p, spec in self.dictionaries[dictionary].items()}
        # A combination of several parameters may not fit even at rank_min (each was capped with
        # the others at their smallest): the trial then fails with the memory error, recorded.
        trial.suggest_int("pca_rank", self.rank_min, max(self.rank_min, self.max_rank(dictionary, params)))
        if len(self.placements) > 1:
            trial.suggest_categorical("pca_placement", list(self.placements))
        for name, spec in self.device.items():
            _suggest(trial, DEVICE_PREFIX + name, spec)
        for name, spec in self.kd.items():
            _suggest(trial, KD_PREFIX + name, spec)

    def distributions(self, params: Mapping[str, Any]) -> dict:
        """The Optuna distributions a trial with these flat ``params`` was sampled from.

        Used to hand finished trials back to Optuna when a search resumes.
        """
        recorder = _Replay(params)
        self(recorder)
        return recorder.distributions

    def describe(self) -> dict:
        """A JSON summary (for ``search.json``): bounds as they will be sampled."""
        max_rank: dict[str, dict[str, int]] = {}
        for d, specs in self.dictionaries.items():
            ranks = max_rank.setdefault(d, {})
            if not specs:
                ranks[""] = self.max_rank(d, {})
            for p, spec in specs.items():
                for v in dict.fromkeys(_candidates(spec) + ([spec.high] if _kind(spec) == "IntRange" else [])):
                    params = self.smallest(d, {p: v})
                    if params is not None:
                        ranks[f"{p}={v}"] = self.max_rank(d, params)
        return {
            "dictionaries": {d: {p: describe_spec(s) for p, s in specs.items()} for d, specs in self.dictionaries.items()},
            "pca_rank": [self.rank_min, self.rank_max],
            "pca_placement": list(self.placements),
            "max_rank": max_rank,
            "dropped": dict(self.dropped),
            "device": {k: describe_spec(v) for k, v in self.device.items()},
            "kd": {k: describe_spec(v) for k, v in self.kd.items()},
            "max_memory_bytes": self.max_memory,
        }


def build_space(
    *,
    n_inputs: int,
    n_train: int,
    n_rows: int,
    max_memory: int,
    device_space: Mapping[str, Any],
    pinned: Mapping[str, Any] = (),
    dictionaries: Sequence[str] | None = None,
    ranks: Sequence[int] = (2, 40),
    dictionary_space: Mapping[str, Any] = (),
    placements: Sequence[str] = ("host",),
    kd_space: Mapping[str, Any] | None = None,
) -> SearchSpace:
    """Validate the user's ranges against the data and the memory budget and build the space.

    Args:
        n_inputs: input dimension of the data (caps the PCA rank).
        n_train: training samples the dictionary is fitted on (``Dictionary.limits``).
        n_rows: training + validation samples (the feature matrix's rows).
        max_memory: bytes one feature matrix may take.
        device_space: ``Device.search_space()``.
        pinned: device fields fixed by ``--set`` (left out of the space).
        dictionaries: dictionaries to search (None: every installed one).
        ranks: ``(min, max)`` PCA rank.
        dictionary_space: ``{param: spec}`` replacing the declared spec of ``param`` in every
            searched dictionary that has it; a spec is an ``IntRange``/``FloatRange``/``Choice``
            or the text of ``--space`` (``"2,3"``, ``"16:300"``, ``"64"``; see
            :func:`parse_space_option`).
        placements: where the PCA projection may run (more than one: a search dimension).
        kd_space: distillation dimensions ``{"temperature" | "alpha": spec}`` (give
            :data:`KD_SPACE` or a narrowing of it when the method is kd; None or empty: none).
    """
    names = list(dict.fromkeys(list_dictionaries() if dictionaries is None else dictionaries))
    if not names:
        raise ConfigError("--dictionaries: give at least one dictionary")
    classes = {}
    for d in names:
        try:
            classes[d] = get_dictionary_class(d)
        except ConfigError as exc:
            raise ConfigError(f"--dictionaries: {exc}") from None
        if d in CONFIG_KEYS:
            raise ConfigError(f"--dictionaries: a dictionary named {d!r} cannot be searched (the trial config uses that key)")
    if len(ranks) != 2:
        raise ConfigError(f"--ranks takes two integers MIN MAX, got {list(ranks)}")
    r_lo, r_hi = int(ranks[0]), int(ranks[1])
    if not 1 <= r_lo <= r_hi:
        raise ConfigError(f"--ranks {r_lo} {r_hi}: expected 1 <= MIN <= MAX")
    if r_lo > n_inputs:
        raise ConfigError(f"--ranks {r_lo} {r_hi}: the data has only {n_inputs} inputs, so the PCA rank is at most {n_inputs}")
    r_hi = min(r_hi, n_inputs)
    device = {k: v for k, v in device_space.items() if k not in dict(pinned)}
    for name, spec in device.items():
        _check_spec(name, spec)

    overrides = {}
    for param, spec in dict(dictionary_space).items():
        overrides[param] = parse_space_value(classes, param, spec) if isinstance(spec, str) else spec
        _owners(classes, param, spec)  # a parameter no searched dictionary has is an error
    specs: dict[str, dict[str, Any]] = {}
    for d, cls in classes.items():
        fields = [f.name for f in dataclasses.fields(cls.Params)]
        own = dict(cls.search_space())
        own.update({p: s for p, s in overrides.items() if p in fields})
        for p, s in own.items():
            _check_spec(f"{d}/{p}", s, where="dictionary search space")
            _check_values(cls, p, s)
        specs[d] = own

    # Cap each dictionary's parameters by the data and by memory at the smallest rank; drop
    # dictionaries that cannot fit at all.
    budget = f"--max-memory ({format_bytes(max_memory)} for {n_rows} rows)"
    dropped: dict[str, str] = {}
    for d, cls in classes.items():
        limits = cls.limits(n_train)
        for p, s in list(specs[d].items()):
            if p in limits:
                s = _cap(s, int(limits[p]))
                if s is None:
                    dropped[d] = f"every {p} searched exceeds {limits[p]}, the most the {n_train} training samples allow"
                    break
            specs[d][p] = s
        if d in dropped:
            continue
        trial_space = SearchSpace({d: specs[d]}, r_lo, r_hi, n_rows, max_memory)
        for p, s in list(specs[d].items()):
            s = _cap_by_memory(trial_space, d, p, s)
            if s is None:
                dropped[d] = f"no {p} searched fits the memory budget"
                break
            specs[d][p] = s
            trial_space = SearchSpace({d: specs[d]}, r_lo, r_hi, n_rows, max_memory)
        if d not in dropped:
            smallest = trial_space.smallest(d)
            if smallest is None or trial_space.max_rank(d, smallest) < r_lo:
                dropped[d] = "even its smallest lift does not fit the memory budget"
    kept = {d: specs[d] for d in classes if d not in dropped}
    if not kept:
        why = "; ".join(f"{d}: {w}" for d, w in dropped.items())
        raise ConfigError(f"no dictionary fits {budget} even at pca_rank={r_lo} ({why}); "
                          "raise --max-memory, lower the ranks or narrow --space")
    kd = dict(kd_space or {})
    for name, spec in kd.items():
        if name not in KD_SPACE:
            raise ConfigError(f"kd search dimension {name!r}: expected temperature or alpha")
        _check_spec(KD_PREFIX + name, spec)
        for v in (spec.values if _kind(spec) == "Choice" else (spec.low, spec.high)):
            if v != "auto":
                FitConfig(**{name: v})  # a value the fit refuses is refused here, in one line
    return SearchSpace(kept, r_lo, r_hi, n_rows, max_memory, device, dropped, tuple(placements), kd)


def _cap(spec: Any, high: int) -> Any:
    """``spec`` with values above ``high`` left out (None if nothing is left)."""
    kind = _kind(spec)
    if kind == "Choice":
        values = tuple(v for v in spec.values if not isinstance(v, (int, float)) or isinstance(v, bool) or v <= high)
        return Choice(values) if values else None
    if kind == "IntRange":  # a range above the limit shrinks to the limit
        return IntRange(min(spec.low, high), min(spec.high, high), spec.log) if high >= 1 else None
    return spec


def _cap_by_memory(space: SearchSpace, d: str, p: str, spec: Any) -> Any:
    """``spec`` narrowed to the values that fit at ``rank_min`` with the other parameters smallest."""

    def fits(v) -> bool:
        params = space.smallest(d, {p: v})
        return params is not None and space._fits(d, params, space.rank_min)

    kind = _kind(spec)
    if kind == "Choice":
        values = tuple(v for v in spec.values if fits(v))
        return Choice(values) if values else None
    if kind == "IntRange":
        lo, hi = spec.low, spec.high
        if not fits(lo):
            return None
        while lo < hi:  # the feature count grows with an integer parameter: bisect the last fit
            mid = (lo + hi + 1) // 2
            if fits(mid):
                lo = mid
            else:
                hi = mid - 1
        return IntRange(spec.low, lo, spec.log)
    return spec


# --------------------------------------------------------------------------- --space PARAM=SPEC
def parse_space_option(dictionary_classes: Mapping[str, type], text: str) -> tuple[str, SearchSpec]:
    """Parse one ``--space PARAM=SPEC`` into ``(param, spec)``.

    ``SPEC`` is a list of values (``degree=2,3``: a :class:`~codesign.specs.Choice`), a range
    (``centers=16:300``: an :class:`~codesign.specs.IntRange` or
    :class:`~codesign.specs.FloatRange`, log-uniform when the dictionary declares the
    parameter so) or one value (``centers=64``: pinned). Values take the type of the
    parameter (from its declared spec, else from its default).

    Args:
        dictionary_classes: ``{name: Dictionary subclass}`` of the dictionaries searched.
        text: ``PARAM=SPEC``.

    Raises:
        ConfigError: malformed text, a value of the wrong type, or a parameter that none of
            ``dictionary_classes`` has (the message lists theirs).
    """
    param, sep, value = str(text).partition("=")
    param, value = param.strip(), value.strip()
    if not sep or not param or not value:
        raise ConfigError(
            f"--space {text!r}: expected PARAM=SPEC, e.g. degree=2,3 (values), centers=16:300 (a range) "
            "or centers=64 (one value)"
        )
    return param, parse_space_value(dictionary_classes, param, value)


def parse_space_value(dictionary_classes: Mapping[str, type], param: str, value: str) -> SearchSpec:
    """The spec of ``--space PARAM=VALUE`` (see :func:`parse_space_option`)."""
    owners = _owners(dictionary_classes, param, value)
    cls = dictionary_classes[owners[0]]
    declared = cls.search_space().get(param)
    default = next(f.default for f in dataclasses.fields(cls.Params) if f.name == param)
    where = f"--space {param}={value} ({', '.join(owners)})"
    kind = _kind(declared) if declared is not None else None
    if kind is None and isinstance(default, (int, float)) and not isinstance(default, bool):
        kind = "IntRange" if isinstance(default, int) else "FloatRange"
    if ":" in value:
        lo_text, _, hi_text = value.partition(":")
        if kind not in ("IntRange", "FloatRange"):
            raise ConfigError(f"{where}: {param} takes values, not a range: give {param}=A,B,...")
        typ = int if kind == "IntRange" else float
        lo, hi = (_typed(where, t.strip(), typ) for t in (lo_text, hi_text))
        if lo > hi:
            raise ConfigError(f"{where}: the range is empty (expected LOW:HIGH with LOW <= HIGH)")
        log = bool(getattr(declared, "log", False))
        return IntRange(lo, hi, log) if typ is int else FloatRange(lo, hi, log)
    items = [v.strip() for v in value.split(",")]
    if not all(items):
        raise ConfigError(f"{where}: an empty value in the list")
    if kind == "IntRange":
        typ = int
    elif kind == "FloatRange":
        typ = float
    elif kind == "Choice":
        typ = _common_type(declared.values)
    else:
        typ = type(default) if isinstance(default, _PLAIN) and default is not None else str
    return Choice(tuple(dict.fromkeys(_typed(where, v, typ) for v in items)))


def _owners(dictionary_classes: Mapping[str, type], param: str, value: Any) -> list[str]:
    owners = [d for d, c in dictionary_classes.items() if param in {f.name for f in dataclasses.fields(c.Params)}]
    if not owners:
        have = "; ".join(
            f"{d}: {', '.join(f.name for f in dataclasses.fields(c.Params)) or '(none)'}"
            for d, c in dictionary_classes.items()
        )
        raise ConfigError(f"--space {param}={value}: no dictionary searched has a parameter {param!r} "
                          f"(their parameters: {have})")
    return owners


def _common_type(values: Sequence[Any]) -> type:
    types = {type(v) for v in values}
    if types <= {int}:
        return int
    if types <= {int, float}:
        return float
    if types <= {bool}:
        return bool
    return str


def _typed(where: str, text: str, typ: type) -> Any:
    try:
        if typ is bool:
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(text)
        return typ(text)
    except ValueError:
        raise ConfigError(f"{where}: {text!r} is not a valid {typ.__name__}") from None


def _check_values(cls: type, param: str, spec: Any) -> None:
    """Every choice, and both ends of a range, must be a valid value of the parameter."""
    values = list(spec.values) if _kind(spec) == "Choice" else [spec.low, spec.high]
    for v in values:
        try:
            cls.make_params({param: v})
        except ConfigError as exc:
            raise ConfigError(f"search space of dictionary {cls.name!r}: {exc}") from None


def _candidates(spec: Any) -> list:
    kind = _kind(spec)
    if kind == "Choice":
        return list(spec.values)
    if kind == "IntRange":
        return [spec.low]  # the feature count grows with an integer parameter
    return [spec.low, spec.high]


def _kind(spec: Any) -> str:
    return type(spec).__name__


def describe_spec(spec: Any) -> dict:
    """A JSON description of a search spec."""
    kind = _kind(spec)
    if kind == "IntRange":
        return {"int": [spec.low, spec.high], **({"log": True} if spec.log else {})}
    if kind == "FloatRange":
        return {"float": [spec.low, spec.high], "log": bool(spec.log)}
    if kind == "Choice":
        return {"choice": list(spec.values)}
    raise ConfigError(f"unsupported search spec {spec!r}")


def _check_spec(name: str, spec: Any, where: str = "device search space") -> None:
    kind = _kind(spec)
    if kind == "IntRange":
        if not spec.low <= spec.high:
            raise ConfigError(f"{where}: {name} IntRange({spec.low}, {spec.high}) is empty")
        if spec.log and spec.low < 1:
            raise ConfigError(f"{where}: {name} IntRange({spec.low}, {spec.high}, log=True) needs low >= 1")
    elif kind == "FloatRange":
        if not spec.low <= spec.high or (spec.log and spec.low <= 0):
            raise ConfigError(f"{where}: {name} FloatRange({spec.low}, {spec.high}, log={spec.log}) is invalid")
    elif kind == "Choice":
        if not spec.values:
            raise ConfigError(f"{where}: {name} Choice() is empty")
        bad = [v for v in spec.values if not isinstance(v, _PLAIN)]
        if bad:
            raise ConfigError(
                f"{where}: {name} Choice values must be None, bool, int, float or str; got {bad!r}"
            )
    else:
        raise ConfigError(
            f"{where}: {name} has spec {spec!r}; expected codesign.devices.base.IntRange, FloatRange or Choice"
        )


def _suggest(trial, name: str, spec: Any):
    kind = _kind(spec)
    if kind == "IntRange":
        return trial.suggest_int(name, int(spec.low), int(spec.high), log=bool(spec.log))
    if kind == "FloatRange":
        return trial.suggest_float(name, float(spec.low), float(spec.high), log=bool(spec.log))
    return trial.suggest_categorical(name, list(spec.values))


class _Replay:
    """A stand-in Optuna trial that returns recorded values and records the distributions."""

    def __init__(self, params: Mapping[str, Any]) -> None:
        self.params = dict(params)
        self.distributions: dict = {}

    def _get(self, name: str, dist):
        if name not in self.params:
            raise KeyError(name)
        self.distributions[name] = dist
        return self.params[name]

    def suggest_categorical(self, name, choices):
        import optuna

        return self._get(name, optuna.distributions.CategoricalDistribution(list(choices)))

    def suggest_int(self, name, low, high, log=False):
        import optuna

        return self._get(name, optuna.distributions.IntDistribution(low, high, log=log))

    def suggest_float(self, name, low, high, log=False):
        import optuna

        return self._get(name, optuna.distributions.FloatDistribution(low, high, log=log))


def normalize_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """A trial config in the current format (``{"dictionary": D, D: {param: value}, ...}``).

    Older records kept the dictionary's parameters at the top level (``"degree": 2``): every
    top-level key other than :data:`CONFIG_KEYS` and the dictionary's name moves under the
    dictionary's name (None values, parameters a trial did not sample, are dropped).
    """
    cfg = dict(config)
    name = cfg.get("dictionary")
    if not isinstance(name, str):
        return cfg
    own = cfg.get(name)
    params = dict(own) if isinstance(own, Mapping) else {}
    for k in [k for k in cfg if k not in CONFIG_KEYS and k != name]:
        v = cfg.pop(k)
        if v is not None:
            params.setdefault(k, v)
    if params:
        cfg[name] = params
    else:
        cfg.pop(name, None)
    return cfg


def dictionary_params(config: Mapping[str, Any]) -> dict[str, Any]:
    """``{param: value}`` of the dictionary a trial config drew (any record format)."""
    cfg = normalize_config(config)
    return dict(cfg.get(cfg.get("dictionary")) or {})


def flatten_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """A trial config as Optuna's flat parameter names (sub-dicts -> ``<key>/<field>``)."""
    out: dict[str, Any] = {}
    for k, v in normalize_config(config).items():
        if isinstance(v, Mapping):
            out.update({f"{k}/{kk}": vv for kk, vv in v.items()})
        else:
            out[k] = v
    return out


def unflatten_config(params: Mapping[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`flatten_config`."""
    out: dict[str, Any] = {}
    for k, v in params.items():
        head, sep, rest = k.partition("/")
        if sep:
            out.setdefault(head, {})[rest] = v
        else:
            out[k] = v
    out.setdefault("device", {})
    return out
