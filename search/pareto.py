"""Pareto fronts of (accuracy, cost) points and their knee, computed by us (not by Optuna).

Accuracy is maximised and cost minimised. A point is on the front when no other point is at
least as accurate and at most as costly while strictly better in one of the two; of several
points with exactly the same (accuracy, cost) only the first (lowest index) is kept, so the
front reads as a staircase with one point per step.
"""

from __future__ import annotations

import math
from typing import Sequence


def pareto_front(accuracy: Sequence[float], cost: Sequence[float]) -> list[int]:
    """Indices of the non-dominated points, sorted by increasing cost (and accuracy).

    Args:
        accuracy: one value per point, higher is better.
        cost: one value per point, lower is better.

    Returns:
        Indices into the inputs. Points whose accuracy or cost is NaN or missing are ignored.
    """
    if len(accuracy) != len(cost):
        raise ValueError(f"accuracy and cost differ in length ({len(accuracy)} vs {len(cost)})")
    valid = [
        i for i, (a, c) in enumerate(zip(accuracy, cost))
        if a is not None and c is not None and not math.isnan(a) and not math.isnan(c)
    ]
    # Sweep by cost ascending (ties: higher accuracy first, then index): a point is on the
    # front iff it is strictly more accurate than everything cheaper-or-equal seen so far.
    order = sorted(valid, key=lambda i: (cost[i], -accuracy[i], i))
    front: list[int] = []
    best = -math.inf
    for i in order:
        if accuracy[i] > best:
            front.append(i)
            best = accuracy[i]
    return front


def hypervolume(accuracy: Sequence[float], cost: Sequence[float], ref_accuracy: float, ref_cost: float,
                log_cost: bool = True) -> float:
    """The area a front dominates up to the reference point ``(ref_accuracy, ref_cost)``.

    The 2-D hypervolume indicator (Zitzler & Thiele, "Multiobjective evolutionary algorithms: a
    comparative case study and the strength Pareto approach", IEEE TEVC 3(4), 1999): the measure
    of the region of (accuracy, cost) that some point dominates, bounded by the reference point,
    which every compared front must share. With ``log_cost`` the cost axis is ``log10`` (decades,
    as the plots show costs); the result is in accuracy x decades (or accuracy x cost units).
    Points below ``ref_accuracy``, above ``ref_cost``, or NaN add nothing; 0.0 for no point.
    """
    tr = (lambda c: math.log10(c)) if log_cost else (lambda c: c)
    top = tr(ref_cost)
    pts = [(a, tr(c)) for a, c in zip(accuracy, cost)
           if a is not None and c is not None and not math.isnan(a) and not math.isnan(c)
           and a > ref_accuracy and c > 0 and tr(c) < top]
    area, best = 0.0, ref_accuracy
    for a, c in sorted(pts, key=lambda p: (p[1], -p[0])):  # sweep by cost: each step adds its new accuracy
        if a > best:
            area += (a - best) * (top - c)
            best = a
    return area


def dominates(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """Whether ``a = (accuracy, cost)`` Pareto-dominates ``b``."""
    return a[0] >= b[0] and a[1] <= b[1] and (a[0] > b[0] or a[1] < b[1])


def rank_keys(points: Sequence[tuple[float, float]]) -> list[tuple[int, float]]:
    """NSGA-II's order of ``(accuracy, cost)`` points: ``(front number, -crowding distance)`` per point.

    Front 0 is the non-dominated points, front 1 those dominated only by front 0, and so on;
    within a front, a point with more room around it (crowding distance, summed over both
    objectives scaled to the front's range; the two ends of a front get infinity) sorts first.
    Sorting by the keys puts the points to keep first (Deb et al. 2002, NSGA-II). Costs are
    compared as given: pass ``log10`` costs to measure crowding as the plots show them.
    """
    n = len(points)
    dominated_by = [[j for j in range(n) if dominates(points[j], points[i])] for i in range(n)]
    front_of = [-1] * n
    left, f = set(range(n)), 0
    while left:
        front = [i for i in left if not any(j in left for j in dominated_by[i])]
        for i in front:
            front_of[i] = f
        left -= set(front)
        f += 1
    crowd = [0.0] * n
    for fi in set(front_of):
        members = [i for i in range(n) if front_of[i] == fi]
        for dim in (0, 1):
            members.sort(key=lambda i: points[i][dim])
            lo, hi = points[members[0]][dim], points[members[-1]][dim]
            crowd[members[0]] = crowd[members[-1]] = math.inf
            for a, i, b in zip(members, members[1:], members[2:]):
                if hi > lo:
                    crowd[i] += (points[b][dim] - points[a][dim]) / (hi - lo)
    return [(front_of[i], -crowd[i]) for i in range(n)]


def use_log_scale(cost: Sequence[float]) -> bool:
    """True when every cost is positive and they span at least a decade (log axis, log knee)."""
    vals = [c for c in cost if c is not None and not math.isnan(c)]
    return bool(vals) and min(vals) > 0 and max(vals) / min(vals) >= 10


def knee_point(accuracy: Sequence[float], cost: Sequence[float], log_cost: bool | None = None) -> int | None:
    """Index (into the given lists) of the knee of a front.

    Both objectives are scaled to [0, 1] over the front (cost on a log scale when it spans a
    decade or more, as it is plotted). With three or more points the knee is the point farthest
    above the chord from the cheapest to the most accurate point, i.e. where buying more
    accuracy starts to cost disproportionately more (the "kneedle" rule). When no point lies
    above the chord (a straight or concave front) or the front has two points, the knee is the
    point closest to the utopia corner (best accuracy at the lowest cost); ties go to the
    cheaper point.

    Args:
        accuracy: accuracies of the front's points.
        cost: costs of the front's points.
        log_cost: scale cost logarithmically (default: :func:`use_log_scale`).

    Returns:
        The index, or None for an empty front.
    """
    n = len(accuracy)
    if n == 0:
        return None
    if n == 1:
        return 0
    if log_cost is None:
        log_cost = use_log_scale(cost)
    xs = [math.log10(c) if log_cost else float(c) for c in cost]
    ys = [float(a) for a in accuracy]
    x = _unit(xs)
    y = _unit(ys)
    order = sorted(range(n), key=lambda i: (xs[i], -ys[i]))
    if n >= 3:
        first, last = order[0], order[-1]
        dx, dy = x[last] - x[first], y[last] - y[first]
        norm = math.hypot(dx, dy)
        if norm > 0:
            # signed distance, positive above the chord (more accuracy than the straight line)
            dist = {i: (dx * (y[i] - y[first]) - dy * (x[i] - x[first])) / norm for i in order}
            best = max(order, key=lambda i: (dist[i], -xs[i]))
            if dist[best] > 1e-12:
                return best
    return min(order, key=lambda i: (math.hypot(x[i], 1.0 - y[i]), xs[i]))


def _unit(vals: list[float]) -> list[float]:
    lo, hi = min(vals), max(vals)
    if hi - lo <= 0:
        return [0.0 for _ in vals]
    return [(v - lo) / (hi - lo) for v in vals]
