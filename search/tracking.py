"""Experiment trackers: a search logged to MLflow (``codesign search --tracker mlflow``).

Each trial becomes one MLflow run through Ray Tune's own logger callback
(``ray.air.integrations.mlflow.MLflowLoggerCallback``, on the driver): its configuration as
parameters, everything it reported as metrics (``hw_accuracy`` and ``cost``, the two objectives,
and the device's whole cost breakdown: ``energy_pj``, ``latency_ns``, ``area_mm2``, per stage and
per component). :class:`TrialRunCallback` adds the tags that tie a run to the search
(``codesign.ray_trial_id``). When the search has finished, :func:`log_front` tags every trial run
with its trial number, status and place on the front, and writes one more run, ``front``, holding
the front (metrics stepped along it, the knee) and the search's front files as artifacts.

The default store is local, in the search folder: the SQLite file ``OUT/mlflow.db`` (MLflow 3's
local store; it refuses the old ``./mlruns`` folder store) with the artifacts in
``OUT/mlartifacts``; any tracking URI (a server, a database) is taken with ``--tracking-uri``.
Browse it with ``mlflow ui --backend-store-uri sqlite:///OUT/mlflow.db``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping, Sequence

from ray.air.integrations.mlflow import MLflowLoggerCallback

from codesign.errors import ConfigError

from .config import TRACKERS
#: the pip extra that installs MLflow
EXTRA = "pip install -e '.[mlflow]'"
#: name of the run that holds the front
FRONT_RUN = "front"
#: the search's files logged as artifacts of the front run (those that exist)
FRONT_FILES = ("front.json", "front.md", "front.csv", "trials.csv", "pareto.png", "pareto-breakdown.png",
               "config.toml")


def _mlflow():
    try:
        import mlflow
    except ImportError:
        raise ConfigError(f"--tracker mlflow needs the mlflow package; install it with `{EXTRA}`") from None
    return mlflow


def tracking_uri(uri: str | None, out: Path) -> str:
    """The tracking URI: ``uri`` as given, else the local store ``OUT/mlflow.db``.

    A URI with a scheme (``http://``, ``sqlite:///``, ``file://``...) passes unchanged; a plain
    path is a local SQLite store: ``PATH`` itself if it ends in ``.db``, else ``PATH/mlflow.db``.
    (MLflow 3 refuses its old folder store, ``./mlruns``, unless ``MLFLOW_ALLOW_FILE_STORE=true``.)
    """
    if uri is None:
        path = Path(out) / "mlflow.db"
    elif "://" in uri or uri.startswith(("databricks", "sqlite:")):
        return uri
    else:
        path = Path(uri).expanduser()
        if path.suffix != ".db":
            path = path / "mlflow.db"
    path = path.resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def artifact_location(out: Path) -> str:
    """Where a new experiment keeps its artifacts (the front's files): ``OUT/mlartifacts``."""
    return (Path(out) / "mlartifacts").resolve().as_uri()


def experiment_name(name: str | None, out: Path) -> str:
    """The MLflow experiment: ``name`` as given, else the search folder's name."""
    return name or Path(out).resolve().name


class TrialRunCallback(MLflowLoggerCallback):
    """Ray's MLflow logger callback, with each run tagged by the Ray trial id it logs.

    The id is what ``trials.jsonl`` records (``ray_trial_id``), so :func:`log_front` can find the
    run of every trial of the search.
    """

    def log_trial_start(self, trial) -> None:
        super().log_trial_start(trial)
        run_id = self._trial_runs[trial]
        self.mlflow_util._get_client().set_tag(run_id, "codesign.ray_trial_id", trial.trial_id)


def ensure_experiment(uri: str, experiment: str, artifacts: str) -> str:
    """The id of experiment ``experiment`` at ``uri``, created with its artifacts in ``artifacts``."""
    _mlflow()  # a missing extra is said before any trial runs
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is not None:
        return exp.experiment_id
    return client.create_experiment(experiment, artifact_location=artifacts)


def make_callback(uri: str, experiment: str, artifacts: str, tags: Mapping[str, Any] | None = None
                  ) -> TrialRunCallback:
    """The Tune callback logging each trial to experiment ``experiment`` at ``uri``."""
    ensure_experiment(uri, experiment, artifacts)  # before Ray's callback, which would put artifacts in the cwd
    return TrialRunCallback(tracking_uri=uri, experiment_name=experiment,
                            tags={str(k): str(v) for k, v in (tags or {}).items()})


def _number(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v) if math.isfinite(float(v)) else None


def log_front(uri: str, experiment: str, out: Path, summary: Mapping[str, Any], records: Sequence[Mapping[str, Any]],
              options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Tag the trial runs with their place in the search and log the front as run ``front``.

    Returns ``{"tracking_uri", "experiment", "front_run_id", "trial_runs"}`` (trial runs found).
    """
    mlflow = _mlflow()
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp_id = ensure_experiment(uri, experiment, artifact_location(out))
    runs = {}
    for run in client.search_runs([exp_id], max_results=50_000):
        rid = run.data.tags.get("codesign.ray_trial_id")
        if rid:
            runs[rid] = run.info.run_id
    front_trials = {p["trial"] for p in summary.get("front", [])}
    found = 0
    for r in records:
        run_id = runs.get(str(r.get("ray_trial_id")))
        if run_id is None:
            continue
        found += 1
        for key, value in (("codesign.trial", r.get("trial")), ("codesign.status", r.get("status")),
                           ("codesign.on_front", bool(r.get("trial") in front_trials)),
                           ("codesign.knee", bool(r.get("trial") == summary.get("knee")))):
            client.set_tag(run_id, key, str(value))
    run = client.create_run(exp_id, run_name=FRONT_RUN, tags={"codesign.kind": "front", "mlflow.runName": FRONT_RUN})
    run_id = run.info.run_id
    for k, v in sorted((options or {}).items()):
        client.log_param(run_id, k, str(v)[:500])
    for key in ("n_trials", "n_completed", "n_feasible", "n_infeasible", "n_failed"):
        if _number(summary.get(key)) is not None:
            client.log_metric(run_id, key, float(summary[key]))
    client.log_metric(run_id, "front_size", float(len(summary.get("front", []))))
    for step, p in enumerate(summary.get("front", [])):  # the front in order of cost: one step per member
        for key, name in (("cost", "front_cost"), ("val_hw_accuracy", "front_val_hw_accuracy"),
                          ("test_hw_accuracy", "front_test_hw_accuracy"), ("trial", "front_trial")):
            v = _number(p.get(key))
            if v is not None:
                client.log_metric(run_id, name, v, step=step)
        if p["trial"] == summary.get("knee"):
            for key in ("cost", "val_hw_accuracy", "test_hw_accuracy"):
                v = _number(p.get(key))
                if v is not None:
                    client.log_metric(run_id, f"knee_{key}", v)
    for name in FRONT_FILES:
        path = Path(out) / name
        if path.is_file():
            client.log_artifact(run_id, str(path))
    client.set_terminated(run_id)
    del mlflow
    return {"tracking_uri": uri, "experiment": experiment, "front_run_id": run_id, "trial_runs": found}


def callbacks(cfg, out: Path) -> list:
    """The Tune callbacks of ``cfg.tracker`` for the search in ``out``."""
    if cfg.tracker != "mlflow":
        return []
    tags = {"codesign.search": str(Path(out).resolve()), "codesign.device": cfg.device, "codesign.dataset": cfg.dataset,
            "codesign.cost": cfg.cost_key}
    return [make_callback(tracking_uri(cfg.tracking_uri, out), experiment_name(cfg.tracking_experiment, out),
                          artifact_location(out), tags)]


def log_search(cfg, out: Path, summary: Mapping[str, Any], records: Sequence[Mapping[str, Any]],
               options: Mapping[str, Any]) -> dict[str, Any]:
    """After the search: :func:`log_front` to ``cfg``'s tracker; returns what it logged."""
    return log_front(tracking_uri(cfg.tracking_uri, out), experiment_name(cfg.tracking_experiment, out), out,
                     summary, records, options)


__all__ = ["FRONT_RUN", "TRACKERS", "TrialRunCallback", "artifact_location", "callbacks", "ensure_experiment", "experiment_name", "log_front", "log_search",
           "make_callback", "tracking_uri"]
