"""Validated distillation table: labels vs kd (T=2, alpha=0.9) vs kd with T and alpha chosen on a
validation split, each with and without teacher-labelled augmentation (issue 17, part 5).

Each cell (data set, degree, rank, augmentation, method, seed) is saved to
``results_<dataset>.json`` as soon as it finishes (atomic write), so the script can be stopped
and resumed, and two processes may run two data sets side by side; ``--only-md`` rewrites
``validated_kd.md`` from what is saved. What a seed varies: the teacher (``cnn``, seed 0)
and the augmented copies (seed 0) are fixed, so that their logits and features are computed once
per (data set, degree, rank, augmentation) and shared; the seed draws the validation split of
``kd-auto``. ``labels`` and ``kd`` are then deterministic (no seed enters their fits) and are run
once (seed 0), which the table says.

    export CODESIGN_DATA=/work/shared/data CODESIGN_CACHE=.cache
    python experiments/validated_kd/validated_kd.py --out experiments/validated_kd
    python experiments/validated_kd/validated_kd.py --out experiments/validated_kd --only-md
    python experiments/validated_kd/validated_kd.py --out experiments/validated_kd --paired --settings 3:20

``--methods labels-l2 kd-auto-l2`` adds cells whose L2 penalty is chosen on the same split too
(``l2="auto"``: ``labels`` at each penalty of ``codesign.selection.L2S``, and ``kd`` with T, alpha
and the penalty chosen together, a 52-point grid); they are tabled separately, and the best
student is chosen by validation accuracy over the ``kd-auto`` and ``kd-auto-l2`` cells:

    python experiments/validated_kd/validated_kd.py --out experiments/validated_kd --datasets fashion-mnist \
        --settings 2:80 2:100 2:120 --augment off --methods labels kd kd-auto labels-l2 kd-auto-l2 --threads 2

``--paired`` compares each finished ``kd-auto`` cell with ``labels`` image by image on the test
set (McNemar): it refits both (deterministic: the refit must reproduce the cell's test accuracy,
or the script stops) and records how many test images only one of them classifies correctly.
Two students scored on the same 10,000 images differ far less than their accuracies' own
binomial noise, so this paired standard error, ``sqrt(b + c) / n``, is what says whether a
difference between ``kd validated`` and ``labels`` is more than a few images of noise; the std
over seeds says only how much the validation split moves the choice.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from codesign.augment import augment_rows, check_augment
from codesign.cache import atomic_save_npz, atomic_write_json, atomic_write_text, cache_root, stable_hash
from codesign.data import load_dataset
from codesign.dictionaries import create_dictionary
from codesign.features import FeaturePipeline
from codesign.selection import point_config, resolve_fit, select_kd
from codesign.students import FitConfig, GramCache, LinearStudent
from codesign.teachers import get_teacher, predict_logits

METHODS = ("labels", "kd", "kd-auto")
#: with ``l2="auto"`` as well (``--methods labels-l2 kd-auto-l2``): the L2 penalty chosen on the same split
L2_METHODS = ("labels-l2", "kd-auto-l2")
#: the cells whose fit is chosen on a validation split (one per seed)
AUTO_METHODS = ("kd-auto", *L2_METHODS)

AUGMENT = {"mnist": ("affine",), "fashion-mnist": ("flip", "shift"), "digits": ("affine",)}
#: reproduction table's MLP-teacher kd and labels (experiments/reproduction/reproduction.md), for comparison
MLP_REF = {
    ("mnist", 2, 20): (97.08, 97.12), ("mnist", 2, 40): (97.92, 98.23), ("mnist", 3, 20): (97.78, 97.82),
    ("fashion-mnist", 2, 20): (85.59, 84.91), ("fashion-mnist", 2, 40): (87.28, 86.92),
    ("fashion-mnist", 3, 20): (86.91, 86.76),
}


def auto_config(method: str, seed: int) -> FitConfig:
    """The config of an ``AUTO_METHODS`` cell: what it leaves to the validation split."""
    if method == "labels-l2":
        return FitConfig(method="labels", l2="auto", seed=seed)
    return FitConfig(method="kd", temperature="auto", alpha="auto", l2="auto" if method == "kd-auto-l2" else None,
                     seed=seed)


def cell_key(ds, d, r, aug, method, seed):
    return f"{ds}|d{d}|r{r}|{'aug' if aug else 'none'}|{method}|s{seed}"


class Table:
    def __init__(self, args):
        self.args = args
        self.out = Path(args.out)
        self.states = {}
        for name in args.datasets:
            path = self.out / f"results_{name}.json"
            self.states[name] = json.loads(path.read_text()) if path.is_file() else {"cells": {}}
        self.teachers, self.aug_cache = {}, {}

    def save(self, name):
        state = self.states[name]
        state["copies"] = self.args.copies
        state["augment"] = list(AUGMENT[name])
        atomic_write_json(self.out / f"results_{name}.json", state)

    def log(self, msg):
        print(time.strftime("%H:%M:%S"), msg, flush=True)

    def teacher(self, ds):
        if ds.name not in self.teachers:
            t = get_teacher(self.args.teacher, ds, seed=0, epochs=self.args.teacher_epochs, cache_dir=self.args.cache_dir,
                            verbose=True)
            self.teachers[ds.name] = t
            self.states[ds.name]["teacher"] = {
                "arch": self.args.teacher, "test_accuracy": t.test_accuracy(ds), "train_seconds": t.info.get("train_seconds"),
                "epochs": t.info.get("epochs"), "augment": t.info.get("augment"), "key": t.info.get("key")}
        return self.teachers[ds.name]

    def augmented_inputs(self, ds, teacher):
        """(images [copies*N, D], labels, teacher logits) of the augmented copies (seed 0), disk-cached."""
        if ds.name in self.aug_cache:
            return self.aug_cache[ds.name]
        names = AUGMENT[ds.name]
        key = stable_hash({"ds": ds.name, "names": names, "copies": self.args.copies, "teacher": teacher.info.get("key")})
        path = cache_root(self.args.cache_dir) / "validated_kd" / f"{ds.name}-aug-{key}.npz"
        if path.is_file():
            with np.load(path, allow_pickle=False) as f:
                out = (f["x"], f["y"], f["t"])
        else:
            check_augment(names, ds.name)
            xs, ys, ts = [], [], []
            for c in range(self.args.copies):
                x, y = augment_rows(ds.x_train, ds.y_train, ds.image_shape, names, seed=0, copy=c)
                xs.append(x), ys.append(y), ts.append(predict_logits(teacher.model, x))
            out = (np.concatenate(xs), np.concatenate(ys), np.concatenate(ts))
            atomic_save_npz(path, x=out[0], y=out[1], t=out[2])
        self.aug_cache = {ds.name: out}
        acc = float((out[2].argmax(1) == out[1]).mean())
        self.states[ds.name]["augmented_teacher_agreement"] = acc
        return out

    def features(self, ds, teacher, d, r, aug):
        pipe = FeaturePipeline(r, create_dictionary("monomial", degree=d), self.args.max_memory, 0)
        n, n_test = len(ds.y_train), len(ds.y_test)
        rows = n * (1 + (self.args.copies if aug else 0))
        pipe.check_memory(rows + n_test)
        pipe.fit(ds.x_train)  # PCA and standardisation on the original images only
        test = pipe.transform(ds.x_test)
        if not aug:
            return pipe.transform(ds.x_train), ds.y_train, teacher.train_logits, test
        xa, ya, ta = self.augmented_inputs(ds, teacher)
        psi = torch.empty(rows, pipe.n_features)
        for i in range(0, n, 8192):
            psi[i:min(i + 8192, n)] = pipe.transform(ds.x_train[i:i + 8192])
        for i in range(0, len(xa), 8192):
            psi[n + i:n + min(i + 8192, len(xa))] = pipe.transform(xa[i:i + 8192])
        return psi, np.concatenate([ds.y_train, ya]), np.concatenate([teacher.train_logits, ta]), test

    def run(self):
        settings = [tuple(int(v) for v in s.split(":")) for s in self.args.settings]
        for seed in range(self.args.seeds):
            for d, r in settings:
                for name in self.args.datasets:
                    for aug in (False, True) if self.args.augment == "both" else (self.args.augment == "on",):
                        todo = [m for m in self.args.methods if (m in AUTO_METHODS or seed == 0)
                                and cell_key(name, d, r, aug, m, seed) not in self.states[name]["cells"]]
                        if todo:
                            self.setting(name, d, r, aug, seed, todo)

    def run_paired(self):
        for d, r in [tuple(int(v) for v in s.split(":")) for s in self.args.settings]:
            for name in self.args.datasets:
                for aug in (False, True) if self.args.augment == "both" else (self.args.augment == "on",):
                    cells = self.states[name]["cells"]
                    todo = [k for k, c in cells.items() if k.startswith(f"{name}|d{d}|r{r}|{'aug' if aug else 'none'}|kd-auto|")
                            and "paired_test" not in c]
                    if todo and cell_key(name, d, r, aug, "labels", 0) in cells:
                        self.paired(name, d, r, aug, todo)

    def paired(self, name, d, r, aug, keys):
        """Refit labels and each kd-auto cell's chosen point; count the test images only one gets right."""
        ds = load_dataset(name, self.args.data_root)
        teacher = self.teacher(ds)
        psi, y, t, test = self.features(ds, teacher, d, r, aug)
        y, t = torch.from_numpy(np.asarray(y)), torch.from_numpy(np.asarray(t))
        y_test = torch.from_numpy(ds.y_test)
        gram = GramCache()
        cells = self.states[name]["cells"]

        def right(cfg, cell):
            st = LinearStudent(cfg).fit(psi, y, t, n_classes=10, gram_cache=gram)
            hit = st.logits(test).argmax(1) == y_test
            if abs(float(hit.double().mean()) - cell["test_accuracy"]) > 1e-9:
                raise SystemExit(f"{name} d={d} r={r} aug={aug}: the refit scores {float(hit.double().mean()):.4f}, "
                                 f"the cell {cell['test_accuracy']:.4f}; the code or the teacher changed since the table was made")
            return hit

        lab = right(FitConfig(method="labels"), cells[cell_key(name, d, r, aug, "labels", 0)])
        for key in keys:
            cell = cells[key]
            cfg = point_config(FitConfig(method="kd", seed=cell["seed"]), cell["temperature"], cell["alpha"])
            hit = lab if cell["alpha"] == 0 else right(cfg, cell)
            b, c = int((hit & ~lab).sum()), int((lab & ~hit).sum())
            cell["paired_test"] = {"only_auto": b, "only_labels": c, "n": int(len(y_test))}
            self.save(name)
            self.log(f"{name} d={d} r={r} aug={aug} seed={cell['seed']}: only kd-auto right {b}, only labels right {c}, "
                     f"difference {100 * (b - c) / len(y_test):+.2f} +- {100 * np.sqrt(b + c) / len(y_test):.2f} (paired SE)")

    def setting(self, name, d, r, aug, seed, todo):
        ds = load_dataset(name, self.args.data_root)
        teacher = self.teacher(ds)
        t0 = time.perf_counter()
        psi, y, t, test = self.features(ds, teacher, d, r, aug)
        feat_s = time.perf_counter() - t0
        n = len(ds.y_train)
        y, t = torch.from_numpy(np.asarray(y)), torch.from_numpy(np.asarray(t))
        y_test = torch.from_numpy(ds.y_test)
        gram = GramCache()
        for method in todo:
            t1 = time.perf_counter()
            rec = {"dataset": name, "degree": d, "rank": r, "augment": list(AUGMENT[name]) if aug else [],
                   "copies": self.args.copies if aug else 0, "method": method, "seed": seed,
                   "n_features": psi.shape[1], "train_rows": psi.shape[0], "features_seconds": round(feat_s, 1)}
            same = None
            if method in AUTO_METHODS:
                cfg = auto_config(method, seed)
                sel = select_kd(psi, y, t, cfg, n_original=n, seed=seed, n_classes=10)
                rec["selection"] = sel.as_dict()
                rec["temperature"], rec["alpha"], rec["l2"] = sel.temperature, sel.alpha, sel.l2
                # the refit with the chosen numbers is exactly the labels or kd cell when it chose those
                twin = None if method != "kd-auto" else (
                    "labels" if sel.alpha == 0 else "kd" if (sel.temperature, sel.alpha) == (2.0, 0.9) else None)
                same = self.states[name]["cells"].get(cell_key(name, d, r, aug, twin, 0)) if twin else None
                if same is None:
                    st = LinearStudent(resolve_fit(cfg, sel)).fit(psi, y, t, n_classes=10, gram_cache=gram)
                else:
                    rec["refit_is"] = twin
            else:
                cfg = FitConfig(method=method, seed=seed)
                st = LinearStudent(cfg).fit(psi, y, t, n_classes=10, gram_cache=gram)
            if same is not None:
                rec["test_accuracy"], rec["train_accuracy"] = same["test_accuracy"], same["train_accuracy"]
            else:
                rec["test_accuracy"] = st.accuracy(test, y_test)
                rec["train_accuracy"] = st.accuracy(psi[:n], y[:n])
            rec["seconds"] = round(time.perf_counter() - t1, 1)
            self.states[name]["cells"][cell_key(name, d, r, aug, method, seed)] = rec
            self.save(name)
            self.log(f"{name} d={d} r={r} aug={aug} {method} seed={seed}: test {100 * rec['test_accuracy']:.2f}% "
                     f"({rec['seconds']}s" + (f", T={rec['temperature']} alpha={rec['alpha']} l2={rec['l2']:g})"
                                              if method in AUTO_METHODS else ")"))
        del psi


def summarise(out: Path, args) -> str:
    states = {p.stem.removeprefix("results_"): json.loads(p.read_text()) for p in sorted(out.glob("results_*.json"))}
    cells = {k: c for st in states.values() for k, c in st["cells"].items()}
    settings = [tuple(int(v) for v in s.split(":")) for s in args.settings]
    # settings run by an earlier command with other --settings are listed too, after these
    ran = sorted({(c["degree"], c["rank"]) for c in cells.values()})
    extra = [dr for dr in ran if dr not in settings]
    settings += extra

    def stats(name, d, r, aug, method):
        accs = [100 * c["test_accuracy"] for k, c in cells.items()
                if k.startswith(f"{name}|d{d}|r{r}|{'aug' if aug else 'none'}|{method}|")]
        return accs

    def fmt(accs, method):
        if not accs:
            return "not run", None
        m = float(np.mean(accs))
        if method not in AUTO_METHODS:
            return f"{m:.2f} (det.)", (m, 0.0, 1)
        s = float(np.std(accs, ddof=1)) if len(accs) > 1 else float("nan")
        return (f"{m:.2f} +- {s:.2f} (n={len(accs)})" if len(accs) > 1 else f"{m:.2f} (n=1)"), (m, s, len(accs))

    lines = []
    teachers = {k: st.get("teacher", {}) for k, st in states.items()}
    lines.append("| data set | teacher (acc) | d | r | F | augment | labels | kd T=2 a=0.9 | kd validated | "
                 "chosen (T, alpha) per seed | auto - labels (paired test SE) |")
    lines.append("|---|---|---|---|---|---|---|---|---|---|---|")
    verdicts = []
    for name in [n for n in ("mnist", "fashion-mnist", "digits") if n in states]:
        tacc = teachers.get(name, {}).get("test_accuracy")
        arch = teachers.get(name, {}).get("arch", "cnn")
        tname = f"{arch} ({100 * tacc:.2f})" if tacc else arch
        for d, r in settings:
            for aug in (False, True):
                row = {m: fmt(stats(name, d, r, aug, m), m) for m in METHODS}
                if all(v[1] is None for v in row.values()):
                    continue  # a setting this data set / augmentation never ran (e.g. no copies at r=100)
                F = next((c["n_features"] for k, c in cells.items() if k.startswith(f"{name}|d{d}|r{r}|")), "")
                chosen = [(c["temperature"], c["alpha"]) for k, c in sorted(cells.items())
                          if k.startswith(f"{name}|d{d}|r{r}|{'aug' if aug else 'none'}|kd-auto|")]
                diff = ""
                paired = [c["paired_test"] for k, c in cells.items()
                          if k.startswith(f"{name}|d{d}|r{r}|{'aug' if aug else 'none'}|kd-auto|") and "paired_test" in c]
                if row["kd-auto"][1] and row["labels"][1]:
                    (ma, sa, na), (ml, _, _) = row["kd-auto"][1], row["labels"][1]
                    diff = f"{ma - ml:+.2f}"
                    tol = sa if na > 1 and np.isfinite(sa) else 0.0
                    se = None
                    if paired and len(paired) == na:  # mean over seeds of the per-seed paired SE (McNemar)
                        se = float(np.mean([100 * np.sqrt(q["only_auto"] + q["only_labels"]) / q["n"] for q in paired]))
                        diff += f" ({se:.2f})"
                    verdicts.append((name, d, r, aug, ma - ml, tol, se))
                augtxt = f"{','.join(AUGMENT[name])} x{states.get(name, {}).get('copies', args.copies)}" if aug else "none"
                lines.append(f"| {name} | {tname} | {d} | {r} | {F} | {augtxt} | {row['labels'][0]} | {row['kd'][0]} | "
                             f"**{row['kd-auto'][0]}** | {', '.join(f'({T:g}, {a:g})' for T, a in chosen) or '-'} | {diff} |")
    # best ideal student chosen on the validation split (grid scores of kd-auto, never the test set)
    best = {}
    for k, c in cells.items():
        if c["method"] not in ("kd-auto", "kd-auto-l2"):
            continue
        v = c["selection"]["val_accuracy"]
        if c["dataset"] not in best or v > best[c["dataset"]][0]:
            best[c["dataset"]] = (v, c)
    out = ["\n".join(lines), ""]
    out.append("Best student per data set, chosen by validation accuracy over every finished kd-auto and kd-auto-l2 "
               "cell (its grid holds labels, kd T=2 alpha=0.9 and the rest; the test accuracy is read once, after the "
               "choice):")
    out.append("")
    for name, (v, c) in sorted(best.items()):
        aug = ",".join(c["augment"]) or "none"
        l2 = f" l2={c['l2']:g}" if c["method"] == "kd-auto-l2" else ""
        out.append(f"- {name}: {c['method']} d={c['degree']} r={c['rank']} augment={aug}, T={c['temperature']:g} "
                   f"alpha={c['alpha']:g}{l2}: validation {100 * v:.2f}%, test {100 * c['test_accuracy']:.2f}%")
    out.append("")
    worse = [v for v in verdicts if v[4] < -max(v[5], 1e-9)]
    out.append(f"kd validated minus labels: {sum(1 for v in verdicts if v[4] >= 0)} of {len(verdicts)} finished settings "
               f">= 0; below labels by more than one std (kd-auto's std over seeds; 0 with one seed) in: "
               + (", ".join(f"{n} d={d} r={r} aug={a} ({x:+.2f})" for n, d, r, a, x, *_ in worse) or "none") + ".")
    if any(v[6] is not None for v in verdicts):
        checked = [v for v in verdicts if v[6] is not None]
        below = [v for v in checked if v[4] < -v[6]]
        out.append("")
        out.append(f"Paired on the test set (`--paired`: the images only one of the two gets right; in brackets the "
                   f"paired standard error, mean over seeds): checked in {len(checked)} settings; below labels by "
                   f"more than one paired SE in: "
                   + (", ".join(f"{n} d={d} r={r} aug={a} ({x:+.2f} +- {se:.2f})" for n, d, r, a, x, _, se in below)
                      or "none") + ".")
    l2_rows = l2_table(cells, settings, fmt, stats)
    if l2_rows:
        out += ["", "### With the L2 penalty chosen too (`l2=auto`, from 0 or 1e-4, 1e-3, 1e-2, 1e-1)", "",
                "Same teacher, features and validation splits as above; `labels` and `kd validated` repeated from the "
                "table above:", "", *l2_rows]
    return "\n".join(out)


def l2_table(cells, settings, fmt, stats) -> list[str]:
    """Rows of the settings where an ``l2=auto`` method ran: labels and kd validated without and with it."""
    rows = ["| data set | d | r | F | augment | labels (l2 1e-4) | labels, l2 validated | kd validated | "
            "kd validated with l2 | chosen (T, alpha, l2) per seed |", "|---|---|---|---|---|---|---|---|---|---|"]
    for name in ("mnist", "fashion-mnist", "digits"):
        for d, r in settings:
            for aug in (False, True):
                prefix = f"{name}|d{d}|r{r}|{'aug' if aug else 'none'}|"
                if not any(k.startswith(prefix + m + "|") for k in cells for m in L2_METHODS):
                    continue
                row = {m: fmt(stats(name, d, r, aug, m), m)[0] for m in ("labels", "labels-l2", "kd-auto", "kd-auto-l2")}
                F = next(c["n_features"] for k, c in cells.items() if k.startswith(prefix))
                chosen = [(c["temperature"], c["alpha"], c["l2"]) for k, c in sorted(cells.items())
                          if k.startswith(prefix + "kd-auto-l2|")]
                rows.append(f"| {name} | {d} | {r} | {F} | {'copies' if aug else 'none'} | {row['labels']} | "
                            f"{row['labels-l2']} | {row['kd-auto']} | **{row['kd-auto-l2']}** | "
                            + (", ".join(f"({T:g}, {a:g}, {l2:g})" for T, a, l2 in chosen) or "-") + " |")
    return rows if len(rows) > 2 else []


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="experiments/validated_kd")
    p.add_argument("--datasets", nargs="+", default=["mnist", "fashion-mnist"])
    p.add_argument("--settings", nargs="+", default=["2:20", "2:40", "3:20", "2:60", "2:80"],
                   help="DEGREE:RANK, run in this order (cheap first)")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS + L2_METHODS,
                   help="cells to run (default: the three of the main table; labels-l2 and kd-auto-l2 add l2=auto)")
    p.add_argument("--augment", choices=("both", "on", "off"), default="both")
    p.add_argument("--copies", type=int, default=2)
    p.add_argument("--max-memory", default=None, help="feature budget, e.g. 6G")
    p.add_argument("--data-root", default=None)
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--teacher", default="cnn", help="built-in teacher (seed 0), e.g. cnn or mlp")
    p.add_argument("--teacher-epochs", type=int, default=None, help="cnn epochs (default: its recipe; for smoke tests)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: no spin-waiting on a shared machine)")
    p.add_argument("--only-md", action="store_true", help="rewrite validated_kd.md from results.json")
    p.add_argument("--paired", action="store_true",
                   help="compare finished kd-auto cells with labels image by image on the test set (McNemar)")
    args = p.parse_args(argv)
    from codesign.features import parse_memory
    args.max_memory = parse_memory(args.max_memory)
    torch.set_num_threads(args.threads)
    table = Table(args)
    t0 = time.perf_counter()
    if args.paired:
        table.run_paired()
    elif not args.only_md:
        table.run()
    for name in [] if args.only_md else args.datasets:  # --only-md never writes results (a run may be going)
        if table.states[name]["cells"]:
            table.states[name].setdefault("commands", [])
            cmd = "python " + " ".join(sys.argv)
            if cmd not in table.states[name]["commands"]:
                table.states[name]["commands"].append(cmd)
            table.save(name)
    md = summarise(table.out, args)
    atomic_write_text(table.out / "validated_kd.md", md + "\n")
    print(md)
    print(f"{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
