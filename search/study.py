"""The search as an Optuna study in an Optuna storage (SQLite by default), for optuna-dashboard & co.

``trials.jsonl`` stays the search's memory; the study is *derived* from it: after every run (and
so after every ``--resume``) :func:`write_study` deletes the study and writes it again from the
trial records, so the two never disagree. The study holds, per trial (in codesign trial order,
so Optuna's trial number is the codesign trial number of a log without gaps):

* the configuration as Optuna params (``dictionary``, ``<dictionary>/<param>``, ``pca_rank``,
  ``pca_placement``, ``device/<field>``, the names the sampler uses);
* both objectives as values (``hw_accuracy`` maximised, the cost minimised; their names are set
  with :meth:`optuna.Study.set_metric_names`) for a completed trial; a failed trial and one the
  device cannot build (infeasible: scored, never priced) are ``FAIL`` trials;
* as user attributes: ``trial`` (the codesign number), ``status``, ``error`` (why it failed or is
  infeasible), ``violation``/``feasible``/``on_front``/``knee``, every numeric metric (the cost
  breakdown ``pca_energy_pj``..., ``hw_accuracy_std``, ``n_features``...), ``student`` and, for
  front members, their test-set figures (``test_hw_accuracy``...);
* ``--max-cost`` / ``--min-accuracy`` as Optuna constraints, so ``study.best_trials`` is the
  front of ``front.csv`` (up to trials with exactly the same values, which Optuna lists all of
  and codesign once; optuna-dashboard's best-trial list ignores constraints).

The search's own study (its sampler's memory) is a separate, in-memory one: see
``runner._study_storage``.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import math
import os
import uuid
import warnings
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from codesign.cache import check_writable_dir
from codesign.errors import ConfigError

from .outputs import student_path
from .space import DEVICE_PREFIX, flatten_config

#: The study file a search writes into its folder when no ``--storage`` is given.
STUDY_FILE = "study.db"
#: Study user attribute naming the search a study belongs to (see :func:`search_token`).
TOKEN_ATTR = "codesign_search"
#: Record metrics that are not user attributes (the objectives are the values; paths are rewritten).
_SKIP_METRICS = ("student", "feasible", "infeasible")


def storage_url(storage: str | None, out: str | Path) -> str:
    """The storage URL of a search: ``--storage`` (a SQLAlchemy URL, or a file path meaning a SQLite
    file), or ``sqlite:///OUT/study.db``."""
    if not storage:
        return f"sqlite:///{Path(out).resolve() / STUDY_FILE}"
    if "://" not in storage:
        return f"sqlite:///{Path(storage).expanduser().resolve()}"
    return storage


def shown_url(url: str) -> str:
    """``url`` with its password, if any, masked (for logs and ``front.json``)."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparsable URL is reported by open_storage
        return url


def search_token(meta: Mapping[str, Any] | None) -> str:
    """The fingerprint of one search: ``search.json``'s ``study_token``, or a new random one (a new
    search, or one written before studies were).

    Stored on the study, it lets a search replace its own study and refuse to delete a study of
    the same name that another search (or anybody else) wrote into a shared storage.
    """
    return str((meta or {}).get("study_token") or uuid.uuid4().hex[:16])


@contextlib.contextmanager
def open_storage(url: str) -> Iterator[Any]:
    """An Optuna RDB storage on ``url`` (closed after); a bad URL is a :class:`ConfigError`."""
    import optuna

    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    try:
        with _optuna_quiet():
            storage = optuna.storages.RDBStorage(url)
    except Exception as exc:  # noqa: BLE001 - SQLAlchemy, driver and migration errors alike
        raise ConfigError(f"--storage {shown_url(url)}: cannot open it as an Optuna storage "
                          f"({type(exc).__name__}: {exc})") from None
    try:
        yield storage
    finally:
        with contextlib.suppress(Exception):
            storage.engine.dispose()


@contextlib.contextmanager
def _optuna_quiet():
    import optuna

    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(level)


def _owner(storage: Any, name: str, token: str) -> tuple[bool, str | None]:
    """Whether ``storage`` holds a study ``name``, and the search token stored on it (``token``
    itself for a codesign study without trials: a start that stopped before its first trial)."""
    try:
        study_id = storage.get_study_id_from_name(name)
    except KeyError:
        return False, None
    owner = storage.get_study_user_attrs(study_id).get(TOKEN_ATTR)
    if owner and owner != token and not storage.get_all_trials(study_id, deepcopy=False):
        owner = token
    return True, owner


def check_storage(url: str, name: str, token: str) -> None:
    """Refuse, before any trial runs, a storage that cannot be opened or whose study ``name`` is not
    this search's (it would be deleted when the study is written)."""
    if not name or not isinstance(name, str):
        raise ConfigError(f"--study-name {name!r}: give a non-empty name")
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        if path.is_dir():
            raise ConfigError(f"--storage {shown_url(url)}: {path} is a folder; give a file such as {path / STUDY_FILE}")
        if not path.exists():  # a new SQLite file: its folder must take it (nothing is created yet)
            check_writable_dir(str(path.parent), f"--storage {shown_url(url)}: the folder of the study file,")
            return
        if not os.access(path, os.R_OK | os.W_OK) or not os.access(path.parent, os.W_OK):
            raise ConfigError(f"--storage {shown_url(url)}: {path} (or its folder) is not writable; give a study file "
                              "you can write, or leave --storage out (DIR/study.db)")
    with open_storage(url) as storage:
        exists, owner = _owner(storage, name, token)
    if exists and owner != token:
        raise ConfigError(f"--storage {shown_url(url)} already holds a study {name!r} "
                          f"{'of another codesign search' if owner else 'not written by codesign'}; "
                          "choose another --study-name (or --storage)")


# --------------------------------------------------------------------------- distributions
def distributions(records: Sequence[Mapping[str, Any]], space: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """One Optuna distribution per parameter name of the records' configurations.

    From the space as ``search.json`` describes it (``SearchSpace.describe()``), widened to hold
    every value a record has (a log that predates a narrower space still loads); parameters the
    description lacks get the range (numbers) or the set (anything else) of their values.
    """
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    specs: dict[str, dict] = {}
    space = space or {}
    if space.get("dictionaries"):
        specs["dictionary"] = {"choice": list(space["dictionaries"])}
        for d, params in space["dictionaries"].items():
            for p, spec in (params or {}).items():
                specs[f"{d}/{p}"] = spec
    if space.get("pca_rank"):
        specs["pca_rank"] = {"int": list(space["pca_rank"])}
    if len(space.get("pca_placement") or ()) > 1:
        specs["pca_placement"] = {"choice": list(space["pca_placement"])}
    for f, spec in (space.get("device") or {}).items():
        specs[DEVICE_PREFIX + f] = spec

    values: dict[str, list] = {}
    for r in records:
        for k, v in _params(r).items():
            values.setdefault(k, []).append(v)
    out = {}
    for name in dict.fromkeys([*specs, *values]):
        seen = values.get(name, [])
        spec = specs.get(name)
        numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in seen)
        if spec and "int" in spec and all(isinstance(v, int) and not isinstance(v, bool) for v in seen):
            lo, hi = min([spec["int"][0], *seen]), max([spec["int"][1], *seen])
            out[name] = IntDistribution(int(lo), int(hi), log=bool(spec.get("log")) and lo >= 1)
        elif spec and "float" in spec and numbers:
            lo, hi = min([spec["float"][0], *seen]), max([spec["float"][1], *seen])
            out[name] = FloatDistribution(float(lo), float(hi), log=bool(spec.get("log")) and lo > 0)
        elif spec and "choice" in spec:
            out[name] = CategoricalDistribution(list(dict.fromkeys([*spec["choice"], *seen])))
        elif seen and all(isinstance(v, int) and not isinstance(v, bool) for v in seen):
            out[name] = IntDistribution(min(seen), max(seen))
        elif seen and numbers:
            out[name] = FloatDistribution(float(min(seen)), float(max(seen)))
        elif seen:
            out[name] = CategoricalDistribution(list(dict.fromkeys(seen)))
    return out


def _params(record: Mapping[str, Any]) -> dict[str, Any]:
    params = flatten_config(record.get("config") or {})
    return {k: v for k, v in params.items() if v is not None and isinstance(v, (bool, int, float, str))}


# --------------------------------------------------------------------------- trials
def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def frozen_trial(record: Mapping[str, Any], dists: Mapping[str, Any], front: Mapping[int, Mapping[str, Any]] = (),
                 knee: int | None = None, constraints: Mapping[str, float | None] = ()) -> Any:
    """The Optuna trial of one record (``front``: ``{trial: front.json entry}`` for the test figures)."""
    import optuna

    front = dict(front)
    status = record.get("status")
    m = record.get("metrics") or {}
    attrs: dict[str, Any] = {"trial": record.get("trial"), "status": status, "round": record.get("round")}
    for k in ("error", "violation"):
        if record.get(k):
            attrs[k] = str(record[k])
    for k in ("feasible", "on_front"):
        if k in record:
            attrs[k] = bool(record[k])
    if record.get("ray_trial_id"):
        attrs["ray_trial_id"] = record["ray_trial_id"]
        if status == "completed":
            attrs["student"] = student_path(record)
    attrs.update({k: v for k, v in m.items() if k not in _SKIP_METRICS and _number(v)})
    p = front.get(record.get("trial"))
    if p is not None:
        attrs["knee"] = record.get("trial") == knee
        attrs.update({k: v for k, v in p.items() if k.startswith("test_") and _number(v)})
    params = _params(record)
    params = {k: v for k, v in params.items() if k in dists}
    kw: dict[str, Any] = {"params": params, "distributions": {k: dists[k] for k in params}, "user_attrs": attrs}
    if status == "completed" and _number(m.get("hw_accuracy")) and _number(m.get("cost")):
        acc, cost = float(m["hw_accuracy"]), float(m["cost"])
        kw["values"] = [acc, cost]
        limits = dict(constraints)
        cons = {}
        if limits.get("max_cost") is not None:
            cons["max_cost"] = cost - float(limits["max_cost"])
        if limits.get("min_accuracy") is not None:
            cons["min_accuracy"] = float(limits["min_accuracy"]) - acc
        if cons:
            kw["constraints"] = cons
    else:
        kw["state"] = optuna.trial.TrialState.FAIL
    t = optuna.trial.create_trial(**kw)
    finished = _when(record.get("finished"))
    if finished is not None:
        seconds = m.get("trial_seconds")
        t.datetime_complete = finished
        t.datetime_start = finished - _dt.timedelta(seconds=float(seconds)) if _number(seconds) else finished
    return t


def _when(text: Any) -> _dt.datetime | None:
    try:
        return _dt.datetime.fromisoformat(str(text))
    except ValueError:
        return None


def write_study(url: str, name: str, token: str, records: Sequence[Mapping[str, Any]], summary: Mapping[str, Any],
                space: Mapping[str, Any] | None = None) -> int:
    """(Re)write study ``name`` in ``url`` from the trial records and the front summary.

    ``records`` must be annotated (``runner.annotate``: ``feasible``, ``on_front``...);
    ``summary`` is what ``front.json`` holds. Returns the number of trials written.
    """
    import optuna

    dists = distributions(records, space)
    front = {p["trial"]: p for p in summary.get("front") or ()}
    trials = [frozen_trial(r, dists, front, summary.get("knee"), summary.get("constraints") or {})
              for r in sorted(records, key=lambda r: r["trial"])]
    with open_storage(url) as storage, _optuna_quiet():
        exists, owner = _owner(storage, name, token)
        if exists and owner != token:
            raise ConfigError(f"--storage {shown_url(url)} holds a study {name!r} of another search; "
                              "choose another --study-name")
        if exists:
            optuna.delete_study(study_name=name, storage=storage)
        study = optuna.create_study(storage=storage, study_name=name, directions=["maximize", "minimize"])
        with warnings.catch_warnings():  # experimental since Optuna 3.2, still in 5.0
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(["hw_accuracy", summary["cost_key"]])
        study_attrs = {
            TOKEN_ATTR: token, "dataset": summary.get("dataset"), "device": summary.get("device"),
            "teacher": summary.get("teacher"), "cost_key": summary.get("cost_key"),
            "cost_label": summary.get("cost_label"), "knee_trial": summary.get("knee"),
            "front_trials": [p["trial"] for p in summary.get("front") or ()],
            "max_cost": (summary.get("constraints") or {}).get("max_cost"),
            "min_accuracy": (summary.get("constraints") or {}).get("min_accuracy"),
        }
        for k, v in study_attrs.items():
            study.set_user_attr(k, v)
        study.add_trials(trials)
    return len(trials)


def publish(url: str, name: str, token: str, records: Sequence[Mapping[str, Any]], summary: Mapping[str, Any],
            space: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """:func:`write_study`, reported as ``front.json``'s ``study`` entry; a storage that fails now
    (the results are written; ``--resume`` writes the study again) gives an ``error`` entry."""
    info: dict[str, Any] = {"storage": shown_url(url), "name": name}
    try:
        info["n_trials"] = write_study(url, name, token, records, summary, space)
    except Exception as exc:  # noqa: BLE001 - the study is derived data: never lose the results over it
        info["error"] = f"{type(exc).__name__}: {exc}"[:500]
    return info
