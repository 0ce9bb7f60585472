"""Multi-fidelity searches (``--scheduler asha``): rungs, the two-objective stopping rule, and
checkpoints that are exactly the results of shorter trials."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest

from codesign import load_student
from codesign.cli import main
from codesign.distill import DistillConfig, Workspace
from codesign.errors import ConfigError
from codesign.search import outputs
from codesign.search.asha import Rungs, rung_steps
from codesign.search.config import SearchConfig
from codesign.search.objective import run_trial
from codesign.students import FitConfig

TINY = ["--dataset", "digits", "--ranks", "4", "24", "--space", "centers=16:48", "--hw-draws", "2", "--quiet"]


def test_rungs_halve_down_to_the_first():
    assert rung_steps(200, 2, 25) == [25, 50, 100]
    assert rung_steps(200, 3, 20) == [22, 67]  # 200/3 and 200/9, rounded; 200/27 is below 20
    assert rung_steps(200, 2, 100) == [100]
    with pytest.raises(ConfigError, match="asha_eta=1"):
        rung_steps(200, 1, 25)
    with pytest.raises(ConfigError, match="asha_min_steps=200"):
        rung_steps(200, 2, 200)
    with pytest.raises(ConfigError, match="leaves no rung.*first would be at 50.*lower --asha-min-steps"):
        rung_steps(200, 4, 150)


def test_a_rung_keeps_the_best_half_by_front_then_spread():
    r = Rungs([25, 50], eta=2)
    assert r.decide(25, "a", 0.90, 10.0)  # alone at its rung: goes on
    assert not r.decide(25, "b", 0.80, 20.0)  # dominated by a, the better half of 2 is a
    assert r.decide(25, "c", 0.95, 40.0)  # on the front with a: both ends of it (infinite spread) go on
    assert not r.decide(25, "d", 0.85, 15.0)  # front of a, c and d: d's room is finite, 2 of 4 go on
    assert r.decide(25, "c", 0.10, 40.0)  # a trial's second report at a rung changes nothing
    assert r.recorded[25]["c"] == (0.95, 40.0)
    assert not r.decide(50, "e", 0.99, math.nan)  # unpriced (infeasible): stops, unrecorded
    assert r.recorded[50] == {}
    assert r.decide(200, "a", 0.1, 10.0) and 200 not in r.recorded  # the end is not a rung
    assert r.counts == {25: [2, 2], 50: [0, 1]}
    assert "25 steps: 2 on, 2 stopped" in r.describe()


def test_a_design_above_max_cost_stops_at_its_first_rung():
    r = Rungs([25, 50], eta=2, max_cost=100.0)
    assert not r.decide(25, "dear", 0.99, 150.0)  # the most accurate, but never on the front
    assert r.recorded[25] == {} and r.decide(25, "cheap", 0.5, 50.0)


def test_a_resumed_search_ranks_against_the_earlier_rungs():
    earlier = [
        {"status": "completed", "metrics": {"cost": 10.0, "rung_accuracies": {"25": 0.9, "50": 0.92, "200": 0.95}}},
        {"status": "infeasible", "metrics": {"cost": None, "rung_accuracies": {"25": 0.99}}},
        {"status": "failed", "metrics": {}},
    ]
    assert Rungs([25, 50], eta=2, max_cost=5.0).seed(earlier) == 0  # what decide() would not have recorded
    r = Rungs([25, 50], eta=2)
    assert r.seed(earlier) == 2
    assert r.counts == {25: [0, 0], 50: [0, 0]}
    assert not r.decide(25, "new", 0.85, 12.0)  # dominated by the earlier trial's 25-step result


def test_asha_needs_aware_training():
    with pytest.raises(ConfigError, match="protocol='posthoc' trials have none.*--protocol aware"):
        SearchConfig(scheduler="asha", protocol="posthoc")
    with pytest.raises(ConfigError, match="asha_min_steps=400"):
        SearchConfig(scheduler="asha", protocol="aware", asha_min_steps=400)
    assert SearchConfig(scheduler="asha", protocol="aware").rungs == [25, 50, 100]
    # the default: asha for aware searches (bench_asha_live.py), fifo for posthoc ones
    assert SearchConfig(protocol="aware").resolved_scheduler == "asha"
    assert SearchConfig().resolved_scheduler == "fifo" and SearchConfig().rungs == []
    assert SearchConfig(protocol="aware", scheduler="fifo").rungs == []
    # --aware-steps sets the trials' training and the rungs below it
    longer = SearchConfig(protocol="aware", aware_steps=400)
    assert longer.rungs == [25, 50, 100, 200] and longer.trial_base().fit.aware_steps == 400
    # auto falls back to fifo when no rung fits below the end; asha asked for says why it cannot
    assert SearchConfig(protocol="aware", aware_steps=40).resolved_scheduler == "fifo"
    with pytest.raises(ConfigError, match="leaves no rung below the 40 aware steps"):
        SearchConfig(protocol="aware", aware_steps=40, scheduler="asha")


def test_the_scheduler_a_search_ran_with_is_part_of_its_identity():
    from codesign.search.runner import identity, upgrade_options

    aware = {"protocol": "aware", "dataset": "digits"}
    assert identity(SearchConfig(protocol="aware"))["scheduler"] == "asha"
    assert identity(upgrade_options(aware))["scheduler"] == "fifo"  # stored before --scheduler: trained to the end
    assert identity({**aware, "scheduler": "auto"})["scheduler"] == "asha"
    assert identity(upgrade_options({"dataset": "digits"}))["scheduler"] == identity(SearchConfig())["scheduler"]
    # the rungs' settings matter only when there are rungs
    assert identity(SearchConfig(asha_eta=3)) == identity(SearchConfig())
    assert identity(SearchConfig(protocol="aware", asha_eta=3)) != identity(SearchConfig(protocol="aware"))
    # and the training's length only when trials train through the device
    assert identity(SearchConfig(aware_steps=400)) == identity(SearchConfig())
    assert identity(SearchConfig(protocol="aware", aware_steps=400)) != identity(SearchConfig(protocol="aware"))
    assert identity(upgrade_options(aware))["aware_steps"] == 200  # stored before --aware-steps: the default
    # auto resolved as the search resolves it: no rung below 40 steps, so the trials run fifo
    short = identity(SearchConfig(protocol="aware", aware_steps=40))
    assert short["scheduler"] == "fifo" and short["asha_eta"] is None
    assert short == identity(SearchConfig(protocol="aware", aware_steps=40, scheduler="fifo"))


def test_a_stopped_front_member_without_its_file_is_rerun_to_its_rung(tmp_path, codesign_cache):
    """Scoring the front on the test set re-runs a trial whose student file is missing (a trial
    that ran on another node): a trial stopped at a rung is re-run to that rung, not to the end."""
    from codesign.search.objective import SearchWorkspace
    from codesign.search.runner import _score_on_test

    cfg = SearchConfig(dataset="digits", device="analog_crossbar", protocol="aware", hw_draws=2)
    config = {"dictionary": "monomial", "monomial": {"degree": 2}, "pca_rank": 5}
    record = {"trial": 0, "ray_trial_id": "0a1b2c3d", "config": config, "metrics": {"aware_steps": 25}}
    scores = _score_on_test(record, cfg, tmp_path, SearchWorkspace())
    saved = load_student(tmp_path / "students" / "trials" / "0a1b2c3d.pt")
    assert saved.metrics["aware_steps"] == 25 and 0 < scores["test_hw_accuracy"] <= 1


@pytest.mark.parametrize("device", ["analog_crossbar", "fpga_fixed_point"])
def test_checkpoints_are_the_results_of_shorter_trials(device, codesign_cache):
    """A rung's report equals the whole trial run with that many aware steps, and the last
    report equals the trial run without checkpoints (the training is not disturbed)."""
    base = DistillConfig(dataset="digits", validation=0.1, device=device, protocol="aware", hw_draws=3,
                         fit=FitConfig(aware_steps=60))
    config = {"dictionary": "monomial", "monomial": {"degree": 2}, "pca_rank": 5,
              "pca_placement": "device" if device == "fpga_fixed_point" else "host"}
    ws = Workspace()
    reports = []
    final, _ = run_trial(config, base, workspace=ws, checkpoints=(20, 40), on_report=reports.append)
    assert [m["aware_steps"] for m in reports] == [20, 40] and final["aware_steps"] == 60
    plain, _ = run_trial(config, base, workspace=ws)
    for m, steps in zip(reports + [final], (20, 40, 60)):
        short, _ = run_trial(config, dataclasses.replace(base, fit=FitConfig(aware_steps=steps)), workspace=ws)
        for key in ("hw_accuracy", "hw_accuracy_std", "hw_accuracy_worst", "cost", "float_accuracy"):
            assert m[key] == short[key], (steps, key)
    assert final["hw_accuracy"] == plain["hw_accuracy"]
    assert final["rung_accuracies"] == {"20": reports[0]["hw_accuracy"], "40": reports[1]["hw_accuracy"],
                                        "60": final["hw_accuracy"]}
    assert len(set(final["rung_accuracies"].values())) > 1  # the steps change the result: the test can tell


@pytest.mark.slow
def test_asha_search_stops_trials_and_keeps_their_students(ray_session, split_teacher, tmp_path):
    out = tmp_path / "asha"
    # 100 aware steps, rungs at 25 and 50 (half the default's training, the same two rungs)
    args = ["search", *TINY, "--device", "analog_crossbar", "--protocol", "aware", "--scheduler", "asha",
            "--aware-steps", "100", "--asha-min-steps", "25", "--sampler", "random", "--samples", "8", "--cpus", "2",
            "--out", str(out)]
    assert main(args) == 0
    records = [json.loads(line) for line in (out / "trials.jsonl").read_text().splitlines()]
    done = [r for r in records if r["status"] == "completed"]
    assert len(records) == 8 and len(done) >= 6
    steps = [r["metrics"]["aware_steps"] for r in done]
    assert set(steps) <= {25, 50, 100} and min(steps) < 100 and max(steps) == 100
    for r in done:
        m = r["metrics"]
        # every rung reached is reported, the last one is the trial's result, and its student is that one
        assert list(m["rung_accuracies"]) == [s for s in ("25", "50", "100") if int(s) <= m["aware_steps"]]
        assert m["rung_accuracies"][str(m["aware_steps"])] == m["hw_accuracy"]
        saved = load_student(out / outputs.student_path(r))
        assert saved.metrics["aware_steps"] == m["aware_steps"]
        assert saved.metrics["hw_accuracy_mean"] == pytest.approx(m["hw_accuracy"], abs=1e-6)
    meta = json.loads((out / "search.json").read_text())
    decided = meta["rounds"][0]["asha"]
    assert set(decided) == {"25", "50"}
    ran = [r for r in records if r["status"] in ("completed", "infeasible")]  # infeasible: stopped at the first rung
    assert decided["25"]["continued"] + decided["25"]["stopped"] == len(ran)
    assert sum(1 for r in ran if r["metrics"]["aware_steps"] == 25) == decided["25"]["stopped"]
    front = json.loads((out / "front.json").read_text())
    assert front["scheduler"] == "asha" and front["aware_steps"] == 100
    assert front["n_stopped_early"] == sum(1 for r in ran if r["metrics"]["aware_steps"] < 100)
    by_trial = {r["trial"]: r["metrics"]["aware_steps"] for r in done}
    assert all(p["aware_steps"] == by_trial[p["trial"]] for p in front["front"])
    md = (out / "front.md").read_text()
    assert f"scheduler asha: {front['n_stopped_early']} stopped before the full 100 aware steps" in md
    assert "| aware steps | knee |" in md
    header = (out / "trials.csv").read_text().splitlines()[0].split(",")
    assert "aware_steps" in header and "rung_accuracies" in header
    # the scheduler is part of the search's identity
    assert main([*args[:-2], "--scheduler", "fifo", "--samples", "9", "--resume", "--out", str(out)]) == 2


def test_an_aware_search_trained_in_passes_over_the_data_is_not_resumed_in_steps(tmp_path):
    """Aware searches stored before --aware-steps trained device_epochs passes; their missing
    trials would train 200 steps: the resume is refused instead of mixing the two."""
    from codesign.search.runner import check_out_dir, identity

    ident = identity(SearchConfig(protocol="aware"))
    base = SearchConfig(protocol="aware").trial_base().to_dict()
    base["fit"] = {**{k: v for k, v in base["fit"].items() if k != "aware_steps"}, "device_epochs": 5}
    (tmp_path / "search.json").write_text(json.dumps({"identity": ident, "base": base}))
    (tmp_path / "trials.jsonl").write_text(json.dumps(
        {"trial": 0, "status": "failed", "config": {}, "metrics": {}, "error": "x"}) + "\n")
    with pytest.raises(ConfigError, match="trained 5 passes over the data.*choose a fresh --out"):
        check_out_dir(tmp_path, ident, resume=True)
    base["fit"] = {**base["fit"], "device_epochs": None, "aware_steps": 200}
    (tmp_path / "search.json").write_text(json.dumps({"identity": ident, "base": base}))
    assert check_out_dir(tmp_path, ident, resume=True)["base"]["fit"]["aware_steps"] == 200
