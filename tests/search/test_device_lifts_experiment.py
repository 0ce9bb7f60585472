"""experiments/device_lifts/run.py: the table and plot of host-only vs device-lift fronts, from
trials.csv files (the searches themselves are the committed run)."""

from __future__ import annotations

import csv
import json

import pytest


def _trials(path, rows):
    path.mkdir(parents=True)
    with open(path / "trials.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["trial", "status", "feasible", "dictionary", "hw_accuracy", "energy_pj"])
        w.writeheader()
        for i, (d, acc, e, ok) in enumerate(rows):
            w.writerow({"trial": i, "status": "completed", "feasible": ok, "dictionary": d, "hw_accuracy": acc,
                        "energy_pj": e})


def test_summary_table_and_hypervolume(tmp_path, experiment_script):
    run = experiment_script("device_lifts/run.py")
    work = tmp_path / "work"
    _trials(work / "analog_crossbar-host", [("monomial(degree=2)", 0.9, 100.0, True),
                                            ("monomial(degree=3)", 0.95, 1000.0, True),
                                            ("monomial(degree=3)", 0.97, 10.0, False)])
    _trials(work / "analog_crossbar-device", [("monomial(degree=2)", 0.9, 100.0, True),
                                              ("analog_crossbar.relu(features=64)", 0.93, 20.0, True)])
    res = run.summarise(tmp_path / "out", work, ["analog_crossbar"], 3, "cmd")
    e = res["devices"]["analog_crossbar"]
    assert e["reference"]["energy_pj"] == 10000.0  # 10 x the costliest feasible design of either search
    # host: (0.9 - 0.1) x 2 decades + 0.05 x 1 decade; device: relu (0.93 at 20 pJ) dominates monomial (0.9 at 100)
    assert e["host"]["hypervolume"] == pytest.approx(0.8 * 2 + 0.05 * 1)
    assert e["device"]["hypervolume"] == pytest.approx(0.83 * (4 - 1.30103), rel=1e-4)
    assert e["host"]["feasible"] == 2 and e["device"]["device_lift_feasible"] == 1
    assert [p["dictionary"] for p in e["device"]["front"]] == ["analog_crossbar.relu(features=64)"]
    table = (tmp_path / "out" / "table.md").read_text()
    assert "| analog_crossbar | host + device lifts | 2 | 2 | 1 (1) |" in table
    assert (tmp_path / "out" / "fronts.png").stat().st_size > 10_000
    assert json.loads((tmp_path / "out" / "results.json").read_text())["command"] == "cmd"
