"""Multi-fidelity for hardware-aware searches: asynchronous successive halving on two objectives.

A ``--protocol aware`` trial spends most of its time in hardware-aware training (Adam steps
through the device layer). With ``--scheduler asha`` every trial reports its metrics at a ladder
of step counts (rungs: ``aware_steps / eta**k`` down to ``--asha-min-steps``, e.g. 25, 50, 100 of
200), each exactly what a trial of that many steps would report
(:func:`codesign.students.fit_through_device` scores a copy of the layer). At each rung a trial
goes on only while it is among the best ``1/eta`` of the results recorded at that rung so far,
the asynchronous stopping rule of Tune's ``ASHAScheduler`` (Li et al. 2020, "A System for
Massively Parallel Hyperparameter Tuning"). Tune's scheduler takes one metric; here "best" is
NSGA-II's order of the two objectives (:func:`codesign.search.pareto.rank_keys`: non-dominated
front first, then crowding distance, so the two ends of a rung's front always go on), the rule of
multi-objective ASHA (Schmucker et al. 2021, "Multi-objective Asynchronous Successive Halving").
A design the device cannot build (no cost) stops at its first rung.

A stopped trial is a real, complete result: its student is the one of the step count it
reached (saved at every rung), scored like any other, and it may sit on the front (a cheap
design that needs no more training). ``experiments/bench_asha.py`` measures what this buys.

:class:`Rungs` holds the decisions and imports nothing from Ray; :func:`make_scheduler` wraps it
as a Tune ``TrialScheduler``.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, Sequence

from codesign.errors import ConfigError

from .pareto import rank_keys, use_log_scale

#: Metric holding a report's step count, and the objectives a rung ranks.
STEP_METRIC, ACCURACY_METRIC, COST_METRIC = "aware_steps", "hw_accuracy", "cost"


def rung_steps(total: int, eta: int, min_steps: int) -> list[int]:
    """The step counts at which trials are judged: ``total / eta**k`` (rounded) for k >= 1 while
    at least ``min_steps``, ascending; ``total`` itself is the end, not a rung.

    >>> rung_steps(200, 2, 25)
    [25, 50, 100]
    """
    if eta < 2:
        raise ConfigError(f"asha_eta={eta}: successive halving keeps 1/eta of each rung; use eta >= 2")
    if not 1 <= min_steps < total:
        raise ConfigError(f"asha_min_steps={min_steps}: the first rung must be at least 1 step and below the "
                          f"{total} aware steps of a full trial")
    out, k = [], 1
    while (s := int(round(total / eta**k))) >= min_steps:
        out.append(s)
        k += 1
    if not out:
        raise ConfigError(f"asha_min_steps={min_steps} with asha_eta={eta} leaves no rung below the {total} aware "
                          f"steps of a full trial (the first would be at {round(total / eta)}); lower --asha-min-steps")
    return sorted(set(out))


class Rungs:
    """The results recorded at each rung, and the decision for a new one.

    Args:
        steps: the rungs' step counts (:func:`rung_steps`).
        eta: keep the best ``1/eta`` at each rung.
        max_cost: the search's ``--max-cost``: a design above it can never be on the front, and
            training does not change its cost, so it stops at its first rung like an unpriced one.
    """

    def __init__(self, steps: Sequence[int], eta: int, max_cost: float | None = None) -> None:
        self.steps = sorted(int(s) for s in steps)
        self.eta = int(eta)
        self.max_cost = max_cost
        self.recorded: dict[int, dict[Any, tuple[float, float]]] = {s: {} for s in self.steps}
        #: decisions taken: rung -> [continued, stopped]
        self.counts: dict[int, list[int]] = {s: [0, 0] for s in self.steps}

    def ranked(self, cost: Any) -> bool:
        """Whether a design of this cost is ranked at the rungs: priced (not None or NaN, as an
        infeasible design is) and within ``max_cost``."""
        if isinstance(cost, bool) or not isinstance(cost, (int, float)) or math.isnan(cost):
            return False
        return self.max_cost is None or cost <= self.max_cost

    def decide(self, steps: int, key: Any, accuracy: float, cost: float | None) -> bool:
        """Record a result at rung ``steps``; True if its trial goes on.

        It goes on when it sorts among the first ``ceil(n / eta)`` of the ``n`` results recorded
        there (itself included) by :func:`~codesign.search.pareto.rank_keys`, ties kept; an
        unpriced (infeasible) design, or one above ``max_cost``, stops and is not recorded; a
        second report of the same key at a rung, and a step count that is not a rung, go on
        unrecorded.

        When most results at a rung are mutually non-dominated (common: the sampler keeps
        proposing designs along the front), the cut falls inside front 0 and crowding decides,
        and the rule keeps more than ``1/eta`` in practice: every point with infinite crowding
        (the two ends of the front) goes on.
        """
        steps = int(steps)
        if steps not in self.recorded or key in self.recorded[steps]:
            return True
        if accuracy is None or not self.ranked(cost):
            self.counts[steps][1] += 1
            return False
        here = self.recorded[steps]
        here[key] = (float(accuracy), float(cost))
        keys = list(here)
        costs = [here[k][1] for k in keys]
        log = use_log_scale(costs)
        ranks = rank_keys([(here[k][0], math.log10(here[k][1]) if log else here[k][1]) for k in keys])
        cutoff = sorted(ranks)[math.ceil(len(keys) / self.eta) - 1]
        go_on = ranks[keys.index(key)] <= cutoff
        self.counts[steps][0 if go_on else 1] += 1
        return go_on

    def seed(self, records: Iterable[Mapping[str, Any]]) -> int:
        """Record the rung results of earlier trials (``trials.jsonl`` records, on ``--resume``),
        without counting them as decisions; returns how many rung results were taken."""
        n = 0
        for i, rec in enumerate(records):
            m = rec.get("metrics") or {}
            if rec.get("status") != "completed" or not self.ranked(m.get(COST_METRIC)):
                continue  # what decide() never records
            for s, acc in (m.get("rung_accuracies") or {}).items():
                if int(s) in self.recorded and acc is not None:
                    self.recorded[int(s)][("earlier", i)] = (float(acc), float(m[COST_METRIC]))
                    n += 1
        return n

    def describe(self) -> str:
        return ", ".join(f"{s} steps: {c[0]} on, {c[1]} stopped" for s, c in self.counts.items())


def make_scheduler(rungs: Rungs):
    """A Tune ``TrialScheduler`` that stops trials by ``rungs``' decisions (FIFO otherwise)."""
    from ray.tune.schedulers import FIFOScheduler, TrialScheduler

    class MultiObjectiveASHA(FIFOScheduler):
        # a trial must not run past a rung before its decision: it saves its student at every
        # report, and Tune drops the results a stopped trial buffered after the one it stopped on
        _supports_buffered_results = False

        def __init__(self, rungs: Rungs) -> None:
            super().__init__()
            self.rungs = rungs

        def on_trial_result(self, tune_controller, trial, result: dict) -> str:
            steps = result.get(STEP_METRIC)
            if steps is None:
                return TrialScheduler.CONTINUE
            go_on = self.rungs.decide(steps, trial.trial_id, result.get(ACCURACY_METRIC), result.get(COST_METRIC))
            return TrialScheduler.CONTINUE if go_on else TrialScheduler.STOP

        def debug_string(self) -> str:
            return f"MultiObjectiveASHA (eta {self.rungs.eta}): {self.rungs.describe()}"

    return MultiObjectiveASHA(rungs)
