"""T and alpha chosen on a validation split of the training set (codesign.selection)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from codesign.distill import DistillConfig, Workspace, run_distill
from codesign.errors import ConfigError
from codesign.features import build_features
from codesign.selection import (ALPHAS, L2S, TEMPERATURES, grid_points, point_config, resolve_fit, select_kd,
                                selection_split)
from codesign.students import FitConfig, LinearStudent

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def digit_features(digits):
    return build_features(digits.x_train, digits.x_test, 10, "monomial", {"degree": 2})


def test_grid_holds_labels_and_every_pair():
    pts = grid_points(FitConfig(temperature="auto", alpha="auto"))
    assert pts[0] == (TEMPERATURES[0], 0.0)  # alpha=0 (labels) once, T irrelevant
    assert len(pts) == 1 + len(TEMPERATURES) * (len(ALPHAS) - 1)
    assert (2.0, 0.9) in pts  # the paper's fixed point is in the grid
    assert grid_points(FitConfig(temperature=3.0, alpha="auto")) == [(3.0, 0.0)] + [(3.0, a) for a in ALPHAS[1:]]
    assert grid_points(FitConfig(temperature="auto", alpha=0.5)) == [(t, 0.5) for t in TEMPERATURES]


def test_split_is_a_seeded_partition():
    fit, val = selection_split(1000, 0.2, seed=3)
    assert len(val) == 200 and len(fit) == 800
    assert np.array_equal(np.sort(np.concatenate([fit, val])), np.arange(1000))
    fit2, val2 = selection_split(1000, 0.2, seed=3)
    assert np.array_equal(val, val2)
    assert not np.array_equal(val, selection_split(1000, 0.2, seed=4)[1])


def test_useless_teacher_gives_alpha_zero(digits, digit_features):
    """A teacher of random, confident logits: every alpha > 0 imitates noise, so labels win."""
    psi = digit_features.train
    y = torch.from_numpy(digits.y_train)
    rand = torch.from_numpy(np.random.default_rng(0).normal(0, 40, (len(y), 10)).astype(np.float32))
    sel = select_kd(psi, y, rand, FitConfig(temperature="auto", alpha="auto"), n_classes=10)
    assert sel.alpha == 0.0 and sel.method == "labels"
    labels_point = sel.grid[0]
    assert labels_point["alpha"] == 0.0
    # any kd point that scores above labels does so by no more than one paired standard error (noise)
    d = sel.as_dict()
    if "best_minus_labels" in d:
        assert d["best_minus_labels"] <= d["paired_standard_error"]
        assert max(p["val_accuracy"] for p in sel.grid) - labels_point["val_accuracy"] == pytest.approx(
            d["best_minus_labels"])
    assert min(p["val_accuracy"] for p in sel.grid) < labels_point["val_accuracy"] - 0.2  # imitating noise hurts
    # the alpha=0 point is the labels student itself (same fit on the same rows)
    fit_rows = torch.from_numpy(sel.fit_rows)
    ref = LinearStudent(FitConfig(method="labels")).fit(psi[fit_rows], y[fit_rows], n_classes=10)
    assert ref.accuracy(psi[torch.from_numpy(sel.val_rows)], y[torch.from_numpy(sel.val_rows)]) == pytest.approx(
        labels_point["val_accuracy"])


def test_good_teacher_gets_a_kd_alpha(digits, digits_teacher):
    cfg = DistillConfig(dataset="digits", pca_rank=10, fit=FitConfig(temperature="auto", alpha="auto"))
    m = run_distill(cfg).metrics
    sel = m["kd_selection"]
    assert sel["alpha"] > 0 and m["alpha"] == sel["alpha"] and m["temperature"] == sel["temperature"]
    assert len(sel["grid"]) == 1 + len(TEMPERATURES) * (len(ALPHAS) - 1)
    labels_val = sel["grid"][0]["val_accuracy"]
    # the teacher adds more than a paired standard error of accuracy on held-out training rows,
    # and the best point is taken
    assert sel["best_minus_labels"] > sel["paired_standard_error"] > 0
    assert sel["val_accuracy"] == sel["best_val_accuracy"] > labels_val
    assert sel["fit_rows"] + sel["val_rows"] == len(digits.y_train)
    # the refit on the whole training set is a full kd fit with the chosen values
    assert m["test_accuracy"] > 0.9


def test_each_point_is_scored_as_it_would_be_refitted(digits, digits_teacher, digit_features):
    """Every grid point is the fixed-(T, alpha) fit of its numbers on the fit rows, from its own
    warm start: what the grid scores is what the refit would be (chained starts stopped earlier)."""
    psi = digit_features.train
    y = torch.from_numpy(digits.y_train)
    t = torch.from_numpy(digits_teacher.train_logits)
    sel = select_kd(psi, y, t, FitConfig(temperature="auto", alpha="auto"), n_classes=10)
    fit_rows, val_rows = torch.from_numpy(sel.fit_rows), torch.from_numpy(sel.val_rows)
    for point in (sel.grid[-1], next(p for p in sel.grid if (p["temperature"], p["alpha"]) == (2.0, 0.9))):
        alone = LinearStudent(FitConfig(temperature=point["temperature"], alpha=point["alpha"])).fit(
            psi[fit_rows], y[fit_rows], t[fit_rows], n_classes=10)
        assert alone.info_.iterations == point["iterations"]
        assert alone.accuracy(psi[val_rows], y[val_rows]) == pytest.approx(point["val_accuracy"])


def test_grid_never_reads_the_test_split(digits, digits_teacher):
    """Shuffling the test labels (and replacing the test images) changes nothing the grid saw."""
    cfg = DistillConfig(dataset="digits", pca_rank=8, fit=FitConfig(temperature="auto", alpha="auto"))
    a = run_distill(cfg, Workspace()).metrics["kd_selection"]
    ws = Workspace()
    ds = ws.dataset(cfg)
    rng = np.random.default_rng(1)
    key = next(iter(ws._data))
    ws._data[key] = dataclasses.replace(ds, y_test=rng.permutation(ds.y_test),
                                        x_test=rng.random(ds.x_test.shape).astype(np.float32))
    b = run_distill(cfg, ws).metrics["kd_selection"]
    assert a["grid"] == [dict(p, seconds=q["seconds"]) for p, q in zip(b["grid"], a["grid"])]
    assert (a["temperature"], a["alpha"]) == (b["temperature"], b["alpha"])


def test_copies_of_validation_images_are_never_fitted():
    """With augmented copies appended, a validation image's copies stay out of the fit part."""
    n, copies = 200, 2
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 3, (n,), generator=g)
    base = torch.nn.functional.one_hot(y, 3).float() * 2 + 0.5 * torch.randn(n, 3, generator=g)
    psi = torch.cat([torch.ones(n, 1), base], 1)
    # copy c of image i is image i plus a marker column c: the fitted rows are recoverable
    psi = torch.cat([torch.cat([psi, torch.full((n, 1), float(c))], 1) for c in range(1 + copies)])
    labels = y.repeat(1 + copies)
    t = (base * 3).repeat(1 + copies, 1)
    seen = []
    orig_fit = LinearStudent.fit

    def spy(self, p, *a, **k):
        seen.append(p)
        return orig_fit(self, p, *a, **k)

    LinearStudent.fit = spy
    try:
        sel = select_kd(psi, labels, t, FitConfig(temperature=2.0, alpha="auto"), n_original=n, n_classes=3)
    finally:
        LinearStudent.fit = orig_fit
    fitted = seen[0]
    assert fitted.shape[0] == len(sel.fit_rows) * (1 + copies)
    val_set = {tuple(psi[i, 1:4].tolist()) for i in sel.val_rows}
    assert not any(tuple(r[1:4].tolist()) in val_set for r in fitted)


def test_auto_is_one_line_errors_elsewhere(digits_teacher):
    with pytest.raises(ConfigError, match="expected a number or auto"):
        FitConfig(temperature="hot")
    with pytest.raises(ConfigError, match="alpha=1.5 is out of range"):
        FitConfig(alpha=1.5)
    with pytest.raises(ConfigError, match="--alpha auto: --method labels fits the labels alone"):
        FitConfig(method="labels", alpha="auto")
    for method, name in (("naive", "temperature"), ("naive", "alpha"), ("naive", "l2"), ("labels", "temperature")):
        with pytest.raises(ConfigError, match=f"--{name} auto: --method {method} .* no {name} to choose"):
            FitConfig(method=method, **{name: "auto"})
    with pytest.raises(ConfigError, match="nothing to choose"):
        select_kd(torch.ones(4, 2), torch.zeros(4, dtype=torch.long), torch.zeros(4, 2), FitConfig())
    with pytest.raises(ConfigError, match="whole copies"):
        select_kd(torch.ones(5, 2), torch.zeros(5, dtype=torch.long), torch.zeros(5, 2),
                  FitConfig(alpha="auto"), n_original=2)


def test_l2_auto_fits_every_point_at_every_penalty(digits, digits_teacher, digit_features):
    psi, y = digit_features.train, torch.from_numpy(digits.y_train)
    t = torch.from_numpy(digits_teacher.train_logits)
    cfg = FitConfig(temperature=2.0, alpha="auto", l2="auto")
    sel = select_kd(psi, y, t, cfg, n_classes=10)
    assert len(sel.grid) == len(ALPHAS) * len(L2S)
    # labels' own default 1e-4 and kd's 0 stand for None; the other penalties are shared
    assert sorted(p["l2"] for p in sel.grid if p["alpha"] == 0) == [1e-4, 1e-3, 1e-2, 1e-1]
    assert sorted(p["l2"] for p in sel.grid if p["alpha"] == 0.5) == [0.0, 1e-3, 1e-2, 1e-1]
    chosen = next(p for p in sel.grid if (p["temperature"], p["alpha"], p["l2"]) == (sel.temperature, sel.alpha, sel.l2))
    if sel.alpha > 0:  # a kd point is only taken above the best labels point by more than the guard
        assert chosen["val_accuracy"] == max(p["val_accuracy"] for p in sel.grid)
    assert sel.as_dict()["l2"] == sel.l2 and sel.as_dict()["val_accuracy"] == chosen["val_accuracy"]
    # every point is the standalone fit of its three numbers, scored on the validation rows
    fit_rows, val_rows = torch.from_numpy(sel.fit_rows), torch.from_numpy(sel.val_rows)
    for p in (sel.grid[1], sel.grid[-1]):
        st = LinearStudent(point_config(cfg, p["temperature"], p["alpha"], p["l2"])).fit(
            psi[fit_rows], y[fit_rows], t[fit_rows], n_classes=10)
        assert st.accuracy(psi[val_rows], y[val_rows]) == p["val_accuracy"]
    refit = resolve_fit(cfg, sel)
    assert refit.l2 == sel.l2 and refit.method == sel.method and "auto" not in (refit.temperature, refit.alpha, refit.l2)
    with pytest.raises(ConfigError, match="l2=auto: a LinearStudent fits numbers"):
        LinearStudent(FitConfig(method="labels", l2="auto")).fit(psi, y)


def test_l2_auto_rescues_an_overfitted_labels_student():
    """Fashion-MNIST, 10,000 training rows, rank 40 degree 2 (861 features): ``labels`` at its
    default penalty 1e-4 overfits (81.7 % of the 2,000 validation images here), at 1e-2 86.2 %."""
    from codesign.data import load_dataset

    root = os.environ.get("CODESIGN_DATA")
    if not root or not (Path(root) / "fashion-mnist").is_dir():
        pytest.skip("CODESIGN_DATA does not hold fashion-mnist/")
    ds = load_dataset("fashion-mnist", root)
    n = 10_000
    f = build_features(ds.x_train[:n], ds.x_test[:10], 40, "monomial", {"degree": 2})
    y = torch.from_numpy(ds.y_train[:n])
    sel = select_kd(f.train, y, None, FitConfig(method="labels", l2="auto"), n_classes=10)
    acc = {p["l2"]: p["val_accuracy"] for p in sel.grid}
    assert sorted(acc) == [1e-4, 1e-3, 1e-2, 1e-1] and sel.method == "labels"
    assert sel.l2 >= 1e-2 and acc[sel.l2] == max(acc.values())
    assert acc[sel.l2] - acc[1e-4] > 0.03  # 60+ of 2,000 images: far beyond a split's noise


def test_distill_labels_with_l2_auto_refits_the_chosen_penalty(digits):
    cfg = DistillConfig(dataset="digits", pca_rank=8, fit=FitConfig(method="labels", l2="auto"))
    res = run_distill(cfg)
    sel, m = res.metrics["kd_selection"], res.metrics
    assert sel["method"] == "labels" and len(sel["grid"]) == len(L2S) and m["l2"] == sel["l2"]
    again = run_distill(dataclasses.replace(cfg, fit=FitConfig(method="labels", l2=sel["l2"])))
    assert torch.equal(again.student.K_, res.student.K_)  # the refit is the plain fit of the chosen penalty


def test_cli_parses_auto(tmp_path):
    from codesign.options import resolve
    import argparse
    from codesign.options import add_options

    p = argparse.ArgumentParser()
    add_options(p, FitConfig)
    args = p.parse_args(["--temperature", "auto", "--alpha", "0.5", "--l2", "AUTO"])
    vals = resolve(args, {}, [FitConfig], "distill")
    assert vals["temperature"] == "auto" and vals["alpha"] == 0.5 and vals["l2"] == "auto"
    assert FitConfig(**vals).l2 == "auto"
    with pytest.raises(ConfigError, match="l2='much'"):
        resolve(p.parse_args(["--l2", "much"]), {}, [FitConfig], "distill")
    with pytest.raises(ConfigError, match="temperature='x'"):
        resolve(p.parse_args(["--temperature", "x"]), {}, [FitConfig], "distill")


def test_distill_prints_the_chosen_values(capsys):
    """`codesign distill --temperature auto --alpha auto` says what it chose, as --json records it."""
    import json

    from codesign.cli import main

    args = ["distill", "--dataset", "digits", "--pca-rank", "8", "--temperature", "auto", "--alpha", "auto"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert main([*args, "--json"]) == 0
    sel = json.loads(capsys.readouterr().out)["kd_selection"]
    line = next(ln for ln in text.splitlines() if ln.startswith("chosen on"))
    assert f"T {sel['temperature']:g}  alpha {sel['alpha']:g}  l2 {sel['l2']:g}" in line
    assert f"{sel['val_rows']} held-out training rows" in line and f"{sel['val_accuracy']:.4f}" in line
    # labels chooses only the penalty: no T or alpha on its line
    assert main(["distill", "--dataset", "digits", "--pca-rank", "8", "--method", "labels", "--l2", "auto"]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("chosen on"))
    assert "held-out training rows: l2 " in line and " T " not in line and "alpha" not in line


def test_search_space_samples_t_and_alpha():
    import optuna

    from codesign.search.space import KD_SPACE, build_space
    from codesign.specs import Choice, FloatRange

    kw = dict(n_inputs=64, n_train=1437, n_rows=1797, max_memory=1 << 30, device_space={},
              dictionaries=["monomial"], ranks=(2, 10))
    assert build_space(**kw).kd == {}  # not a kd search: no kd dimensions
    space = build_space(**kw, kd_space=KD_SPACE)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(12):
        trial = study.ask()
        space(trial)
        seen.add((trial.params["kd/temperature"], trial.params["kd/alpha"]))
        study.tell(trial, 0.0)
    assert any("auto" in p for p in seen) and any(isinstance(p[1], float) for p in seen)
    assert space.describe()["kd"]["temperature"]
    narrowed = build_space(**kw, kd_space={"alpha": FloatRange(0.0, 0.9)})
    assert set(narrowed.kd) == {"alpha"}
    with pytest.raises(ConfigError, match="alpha=1.5 is out of range"):
        build_space(**kw, kd_space={"alpha": Choice((0.5, 1.5))})
    with pytest.raises(ConfigError, match="expected temperature or alpha"):
        build_space(**kw, kd_space={"beta": Choice((1.0,))})
