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


def test_nondominated_rank_orders_fronts_then_spread(bench):
    pts = [(0.9, 2.0), (0.8, 1.0), (0.7, 1.5), (0.85, 1.5), (0.6, 3.0)]
    ranks = bench.nondominated_rank(pts)
    assert [r[0] for r in ranks] == [0, 0, 1, 0, 2]
    assert ranks[0][1] == -math.inf and ranks[1][1] == -math.inf  # the front's ends are kept first
    assert ranks[3][1] > -math.inf
