"""Multi-fidelity for hardware-aware searches: would multi-objective ASHA over the aware training
steps reach the validation front's hypervolume sooner than full-length trials? (issue 14, part 3)

A ``--protocol aware`` trial fits the float student, then trains it through the device layer
for ``--aware-steps`` Adam steps (200), then scores it on the hardware draws. The training is
most of such a trial, and it is the fidelity a scheduler could cut: a trial stopped after 25
steps is a real, cheaper design whose accuracy is measured like any other.

The benchmark measures before it builds. Per device:

1. **Pool.** A ``--pool``-trial MNIST search, ``--protocol aware``, random sampler (seeded),
   the default space, as ``codesign search`` runs it: the sampled designs, their validation
   accuracy and cost, and what each trial spent before training (data, features, float fit:
   ``time_data_s + time_features_s + time_fit_s`` of ``trials.csv``, cold features as a search
   pays them).
2. **Learning curves.** Every completed design of the pool is rerun in this process
   (``codesign.search.objective.run_trial``, one thread) at each rung of ``--rungs`` aware steps
   (25, 50, 100, 200): its validation hardware accuracy, the training's seconds and the
   evaluation's. Training is deterministic and does not depend on the step budget (same seed,
   same minibatch order, Adam without a schedule), so the run with ``s`` steps *is* the
   checkpoint after ``s`` steps of a longer one. The top rung's accuracy must equal the pool
   search's for the same design, or the benchmark stops: the reruns would not be the trials.
3. **Replay** (one worker, in pool order) of two strategies on the same designs, charging each
   step its measured seconds:

   * ``full``: every design trained to the top rung (what the search does now); a design costs
     setup + training(top) + one evaluation;
   * ``asha``: asynchronous successive halving (Li et al., 2020) with reduction factor
     ``--eta``, multi-objective as in MO-ASHA (Schmucker et al., 2021): when a worker is free,
     the best not-yet-promoted design of the highest rung whose top ``1/eta`` (ranked by
     non-dominated front, then crowding distance, on validation accuracy up and log cost
     down) holds one is promoted and its training resumed to the next rung; otherwise the next
     design of the pool starts at the lowest rung. A design's point is its result at the
     highest rung it reached; reaching rung ``k`` costs setup + training(``s_k``) + an
     evaluation at every rung passed (resumed training, not restarted).

   The hypervolume of the validation front (accuracy 0.1 and log10 cost 0.1 decade above the
   costliest point as reference, divided by the box, as ``bench_search.py`` scores it) is
   recorded against the seconds spent. Reported: each strategy's hypervolume at the seconds
   ``full`` needs for 8, 12, 16, 24 and 32 designs (those up to half the pool: ASHA starts more
   designs in the same seconds and must not run out of them), and the seconds each needs to
   first reach ``full``'s hypervolume at the largest of those budgets.

Runs are kept under ``--work`` (search folders and ``curves.json``, resumable); the report
(``--out``: ``bench_asha.md``, ``bench_asha.json``) is rewritten from what is there.

    python experiments/bench_asha.py --devices analog_crossbar photonic_mzi fpga_fixed_point
    python experiments/bench_asha.py --report-only
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_search import ACC_REF, COST_MARGIN, hypervolume, save_figure  # noqa: E402  (same folder, not a package)

DEVICES = ("analog_crossbar", "photonic_mzi", "fpga_fixed_point")
#: budgets: the seconds full-length trials need for this many designs (those up to half the pool,
#: so that ASHA, which starts more designs in the same seconds, is not cut short by the pool)
BUDGET_DESIGNS = (8, 12, 16, 24, 32)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--devices", nargs="+", default=list(DEVICES))
    p.add_argument("--pool", type=int, default=48, help="designs sampled per device (full-length trials)")
    p.add_argument("--rungs", nargs="+", type=int, default=[25, 50, 100, 200],
                   help="aware steps of the rungs; the last is the trials' --aware-steps")
    p.add_argument("--eta", type=int, default=2, help="ASHA's reduction factor")
    p.add_argument("--sampler-seed", type=int, default=0)
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--max-memory", default="2G")
    p.add_argument("--cpus", type=int, default=2)
    p.add_argument("--work", default=None, help="runs (default: $CODESIGN_CACHE/bench_asha)")
    p.add_argument("--out", default=str(HERE / "bench_asha"))
    p.add_argument("--orders", type=int, default=50, help="orders of the pool both strategies are replayed in")
    p.add_argument("--report-only", action="store_true")
    return p.parse_args(argv)


def search_config(args, device: str, folder: Path):
    from codesign.search.config import SearchConfig

    return SearchConfig(dataset=args.dataset, device=device, samples=args.pool, protocol="aware", scheduler="fifo",
                        sampler="random", sampler_seed=args.sampler_seed, seed=0, max_memory=args.max_memory, cpus=args.cpus,
                        out=str(folder), quiet=True)


def run_pool(args, device: str, folder: Path) -> list[dict]:
    from codesign.search.outputs import LOG_NAME, TrialLog
    from codesign.search.runner import run_search

    records = TrialLog(folder / LOG_NAME).read() if (folder / LOG_NAME).is_file() else []
    if len(records) < args.pool:
        cfg = search_config(args, device, folder)
        if records:
            cfg = cfg.replace(resume=True)
        t0 = time.perf_counter()
        run_search(cfg)
        log(f"{device}: pool of {args.pool} aware trials in {time.perf_counter() - t0:.0f} s")
        records = TrialLog(folder / LOG_NAME).read()
    return sorted(records, key=lambda r: r["trial"])


_WARM: set = set()  # devices this worker process has run once (its first run also loads data, teacher, kernels)


def _design_curve(args, device: str, folder: str, config: dict, todo: list[int]) -> dict:
    """One design rerun at the ``todo`` rungs (in a worker process, one thread); the worker's first
    run of a device is repeated, so that no rung is charged for loading the data and the teacher."""
    import dataclasses

    import torch

    from codesign.search.objective import run_trial

    torch.set_num_threads(1)
    scfg = search_config(args, device, Path(folder))
    base = scfg.trial_base()
    out = {}
    if device not in _WARM:
        run_trial(config, dataclasses.replace(base, fit=dataclasses.replace(base.fit, aware_steps=todo[0])), scfg.cost,
                  threads=1)
        _WARM.add(device)
    for steps in todo:
        b = dataclasses.replace(base, fit=dataclasses.replace(base.fit, aware_steps=steps))
        metrics, result = run_trial(config, b, scfg.cost, threads=1)
        train = float(result.metrics.get("aware_seconds") or 0.0)
        out[str(steps)] = {"accuracy": float(metrics["hw_accuracy"]), "train_s": train,
                           "eval_s": max(float(metrics["time_hw_s"]) - train, 0.0)}
    return out


def run_curves(args, device: str, folder: Path, records: list[dict]) -> dict:
    """``{trial: {"setup_s", "cost", "search_accuracy", "rungs": {steps: {"accuracy", "train_s", "eval_s"}}}}``,
    resumable; designs rerun in ``--cpus`` single-threaded worker processes (as a search runs its trials)."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    from codesign.cache import atomic_write_json

    path = folder / "curves.json"
    curves = json.loads(path.read_text()) if path.is_file() else {}
    jobs = {}
    for r in records:
        m = r.get("metrics") or {}
        if r.get("status") != "completed" or not m.get("feasible", True) or not isinstance(m.get("cost"), (int, float)):
            continue
        key = str(r["trial"])
        entry = curves.setdefault(key, {
            "setup_s": float(m["time_data_s"] + m["time_features_s"] + m["time_fit_s"]),
            "cost": float(m["cost"]), "search_accuracy": float(m["hw_accuracy"]), "rungs": {}})
        todo = [s for s in args.rungs if str(s) not in entry["rungs"]]
        if todo:
            jobs[key] = (r["config"], todo)
    with ProcessPoolExecutor(max_workers=args.cpus, mp_context=mp.get_context("spawn")) as pool:
        futs = {pool.submit(_design_curve, args, device, str(folder), cfg, todo): key for key, (cfg, todo) in jobs.items()}
        for fut in as_completed(futs):
            key = futs[fut]
            entry = curves[key]
            entry["rungs"].update(fut.result())
            top = entry["rungs"][str(args.rungs[-1])]["accuracy"]
            if top != entry["search_accuracy"]:
                raise SystemExit(f"{device} trial {key}: the rerun at {args.rungs[-1]} steps scores {top}, the search "
                                 f"{entry['search_accuracy']}; the reruns are not the search's trials")
            atomic_write_json(path, curves)
            log(f"{device} trial {key}: " + ", ".join(
                f"{s} steps {100 * v['accuracy']:.2f}% ({v['train_s']:.1f}+{v['eval_s']:.1f} s)"
                for s, v in sorted(entry["rungs"].items(), key=lambda kv: int(kv[0]))))
    return curves


# --------------------------------------------------------------------------- replay
def replay(designs: list[dict], rungs: list[int], eta: int, strategy: str, ref: dict) -> list[tuple[float, float]]:
    """``[(seconds spent, hypervolume)]`` after each job of ``strategy`` (``full`` or ``asha``)."""
    top = str(rungs[-1])
    spent, trace, best = 0.0, [], {}  # best: design index -> (accuracy, log10 cost) at its highest rung

    from codesign.search.pareto import rank_keys

    def hv() -> float:
        return hypervolume(list(best.values()), ref["accuracy"], ref["log10_cost"]) / ref["box"]

    if strategy == "full":
        for i, d in enumerate(designs):
            r = d["rungs"][top]
            spent += d["setup_s"] + r["train_s"] + r["eval_s"]
            best[i] = (r["accuracy"], math.log10(d["cost"]))
            trace.append((spent, hv()))
        return trace
    at = [dict() for _ in rungs]  # rung k: design index -> (accuracy, log10 cost)
    promoted = [set() for _ in rungs]
    started = 0
    while True:
        job = None
        for k in range(len(rungs) - 2, -1, -1):  # promotions first, from the highest rung down
            ids = list(at[k])
            if len(ids) < eta:
                continue
            ranks = rank_keys([at[k][i] for i in ids])
            order = [ids[j] for j in sorted(range(len(ids)), key=lambda j: ranks[j])][: len(ids) // eta]
            cand = [i for i in order if i not in promoted[k]]
            if cand:
                job = (cand[0], k + 1)
                promoted[k].add(cand[0])
                break
        if job is None:
            if started == len(designs):
                break
            job, started = (started, 0), started + 1
        i, k = job
        d, steps = designs[i], str(rungs[k])
        r = d["rungs"][steps]
        prev = d["rungs"][str(rungs[k - 1])]["train_s"] if k else 0.0
        spent += (d["setup_s"] if k == 0 else 0.0) + max(r["train_s"] - prev, 0.0) + r["eval_s"]
        at[k][i] = best[i] = (r["accuracy"], math.log10(d["cost"]))
        trace.append((spent, hv()))
    return trace


def at_seconds(trace, seconds: float) -> float:
    return max([h for s, h in trace if s <= seconds + 1e-9], default=0.0)


def first_reach(trace, target: float) -> float | None:
    return next((s for s, h in trace if h >= target - 1e-12), None)


def report(args, work: Path) -> dict:
    res = {"format": "codesign-bench-asha/1", "written": _dt.datetime.now().isoformat(timespec="seconds"),
           "machine": platform.platform(), "cpus": os.cpu_count(), "rungs": args.rungs, "eta": args.eta,
           "pool": args.pool, "sampler_seed": args.sampler_seed, "dataset": args.dataset, "orders": args.orders,
           "command": f"python experiments/bench_asha.py --devices {' '.join(args.devices)} --pool {args.pool} "
                      f"--rungs {' '.join(map(str, args.rungs))} --eta {args.eta} --sampler-seed {args.sampler_seed} "
                      f"--dataset {args.dataset} --max-memory {args.max_memory} --cpus {args.cpus} --orders {args.orders}",
           "devices": {}}
    for device in args.devices:
        path = work / f"{device}-aware-random-s{args.sampler_seed}" / "curves.json"
        if not path.is_file():
            continue
        curves = json.loads(path.read_text())
        designs = [curves[k] for k in sorted(curves, key=int) if len(curves[k]["rungs"]) == len(args.rungs)]
        if len(designs) < 2:
            continue
        costs = [math.log10(d["cost"]) for d in designs]
        ref = {"accuracy": ACC_REF, "log10_cost": max(costs) + COST_MARGIN, "log10_cost_min": min(costs)}
        ref["box"] = (1.0 - ACC_REF) * (ref["log10_cost"] - min(costs))
        full, asha = (replay(designs, args.rungs, args.eta, s, ref) for s in ("full", "asha"))
        top = str(args.rungs[-1])
        budgets = {n: full[n - 1][0] for n in BUDGET_DESIGNS if n <= len(full) // 2}
        n_ref = max(budgets) if budgets else len(full)
        target = full[n_ref - 1][1]
        gain = [d["rungs"][top]["accuracy"] - d["rungs"][str(args.rungs[0])]["accuracy"] for d in designs]
        orders = order_statistics(designs, args, ref)
        res["devices"][device] = {
            "designs": len(designs), "reference": ref,
            "seconds_per_design": {"setup": _mean(d["setup_s"] for d in designs),
                                   **{f"train_{s}": _mean(d["rungs"][str(s)]["train_s"] for d in designs) for s in args.rungs},
                                   "eval": _mean(d["rungs"][top]["eval_s"] for d in designs)},
            "accuracy_gain_first_to_top": {"mean": _mean(gain), "max": max(gain), "min": min(gain)},
            "budgets": {str(n): {"seconds": s, "full": at_seconds(full, s), "asha": at_seconds(asha, s)}
                        for n, s in budgets.items()},
            "target": {"designs": n_ref, "hypervolume": target, "full_s": first_reach(full, target),
                       "asha_s": first_reach(asha, target)},
            "trace": {"full": full, "asha": asha},
            "orders": orders,
        }
    write_outputs(Path(args.out) / "bench_asha", res, markdown, plot if res["devices"] else None)
    return res


def write_outputs(stem: Path, res: dict, markdown, plot=None) -> None:
    """``STEM.json``, ``STEM.md`` (``markdown(res)``) and, with ``plot``, ``STEM.png``; atomically."""
    from codesign.cache import atomic_write_json, atomic_write_text

    atomic_write_json(stem.with_suffix(".json"), res)
    atomic_write_text(stem.with_suffix(".md"), markdown(res))
    if plot is not None:
        plot(res, stem.with_suffix(".png"))


def order_statistics(designs: list[dict], args, ref: dict) -> dict:
    """Both strategies replayed over ``--orders`` seeded orders of the pool (the first is the pool's
    own): per budget, the mean and std of each one's hypervolume and how often ASHA's is at least
    full's; the ratio of the seconds ASHA and full need to reach full's hypervolume at the largest
    budget (median, quartiles; ASHA never reaching it counts as infinitely slow)."""
    import random

    n_budgets = [n for n in BUDGET_DESIGNS if n <= len(designs) // 2]
    per = {str(n): {"full": [], "asha": []} for n in n_budgets}
    ratios = []
    for o in range(args.orders):
        ds = list(designs)
        if o:
            random.Random(o).shuffle(ds)
        full, asha = (replay(ds, args.rungs, args.eta, s, ref) for s in ("full", "asha"))
        for n in n_budgets:
            sec = full[n - 1][0]
            per[str(n)]["full"].append(at_seconds(full, sec))
            per[str(n)]["asha"].append(at_seconds(asha, sec))
        if n_budgets:
            target = full[max(n_budgets) - 1][1]
            fs, as_ = first_reach(full, target), first_reach(asha, target)
            ratios.append(math.inf if as_ is None else as_ / fs)
    out = {"orders": args.orders, "budgets": {}}
    for n, v in per.items():
        f, a = v["full"], v["asha"]
        out["budgets"][n] = {"full_mean": _mean(f), "full_std": _std(f), "asha_mean": _mean(a), "asha_std": _std(a),
                             "asha_at_least_full": sum(1 for x, y in zip(a, f) if x >= y - 1e-12)}
    if ratios:
        r = sorted(ratios)
        q = lambda p: r[min(len(r) - 1, int(p * (len(r) - 1) + 0.5))]  # noqa: E731
        out["seconds_ratio_to_target"] = {"median": q(0.5), "q25": q(0.25), "q75": q(0.75),
                                          "asha_sooner": sum(1 for x in r if x < 1.0), "never": sum(1 for x in r if x == math.inf)}
    return out


def _std(vals) -> float:
    vals = list(vals)
    m = _mean(vals)
    return math.sqrt(sum((v - m) ** 2 for v in vals) / len(vals)) if vals else float("nan")


def plot(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    devs = list(res["devices"])
    fig, axes = plt.subplots(1, len(devs), figsize=(4.2 * len(devs), 3.4), squeeze=False)
    for ax, dev in zip(axes[0], devs):
        for name, style in (("full", "-"), ("asha", "--")):
            tr = res["devices"][dev]["trace"][name]
            ax.step([s for s, _ in tr], [h for _, h in tr], style, where="post",
                    label="full-length trials" if name == "full" else f"MO-ASHA (eta {res['eta']})")
        for n, b in res["devices"][dev]["budgets"].items():
            ax.axvline(b["seconds"], color="0.85", lw=0.8, zorder=0)
        ax.set_title(dev)
        ax.set_xlabel("seconds (one worker, measured)")
        ax.set_ylabel("hypervolume of the validation front")
        ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=130)


def _mean(vals) -> float:
    vals = list(vals)
    return sum(vals) / len(vals) if vals else float("nan")


def markdown(res: dict) -> str:
    lines = ["# Multi-fidelity (MO-ASHA over aware steps) against full-length aware trials", "",
             f"Written by `experiments/bench_asha.py` ({res['written']}, {res['machine']}, {res['cpus']} CPUs). Command:",
             "", "```", res["command"], "```", "",
             f"Rungs {res['rungs']} aware steps, eta {res['eta']}; pool of {res['pool']} random designs per device "
             f"(sampler seed {res['sampler_seed']}), {res['dataset']}, validation split. Seconds are the measured "
             "seconds of each design's setup (data, features, float fit, from the pool search), its aware training "
             "and its evaluations, replayed on one worker (the module docstring says how).", ""]
    for device, d in res["devices"].items():
        sp = d["seconds_per_design"]
        lines += [f"## {device} ({d['designs']} designs)", "",
                  "Mean seconds per design: setup " + f"{sp['setup']:.2f}, " + ", ".join(
                      f"training {k.split('_')[1]} steps {v:.2f}" for k, v in sp.items() if k.startswith("train_"))
                  + f", evaluation {sp['eval']:.2f}. Validation accuracy gained from the first rung to the top: "
                  f"mean {100 * d['accuracy_gain_first_to_top']['mean']:+.2f} points (min "
                  f"{100 * d['accuracy_gain_first_to_top']['min']:+.2f}, max {100 * d['accuracy_gain_first_to_top']['max']:+.2f}).",
                  "", "| budget (seconds full-length trials need for N designs) | seconds | HV full | HV asha |",
                  "|---|---|---|---|"]
        for n, b in d["budgets"].items():
            lines.append(f"| {n} designs | {b['seconds']:.0f} | {b['full']:.4f} | {b['asha']:.4f} |")
        t = d["target"]
        asha_s = "never (pool exhausted)" if t["asha_s"] is None else f"{t['asha_s']:.0f} s"
        lines += ["", f"In the pool's own order, seconds to reach full-length trials' hypervolume at {t['designs']} "
                      f"designs ({t['hypervolume']:.4f}): full {t['full_s']:.0f} s, asha {asha_s}.", ""]
        o = d["orders"]
        lines += [f"Over {o['orders']} orders of the pool (the same designs, replayed in seeded orders): mean +- std of "
                  "the hypervolume at each budget, and in how many orders ASHA's is at least full's:", "",
                  "| budget | HV full | HV asha | asha >= full |", "|---|---|---|---|"]
        for n, b in o["budgets"].items():
            lines.append(f"| {n} designs | {b['full_mean']:.4f} +- {b['full_std']:.4f} | {b['asha_mean']:.4f} +- "
                         f"{b['asha_std']:.4f} | {b['asha_at_least_full']} of {o['orders']} |")
        r = o.get("seconds_ratio_to_target")
        if r:
            lines += ["", f"Seconds ASHA needs to reach full's hypervolume at {t['designs']} designs, as a share of "
                          f"full's: median {r['median']:.2f} (quartiles {r['q25']:.2f}-{r['q75']:.2f}); sooner in "
                          f"{r['asha_sooner']} of {o['orders']} orders, never (pool exhausted first) in {r['never']}.", ""]
    return "\n".join(lines)


def log(msg: str) -> None:
    print(f"{_dt.datetime.now():%H:%M:%S} {msg}", flush=True)


def main(argv=None) -> int:
    args = parse_args(argv)
    from codesign.students import AWARE_STEPS

    if args.rungs[-1] != AWARE_STEPS or sorted(set(args.rungs)) != args.rungs or args.eta < 2:
        raise SystemExit(f"--rungs {args.rungs}: give increasing aware steps ending at the trials' {AWARE_STEPS} "
                         f"(a search trains that many), and --eta >= 2")
    from codesign.cache import default_cache_dir

    work = Path(args.work or default_cache_dir() / "bench_asha")
    if not args.report_only:
        from codesign.search.runner import init_ray

        init_ray(None, args.cpus)
        for device in args.devices:
            folder = work / f"{device}-aware-random-s{args.sampler_seed}"
            records = run_pool(args, device, folder)
            run_curves(args, device, folder, records)
            report(args, work)
    report(args, work)
    print(f"report in {Path(args.out) / 'bench_asha.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
