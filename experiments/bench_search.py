"""Search quality per trial: hypervolume of the validation front against the number of trials.

For each built-in device (photonic_mzi, analog_crossbar, fpga_fixed_point) it runs one
``--samples``-trial MNIST search (posthoc, the default space, MLP teacher, ``--seed 0``) per
sampler (``tpe``: Optuna's multi-objective TPE, ``nsga2``: NSGA-II, ``random``) and per sampler
seed (``--sampler-seed``; the data, the validation split, the teacher, the fits and the hardware
draws stay those of ``--seed 0``, so the runs differ by the sampler alone), on Ray with two CPUs
as a search runs. The first 8, 16, 32 and 64 trials of each run, in the order they finished
(the trial numbers of ``trials.jsonl``), are scored by the hypervolume of their validation
front:

* objectives: validation hardware accuracy (up) and log10 of the cost (down; the search's front
  plots put cost on a log axis, ``codesign.search.pareto.use_log_scale``);
* points: completed, feasible trials (failed and infeasible ones count as trials, add no point);
* reference point, per device: accuracy 0.1 (chance on ten classes) and log10 cost 0.1 decades
  above the costliest point any run of that device reached; the hypervolume is divided by the
  area of the box from (the cheapest point of any run, accuracy 1) to that reference point, so
  it reads as a share in [0, 1]. The reference is recorded in the JSON; it depends on the runs
  present, so compare numbers from one report only.

Every finished run is kept (its search folder under ``--work``) and the report (``--out``:
``bench_search.md``, ``bench_search.json``, ``bench_search.png``) is rewritten after each run,
so a killed benchmark keeps what it finished; rerunning the same command skips finished runs
and resumes a run cut short (``codesign search --resume``: its sampler restarts, seeded anew).

    python experiments/bench_search.py                                    # all: 3 x 3 x 3 runs
    python experiments/bench_search.py --devices photonic_mzi --samplers tpe random --seeds 0
    python experiments/bench_search.py --report-only                      # tables from --work
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
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEVICES = ("photonic_mzi", "analog_crossbar", "fpga_fixed_point")
SAMPLERS = ("tpe", "nsga2", "random")
PREFIXES = (8, 16, 32, 64)
ACC_REF = 0.1
COST_MARGIN = 0.1  # decades above the costliest point


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--devices", nargs="+", default=list(DEVICES))
    p.add_argument("--samplers", nargs="+", default=list(SAMPLERS), choices=SAMPLERS)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="sampler seeds")
    p.add_argument("--samples", type=int, default=64, help="trials per run (the prefixes are cut from it)")
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--max-memory", default="2G",
                   help="--max-memory of every search (one fit's large arrays; two trials run side by side)")
    p.add_argument("--cpus", type=int, default=2, help="Ray CPUs (= concurrent trials)")
    p.add_argument("--work", default=None, help="folder of the runs' search folders (default: $CODESIGN_CACHE/bench_search)")
    p.add_argument("--out", default=str(HERE / "bench_search"), help="report folder")
    p.add_argument("--report-only", action="store_true", help="only rewrite the report from the runs in --work")
    p.add_argument("--features-budget", default="8G",
                   help="after each run, delete the oldest lifted-feature files of the cache beyond this size "
                        "(random search lifts a new feature set almost every trial: gigabytes per run)")
    return p.parse_args(argv)


# --------------------------------------------------------------------------- hypervolume
def hypervolume(points, ref_acc: float, ref_cost: float) -> float:
    """Area dominated by ``points`` (``(accuracy, log10 cost)``, accuracy up, cost down) and
    bounded by the reference point ``(ref_acc, ref_cost)``."""
    pts = sorted((c, a) for a, c in points if a > ref_acc and c < ref_cost)
    area, best = 0.0, ref_acc
    for c, a in pts:  # cost ascending: each point adds the accuracy it gains over cheaper ones
        if a > best:
            area += (a - best) * (ref_cost - c)
            best = a
    return area


def run_points(records):
    """``[(accuracy, log10 cost) or None]`` per trial record, in trial (completion) order."""
    out = []
    for r in sorted(records, key=lambda r: r["trial"]):
        m = r.get("metrics") or {}
        ok = r.get("status") == "completed" and r.get("feasible", True) is not False
        c, a = m.get("cost"), m.get("hw_accuracy")
        if ok and isinstance(c, (int, float)) and isinstance(a, (int, float)) and c > 0 and math.isfinite(c):
            out.append((float(a), math.log10(c)))
        else:
            out.append(None)
    return out


# --------------------------------------------------------------------------- runs
def run_dir(work: Path, device: str, sampler: str, seed: int) -> Path:
    return work / f"{device}-{sampler}-s{seed}"


def load_run(folder: Path):
    """The run's trial records and its front.json (None when it never finished a report)."""
    from codesign.search.outputs import LOG_NAME, TrialLog

    records = TrialLog(folder / LOG_NAME).read() if (folder / LOG_NAME).is_file() else []
    front = None
    if (folder / "front.json").is_file():
        front = json.loads((folder / "front.json").read_text())
    return records, front


def run_one(args, work: Path, device: str, sampler: str, seed: int) -> None:
    from codesign.search.config import SearchConfig
    from codesign.search.runner import run_search

    folder = run_dir(work, device, sampler, seed)
    records, front = load_run(folder)
    if front is not None and len(records) >= args.samples and not front.get("interrupted"):
        return
    cfg = SearchConfig(dataset=args.dataset, device=device, samples=args.samples, protocol="posthoc",
                       sampler=sampler, sampler_seed=seed, seed=0, max_memory=args.max_memory,
                       cpus=args.cpus, out=str(folder), resume=bool(records), quiet=True)
    t0 = time.perf_counter()
    run_search(cfg)
    print(f"{_dt.datetime.now():%H:%M:%S} {device} {sampler} seed {seed}: {time.perf_counter() - t0:.0f} s",
          flush=True)


def prune_features(budget: int) -> None:
    """Delete the oldest ``CACHE/features/*.npz`` files until the folder holds at most ``budget`` bytes."""
    from codesign.cache import cache_root

    files = sorted((p for p in (cache_root() / "features").glob("*.npz") if p.is_file()),
                   key=lambda p: p.stat().st_mtime)
    total = sum(p.stat().st_size for p in files)
    for p in files:
        if total <= budget:
            break
        total -= p.stat().st_size
        p.unlink(missing_ok=True)


# --------------------------------------------------------------------------- report
def collect(args, work: Path) -> dict:
    runs = []
    for device in args.devices:
        for sampler in args.samplers:
            for seed in args.seeds:
                folder = run_dir(work, device, sampler, seed)
                if not folder.is_dir():
                    continue
                records, front = load_run(folder)
                if not records:
                    continue
                runs.append({"device": device, "sampler": sampler, "seed": seed, "folder": str(folder),
                             "n_trials": len(records), "finished": front is not None and not front.get("interrupted"),
                             "elapsed_s": (front or {}).get("elapsed_s"),
                             "rounds": len(json.loads((folder / "search.json").read_text()).get("rounds") or []
                                           if (folder / "search.json").is_file() else []),
                             "points": run_points(records)})
    refs = {}
    for device in args.devices:
        pts = [p for r in runs if r["device"] == device for p in r["points"] if p is not None]
        if pts:
            lo, hi = min(c for _, c in pts), max(c for _, c in pts)
            refs[device] = {"accuracy": ACC_REF, "log10_cost": hi + COST_MARGIN, "log10_cost_min": lo,
                            "box": (1.0 - ACC_REF) * (hi + COST_MARGIN - lo)}
    for r in runs:
        ref = refs.get(r["device"])
        r["hv"] = {}
        for n in PREFIXES:
            if n > r["n_trials"] or ref is None:
                continue
            pts = [p for p in r["points"][:n] if p is not None]
            r["hv"][str(n)] = hypervolume(pts, ref["accuracy"], ref["log10_cost"]) / ref["box"]
    table = {}
    for device in args.devices:
        for sampler in args.samplers:
            rs = [r for r in runs if r["device"] == device and r["sampler"] == sampler]
            row = {}
            for n in PREFIXES:
                vals = [r["hv"][str(n)] for r in rs if str(n) in r["hv"]]
                if vals:
                    row[str(n)] = {"mean": statistics.fmean(vals), "std": statistics.pstdev(vals), "n": len(vals)}
            if row:
                table.setdefault(device, {})[sampler] = row
    command = (f"python experiments/bench_search.py --devices {' '.join(args.devices)} --samplers {' '.join(args.samplers)} "
               f"--seeds {' '.join(map(str, args.seeds))} --samples {args.samples} --dataset {args.dataset} "
               f"--max-memory {args.max_memory} --cpus {args.cpus}")
    return {"format": "codesign-bench-search/1", "command": command,
            "written": _dt.datetime.now().isoformat(timespec="seconds"), "machine": platform.platform(),
            "cpus": os.cpu_count(), "dataset": args.dataset, "samples": args.samples, "max_memory": args.max_memory,
            "prefixes": list(PREFIXES), "reference": refs, "table": table,
            "runs": [{k: v for k, v in r.items()} for r in runs]}


def write_report(res: dict, out: Path) -> None:
    from codesign.cache import atomic_write_json, atomic_write_text

    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "bench_search.json", res)
    lines = [
        "# Search quality per trial: hypervolume of the validation front",
        "",
        f"Written by `{res['command']}` ({res['written']}, {res['machine']}, "
        f"{res['cpus']} CPUs). {res['dataset']}, posthoc, default space, `--max-memory {res['max_memory']}`, "
        f"`--seed 0`, Ray with 2 CPUs; {res['samples']}-trial runs, prefixes in trial-completion order.",
        "",
        "Hypervolume of (validation hw accuracy up, log10 cost down), divided by the area of the box "
        "between the cheapest point of any run and the reference point (accuracy 0.1, log10 cost 0.1 "
        "decades above the costliest point of any run of the device): mean ± std over sampler seeds (n runs).",
        "",
        "The comparison is paired: with one sampler seed the three samplers start from the same random draws "
        "(TPE's first 10 trials and NSGA-II's first generation of 16 are drawn by the same seeded random sampler), "
        "so they part ways only after those; two trials run at once, so completion order, and with it a prefix, "
        "can differ slightly between runs. Failed and infeasible trials count as trials and add no point.",
        "",
    ]
    for device, by_sampler in res["table"].items():
        ref = res["reference"][device]
        lines += [f"## {device}", "",
                  f"Reference point: accuracy {ref['accuracy']}, log10 cost {ref['log10_cost']:.3f} "
                  f"(cheapest point: {ref['log10_cost_min']:.3f}).", "",
                  "| sampler | " + " | ".join(f"{n} trials" for n in res["prefixes"]) + " |",
                  "|---|" + "---|" * len(res["prefixes"])]
        for sampler, row in by_sampler.items():
            cells = []
            for n in res["prefixes"]:
                v = row.get(str(n))
                cells.append(f"{v['mean']:.4f} ± {v['std']:.4f} ({v['n']})" if v else "–")
            lines.append(f"| {sampler} | " + " | ".join(cells) + " |")
        tpe32, rnd64 = by_sampler.get("tpe", {}).get("32"), by_sampler.get("random", {}).get("64")
        if tpe32 and rnd64:
            verdict = "meets" if tpe32["mean"] >= rnd64["mean"] else "misses"
            lines += ["", f"tpe at 32 trials {tpe32['mean']:.4f} vs random at 64 {rnd64['mean']:.4f}: {verdict} "
                          "the target (default sampler at 32 >= random at 64)."]
        lines.append("")
    lines += ["## Runs", "", "| device | sampler | seed | trials | finished | rounds | wall s (shared machine) |",
              "|---|---|---|---|---|---|---|"]
    for r in res["runs"]:
        lines.append(f"| {r['device']} | {r['sampler']} | {r['seed']} | {r['n_trials']} | {r['finished']} | "
                     f"{r['rounds']} | {r['elapsed_s']} |")
    atomic_write_text(out / "bench_search.md", "\n".join(lines) + "\n")
    plot(res, out / "bench_search.png")


def plot(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    devices = list(res["table"])
    if not devices:
        return
    fig, axes = plt.subplots(1, len(devices), figsize=(4.2 * len(devices), 3.4), squeeze=False)
    for ax, device in zip(axes[0], devices):
        for sampler, row in res["table"][device].items():
            ns = [n for n in res["prefixes"] if str(n) in row]
            m = [row[str(n)]["mean"] for n in ns]
            s = [row[str(n)]["std"] for n in ns]
            ax.errorbar(ns, m, yerr=s, marker="o", capsize=3, label=sampler)
        ax.set_xscale("log", base=2)
        ax.set_xticks(list(res["prefixes"]), [str(n) for n in res["prefixes"]])
        ax.set_title(device)
        ax.set_xlabel("trials")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("hypervolume (share of box)")
    axes[0][0].legend()
    fig.tight_layout()
    save_figure(fig, path)


def save_figure(fig, path: Path, dpi: int = 120) -> None:
    """Write ``fig`` to ``path`` atomically (a reader never sees half a PNG) and close it."""
    import io

    import matplotlib.pyplot as plt
    from codesign.cache import atomic_write_bytes

    buf = io.BytesIO()
    fig.savefig(buf, format=path.suffix.lstrip("."), dpi=dpi)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def main(argv=None) -> int:
    args = parse_args(argv)
    from codesign.cache import default_cache_dir

    work = Path(args.work or default_cache_dir() / "bench_search")
    out = Path(args.out)
    if not args.report_only:
        from codesign.features import parse_memory
        from codesign.search.runner import init_ray

        init_ray(None, args.cpus)
        for seed in args.seeds:  # seed-major: a cut-short benchmark has whole seeds of every cell
            for device in args.devices:
                for sampler in args.samplers:
                    try:
                        run_one(args, work, device, sampler, seed)
                    except Exception:  # noqa: BLE001 - one failed run must not lose the others
                        traceback.print_exc()
                    prune_features(parse_memory(args.features_budget))
                    write_report(collect(args, work), out)
    write_report(collect(args, work), out)
    print(f"report in {out / 'bench_search.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
