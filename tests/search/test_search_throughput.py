"""Search throughput and quality: exact fit reuse, per-trial time breakdown, samplers, hypervolume."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch

from codesign.errors import ConfigError
from codesign.search import outputs
from codesign.search.config import SAMPLERS, SearchConfig

ROOT = Path(__file__).resolve().parents[2]
CONFIG = {"dictionary": "monomial", "monomial": {"degree": 2}, "pca_rank": 8}


def _trial(ws, base, device: dict, rank: int = 8):
    from codesign.search.objective import run_trial

    return run_trial({**CONFIG, "pca_rank": rank, "device": device}, base, "energy_pj", workspace=ws)


def test_trials_differing_in_device_fields_reuse_the_float_fit_exactly(split_teacher):
    """The second trial on the same features and fit settings copies the first one's student;
    what it reports equals a fresh process's fit (reuse is exact, independent of trial order)."""
    from codesign.search.objective import SearchWorkspace

    base = SearchConfig(dataset="digits", device="photonic_mzi", hw_draws=2).trial_base()
    ws = SearchWorkspace(split_teacher)
    m1, r1 = _trial(ws, base, {"phase_bits": 4})
    m2, r2 = _trial(ws, base, {"phase_bits": 8})
    assert (m1["fit_reused"], m2["fit_reused"]) == (False, True)
    assert torch.equal(r1.student.K_, r2.student.K_) and r1.student.K_ is not r2.student.K_
    assert m1["hw_accuracy"] != m2["hw_accuracy"]  # the device did change
    fresh_m, fresh_r = _trial(SearchWorkspace(split_teacher), base, {"phase_bits": 8})
    assert not fresh_m["fit_reused"] and torch.equal(fresh_r.student.K_, r2.student.K_)
    keys = ("hw_accuracy", "float_accuracy", "train_accuracy", "cost", "iterations")
    assert {k: fresh_m[k] for k in keys} == {k: m2[k] for k in keys}
    # another rank is other features: a fit of its own
    m3, _ = _trial(ws, base, {"phase_bits": 8}, rank=9)
    assert not m3["fit_reused"]
    # a reused student is a copy: changing it leaves the memo alone
    r2.student.K_.zero_()
    m4, r4 = _trial(ws, base, {"phase_bits": 6})
    assert m4["fit_reused"] and torch.equal(r4.student.K_, r1.student.K_)


def test_time_breakdown_adds_up_to_the_trial(split_teacher, tmp_path):
    from codesign.search.objective import SearchWorkspace

    base = SearchConfig(dataset="digits", device="analog_crossbar", hw_draws=2).trial_base()
    from codesign.search.objective import run_trial

    m, _ = run_trial({**CONFIG, "device": {}}, base, "energy_pj", workspace=SearchWorkspace(split_teacher),
                     save_to=tmp_path / "s.pt")
    parts = [m[k] for k in outputs.TIME_METRICS]
    assert all(isinstance(v, float) and v >= 0 for v in parts)
    assert m["time_fit_s"] > 0 and m["time_hw_s"] > 0 and m["time_save_s"] > 0
    assert sum(parts) == pytest.approx(m["trial_seconds"], abs=1e-4)
    # the columns of trials.csv, after trial_seconds; never counted as a cost in front.json
    rec = {"trial": 0, "round": 0, "status": "completed", "config": {**CONFIG, "device": {}}, "metrics": m}
    cols = list(outputs.trial_rows([rec])[0])
    i = cols.index("trial_seconds")
    assert cols[i + 1 : i + 1 + len(outputs.TIME_METRICS)] == list(outputs.TIME_METRICS)
    assert "fit_reused" in cols


def test_sampler_option_and_the_samplers_it_makes():
    import optuna

    from codesign.search.runner import make_sampler

    assert SearchConfig().sampler == "tpe" and SAMPLERS == ("tpe", "nsga2", "random")
    kinds = {"tpe": optuna.samplers.TPESampler, "nsga2": optuna.samplers.NSGAIISampler,
             "random": optuna.samplers.RandomSampler}
    for name, cls in kinds.items():
        assert type(make_sampler(SearchConfig(sampler=name, samples=64))) is cls
    assert make_sampler(SearchConfig(sampler="nsga2", samples=64))._population_size == 16
    assert make_sampler(SearchConfig(sampler="nsga2", samples=8))._population_size == 8
    with pytest.raises(ConfigError, match="sampler"):
        SearchConfig(sampler="cmaes")
    with pytest.raises(ConfigError, match="sampler_seed"):
        SearchConfig(sampler_seed=-1)

    def draws(cfg, n=5):
        study = optuna.create_study(directions=["maximize", "minimize"], sampler=make_sampler(cfg))
        return [study.ask().suggest_int("x", 0, 10**6) for _ in range(n)]

    # --sampler-seed alone moves the sampler; unset, it is --seed
    assert draws(SearchConfig(sampler="random", seed=3)) == draws(SearchConfig(sampler="random", sampler_seed=3))
    assert draws(SearchConfig(sampler="random", sampler_seed=1)) != draws(SearchConfig(sampler="random", sampler_seed=2))
    opts = SearchConfig(sampler="random", sampler_seed=5).options()
    assert opts["sampler"] == "random" and opts["sampler_seed"] == 5
    assert SearchConfig.from_options(opts).sampler_seed == 5


def _bench():
    spec = importlib.util.spec_from_file_location("bench_search", ROOT / "experiments/bench_search.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_hypervolume_of_a_front():
    hv = _bench().hypervolume
    # two front points: (0.5 at log cost 0) and (0.9 at log cost 1); reference (0.1, 2)
    assert hv([(0.5, 0.0), (0.9, 1.0)], 0.1, 2.0) == pytest.approx(0.4 * 2 + 0.4 * 1)
    # a dominated point, a point below the reference accuracy and one beyond the reference cost add nothing
    assert hv([(0.5, 0.0), (0.9, 1.0), (0.4, 0.5), (0.05, -1.0), (0.99, 2.5)], 0.1, 2.0) == pytest.approx(1.2)
    assert hv([], 0.1, 2.0) == 0.0


def test_bench_points_in_completion_order_and_report(tmp_path):
    bench = _bench()
    recs = [
        {"trial": 1, "status": "completed", "feasible": True, "metrics": {"hw_accuracy": 0.9, "cost": 1000.0}},
        {"trial": 0, "status": "completed", "feasible": True, "metrics": {"hw_accuracy": 0.5, "cost": 10.0}},
        {"trial": 2, "status": "infeasible", "metrics": {"hw_accuracy": 0.95, "cost": None}},
        {"trial": 3, "status": "failed", "metrics": {}},
    ]
    assert bench.run_points(recs) == [(0.5, 1.0), (0.9, 3.0), None, None]
    work = tmp_path / "work"
    for sampler, acc in (("tpe", 0.9), ("random", 0.6)):
        folder = bench.run_dir(work, "ideal", sampler, 0)
        folder.mkdir(parents=True)
        lines = [{"trial": i, "round": 0, "status": "completed", "feasible": True, "config": {},
                  "metrics": {"hw_accuracy": acc if i == 7 else 0.3, "cost": 10.0 ** (1 + i % 3)}} for i in range(8)]
        (folder / "trials.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    args = bench.parse_args(["--devices", "ideal", "--samplers", "tpe", "random", "--seeds", "0", "--samples", "8",
                             "--work", str(work), "--out", str(tmp_path / "out"), "--report-only"])
    res = bench.collect(args, work)
    table = res["table"]["ideal"]
    assert table["tpe"]["8"]["mean"] > table["random"]["8"]["mean"] > 0 and table["tpe"]["8"]["n"] == 1
    assert "16" not in table["tpe"]  # an 8-trial run has no 16-trial prefix
    assert res["reference"]["ideal"]["log10_cost"] == pytest.approx(3.1)
    bench.write_report(res, tmp_path / "out")
    md = (tmp_path / "out" / "bench_search.md").read_text()
    assert "| tpe |" in md and (tmp_path / "out" / "bench_search.png").is_file()
    assert json.loads((tmp_path / "out" / "bench_search.json").read_text())["table"] == json.loads(json.dumps(res["table"]))


@pytest.mark.parametrize("sampler", ["tpe", "nsga2"])
def test_the_sampler_receives_every_constraint(sampler):
    """TPE and NSGA-II get the constraints through the searcher (issue 26): a design the device
    cannot build or that breaks a power limit, --max-cost and --min-accuracy."""
    import optuna

    from codesign.search.runner import CONSTRAINT_NAMES, constraint_values, make_sampler, sampler_values

    cfg = SearchConfig(sampler=sampler, samples=16, max_cost=100.0, min_accuracy=0.9)
    s = make_sampler(cfg)
    assert s._constraints_func is None  # Optuna 5 deprecates constraints_func: trials carry them
    assert CONSTRAINT_NAMES == ("buildable", "max_cost", "min_accuracy")
    ok = {"hw_accuracy": 0.95, "cost": 40.0, "feasible": True}
    hot = {"hw_accuracy": 0.97, "cost": math.nan, "feasible": False, "energy_pj": 5e6}
    unbuildable = {"hw_accuracy": 0.97, "cost": math.nan, "feasible": False}
    assert constraint_values(ok, cfg) == [-1.0, -60.0, pytest.approx(-0.05)]
    assert constraint_values(hot, cfg)[0] == 1.0
    assert sampler_values(hot, "energy_pj") == [0.97, 5e6]  # priced above a power limit
    assert sampler_values(unbuildable, "energy_pj") == [0.97, math.inf]  # complete, not failed
    # told to a study as the searcher does (Trial.set_constraint), the sampler reads them
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=s)
    for m in (ok, hot, unbuildable):
        t = study.ask()
        t.suggest_int("x", 0, 10)
        for name, value in zip(CONSTRAINT_NAMES, constraint_values(m, cfg)):
            t.set_constraint(name, value)
        study.tell(t, sampler_values(m, "energy_pj"))
    got = [t.constraints for t in study.trials]
    assert got == [dict(zip(CONSTRAINT_NAMES, constraint_values(m, cfg))) for m in (ok, hot, unbuildable)]
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    # the sampler sees which are feasible: the ok design only
    from optuna.study._constrained_optimization import _get_feasible_trials

    assert [t.number for t in _get_feasible_trials(study.trials)] == [0]
    # the random baseline takes none
    assert getattr(make_sampler(SearchConfig(sampler="random")), "_constraints_func", None) is None


def test_the_searcher_stores_constraints_before_telling_optuna():
    pytest.importorskip("ray")
    from codesign.search.runner import CONSTRAINTS_ATTR, constrained_searcher, make_sampler

    from ray import tune
    from ray.tune.search.optuna import OptunaSearch

    cfg = SearchConfig(sampler="tpe", samples=4, max_cost=10.0)
    searcher = constrained_searcher(cfg, space=OptunaSearch.convert_search_space({"x": tune.uniform(0, 1)}), metric=["hw_accuracy", "cost"],
                                    mode=["max", "min"], sampler=make_sampler(cfg))
    assert searcher.suggest("t1") is not None
    searcher.on_trial_complete("t1", {"hw_accuracy": 0.9, "cost": math.nan, "feasible": False, "energy_pj": 50.0})
    (trial,) = searcher._ot_study.trials
    assert trial.state.name == "COMPLETE" and trial.values == [0.9, 50.0]
    assert trial.user_attrs[CONSTRAINTS_ATTR] == [1.0, 40.0, 0.0]
    assert trial.constraints == {"buildable": 1.0, "max_cost": 40.0, "min_accuracy": 0.0}


def test_the_operating_mode_is_part_of_a_search_identity():
    from codesign.search.runner import COST_MODEL, IDENTITY_KEYS, identity

    assert "operating_mode" in IDENTITY_KEYS and COST_MODEL == 3
    assert SearchConfig().operating_mode == "latency"
    assert identity(SearchConfig(operating_mode="stream")) != identity(SearchConfig())
    assert SearchConfig(operating_mode="stream").trial_base().operating_mode == "stream"
    with pytest.raises(ConfigError, match="operating_mode"):
        SearchConfig(operating_mode="batch")
