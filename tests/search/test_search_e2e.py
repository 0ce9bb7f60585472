"""End-to-end searches on digits with tiny budgets, all on one Ray start (``ray_session``)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import tomllib

import numpy as np
import pytest

from codesign import load_student
from codesign.cli import main
from codesign.search import outputs
from codesign.search.objective import accuracy_stats
from codesign.search.pareto import pareto_front

pytestmark = pytest.mark.slow

TINY = ["--dataset", "digits", "--ranks", "4", "24", "--space", "centers=16:48", "--hw-draws", "2", "--quiet"]


@pytest.fixture(scope="module")
def ideal_search(ray_session, split_teacher, tmp_path_factory):
    out = tmp_path_factory.mktemp("searches") / "ideal"
    assert main(["search", *TINY, "--device", "ideal", "--samples", "4", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def brittle_search(ray_session, split_teacher, brittle_plugin, tmp_path_factory):
    """A search on the test plugin ``brittle``, whose space holds invalid configs (bits > 5)."""
    out = tmp_path_factory.mktemp("searches") / "brittle"
    assert main(["search", *TINY, "--device", "brittle", "--samples", "6", "--cpus", "2", "--out", str(out)]) == 0
    return out


def test_outputs_written_and_parseable(ideal_search):
    out = ideal_search
    for name in ("trials.csv", "trials.jsonl", "front.csv", "front.json", "front.md", "search.json", "config.toml",
                 "pareto.png", "pareto.pdf", "students/accuracy.pt", "students/cost.pt", "students/knee.pt"):
        assert (out / name).is_file(), name
    rows = outputs.read_csv(out / "trials.csv")
    assert len(rows) == 4 and all(r["status"] == "completed" for r in rows)
    front = json.loads((out / "front.json").read_text())
    assert front["cost_key"] == "energy_pj" and front["n_trials"] == 4 and front["device"] == "ideal"
    # the front is ours: recompute it from the CSV
    acc = [float(r["hw_accuracy"]) for r in rows]
    cost = [float(r["cost"]) for r in rows]
    assert [int(rows[i]["trial"]) for i in pareto_front(acc, cost)] == [p["trial"] for p in front["front"]]
    assert {r["trial"] for r in rows if r["on_front"] == "True"} == {str(p["trial"]) for p in front["front"]}
    for p in front["front"]:  # both figures: validation (searched on) and test (scored after)
        assert 0 < p["val_hw_accuracy"] <= 1 and 0 < p["test_hw_accuracy"] <= 1
    assert front["knee"] in [p["trial"] for p in front["front"]]
    assert tomllib.loads((out / "config.toml").read_text())["device"] == "ideal"
    assert (out / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "pareto.pdf").read_bytes()[:5] == b"%PDF-"


def test_best_student_reloads_with_the_same_accuracy(ideal_search):
    from codesign.data import load_dataset
    from codesign.distill import split_validation

    front = json.loads((ideal_search / "front.json").read_text())
    ds = load_dataset("digits")
    val = split_validation(ds, 0.1, 0)
    for target, info in front["targets"].items():
        st = load_student(ideal_search / info["student"])  # one call
        accs = st.hw_accuracy(ds.x_test, ds.y_test, draws=2, seed=0)
        assert float(np.mean(accs)) == pytest.approx(info["test_hw_accuracy"], abs=1e-6), target
        assert accuracy_stats(accs, len(ds.y_test))["mean"] == info["test_hw_accuracy"], target
        vaccs = st.hw_accuracy(val.x_test, val.y_test, draws=2, seed=0)
        assert accuracy_stats(vaccs, len(val.y_test))["mean"] == info["val_hw_accuracy"], target


def test_a_different_search_in_the_folder_is_refused(ideal_search, brittle_plugin, capsys):
    assert main(["search", *TINY, "--device", "brittle", "--samples", "4", "--out", str(ideal_search)]) == 2
    err = capsys.readouterr().err
    assert "holds a different search" in err and "device" in err
    assert main(["search", *TINY, "--device", "ideal", "--samples", "4", "--out", str(ideal_search)]) == 2
    assert "--resume" in capsys.readouterr().err
    # --resume of a finished search runs nothing and rewrites the same front
    before = outputs.TrialLog(ideal_search / "trials.jsonl").read()
    assert main(["search", "--out", str(ideal_search), "--resume", "--quiet"]) == 0
    assert outputs.TrialLog(ideal_search / "trials.jsonl").read() == before


def test_failed_trials_are_recorded_and_the_rest_complete(brittle_search):
    """The plugin was installed after codesign, and is searched by name; bits > 5 trials fail."""
    rows = outputs.read_csv(brittle_search / "trials.csv")
    assert len(rows) == 6
    failed = [r for r in rows if r["status"] == "failed"]
    done = [r for r in rows if r["status"] == "completed"]
    assert failed and done
    for r in failed:
        assert int(r["device.bits"]) > 5
        assert r["error"].startswith("ConfigError") and "bits" in r["error"]
        assert r["on_front"] == "False" and r["hw_accuracy"] == ""
    assert all(int(r["device.bits"]) <= 5 for r in done)
    front = json.loads((brittle_search / "front.json").read_text())
    assert front["n_failed"] == len(failed) and front["front"]


def test_pareto_command_png_pdf_and_markdown(ideal_search, brittle_search, tmp_path, capsys):
    out = tmp_path / "combined.png"
    assert main(["pareto", str(ideal_search), str(brittle_search), "-o", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert out.with_suffix(".pdf").read_bytes()[:5] == b"%PDF-"
    md = out.with_suffix(".md").read_text()
    assert "ideal" in md and "brittle" in md
    svg = tmp_path / "one.svg"
    assert main(["pareto", str(ideal_search), "-o", str(svg)]) == 0
    assert svg.is_file() and svg.with_suffix(".png").is_file()
    assert main(["pareto", str(tmp_path), "-o", str(tmp_path / "x.png")]) == 2
    assert "not a search folder" in capsys.readouterr().err


def test_resume_after_kill_does_not_redo_finished_trials(ray_session, split_teacher, brittle_plugin, plugin_env,
                                                          tmp_path):
    out = tmp_path / "killed"
    N = 6  # one trial at a time (--cpus 1), killed once 2 are logged: the rest are left to the resume
    args = ["search", *TINY, "--device", "brittle", "--samples", str(N), "--cpus", "1", "--out", str(out)]
    address = ray_session.get_runtime_context().gcs_address
    errfile = tmp_path / "killed.stderr"
    with open(errfile, "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "codesign.cli", *args, "--address", address],
                                stdout=subprocess.DEVNULL, stderr=err, start_new_session=True,
                                env=plugin_env)
    log = outputs.TrialLog(out / "trials.jsonl")
    deadline = time.time() + 150
    try:
        while len(log.read()) < 2:
            assert proc.poll() is None, errfile.read_text()[-3000:]
            assert time.time() < deadline, "the search made no progress: " + errfile.read_text()[-3000:]
            time.sleep(0.02)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # a crash: no chance to clean up
        proc.wait()
    before = log.read()
    assert 2 <= len(before) < N, f"the search was not killed midway ({len(before)} trials logged)"
    assert not (out / "front.json").exists()

    assert main(["search", "--out", str(out), "--resume", "--quiet"]) == 0
    after = log.read()
    assert len(after) == N
    assert after[: len(before)] == before  # finished trials kept as they were
    assert [r["trial"] for r in after] == list(range(N))
    assert len({r["ray_trial_id"] for r in after}) == N  # nothing ran twice
    assert all(r["round"] == 1 for r in after[len(before):])
    meta = json.loads((out / "search.json").read_text())
    assert meta["rounds"][-1]["samples"] == N - len(before) == meta["rounds"][-1]["ran"]
    assert json.loads((out / "front.json").read_text())["n_trials"] == N


def test_same_seed_same_search(ideal_search, tmp_path):
    # The same command twice gives the same trials: configs, accuracies and costs. Trials run
    # two at a time, so the trial numbers follow completion order; compare by configuration.
    again = tmp_path / "again"
    assert main(["search", *TINY, "--device", "ideal", "--samples", "4", "--out", str(again)]) == 0
    # identifiers Ray draws at random, completion order and wall times are not results
    # (and whether a trial reused an identical fit of an earlier trial in its process: order-dependent)
    skip = ("seconds", "time", "date", "pid", "node", "host", "ray_trial_id", "student", "trial", "on_front", "reused")

    def rows(folder):
        out = [{k: v for k, v in r.items() if not any(t in k for t in skip)}
               for r in outputs.read_csv(folder / "trials.csv")]
        return sorted(out, key=lambda r: sorted(r.items()))

    first, second = rows(ideal_search), rows(again)
    assert len(first) == 4 and first == second


def test_unbuildable_trials_are_recorded_unpriced_and_kept_off_the_front(ray_session, split_teacher, tmp_path):
    """block_size=32 needs 20.4 dBm per waveguide at 8 ADC bits and no laser margin, above the 20 dBm
    limit: with more ADC bits or margin the device cannot build it. The PCA placement is searched too."""
    out = tmp_path / "photonic"
    assert main(["search", *TINY, "--device", "photonic_mzi", "--set", "block_size=32", "--pca-placement", "host",
                 "device", "--samples", "6", "--cpus", "2", "--out", str(out)]) == 0
    rows = outputs.read_csv(out / "trials.csv")
    assert len(rows) == 6 and {r["pca_placement"] for r in rows} <= {"host", "device"}
    infeasible = [r for r in rows if r["status"] == "infeasible"]
    done = [r for r in rows if r["status"] == "completed"]
    assert infeasible and done
    from codesign.devices import create_device

    def buildable(r):  # the device's own verdict on the trial's settings
        fields = {k.removeprefix("device."): v for k, v in r.items() if k.startswith("device.") and v != ""}
        return not create_device("photonic_mzi", {**fields, "block_size": "32"}).feasibility(int(r["n_features"]), 10)

    for r in infeasible:
        assert r["on_front"] == "False" and r["cost"] == ""
        assert 0 < float(r["hw_accuracy"]) <= 1  # scored, only not priced
        if buildable(r):  # over a power limit (issue 26): priced, its power the reason
            assert "max_power" in r["violation"] and float(r["energy_pj"]) > 0
        else:
            assert "max_waveguide_power_dbm" in r["violation"] and r["energy_pj"] == ""
    for r in done:
        assert buildable(r)
        parts = sum(float(r[f"{s}_energy_pj"]) for s in ("pca", "lift", "conversion", "matrix"))
        assert parts == pytest.approx(float(r["energy_pj"])) and float(r["cost"]) == float(r["energy_pj"])
    for r in done:  # held power in trials.csv (issue 26): heaters, laser and phase DACs over the interval
        assert float(r["interval_ns"]) > 0 and float(r["static_energy_pj"]) > 0
        assert float(r["heater_static_pj"]) == pytest.approx(float(r["heater_static_mw"]) * float(r["interval_ns"]))
        assert float(r["static_energy_pj"]) + float(r["dynamic_energy_pj"]) == pytest.approx(float(r["energy_pj"]))
    front = json.loads((out / "front.json").read_text())
    assert front["operating_mode"] == "latency"
    front_rows = outputs.read_csv(out / "front.csv")
    assert all("static_energy_pj" in r and "matrix_static_energy_pj" in r for r in front_rows)
    assert front["n_infeasible"] == len(infeasible) and front["n_failed"] == 0
    assert {p["trial"] for p in front["front"]} <= {int(r["trial"]) for r in done}
    assert "cannot build (not priced)" in (out / "front.md").read_text()
    assert (out / "pareto-breakdown.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["pareto", str(out), "-o", str(tmp_path / "p.png"), "--breakdown"]) == 0
    assert (tmp_path / "p-breakdown.png").is_file() and (tmp_path / "p-breakdown.pdf").is_file()


def test_search_kd_samples_temperature_and_alpha(ray_session, split_teacher, tmp_path):
    """--search-kd makes kd/temperature and kd/alpha dimensions; each trial fits with its values."""
    out = tmp_path / "kd"
    assert main(["search", *TINY, "--device", "ideal", "--samples", "4", "--search-kd",
                 "--space", "degree=2", "--out", str(out)]) == 0
    records = [json.loads(line) for line in (out / "trials.jsonl").read_text().splitlines()]
    assert len(records) == 4
    for r in records:
        kd = r["config"]["kd"]
        assert kd["temperature"] in ("auto", 1.0, 2.0, 4.0) and kd["alpha"] in ("auto", 0.0, 0.5, 0.9)
        fitted = r["metrics"]["kd_temperature"], r["metrics"]["kd_alpha"]  # "auto" resolved to a number
        assert all(isinstance(v, float) for v in fitted)
        for given, used in zip((kd["temperature"], kd["alpha"]), fitted):
            assert given == "auto" or given == used
    header = (out / "trials.csv").read_text().splitlines()[0].split(",")
    assert "kd.temperature" in header and "kd.alpha" in header
    assert main(["search", *TINY, "--device", "ideal", "--method", "labels", "--search-kd",
                 "--samples", "1", "--out", str(tmp_path / "bad")]) == 2
