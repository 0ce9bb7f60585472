"""Pareto front and knee on hand-made points (exact answers)."""

from __future__ import annotations

import math

import pytest

from codesign.search.pareto import dominates, knee_point, pareto_front, rank_keys, use_log_scale


def test_front_of_hand_made_points():
    #        0     1     2     3     4     5
    acc = [0.90, 0.80, 0.95, 0.85, 0.95, 0.70]
    cost = [10.0, 5.0, 20.0, 12.0, 30.0, 1.0]
    # 3 is dominated by 0 (less accurate, dearer); 4 by 2 (same accuracy, dearer)
    assert pareto_front(acc, cost) == [5, 1, 0, 2]


def test_front_ties_and_duplicates():
    acc = [0.9, 0.9, 0.9, 0.95]
    cost = [2.0, 2.0, 3.0, 2.0]
    # 3 dominates all others (as accurate or more at the same cost)
    assert pareto_front(acc, cost) == [3]
    # exact duplicates: only the first is kept
    assert pareto_front([0.5, 0.5], [1.0, 1.0]) == [0]


def test_front_ignores_missing_and_nan():
    acc = [0.9, None, math.nan, 0.8]
    cost = [2.0, 1.0, 0.5, 1.0]
    assert pareto_front(acc, cost) == [3, 0]
    assert pareto_front([], []) == []
    with pytest.raises(ValueError):
        pareto_front([1.0], [])


def test_front_members_are_mutually_non_dominated():
    import random

    rng = random.Random(0)
    pts = [(rng.random(), rng.random() * 100) for _ in range(200)]
    front = pareto_front([p[0] for p in pts], [p[1] for p in pts])
    on = set(front)
    for i in range(len(pts)):
        dominated = any(dominates(pts[j], pts[i]) for j in range(len(pts)))
        assert (i in on) == (not dominated)


def test_knee_is_the_bulge():
    # a front that rises steeply then flattens: the knee is the corner at cost 2
    acc = [0.50, 0.90, 0.92, 0.93]
    cost = [1.0, 2.0, 6.0, 9.0]
    assert knee_point(acc, cost, log_cost=False) == 1


def test_knee_uses_log_cost_when_it_spans_decades():
    acc = [0.50, 0.80, 0.90, 0.95]
    cost = [1.0, 10.0, 100.0, 10000.0]
    assert use_log_scale(cost)
    # scaled log10 cost: 0, .25, .5, 1 and accuracy 0, .667, .889, 1: the point at cost 10 sits
    # farthest above the chord (.417 vs .389); on a linear cost axis it is the one at cost 100
    assert knee_point(acc, cost) == 1
    assert knee_point(acc, cost, log_cost=False) == 2


def test_knee_small_and_degenerate_fronts():
    assert knee_point([], []) is None
    assert knee_point([0.9], [3.0]) == 0
    # two points: the one nearer the utopia corner (scaled: (0, 0) vs (1, 1) -> tie -> cheaper)
    assert knee_point([0.8, 0.9], [1.0, 2.0]) == 0
    # a straight (no bulge) front falls back to the utopia distance
    # (scaled: (0, 0), (.5, .5), (1, 1); utopia distances 1, .707, 1)
    assert knee_point([0.1, 0.5, 0.9], [1.0, 5.0, 9.0], log_cost=False) == 1


def test_use_log_scale():
    assert not use_log_scale([1.0, 9.0])
    assert use_log_scale([1.0, 10.0])
    assert not use_log_scale([0.0, 100.0])
    assert not use_log_scale([])


def test_rank_keys_orders_fronts_then_spread():
    pts = [(0.9, 2.0), (0.8, 1.0), (0.7, 1.5), (0.85, 1.5), (0.6, 3.0)]
    ranks = rank_keys(pts)
    assert [r[0] for r in ranks] == [0, 0, 1, 0, 2]
    assert ranks[0][1] == -math.inf and ranks[1][1] == -math.inf  # the front's ends are kept first
    # the middle of front 0 has the spread of both objectives between its neighbours: 0.1/0.1 + 1/1
    assert ranks[3][1] == pytest.approx(-2.0)
    assert sorted(range(5), key=lambda i: ranks[i])[-1] == 4


def test_hypervolume_of_a_front():
    from codesign.search.pareto import hypervolume

    # two steps up to (0.5, 1000): 0.4 x 2 decades + 0.05 x 1 decade
    assert hypervolume([0.9, 0.95], [10, 100], 0.5, 1000) == pytest.approx(0.85)
    assert hypervolume([0.9, 0.95], [10, 100], 0.5, 1000, log_cost=False) == pytest.approx(0.4 * 990 + 0.05 * 900)
    # dominated points, points beyond the reference and NaN add nothing
    assert hypervolume([0.9, 0.95, 0.8, 0.99, float("nan")], [10, 100, 50, 2000, 1], 0.5, 1000) == pytest.approx(0.85)
    assert hypervolume([], [], 0.5, 1000) == 0.0
    # a better front has the larger hypervolume
    assert hypervolume([0.92, 0.95], [10, 100], 0.5, 1000) > hypervolume([0.9, 0.95], [10, 100], 0.5, 1000)
