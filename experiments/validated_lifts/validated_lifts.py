"""Validated accuracy of lifts at growing feature counts (issue 30, item 3, second table).

For every data set and every lift spec, the script builds the standardised features (PCA fitted
on the training images, then the lift), chooses the distillation temperature T, the weight alpha
and the L2 penalty on a validation split of the training set (``codesign.selection.select_kd``,
as ``experiments/validated_kd`` does: 20 % of the training images, the ``labels`` guard), refits
on all training rows with the chosen numbers and reads the test set once, after the choice.
The test split is never used to choose anything.

A lift spec is ``NAME:key=value,...``: ``NAME`` a registered dictionary, ``rank`` the PCA rank,
every other key one of the dictionary's parameters, e.g. ``rff:rank=50,features=4000`` or
``monomial:rank=120,degree=2``. :func:`lift_features` turns a spec into features. A device-native
lift is named ``<device>.<primitive>`` (``photonic_mzi.intensity:rank=50,features=2000``): its
features for the choice and the refit are the primitive's exact math (noise off), as ``codesign
distill --lift-placement device`` fits them; after the choice, :func:`on_device` runs ``codesign
distill`` with the chosen T, alpha and L2 on that device (post hoc, the lift and K drawn
``--hw-draws`` times with the device's noise and converters) and the row adds that accuracy. Each cell is saved to
``results_<dataset>.json`` as soon as it finishes (atomic write), so the script resumes where it
stopped; ``--only-md`` rewrites ``validated_lifts.md`` from what is saved.

The grid is deliberately small (the machine is two cores shared by five people): T in
``--temperatures``, alpha in ``--alphas`` (0 is the ``labels`` fit), L2 in ``--l2s``, every
combination (15 fits by default); ``experiments/validated_kd`` used 52 points. Features with more
than ``--disk-above`` columns are written once to ``CACHE/validated_lifts/`` and memory-mapped
(the disk-backed feature path of ``codesign.students``: the float32 matrix lives in the page
cache, not in the process).

    export CODESIGN_DATA=/work/shared/data CODESIGN_CACHE=.cache
    python experiments/validated_lifts/validated_lifts.py --datasets fashion-mnist mnist \\
        --lifts rff:rank=50,features=1000 rff:rank=50,features=2000 rff:rank=50,features=4000
    python experiments/validated_lifts/validated_lifts.py --only-md
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
import warnings
from pathlib import Path
from unittest import mock

import numpy as np
import torch

from codesign import selection
from codesign.cache import atomic_write_json, atomic_write_text, cache_root, stable_hash
from codesign.data import load_dataset
from codesign.device_lifts import is_device_lift, make_dictionary
from codesign.distill import DistillConfig, run_distill
from codesign.features import FeaturePipeline, fit_memory, format_bytes, parse_memory
from codesign.selection import resolve_fit, select_kd
from codesign.students import FitConfig, GramCache, LinearStudent, engine_memory
from codesign.teachers import get_teacher

HERE = Path(__file__).resolve().parent
#: the committed monomial cells shown next to the lifts (experiments/validated_kd, no augmentation)
MONOMIAL_REF = HERE.parent / "validated_kd"
#: the all-optical diffractive network's Fashion-MNIST accuracy (Lin et al., Science 2018;
#: Li et al. 2019 report 90.54 % for their five-layer phase-only network)
DIFFRACTIVE_FASHION = 90.54


def parse_spec(text: str) -> tuple[str, int, dict]:
    """``NAME:rank=R,key=value,...`` -> ``(name, rank, params)`` (params as strings, converted by the dictionary)."""
    name, _, rest = text.partition(":")
    kv = dict(item.split("=", 1) for item in rest.split(",") if item)
    if "rank" not in kv:
        raise SystemExit(f"lift spec {text!r}: give the PCA rank, e.g. {name}:rank=50,...")
    return name, int(kv.pop("rank")), kv


def lift_features(spec: str, ds, seed: int, max_memory: int, disk_above: int, cache_dir=None):
    """``(train, test, info)``: standardised features of ``spec`` on ``ds``'s splits.

    ``train`` is a read-only ``numpy.memmap`` when the lift has more than ``disk_above``
    columns (written once under ``CACHE/validated_lifts/``), else a tensor.
    """
    name, rank, params = parse_spec(spec)
    lift = make_dictionary(name, **params)
    pipe = FeaturePipeline(rank, lift, max_memory, seed)
    n, F = len(ds.y_train), pipe.n_features
    pipe.check_memory(n + len(ds.y_test))  # --max-memory, with the lift's own feature count
    info = {"dictionary": lift.describe(), "params": lift.params(), "rank": rank, "n_features": F,
            "estimate_bytes": {**fit_memory(n, F)}}
    disk = F > disk_above
    folder = Path(cache_root(cache_dir)) / "validated_lifts"
    key = stable_hash({"ds": ds.name, "spec": spec, "seed": seed, "params": lift.params(), "v": 1})
    path = folder / f"{ds.name}-{name}-r{rank}-F{F}-{key}.npy"
    t0 = time.perf_counter()
    train = pipe.fit_transform(ds.x_train)
    test = pipe.transform(ds.x_test)
    if hasattr(lift, "sigma_"):
        info["sigma"] = float(lift.sigma_)
    if disk:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, train.numpy())
        tmp.replace(path)
        del train
        train = np.load(path, mmap_mode="r")
        info["disk_backed"] = str(path)
    info["features_seconds"] = round(time.perf_counter() - t0, 1)
    return train, test, info


def cell_key(name, spec, seed, teacher="cnn"):
    return f"{name}|{spec}|{teacher}|s{seed}"


class Table:
    def __init__(self, args):
        self.args, self.out = args, Path(args.out)
        self.states = {}
        for name in args.datasets:
            p = self.out / f"results_{name}.json"
            self.states[name] = json.loads(p.read_text()) if p.is_file() else {"cells": {}}
        self.teachers = {}

    def log(self, msg):
        print(time.strftime("%H:%M:%S"), msg, flush=True)

    def save(self, name):
        atomic_write_json(self.out / f"results_{name}.json", self.states[name])

    def teacher(self, ds):
        if self.args.teacher == "none":
            return None
        if ds.name not in self.teachers:
            t = get_teacher(self.args.teacher, ds, seed=0, cache_dir=self.args.cache_dir, verbose=True)
            self.teachers[ds.name] = t
            self.states[ds.name]["teacher"] = {"arch": self.args.teacher, "test_accuracy": t.test_accuracy(ds),
                                               "key": t.info.get("key")}
        return self.teachers[ds.name]

    def grid(self):
        return {"temperatures": self.args.temperatures, "alphas": self.args.alphas, "l2s": self.args.l2s}

    def run(self):
        for spec in self.args.lifts:
            for name in self.args.datasets:
                for seed in range(self.args.seeds):
                    if cell_key(name, spec, seed, self.args.teacher) not in self.states[name]["cells"]:
                        self.cell(name, spec, seed)

    def cell(self, name, spec, seed):
        ds = load_dataset(name, self.args.data_root)
        teacher = self.teacher(ds)
        train, test, info = lift_features(spec, ds, seed, self.args.max_memory, self.args.disk_above, self.args.cache_dir)
        n, F = len(ds.y_train), info["n_features"]
        y = torch.from_numpy(ds.y_train).long()
        t = None if teacher is None else torch.from_numpy(np.asarray(teacher.train_logits))
        y_test = torch.from_numpy(ds.y_test).long()
        info["engine_estimate_bytes"] = engine_memory(n, F, disk_backed="disk_backed" in info)
        self.log(f"{name} {spec}: F={F}, features {info['features_seconds']}s, sigma={info.get('sigma')}")
        # without a teacher only the L2 penalty is chosen (the labels fit at every --l2s)
        cfg = (FitConfig(method="labels", l2="auto", seed=seed) if teacher is None else
               FitConfig(method="kd", temperature="auto", alpha="auto", l2="auto", seed=seed))
        t1 = time.perf_counter()
        # the small grid: select_kd reads these module constants when it builds its points
        with mock.patch.object(selection, "TEMPERATURES", tuple(self.args.temperatures)), \
                mock.patch.object(selection, "ALPHAS", tuple(self.args.alphas)), \
                mock.patch.object(selection, "L2S", tuple(self.args.l2s)):
            with warnings.catch_warnings():  # a read-only memmap as a tensor: select_kd only reads (indexes) it
                warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
                psi = torch.from_numpy(train) if isinstance(train, np.memmap) else train
            sel = select_kd(psi, y, t, cfg, n_original=n, seed=seed, n_classes=10)
            del psi
        select_s = time.perf_counter() - t1
        t2 = time.perf_counter()
        st = LinearStudent(resolve_fit(cfg, sel)).fit(train, y, t, n_classes=10, gram_cache=GramCache())
        rec = {"dataset": name, "spec": spec, "seed": seed, **info, "teacher": self.args.teacher,
               "method": cfg.method, "grid": self.grid(), "selection": sel.as_dict(),
               "temperature": sel.temperature, "alpha": sel.alpha, "l2": sel.l2,
               "val_accuracy": sel.as_dict()["val_accuracy"],
               "test_accuracy": st.accuracy(test, y_test), "train_accuracy": st.accuracy(train, y),
               "select_seconds": round(select_s, 1), "refit_seconds": round(time.perf_counter() - t2, 1),
               "refit_iterations": st.info_.iterations, "threads": torch.get_num_threads()}
        del train, test
        self.log(f"{name} {spec} seed={seed}: val {100 * rec['val_accuracy']:.2f}%, test {100 * rec['test_accuracy']:.2f}% "
                 f"(T={sel.temperature:g} alpha={sel.alpha:g} l2={sel.l2:g}; select {select_s:.0f}s)")
        if is_device_lift(parse_spec(spec)[0]) and self.args.hw_draws > 0:
            rec["on_device"] = on_device(spec, name, seed, cfg, sel, self.args)
            d = rec["on_device"]
            self.log(f"{name} {spec} on {d['device']}: float {100 * d['float_accuracy']:.2f}%, hardware "
                     f"{100 * d['hw_accuracy_mean']:.2f} +- {100 * d['hw_accuracy_std']:.2f}% ({d['hw_draws']} draws, "
                     f"{d['seconds']:.0f}s)")
        self.states[name]["cells"][cell_key(name, spec, seed, self.args.teacher)] = rec
        self.save(name)


def on_device(spec: str, dataset: str, seed: int, cfg: FitConfig, sel, args) -> dict:
    """The chosen student of a device-native lift on its device: ``codesign distill`` with the
    chosen T, alpha and L2 (nothing chosen again), ``--lift-placement device``, post hoc, the lift's
    and K's hardware drawn ``args.hw_draws`` times on the test split, the device's default config."""
    name, rank, params = parse_spec(spec)
    device = name.split(".", 1)[0]
    fit = dataclasses.replace(resolve_fit(cfg, sel), seed=seed)
    dcfg = DistillConfig(dataset=dataset, data_root=args.data_root, teacher=args.teacher if args.teacher != "none" else "mlp",
                         pca_rank=rank, dictionary=name, dictionary_params=tuple(sorted(params.items())), fit=fit,
                         device=device, lift_placement="device", hw_draws=args.hw_draws, seed=seed,
                         max_memory=args.max_memory, cache_dir=args.cache_dir)
    t0 = time.perf_counter()
    m = run_distill(dcfg).metrics
    return {"device": device, "protocol": "posthoc", "hw_draws": args.hw_draws, "float_accuracy": m["test_accuracy"],
            "hw_accuracy_mean": m["hw_accuracy_mean"], "hw_accuracy_std": m["hw_accuracy_std"],
            "hw_accuracies": m["hw_accuracies"], "energy_pj": m["cost"].get("energy_pj") if isinstance(m["cost"], dict) else None,
            "seconds": round(time.perf_counter() - t0, 1)}


def monomial_rows(name):
    """The committed degree-2 monomial cells (labels, labels-l2, kd-auto, kd-auto-l2; no augmentation, seed 0)."""
    p = MONOMIAL_REF / f"results_{name}.json"
    if not p.is_file():
        return []
    cells = json.loads(p.read_text())["cells"]
    rows = []
    for c in cells.values():
        if c["method"] in ("labels", "labels-l2", "kd-auto", "kd-auto-l2") and not c["augment"] and c["seed"] == 0 and c["degree"] == 2:
            rows.append(c)
    return sorted(rows, key=lambda c: (c["rank"], c["method"]))


def on_device_cell(d: dict | None) -> str:
    """``float / hardware mean +- std (draws)`` of a device-native lift's student on its device."""
    if not d:
        return "-"
    return (f"{100 * d['float_accuracy']:.2f} / {100 * d['hw_accuracy_mean']:.2f} +- {100 * d['hw_accuracy_std']:.2f} "
            f"({d['hw_draws']} draws)")


def summarise(out: Path) -> str:
    states = {p.stem.removeprefix("results_"): json.loads(p.read_text()) for p in sorted(out.glob("results_*.json"))}
    lines = ["| data set | lift | r | F | sigma | teacher: chosen | validation | **test** | train | chosen (T, alpha, l2) | "
             "best labels point (validation) | on its device: float / hardware (test) | features + grid + refit (s) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    best = {}
    for name in [n for n in ("mnist", "fashion-mnist", "digits") if n in states]:
        cells = sorted(states[name]["cells"].values(), key=lambda c: (c["dictionary"].split("(")[0], c["rank"], c["n_features"]))
        for c in cells:
            sel = c["selection"]
            lab = max((p["val_accuracy"] for p in sel["grid"] if p["alpha"] == 0), default=float("nan"))
            sigma = f"{c['sigma']:.2f}" if c.get("sigma") is not None else "-"
            lines.append(
                f"| {name} | {c['dictionary']} | {c['rank']} | {c['n_features']} | {sigma} | "
                f"{c.get('teacher', 'cnn')}: {'L2' if c.get('method') == 'labels' else 'T, alpha, L2'} | {100 * c['val_accuracy']:.2f} | "
                f"**{100 * c['test_accuracy']:.2f}** | {100 * c['train_accuracy']:.2f} | "
                + (f"(-, 0, {c['l2']:g})" if c["alpha"] == 0 else f"({c['temperature']:g}, {c['alpha']:g}, {c['l2']:g})")
                + f" | {100 * lab:.2f} | {on_device_cell(c.get('on_device'))} | "
                f"{c['features_seconds']:.0f} + {c['select_seconds']:.0f} + {c['refit_seconds']:.0f} |")
            if name not in best or c["val_accuracy"] > best[name]["val_accuracy"]:
                best[name] = c
        for c in monomial_rows(name):
            what = {"labels": "none: nothing (L2 1e-4)", "labels-l2": "none: L2"}.get(
                c["method"], "cnn: T, alpha" + (", L2" if c["method"] == "kd-auto-l2" else ""))
            sel = c.get("selection") or {}
            val = f"{100 * sel['val_accuracy']:.2f}" if sel else "-"
            grid = f"validated_kd, {len(sel['grid'])}-point grid" if sel else "validated_kd"
            chosen = (f"({c['temperature']:g}, {c['alpha']:g}, {c['l2']:g})" if sel and c.get("l2") is not None
                      else f"({c['temperature']:g}, {c['alpha']:g}, default)" if sel else "-")
            lines.append(f"| {name} | monomial(degree=2), committed `{c['method']}` | {c['rank']} | {c['n_features']} | - | {what} | "
                         f"{val} | {100 * c['test_accuracy']:.2f} | {100 * c['train_accuracy']:.2f} | {chosen} | - | - | "
                         f"({grid}) |")
    text = ["\n".join(lines), "",
            "Best lift per data set by validation accuracy (test read once, after the choice):", ""]
    for name, c in best.items():
        goal = (f"; the diffractive network's {DIFFRACTIVE_FASHION:.2f} % is "
                f"{'beaten' if 100 * c['test_accuracy'] > DIFFRACTIVE_FASHION else 'not reached'}"
                if name == "fashion-mnist" else "")
        text.append(f"- {name}: {c['dictionary']} at r={c['rank']} (F={c['n_features']}): validation "
                    f"{100 * c['val_accuracy']:.2f} %, test {100 * c['test_accuracy']:.2f} %{goal}")
    cmds = sorted({cmd for st in states.values() for cmd in st.get("commands", [])})
    text += ["", "Commands:", "", *[f"    {c}" for c in cmds]]
    return "\n".join(text) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(HERE))
    p.add_argument("--datasets", nargs="+", default=["fashion-mnist", "mnist"])
    p.add_argument("--lifts", nargs="+", default=[f"rff:rank=50,features={n}" for n in (1000, 2000, 4000, 8000)],
                   help="lift specs NAME:rank=R,key=value,... run in this order (cheap first)")
    p.add_argument("--seeds", type=int, default=1, help="seeds: the lift's draws and the validation split")
    p.add_argument("--temperatures", nargs="+", type=float, default=[2.0, 4.0])
    p.add_argument("--alphas", nargs="+", type=float, default=[0.0, 0.25, 0.5])
    p.add_argument("--l2s", nargs="+", type=float, default=[1e-3, 1e-2, 1e-1])
    p.add_argument("--max-memory", default=None, help="feature budget, e.g. 8G (codesign --max-memory)")
    p.add_argument("--disk-above", type=int, default=3000, help="memory-map training features wider than this")
    p.add_argument("--data-root", default=None)
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--teacher", default="cnn",
                   help="built-in teacher (seed 0); none: labels only, the L2 penalty chosen on the split")
    p.add_argument("--hw-draws", type=int, default=3,
                   help="hardware draws of a device-native lift's chosen student on its device (0: skip)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--only-md", action="store_true")
    args = p.parse_args(argv)
    args.max_memory = parse_memory(args.max_memory)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if not args.only_md:
        table = Table(args)
        for name in args.datasets:
            table.states[name].setdefault("commands", [])
            cmd = "python " + " ".join(sys.argv)
            if cmd not in table.states[name]["commands"]:
                table.states[name]["commands"].append(cmd)
        table.run()
        for name in args.datasets:
            table.save(name)
    atomic_write_text(out / "validated_lifts.md", summarise(out))


if __name__ == "__main__":
    main()
