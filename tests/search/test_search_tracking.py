"""``codesign search --tracker mlflow``: every trial a run with its configuration and metrics, and the front.

A tiny digits search logs to the default local store (``OUT/mlflow.db``, artifacts in ``OUT/mlartifacts``); the store is read
back with MLflow's own client. Skipped without mlflow (the extra).
"""

from __future__ import annotations

import json
import math

import pytest

pytest.importorskip("mlflow", reason="the mlflow extra is not installed (pip install -e '.[mlflow]')")

from mlflow.tracking import MlflowClient  # noqa: E402

from codesign.cli import main  # noqa: E402
from codesign.errors import ConfigError  # noqa: E402
from codesign.search import outputs  # noqa: E402
from codesign.search.config import SearchConfig  # noqa: E402

pytestmark = pytest.mark.slow

TINY = ["--dataset", "digits", "--ranks", "4", "16", "--hw-draws", "1", "--quiet", "--dictionaries", "monomial"]
N = 4


@pytest.fixture(scope="module")
def search(ray_session, split_teacher, tmp_path_factory):
    out = tmp_path_factory.mktemp("mlflow") / "fpga-search"
    assert main(["search", *TINY, "--device", "fpga_fixed_point", "--samples", str(N), "--out", str(out),
                 "--tracker", "mlflow"]) == 0
    return out


def _runs(out):
    client = MlflowClient(tracking_uri=f"sqlite:///{(out / 'mlflow.db').resolve()}")
    exp = client.get_experiment_by_name(out.name)
    assert exp is not None, "no experiment named after the search folder"
    return client, client.search_runs([exp.experiment_id])


def test_every_trial_is_a_run_with_its_config_objectives_and_cost_breakdown(search):
    client, runs = _runs(search)
    records = outputs.TrialLog(search / "trials.jsonl").read()
    assert len(records) == N
    front = {p["trial"] for p in json.loads((search / "front.json").read_text())["front"]}
    by_id = {r.data.tags.get("codesign.ray_trial_id"): r for r in runs if r.data.tags.get("codesign.ray_trial_id")}
    assert set(by_id) == {r["ray_trial_id"] for r in records}
    for rec in records:
        run = by_id[rec["ray_trial_id"]]
        assert run.data.tags["codesign.trial"] == str(rec["trial"])
        assert run.data.tags["codesign.status"] == rec["status"]
        assert run.data.tags["codesign.on_front"] == str(rec["trial"] in front)
        m = run.data.metrics
        if rec["status"] == "completed":
            assert m["hw_accuracy"] == pytest.approx(rec["metrics"]["hw_accuracy"], abs=0, rel=1e-12)
            assert m["cost"] == pytest.approx(rec["metrics"]["cost"], rel=1e-12)
            # the cost breakdown: every numeric cost key of the trial, e.g. the K stage's MAC energy
            for key in ("energy_pj", "latency_ns", "area_mm2", "lut", "fit_seconds"):
                if key in rec["metrics"]:
                    assert m[key] == pytest.approx(rec["metrics"][key], rel=1e-12), key
        params = run.data.params
        for key, value in rec["config"].items():  # nested config keys are flattened by Ray's logger
            flat = {f"{key}/{k}": v for k, v in value.items()} if isinstance(value, dict) else {key: value}
            for k, v in flat.items():
                assert params[k] == str(v), k


def test_the_front_is_a_run_with_its_members_and_files(search):
    client, runs = _runs(search)
    front = json.loads((search / "front.json").read_text())
    fronts = [r for r in runs if r.data.tags.get("codesign.kind") == "front"]
    assert len(fronts) == 1
    run = fronts[0]
    assert run.data.metrics["front_size"] == len(front["front"]) >= 1
    assert run.data.metrics["n_trials"] == N
    history = client.get_metric_history(run.info.run_id, "front_cost")
    assert [h.value for h in sorted(history, key=lambda h: h.step)] == [p["cost"] for p in front["front"]]
    knee = next(p for p in front["front"] if p["trial"] == front["knee"])
    assert run.data.metrics["knee_val_hw_accuracy"] == knee["val_hw_accuracy"]
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"front.json", "front.md", "trials.csv", "pareto.png"} <= names
    on_front = {r.data.tags["codesign.trial"] for r in runs if r.data.tags.get("codesign.on_front") == "True"}
    assert on_front == {str(p["trial"]) for p in front["front"]}
    assert front["tracker"]["trial_runs"] == N


def test_tracking_options_need_a_tracker():
    with pytest.raises(ConfigError, match="add --tracker mlflow"):
        SearchConfig(dataset="digits", tracking_uri="file:///tmp/x")
    with pytest.raises(ConfigError, match="tracker"):
        SearchConfig(dataset="digits", tracker="wandb")
    assert not math.isnan(SearchConfig(dataset="digits", tracker="mlflow").gpus_per_trial)
