"""The search objective: a pure, seeded function of a trial config. Imports nothing from Ray.

``objective(config, base)`` builds a :class:`~codesign.distill.DistillConfig` from the trial's
sampled values (``config``) and the search's fixed settings (``base``), runs
:func:`~codesign.distill.run_distill` on a validation split held out from the training set
(the search never sees the test set) and returns flat metrics, among them the two objectives:
``hw_accuracy`` (mean validation accuracy over the hardware draws) and ``cost`` (the chosen
cost key of the device's cost model).

Shared work: the teacher is computed once by the driver and passed in; PCA and lifted features
go through the on-disk feature cache (``codesign.features.cached_features``) and a small
per-process memo, so trials on the same (rank, dictionary) never lift twice; every rank's PCA
comes from one decomposition of the training set (``codesign.features.pca_decomposition``); the
Gram factors live with the features (``Features.gram``), so every fit on them reuses them; and
a trial whose float fit is identical to an earlier one in the process (same features, teacher,
labels and fit settings: trials that differ only in device fields or PCA placement) reuses that
student instead of fitting again. Reuse is exact, never a warm start from a neighbouring trial's
K (that would make a trial's result depend on which trials ran before it in its process).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import math
import time
import weakref
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from codesign.device_lifts import is_device_lift
import torch

from codesign.artifacts import save_student
from codesign.distill import DistillConfig, DistillResult, Workspace, run_distill
from codesign.errors import ConfigError
from codesign.features import Features, cached_features, dictionary_seed
from codesign.inference_cost import flat_cost
from codesign.students import FitConfig, LinearStudent

from .config import cost_key
from .outputs import TIME_METRICS
from .space import dictionary_params

def exact_accuracies(accs, n: int) -> list[float]:
    """Accuracies snapped back to exact fractions ``k / n``.

    ``codesign`` measures accuracy as a float32 mean, so the same fraction can come back as two
    floats a few 1e-8 apart, and a Pareto comparison would then see a difference that is not
    there. Every accuracy the search reports goes through this.
    """
    return [round(float(a) * n) / n for a in accs]


def accuracy_stats(accs, n: int) -> dict[str, float]:
    """Mean, standard deviation and worst of exact accuracies (float64)."""

    a = np.asarray(exact_accuracies(accs, n), dtype=np.float64)
    return {"mean": float(a.mean()), "std": float(a.std()), "worst": float(a.min())}


def distill_config(config: Mapping[str, Any], base: DistillConfig) -> DistillConfig:
    """The :class:`DistillConfig` of one trial: ``base`` with the trial's sampled values.

    Args:
        config: sampled values: ``dictionary``, a dict of its parameters under the dictionary's
            name (older records: at the top level, see :func:`~codesign.search.space.normalize_config`),
            ``pca_rank``, a ``device`` dict of device fields and (``--search-kd``) a ``kd`` dict
            of ``temperature`` / ``alpha`` (a number or ``"auto"``).
        base: the search's fixed settings (:meth:`~codesign.search.config.SearchConfig.trial_base`).
    """
    overrides = {**dict(base.device_overrides), **dict(config.get("device") or {})}
    kd = dict(config.get("kd") or {})
    return dataclasses.replace(
        base, dictionary=config["dictionary"], dictionary_params=dictionary_params(config),
        pca_rank=int(config["pca_rank"]), device_overrides=tuple(sorted(overrides.items())),
        pca_placement=str(config.get("pca_placement", base.pca_placement)),
        lift_placement="device" if is_device_lift(config["dictionary"]) else "host",
        fit=dataclasses.replace(base.fit, **kd) if kd else base.fit,
    )


class SearchWorkspace(Workspace):
    """A :class:`Workspace` for search trials: a given teacher, disk-cached features, small memo.

    Args:
        teacher: the teacher computed once by the driver (None: load or train through the cache).
        keep: lifted feature sets kept in memory (each can be gigabytes on MNIST).
        data: the search's data set (validation split held out) loaded once by the driver
            (None: load it here).
    """

    #: Fitted students kept for exact reuse (each a ``[classes, features]`` matrix).
    keep_students = 16

    def __init__(self, teacher=None, keep: int = 2, data=None) -> None:
        super().__init__(disk_features=True)
        self.given_teacher = teacher
        self.given_data = data
        self.keep = keep
        self._memo: OrderedDict = OrderedDict()
        self._students: OrderedDict = OrderedDict()
        #: whether the last :meth:`student` call reused an earlier fit
        self.last_fit_reused = False

    def student(self, fit: FitConfig, psi, labels, teacher_logits, *, n_classes: int, init=None,
                gram_cache=None) -> LinearStudent:
        """The float student of ``fit`` on these inputs: a copy of an identical earlier fit, else a new fit.

        Identical means the same feature matrix (the same tensor, held here by a weak reference
        only), the same label and teacher-logit buffers (held), the same fit settings (seed
        included), class count and warm start: the fit is a deterministic function of those, so
        the copy equals what fitting again would give.
        """
        key = (repr(fit), n_classes, str(psi.device), tuple(psi.shape), psi.data_ptr(),
               tuple(labels.shape), labels.data_ptr(),
               None if teacher_logits is None else (tuple(teacher_logits.shape), teacher_logits.data_ptr()),
               None if init is None else hashlib.sha256(init.detach().cpu().numpy().tobytes()).hexdigest())
        hit = self._students.get(key)
        if hit is not None and hit[0]() is psi:
            self._students.move_to_end(key)
            self.last_fit_reused = True
            return copy.deepcopy(hit[3])
        student = super().student(fit, psi, labels, teacher_logits, n_classes=n_classes, init=init,
                                  gram_cache=gram_cache)
        self.last_fit_reused = False
        self._students[key] = (weakref.ref(psi), labels, teacher_logits, copy.deepcopy(student))
        while len(self._students) > self.keep_students:
            self._students.popitem(last=False)
        return student

    def dataset(self, cfg: DistillConfig):
        ds = self.given_data
        if ds is None:
            return super().dataset(cfg)
        if not all(a.flags.writeable for a in (ds.x_train, ds.y_train, ds.x_test, ds.y_test)):
            # Ray's object store hands out read-only views (torch warns on them): one private copy
            ds = self.given_data = dataclasses.replace(
                ds, x_train=np.array(ds.x_train), y_train=np.array(ds.y_train), x_test=np.array(ds.x_test),
                y_test=np.array(ds.y_test))
        return ds

    def teacher(self, cfg: DistillConfig, ds):
        if self.given_teacher is not None:
            return self.given_teacher
        return super().teacher(cfg, ds)

    def features(self, cfg: DistillConfig, ds) -> Features:
        params = cfg.dictionary_kwargs
        seed = dictionary_seed(cfg.dictionary, cfg.seed)
        key = (ds.fingerprint, cfg.validation, cfg.pca_rank, cfg.dictionary,
               tuple(sorted(params.items())), seed, cfg.cache_dir, cfg.host_datapath)
        if key in self._memo:
            self._memo.move_to_end(key)
            return self._memo[key]
        while len(self._memo) >= max(self.keep, 1):
            self._memo.popitem(last=False)
        feats = cached_features(
            ds.x_train, ds.x_test, cfg.pca_rank, cfg.dictionary, params,
            seed=seed, max_memory=cfg.max_memory, cache_dir=cfg.cache_dir, data_key=ds.fingerprint,
            host_datapath=cfg.host_datapath, disk=cfg.disk_features,
        )
        self._memo[key] = feats
        return feats


# One workspace per trial process: Ray reuses trial actors, so later trials find the data set,
# the teacher and recent features already in memory.
_WORKSPACE: SearchWorkspace | None = None
_WORKSPACE_KEY: Any = None


def _workspace(teacher, base: DistillConfig, data=None) -> SearchWorkspace:
    global _WORKSPACE, _WORKSPACE_KEY
    # Each trial receives its own copy of the (same) teacher and data: key on what determines them.
    key = (base.dataset, base.data_root, base.seed, base.validation, base.teacher, base.teacher_epochs,
           base.teacher_weights, base.cache_dir)
    if _WORKSPACE is None or _WORKSPACE_KEY != key:
        _WORKSPACE, _WORKSPACE_KEY = SearchWorkspace(teacher, data=data), key
    else:
        if teacher is not None:
            _WORKSPACE.given_teacher = teacher
        if data is not None and _WORKSPACE.given_data is None:
            _WORKSPACE.given_data = data
    return _WORKSPACE


def run_trial(
    config: Mapping[str, Any],
    base: DistillConfig,
    cost: str = "energy_pj",
    *,
    teacher=None,
    workspace: Workspace | None = None,
    save_to: str | Path | None = None,
    threads: int = 1,
    data=None,
    checkpoints: Sequence[int] = (),
    on_report: Callable[[dict], None] | None = None,
) -> tuple[dict, DistillResult]:
    """Run one trial; return its flat metrics and the :class:`DistillResult`.

    Args:
        config: the sampled values (see :func:`distill_config`).
        base: the search's fixed settings.
        cost: the cost key that is the second objective (``energy_pj``, ``latency_ns``...).
        teacher: the shared teacher (None: through the cache).
        workspace: memo to use (default: this process's search workspace).
        save_to: also save the student there (``codesign.artifacts.save_student``); with
            checkpoints, each checkpoint's student is saved there first, so the file always
            holds the student of the metrics last reported.
        threads: torch threads of this trial (a search runs trials side by side, one thread each).
        data: the search's data set, validation split held out (None: loaded in this process).
        checkpoints: aware steps at which ``on_report`` receives the trial's metrics so far
            (multi-fidelity searches, :mod:`codesign.search.asha`); each is what a trial of
            exactly that many aware steps reports. ``rung_accuracies`` holds the hardware
            accuracy of every checkpoint reached (and of the end).
        on_report: called with each checkpoint's metrics (not with the final ones, which are
            returned).
    """
    t0 = time.perf_counter()
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    cfg = distill_config(config, base)
    ws = workspace if workspace is not None else _workspace(teacher, base, data)
    key = cost_key(cost)
    rungs: dict[str, float] = {}

    def flat(result: DistillResult) -> dict:
        metrics = trial_metrics(result, cfg, key, reused=bool(getattr(ws, "last_fit_reused", False)))
        if "aware_steps" in result.metrics:
            metrics["aware_steps"] = int(result.metrics["aware_steps"])
            rungs[str(metrics["aware_steps"])] = metrics["hw_accuracy"]
            if checkpoints:
                metrics["rung_accuracies"] = dict(rungs)
        t_save = time.perf_counter()
        if save_to is not None:
            save_student(save_to, result)
            metrics["student"] = str(save_to)
        t_end = time.perf_counter()
        timings = dict(getattr(result, "timings", None) or {})
        metrics["trial_seconds"] = t_end - t0
        parts = {"time_data_s": timings.get("data_s", 0.0), "time_features_s": timings.get("features_s", 0.0),
                 "time_fit_s": timings.get("fit_s", 0.0), "time_hw_s": timings.get("hw_s", 0.0),
                 "time_save_s": t_end - t_save}
        parts["time_overhead_s"] = max(metrics["trial_seconds"] - sum(parts.values()), 0.0)
        metrics.update({k: round(float(parts[k]), 6) for k in TIME_METRICS})
        return metrics

    def checkpoint(result: DistillResult) -> None:
        on_report(flat(result))

    result = run_distill(cfg, ws, checkpoints=checkpoints, on_checkpoint=checkpoint if on_report else None)
    return flat(result), result


def trial_metrics(result: DistillResult, cfg: DistillConfig, key: str, reused: bool = False) -> dict:
    """The flat metrics of a trial's result: the two objectives first (``hw_accuracy`` and
    ``cost``, NaN for an infeasible design), then the accuracies, the feature count, the fit and
    every cost key of the device."""
    m = result.metrics
    costs = flat_cost(m["cost"])
    feasible = bool(m["cost"]["feasible"])
    if feasible and key not in costs:
        raise ConfigError(
            f"cost {key!r} is not reported by device {cfg.device!r}; its cost keys: {', '.join(costs)}"
        )
    n_val, n_train = result.features.test.shape[0], result.features.train.shape[0]
    hw = accuracy_stats(m["hw_accuracies"], n_val)
    metrics: dict[str, Any] = {
        "hw_accuracy": hw["mean"],
        # an infeasible design is not priced: NaN (Optuna records the trial as failed, and the
        # search as infeasible, off the front)
        "cost": float(costs[key]) if feasible else math.nan,
        "feasible": feasible,
        "infeasible": "; ".join(m["cost"]["infeasible"]),
        "hw_accuracy_std": hw["std"],
        "hw_accuracy_worst": hw["worst"],
        "float_accuracy": exact_accuracies([m["val_accuracy"]], n_val)[0],  # on the validation split
        "train_accuracy": exact_accuracies([m["train_accuracy"]], n_train)[0],
        "n_features": int(m["n_features"]),
        "fit_seconds": float(m["fit_seconds"]),
        "fit_reused": reused,
        "iterations": m.get("iterations"),
    }
    if cfg.fit.method == "kd":  # the values fitted with (chosen on a validation split when "auto")
        metrics["kd_temperature"], metrics["kd_alpha"] = m.get("temperature"), m.get("alpha")
    for k, v in costs.items():
        if k not in metrics:
            metrics[k] = float(v)
    return metrics


def objective(config: Mapping[str, Any], base: DistillConfig, cost: str = "energy_pj", *, teacher=None) -> dict:
    """Metrics of one trial (see :func:`run_trial`); deterministic for a given config and base."""
    return run_trial(config, base, cost, teacher=teacher)[0]
