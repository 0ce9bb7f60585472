"""Host lifting only vs device lifts allowed: the MNIST search per built-in device (issue 30, item 3).

For each device, two searches on the same budget (trials, seed, data, teacher, ranks, host
dictionary): ``--lift-placement host`` (the dictionary lift on the digital host, as every
search before issue 30) and ``--lift-placement host device`` (the search may also pick the
device's own nonlinear primitives, ``<device>.<primitive>``, computed with the device's noise and
priced by it). Then one plot with both fronts per device side by side and a table with the
hypervolume of each front (:func:`codesign.search.pareto.hypervolume`: accuracy x decades of
energy, up to a reference point shared by the two fronts of a device).

    nice -n 10 python experiments/device_lifts/run.py                 # the committed results
    python experiments/device_lifts/run.py --smoke-test --out /tmp/x  # tiny, on digits

Outputs under ``--out`` (default ``experiments/device_lifts``): ``fronts.png`` / ``fronts.pdf``,
``RESULTS.md`` (the table and the command), ``results.json``, and per search its ``trials.csv``
and ``front.csv`` under ``runs/<device>-<host|device>/`` (the searches themselves, students
included, run under ``--work``).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import shutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEVICES = ("photonic_mzi", "analog_crossbar", "fpga_fixed_point")
PLACEMENTS = {"host": ["host"], "device": ["host", "device"]}
#: The searches' shared settings (MNIST; see RESULTS.md for the budget and why it is small).
COMMON = ["--dataset", "mnist", "--dictionaries", "monomial", "--ranks", "8", "24", "--hw-draws", "2",
          "--cost", "energy", "--max-memory", "2G"]
#: The device primitives' features searched (the host's monomial keeps its own degree 2, 3).
DEVICE_SPACE = ["--space", "features=64:512"]
SMOKE = ["--dataset", "digits", "--dictionaries", "monomial", "--ranks", "4", "10", "--hw-draws", "2",
         "--teacher-epochs", "2", "--max-memory", "256M"]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--devices", nargs="+", default=list(DEVICES))
    p.add_argument("--samples", type=int, default=10, help="trials per search (default 10)")
    p.add_argument("--out", default=str(HERE), help="where the plot, table and CSVs go")
    p.add_argument("--work", default=None, help="where the searches run (default: OUT/work, not committed)")
    p.add_argument("--cpus", type=int, default=1, help="CPUs Ray may use (default 1: the machine is shared)")
    p.add_argument("--smoke-test", action="store_true", help="tiny searches on digits")
    p.add_argument("--plot-only", action="store_true", help="only redo the plot and table from finished searches")
    p.add_argument("--placements", nargs="+", choices=list(PLACEMENTS), default=list(PLACEMENTS),
                   help="which searches to run (the others' trials.csv must already be under --work)")
    return p.parse_args(argv)


def read_trials(folder: Path) -> list[dict]:
    with open(folder / "trials.csv", newline="") as f:
        return list(csv.DictReader(f))


def feasible_points(rows: list[dict]) -> list[tuple[float, float, str]]:
    """``(hw_accuracy, energy_pj, dictionary)`` of every completed, feasible trial."""
    out = []
    for r in rows:
        if r.get("status") != "completed" or r.get("feasible") != "True":
            continue
        try:
            out.append((float(r["hw_accuracy"]), float(r["energy_pj"]), r["dictionary"]))
        except (KeyError, ValueError):
            continue
    return out


def summarise(out: Path, work: Path, devices, samples: int, command: str) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    from codesign.search.pareto import hypervolume, pareto_front

    results: dict = {"samples_per_search": samples, "command": command, "devices": {}}
    fig, axes = plt.subplots(1, len(devices), figsize=(5.2 * len(devices), 4.2), squeeze=False)
    for ax, device in zip(axes[0], devices):
        runs = {p: read_trials(work / f"{device}-{p}") for p in PLACEMENTS}
        pts = {p: feasible_points(rows) for p, rows in runs.items()}
        every = [c for ps in pts.values() for _, c, _ in ps]
        # shared reference: chance accuracy and 10x the most expensive feasible design of either search
        ref_cost = 10 * max(every) if every else 1.0
        entry = {"reference": {"accuracy": 0.1, "energy_pj": ref_cost}}
        for p, style in (("host", dict(color="tab:blue", marker="o")), ("device", dict(color="tab:red", marker="s"))):
            acc = [a for a, _, _ in pts[p]]
            cost = [c for _, c, _ in pts[p]]
            front = pareto_front(acc, cost)
            hv = hypervolume(acc, cost, 0.1, ref_cost) if pts[p] else 0.0
            rows = runs[p]
            done = [r for r in rows if r.get("status") in ("completed", "infeasible") and r.get("hw_accuracy")]

            def median(values):
                values = sorted(values)
                return values[len(values) // 2] if values else None

            def gaps(device_lift: bool):  # float accuracy - hardware accuracy, points
                return [100 * (float(r["float_accuracy"]) - float(r["hw_accuracy"])) for r in done
                        if ("." in r["dictionary"]) == device_lift and r.get("float_accuracy")]

            def lift_energy(device_lift: bool):
                return [float(r["lift_energy_pj"]) for r in done
                        if ("." in r["dictionary"]) == device_lift and r.get("lift_energy_pj")]

            entry[p] = {
                "trials": len(rows),
                "feasible": len(pts[p]),
                "device_lift_trials": sum(1 for r in rows if "." in r.get("dictionary", "")),
                "device_lift_feasible": sum(1 for _, _, d in pts[p] if "." in d),
                "hypervolume": hv,
                # what the lift costs and loses, per placement (every scored trial, feasible or not)
                "median_lift_energy_pj": {"host": median(lift_energy(False)), "device": median(lift_energy(True))},
                "median_hw_gap_points": {"host": median(gaps(False)), "device": median(gaps(True))},
                "front": [{"hw_accuracy": acc[i], "energy_pj": cost[i], "dictionary": pts[p][i][2]} for i in front],
            }
            label = "host lifting only" if p == "host" else "device lifts allowed"
            ax.scatter(cost, acc, s=14, alpha=0.35, color=style["color"])
            if front:
                fc, fa = [cost[i] for i in front], [acc[i] for i in front]
                ax.step(fc, fa, where="post", color=style["color"], label=f"{label} (HV {hv:.3f})")
                ax.scatter(fc, fa, color=style["color"], marker=style["marker"], s=36, zorder=3,
                           edgecolors=["black" if "." in pts[p][i][2] else style["color"] for i in front])
            else:
                ax.plot([], [], color=style["color"], label=f"{label} (no feasible trial)")
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # decades only: minor labels overlap
        ax.set_xlabel("energy per inference (pJ)")
        ax.set_ylabel("hw accuracy (validation)")
        ax.set_title(device)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
        results["devices"][device] = entry
    fig.suptitle(f"MNIST, {samples} trials per search; black edge: a device-native lift on the front", fontsize=10)
    fig.tight_layout()
    out.mkdir(parents=True, exist_ok=True)
    for ext in ("png", "pdf"):
        fig.savefig(out / f"fronts.{ext}", dpi=130)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = ["| device | search | trials | feasible | device-lift trials (feasible) | hypervolume | best hw acc | "
             "its energy (pJ) | front's dictionaries |", "|---|---|---|---|---|---|---|---|---|"]
    for device, e in results["devices"].items():
        for p in PLACEMENTS:
            s = e[p]
            best = max(s["front"], key=lambda r: r["hw_accuracy"]) if s["front"] else None
            dicts = ", ".join(sorted({r["dictionary"].split("(")[0] for r in s["front"]})) or "-"
            lines.append(f"| {device} | {'host only' if p == 'host' else 'host + device lifts'} | {s['trials']} | "
                         f"{s['feasible']} | {s['device_lift_trials']} ({s['device_lift_feasible']}) | "
                         f"{s['hypervolume']:.4f} | " + (f"{best['hw_accuracy']:.4f} | {best['energy_pj']:.4g}" if best else "- | -")
                         + f" | {dicts} |")
    lines += ["", "| device | lift on | trials | median lift-stage energy (pJ) | median float - hw accuracy (points) |",
              "|---|---|---|---|---|"]
    for device, e in results["devices"].items():
        for where in ("host", "device"):
            # host lifts: the host-only search's trials; device lifts: the second search's
            n = sum(1 for r in read_trials(work / f"{device}-{where}")
                    if ("." in r.get("dictionary", "")) == (where == "device") and r.get("hw_accuracy"))
            src = e["device"] if where == "device" else e["host"]
            le, gap = src["median_lift_energy_pj"][where], src["median_hw_gap_points"][where]
            lines.append(f"| {device} | {where} | {n} | " + ("-" if le is None else f"{le:.4g}") + " | "
                         + ("-" if gap is None else f"{gap:.1f}") + " |")
    (out / "table.md").write_text("\n".join(lines) + "\n")
    return results


def main(argv=None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    work = Path(args.work) if args.work else out / "work"
    given = [a for a in (argv if argv is not None else sys.argv[1:]) if a != "--plot-only"]  # what produced the runs
    command = "nice -n 10 python experiments/device_lifts/run.py " + " ".join(given)
    if not args.plot_only:
        from codesign.cli import main as codesign
        from codesign.search.runner import init_ray

        started = init_ray(None, args.cpus)
        try:
            for device in args.devices:
                for p, placements in PLACEMENTS.items():
                    if p not in args.placements:
                        continue
                    folder = work / f"{device}-{p}"
                    base = SMOKE if args.smoke_test else COMMON
                    argv_ = ["search", "--device", device, *base, "--samples", str(args.samples),
                             "--lift-placement", *placements, "--out", str(folder), "--resume"]
                    if p == "device":
                        argv_ += DEVICE_SPACE if not args.smoke_test else ["--space", "features=16:64"]
                    t0 = time.time()
                    rc = codesign(argv_)
                    print(f"{device} {p}: rc {rc} in {time.time() - t0:.0f} s", flush=True)
                    (out / "runs" / folder.name).mkdir(parents=True, exist_ok=True)
                    for name in ("trials.csv", "front.csv", "front.md"):
                        if (folder / name).is_file():
                            shutil.copy(folder / name, out / "runs" / folder.name / name)
        finally:
            if started:
                import ray

                ray.shutdown()
    summarise(out, work, args.devices, args.samples, command)
    print((out / "table.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
