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

import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, Mapping

from codesign.distill import DistillConfig, DistillResult, Workspace, run_distill
from codesign.errors import ConfigError
from codesign.features import Features, cached_features
from codesign.students import FitConfig

#: ``--cost`` short names -> cost keys every device reports.
COST_ALIASES = {"energy": "energy_pj", "latency": "latency_ns", "area": "area_mm2"}
#: Fixed settings a search passes to every trial (``base``), with their defaults.
BASE_KEYS = {
    "dataset": "digits", "data_root": None, "teacher": "mlp", "teacher_weights": None, "teacher_epochs": None,
    "method": "kd", "protocol": "posthoc", "hw_draws": 5, "seed": 0, "validation": 0.1, "device": "ideal",
    "device_set": {}, "cost_key": "energy_pj", "max_memory": None, "cache_dir": None, "threads": 1,
    "torch_device": "cpu",
}


def cost_key(name: str) -> str:
    """The cost-dict key for ``--cost`` (``energy`` -> ``energy_pj``; other keys pass through)."""
    return COST_ALIASES.get(name, name)


def exact_accuracies(accs, n: int) -> list[float]:
    """Accuracies snapped back to exact fractions ``k / n``.

    ``codesign`` measures accuracy as a float32 mean, so the same fraction can come back as two
    floats a few 1e-8 apart, and a Pareto comparison would then see a difference that is not
    there. Every accuracy the search reports goes through this.
    """
    return [round(float(a) * n) / n for a in accs]


def accuracy_stats(accs, n: int) -> dict[str, float]:
    """Mean, standard deviation and worst of exact accuracies (float64)."""
    import numpy as np

    a = np.asarray(exact_accuracies(accs, n), dtype=np.float64)
    return {"mean": float(a.mean()), "std": float(a.std()), "worst": float(a.min())}


def distill_config(config: Mapping[str, Any], base: Mapping[str, Any]) -> DistillConfig:
    """The :class:`DistillConfig` of one trial.

    Args:
        config: sampled values: ``dictionary``, ``degree`` or ``centers``, ``pca_rank`` and a
            ``device`` dict of device fields.
        base: the search's fixed settings (see :data:`BASE_KEYS`).
    """
    b = {**BASE_KEYS, **base}
    unknown = sorted(set(base) - set(BASE_KEYS) - {"students_dir"})
    if unknown:
        raise ConfigError(f"search base: unknown key(s) {', '.join(unknown)}")
    overrides = {**dict(b["device_set"] or {}), **dict(config.get("device") or {})}
    dictionary = config["dictionary"]
    kwargs: dict[str, Any] = {}
    if "degree" in config and config["degree"] is not None:
        kwargs["degree"] = int(config["degree"])
    if "centers" in config and config["centers"] is not None:
        kwargs["centers"] = int(config["centers"])
    return DistillConfig(
        dataset=b["dataset"], data_root=b["data_root"], teacher=b["teacher"], teacher_weights=b["teacher_weights"],
        teacher_epochs=b["teacher_epochs"], pca_rank=int(config["pca_rank"]), dictionary=dictionary,
        fit=FitConfig(method=b["method"], seed=int(b["seed"])), device=b["device"],
        device_overrides=tuple(sorted(overrides.items())), protocol=b["protocol"], hw_draws=int(b["hw_draws"]),
        seed=int(b["seed"]), validation=float(b["validation"]), max_memory=b["max_memory"],
        cache_dir=b["cache_dir"], torch_device=b["torch_device"], **kwargs,
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
        seed = cfg.seed if cfg.dictionary != "monomial" else 0  # monomials are seed-free
        key = (ds.name, len(ds.y_train), cfg.validation, cfg.pca_rank, cfg.dictionary,
               tuple(sorted(cfg.dictionary_params.items())), seed, cfg.cache_dir)
        if key in self._memo:
            self._memo.move_to_end(key)
            return self._memo[key]
        while len(self._memo) >= max(self.keep, 1):
            self._memo.popitem(last=False)
        feats = cached_features(
            ds.x_train, ds.x_test, cfg.pca_rank, cfg.dictionary, cfg.dictionary_params,
            seed=seed, max_memory=cfg.max_memory, cache_dir=cfg.cache_dir,
        )
        self._memo[key] = feats
        return feats


# One workspace per trial process: Ray reuses trial actors, so later trials find the data set,
# the teacher and recent features already in memory.
_WORKSPACE: SearchWorkspace | None = None
_WORKSPACE_KEY: Any = None


def _workspace(teacher, base: Mapping[str, Any]) -> SearchWorkspace:
    global _WORKSPACE, _WORKSPACE_KEY
    # Each trial receives its own copy of the (same) teacher: key on what determines it.
    key = tuple(base.get(k) for k in ("dataset", "data_root", "seed", "validation", "teacher", "teacher_epochs",
                                      "teacher_weights", "cache_dir"))
    if _WORKSPACE is None or _WORKSPACE_KEY != key:
        _WORKSPACE, _WORKSPACE_KEY = SearchWorkspace(teacher), key
    elif teacher is not None:
        _WORKSPACE.given_teacher = teacher
    return _WORKSPACE


def run_trial(
    config: Mapping[str, Any],
    base: Mapping[str, Any],
    *,
    teacher=None,
    workspace: Workspace | None = None,
    save_to: str | Path | None = None,
) -> tuple[dict, DistillResult]:
    """Run one trial; return its flat metrics and the :class:`DistillResult`.

    Args:
        config: the sampled values (see :func:`distill_config`).
        base: the search's fixed settings.
        teacher: the shared teacher (None: through the cache).
        workspace: memo to use (default: this process's search workspace).
        save_to: also save the student there (``codesign.artifacts.save_student``).
    """
    import torch

    t0 = time.perf_counter()
    threads = int(base.get("threads") or 1)
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    cfg = distill_config(config, base)
    ws = workspace if workspace is not None else _workspace(teacher, base)
    result = run_distill(cfg, ws)
    m = result.metrics
    key = cost_key(str(base.get("cost_key", BASE_KEYS["cost_key"])))
    costs = dict(m["cost"])
    if key not in costs:
        raise ConfigError(
            f"cost {key!r} is not reported by device {cfg.device!r}; its cost keys: {', '.join(costs)}"
        )
    n_val, n_train = result.features.test.shape[0], result.features.train.shape[0]
    hw = accuracy_stats(m["hw_accuracies"], n_val)
    metrics: dict[str, Any] = {
        "hw_accuracy": hw["mean"],
        "cost": float(costs[key]),
        "hw_accuracy_std": hw["std"],
        "hw_accuracy_worst": hw["worst"],
        "float_accuracy": exact_accuracies([m["test_accuracy"]], n_val)[0],  # on the validation split
        "train_accuracy": exact_accuracies([m["train_accuracy"]], n_train)[0],
        "n_features": int(m["n_features"]),
        "fit_seconds": float(m["fit_seconds"]),
        "iterations": m.get("iterations"),
    }
    for k, v in costs.items():
        if k not in metrics:
            metrics[k] = float(v)
    if save_to is not None:
        from codesign.artifacts import save_student

        save_student(save_to, result)
        metrics["student"] = str(save_to)
    metrics["trial_seconds"] = time.perf_counter() - t0
    return metrics, result


def objective(config: Mapping[str, Any], base: Mapping[str, Any], *, teacher=None) -> dict:
    """Metrics of one trial (see :func:`run_trial`); deterministic for a given config and base."""
    return run_trial(config, base, teacher=teacher)[0]
