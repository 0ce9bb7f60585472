"""The search space: dictionary family, PCA rank and the device's own constraints.

:class:`SearchSpace` is an Optuna define-by-run space (a picklable callable taking an Optuna
trial), which Ray Tune's ``OptunaSearch`` accepts as its ``space``. It is conditional:

* ``dictionary``: one of the families searched (``monomial``, ``rbf``, or any registered one);
* ``degree`` (monomial) or ``centers`` (rbf, log-uniform) for the family drawn;
* ``pca_rank``: from ``--ranks MIN MAX``, capped by the data's input dimension and by the
  memory budget for the lifted feature matrix of the family drawn (so a degree-3 lift is
  searched at smaller ranks than a degree-2 one when memory binds);
* ``device/<field>``: every entry of ``Device.search_space()`` not pinned by ``--set``, turned
  into an Optuna distribution (:class:`~codesign.devices.base.IntRange` -> int, :class:`FloatRange` ->
  float, :class:`Choice` -> categorical). Nothing here is device-specific, so a plugin
  installed later is searchable by name.

Ray unflattens the ``/`` names, so a trial's config reads
``{"dictionary": "monomial", "degree": 2, "pca_rank": 18, "device": {"phase_bits": 6}}``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from codesign.dictionaries import create_dictionary, list_dictionaries
from codesign.errors import ConfigError

#: Parameters whose value picks the dictionary's size, per family (sampled before the rank).
FAMILY_PARAMS = {"monomial": "degree", "rbf": "centers"}
DEVICE_PREFIX = "device/"
_PLAIN = (type(None), bool, int, float, str)


@dataclass(frozen=True)
class SearchSpace:
    """A conditional space over dictionaries, PCA ranks and device fields (plain data).

    Attributes:
        dictionaries: families searched.
        degrees: monomial degrees searched.
        rank_min: smallest PCA rank.
        rank_max: largest PCA rank (already capped by the input dimension).
        centers_min: smallest RBF centre count.
        centers_max: largest RBF centre count (already capped by the training set size).
        n_rows: rows of the feature matrix (training + validation samples), for the memory cap.
        max_memory: bytes one lifted feature matrix may take.
        device: ``{field: IntRange | FloatRange | Choice}`` from ``Device.search_space()``.
    """

    dictionaries: tuple[str, ...]
    degrees: tuple[int, ...] = (2, 3)
    rank_min: int = 2
    rank_max: int = 40
    centers_min: int = 16
    centers_max: int = 300
    n_rows: int = 1
    max_memory: int = 1 << 62
    device: Mapping[str, Any] = field(default_factory=dict)

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
        return self.n_rows * self.n_features(dictionary, params, rank) * 4 <= self.max_memory

    def max_centers(self) -> int:
        """Largest centre count whose features fit the budget at ``rank_min`` (capped by ``centers_max``)."""
        per_row = self.max_memory // (4 * max(self.n_rows, 1))
        return min(self.centers_max, per_row - 1 - self.rank_min)

    # ------------------------------------------------------------------ define-by-run
    def __call__(self, trial) -> None:
        """Sample one configuration on an Optuna trial (Ray's define-by-run ``space``)."""
        dictionary = trial.suggest_categorical("dictionary", list(self.dictionaries))
        params: dict[str, Any] = {}
        if dictionary == "monomial":
            params["degree"] = trial.suggest_categorical("degree", list(self.degrees))
        elif dictionary == "rbf":
            params["centers"] = trial.suggest_int("centers", self.centers_min, self.max_centers(), log=True)
        trial.suggest_int("pca_rank", self.rank_min, self.max_rank(dictionary, params))
        for name, spec in self.device.items():
            _suggest(trial, DEVICE_PREFIX + name, spec)

    def distributions(self, params: Mapping[str, Any]) -> dict:
        """The Optuna distributions a trial with these flat ``params`` was sampled from.

        Used to hand finished trials back to Optuna when a search resumes.
        """
        recorder = _Replay(params)
        self(recorder)
        return recorder.distributions

    def describe(self) -> dict:
        """A JSON summary (for ``search.json``): bounds as they will be sampled."""
        out: dict[str, Any] = {"dictionaries": list(self.dictionaries), "pca_rank": [self.rank_min, self.rank_max]}
        if "monomial" in self.dictionaries:
            out["degree"] = list(self.degrees)
            out["max_rank_by_degree"] = {str(d): self.max_rank("monomial", {"degree": d}) for d in self.degrees}
        if "rbf" in self.dictionaries:
            out["centers"] = [self.centers_min, self.max_centers()]
        out["device"] = {k: describe_spec(v) for k, v in self.device.items()}
        out["max_memory_bytes"] = self.max_memory
        return out


def build_space(
    *,
    n_inputs: int,
    n_train: int,
    n_rows: int,
    max_memory: int,
    device_space: Mapping[str, Any],
    pinned: Mapping[str, Any] = (),
    dictionaries: list[str] | tuple[str, ...] = ("monomial", "rbf"),
    degrees: list[int] | tuple[int, ...] = (2, 3),
    ranks: list[int] | tuple[int, int] = (2, 40),
    min_centers: int = 16,
    max_centers: int = 300,
) -> SearchSpace:
    """Validate the user's ranges against the data and the memory budget and build the space.

    Args:
        n_inputs: input dimension of the data (caps the PCA rank).
        n_train: training samples the dictionary is fitted on (caps the RBF centre count).
        n_rows: training + validation samples (the feature matrix's rows).
        max_memory: bytes one feature matrix may take.
        device_space: ``Device.search_space()``.
        pinned: device fields fixed by ``--set`` (left out of the space).
        dictionaries: families to search.
        degrees: monomial degrees.
        ranks: ``(min, max)`` PCA rank.
        min_centers: smallest RBF centre count.
        max_centers: largest RBF centre count.
    """
    dictionaries = tuple(dict.fromkeys(dictionaries))
    known = list_dictionaries()
    for d in dictionaries:
        if d not in known:
            raise ConfigError(f"--dictionaries: unknown dictionary {d!r}; known dictionaries: {', '.join(known)}")
    if not dictionaries:
        raise ConfigError("--dictionaries: give at least one dictionary family")
    if len(ranks) != 2:
        raise ConfigError(f"--ranks takes two integers MIN MAX, got {list(ranks)}")
    r_lo, r_hi = int(ranks[0]), int(ranks[1])
    if not 1 <= r_lo <= r_hi:
        raise ConfigError(f"--ranks {r_lo} {r_hi}: expected 1 <= MIN <= MAX")
    if r_lo > n_inputs:
        raise ConfigError(f"--ranks {r_lo} {r_hi}: the data has only {n_inputs} inputs, so the PCA rank is at most {n_inputs}")
    r_hi = min(r_hi, n_inputs)
    degrees = tuple(sorted({int(d) for d in degrees}))
    if "monomial" in dictionaries:
        if not degrees:
            raise ConfigError("--degrees: give at least one monomial degree")
        for d in degrees:
            create_dictionary("monomial", degree=d)  # validates the degree
    if "rbf" in dictionaries:
        if not 1 <= min_centers <= max_centers:
            raise ConfigError(f"centres: expected 1 <= min_centers <= max_centers, got {min_centers}, {max_centers}")
        max_centers = min(max_centers, n_train)
        min_centers = min(min_centers, max_centers)
    device = {k: v for k, v in device_space.items() if k not in dict(pinned)}
    for name, spec in device.items():
        _check_spec(name, spec)
    space = SearchSpace(dictionaries, degrees, r_lo, r_hi, min_centers, max_centers, n_rows, max_memory, device)

    # Drop branches that cannot fit the memory budget even at the smallest rank.
    budget = f"--max-memory ({max_memory / 2**30:.2f} GiB for {n_rows} rows)"
    if "monomial" in dictionaries:
        ok = tuple(d for d in degrees if space.max_rank("monomial", {"degree": d}) >= r_lo)
        if not ok:
            dictionaries = tuple(x for x in dictionaries if x != "monomial")
        space = SearchSpace(dictionaries, ok or degrees, r_lo, r_hi, min_centers, max_centers, n_rows, max_memory, device)
    if "rbf" in dictionaries and space.max_centers() < min_centers:
        dictionaries = tuple(x for x in dictionaries if x != "rbf")
        space = SearchSpace(dictionaries, space.degrees, r_lo, r_hi, min_centers, max_centers, n_rows, max_memory, device)
    if not dictionaries:
        raise ConfigError(f"no dictionary fits {budget} even at pca_rank={r_lo}; raise --max-memory or lower the ranks")
    return space


def describe_spec(spec: Any) -> dict:
    """A JSON description of a device search spec."""
    kind = type(spec).__name__
    if kind == "IntRange":
        return {"int": [spec.low, spec.high]}
    if kind == "FloatRange":
        return {"float": [spec.low, spec.high], "log": bool(spec.log)}
    if kind == "Choice":
        return {"choice": list(spec.values)}
    raise ConfigError(f"unsupported search spec {spec!r}")


def _check_spec(name: str, spec: Any) -> None:
    kind = type(spec).__name__
    if kind == "IntRange":
        if not spec.low <= spec.high:
            raise ConfigError(f"device search space: {name} IntRange({spec.low}, {spec.high}) is empty")
    elif kind == "FloatRange":
        if not spec.low <= spec.high or (spec.log and spec.low <= 0):
            raise ConfigError(f"device search space: {name} FloatRange({spec.low}, {spec.high}, log={spec.log}) is invalid")
    elif kind == "Choice":
        if not spec.values:
            raise ConfigError(f"device search space: {name} Choice() is empty")
        bad = [v for v in spec.values if not isinstance(v, _PLAIN)]
        if bad:
            raise ConfigError(
                f"device search space: {name} Choice values must be None, bool, int, float or str; got {bad!r}"
            )
    else:
        raise ConfigError(
            f"device search space: {name} has spec {spec!r}; expected codesign.devices.base.IntRange, FloatRange or Choice"
        )


def _suggest(trial, name: str, spec: Any):
    kind = type(spec).__name__
    if kind == "IntRange":
        return trial.suggest_int(name, int(spec.low), int(spec.high))
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


def flatten_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """A trial config as Optuna's flat parameter names (``device`` sub-dict -> ``device/<field>``)."""
    out = {k: v for k, v in config.items() if k != "device"}
    for k, v in (config.get("device") or {}).items():
        out[DEVICE_PREFIX + k] = v
    return out


def unflatten_config(params: Mapping[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`flatten_config`."""
    out: dict[str, Any] = {}
    dev: dict[str, Any] = {}
    for k, v in params.items():
        if k.startswith(DEVICE_PREFIX):
            dev[k[len(DEVICE_PREFIX):]] = v
        else:
            out[k] = v
    out["device"] = dev
    return out
