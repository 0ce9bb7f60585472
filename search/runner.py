"""Running a co-design search with Ray Tune, resuming it, and writing its results.

The driver (this module, the only one that knows Ray):

1. checks the results folder (a folder holding a *different* search is refused);
2. loads the data, holds out the validation split, and computes the teacher once (cached on
   disk by :mod:`codesign.teachers`); its outputs and the data set reach every trial through
   ``tune.with_parameters`` (the object store), so no trial retrains or reloads them, on any node;
   it also decomposes the training set once for the PCA of every rank (disk cache);
3. runs a ``ray.tune.Tuner`` over a function trainable with ``OptunaSearch`` sampling both
   objectives (hardware accuracy up, cost down) in the space of :mod:`codesign.search.space`;
4. records every finished trial, completed or failed, in ``trials.jsonl`` the moment Tune
   reports it (a Tune callback), which is what ``--resume`` continues from: finished trials are
   handed back to Optuna, and only the missing ones run;
5. computes the Pareto front itself (:mod:`codesign.search.pareto`), scores each front member once on
   the real test set, saves the best student per target, and writes the CSV/JSON/MD/plots.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import json
import logging
import math
import os
import re
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from codesign.artifacts import load_student, update_metrics
from codesign.cache import atomic_write_bytes, atomic_write_json, atomic_write_text
from codesign.config_files import dump_toml
from codesign.data import load_dataset
from codesign.devices import create_device, get_device_class
from codesign.devices.verdict import require_device
from codesign.device_lifts import dictionary_class
from codesign.dictionaries import params_by_name
from codesign.distill import DistillConfig
from codesign.teachers import ARCHITECTURES
from codesign.errors import ConfigError
from codesign.features import parse_memory, pca_decomposition
from codesign.inference_cost import STAGES, TOTAL_KEYS

from . import outputs
from .outputs import student_path
from .study import check_storage, publish, search_token, storage_url
from .asha import Rungs, make_scheduler
from .config import SearchConfig, cost_key, resolve_scheduler
from .objective import SearchWorkspace, accuracy_stats, exact_accuracies, run_trial
from .pareto import knee_point, pareto_front
from .plots import plot_breakdown, plot_fronts
from .resources import check_cluster_gpus, concurrent_trials, trial_torch_device, with_trial_resources
from .space import KD_SPACE, SearchSpace, build_space, flatten_config, parse_space_option

#: Options that define a search: resuming with any of them changed is refused.
IDENTITY_KEYS = (
    "dataset", "teacher", "teacher_epochs", "teacher_weights", "seed", "validation", "method", "protocol",
    "hw_draws", "device", "set", "preset", "preset_file", "eval_time", "cost", "dictionaries", "space", "ranks", "max_memory",
    "pca_placement", "lift_placement", "host_datapath", "operating_mode", "search_kd", "aware_steps", "scheduler", "asha_eta", "asha_min_steps",
)
#: Version of the cost accounting. 3: held (static) power charged for the time it is held per
#: inference in ``--operating-mode``, power limits checked (issue 26); 2: the whole inference (PCA,
#: lifting, conversions, K) with infeasible designs unpriced; 1 (searches stored without it): the
#: matrix K alone.
COST_MODEL = 3
#: Options of searches stored before ``--space`` existed (see :func:`upgrade_options`).
LEGACY_SPACE_KEYS = ("degrees", "min_centers", "max_centers")
#: Options never inherited from a stored search on --resume (they describe this machine or run).
RUNTIME_KEYS = ("cpus", "address", "resume", "out", "quiet", "config", "debug", "cache_dir", "data_root", "torch_device",
                "gpus_per_trial", "tracker", "tracking_uri", "tracking_experiment")
_TUNE_KEYS = {
    "training_iteration", "time_total_s", "episodes_total", "timesteps_total", "node_ip", "hostname", "pid",
    "time_this_iter_s", "timestamp", "date", "time_since_restore", "timesteps_since_restore",
    "iterations_since_restore", "config", "checkpoint_dir_name", "done", "trial_id", "experiment_tag",
    "should_checkpoint", "experiment_id",
}
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


# --------------------------------------------------------------------------- settings
def identity(cfg: SearchConfig | Mapping[str, Any]) -> dict[str, Any]:
    """The options that make two searches the same search (see :data:`IDENTITY_KEYS`).

    Options a stored identity lacks (it predates them) count as their defaults.
    """
    opts = cfg.options() if isinstance(cfg, SearchConfig) else {**SearchConfig().options(), **cfg}
    out = {}
    for k in IDENTITY_KEYS:
        v = opts.get(k)
        if k == "cost":
            v = cost_key(str(v))
        if k == "scheduler":  # what the trials ran with ("auto" resolved as the search resolves it)
            v = resolve_scheduler(v, opts.get("protocol"), opts.get("aware_steps"), opts.get("asha_eta"),
                                  opts.get("asha_min_steps"))
        if isinstance(v, tuple):
            v = list(v)
        if k == "set":
            v = {str(a): str(b) for a, b in sorted((v or {}).items())}
        if k == "preset_file" and isinstance(cfg, SearchConfig):  # its content (overrides), not its path
            v = cfg.device_preset_file_digest
        out[k] = v
    if out["scheduler"] == "fifo":  # the rungs' settings change nothing when every trial runs to the end
        out["asha_eta"] = out["asha_min_steps"] = None
    if opts.get("protocol") != "aware":  # nor the training's length when no trial trains through the device
        out["aware_steps"] = None
    out["cost_model"] = COST_MODEL if isinstance(cfg, SearchConfig) else cfg.get("cost_model", 1)
    return json.loads(json.dumps(out, default=str))


def upgrade_options(opts: Mapping[str, Any]) -> dict[str, Any]:
    """Options (or an identity) stored before ``--space`` or ``--scheduler``, in today's terms.

    ``degrees [2, 3]`` becomes ``space`` entry ``degree=2,3`` and ``min_centers``/``max_centers``
    become ``centers=MIN:MAX``, so that such a search can still be resumed.
    """
    d = dict(opts)
    if d and "scheduler" not in d:  # stored before --scheduler: every trial trained to the end
        d["scheduler"] = "fifo"
    legacy = {k: d.pop(k) for k in LEGACY_SPACE_KEYS if k in d}
    if not legacy or "space" in d:
        return d
    space = []
    if legacy.get("degrees") is not None:
        space.append("degree=" + ",".join(str(x) for x in legacy["degrees"]))
    if legacy.get("min_centers") is not None and legacy.get("max_centers") is not None:
        space.append(f"centers={legacy['min_centers']}:{legacy['max_centers']}")
    try:  # only the parameters of the dictionaries that search drew from
        known = params_by_name(d.get("dictionaries") or None)
    except ConfigError:
        known = params_by_name()
    d["space"] = [s for s in space if s.partition("=")[0] in known]
    return d


def stored_options(out: str | Path) -> dict[str, Any] | None:
    """The options a search folder was created with (None if it holds no search)."""
    meta = Path(out) / outputs.SEARCH_NAME
    if not meta.is_file():
        return None
    try:
        data = json.loads(meta.read_text())
    except (ValueError, UnicodeDecodeError):
        raise ConfigError(f"{meta} is unreadable; move the folder away or choose a fresh --out") from None
    check_meta_shape(meta, data)
    opts = {k: v for k, v in upgrade_options(data.get("options") or {}).items() if k not in RUNTIME_KEYS}
    # a teacher named by a file (module:factory) would be imported: it must come from the user
    if not is_builtin_teacher(opts.get("teacher")):
        opts.pop("teacher", None)
        opts.pop("teacher_weights", None)
    return opts


#: The sections of ``search.json`` and the JSON type each must have.
META_SHAPE = {"options": dict, "identity": dict, "base": dict, "space": dict, "rounds": list}


def check_meta_shape(meta: Path, data: Any) -> None:
    """Refuse, in one line, a ``search.json`` of the wrong shape (a list, a section of the wrong type)."""
    fix = "restore it, or move the folder away and choose a fresh --out"
    if not isinstance(data, dict):
        raise ConfigError(f"{meta} is damaged (a JSON {type(data).__name__}, not a table of settings); {fix}")
    for key, typ in META_SHAPE.items():
        if data.get(key) is not None and not isinstance(data[key], typ):
            raise ConfigError(f"{meta} is damaged ({key} is a JSON {type(data[key]).__name__}, expected "
                              f"{'an object' if typ is dict else 'a list'}); {fix}")


def is_builtin_teacher(name: Any) -> bool:
    """Whether ``name`` is a built-in teacher architecture (not a module to import)."""
    return name is None or (isinstance(name, str) and name in ARCHITECTURES)


def check_out_dir(out: Path, ident: dict, resume: bool) -> dict | None:
    """Refuse a folder that holds another search (or other files); return the stored search.json."""
    meta = out / outputs.SEARCH_NAME
    if meta.is_file():
        try:
            stored = json.loads(meta.read_text())
        except (ValueError, UnicodeDecodeError):
            raise ConfigError(f"{meta} is damaged; move the folder away or choose a fresh --out") from None
        check_meta_shape(meta, stored)
        n_done = len(outputs.TrialLog(out / outputs.LOG_NAME).read())
        if n_done == 0:  # a start that failed before its first trial: nothing to keep
            return None
        old = identity(upgrade_options(stored.get("identity") or {}))
        diffs = [f"{k}: {old.get(k)!r} there, {ident.get(k)!r} now" for k in (*IDENTITY_KEYS, "cost_model")
                 if old.get(k) != ident.get(k)]
        old_hash = (stored.get("identity") or {}).get("dataset_hash")  # absent in searches stored before it
        if old_hash is not None and ident.get("dataset_hash") is not None and old_hash != ident["dataset_hash"]:
            diffs.append(f"dataset_hash: {old_hash!r} there, {ident['dataset_hash']!r} now (the data set's "
                         "files changed)")
        if diffs:
            hint = ""
            if old.get("teacher") != ident.get("teacher") and not is_builtin_teacher(old.get("teacher")):
                hint = (f" (its teacher {old.get('teacher')!r} imports a module, so --resume never takes it from "
                        f"the folder: pass --teacher {old.get('teacher')} yourself if you trust it)")
            raise ConfigError(
                f"{out} holds a different search ({'; '.join(diffs)}){hint}; choose a fresh --out, "
                f"or rerun with the settings in {out / 'config.toml'}"
            )
        fit = (stored.get("base") or {}).get("fit") or {}
        if ident.get("protocol") == "aware" and fit.get("device_epochs") is not None:
            raise ConfigError(
                f"{out} holds an aware search whose trials trained {fit['device_epochs']} passes over the data "
                f"(stored before --aware-steps); its missing trials would train {ident.get('aware_steps')} steps "
                "each instead: choose a fresh --out")
        if not resume:
            raise ConfigError(
                f"{out} already holds this search ({n_done} trials); "
                "pass --resume to continue it, or choose a fresh --out"
            )
        return stored
    if out.exists() and (not out.is_dir() or any(p for p in out.iterdir() if not p.name.startswith("."))):
        raise ConfigError(f"{out} exists and does not hold a search; choose a fresh or empty --out folder")
    return None


# --------------------------------------------------------------------------- progress
class Progress:
    """Trials done, best so far, front size and time left: a rich bar on a terminal, plain lines otherwise."""

    def __init__(self, total: int, done: int, records: list[dict], cost_name: str, quiet: bool = False) -> None:
        from rich.console import Console

        self.console = Console(stderr=True, highlight=False, soft_wrap=True)
        self.total, self.done, self.records, self.cost_name, self.quiet = total, done, records, cost_name, quiet
        self.t0 = time.perf_counter()
        self.ran = 0
        self._bar = None
        if self.console.is_terminal and not quiet:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress as _P, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self._bar = _P(
                TextColumn("[bold]search"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[best]}"),
                TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn(), console=self.console, transient=False,
            )
            self._task = self._bar.add_task("search", total=total, completed=done, best=self._best())

    def __enter__(self) -> "Progress":
        if self._bar is not None:
            self._bar.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.stop()

    def _best(self) -> str:
        ok = [r for r in self.records if r["status"] == "completed"]
        failed = sum(r["status"] == "failed" for r in self.records)
        infeasible = sum(r["status"] == "infeasible" for r in self.records)
        tail = (f" · failed {failed}" if failed else "") + (f" · infeasible {infeasible}" if infeasible else "")
        if not ok:
            return tail.lstrip(" ·") or "no result yet"
        acc = [r["metrics"]["hw_accuracy"] for r in ok]
        cost = [r["metrics"]["cost"] for r in ok]
        i = max(range(len(ok)), key=lambda j: (acc[j], -cost[j]))
        front = len(pareto_front(acc, cost))
        return f"best {100 * acc[i]:.2f}% at {cost[i]:.3g} · front {front}" + tail

    def log(self, text: str) -> None:
        if not self.quiet:
            self.console.print(text, markup=False, highlight=False)

    def trial_done(self, record: dict) -> None:
        self.done += 1
        self.ran += 1
        desc = outputs.describe_config(record["config"])
        if record["status"] == "completed":
            m = record["metrics"]
            line = (f"[{self.done:>3}/{self.total}] trial {record['trial']:>3}  {desc}:  hw acc {100 * m['hw_accuracy']:.2f}%  "
                    f"{self.cost_name} {m['cost']:.4g}  ({m.get('trial_seconds', 0):.1f} s"
                    + (f", {m['aware_steps']} aware steps" if "rung_accuracies" in m else "") + ")")
        elif record["status"] == "infeasible":
            line = (f"[{self.done:>3}/{self.total}] trial {record['trial']:>3}  {desc}:  INFEASIBLE (hw acc "
                    f"{100 * record['metrics']['hw_accuracy']:.2f}%, off the front)  {record['error']}")
        else:
            line = f"[{self.done:>3}/{self.total}] trial {record['trial']:>3}  {desc}:  FAILED  {record['error']}"
        if self._bar is None and not self.quiet:
            elapsed = time.perf_counter() - self.t0
            left = elapsed / self.ran * max(self.total - self.done, 0)
            line += f"  | {self._best()} | {elapsed:.0f} s elapsed, ~{left:.0f} s left"
        self.log(line)
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done, best=self._best())


# --------------------------------------------------------------------------- Ray pieces
def _trainable(config: dict, base: DistillConfig, cost: str, students_dir: str, teacher=None, data=None,
               checkpoints: tuple[int, ...] = ()) -> None:
    """Ray Tune function trainable: unpack, call the objective, report (also at each of
    ``checkpoints``, the aware steps of ``--scheduler asha``'s rungs)."""
    import ray  # the Ray node the trial ran on (Tune's node_ip is dropped and is one IP for nodes on one host)
    from ray import tune

    trial_id = tune.get_context().get_trial_id()
    node = ray.get_runtime_context().get_node_id()
    torch_device = trial_torch_device(base.torch_device, ray.get_gpu_ids())  # a GPU from --gpus-per-trial: cuda
    if torch_device != base.torch_device:
        base = dataclasses.replace(base, torch_device=torch_device)
    metrics, _ = run_trial(config, base, cost, teacher=teacher, data=data,
                           save_to=Path(students_dir) / f"{trial_id}.pt", checkpoints=checkpoints,
                           on_report=(lambda m: tune.report({**m, "node_id": node})) if checkpoints else None)
    tune.report({**metrics, "node_id": node})


def _error_text(trial) -> str:
    """The last line of a failed trial's traceback (``ConfigError: ...``)."""
    path = getattr(trial, "error_file", None)
    text = ""
    try:
        if path and Path(path).is_file():
            text = Path(path).read_text(errors="replace")
        else:
            err = trial.get_error()
            text = str(err) if err is not None else ""
    except Exception:  # noqa: BLE001 - an unreadable error file must not stop the search
        text = ""
    lines = [_ANSI.sub("", ln).strip() for ln in text.splitlines() if ln.strip()]
    if not lines:
        return "trial failed (no error text; see the Ray logs)"
    last = lines[-1]
    return re.sub(r"^(?:[A-Za-z_][\w]*\.)+(?=\w+(?:Error|Exception|Interrupt)\b)", "", last)[:500]


# Live state of the recorders, kept out of the callback objects: Tune pickles its run config
# (callbacks included) into the experiment folder, and a console or file handle cannot be pickled.
_RECORDERS: dict[int, tuple] = {}


def _recorder_class() -> type:
    """``_Recorder``: a Tune callback that appends each finished trial to the log the moment Tune
    reports it (its live state lives in ``_RECORDERS``).

    Built on first use so that importing this module does not import Ray (``codesign --help``
    stays fast); module ``__getattr__`` serves it under its module-level name, so Tune can pickle
    it by reference.
    """
    from ray import tune

    class _Recorder(tune.Callback):
        def __init__(self, key: int) -> None:
            self.key = key

        def _record(self, trial, status: str, error: str = "") -> None:
            log, records, round_no, progress, on_record = _RECORDERS[self.key]
            result = trial.last_result or {}
            metrics = {k: v for k, v in result.items() if k not in _TUNE_KEYS} if status == "completed" else {}
            if status == "completed" and "hw_accuracy" not in metrics:
                status, error, metrics = "failed", "trial reported no metrics", {}
            if status == "completed" and metrics.get("feasible") is False:
                # trained and scored, but the device cannot build it: no price, off the front
                status, error = "infeasible", str(metrics.get("infeasible") or "infeasible design")
                metrics["cost"] = None
            record = {
                "trial": outputs.next_trial_number(records), "round": round_no, "status": status, "ray_trial_id": trial.trial_id,
                "config": _plain(trial.config), "metrics": metrics, "error": error,
                "finished": _dt.datetime.now().isoformat(timespec="seconds"),
            }
            log.append(record)
            records.append(record)
            progress.trial_done(record)
            on_record(records)

        def on_trial_complete(self, iteration, trials, trial, **info):
            self._record(trial, "completed")

        def on_trial_error(self, iteration, trials, trial, **info):
            self._record(trial, "failed", _error_text(trial))

    _Recorder.__module__ = __name__
    _Recorder.__qualname__ = "_Recorder"
    return _Recorder


def __getattr__(name: str):
    if name == "_Recorder":
        cls = globals()["_Recorder"] = _recorder_class()
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _make_callback(log: outputs.TrialLog, records: list[dict], round_no: int, progress: Progress, on_record):
    key = max(_RECORDERS, default=0) + 1
    _RECORDERS[key] = (log, records, round_no, progress, on_record)
    recorder = globals().get("_Recorder") or __getattr__("_Recorder")
    return recorder(key)


def _plain(config: Mapping[str, Any]) -> dict:
    return json.loads(json.dumps(dict(config), default=str))


def init_ray(address: str | None, cpus: int | None) -> bool:
    """Start (or connect to) Ray unless it is up; return True if this call started it."""
    import ray

    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS") or None
    kwargs: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.WARNING, "log_to_driver": False}
    if address:
        check_ray_address(address)
        try:
            ray.init(address=address, **kwargs)
        except Exception as exc:  # noqa: BLE001 - Ray's own errors (ConnectionError, RuntimeError...) span lines
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ConfigError(f"--address {address}: Ray could not connect ({type(exc).__name__}: {first}); give the "
                              "address `ray start --head` printed (HOST:PORT), or leave --address out for a local "
                              "Ray") from None
    else:
        # a private Ray of our own: token auth stays on (Ray's default), only its notice goes
        with _without_ray_auth_notice():
            ray.init(address="local", num_cpus=int(cpus or os.cpu_count() or 1), **kwargs)
        global _REAPER
        if _REAPER is None:  # the Ray started here ends with this process, even after kill -9
            from . import reaper

            _REAPER = reaper.start()
    return True


#: The watchdog that ends this process's local Ray when the process ends (:mod:`search.reaper`).
_REAPER = None


#: Seconds :func:`check_ray_address` waits for a TCP connection to the cluster's GCS port.
RAY_CONNECT_TIMEOUT_S = 5.0


def check_ray_address(address: str) -> None:
    """Refuse, in one line and within :data:`RAY_CONNECT_TIMEOUT_S`, a ``--address`` that is not
    ``auto``, ``HOST:PORT`` or ``ray://HOST:PORT``, or whose port accepts no connection (Ray
    itself would retry for a minute, then raise a multi-line error)."""
    import socket

    if address in ("auto", "local"):
        return
    text = address.removeprefix("ray://")
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536 or "/" in text:
        raise ConfigError(f"--address {address!r}: expected HOST:PORT (e.g. 10.0.0.5:6379, as `ray start --head` "
                          "prints), ray://HOST:PORT or auto")
    try:
        with socket.create_connection((host, int(port)), timeout=RAY_CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        why = "timed out" if isinstance(exc, socket.timeout) else (exc.strerror or type(exc).__name__)
        raise ConfigError(f"--address {address}: no Ray cluster answers there ({why}); start one with `ray start "
                          "--head` and give the address it prints, or leave --address out for a local Ray") from None


#: The logger and the start of the one notice :func:`_without_ray_auth_notice` drops (Ray 2.5x-2.6x,
#: ``ray/_private/authentication/authentication_token_setup.py``, ``_warn_token_auth_enabled``).
_RAY_AUTH_LOGGER = "ray._private.authentication.authentication_token_setup"
_RAY_AUTH_NOTICE = "Token authentication is enabled for this Ray cluster."


def _drop_ray_auth_notice(record: logging.LogRecord) -> bool:
    """Logging filter: False (drop) for Ray's "token authentication is enabled" notice only."""
    try:
        return not str(record.getMessage()).startswith(_RAY_AUTH_NOTICE)
    except Exception:  # noqa: BLE001 - a record that cannot be formatted is not ours to judge
        return True


@contextlib.contextmanager
def _without_ray_auth_notice():
    """Drop Ray's notice that token authentication is on, for a Ray that codesign starts itself.

    ``ray.init()`` of a new local cluster turns token authentication on (a token in
    ``~/.ray/auth_token``, so that other users of the machine cannot submit work to it) and
    warns about it each time, suggesting ``RAY_AUTH_MODE=disabled``: that is right for a private
    Ray, and not the user's concern. Only that one message is dropped (a filter on its logger for
    the duration of the call); authentication stays on and every other warning, including Ray's
    warning that authentication is *disabled*, is kept.
    """
    logger = logging.getLogger(_RAY_AUTH_LOGGER)
    logger.addFilter(_drop_ray_auth_notice)
    try:
        yield
    finally:
        logger.removeFilter(_drop_ray_auth_notice)


#: User attribute of an Optuna trial holding its constraint values (see :func:`trial_constraints`).
CONSTRAINTS_ATTR = "codesign_constraints"
#: What each constraint value measures, in order (<= 0: satisfied).
CONSTRAINT_NAMES = ("buildable", "max_cost", "min_accuracy")


def constraint_values(metrics: Mapping[str, Any], cfg: SearchConfig) -> list[float]:
    """The constraints of one trial's metrics for Optuna (each <= 0 when satisfied).

    In :data:`CONSTRAINT_NAMES` order: ``1`` for a design the device cannot build or that breaks a
    power limit (``feasible`` false; ``-1`` otherwise), ``cost - max_cost`` (the price of a design
    above a power limit counts) and ``min_accuracy - hw_accuracy`` (0 when the constraint is not
    set, or the value is unknown).
    """
    cost, acc = sampler_values(metrics, cfg.cost_key)[1], metrics.get("hw_accuracy")
    over = 0.0
    if cfg.max_cost is not None and isinstance(cost, (int, float)) and math.isfinite(cost):
        over = float(cost) - cfg.max_cost
    under = 0.0
    if cfg.min_accuracy is not None and isinstance(acc, (int, float)) and math.isfinite(acc):
        under = cfg.min_accuracy - float(acc)
    return [1.0 if metrics.get("feasible") is False else -1.0, over, under]


def trial_constraints(trial) -> list[float]:
    """The constraint values stored on an Optuna trial, in :data:`CONSTRAINT_NAMES` order.

    A trial without them (none recorded) counts as satisfying every constraint.
    """
    return list(trial.user_attrs.get(CONSTRAINTS_ATTR, [0.0] * len(CONSTRAINT_NAMES)))


def constraint_system_attrs(values: Sequence[float]) -> dict[str, float]:
    """The system attributes that Optuna's ``Trial.set_constraint`` writes for ``values``.

    One key ``constraints:<name>`` per :data:`CONSTRAINT_NAMES`, which the constrained TPE and
    NSGA-II samplers read from every finished trial (Optuna 5; its ``constraints_func`` is
    deprecated). Used to replay finished trials into a study on ``--resume``.
    """
    return {f"constraints:{name}": float(v) for name, v in zip(CONSTRAINT_NAMES, values)}


def make_sampler(cfg: SearchConfig, round_no: int = 0):
    """The Optuna sampler of ``--sampler`` for a search of ``cfg.samples`` trials.

    Seeded with ``--sampler-seed`` (default ``--seed``) plus ``1009 * round_no``, so a resumed
    round does not replay the first round's draws.

    * ``tpe``: multi-objective TPE, random for its first ``min(10, max(4, samples // 3))`` trials;
    * ``nsga2``: NSGA-II with a population of ``min(50, max(8, samples // 4))`` (Optuna's 50 would
      leave a 32- or 64-trial search in its random first generation);
    * ``random``: independent uniform draws (the baseline of ``experiments/bench_search.py``).

    TPE and NSGA-II receive every constraint (set on each finished trial by
    :func:`constrained_searcher` with Optuna's ``Trial.set_constraint``: the device's
    buildability and power limits, ``--max-cost``, ``--min-accuracy``), so they
    learn to avoid infeasible regions (constrained TPE, Watanabe & Hutter 2023; NSGA-II's
    constrained domination, Deb et al. 2002) instead of only recording them.
    """
    import optuna

    seed = (cfg.seed if cfg.sampler_seed is None else cfg.sampler_seed) + 1009 * round_no
    if cfg.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=min(50, max(8, cfg.samples // 4)))
    if cfg.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(10, max(4, cfg.samples // 3)))


def sampler_values(metrics: Mapping[str, Any], cost_key: str) -> list[float]:
    """The two objectives the sampler is told: ``hw_accuracy`` and the cost; a design that is
    not priced (the device cannot build it) is told an infinite cost, one above a power limit its
    price, so that Optuna records it as a complete trial whose constraints are broken (NaN would
    make it a failed trial, which the samplers ignore)."""
    cost = metrics.get("cost")
    if not (isinstance(cost, (int, float)) and math.isfinite(cost)):
        priced = metrics.get(cost_key)
        cost = float(priced) if isinstance(priced, (int, float)) and math.isfinite(priced) else math.inf
    return [float(metrics.get("hw_accuracy", 0.0)), float(cost)]


def constrained_searcher(cfg: SearchConfig, **kwargs: Any):
    """Ray Tune's ``OptunaSearch`` whose trials carry their constraints to the sampler.

    Before a finished trial is told to Optuna, its :func:`constraint_values` are stored on it
    (:data:`CONSTRAINTS_ATTR`, and as Optuna constraints with ``Trial.set_constraint``) and an
    infeasible design's objectives replaced by :func:`sampler_values`, so the sampler sees every
    constraint.
    """
    from ray.tune.search.optuna import OptunaSearch

    class _Constrained(OptunaSearch):
        def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
            ot_trial = self._ot_trials.get(trial_id)
            if result and ot_trial is not None and "hw_accuracy" in result:
                values = constraint_values(result, cfg)
                ot_trial.set_user_attr(CONSTRAINTS_ATTR, values)
                for name, value in zip(CONSTRAINT_NAMES, values):
                    ot_trial.set_constraint(name, value)
                result = {**result, **dict(zip(("hw_accuracy", "cost"), sampler_values(result, cfg.cost_key)))}
            super().on_trial_complete(trial_id, result=result, error=error)

    return _Constrained(**kwargs)


def _study_storage(space: SearchSpace, records: list[dict], cfg: SearchConfig):
    """An in-memory Optuna storage holding the finished trials (for --resume)."""
    import optuna

    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(storage=storage, study_name="codesign", directions=["maximize", "minimize"])
    for r in records:
        params = flatten_config(r["config"])
        params = {k: v for k, v in params.items() if v is not None}
        try:
            dists = space.distributions(params)
            params = {k: params[k] for k in dists}
            if r["status"] == "completed" or (r["status"] == "infeasible" and r.get("metrics")):
                m = {**r["metrics"], "feasible": r["status"] == "completed" and r["metrics"].get("feasible", True)}
                cons = constraint_values(m, cfg)
                t = optuna.trial.create_trial(params=params, distributions=dists,
                                              values=sampler_values(m, cfg.cost_key),
                                              user_attrs={CONSTRAINTS_ATTR: cons},
                                              system_attrs=constraint_system_attrs(cons))
            else:
                t = optuna.trial.create_trial(params=params, distributions=dists, state=optuna.trial.TrialState.FAIL)
            study.add_trial(t)
        except Exception:  # noqa: BLE001 - a record the space cannot replay only costs the sampler a hint
            continue
    return storage


# --------------------------------------------------------------------------- the search
def run_search(cfg: SearchConfig) -> dict:
    """Run (or resume) the search ``cfg``; return the front summary.

    Starts Ray on this machine (``cfg.cpus``) unless ``cfg.address`` names a cluster, runs
    ``cfg.samples`` trials, scores the front on the test set and writes everything to ``cfg.out``
    (``trials.csv``, ``front.json/csv/md``, plots, the students of the front).

    Args:
        cfg: the search's settings (the options of ``codesign search``).

    Returns:
        The front summary, as written to ``front.json``: ``front`` (one dict per member: config,
        cost, validation and test accuracy on hardware, student file), ``knee``, ``points`` (every
        completed trial), counts and settings.

    Raises:
        ConfigError: bad settings, a results folder holding another search (or the same data
            set name on changed files) or written by another search right now, or a search whose
            every trial failed.

    Examples:
        >>> import codesign
        >>> summary = codesign.run_search(codesign.SearchConfig(
        ...     dataset="wine", device="ideal", samples=8, out="runs/wine"))  # doctest: +SKIP
        >>> [p["describe"] for p in summary["front"]]  # doctest: +SKIP
    """
    t_start = time.perf_counter()
    if not cfg.out:
        raise ConfigError("give --out DIR: the folder the search writes its results to")
    out = Path(cfg.out).expanduser().resolve()
    ident = identity(cfg)
    # the data's content hash: the same name on other files (an edited CSV) is another search
    ident["dataset_hash"] = load_dataset(cfg.dataset, cfg.data_root or os.environ.get("CODESIGN_DATA")).fingerprint
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; give a folder")
    with out_lock(out):
        return _run_search(cfg, out, ident, t_start)


@contextlib.contextmanager
def out_lock(out: Path):
    """Hold an exclusive lock on ``out`` (``DIR/.lock``) for the run: a second search into the
    same folder at the same time is refused, never interleaved."""
    import fcntl

    out.mkdir(parents=True, exist_ok=True)
    path = out / ".lock"
    fh = open(path, "a+", encoding="utf-8")
    try:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            raise ConfigError(f"another search is writing to {out} ({holder}); wait for it to finish, "
                              "or choose another --out") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} on {os.uname().nodename}, since {_dt.datetime.now().isoformat(timespec='seconds')}")
        fh.flush()
        yield
    finally:
        fh.close()


def _run_search(cfg: SearchConfig, out: Path, ident: dict, t_start: float) -> dict:
    import optuna

    stored = check_out_dir(out, ident, cfg.resume)
    quiet = cfg.quiet
    ray_address = cfg.address or os.environ.get("RAY_ADDRESS")
    if ray_address:  # a wrong address is said before the data and the teacher load, not after
        check_ray_address(ray_address)

    # -- settings that need no data
    samples = cfg.samples
    key = cfg.cost_key
    device_name = cfg.device
    device_cls = get_device_class(device_name)
    pinned = dict(cfg.device_overrides)
    # validates pinned fields and the preset (named or file; its fields stay searchable, as a named preset's)
    device = create_device(device_name, {**dict(cfg.device_preset_file_overrides), **pinned}, preset=cfg.device_preset)
    require_device(device_name, cfg.cache_dir, command="search")  # the contract, before any trial (cached)
    cache_dir = cfg.cache_dir or os.environ.get("CODESIGN_CACHE")
    data_root = cfg.data_root or os.environ.get("CODESIGN_DATA")
    # trials may run on other nodes and in other folders: absolute paths, the memory budget in bytes
    # (``requested`` is what the user asked for: what config.toml and search.json record)
    requested, cfg = cfg, cfg.replace(data_root=str(Path(data_root).resolve()) if data_root else None,
                      cache_dir=str(Path(cache_dir).resolve()) if cache_dir else None,
                      max_memory=parse_memory(cfg.max_memory))
    base = cfg.trial_base()

    # -- data, the validation split, the teacher (once, in the driver)
    dictionaries = list(cfg.searched_dictionaries)
    classes = {d: dictionary_class(d) for d in dictionaries}  # an unknown name lists the installed ones
    dictionary_space = dict(parse_space_option(classes, text) for text in cfg.space)
    ws = SearchWorkspace()
    ds = ws.dataset(base)  # the data and the teacher depend on base's data, teacher and seed only
    n_rows = len(ds.y_train) + len(ds.y_test)
    costs = [*TOTAL_KEYS, *(f"{s}_{k}" for s in STAGES for k in TOTAL_KEYS), *device.cost(ds.n_inputs + 1, ds.n_classes)]
    if key not in costs:
        raise ConfigError(f"--cost {cfg.cost}: the cost of an inference on {device_name!r} has no {key!r}; "
                          f"its keys: {', '.join(costs)} (or energy, latency, area)")
    fields = {f.name for f in dataclasses.fields(device_cls.Config)}
    unknown = [k for k in device_cls.search_space() if k not in fields]
    if unknown:  # every trial would fail: say so before any of them runs
        raise ConfigError(f"device {device_name!r}: its search_space() names {', '.join(map(repr, unknown))}, which "
                          f"{device_cls.Config.__name__} does not have (fix the plugin); its fields: {', '.join(sorted(fields))}")
    space = build_space(
        n_inputs=ds.n_inputs, n_train=len(ds.y_train), n_rows=n_rows, max_memory=cfg.max_memory,
        device_space=device_cls.search_space(), pinned=pinned, dictionaries=dictionaries, ranks=cfg.ranks,
        dictionary_space=dictionary_space, placements=cfg.pca_placements,
        kd_space=KD_SPACE if cfg.search_kd else None,
    )
    study_url, study_token = storage_url(cfg.storage, out), search_token(stored)
    check_storage(study_url, cfg.study_name, study_token)  # a bad --storage is refused before anything is written
    out.mkdir(parents=True, exist_ok=True)
    (out / "students" / "trials").mkdir(parents=True, exist_ok=True)
    students_dir = str(out / "students" / "trials")
    log = outputs.TrialLog(out / outputs.LOG_NAME)
    records = log.read()
    damaged = list(log.damaged)
    lines, disowned = log.line_numbers, set()
    for r in list(records):  # a record whose configuration is not its student's: named and run again
        why = outputs.student_problem(r, out)
        if why:
            damaged.append((lines.get(r["trial"], 0), f"trial {r['trial']}: {why}"))
            disowned.add(r["trial"])
            records.remove(r)
    rounds = list((stored or {}).get("rounds") or [])
    round_no = len(rounds)
    remaining = samples - len(records)
    resolved = requested.options()
    meta = {
        "format": outputs.FORMAT, "identity": ident, "options": resolved, "base": base.to_dict(), "space": space.describe(),
        "rounds": rounds, "created": (stored or {}).get("created") or _dt.datetime.now().isoformat(timespec="seconds"),
        "study_token": study_token,
    }
    atomic_write_json(out / outputs.SEARCH_NAME, meta)
    atomic_write_text(out / "config.toml", dump_toml({k: v for k, v in resolved.items() if k not in RUNTIME_KEYS or k == "out"}))

    progress = Progress(samples, len(records), records, key, quiet)
    for no, why in damaged:  # said even with --quiet: a damaged log is news
        progress.console.print(f"warning: {log.path} line {no} skipped ({why}); its trial will run again",
                               markup=False, highlight=False)
    progress.log(f"search {out}: {device_name} on {cfg.dataset} ({ds.n_inputs} inputs, {len(ds.y_train)} train / "
                 f"{len(ds.y_test)} validation), cost {key}, {samples} trials"
                 + (f", {len(records)} already done" if records else ""))
    with torch_threads(1):  # see torch_threads: one thread per process, trials run side by side
        teacher = ws.teacher(base, ds)
        if remaining > 0:  # every rank's PCA from one decomposition, on disk before any trial asks for it
            pca_decomposition(ds.x_train, cache_dir=cfg.cache_dir, data_key=ds.fingerprint)
    progress.log(f"teacher {cfg.teacher}: {100 * float((teacher.test_logits.argmax(1) == ds.y_test).mean()):.2f}% "
                 f"on the validation split{' (cached)' if teacher.info.get('cached') else ''}")
    shared_teacher = dataclasses.replace(teacher, model=None)  # trials need its outputs only

    interrupted = False
    if remaining > 0:
        started = init_ray(cfg.address, cfg.cpus)
        try:
            import ray
            from ray import tune

            cluster_cpus = int(ray.cluster_resources().get("CPU", 1))
            cpus = max(1, min(int(cfg.cpus or cluster_cpus), cluster_cpus))
            check_cluster_gpus(cfg.gpus_per_trial, ray.cluster_resources())
            optuna.logging.set_verbosity(optuna.logging.WARNING)
            sampler = make_sampler(cfg, round_no)
            searcher = constrained_searcher(cfg, space=space, metric=["hw_accuracy", "cost"], mode=["max", "min"],
                                            sampler=sampler, study_name="codesign",
                                            storage=_study_storage(space, records, cfg))
            rounds.append({"round": round_no, "started": _dt.datetime.now().isoformat(timespec="seconds"),
                           "samples": remaining, "cpus": cpus,
                           "sampler": cfg.sampler, "sampler_seed": cfg.seed if cfg.sampler_seed is None else cfg.sampler_seed})
            atomic_write_json(out / outputs.SEARCH_NAME, {**meta, "rounds": rounds})
            callback = _make_callback(log, records, round_no, progress,
                                      lambda recs: _write_trials_csv(out, recs, space, cfg))
            scheduler = None
            if cfg.resolved_scheduler == "asha":
                rungs = Rungs(cfg.rungs, cfg.asha_eta, max_cost=cfg.max_cost)
                rungs.seed(records)  # --resume: earlier trials' rung results count at their rungs
                scheduler = make_scheduler(rungs)
                progress.log(f"scheduler asha: rungs at {', '.join(map(str, cfg.rungs))} of "
                             f"{cfg.aware_steps} aware steps, the best 1/{cfg.asha_eta} of each rung go on")
            tuner = tune.Tuner(
                with_trial_resources(
                    tune.with_parameters(_trainable, base=base, cost=key, students_dir=students_dir,
                                         teacher=shared_teacher, data=ds, checkpoints=tuple(cfg.rungs)),
                    cfg.gpus_per_trial),
                tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler, num_samples=remaining,
                                            max_concurrent_trials=concurrent_trials(
                                                cpus, remaining, cfg.gpus_per_trial, ray.cluster_resources()),
                                            reuse_actors=True),
                run_config=tune.RunConfig(
                    name=f"round-{round_no}", storage_path=str(out / "ray"),
                    callbacks=[callback, *_tracker_callbacks(cfg, out)], verbose=0,
                    failure_config=tune.FailureConfig(max_failures=0, fail_fast=False),
                ),
            )
            tune_log = out / "ray" / f"round-{round_no}.log"
            tune_log.parent.mkdir(parents=True, exist_ok=True)
            with progress, _quiet_tune(tune_log):
                try:
                    tuner.fit()
                except KeyboardInterrupt:
                    interrupted = True
            _RECORDERS.pop(callback.key, None)
            rounds[-1]["finished"] = _dt.datetime.now().isoformat(timespec="seconds")
            rounds[-1]["ran"] = progress.ran
            if scheduler is not None:  # what successive halving decided at each rung
                rounds[-1]["asha"] = {str(k): {"continued": c[0], "stopped": c[1]} for k, c in rungs.counts.items()}
                progress.log(f"asha: {rungs.describe()}")
        finally:
            if started:
                import ray

                ray.shutdown()
    records = [r for r in log.read() if r["trial"] not in disowned]
    if len(records) < samples:
        interrupted = True
    meta["rounds"] = rounds
    atomic_write_json(out / outputs.SEARCH_NAME, meta)

    with torch_threads(1):
        summary = finalize(out, records, cfg, space, progress)
    # the Optuna study, derived from trials.jsonl (rewritten whole: the two never disagree)
    summary["study"] = publish(study_url, cfg.study_name, study_token, records, summary, meta["space"])
    if "error" in summary["study"]:  # said even with --quiet; the results are written
        progress.console.print(f"warning: the Optuna study was not written to {summary['study']['storage']} "
                               f"({summary['study']['error']}); --resume writes it again", markup=False, highlight=False)
    else:
        progress.log(f"Optuna study {cfg.study_name!r} ({summary['study']['n_trials']} trials) in "
                     f"{summary['study']['storage']}: optuna-dashboard {summary['study']['storage']}")
    if cfg.tracker is not None:
        from . import tracking  # imported only when asked for (the mlflow extra)

        summary["tracker"] = tracking.log_search(cfg, out, summary, records, resolved)
        progress.log(f"MLflow: {summary['tracker']['trial_runs']} trial runs and the front in experiment "
                     f"{summary['tracker']['experiment']!r} at {summary['tracker']['tracking_uri']} "
                     f"(mlflow ui --backend-store-uri {summary['tracker']['tracking_uri']})")
    summary["elapsed_s"] = round(time.perf_counter() - t_start, 1)
    summary["interrupted"] = interrupted
    atomic_write_json(out / "front.json", summary)
    if interrupted:
        progress.log(f"search stopped after {len(records)} of {samples} trials; run the same command with --resume to finish it")
    ran = [r for r in records if r["status"] != "failed"]
    if records and not ran:
        first = next((r.get("error") for r in records if r.get("error")), "no error text")
        raise ConfigError(f"every one of the {len(records)} trials failed (first error: {first}); "
                          f"see {out / 'trials.csv'}")
    return summary


def _tracker_callbacks(cfg: SearchConfig, out: Path) -> list:
    """The Tune callbacks of ``--tracker`` (none without one; :mod:`.tracking` is imported only then)."""
    if cfg.tracker is None:
        return []
    from . import tracking

    return tracking.callbacks(cfg, out)


@contextlib.contextmanager
def torch_threads(n: int):
    """Run the block with ``n`` torch threads (restored after).

    A search runs one thread per process and gets its parallelism from concurrent trials. The
    driver's own work (the teacher, the test-set scores) follows suit: on a busy machine two
    spinning OpenMP threads of a small network can run ~50x slower than one (measured: the
    digits teacher took 160-215 s on two threads next to another job, 3 s on one).
    """

    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


@contextlib.contextmanager
def _quiet_tune(path: Path):
    """Send Tune's own console output to a log file; our progress speaks for it."""
    tune_logger = logging.getLogger("ray.tune")
    level = tune_logger.level
    with open(path, "a", encoding="utf-8") as fh, contextlib.redirect_stdout(fh):
        tune_logger.setLevel(logging.CRITICAL)
        try:
            yield
        finally:
            tune_logger.setLevel(level)


def _write_trials_csv(out: Path, records: list[dict], space: SearchSpace, cfg: SearchConfig) -> None:
    annotate(records, cfg)
    outputs.write_csv(out / "trials.csv", outputs.trial_rows(records, list(space.device), space.columns()))


# --------------------------------------------------------------------------- front and results
def violation(record: Mapping[str, Any], cfg: SearchConfig) -> str:
    """Why a completed trial breaks ``--max-cost`` / ``--min-accuracy`` ('' when it does not)."""
    m = record.get("metrics") or {}
    why = []
    if cfg.max_cost is not None and m.get("cost", 0) > cfg.max_cost:
        why.append(f"cost {m['cost']:.4g} > max_cost {cfg.max_cost:g}")
    if cfg.min_accuracy is not None and m.get("hw_accuracy", 0) < cfg.min_accuracy:
        why.append(f"hw_accuracy {m['hw_accuracy']:.4f} < min_accuracy {cfg.min_accuracy:g}")
    return "; ".join(why)


def annotate(records: list[dict], cfg: SearchConfig) -> list[int]:
    """Set ``feasible``, ``violation`` and ``on_front`` on each record; return the front's indices."""
    ok = []
    for r in records:
        if r["status"] != "completed":
            why = r.get("error", "") if r["status"] == "infeasible" else ""
            r["feasible"], r["violation"], r["on_front"] = False, why, False
            continue
        r["violation"] = violation(r, cfg)
        r["feasible"] = not r["violation"]
        r["on_front"] = False
        if r["feasible"]:
            ok.append(r)
    idx = pareto_front([r["metrics"]["hw_accuracy"] for r in ok], [r["metrics"]["cost"] for r in ok])
    for i in idx:
        ok[i]["on_front"] = True
    return [records.index(ok[i]) for i in idx]


def _score_on_test(record: dict, cfg: SearchConfig, out: Path, teacher_ws: SearchWorkspace, full=None) -> dict:
    """Test-set figures of one front member, from its saved student (re-run if the file is absent).

    ``full``: the whole data set (its test split), loaded once for every front member.
    """
    path = out / student_path(record)
    if not path.is_file():  # e.g. a trial that ran on another node without a shared file system
        base = cfg.trial_base()
        steps = (record.get("metrics") or {}).get("aware_steps")
        if steps is not None:  # a trial stopped at a rung is re-run to that rung, as it was recorded
            base = dataclasses.replace(base, fit=dataclasses.replace(base.fit, aware_steps=int(steps)))
        run_trial(record["config"], base, cfg.cost_key, workspace=teacher_ws, save_to=path)
    if full is None:
        full = load_dataset(cfg.dataset, cfg.data_root)
    st = load_student(path)
    n = len(full.y_test)
    hw = accuracy_stats(st.hw_accuracy(full.x_test, full.y_test, cfg.hw_draws, cfg.seed, cfg.eval_time_s), n)
    return {
        "test_hw_accuracy": hw["mean"], "test_hw_accuracy_std": hw["std"],
        "test_hw_accuracy_worst": hw["worst"],
        "test_float_accuracy": exact_accuracies([st.accuracy(full.x_test, full.y_test)], n)[0],
    }


def summarise(records: list[dict], cfg: SearchConfig) -> dict:
    """The front summary (``front.json``) of a list of trial records, without test-set figures."""
    front_idx = annotate(records, cfg)
    front = []
    for i in front_idx:
        r = records[i]
        m = r["metrics"]
        front.append({
            "trial": r["trial"], "config": r["config"], "describe": outputs.describe_config(r["config"]),
            "cost": m["cost"], "val_hw_accuracy": m["hw_accuracy"], "val_hw_accuracy_std": m.get("hw_accuracy_std"),
            "val_float_accuracy": m.get("float_accuracy"), "n_features": m.get("n_features"),
            "aware_steps": m.get("aware_steps"),
            "costs": {k: v for k, v in m.items() if k not in outputs.CORE_METRICS and k not in outputs.TAIL_METRICS
                      and isinstance(v, (int, float)) and not isinstance(v, bool)},
            "student": student_path(r),
        })
    k = knee_point([p["val_hw_accuracy"] for p in front], [p["cost"] for p in front])
    completed = [r for r in records if r["status"] == "completed"]
    base_steps = cfg.aware_steps
    key = cfg.cost_key
    return {
        "format": "codesign-front/1", "dataset": cfg.dataset, "teacher": cfg.teacher, "device": cfg.device,
        "device_set": dict(cfg.device_overrides), "device_preset": cfg.device_preset,
        "device_preset_file": cfg.trial_base().preset_file_record(), "protocol": cfg.protocol,
        "method": cfg.method, "hw_draws": cfg.hw_draws, "eval_time_s": cfg.eval_time_s, "validation": cfg.validation,
        "seed": cfg.seed, "cost_key": key, "cost_label": outputs.cost_label(key),
        "operating_mode": cfg.operating_mode, "host_datapath": cfg.host_datapath,
        "constraints": {"max_cost": cfg.max_cost, "min_accuracy": cfg.min_accuracy},
        "n_trials": len(records), "n_completed": len(completed),
        "n_infeasible": sum(r["status"] == "infeasible" for r in records),
        "n_failed": sum(r["status"] not in ("completed", "infeasible") for r in records),
        "n_feasible": sum(bool(r.get("feasible")) for r in records),
        "scheduler": cfg.resolved_scheduler,
        "aware_steps": base_steps if cfg.protocol == "aware" else None,
        "n_stopped_early": sum(1 for r in records if r["status"] != "failed"
                               and (r["metrics"].get("aware_steps") or base_steps) < base_steps),
        "points": [{"trial": r["trial"], "cost": r["metrics"]["cost"], "hw_accuracy": r["metrics"]["hw_accuracy"],
                    "feasible": r["feasible"], "on_front": r["on_front"]} for r in completed],
        "front": front,
        "knee": None if k is None else front[k]["trial"],
        "targets": {},
    }


def finalize(out: Path, records: list[dict], cfg: SearchConfig, space: SearchSpace,
             progress: Progress | None = None) -> dict:
    """Front, knee, test-set scores, target students, trials.csv, front files and plots."""
    summary = summarise(records, cfg)
    _write_trials_csv(out, records, space, cfg)
    teacher_ws = SearchWorkspace()
    full = load_dataset(cfg.dataset, cfg.data_root) if summary["front"] else None
    for p in summary["front"]:
        rec = next(r for r in records if r["trial"] == p["trial"])
        p.update(_score_on_test(rec, cfg, out, teacher_ws, full))
        p["student"] = student_path(rec)
    front = summary["front"]
    if front:
        picks = {"accuracy": front[-1], "cost": front[0],
                 "knee": next(p for p in front if p["trial"] == summary["knee"])}
        for target, p in picks.items():
            dest = out / "students" / f"{target}.pt"
            atomic_write_bytes(dest, (out / p["student"]).read_bytes())
            # the copy says what it is: chosen on the validation split, scored on the test set
            update_metrics(dest, search_target=target, search_trial=p["trial"],
                           val_hw_accuracy=p["val_hw_accuracy"], test_hw_accuracy=p["test_hw_accuracy"],
                           test_hw_accuracy_std=p["test_hw_accuracy_std"],
                           test_hw_accuracy_worst=p["test_hw_accuracy_worst"],
                           test_float_accuracy=p["test_float_accuracy"],
                           test_scored_with={"hw_draws": cfg.hw_draws, "seed": cfg.seed, "eval_time_s": cfg.eval_time_s})
            summary["targets"][target] = {"trial": p["trial"], "student": os.path.relpath(dest, out),
                                          "describe": p["describe"], "cost": p["cost"],
                                          "val_hw_accuracy": p["val_hw_accuracy"], "test_hw_accuracy": p["test_hw_accuracy"]}
    outputs.write_front(out, summary, list(space.device), space.columns())
    plot_fronts([summary], out / "pareto.png")
    if summary["cost_key"] in TOTAL_KEYS:
        plot_breakdown([summary], out / "pareto-breakdown.png")
    if progress is not None:
        _print_front(progress, summary, out)
    return summary


def _print_front(progress: Progress, s: dict, out: Path) -> None:
    progress.log(f"{s['n_trials']} trials: {s['n_completed']} completed, {s.get('n_infeasible', 0)} infeasible on the "
                 f"device, {s['n_failed']} failed, {s['n_feasible']} feasible; front of {len(s['front'])}:")
    for p in s["front"]:
        star = " *knee*" if p["trial"] == s["knee"] else ""
        progress.log(f"  trial {p['trial']:>3}  {p['describe']}:  {s['cost_key']} {p['cost']:.4g}  "
                     f"hw acc {100 * p['val_hw_accuracy']:.2f}% val / {100 * p['test_hw_accuracy']:.2f}% test{star}")
    progress.log(f"results in {out}: trials.csv, front.csv/json/md, pareto.png/pdf, students/")
