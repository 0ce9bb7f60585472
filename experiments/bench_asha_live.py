"""Does ``codesign search --scheduler asha`` find the validation front sooner than running every
hardware-aware trial to the end? (issue 14, part 3: the built scheduler, measured live)

``bench_asha.py`` replayed measured learning curves and found that multi-objective ASHA would
reach full-length trials' hypervolume in 0.61-0.81 of their seconds. It also noted that the
built scheduler differs from its replay: Tune's asynchronous rule stops a trial at a rung when it
is not among the best ``1/eta`` recorded there so far, where the replay promoted the best waiting
design, and the sampler (TPE by default) sees a stopped trial's lower-fidelity result. This
script therefore runs the real thing. Per device and sampler seed, on MNIST with
``--protocol aware``, the default sampler and space:

* ``fifo``: a ``--fifo-samples``-trial search, every trial trained for the full 200 aware steps;
* ``asha``: a ``--asha-samples``-trial search with ``--scheduler asha`` (rungs at 25, 50 and 100
  steps, eta 2), more trials so that it runs about as long.

Both start from a cold feature cache (``CACHE/features`` is emptied before each search; the
teacher and the PCA decomposition stay cached, as after any first search), so neither arm reuses
the other's lifted features. Each search's trials are stamped with their finish time (seconds
since the search started, from ``trials.jsonl``'s ``finished``, 1 s resolution), and the
hypervolume of the validation front of the trials finished so far (accuracy 0.1 and log10 cost
0.1 decade above the costliest point of either arm as reference, divided by the box, as
``bench_search.py`` scores it) is traced against those seconds. Reported per run: each arm's
seconds and final hypervolume, ASHA's hypervolume at the seconds ``fifo`` took, and the seconds
ASHA needed to first reach ``fifo``'s final hypervolume.

Run on a quiet machine (the arms are timed):

    python experiments/bench_asha_live.py --devices analog_crossbar photonic_mzi fpga_fixed_point --seeds 0 1
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_asha import at_seconds, first_reach, log, write_outputs  # noqa: E402  (same folder, not a package)
from bench_search import ACC_REF, COST_MARGIN, hypervolume, prune_features, run_points, save_figure  # noqa: E402

DEVICES = ("analog_crossbar", "photonic_mzi", "fpga_fixed_point")
ARMS = ("fifo", "asha")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--devices", nargs="+", default=list(DEVICES))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1], help="sampler seeds (one pair of runs each)")
    p.add_argument("--fifo-samples", type=int, default=32)
    p.add_argument("--asha-samples", type=int, default=64)
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--max-memory", default="2G")
    p.add_argument("--cpus", type=int, default=2)
    p.add_argument("--work", default=None, help="search folders (default: $CODESIGN_CACHE/bench_asha_live)")
    p.add_argument("--out", default=str(HERE / "bench_asha"))
    p.add_argument("--report-only", action="store_true")
    return p.parse_args(argv)


def run_dir(work: Path, device: str, arm: str, seed: int) -> Path:
    return work / f"{device}-{arm}-s{seed}"


def run_arm(args, work: Path, device: str, arm: str, seed: int) -> None:
    from codesign.search.config import SearchConfig
    from codesign.search.runner import run_search

    folder = run_dir(work, device, arm, seed)
    if (folder / "front.json").is_file():
        return  # done (timed once; a rerun would be another measurement)
    if folder.exists():
        raise SystemExit(f"{folder} holds an unfinished run; delete it to measure that arm again")
    prune_features(0)  # cold features: each arm pays for its own
    cfg = SearchConfig(dataset=args.dataset, device=device, protocol="aware", seed=0, sampler_seed=seed,
                       samples=args.asha_samples if arm == "asha" else args.fifo_samples, scheduler=arm,
                       max_memory=args.max_memory, cpus=args.cpus, out=str(folder), quiet=True)
    t0 = time.perf_counter()
    run_search(cfg)
    log(f"{device} {arm} seed {seed}: {cfg.samples} trials in {time.perf_counter() - t0:.0f} s")


def trace(folder: Path) -> tuple[list[tuple[float, tuple[float, float] | None]], float, dict]:
    """``([(seconds since the search started, point or None)], search seconds, steps histogram)``
    in finishing order; a point is ``(validation accuracy, log10 cost)``."""
    from codesign.search.outputs import LOG_NAME, TrialLog

    meta = json.loads((folder / "search.json").read_text())
    rnd = meta["rounds"][0]
    start = _dt.datetime.fromisoformat(rnd["started"])
    records = sorted(TrialLog(folder / LOG_NAME).read(), key=lambda r: r["trial"])
    points = run_points(records)
    stamped = sorted((((_dt.datetime.fromisoformat(r["finished"]) - start).total_seconds(), p)
                      for r, p in zip(records, points)), key=lambda tp: tp[0])
    seconds = (_dt.datetime.fromisoformat(rnd["finished"]) - start).total_seconds()
    steps: dict[str, int] = {}
    for r in records:
        s = (r.get("metrics") or {}).get("aware_steps")
        if s is not None:
            steps[str(s)] = steps.get(str(s), 0) + 1
    return stamped, seconds, steps


def hv_trace(stamped, ref: dict) -> list[tuple[float, float]]:
    pts, out = [], []
    for t, p in stamped:
        if p is not None:
            pts.append(p)
        out.append((t, hypervolume(pts, ref["accuracy"], ref["log10_cost"]) / ref["box"]))
    return out


def report(args, work: Path) -> dict:
    res = {"format": "codesign-bench-asha-live/1", "written": _dt.datetime.now().isoformat(timespec="seconds"),
           "machine": platform.platform(), "cpus": os.cpu_count(), "dataset": args.dataset,
           "command": f"python experiments/bench_asha_live.py --devices {' '.join(args.devices)} --seeds "
                      f"{' '.join(map(str, args.seeds))} --fifo-samples {args.fifo_samples} --asha-samples "
                      f"{args.asha_samples} --dataset {args.dataset} --max-memory {args.max_memory} --cpus {args.cpus}",
           "runs": []}
    for device in args.devices:
        for seed in args.seeds:
            folders = {arm: run_dir(work, device, arm, seed) for arm in ARMS}
            if not all((f / "front.json").is_file() for f in folders.values()):
                continue
            runs = {arm: trace(f) for arm, f in folders.items()}
            costs = [p[1] for arm in ARMS for _, p in runs[arm][0] if p is not None]
            ref = {"accuracy": ACC_REF, "log10_cost": max(costs) + COST_MARGIN}
            ref["box"] = (1.0 - ACC_REF) * (ref["log10_cost"] - min(costs))
            tr = {arm: hv_trace(runs[arm][0], ref) for arm in ARMS}
            fifo_s, asha_s = runs["fifo"][1], runs["asha"][1]
            target = tr["fifo"][-1][1]
            reach = first_reach(tr["asha"], target)
            res["runs"].append({
                "device": device, "seed": seed, "reference": ref,
                "fifo": {"trials": len(tr["fifo"]), "seconds": fifo_s, "hypervolume": target,
                         "steps": runs["fifo"][2]},
                "asha": {"trials": len(tr["asha"]), "seconds": asha_s, "hypervolume": tr["asha"][-1][1],
                         "hypervolume_at_fifo_seconds": at_seconds(tr["asha"], fifo_s), "steps": runs["asha"][2],
                         "reaches_fifo_at_s": reach,
                         "share_of_fifo_seconds": None if reach is None else reach / fifo_s},
                "trace": tr,
            })
    write_outputs(Path(args.out) / "bench_asha_live", res, markdown, plot if res["runs"] else None)
    return res


def markdown(res: dict) -> str:
    lines = ["# Multi-objective ASHA in `codesign search`, measured live", "",
             f"Written by `experiments/bench_asha_live.py` on {res['written']} ({res['machine']}, {res['cpus']} CPUs).",
             "", "```", res["command"], "```", "",
             "Hypervolume of the validation front (share of the reference box); seconds since the search started.", "",
             "| device | seed | fifo trials | fifo s | fifo HV | asha trials | asha s | asha HV at fifo's s | asha HV "
             "| asha reaches fifo's HV at | share of fifo's s | asha trials ending at 25/50/100/200 steps |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in res["runs"]:
        f, a = r["fifo"], r["asha"]
        reach = "never" if a["reaches_fifo_at_s"] is None else f"{a['reaches_fifo_at_s']:.0f} s"
        share = "-" if a["share_of_fifo_seconds"] is None else f"{a['share_of_fifo_seconds']:.2f}"
        st = "/".join(str(a["steps"].get(str(s), 0)) for s in (25, 50, 100, 200))
        lines.append(f"| {r['device']} | {r['seed']} | {f['trials']} | {f['seconds']:.0f} | {f['hypervolume']:.4f} | "
                     f"{a['trials']} | {a['seconds']:.0f} | {a['hypervolume_at_fifo_seconds']:.4f} | "
                     f"{a['hypervolume']:.4f} | {reach} | {share} | {st} |")
    shares = [r["asha"]["share_of_fifo_seconds"] for r in res["runs"]]
    if shares:
        reached = [s for s in shares if s is not None]
        better = sum(1 for r in res["runs"] if r["asha"]["hypervolume_at_fifo_seconds"] >= r["fifo"]["hypervolume"] - 1e-12)
        lines += ["", f"ASHA reached fifo's final hypervolume in {len(reached)} of {len(shares)} runs"
                  + (f" (median share of fifo's seconds {statistics.median(reached):.2f})" if reached else "")
                  + f"; at fifo's seconds its hypervolume was at least fifo's in {better} of {len(shares)}.", ""]
    return "\n".join(lines)


def plot(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = sorted(res["runs"], key=lambda r: r["seed"])  # a row per seed, the devices in order
    ncols = min(3, len(runs))
    nrows = math.ceil(len(runs) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, 2.8 * nrows), squeeze=False)
    for ax in axes.flat[len(runs):]:
        ax.set_visible(False)
    for ax, r in zip(axes.flat, runs):
        for arm, style in (("fifo", "-"), ("asha", "--")):
            t = [0.0] + [x for x, _ in r["trace"][arm]]
            h = [0.0] + [y for _, y in r["trace"][arm]]
            ax.step(t, h, style, where="post", label=arm)
        ax.set_title(f"{r['device']} s{r['seed']}", fontsize=8)
        ax.set_xlabel("seconds since the search started", fontsize=8)
        ax.set_ylabel("front hypervolume", fontsize=8)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)


def main(argv=None) -> int:
    args = parse_args(argv)
    from codesign.cache import default_cache_dir

    work = Path(args.work or default_cache_dir() / "bench_asha_live")
    if not args.report_only:
        from codesign.search.runner import init_ray

        init_ray(None, args.cpus)
        for device in args.devices:
            for seed in args.seeds:
                for arm in ARMS if seed % 2 == 0 else ARMS[::-1]:  # alternate which arm runs first
                    run_arm(args, work, device, arm, seed)
                report(args, work)
    report(args, work)
    print(f"report in {Path(args.out) / 'bench_asha_live.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
