"""``codesign reproduce``: the paper's table (naive EDMD vs labels-only vs distillation).

Rows: data set x teacher x dictionary degree x PCA rank x method, each over several seeds
(a seed changes the teacher's initialisation and data order, hence its outputs, and every
random choice downstream), reported as mean +- std of test accuracy. Writes
``reproduction.json`` (every run) and ``reproduction.md`` (the table and its reading) into
``--out``, with the package versions and the git commit.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata as md
import json
import platform
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .cache import atomic_write_json, atomic_write_text
from .config_files import read_json_file
from .data import IMAGE_DATASETS as DATASETS
from .distill import DistillConfig, Workspace, run_distill
from .errors import ConfigError, check_choice, check_range
from .options import option, same_as
from .pass_precision import PASS_DTYPES
from .students import FitConfig

PAPER = {("mnist", 2): 95.98, ("mnist", 3): 96.77}
METHODS = ("naive", "labels", "kd")


@dataclass(frozen=True)
class ReproduceConfig:
    """Options of ``codesign reproduce`` (see ``codesign reproduce --help``)."""

    out: str = option("experiments/reproduction", "output folder")
    data_root: str | None = same_as(DistillConfig, "data_root")
    cache_dir: str | None = same_as(DistillConfig, "cache_dir")
    datasets: tuple[str, ...] = option(("mnist", "fashion-mnist"), "data sets of the table", choices=DATASETS)
    seeds: int = option(5, "seeds per row")
    ranks2: tuple[int, ...] = option((5, 10, 20, 30, 40), "PCA ranks at degree 2")
    ranks3: tuple[int, ...] = option((5, 10, 15, 20), "PCA ranks at degree 3")
    resnet_ranks2: tuple[int, ...] = option((10, 20, 40), "degree-2 ranks with the ResNet-18 teacher")
    resnet_seeds: int = option(5, "seeds for the ResNet-18 rows")
    torch_device: str = same_as(DistillConfig, "torch_device")
    tol: float | None = option(None, "L-BFGS stopping tolerance of labels/kd", show_default="the engine's, 1e-2")
    pass_dtype: str | None = same_as(FitConfig, "pass_dtype", default=None, show_default="the engine's")
    resume: bool = option(False, "keep the runs already in OUT/reproduction.json and run only the missing ones")
    smoke_test: bool = option(False, "tiny run on digits (for tests)")

    def __post_init__(self) -> None:
        for name in ("datasets", "ranks2", "ranks3", "resnet_ranks2"):
            value = getattr(self, name)
            object.__setattr__(self, name, tuple(value if isinstance(value, (list, tuple)) else (value,)))
        if self.smoke_test:
            for name, value in dict(datasets=("digits",), seeds=2, ranks2=(5, 10), ranks3=(5,), resnet_ranks2=(),
                                    resnet_seeds=0).items():
                object.__setattr__(self, name, value)
        check_range("seeds", self.seeds, 1, 1000, integer=True)
        check_range("resnet_seeds", self.resnet_seeds, 0, 1000, integer=True)
        for ds in self.datasets:
            check_choice("datasets", ds, DATASETS)
        for name in ("ranks2", "ranks3", "resnet_ranks2"):
            for r in getattr(self, name):
                check_range(name, r, 1, None, integer=True)
        if self.tol is not None:  # honoured, 0 included (L-BFGS then runs to its iteration cap)
            check_range("tol", self.tol, 0.0, 1.0)
        if self.pass_dtype is not None:
            check_choice("pass_dtype", self.pass_dtype, PASS_DTYPES)
        for name in ("out", "data_root", "cache_dir", "torch_device"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise ConfigError(f"{name}={value!r}: expected a string")


def plan(opts: dict) -> list[tuple[str, str, int, int]]:
    """(dataset, teacher, degree, rank) settings in table order."""
    rows = []
    for ds in opts["datasets"]:
        for d, ranks in ((2, opts["ranks2"]), (3, opts["ranks3"])):
            rows += [(ds, "mlp", d, r) for r in ranks]
        rows += [(ds, "resnet18", 2, r) for r in opts["resnet_ranks2"]]
    return rows


def _key(r: dict) -> tuple:
    return (r["dataset"], r["teacher"], r["degree"], r["pca_rank"], r["seed"], r["method"])


def run(opts: dict, log=print, done: list[dict] | None = None, checkpoint=None) -> dict:
    """Run every (setting, seed, method) not already in ``done``; ``checkpoint(runs)`` after each setting."""
    ws = Workspace()
    runs = list(done or [])
    have = {_key(r) for r in runs}
    t_start = time.perf_counter()
    for ds, teacher, degree, rank in plan(opts):
        n_seeds = opts["resnet_seeds"] if teacher == "resnet18" else opts["seeds"]
        for seed in range(n_seeds):
            for method in METHODS:
                if (ds, teacher, degree, rank, seed, method) in have:
                    continue
                cfg = DistillConfig(
                    dataset=ds, data_root=opts["data_root"], teacher=teacher, pca_rank=rank,
                    dictionary="monomial", dictionary_params={"degree": degree}, fit=FitConfig(method=method, seed=seed, **{k: opts[k] for k in ("tol", "pass_dtype") if opts[k] is not None}), seed=seed,
                    cache_dir=opts["cache_dir"], torch_device=opts["torch_device"],
                    host_datapath="fp32",  # the paper's table is of float students: no host quantisation
                )
                m = run_distill(cfg, ws).metrics
                runs.append({k: m[k] for k in (
                    "dataset", "teacher", "teacher_test_accuracy", "method", "pca_rank", "seed", "n_features",
                    "test_accuracy", "fit_seconds", "iterations", "condition_number")} | {"degree": degree})
                log(f"{ds:14s} {teacher:9s} d={degree} r={rank:3d} seed={seed} {method:6s} "
                    f"acc={m['test_accuracy']:.4f} fit={m['fit_seconds']:.2f}s")
        # Features of a finished setting are not needed again: free their memory.
        ws._features.clear()
        if checkpoint is not None:
            checkpoint(runs)
    return {"runs": runs, "seconds": time.perf_counter() - t_start}


def summarise(runs: list[dict]) -> list[dict]:
    """Group runs by setting and method: mean, std (population, over seeds), n."""
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        groups.setdefault((r["dataset"], r["teacher"], r["degree"], r["pca_rank"], r["method"]), []).append(r)
    out = []
    for (ds, teacher, d, rank, method), rs in groups.items():
        acc = np.array([r["test_accuracy"] for r in rs]) * 100
        conds = [r["condition_number"] for r in rs if r["condition_number"] is not None]
        out.append({
            "dataset": ds, "teacher": teacher, "degree": d, "pca_rank": rank, "method": method,
            "n_features": rs[0]["n_features"], "mean": float(acc.mean()), "std": float(acc.std(ddof=1)) if len(acc) > 1 else 0.0,
            "n": len(acc), "fit_seconds": float(np.median([r["fit_seconds"] for r in rs])),
            "teacher_accuracy": float(np.mean([r["teacher_test_accuracy"] for r in rs]) * 100),
            "condition_number": float(np.median(conds)) if conds else None,
        })
    return out


def render_markdown(summary: list[dict], meta: dict) -> str:
    commands = meta.get("commands") or [meta["command"]]
    lines = [
        "# Reproduction: Koopman students distilled from neural networks",
        "",
        "Command" + ("s, in order" if len(commands) > 1 else "") + ": " + "; then ".join(f"`{c}`" for c in commands) + "  ",
        f"Made {meta['date']} at commit `{meta['commit']}` on {meta['machine']}; {meta['seconds']:.0f} s in all.  ",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()) + ".",
        "",
        "Test accuracy in %, mean +- sample std over seeds (a seed retrains the teacher and reseeds",
        "everything downstream). `naive` = least-squares EDMD on the teacher's softmax outputs,",
        "`labels` = the same linear model trained on labels only, `kd` = distillation",
        "(T=2, alpha=0.9, full-batch L-BFGS). cond(G) = condition number of EDMD's Gram matrix.",
        "",
        "| data set | teacher (acc) | d | r | F | naive | labels | kd | kd - naive | kd - labels | cond(G) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    by = {}
    for s in summary:
        by.setdefault((s["dataset"], s["teacher"], s["degree"], s["pca_rank"]), {})[s["method"]] = s
    for (ds, teacher, d, r), ms in by.items():
        if not all(m in ms for m in METHODS):
            continue
        n, l, k = ms["naive"], ms["labels"], ms["kd"]
        cond = n["condition_number"]
        lines.append(
            f"| {ds} | {teacher} ({k['teacher_accuracy']:.2f}) | {d} | {r} | {k['n_features']} | "
            f"{n['mean']:.2f} +- {n['std']:.2f} | {l['mean']:.2f} +- {l['std']:.2f} | "
            f"**{k['mean']:.2f} +- {k['std']:.2f}** | {k['mean'] - n['mean']:+.2f} | {k['mean'] - l['mean']:+.2f} | "
            f"{cond:.3g} |"
        )
    lines += [
        "", "## Reading", "",
        "`labels` has a std of exactly 0: its loss is convex, its fit deterministic and it never sees the",
        "teacher, so the seed cannot change it (monomial features do not depend on the seed). `naive` is",
        "closed-form and depends on the seed only through the teacher's softmax outputs, which are nearly",
        "one-hot, hence its tiny std. The std that varies is kd's, through the teacher.", "",
    ] + findings(summary)
    return "\n".join(lines) + "\n"


def findings(summary: list[dict]) -> list[str]:
    """Plain statements checked against the numbers (not written by hand)."""
    out = []
    by = {}
    for s in summary:
        by.setdefault((s["dataset"], s["teacher"], s["degree"], s["pca_rank"]), {})[s["method"]] = s
    for ds in sorted({k[0] for k in by}):
        keys = [k for k in by if k[0] == ds and k[1] == "mlp" and all(m in by[k] for m in METHODS)]
        if not keys:
            continue
        beats = [k for k in keys if by[k]["kd"]["mean"] > by[k]["naive"]["mean"]]
        out.append(f"- {ds}, MLP teacher: kd beats naive in {len(beats)} of {len(keys)} settings"
                   + ("" if len(beats) == len(keys) else " (not in: " + ", ".join(f"d={k[2]} r={k[3]}" for k in keys if k not in beats) + ")") + ".")
        smaller = [k for k in keys if by[k]["kd"]["std"] < by[k]["naive"]["std"]]
        out.append(f"- {ds}: kd's std over seeds is smaller than naive's in {len(smaller)} of {len(keys)} settings"
                   f" (the paper says it is smaller: {'holds' if len(smaller) == len(keys) else 'holds only partly' if smaller else 'does not hold'} here).")
        ties = [k for k in keys if abs(by[k]["kd"]["mean"] - by[k]["labels"]["mean"]) <= max(by[k]["kd"]["std"], by[k]["labels"]["std"], 0.05)]
        worse = [k for k in keys if by[k]["labels"]["mean"] > by[k]["kd"]["mean"] and k not in ties]
        if ties:
            out.append(f"- {ds}: labels matches kd (within one std) at " + ", ".join(f"d={k[2]} r={k[3]}" for k in ties) + ".")
        if worse:
            out.append(f"- {ds}: labels beats kd at " + ", ".join(f"d={k[2]} r={k[3]}" for k in worse) + ".")
        for d in (2, 3):
            target = PAPER.get((ds, d))
            ranks = sorted(k[3] for k in keys if k[2] == d)
            if target is None or not ranks:
                continue
            hit = [r for r in ranks if by[(ds, "mlp", d, r)]["kd"]["mean"] >= target]
            if hit:
                r = hit[0]
                out.append(f"- {ds} degree {d}: kd reaches the paper's {target:.2f}% from r={r} on "
                           f"({by[(ds, 'mlp', d, r)]['kd']['mean']:.2f}%).")
            else:
                out.append(f"- {ds} degree {d}: kd does not reach the paper's {target:.2f}% at any rank tried ({ranks}).")
        if (ds, "mlp", 2, 40) in by:
            out.append(f"- {ds} degree 2, r=40: kd {by[(ds, 'mlp', 2, 40)]['kd']['mean']:.2f}%.")
    return out


def metadata(opts: dict, seconds: float, command: str) -> dict:

    versions = {}
    for pkg in ("codesign", "torch", "numpy", "scipy", "scikit-learn"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                timeout=10).stdout.strip() or "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, timeout=10).stdout.strip()
        commit += "+dirty" if dirty else ""
    except (OSError, subprocess.SubprocessError):
        commit = "unknown"
    return {
        "command": command, "commit": commit, "date": time.strftime("%Y-%m-%d"), "seconds": seconds,
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip() + f", torch threads {__import__('torch').get_num_threads()}",
        "versions": versions, "options": opts,
    }


def read_table(path: Path) -> dict:
    """A ``reproduction.json`` to resume from; :class:`ConfigError` naming the file if it is damaged."""
    fix = "move it away to start the table afresh (or restore it), then rerun"
    prev = read_json_file(path, fix)
    runs = prev.get("runs") if isinstance(prev, dict) else None
    meta = prev.get("meta") if isinstance(prev, dict) else None
    keys = {"dataset", "teacher", "degree", "pca_rank", "seed", "method", "test_accuracy"}
    if (not isinstance(runs, list) or not isinstance(meta, dict)
            or not all(isinstance(r, dict) and keys <= set(r) for r in runs)):
        raise ConfigError(f"{path} is damaged (not a table written by `codesign reproduce`: it needs 'meta' and "
                          f"'runs' with {', '.join(sorted(keys))}); {fix}")
    return prev


def main(cfg: ReproduceConfig, command: str = "codesign reproduce") -> Path:
    """Run (or resume) the table described by ``cfg``; write it to ``cfg.out``; return that folder.

    Args:
        cfg: the table's settings.
        command: the command line recorded in the table as the way to remake it.
    """
    opts = {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(cfg).items()}
    out = Path(cfg.out)
    done: list[dict] = []
    prev: dict = {}
    seconds_before = 0.0
    if opts["resume"] and (out / "reproduction.json").is_file():
        # Runs already in the table are kept; only the missing (setting, seed, method) run.
        prev = read_table(out / "reproduction.json")
        done, seconds_before = prev["runs"], prev["meta"].get("seconds", 0.0)

    commands = list(prev["meta"].get("commands") or [c for c in [prev["meta"].get("command")] if c]) if done else []
    if command not in commands[-1:]:
        commands.append(command)

    def write(runs: list[dict], seconds: float) -> None:
        summary = summarise(runs)
        meta = metadata(opts, seconds, command)
        meta["commands"] = commands
        atomic_write_json(out / "reproduction.json", {"meta": meta, "summary": summary, "runs": runs})
        atomic_write_text(out / "reproduction.md", render_markdown(summary, meta))

    t0 = time.perf_counter()
    res = run(opts, done=done, checkpoint=lambda runs: write(runs, seconds_before + time.perf_counter() - t0))
    write(res["runs"], seconds_before + res["seconds"])
    return out
