"""The search objective: a pure, seeded function of a trial config. Imports nothing from Ray.

``objective(config, base)`` builds a :class:`~codesign.distill.DistillConfig` from the trial's
sampled values (``config``) and the search's fixed settings (``base``), runs
:func:`~codesign.distill.run_distill` on a validation split held out from the training set
(the search never sees the test set) and returns flat metrics, among them the two objectives:
``hw_accuracy`` (mean validation accuracy over the hardware draws) and ``cost`` (the chosen
cost key of the device's cost model).

Shared work: the teacher is computed once by the driver and passed in; PCA and lifted features
go through the on-disk feature cache (``codesign.features.cached_features``) and a small
per-process memo, so trials on the same (rank, dictionary) never lift twice.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from codesign.artifacts import save_student
from codesign.distill import DistillConfig, DistillResult, Workspace, run_distill
from codesign.errors import ConfigError
from codesign.features import Features, cached_features, dictionary_seed
from codesign.inference_cost import flat_cost

from .config import cost_key
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
            ``pca_rank`` and a ``device`` dict of device fields.
        base: the search's fixed settings (:meth:`~codesign.search.config.SearchConfig.trial_base`).
    """
    overrides = {**dict(base.device_overrides), **dict(config.get("device") or {})}
    return dataclasses.replace(
        base, dictionary=config["dictionary"], dictionary_params=dictionary_params(config),
        pca_rank=int(config["pca_rank"]), device_overrides=tuple(sorted(overrides.items())),
        pca_placement=str(config.get("pca_placement", base.pca_placement)),
    )


class SearchWorkspace(Workspace):
    """A :class:`Workspace` for search trials: a given teacher, disk-cached features, small memo.

    Args:
        teacher: the teacher computed once by the driver (None: load or train through the cache).
        keep: lifted feature sets kept in memory (each can be gigabytes on MNIST).
    """

    def __init__(self, teacher=None, keep: int = 2) -> None:
        super().__init__(disk_features=True)
        self.given_teacher = teacher
        self.keep = keep
        self._memo: OrderedDict = OrderedDict()

    def teacher(self, cfg: DistillConfig, ds):
        if self.given_teacher is not None:
            return self.given_teacher
        return super().teacher(cfg, ds)

    def features(self, cfg: DistillConfig, ds) -> Features:
        params = cfg.dictionary_kwargs
        seed = dictionary_seed(cfg.dictionary, cfg.seed)
        key = (ds.name, len(ds.y_train), cfg.validation, cfg.pca_rank, cfg.dictionary,
               tuple(sorted(params.items())), seed, cfg.cache_dir)
        if key in self._memo:
            self._memo.move_to_end(key)
            return self._memo[key]
        while len(self._memo) >= max(self.keep, 1):
            self._memo.popitem(last=False)
        feats = cached_features(
            ds.x_train, ds.x_test, cfg.pca_rank, cfg.dictionary, params,
            seed=seed, max_memory=cfg.max_memory, cache_dir=cfg.cache_dir,
        )
        self._memo[key] = feats
        return feats


# One workspace per trial process: Ray reuses trial actors, so later trials find the data set,
# the teacher and recent features already in memory.
_WORKSPACE: SearchWorkspace | None = None
_WORKSPACE_KEY: Any = None


def _workspace(teacher, base: DistillConfig) -> SearchWorkspace:
    global _WORKSPACE, _WORKSPACE_KEY
    # Each trial receives its own copy of the (same) teacher: key on what determines it.
    key = (base.dataset, base.data_root, base.seed, base.validation, base.teacher, base.teacher_epochs,
           base.teacher_weights, base.cache_dir)
    if _WORKSPACE is None or _WORKSPACE_KEY != key:
        _WORKSPACE, _WORKSPACE_KEY = SearchWorkspace(teacher), key
    elif teacher is not None:
        _WORKSPACE.given_teacher = teacher
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
) -> tuple[dict, DistillResult]:
    """Run one trial; return its flat metrics and the :class:`DistillResult`.

    Args:
        config: the sampled values (see :func:`distill_config`).
        base: the search's fixed settings.
        cost: the cost key that is the second objective (``energy_pj``, ``latency_ns``...).
        teacher: the shared teacher (None: through the cache).
        workspace: memo to use (default: this process's search workspace).
        save_to: also save the student there (``codesign.artifacts.save_student``).
        threads: torch threads of this trial (a search runs trials side by side, one thread each).
    """
    t0 = time.perf_counter()
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    cfg = distill_config(config, base)
    ws = workspace if workspace is not None else _workspace(teacher, base)
    result = run_distill(cfg, ws)
    m = result.metrics
    key = cost_key(cost)
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
        "iterations": m.get("iterations"),
    }
    for k, v in costs.items():
        if k not in metrics:
            metrics[k] = float(v)
    if save_to is not None:
        save_student(save_to, result)
        metrics["student"] = str(save_to)
    metrics["trial_seconds"] = time.perf_counter() - t0
    return metrics, result


def objective(config: Mapping[str, Any], base: DistillConfig, cost: str = "energy_pj", *, teacher=None) -> dict:
    """Metrics of one trial (see :func:`run_trial`); deterministic for a given config and base."""
    return run_trial(config, base, cost, teacher=teacher)[0]
