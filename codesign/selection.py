"""Distillation's temperature T and weight alpha (and, on request, the L2 penalty), chosen on a
validation split of the training set.

``kd`` with a fixed T=2 and alpha=0.9 imitates the teacher's mistakes at nine times the weight
of the labels; since alpha=0 is the ``labels`` student, choosing (T, alpha) on held-out
training rows from a grid that includes alpha=0 cannot be meaningfully worse than ``labels``
(up to the validation split's sampling noise).

:func:`select_kd`:

1. splits the *original* training rows by a seeded permutation into a fit part and a
   validation part (:data:`SELECT_SHARE` of them; augmented copies of a validation image are
   dropped from the fit part, so no copy of a scored image is ever fitted). The test split is
   never read: the function receives only training features;
2. fits one student per grid point on the fit part: alpha=0 once (the ``labels`` fit: its L2
   default and one-hot warm start), then every ``T x alpha`` with alpha > 0 (with
   ``l2="auto"``, each of them at every penalty of :data:`L2S`; ``labels`` with ``l2="auto"``
   is the alpha=0 point at every penalty), each from its own
   ridge warm start (the same start and stopping rule as the refit below), all sharing one
   Gram factor (:class:`~codesign.students.GramCache`). Each point is thus scored as the refit
   will be fitted. Chaining the points (each started from the previous point's K) was tried
   first and dropped: the chained fits stopped after 10-13 L-BFGS iterations, the refit after
   15-20, so the grid scored less converged (more regularised) students than the one refitted;
   on Fashion-MNIST degree 3 rank 20 the chained grid chose kd points whose refits scored
   0.06-0.10 point below ``labels`` on the test set, the unchained grid's choices 0.02 below;
3. scores each on the validation part and takes the best point (highest validation accuracy;
   ties to the smaller alpha, then the smaller T), *unless* it beats the alpha=0 (``labels``)
   point by no more than one paired standard error, in which case it takes ``labels``. The
   paired standard error is McNemar's: with ``b`` validation images only the best point gets
   right and ``c`` only ``labels`` gets right, the difference is ``(b - c) / n`` and its
   standard error ``sqrt(b + c) / n``. A difference of a few images is noise: without the
   guard a useless teacher wins by one image as often as it loses (a random-logit teacher on
   digits did, at alpha=0.25). Where the teacher helps the guard costs nothing (MNIST r=40:
   the best point is ~90 images, several standard errors, above ``labels``). A one-standard-
   error rule on the accuracy itself (``sqrt(a(1-a)/n)``) was tried first and dropped: every
   grid point is scored on the same images, so their differences are far less noisy than
   each accuracy, and that rule gave up 0.1 point of kd's gain on MNIST.

The caller (``run_distill``) then refits on the whole training set with the chosen values,
from the fit's own warm start: the validation rows are a fifth of the data, worth having in the
final fit, and the refit is then exactly the fixed-(T, alpha) fit of the chosen values (alpha=0
chosen gives the ``labels`` student to the last digit). It costs one more fit.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from .errors import ConfigError, check_range
from .students import AUTO, FitConfig, GramCache, LinearStudent, default_l2

#: Temperatures tried when ``temperature="auto"``.
TEMPERATURES = (1.0, 2.0, 4.0)
#: Weights tried when ``alpha="auto"`` (0 is the ``labels`` student).
ALPHAS = (0.0, 0.25, 0.5, 0.75, 0.9)
#: L2 penalties tried when ``l2="auto"`` (None: the method's default, 0 for ``kd`` and 1e-4 for
#: ``labels``). Decades, because the useful penalty moves with the number of features: on
#: Fashion-MNIST degree 2 (validation split of seed 0, ``experiments/validated_kd``) the held-out
#: accuracy of ``labels`` rose from 86.8 % (1e-4) to 89.6 % (1e-2) at rank 80 and from 85.9 % to
#: 89.7 % at rank 100, and 1e-1 was past the optimum (88.7 and 89.4 %).
L2S = (None, 1e-3, 1e-2, 1e-1)
#: Share of the original training rows held out to score the grid.
SELECT_SHARE = 0.2
#: Added to the seed of the selection split, so that it differs from ``split_validation``'s.
SPLIT_SEED_OFFSET = 104_729


@dataclass
class Selection:
    """What :func:`select_kd` chose and saw.

    Attributes:
        temperature: chosen T (the fixed one if T was not ``auto``; irrelevant when alpha=0).
        alpha: chosen alpha (0 means the ``labels`` fit won).
        l2: the L2 penalty the chosen point was fitted with (chosen when ``l2`` was ``auto``).
        grid: one dict per grid point: ``temperature``, ``alpha``, ``l2``, ``val_accuracy``,
            ``iterations``, ``seconds``.
        K: the chosen grid point's matrix (fitted on the fit part only).
        fit_rows: indices of the original training rows fitted.
        val_rows: indices of the original training rows scored.
        seconds: wall time of the whole grid.
    """

    temperature: float
    alpha: float
    l2: float
    grid: list[dict]
    K: torch.Tensor
    fit_rows: np.ndarray
    val_rows: np.ndarray
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)

    @property
    def method(self) -> str:
        return "labels" if self.alpha == 0 else "kd"

    def as_dict(self) -> dict:
        """JSON for metrics: the choice, the grid's validation scores and the split's sizes."""
        best = max(p["val_accuracy"] for p in self.grid)
        chosen = (self.temperature, self.alpha, self.l2)
        return {
            "temperature": self.temperature, "alpha": self.alpha, "l2": self.l2, "method": self.method,
            "val_accuracy": next(p["val_accuracy"] for p in self.grid
                                 if (p["temperature"], p["alpha"], p["l2"]) == chosen),
            "best_val_accuracy": best, **self.extra, "share": round(len(self.val_rows) / (len(self.val_rows) + len(self.fit_rows)), 4),
            "fit_rows": int(len(self.fit_rows)), "val_rows": int(len(self.val_rows)),
            "seconds": round(self.seconds, 3), "grid": self.grid,
        }


def selection_split(n: int, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(fit_rows, val_rows)``: a seeded partition of ``range(n)`` with ``round(share n)`` scored rows."""
    check_range("selection share", share, 0.01, 0.9)
    perm = np.random.default_rng(seed + SPLIT_SEED_OFFSET).permutation(n)
    n_val = max(1, int(round(share * n)))
    if n - n_val < 2:
        raise ConfigError(f"choosing T and alpha needs a training set of at least 3 rows, got {n}")
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def grid_points(cfg: FitConfig) -> list[tuple[float, float]]:
    """The ``(T, alpha)`` points :func:`select_kd` tries for ``cfg`` (``auto`` fields searched, numbers kept;
    ``labels`` has the one point alpha=0). Each is fitted at every :func:`l2_values`."""
    if cfg.method == "labels":
        return [(TEMPERATURES[0] if cfg.temperature == AUTO else float(cfg.temperature), 0.0)]
    temps = TEMPERATURES if cfg.temperature == AUTO else (float(cfg.temperature),)
    alphas = ALPHAS if cfg.alpha == AUTO else (float(cfg.alpha),)
    points = [(temps[0], 0.0)] if 0.0 in alphas else []  # T does not enter the alpha=0 (labels) fit
    points += [(t, a) for t in temps for a in alphas if a > 0]
    return points


def l2_values(cfg: FitConfig) -> tuple[float | None, ...]:
    """The L2 penalties each grid point is fitted with: :data:`L2S` when ``cfg.l2`` is ``auto``,
    else ``cfg``'s own (None)."""
    return L2S if cfg.l2 == AUTO else (None,)


def point_config(cfg: FitConfig, temperature: float, alpha: float, l2: float | None = None) -> FitConfig:
    """``cfg`` with numbers for T, alpha and L2; alpha=0 is the ``labels`` fit.

    ``l2`` None keeps ``cfg``'s penalty, or the method's default where ``cfg`` has ``auto`` (or
    kd's default 0, which the ``labels`` point replaces by its own default 1e-4).
    """
    if l2 is None:
        l2 = None if cfg.l2 == AUTO else cfg.l2
    if alpha == 0:
        l2 = None if l2 == 0.0 else l2  # kd's default 0 -> labels' default 1e-4
        return dataclasses.replace(cfg, method="labels", temperature=temperature, alpha=0.0, l2=l2)
    return dataclasses.replace(cfg, method="kd", temperature=temperature, alpha=alpha,
                               l2=default_l2("kd") if l2 is None else l2)


def chooses(cfg: FitConfig) -> bool:
    """Whether ``cfg`` leaves :func:`select_kd` something to choose: ``kd`` with any ``auto``
    field, or ``labels`` with ``l2="auto"`` (T and alpha are distillation's)."""
    return (cfg.method == "kd" and bool(cfg.auto_fields)) or (cfg.method == "labels" and cfg.l2 == AUTO)


def select_kd(
    psi: torch.Tensor,
    labels: torch.Tensor,
    teacher_logits: torch.Tensor,
    cfg: FitConfig,
    *,
    n_original: int | None = None,
    share: float = SELECT_SHARE,
    seed: int | None = None,
    n_classes: int | None = None,
) -> Selection:
    """Choose T and alpha for ``cfg`` (its ``auto`` fields) on a validation split of ``psi``'s rows.

    Args:
        psi: training features ``[N, F]`` (the original rows first, then any augmented copies).
        labels: ``[N]`` hard labels.
        teacher_logits: ``[N, C]``.
        cfg: the fit's config; ``temperature`` and/or ``alpha`` are ``"auto"``.
        n_original: number of original rows; row ``i >= n_original`` is a copy of row
            ``i % n_original`` (default: all rows are original).
        share: share of the original rows scored.
        seed: seeds the split (default ``cfg.seed``).
        n_classes: number of classes.

    Returns:
        a :class:`Selection`.
    """
    if not chooses(cfg):
        if cfg.method != "kd":
            raise ConfigError(f"method={cfg.method!r} has nothing to choose on a validation split (temperature and "
                              "alpha are distillation's: use --method kd; labels chooses only l2=auto; naive neither)")
        raise ConfigError("select_kd: none of temperature, alpha and l2 is 'auto'; nothing to choose")
    if cfg.method == "kd" and teacher_logits is None:
        raise ConfigError("select_kd: method='kd' needs the teacher's logits")
    N = psi.shape[0]
    n_orig = N if n_original is None else int(n_original)
    if n_orig < 1 or N % n_orig:
        raise ConfigError(f"select_kd: {N} rows are not whole copies of n_original={n_orig} rows")
    seed = cfg.seed if seed is None else seed
    fit_orig, val_orig = selection_split(n_orig, share, seed)
    copies = N // n_orig
    fit_idx = np.concatenate([fit_orig + c * n_orig for c in range(copies)])
    dev = psi.device
    fit_t = torch.from_numpy(fit_idx).to(dev)
    val_t = torch.from_numpy(val_orig).to(dev)
    psi_fit, y_fit = psi[fit_t], labels[fit_t]
    t_fit = None if teacher_logits is None else teacher_logits[fit_t]
    psi_val, y_val = psi[val_t], labels[val_t]
    gram = GramCache()
    t0 = time.perf_counter()
    grid: list[dict] = []
    Ks, correct = [], []
    for T, a in grid_points(cfg):
        for l2 in l2_values(cfg):
            pc = point_config(cfg, T, a, l2)
            st = LinearStudent(pc).fit(psi_fit, y_fit, t_fit, n_classes=n_classes, gram_cache=gram)
            hit = st.logits(psi_val).argmax(1) == y_val
            acc = float(hit.double().mean())
            correct.append(hit.cpu())
            grid.append({"temperature": T, "alpha": a, "l2": pc.l2, "val_accuracy": acc,
                         "iterations": st.info_.iterations, "seconds": round(st.info_.seconds, 3)})
            Ks.append(st.K_)
    del psi_fit, t_fit, psi_val
    i, guard = choose(grid, correct)
    return Selection(temperature=grid[i]["temperature"], alpha=grid[i]["alpha"], l2=grid[i]["l2"], grid=grid, K=Ks[i],
                     fit_rows=fit_orig, val_rows=val_orig, seconds=time.perf_counter() - t0, extra=guard)


def choose(grid: list[dict], correct: list[torch.Tensor]) -> tuple[int, dict]:
    """The grid point taken (module docstring) and the ``labels`` guard's numbers.

    Args:
        grid: the points, with ``temperature``, ``alpha`` and ``val_accuracy``.
        correct: per point, a bool tensor of the validation images it classifies correctly.
    """
    def rank(i: int) -> tuple:  # ties to the smaller alpha, the smaller T, the larger L2 penalty
        return grid[i]["val_accuracy"], -grid[i]["alpha"], -grid[i]["temperature"], grid[i]["l2"]

    best = max(range(len(grid)), key=rank)
    zero = [i for i, p in enumerate(grid) if p["alpha"] == 0]
    if not zero or grid[best]["alpha"] == 0:
        return best, {}
    lab = max(zero, key=rank)  # the best labels point (of several with l2=auto)
    n = len(correct[best])
    only_best = int((correct[best] & ~correct[lab]).sum())
    only_labels = int((correct[lab] & ~correct[best]).sum())
    diff = (only_best - only_labels) / n
    se = float(np.sqrt(only_best + only_labels)) / n
    guard = {"best_minus_labels": diff, "paired_standard_error": se,
             "best_point": [grid[best]["temperature"], grid[best]["alpha"], grid[best]["l2"]]}
    return (best if diff > se else lab), guard


def resolve_fit(cfg: FitConfig, selection: Selection) -> FitConfig:
    """``cfg`` with the chosen T, alpha and L2 penalty (alpha=0 as the ``labels`` fit)."""
    return point_config(cfg, selection.temperature, selection.alpha, selection.l2)
