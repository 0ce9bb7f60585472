"""experiments/bench_asha.py's replay: what MO-ASHA and full-length trials are charged and which
designs ASHA promotes (the numbers the multi-fidelity decision is made from)."""

from __future__ import annotations

import math

import pytest

RUNGS = [25, 50, 100, 200]


@pytest.fixture(scope="module")
def bench(experiment_script):
    return experiment_script("bench_asha.py")


def design(acc_top: float, cost: float, setup: float = 1.0) -> dict:
    """A design whose accuracy climbs to ``acc_top`` over the rungs; training costs 0.01 s a step."""
    return {"setup_s": setup, "cost": cost, "rungs": {
        str(s): {"accuracy": acc_top - 0.02 * (len(RUNGS) - 1 - k), "train_s": 0.01 * s, "eval_s": 0.1}
        for k, s in enumerate(RUNGS)}}


def ref_for(designs):
    logs = [math.log10(d["cost"]) for d in designs]
    hi = max(logs) + 0.1
    return {"accuracy": 0.1, "log10_cost": hi, "box": 0.9 * (hi - min(logs))}


def test_full_length_trials_are_charged_setup_training_and_one_evaluation(bench):
    ds = [design(0.9, 10.0), design(0.8, 100.0, setup=2.0)]
    trace = bench.replay(ds, RUNGS, 2, "full", ref_for(ds))
    assert [s for s, _ in trace] == pytest.approx([1.0 + 2.0 + 0.1, 3.1 + 2.0 + 2.0 + 0.1])
    assert trace[0][1] > 0 and trace[1][1] >= trace[0][1]


def test_asha_promotes_the_nondominated_and_resumes_training(bench):
    # four designs of equal cost: accuracy alone ranks them; eta=2 promotes the top half of a rung
    ds = [design(a, 50.0) for a in (0.70, 0.90, 0.60, 0.80)]
    ref = ref_for(ds)
    trace = bench.replay(ds, RUNGS, 2, "asha", ref)
    # jobs: d0@25, d1@25, d1@50 (best of 2 at rung 0), d2@25, d3@25, d3@50 (top 2 of 4: d1, d3),
    # d1@100 (best of 2 at rung 1); then nothing is promotable and the pool is spent
    assert len(trace) == 7
    setups = sum(d["setup_s"] for d in ds)  # once per design, never again on promotion
    training = 0.01 * (100 + 50 + 25 + 25)  # resumed: d1 trained to 100 steps in all, not 25 + 50 + 100
    evals = 0.1 * (1 + 3 + 1 + 2)  # one evaluation at every rung a design reached
    assert trace[-1][0] == pytest.approx(setups + training + evals)
    # the front is d1 at 100 steps (0.88): below full-length trials' 0.90, for 6.7 s instead of 12.4
    hv = bench.hypervolume([(0.88, math.log10(50.0))], ref["accuracy"], ref["log10_cost"]) / ref["box"]
    assert trace[-1][1] == pytest.approx(hv)
    full = bench.replay(ds, RUNGS, 2, "full", ref)
    assert full[-1][1] > trace[-1][1] and full[-1][0] == pytest.approx(4 * (1.0 + 2.0 + 0.1))


def _fake_search(folder, started: str, finished: str, trials: list[tuple[str, float, float | None, int]]) -> None:
    """A search folder as ``codesign search`` writes it: ``(finished, accuracy, cost, aware steps)`` per trial."""
    import json

    folder.mkdir(parents=True)
    (folder / "search.json").write_text(json.dumps({"rounds": [{"started": started, "finished": finished}]}))
    lines = [json.dumps({"trial": i, "status": "completed" if c is not None else "infeasible", "finished": f, "config": {},
                         "metrics": {"hw_accuracy": a, "cost": c, "aware_steps": s}})
             for i, (f, a, c, s) in enumerate(trials)]
    (folder / "trials.jsonl").write_text("\n".join(lines) + "\n")
    (folder / "front.json").write_text("{}")


def test_live_benchmark_traces_each_arm_against_its_own_seconds(experiment_script, tmp_path):
    live = experiment_script("bench_asha_live.py")
    day = "2026-11-28T10:00:"
    _fake_search(live.run_dir(tmp_path, "ideal", "fifo", 0), day + "00", day + "40",
                 [(day + "20", 0.90, 100.0, 200), (day + "40", 0.95, 1000.0, 200)])
    _fake_search(live.run_dir(tmp_path, "ideal", "asha", 0), day + "00", day + "30",
                 [(day + "05", 0.80, 100.0, 25), (day + "10", 0.99, 5000.0, 25),
                  (day + "20", 0.95, 100.0, 200), (day + "25", 0.97, 10.0, None)])
    args = live.parse_args(["--devices", "ideal", "--seeds", "0", "--out", str(tmp_path / "out")])
    res = live.report(args, tmp_path)
    (run,) = res["runs"]
    # reference: log10 cost from 1 (cost 10) to 3.699 + 0.1; fifo's front: 0.90 @ 2, 0.95 @ 3
    hi = math.log10(5000.0) + 0.1
    box = 0.9 * (hi - 1.0)
    fifo_hv = ((0.90 - 0.1) * (hi - 2.0) + (0.95 - 0.90) * (hi - 3.0)) / box
    assert run["fifo"]["hypervolume"] == pytest.approx(fifo_hv) and run["fifo"]["seconds"] == 40.0
    # asha at 20 s holds 0.95 @ 2 (dominates fifo's front) and 0.99 @ 3.699: it passes fifo's HV there
    assert run["asha"]["reaches_fifo_at_s"] == 20.0 and run["asha"]["share_of_fifo_seconds"] == pytest.approx(0.5)
    assert run["asha"]["steps"] == {"25": 2, "200": 1} and run["asha"]["hypervolume"] > fifo_hv
    assert run["asha"]["hypervolume_at_fifo_seconds"] == pytest.approx(run["asha"]["hypervolume"])
    text = (tmp_path / "out" / "bench_asha_live.md").read_text()
    assert "| ideal | 0 | 2 | 40 |" in text and "2/0/0/1" in text and "in 1 of 1 runs" in text
    assert (tmp_path / "out" / "bench_asha_live.png").read_bytes()[:4] == b"\x89PNG"
