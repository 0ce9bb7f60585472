"""Trial log, CSV and front files (no Ray), and the pure objective."""

from __future__ import annotations

import json
import math

import pytest

from codesign.distill import DistillConfig
from codesign.search import SearchConfig, outputs
from codesign.search.runner import summarise


def _rec(i, acc, cost, status="completed", **dev):
    cfg = {"dictionary": "monomial", "degree": 2, "pca_rank": 10 + i, "device": dev}
    m = {} if status != "completed" else {"hw_accuracy": acc, "cost": cost, "energy_pj": cost, "n_macs": 10.0 * i,
                                          "student": f"/x/students/trials/t{i}.pt"}
    return {"trial": i, "round": 0, "status": status, "ray_trial_id": f"t{i}", "config": cfg, "metrics": m,
            "error": "" if status == "completed" else "ConfigError: bits=7 is out of range"}


BASE = SearchConfig(dataset="digits", device="brittle", hw_draws=3)


def test_trial_log_survives_a_torn_line(tmp_path):
    log = outputs.TrialLog(tmp_path / "trials.jsonl")
    log.append(_rec(0, 0.9, 1.0))
    with open(log.path, "a") as fh:
        fh.write('{"trial": 1, "stat')  # a kill mid-write
    log.append(_rec(2, 0.8, 0.5))
    got = log.read()
    assert [r["trial"] for r in got] == [0, 2]


def test_summary_constraints_and_csv(tmp_path):
    records = [_rec(0, 0.90, 10.0, bits=4), _rec(1, 0.80, 5.0, bits=3), _rec(2, 0.0, 0.0, "failed", bits=7),
               _rec(3, 0.95, 50.0, bits=5), _rec(4, 0.85, 20.0, bits=5)]
    s = summarise(records, BASE.replace(max_cost=40.0, min_accuracy=0.5))
    assert [p["trial"] for p in s["front"]] == [1, 0]  # 3 breaks max_cost, 4 is dominated by 0
    assert s["n_trials"] == 5 and s["n_failed"] == 1 and s["n_completed"] == 4 and s["n_feasible"] == 3
    assert records[3]["feasible"] is False and "max_cost" in records[3]["violation"]
    assert s["knee"] in (0, 1)
    rows = outputs.trial_rows(records, ["bits"])
    outputs.write_csv(tmp_path / "trials.csv", rows)
    back = outputs.read_csv(tmp_path / "trials.csv")
    assert [r["status"] for r in back] == ["completed", "completed", "failed", "completed", "completed"]
    assert back[2]["error"].startswith("ConfigError") and back[2]["hw_accuracy"] == ""
    assert back[0]["device.bits"] == "4" and float(back[0]["energy_pj"]) == 10.0
    assert back[0]["student"] == "students/trials/t0.pt"
    assert list(back[0]) == list(back[2])  # every row has the same columns
    for p in s["front"]:
        p.update(test_hw_accuracy=p["val_hw_accuracy"] - 0.01, test_float_accuracy=0.99)
    outputs.write_front(tmp_path, s, ["bits"])
    front = outputs.read_csv(tmp_path / "front.csv")
    assert [int(r["trial"]) for r in front] == [1, 0]
    assert json.loads((tmp_path / "front.json").read_text())["cost_key"] == "energy_pj"
    md = (tmp_path / "front.md").read_text()
    assert "| trial |" in md and "Knee" in md


def test_empty_front_files(tmp_path):
    s = summarise([_rec(0, 0, 0, "failed")], BASE)
    assert s["front"] == [] and s["knee"] is None
    outputs.write_front(tmp_path, s)
    assert outputs.read_csv(tmp_path / "front.csv") == []
    assert "empty" in (tmp_path / "front.md").read_text()


def test_cost_labels_carry_units():
    assert outputs.cost_label("energy_pj") == "energy per inference (pJ)"
    assert outputs.cost_label("latency_ns") == "latency per inference (ns)"
    assert outputs.cost_label("area_mm2") == "area (mm²)"
    assert outputs.cost_label("laser_power_mw") == "laser power (mW)"
    assert outputs.cost_label("n_mzi") == "mzi (count)"


def test_objective_is_pure_and_seeded(split_teacher):
    from codesign.search.objective import objective, run_trial

    base = SearchConfig(dataset="digits", device="ideal", hw_draws=2).trial_base()
    assert isinstance(base, DistillConfig) and base.validation == 0.1
    cfg = {"dictionary": "monomial", "monomial": {"degree": 2}, "pca_rank": 8, "device": {"datapath": "int8"}}
    a = objective(cfg, base, "latency")
    b = objective(cfg, base, "latency")
    assert a["hw_accuracy"] == b["hw_accuracy"] and a["cost"] == a["latency_ns"] == b["cost"]
    assert 0.5 < a["hw_accuracy"] <= 1.0 and a["n_features"] == math.comb(10, 2)
    with pytest.raises(Exception, match="not reported"):
        run_trial(cfg, base, "n_photons")


def test_accuracies_are_snapped_to_exact_fractions():
    import numpy as np

    from codesign.search.objective import accuracy_stats, exact_accuracies

    a = float(np.float32(691 / 720))
    b = float(np.mean([np.float32(691 / 720), np.float32(691 / 720), np.float32(691 / 720)], dtype=np.float32))
    assert exact_accuracies([a, b], 720) == [691 / 720, 691 / 720]
    s = accuracy_stats([a, float(np.float32(0.5))], 720)
    assert s["mean"] == (691 / 720 + 0.5) / 2 and s["worst"] == 0.5


def test_plot_of_empty_and_constrained_fronts(tmp_path):
    from codesign.search.plots import plot_fronts

    empty = summarise([_rec(0, 0, 0, "failed")], BASE)
    assert [p.name for p in plot_fronts([empty], tmp_path / "e.png")] == ["e.png", "e.pdf"]
    records = [_rec(0, 0.90, 10.0, bits=4), _rec(1, 0.80, 5.0, bits=3), _rec(2, 0.95, 500.0, bits=5)]
    s = summarise(records, BASE.replace(max_cost=40.0))
    assert plot_fronts([s, empty], tmp_path / "c.svg", labels=["a", "b"])[1].name == "c.png"
    with pytest.raises(Exception, match="different costs"):
        plot_fronts([s, {**empty, "cost_key": "latency_ns"}], tmp_path / "x.png")


@pytest.mark.parametrize("metrics, config, why", [
    ({"hw_accuracy": 1.5, "cost": 1.0}, {}, "metric hw_accuracy = 1.5 is outside [0, 1]"),
    ({"hw_accuracy": 0.9, "cost": -1e9}, {}, "metric cost = -1000000000.0 is negative"),
    ({"hw_accuracy": 0.9, "cost": 1.0, "energy_pj": -3.0}, {}, "metric energy_pj = -3.0 is negative"),
    ({"hw_accuracy": 0.9, "cost": float("inf")}, {}, "metric cost = inf is not finite"),
    ({"hw_accuracy": 0.9, "cost": 1.0, "float_accuracy": -0.1}, {}, "float_accuracy = -0.1 is outside"),
    ({"hw_accuracy": 0.9, "cost": 1.0}, {"pca_rank": 0}, "config pca_rank 0 is not a positive integer"),
    ({"hw_accuracy": 0.9, "cost": 1.0}, {"pca_rank": 4, "device": [1]}, "config device is not a JSON object"),
])
def test_record_values_out_of_range_are_refused(metrics, config, why):
    from codesign.search.outputs import record_problem

    record = {"trial": 0, "status": "completed", "ray_trial_id": "ab_00000", "config": config, "metrics": metrics}
    assert why in record_problem(record)
    ok = {**record, "metrics": {"hw_accuracy": 0.9, "cost": 1.0, "energy_pj": 2.0}, "config": {"pca_rank": 4}}
    assert record_problem(ok) == ""
