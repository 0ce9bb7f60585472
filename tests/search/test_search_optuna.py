"""The Optuna study a search writes (``DIR/study.db`` or ``--storage``): derived from trials.jsonl,
read by ``optuna.load_study``, ``optuna.visualization`` and optuna-dashboard."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import optuna
import pytest

from codesign.cli import main
from codesign.search import outputs
from codesign.search import study as study_mod
from codesign.search.space import flatten_config

pytestmark = pytest.mark.slow

TINY = ["--dataset", "digits", "--ranks", "4", "24", "--space", "centers=16:48", "--hw-draws", "2", "--quiet"]
N = 5


@pytest.fixture(scope="module")
def search(ray_session, split_teacher, tmp_path_factory):
    """A finished digits search with the default storage (``DIR/study.db``, study ``codesign``)."""
    out = tmp_path_factory.mktemp("optuna") / "ideal"
    assert main(["search", *TINY, "--device", "ideal", "--samples", str(N), "--out", str(out)]) == 0
    return out


def sqlite(path: Path) -> str:
    return f"sqlite:///{path}"


def front_trials(out: Path) -> list[int]:
    return [int(r["trial"]) for r in outputs.read_csv(out / "front.csv")]


def expected_best(out: Path) -> set[int]:
    """The front of front.csv, plus any completed trial with exactly a front member's values (Optuna
    lists every one of equal trials, codesign the first)."""
    records = outputs.TrialLog(out / "trials.jsonl").read()
    front = set(front_trials(out))
    points = {(r["metrics"]["hw_accuracy"], r["metrics"]["cost"]) for r in records if r["trial"] in front}
    return front | {r["trial"] for r in records if r["status"] == "completed"
                    and (r["metrics"]["hw_accuracy"], r["metrics"]["cost"]) in points}


def test_study_matches_the_trial_log_trial_by_trial(search):
    records = outputs.TrialLog(search / "trials.jsonl").read()
    study = optuna.load_study(study_name="codesign", storage=sqlite(search / "study.db"))
    assert len(study.trials) == len(records) == N
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    assert study.metric_names == ["hw_accuracy", "energy_pj"]
    front = {int(r["trial"]): r for r in outputs.read_csv(search / "front.csv")}
    for t, r in zip(study.trials, sorted(records, key=lambda r: r["trial"])):
        assert t.number == r["trial"] == t.user_attrs["trial"]
        assert t.user_attrs["status"] == r["status"]
        assert t.params == {k: v for k, v in flatten_config(r["config"]).items() if v is not None}
        if r["status"] == "completed":
            assert t.state == optuna.trial.TrialState.COMPLETE
            assert t.values == [r["metrics"]["hw_accuracy"], r["metrics"]["cost"]]
            assert t.user_attrs["energy_pj"] == r["metrics"]["energy_pj"]
            for stage in ("pca", "lift", "conversion", "matrix"):  # the cost breakdown
                assert t.user_attrs[f"{stage}_energy_pj"] == r["metrics"][f"{stage}_energy_pj"]
            assert t.user_attrs["student"] == f"students/trials/{r['ray_trial_id']}.pt"
        else:
            assert t.state == optuna.trial.TrialState.FAIL and t.user_attrs["error"] == r["error"]
        assert t.user_attrs["on_front"] == (r["trial"] in front)
        if r["trial"] in front:  # the test-set figures of finalize
            assert t.user_attrs["test_hw_accuracy"] == float(front[r["trial"]]["test_hw_accuracy"])
            assert t.user_attrs["knee"] == (front[r["trial"]]["knee"] == "True")
        else:
            assert "test_hw_accuracy" not in t.user_attrs
        assert t.datetime_complete is not None and t.datetime_start <= t.datetime_complete
    token = json.loads((search / "search.json").read_text())["study_token"]
    assert study.user_attrs[study_mod.TOKEN_ATTR] == token and study.user_attrs["cost_key"] == "energy_pj"
    assert study.user_attrs["front_trials"] == front_trials(search)
    summary = json.loads((search / "front.json").read_text())
    assert summary["study"] == {"storage": sqlite(search / "study.db"), "name": "codesign", "n_trials": N}


def test_load_study_best_trials_are_the_front_and_plot_pareto_front_draws_it(search):
    study = optuna.load_study(study_name="codesign", storage=sqlite(search / "study.db"))
    assert len(study.trials) == N
    assert {t.number for t in study.best_trials} == expected_best(search)
    assert set(front_trials(search)) <= {t.number for t in study.best_trials}
    pytest.importorskip("plotly")
    fig = optuna.visualization.plot_pareto_front(study, target_names=study.metric_names)
    assert fig.layout.xaxis.title.text == "hw_accuracy" and fig.layout.yaxis.title.text == "energy_pj"
    shown = sum(len(tr.x) for tr in fig.data if tr.x is not None)
    assert shown == sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str):
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())


def test_optuna_dashboard_serves_the_study(search, tmp_path):
    pytest.importorskip("optuna_dashboard")
    exe = Path(sys.executable).parent / "optuna-dashboard"
    cmd = [str(exe)] if exe.is_file() else [sys.executable, "-m", "optuna_dashboard._cli"]
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "dashboard.log"
    with open(log, "w") as fh:
        proc = subprocess.Popen([*cmd, "--host", "127.0.0.1", "--port", str(port), sqlite(search / "study.db")],
                                stdout=fh, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 60
        while True:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                studies = _get(f"{base}/api/studies")["study_summaries"]
                break
            except OSError:
                assert time.time() < deadline, "optuna-dashboard did not answer: " + log.read_text()[-3000:]
                time.sleep(0.3)
        assert [s["study_name"] for s in studies] == ["codesign"]
        assert studies[0]["directions"] == ["maximize", "minimize"]
        detail = _get(f"{base}/api/studies/{studies[0]['study_id']}")
        assert len(detail["trials"]) == N
        assert detail["objective_names"] == ["hw_accuracy", "energy_pj"]

        def codesign_trial(t):
            return int(next(a["value"] for a in t["user_attrs"] if a["key"] == "trial"))

        assert [codesign_trial(t) for t in detail["trials"]] == [t["number"] for t in detail["trials"]]
        assert {codesign_trial(t) for t in detail["best_trials"]} == expected_best(search)
        with urllib.request.urlopen(f"{base}/dashboard/studies/{studies[0]['study_id']}", timeout=10) as resp:
            assert resp.status == 200 and b"<html" in resp.read().lower()  # the app itself is served
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_resume_rewrites_the_study_to_another_storage_and_name(search, tmp_path):
    """--storage and --study-name are not part of the search's identity: a resume may change them."""
    out = tmp_path / "copy"
    shutil.copytree(search, out, ignore=shutil.ignore_patterns("ray", ".lock"))
    other = tmp_path / "elsewhere" / "studies.db"
    assert main(["search", "--out", str(out), "--resume", "--quiet", "--storage", str(other),
                 "--study-name", "again"]) == 0
    study = optuna.load_study(study_name="again", storage=sqlite(other))
    assert len(study.trials) == N and {t.number for t in study.best_trials} == expected_best(out)
    # inherited by the next resume, which rewrites (never duplicates) the study
    assert main(["search", "--out", str(out), "--resume", "--quiet"]) == 0
    assert len(optuna.load_study(study_name="again", storage=sqlite(other)).trials) == N
    assert json.loads((out / "front.json").read_text())["study"]["name"] == "again"
    # the copy's own study.db is this search's study too: rewritten in place
    assert main(["search", "--out", str(out), "--resume", "--quiet", "--storage", str(out / "study.db"),
                 "--study-name", "codesign"]) == 0
    assert len(optuna.load_study(study_name="codesign", storage=sqlite(out / "study.db")).trials) == N


def test_a_study_of_someone_else_is_never_replaced(search, tmp_path, capsys):
    out = tmp_path / "copy"
    shutil.copytree(search, out, ignore=shutil.ignore_patterns("ray", ".lock"))
    shared = sqlite(tmp_path / "shared.db")
    foreign = optuna.create_study(study_name="codesign", storage=shared)
    foreign.add_trial(optuna.trial.create_trial(value=1.0))
    before = (out / "front.json").read_text()
    assert main(["search", "--out", str(out), "--resume", "--quiet", "--storage", shared]) == 2
    assert "not written by codesign" in capsys.readouterr().err
    assert len(optuna.load_study(study_name="codesign", storage=shared).trials) == 1
    assert (out / "front.json").read_text() == before  # refused before anything was rewritten
    assert main(["search", "--out", str(out), "--resume", "--quiet", "--storage", "nosuchdb://x/y"]) == 2
    assert "cannot open it as an Optuna storage" in capsys.readouterr().err
    # a fresh search refused for its storage leaves its folder as it was: the next try may use it
    fresh = tmp_path / "fresh"
    assert main(["search", *TINY, "--samples", "2", "--storage", "nosuchdb://x/y", "--out", str(fresh)]) == 2
    assert not [p.name for p in fresh.iterdir() if not p.name.startswith(".")]


# --------------------------------------------------------------------------- without Ray
def _record(trial, status, acc=None, cost=None, error=""):
    m = {} if acc is None else {"hw_accuracy": acc, "cost": cost, "energy_pj": cost, "pca_energy_pj": 1.0}
    return {"trial": trial, "round": 0, "status": status, "ray_trial_id": f"r{trial}", "error": error,
            "config": {"dictionary": "rbf", "rbf": {"centers": 20 + trial}, "pca_rank": 4 + trial,
                       "device": {"bits": 4}}, "metrics": m, "finished": "2026-01-01T00:00:00"}


def test_failed_infeasible_and_constrained_trials(tmp_path):
    from codesign.search.config import SearchConfig
    from codesign.search.runner import annotate

    records = [_record(0, "completed", 0.9, 10.0), _record(1, "failed", error="ConfigError: bits"),
               _record(2, "infeasible", 0.8, None, error="needs 21 dBm"), _record(3, "completed", 0.95, 50.0),
               _record(4, "completed", 0.5, 1.0)]
    cfg = SearchConfig(dataset="digits", max_cost=20.0)
    annotate(records, cfg)
    summary = {"cost_key": "energy_pj", "constraints": {"max_cost": 20.0, "min_accuracy": None}, "knee": 0,
               "front": [{"trial": 4, "test_hw_accuracy": 0.49}, {"trial": 0, "test_hw_accuracy": 0.88}]}
    url = sqlite(tmp_path / "s.db")
    space = {"dictionaries": {"rbf": {"centers": {"int": [16, 22], "log": True}}}, "pca_rank": [4, 6],
             "pca_placement": ["host"], "device": {"bits": {"choice": [2, 4]}}}
    assert study_mod.write_study(url, "x", "tok", records, summary, space) == 5
    study = optuna.load_study(study_name="x", storage=url)
    states = [t.state.name for t in study.trials]
    assert states == ["COMPLETE", "FAIL", "FAIL", "COMPLETE", "COMPLETE"]
    assert study.trials[1].user_attrs["error"] == "ConfigError: bits"
    assert study.trials[2].user_attrs["status"] == "infeasible" and study.trials[2].user_attrs["hw_accuracy"] == 0.8
    assert study.trials[2].user_attrs["error"] == "needs 21 dBm"
    assert study.trials[3].user_attrs["violation"].startswith("cost 50")
    assert {t.number for t in study.best_trials} == {0, 4}  # trial 3 breaks --max-cost
    assert study.trials[0].user_attrs["test_hw_accuracy"] == 0.88 and study.trials[0].user_attrs["knee"] is True
    # the space's bounds, widened to the values the log holds (centers 24 > 22, rank up to 8 > 6)
    d = study.trials[4].distributions
    assert (d["rbf/centers"].low, d["rbf/centers"].high, d["rbf/centers"].log) == (16, 24, True)
    assert (d["pca_rank"].low, d["pca_rank"].high) == (4, 8)
    assert list(d["device/bits"].choices) == [2, 4]
    # rewriting replaces the study; another search's token is refused
    assert study_mod.write_study(url, "x", "tok", records[:2], summary, space) == 2
    assert len(optuna.load_study(study_name="x", storage=url).trials) == 2
    with pytest.raises(Exception, match="another search"):
        study_mod.write_study(url, "x", "other", records, summary, space)
    assert "error" in study_mod.publish(url, "x", "other", records, summary, space)
    # a codesign study without trials (a start stopped before its first trial) is anybody's
    assert study_mod.write_study(url, "x", "tok", [], summary, space) == 0
    assert study_mod.publish(url, "x", "other", records, summary, space)["n_trials"] == 5


def test_storage_urls():
    assert study_mod.storage_url(None, "/a/b") == "sqlite:////a/b/study.db"
    assert study_mod.storage_url("/x/y.db", "/a") == "sqlite:////x/y.db"
    assert study_mod.storage_url("postgresql://u:pw@h/db", "/a") == "postgresql://u:pw@h/db"
    assert "pw" not in study_mod.shown_url("postgresql://u:pw@h/db")
