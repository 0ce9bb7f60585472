"""Is validating kd on images the teacher was trained on optimistic? Selection with a held-out teacher.

``kd-auto`` (codesign.selection) scores its (T, alpha) grid on 20 % of the training images, and
the teacher was trained on all of them. A student that imitates the teacher inherits the
teacher's answers, and on its own training images the teacher is right more often than on
new ones, so kd may look better on those validation rows than it is on the test set.

This script repeats the selection with a teacher that never saw the validation rows: for each
split seed it trains the same built-in teacher (``cnn``, seed 0) on the fit rows only (cached
like any teacher), labels the fit rows and their augmented copies with it, fits the grid and
scores it on the validation rows. The chosen (T, alpha) is then refitted on all training rows
with the full teacher, exactly as ``kd-auto`` does, and scored on the test set once. Both
choices, the validation gains and the test accuracies are written to
``heldout_teacher_<dataset>.json`` and printed.

    export CODESIGN_DATA=../shared/data CODESIGN_CACHE=.cache
    python experiments/validated_kd/heldout_teacher.py --dataset fashion-mnist --degree 3 --rank 20
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch

from codesign.cache import atomic_write_json, cache_root, stable_hash
from codesign.data import load_dataset
from codesign.dictionaries import create_dictionary
from codesign.features import FeaturePipeline
from codesign.selection import SELECT_SHARE, SPLIT_SEED_OFFSET, point_config, select_kd, selection_split
from codesign.students import FitConfig, LinearStudent
from codesign.teachers import get_teacher, predict_logits

HERE = Path(__file__).resolve().parent
AUGMENT = {"mnist": ("affine",), "fashion-mnist": ("flip", "shift")}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--degree", type=int, default=2)
    p.add_argument("--rank", type=int, default=20)
    p.add_argument("--augment", action="store_true", help="use validated_kd.py's 2 augmented copies (its cache)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--teacher", default="cnn")
    p.add_argument("--out", default=str(HERE))
    args = p.parse_args(argv)
    torch.manual_seed(0)
    ds = load_dataset(args.dataset)
    full = get_teacher(args.teacher, ds, seed=0)
    n = len(ds.y_train)
    pipe = FeaturePipeline(args.rank, create_dictionary("monomial", degree=args.degree), None, 0)
    pipe.fit(ds.x_train)
    psi_orig = pipe.transform(ds.x_train)
    psi_test = pipe.transform(ds.x_test)
    y_test = torch.from_numpy(ds.y_test)
    xa = None
    if args.augment:  # the copies validated_kd.py made and cached (2 per image, seed 0), copy-major
        key = stable_hash({"ds": ds.name, "names": AUGMENT[ds.name], "copies": 2, "teacher": full.info.get("key")})
        with np.load(cache_root(None) / "validated_kd" / f"{ds.name}-aug-{key}.npz") as f:
            xa, ya, ta = f["x"], f["y"], f["t"]
        psi_aug = torch.cat([pipe.transform(xa[i:i + 8192]) for i in range(0, len(xa), 8192)])
    copies = 0 if xa is None else len(xa) // n
    psi_all = psi_orig if xa is None else torch.cat([psi_orig, psi_aug])
    y_all = torch.from_numpy(ds.y_train if xa is None else np.concatenate([ds.y_train, ya]))
    t_full = torch.from_numpy(full.train_logits if xa is None else np.concatenate([full.train_logits, ta]))
    cfg = FitConfig(method="kd", temperature="auto", alpha="auto")
    rows = []
    for seed in args.seeds:
        fit_orig, val_orig = selection_split(n, SELECT_SHARE, seed)
        sub = dataclasses.replace(ds, x_train=ds.x_train[fit_orig], y_train=ds.y_train[fit_orig])
        t0 = time.perf_counter()
        held = get_teacher(args.teacher, sub, seed=0, verbose=True)  # never sees the validation rows
        teach_s = time.perf_counter() - t0
        fit_idx = np.concatenate([fit_orig + c * n for c in range(1 + copies)])
        t_fit = torch.from_numpy(predict_logits(held.model, ds.x_train[fit_orig]))
        if copies:
            copies_fit = xa[np.concatenate([fit_orig + c * n for c in range(copies)])]
            t_fit = torch.cat([t_fit, torch.from_numpy(predict_logits(held.model, copies_fit))])
        # select_kd fits the grid on the fit rows' teacher logits only and scores it on the labels
        # of the validation rows, so the held-out selection is select_kd with the fit rows' logits
        # (originals and their copies) replaced by the held-out teacher's
        t_held = t_full.clone()
        t_held[torch.from_numpy(fit_idx)] = t_fit
        out = {}
        for name, t in (("full teacher (kd-auto)", t_full), ("held-out teacher", t_held)):
            sel = select_kd(psi_all, y_all, t, cfg, n_original=n, seed=seed, n_classes=ds.n_classes)
            assert np.array_equal(sel.val_rows, val_orig)
            T, a = sel.temperature, sel.alpha
            final = LinearStudent(point_config(cfg, T, a)).fit(psi_all, y_all, t_full, n_classes=ds.n_classes)
            d = sel.as_dict()
            out[name] = {"temperature": T, "alpha": a, "val_gain_over_labels": d["val_accuracy"] - sel.grid[0]["val_accuracy"],
                         "best_minus_labels": d.get("best_minus_labels"), "paired_standard_error": d.get("paired_standard_error"),
                         "test_accuracy": final.accuracy(psi_test, y_test)}
        labels_test = LinearStudent(point_config(cfg, 1.0, 0.0)).fit(psi_all, y_all, t_full, n_classes=ds.n_classes).accuracy(psi_test, y_test)
        row = {"seed": seed, "held_out_teacher_test_accuracy": held.test_accuracy(ds),
               "held_out_teacher_on_validation_rows": float((predict_logits(held.model, ds.x_train[val_orig]).argmax(1)
                                                            == ds.y_train[val_orig]).mean()),
               "full_teacher_on_validation_rows": float((full.train_logits[val_orig].argmax(1) == ds.y_train[val_orig]).mean()),
               "teacher_seconds": round(teach_s, 1), "labels_test_accuracy": labels_test, **out}
        rows.append(row)
        print(json.dumps(row), flush=True)
    res = {"dataset": ds.name, "degree": args.degree, "rank": args.rank, "augment": list(AUGMENT[ds.name]) if copies else [],
           "copies": copies, "teacher": args.teacher, "full_teacher_test_accuracy": full.test_accuracy(ds),
           "split_seed_offset": SPLIT_SEED_OFFSET, "rows": rows}
    tag = f"{ds.name}-d{args.degree}-r{args.rank}-{'aug' if copies else 'none'}"
    atomic_write_json(Path(args.out) / f"heldout_teacher_{tag}.json", res)


if __name__ == "__main__":
    main()
