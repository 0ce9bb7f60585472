"""Linear students: one matrix K on lifted features, bias folded in (feature 0 is the constant).

Three ways to fit K (scikit-learn's shape: ``fit`` returns self, learned state ends in ``_``):

* ``naive`` -- the conventional least-squares Koopman approximation (EDMD, Williams et al.
  2015): with Psi_X the lifted training inputs (``[N, F]``) and Psi_Y the teacher's outputs on
  them (softmax probabilities by default, ``naive_target="logits"`` for raw logits), EDMD forms
  ``G = Psi_X^T Psi_X / N`` and ``A = Psi_X^T Psi_Y / N`` and sets ``K^T = G^+ A``, the
  pseudo-inverse solution of ``min_K |Psi_X K^T - Psi_Y|^2`` (equal to ``Psi_Y^T (Psi_X^T)^+``).
  The condition number of G (= cond(Psi_X)^2) is reported, since it is what makes the
  method fragile at high degree.
* ``labels`` -- the same linear model trained by cross-entropy on the labels only.
* ``kd`` -- knowledge distillation: ``alpha T^2 KL(teacher/T || student/T) + (1-alpha) CE``.

``labels`` and ``kd`` minimise a convex loss on a fixed feature matrix. The engine is
full-batch L-BFGS (SciPy's L-BFGS-B, whose More-Thuente line search takes the unit step at
almost every iteration: one loss evaluation per iteration where torch's strong-Wolfe search
spent 1.3) in Gram-whitened coordinates, warm-started from a ridge least-squares fit of the
teacher's logits (the labels' one-hot codes for ``labels``), stopping when an iteration
improves the loss by less than ``tol`` (relative). Through a device layer (hardware-aware
training) the same loss is minimised by minibatch Adam, since each step must see fresh noise.
"""

from __future__ import annotations

import copy
import math
import mmap
import os
import time
import warnings
import weakref
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch

from .errors import ConfigError, NumericalError, check_choice, check_range
from .losses import KDTargets, kd_loss
from .options import option
from .pass_precision import PASS_DTYPES, PassChoice, calibration_rows, choose_pass_dtype

METHODS = ("kd", "labels", "naive")
#: Default number of Adam steps of hardware-aware training (see :attr:`FitConfig.aware_steps`).
AWARE_STEPS = 200


#: ``temperature``/``alpha``/``l2`` value asking for a choice on a validation split (``codesign.selection``).
AUTO = "auto"
#: The fit settings each method does not use: ``auto`` for one of them (or, on the command line,
#: any value given) is refused instead of ignored.
IGNORED_BY_METHOD = {"kd": (), "labels": ("temperature", "alpha"), "naive": ("temperature", "alpha", "l2")}
IGNORED_WHY = {"labels": "fits the labels alone (no temperature, no distillation weight)",
               "naive": "regresses on the teacher's outputs by least squares (no temperature, weight or L2 penalty)"}


def default_l2(method: str) -> float:
    """The L2 penalty ``method`` fits with when none is given (see :class:`FitConfig`)."""
    return 1e-4 if method == "labels" else 0.0


def auto_or_number(name: str, value: Any) -> float | str:
    """``"auto"`` (any case) or the value as a float (``"2"`` -> 2.0); anything else is one line."""
    if isinstance(value, str):
        if value.strip().lower() == AUTO:
            return AUTO
        try:
            return float(value)
        except ValueError:
            raise ConfigError(f"{name}={value!r}: expected a number or auto") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name}={value!r}: expected a number or auto")
    return float(value)


@dataclass(frozen=True)
class FitConfig:
    """How K is fitted.

    Attributes:
        method: ``kd``, ``labels`` or ``naive``.
        temperature: distillation temperature T (> 0), or ``"auto"``: chosen on a validation
            split of the training set by :func:`codesign.selection.select_kd` (``run_distill``
            resolves it before fitting; a ``LinearStudent`` needs numbers).
        alpha: weight of the soft (teacher) term, in [0, 1]; ``labels`` forces 0; or ``"auto"``
            (as ``temperature``; the grid includes 0, which is ``labels``).
        l2: L2 penalty ``l2/2 |K|^2`` added to the loss; None picks the method's default
            (0 for ``kd``, whose soft targets already bound K; 1e-4 for ``labels``, whose
            cross-entropy on separable features would otherwise drive K to infinity); or
            ``"auto"``: chosen on a validation split with T and alpha (``kd``) or alone
            (``labels``), from :data:`codesign.selection.L2S`. Thousands of features overfit
            the training rows at the defaults (Fashion-MNIST degree 2 rank 100: ``labels``
            scores 85.9 % of its held-out rows at 1e-4 and 89.7 % at 1e-2; the grids of
            ``experiments/validated_kd/results_fashion-mnist.json``).
        max_iter: L-BFGS iteration cap.
        tol: stop when L-BFGS iterations lower the loss by less than ``tol`` (relative) each,
            averaged over a burst of 5. The default 1e-2 stops where test accuracy has
            flattened out (MNIST r=40 d=2: ~15 iterations; further ones only sharpen the
            training loss, and at degree 3 they start to overfit).
        ridge: ridge of the least-squares warm start (relative to the mean feature variance).
        naive_target: ``probs`` or ``logits``: what EDMD regresses on for ``naive``.
        pass_dtype: precision of the features L-BFGS's passes read: ``auto`` (default: the
            faster of the two on this machine, timed once and cached per machine by
            :mod:`codesign.pass_precision`; the choice is in ``info_.extra["pass_dtype"]``),
            ``bfloat16`` (half the bytes of a copy of the features: faster where the CPU
            has native bfloat16 dot products, slower where it must widen every element) or
            ``float32`` (the features themselves, no copy). Logits, softmax, gradients and
            their accumulation stay float32, and the final loss and every reported accuracy
            use the float32 features.
        aware_steps: Adam steps of hardware-aware training (training through a device layer).
            Counted in steps, not epochs, so that a small data set gets as much training as a
            large one (digits' 1,437 rows make one minibatch: five epochs would be five steps).
        device_epochs: if given, train this many passes over the data instead of
            ``aware_steps`` (the behaviour before ``aware_steps``; config files that recorded
            it rerun unchanged).
        batch_size: minibatch size when training through a device layer, capped at the
            training set size.
        lr: Adam learning rate through a device layer.
        seed: seeds minibatch order and the device's training noise.
    """

    method: str = option("kd", "how K is fitted: kd (distillation), labels (no teacher) or naive (least-squares EDMD)",
                         choices=METHODS)
    temperature: float | str = option(2.0, "distillation temperature T, or auto: chosen on a validation split "
                                      "(codesign.selection)", parse=lambda v: auto_or_number("temperature", v))
    alpha: float | str = option(0.9, "weight of the teacher term in [0, 1] (0 is labels), or auto: chosen on a "
                                "validation split (codesign.selection)", parse=lambda v: auto_or_number("alpha", v))
    l2: float | str | None = option(None, "L2 penalty on K, or auto: chosen on a validation split (codesign.selection)",
                                    show_default="0 for kd, 1e-4 for labels", parse=lambda v: auto_or_number("l2", v))
    max_iter: int = option(200, "L-BFGS iteration cap")
    tol: float = option(1e-2, "relative loss decrease per iteration that stops L-BFGS")
    ridge: float = option(1e-3, "ridge of the least-squares warm start, relative to the mean feature variance")
    naive_target: str = option("probs", "what EDMD regresses on", choices=("probs", "logits"))
    pass_dtype: str = option("auto", "precision of the features L-BFGS reads (auto: the faster here, measured once "
                             "per machine)", choices=PASS_DTYPES)
    aware_steps: int = option(AWARE_STEPS, "Adam steps of hardware-aware training (--protocol aware)")
    device_epochs: int | None = option(None, "passes over the data of hardware-aware training, instead of --aware-steps",
                                       show_default="none: --aware-steps counts")
    batch_size: int = option(4096, "minibatch of hardware-aware training (capped at the training set size)")
    lr: float = option(2e-3, "Adam learning rate of hardware-aware training")
    seed: int = 0

    def __post_init__(self) -> None:
        check_choice("method", self.method, METHODS)
        object.__setattr__(self, "temperature", auto_or_number("temperature", self.temperature))
        object.__setattr__(self, "alpha", auto_or_number("alpha", self.alpha))
        if self.temperature != AUTO:
            check_range("temperature", self.temperature, 1e-3, 1e3)
        if self.alpha != AUTO:
            check_range("alpha", self.alpha, 0.0, 1.0)
        if self.l2 is None:
            object.__setattr__(self, "l2", default_l2(self.method))
        object.__setattr__(self, "l2", auto_or_number("l2", self.l2))
        if self.l2 != AUTO:
            check_range("l2", self.l2, 0.0, 1e6)
        for name in IGNORED_BY_METHOD[self.method]:
            if getattr(self, name) == AUTO:
                raise ConfigError(f"--{name} auto: --method {self.method} {IGNORED_WHY[self.method]}, so there is no "
                                  f"{name} to choose; drop --{name} auto, or use --method kd")
        check_range("max_iter", self.max_iter, 1, 100_000, integer=True)
        check_range("tol", self.tol, 0.0, 1.0)
        check_range("ridge", self.ridge, 0.0, 1e6)
        check_choice("naive_target", self.naive_target, ("probs", "logits"))
        check_choice("pass_dtype", self.pass_dtype, PASS_DTYPES)
        check_range("aware_steps", self.aware_steps, 0, 1_000_000, integer=True)
        if self.device_epochs is not None:
            check_range("device_epochs", self.device_epochs, 0, 10_000, integer=True)
        check_range("batch_size", self.batch_size, 1, 1 << 24, integer=True)
        check_range("lr", self.lr, 1e-8, 10.0)
        check_range("seed", self.seed, 0, 2**31 - 1, integer=True)

    @property
    def auto_fields(self) -> list[str]:
        """The fields left ``"auto"`` (to be chosen on a validation split before fitting)."""
        return [name for name in ("temperature", "alpha", "l2") if getattr(self, name) == AUTO]

    @property
    def effective_alpha(self) -> float:
        return 0.0 if self.method == "labels" else self.alpha


@dataclass
class FitInfo:
    """What a fit did: time, iterations, final loss, condition number (naive)."""

    seconds: float = 0.0
    iterations: int = 0
    loss_evals: int = 0
    final_loss: float | None = None
    condition_number: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict:
        out = asdict(self)
        out.update(out.pop("extra"))
        return out


class LinearStudent:
    """``softmax(K psi)``: one ``[n_classes, n_features]`` matrix.

    Args:
        config: a :class:`FitConfig`.

    Attributes (after fit):
        K_: the matrix, float32.
        info_: a :class:`FitInfo`.
    """

    def __init__(self, config: FitConfig | None = None) -> None:
        self.config = config or FitConfig()

    # ------------------------------------------------------------------ fitting
    def fit(
        self,
        psi: torch.Tensor,
        labels: torch.Tensor,
        teacher_logits: torch.Tensor | None = None,
        *,
        init: torch.Tensor | None = None,
        n_classes: int | None = None,
        gram_cache: "GramCache | None" = None,
    ) -> "LinearStudent":
        """Fit K on features ``psi`` ``[N, F]`` with ``labels`` and (kd, naive) teacher logits.

        ``psi`` is a float32 tensor or numpy array; a ``numpy.memmap`` of a file (or
        ``torch.from_numpy`` of one) is consumed in row blocks without being loaded: the fit
        then holds the bfloat16 pass copy (when that precision is used), the Gram of 10,000
        strided rows and per-block temporaries, never a float32 copy of the matrix
        (:func:`engine_memory` counts them).

        Args:
            init: warm start for K (e.g. from a neighbouring trial); default least squares.
            n_classes: number of classes (default: teacher width, else ``labels.max()+1``).
            gram_cache: a :class:`GramCache` shared by fits on the same features.
        """
        cfg = self.config
        psi = as_features(psi)
        _check_features(psi, labels, teacher_logits)
        if cfg.method in ("kd", "naive") and teacher_logits is None:
            raise ConfigError(f"method={cfg.method!r} needs teacher outputs; use method='labels' without a teacher")
        if cfg.method != "naive" and cfg.auto_fields:
            raise ConfigError(f"{', '.join(cfg.auto_fields)}=auto: a LinearStudent fits numbers; choose them first on a "
                              "validation split (codesign.selection.select_kd and resolve_fit, as run_distill does)")
        C = n_classes or (teacher_logits.shape[1] if teacher_logits is not None else int(labels.max()) + 1)
        t0 = time.perf_counter()
        if cfg.method == "naive":
            target = torch.softmax(teacher_logits.double(), 1) if cfg.naive_target == "probs" else teacher_logits.double()
            self.K_, cond = edmd(psi, target)
            self.info_ = FitInfo(condition_number=cond, extra={"naive_target": cfg.naive_target})
        else:
            targets = KDTargets(teacher_logits if cfg.effective_alpha > 0 else None, labels, cfg.temperature, cfg.effective_alpha)
            y = teacher_logits if cfg.method == "kd" else _one_hot_codes(labels, C)
            try:
                start = warm_start(psi, y, cfg.ridge, gram_cache)
            except torch.linalg.LinAlgError as exc:  # e.g. float32 overflow of huge features
                scale = max(float(psi[i : i + CHUNK_ROWS].abs().max()) for i in range(0, psi.shape[0], CHUNK_ROWS))
                raise NumericalError(
                    f"the feature Gram matrix has no Cholesky factor (largest |feature| {scale:.3g}): "
                    f"{str(exc).splitlines()[0]}; standardise the features (FeaturePipeline does)"
                ) from None
            self.K_, self.info_ = lbfgs_fit(psi, targets, start.K if init is None else init, cfg, start.chol)
        self.info_.seconds = time.perf_counter() - t0
        return self

    # ------------------------------------------------------------------ inference
    def logits(self, psi: torch.Tensor) -> torch.Tensor:
        """Student logits ``psi @ K^T`` (``psi`` may be a numpy array or memmap, as in :meth:`fit`)."""
        psi = as_features(psi)
        if not is_mapped(psi):
            return psi @ self.K_.T
        out = []
        for i in range(0, psi.shape[0], CHUNK_ROWS):  # a mapped matrix: block by block, pages released
            out.append(psi[i : i + CHUNK_ROWS] @ self.K_.T)
            release_pages(psi[i : i + CHUNK_ROWS])
        return torch.cat(out) if out else psi @ self.K_.T

    def accuracy(self, psi: torch.Tensor, labels: torch.Tensor) -> float:
        """Share of rows whose arg-max logit is the label."""
        return accuracy(self.logits(psi), labels)


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy."""
    return float((logits.argmax(1) == labels).double().mean())


def _check_features(psi: torch.Tensor, labels: torch.Tensor, teacher_logits: torch.Tensor | None) -> None:
    if psi.ndim != 2:
        raise ConfigError(f"features must be [n_samples, n_features], got shape {tuple(psi.shape)}")
    if labels.shape[0] != psi.shape[0]:
        raise ConfigError(f"features have {psi.shape[0]} rows but labels have {labels.shape[0]}")
    if teacher_logits is not None and teacher_logits.shape[0] != psi.shape[0]:
        raise ConfigError(
            f"teacher outputs have {teacher_logits.shape[0]} rows but features have {psi.shape[0]}; "
            "the teacher must be evaluated on the same training set"
        )
    # A block's sum is NaN or Inf if any of its values is (or, rarely, if it overflows: then
    # the exact test decides). Summing reads the block once; isfinite() would also write an
    # N x F boolean array and costs ~30x more (it was 15% of a fit on MNIST r=40 degree 2).
    for i in range(0, psi.shape[0], CHUNK_ROWS):
        block = psi[i : i + CHUNK_ROWS]
        if not math.isfinite(float(block.sum())) and not bool(torch.isfinite(block).all()):
            raise NumericalError("features hold NaN or Inf values; check the input data")
        release_pages(block)


def as_features(psi) -> torch.Tensor:
    """A feature matrix as a tensor, without copying: numpy arrays and memmaps are wrapped.

    A read-only ``numpy.memmap`` (``mode="r"``) is wrapped as is; nothing here writes to it.
    """
    if isinstance(psi, np.ndarray):
        if psi.dtype != np.float32:
            raise ConfigError(f"features are {psi.dtype}; the engine reads float32 (convert with .astype(np.float32))")
        with warnings.catch_warnings():  # torch warns that a read-only array gives a read-only tensor: intended
            warnings.simplefilter("ignore", UserWarning)
            return torch.from_numpy(psi)
    if not isinstance(psi, torch.Tensor):
        raise ConfigError(f"features must be a torch tensor or a numpy array, got {type(psi).__name__}")
    return psi


def memmap_npz(path: str | os.PathLike, name: str) -> np.memmap:
    """Array ``name`` of an uncompressed ``.npz`` file as a read-only ``numpy.memmap``.

    ``np.savez`` (the on-disk feature cache, :func:`codesign.features.cached_features`, and
    :func:`codesign.cache.atomic_save_npz`) stores each array as a plain ``.npy`` member of a
    zip archive; its bytes lie contiguous in the file, so they can be mapped instead of read:
    ``LinearStudent().fit(memmap_npz(path, "train"), ...)`` fits on a feature matrix larger
    than memory.
    """
    import zipfile

    try:
        with zipfile.ZipFile(path) as zf:
            info = zf.getinfo(f"{name}.npy")
    except (OSError, zipfile.BadZipFile, KeyError) as exc:
        raise ConfigError(f"{path}: no array {name!r} to map ({type(exc).__name__}: {exc})") from None
    if info.compress_type != zipfile.ZIP_STORED:
        raise ConfigError(f"{path}: array {name!r} is compressed (np.savez_compressed) and cannot be mapped; "
                          "save it with np.savez")
    with open(path, "rb") as fh:
        fh.seek(info.header_offset)
        local = fh.read(30)  # the zip local file header: name and extra-field lengths at bytes 26-29
        n_name, n_extra = int.from_bytes(local[26:28], "little"), int.from_bytes(local[28:30], "little")
        fh.seek(info.header_offset + 30 + n_name + n_extra)
        version = np.lib.format.read_magic(fh)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read_header(fh)
        offset = fh.tell()
    return map_pages(np.memmap(path, dtype=dtype, mode="r", shape=shape, order="F" if fortran else "C", offset=offset))


#: The read-only file mappings :func:`release_pages` may drop pages of: ``{address: (bytes, mmap)}``
#: (weakly held: a mapping leaves when its array is collected).
_MAPPED: "weakref.WeakValueDictionary[int, mmap.mmap]" = None  # type: ignore[assignment]
_MAPPED_BYTES: dict[int, int] = {}


def map_pages(array: np.memmap) -> np.memmap:
    """Register ``array``'s file mapping with :func:`release_pages`; returns ``array``.

    A memory-mapped matrix's pages, once read, stay in the process's resident set (as file
    pages) until the kernel needs the memory: a pass over a 2 GB matrix would show as 2 GB
    resident. The engine's passes release each block's pages after reading it (the page cache
    keeps them, so the next pass still reads memory, not the disk).
    """
    global _MAPPED
    mm = getattr(array, "_mmap", None)
    if mm is None or not hasattr(mm, "madvise"):
        return array
    if _MAPPED is None:
        _MAPPED = weakref.WeakValueDictionary()
    base = np.frombuffer(mm, dtype=np.uint8).ctypes.data
    _MAPPED[base] = mm
    _MAPPED_BYTES[base] = len(mm)
    return array


def release_pages(t: "torch.Tensor | np.ndarray") -> None:
    """Drop the resident pages of ``t`` (a block or the whole of a :func:`map_pages` matrix)
    from this process (``MADV_DONTNEED``; the data stays in the file and the page cache).

    A no-op for anything else (an in-memory tensor), so the engine's loops call it on every block.
    """
    if not _MAPPED:
        return
    if isinstance(t, torch.Tensor):
        if t.device.type != "cpu":
            return
        start, nbytes = t.data_ptr(), t.numel() * t.element_size()
    else:
        start, nbytes = t.ctypes.data, t.nbytes
    for base, mm in list(_MAPPED.items()):
        size = _MAPPED_BYTES.get(base, 0)
        if base <= start < base + size:
            page = mmap.PAGESIZE
            lo = (start - base) // page * page
            hi = min(size, start - base + nbytes)
            if hi > lo:
                try:
                    mm.madvise(mmap.MADV_DONTNEED, lo, hi - lo)
                except (OSError, ValueError):  # pragma: no cover - a closed map or another OS's semantics
                    pass
            return


def is_mapped(t: "torch.Tensor | np.ndarray") -> bool:
    """Whether ``t`` lies in a file mapping registered by :func:`map_pages` (a disk-backed matrix)."""
    if not _MAPPED:
        return False
    start = (t.data_ptr() if t.device.type == "cpu" else -1) if isinstance(t, torch.Tensor) else t.ctypes.data
    return any(base <= start < base + _MAPPED_BYTES.get(base, 0) for base in list(_MAPPED.keys()))


def _one_hot_codes(labels: torch.Tensor, C: int) -> torch.Tensor:
    # Regressing on +-3 codes puts the warm start's logits on the scale where softmax is
    # confident but not saturated, close to where cross-entropy's minimiser lies.
    y = torch.full((labels.shape[0], C), -3.0, device=labels.device)
    y[torch.arange(labels.shape[0], device=labels.device), labels] = 3.0
    return y


def gram(psi: torch.Tensor, y: torch.Tensor, chunk: int = 8192, exact: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """``Psi^T Psi / N`` and ``Psi^T Y / N`` as float64, accumulated over row chunks.

    ``exact=True`` multiplies in float64 (EDMD's baseline deserves full precision);
    ``exact=False`` multiplies each chunk in float32 and accumulates in float64, four times
    faster and plenty for a warm start and a preconditioner. It then computes only the upper
    triangle of the symmetric ``Psi^T Psi``, as :func:`_upper_gram` blocks of columns (60-65 %
    of the full product's time), and mirrors it. Not with SciPy's ``ssyrk``, although it is
    faster alone: its OpenBLAS threads keep spinning for ~0.1 s after the call and made the
    next L-BFGS passes (torch's own threads) twice as slow.
    """
    N, F = psi.shape
    G = torch.zeros(F, F, dtype=torch.float64, device=psi.device)
    A = torch.zeros(F, y.shape[1], dtype=torch.float64, device=psi.device)
    dt = torch.float64 if exact else torch.float32
    upper = not exact
    for i in range(0, N, chunk):
        p = psi[i : i + chunk].to(dt)
        if upper:
            G += _upper_gram(p)
        else:
            G += (p.T @ p).double()
        A += (p.T @ y[i : i + chunk].to(dt)).double()
        release_pages(psi[i : i + chunk])
    if upper:  # the upper triangle was accumulated: mirror it
        G = G.triu() + G.triu(1).T
    return G / N, A / N


#: Columns per block of :func:`_upper_gram`.
GRAM_BLOCK = 300


def _upper_gram(p: torch.Tensor) -> torch.Tensor:
    """The block upper triangle of ``p^T p`` (float64; entries below the diagonal blocks are zero).

    Column block ``i`` is multiplied with columns ``i:`` only, so that ``b`` blocks cost
    ``(b + 1) / 2b`` of the full product. Measured on 10,000 x 1771 float32 rows (2 threads):
    179 ms in 6 blocks against 298 ms for ``p.T @ p``; 861 columns: 55 ms in 3 against 71 ms.
    """
    F = p.shape[1]
    G = torch.zeros(F, F, dtype=torch.float64, device=p.device)
    nb = max(1, min(8, F // GRAM_BLOCK))
    edges = np.linspace(0, F, nb + 1).astype(int)
    for a, b in zip(edges[:-1], edges[1:]):
        G[a:b, a:] = (p[:, a:b].T @ p[:, a:]).double()
    return G


def edmd(psi: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, float]:
    """EDMD: ``K^T = G^+ A``; returns (K float32 ``[C, F]``, condition number of G)."""
    G, A = gram(psi, target)
    s = torch.linalg.svdvals(G)
    cond = float(s[0] / s[-1]) if s[-1] > 0 else float("inf")
    K = (torch.linalg.pinv(G, hermitian=True) @ A).T
    if not torch.isfinite(K).all():
        raise NumericalError(f"EDMD produced NaN/Inf (cond(G) = {cond:.3g}): the Gram matrix is singular")
    return K.float().contiguous(), cond


@dataclass
class WarmStart:
    """A ridge least-squares start and the Cholesky factor of the ridged feature Gram (float64).

    Both come from one pass over 10,000 strided rows of the features; a search reuses them
    across trials that share features (only the right-hand side changes with the teacher).
    The same factor whitens L-BFGS's coordinates (:func:`lbfgs_fit`).
    """

    K: torch.Tensor
    chol: torch.Tensor


#: Ridges tried, in turn, when the ridged Gram has no Cholesky factor (relative to the mean
#: feature variance): dictionaries such as many overlapping RBFs give a numerically
#: rank-deficient Gram.
RIDGE_LADDER = (1e-5, 1e-4, 1e-3, 1e-2)


class GramCache:
    """The feature Gram's factors, computed once per feature matrix and reused by every fit.

    A search or a table fits many students (other teachers, methods, seeds) on the same
    features; only the right-hand side ``Psi^T Y`` changes between them. The strided rows the
    Gram was computed from are kept for those right-hand sides (:func:`engine_memory` counts
    them).
    """

    def __init__(self, max_rows: int = 10000, jitter: float = 1e-6) -> None:
        self.max_rows = max_rows
        self.jitter = jitter
        self._key = None
        self._factors: dict[float, torch.Tensor] = {}

    def rows(self, psi: torch.Tensor) -> torch.Tensor | None:
        if psi.shape[0] <= self.max_rows:
            return None
        return torch.linspace(0, psi.shape[0] - 1, self.max_rows, device=psi.device).long()

    def sample(self, psi: torch.Tensor) -> torch.Tensor:
        """The rows of ``psi`` the Gram is computed from (all of them up to ``max_rows``)."""
        self._prepare(psi)
        return self._sub

    def _prepare(self, psi: torch.Tensor) -> None:
        key = (psi.data_ptr(), tuple(psi.shape), psi.device)
        if key == self._key:
            return
        rows = self.rows(psi)
        sub = psi if rows is None else psi[rows]
        release_pages(psi)  # the strided rows are copied: the matrix's pages can go
        G, _ = gram(sub, sub[:, :1], exact=False)
        self._scale = float(torch.diagonal(G).mean())
        self._G, self._sub = G, sub
        self._factors = {}
        self._key = key

    def factor(self, psi: torch.Tensor, ridge: float) -> torch.Tensor:
        """Lower Cholesky factor of ``G + r s I`` for ``psi`` (from cache if seen).

        ``s`` is the mean feature variance and ``r = max(ridge, jitter)``, raised through
        :data:`RIDGE_LADDER` until the (float32-accumulated) Gram factorises.
        """
        self._prepare(psi)
        r = max(float(ridge), self.jitter)
        if r not in self._factors:
            for rr in (r, *(x for x in RIDGE_LADDER if x > r)):
                Gr = self._G.clone()
                Gr.diagonal().add_(rr * self._scale)
                chol, info = torch.linalg.cholesky_ex(Gr)
                if int(info) == 0:
                    break
            else:
                raise NumericalError(
                    "the feature Gram matrix is not positive definite even with a 1e-2 ridge; "
                    "the features are degenerate (check for constant or duplicated columns)"
                )
            self._factors[r] = chol
        return self._factors[r]


def warm_start(psi: torch.Tensor, y: torch.Tensor, ridge: float, cache: GramCache | None = None) -> WarmStart:
    """``argmin |Psi K^T - Y|^2 + ridge N mean_var |K|^2`` and the ridged Gram's Cholesky factor.

    ``Y`` is centred per row first (softmax ignores a per-row shift), which removes the
    intercept the targets do not need. Both are computed on at most ``cache.max_rows`` evenly
    strided rows (10000): a start point and a preconditioner need the Gram's shape, not its
    last digit, and the Gram's cost (N F^2) would otherwise dominate the fit at F ~ 2000.
    One factor serves both: whitening by ``G + ridge`` instead of ``G`` took the same L-BFGS
    iterations on MNIST (r=40 degree 2 and r=20 degree 3) and saves a second factorisation.
    """
    cache = cache or GramCache()
    chol = cache.factor(psi, ridge)
    sub = cache.sample(psi)
    rows = cache.rows(psi)
    y = y if rows is None else y[rows]
    y = y.double() - y.double().mean(1, keepdim=True)
    A = torch.zeros(psi.shape[1], y.shape[1], dtype=torch.float64, device=psi.device)
    for k in range(0, sub.shape[0], 8192):
        A += (y[k : k + 8192].float().T @ sub[k : k + 8192]).double().T
    A /= sub.shape[0]
    K = torch.cholesky_solve(A, chol).T
    return WarmStart(K.float().contiguous(), chol)


#: Bytes of the pass copy per block of the fused loss-and-gradient pass: a block is read by
#: the forward product and again, while it is still in the last-level cache, by the gradient
#: product, so that a pass reads the feature matrix from memory about once.
FUSED_BYTES = 8 << 20
#: Rows per block of the in-memory conversions (the bfloat16 pass copy, the finiteness check,
#: the final loss): bounds their temporaries, and the resident pages of a disk-backed matrix.
CHUNK_ROWS = 16384


def fused_rows(n_features: int, itemsize: int) -> int:
    """Rows per block of :func:`kd_loss_and_grad`: :data:`FUSED_BYTES` of features, 2048 to 65536
    (smaller blocks make two BLAS threads spend more time meeting than multiplying)."""
    return int(min(65536, max(2048, FUSED_BYTES // max(1, n_features * itemsize))))


class PassTargets:
    """What the fused pass needs of the targets, prepared once per fit.

    The loss of a row with student logits ``z`` is, with ``q_T = softmax(z/T)``,
    ``alpha T^2 (lse(z/T) - <p, z>/T - H(p)) + (1-alpha) (lse(z) - z_y)``. Its terms linear
    in ``z`` are gathered in one weight matrix ``W = alpha T p + (1-alpha) onehot(y)``
    (stored ``[C, N]``, classes by rows, so that every per-row reduction of a block runs
    along contiguous memory) and the teachers' entropies in one constant, so a pass computes

        loss = sum_rows [alpha T^2 lse(z/T) + (1-alpha) lse(z)] - <Z, W> - alpha T^2 sum H
        dloss/dZ = alpha T q_T + (1-alpha) q_1 - W

    with no per-pass log-softmax, gather or one-hot scatter.
    """

    def __init__(self, targets: KDTargets, n_classes: int) -> None:
        T, a = targets.temperature, targets.alpha
        labels = targets.labels
        N = labels.shape[0]
        W = torch.zeros(n_classes, N, device=labels.device)
        if a > 0:
            W.add_(targets.soft.T.float(), alpha=a * T)
        if a < 1:
            W[labels, torch.arange(N, device=labels.device)] += 1.0 - a
        self.weights = W
        self.constant = a * T * T * float(targets.entropy.double().sum()) if a > 0 else 0.0
        self.temperature, self.alpha = T, a

    def head(self, n: int) -> "PassTargets":
        """The first ``n`` rows (for a calibration pass; the constant is not needed there)."""
        out = object.__new__(PassTargets)
        out.weights = self.weights[:, :n]
        out.constant, out.temperature, out.alpha = 0.0, self.temperature, self.alpha
        return out


def _softmax_columns_(u: torch.Tensor) -> float:
    """Softmax of each column of ``u`` ``[C, b]`` in place; returns the sum of the columns' log-sum-exp."""
    m = u.amax(0)
    u.sub_(m).exp_()
    s = u.sum(0)
    u.div_(s)
    return float((m + s.log_()).sum())


def kd_loss_and_grad(
    psi: torch.Tensor, K: torch.Tensor, targets: "KDTargets | PassTargets", l2: float = 0.0, rows: int | None = None
) -> tuple[float, torch.Tensor]:
    """The mean distillation loss at ``K`` and its gradient, in one pass over ``psi``.

    Autograd would read the whole feature matrix twice per evaluation (``psi @ K^T`` forward,
    ``grad^T @ psi`` backward), and the product is memory-bound. Here each block of rows is
    used for both products while it is still in cache, with the softmax gradients in closed
    form (see :class:`PassTargets`); logits and their gradients are held classes-by-rows
    (``[C, rows]``) so that softmax, log-sum-exp and the weights run along contiguous rows
    of a few thousand values instead of rows of C = 10. ``psi`` may be bfloat16 (see
    :attr:`FitConfig.pass_dtype`); logits, softmax and the gradient stay float32.

    Args:
        targets: :class:`~codesign.losses.KDTargets`, or :class:`PassTargets` prepared from them
            (what :func:`lbfgs_fit` passes, so that the preparation is paid once per fit).
        rows: rows per block (default :func:`fused_rows`).
    """
    prep = targets if isinstance(targets, PassTargets) else PassTargets(targets, K.shape[0])
    N, F = psi.shape
    rows = rows or fused_rows(F, psi.element_size())
    T, a = prep.temperature, prep.alpha
    Kp = K.to(psi.dtype)
    low = psi.dtype != K.dtype
    grad = torch.zeros_like(K)
    total = -prep.constant
    for i in range(0, N, rows):
        p = psi[i : i + rows]
        z = Kp @ p.T  # [C, rows]
        z = z.float() if low else z
        w = prep.weights[:, i : i + rows]
        total -= float((z * w).sum())
        g = None
        if a > 0:
            g = z * (1.0 / T)
            total += a * T * T * _softmax_columns_(g)
            g.mul_(a * T)
        if a < 1:  # z is not needed after this: its softmax is taken in place
            total += (1 - a) * _softmax_columns_(z)
            g = z.mul_(1 - a) if g is None else g.add_(z, alpha=1 - a)
        g.sub_(w)
        if low:  # low-precision features: the product accumulates in float32 inside BLAS
            grad += (g.to(psi.dtype) @ p).float()
        else:
            grad.addmm_(g, p)
        release_pages(p)
    grad /= N
    total /= N
    if l2 > 0:
        total += 0.5 * l2 * float(K.square().sum())
        grad.add_(K, alpha=l2)
    return total, grad


def pass_copy(psi: torch.Tensor, dtype: str) -> torch.Tensor:
    """``psi`` in ``dtype`` (``float32`` or ``bfloat16``), converted :data:`CHUNK_ROWS` rows at a time.

    ``psi`` itself when it already has that precision (no copy: a disk-backed float32 matrix is
    then read from its file, through the page cache, by every pass). Otherwise the copy is the
    only new array: a disk-backed matrix is never materialised in float32.
    """
    dt = getattr(torch, dtype)
    if psi.dtype == dt:
        return psi
    out = torch.empty(psi.shape, dtype=dt, device=psi.device)
    for i in range(0, psi.shape[0], CHUNK_ROWS):
        out[i : i + CHUNK_ROWS] = psi[i : i + CHUNK_ROWS]
        release_pages(psi[i : i + CHUNK_ROWS])
    return out


def resolve_pass_dtype(psi: torch.Tensor, prep: PassTargets, K: torch.Tensor, requested: str,
                       recalibrate: bool = False) -> PassChoice:
    """``requested`` (``auto``, ``float32``, ``bfloat16``) resolved for these features.

    ``auto`` times :func:`kd_loss_and_grad` in float32 and in bfloat16 on the first
    :func:`~codesign.pass_precision.calibration_rows` rows of ``psi`` (32 MiB of float32),
    once per machine, column-count class and thread count (:mod:`codesign.pass_precision`);
    ``recalibrate`` times again and replaces the cached entry.
    """
    N, F = psi.shape
    n = calibration_rows(N, F)
    blocks: dict[str, torch.Tensor] = {}
    sub = prep.head(n)
    cuda = psi.device.type == "cuda"
    # On a CPU the clock is the process's CPU time: time a pass spends descheduled by other
    # jobs on a shared machine is not charged, so a busy moment sways the cached choice less
    # (memory stalls are charged either way; so is a BLAS thread spinning while it waits for
    # a descheduled partner, which a heavily loaded machine still shows).
    clock = time.perf_counter if cuda else time.process_time

    def time_pass(dtype: str) -> float:
        if dtype not in blocks:
            blocks[dtype] = pass_copy(psi[:n], dtype)
        if cuda:
            torch.cuda.synchronize(psi.device)
        t0 = clock()
        kd_loss_and_grad(blocks[dtype], K, sub)
        if cuda:
            torch.cuda.synchronize(psi.device)
        return clock() - t0

    return choose_pass_dtype(requested, N, F, time_pass, device=str(psi.device), recalibrate=recalibrate)


def final_loss(psi: torch.Tensor, K: torch.Tensor, targets: KDTargets, l2: float = 0.0) -> float:
    """The mean distillation loss (plus ``l2/2 |K|^2``) on float32 features, :data:`CHUNK_ROWS` rows at a time."""
    N = psi.shape[0]
    total = 0.0
    for i in range(0, N, CHUNK_ROWS):
        idx = slice(i, i + CHUNK_ROWS)
        z = psi[idx].float() @ K.T
        release_pages(psi[idx])
        total += float(kd_loss(z, targets.subset(idx))) * z.shape[0]
    total /= N
    if l2 > 0:
        total += 0.5 * l2 * float(K.square().sum())
    return total


def lbfgs_fit(
    psi: torch.Tensor,
    targets: KDTargets,
    init: torch.Tensor,
    cfg: FitConfig,
    chol: torch.Tensor | None = None,
) -> tuple[torch.Tensor, FitInfo]:
    """Minimise the (convex) distillation loss over K by full-batch L-BFGS.

    L-BFGS runs in whitened coordinates: with ``G + ridge = L L^T`` (the feature Gram,
    :func:`warm_start`) it optimises ``K' = K L`` and forms logits as ``Psi (L^-T K'^T)``, a
    triangular solve of size F x C per evaluation. The loss's Hessian is then close to
    (identity x softmax curvature), so L-BFGS needs a few tens of iterations instead of a few
    hundred; each evaluation is one fused pass over Psi (:func:`kd_loss_and_grad`) in the
    precision :func:`resolve_pass_dtype` picks.

    The optimiser is SciPy's L-BFGS-B (no bounds; 20 corrections). Its More-Thuente line
    search accepts the unit step at nearly every iteration: on MNIST it took 16 evaluations for
    15 iterations (r=40, degree 2) and 21 for 20 (r=20, degree 3), where ``torch.optim.LBFGS``
    with a strong-Wolfe search took 20 and 27 to the same loss. SciPy's own BLAS (OpenBLAS)
    is held to one thread meanwhile: its threads spin after each call and would take the
    cores from torch's passes (2x slower passes, measured).

    Args:
        psi: float32 features, in memory or disk-backed (a tensor over a ``numpy.memmap``):
            nothing here holds a second float32 copy of them.
        chol: lower Cholesky factor L of the ridged feature Gram (computed here if None).
    """
    from scipy.optimize import minimize
    from threadpoolctl import threadpool_limits

    if chol is None:
        chol = GramCache().factor(psi, cfg.ridge)
    L = chol.float()
    C, F = init.shape
    prep = PassTargets(targets, C)
    choice = resolve_pass_dtype(psi, prep, init.float().contiguous(), cfg.pass_dtype)
    psi_pass = pass_copy(psi, choice.dtype)
    dev = psi.device

    def weights(Kw_: torch.Tensor) -> torch.Tensor:  # K = K' L^-1, shape [C, F]
        return torch.linalg.solve_triangular(L.T, Kw_.T, upper=True).T

    state = {"evals": 0, "iters": 0, "mark": math.inf}

    def fun(x: np.ndarray) -> tuple[float, np.ndarray]:
        Kw = torch.from_numpy(x.astype(np.float32)).view(C, F).to(dev)
        loss, grad_K = kd_loss_and_grad(psi_pass, weights(Kw), prep, cfg.l2)
        state["evals"] += 1
        if not math.isfinite(loss):
            raise NumericalError(f"the distillation loss diverged to {loss} after {state['evals']} evaluations")
        # chain rule through K = K' L^-1: dL/dK' = dL/dK L^-T
        grad_w = torch.linalg.solve_triangular(L, grad_K.T, upper=False).T
        return loss, grad_w.double().cpu().numpy().ravel()

    # The stopping rule is on the loss, over bursts of 5 iterations: stop when an iteration
    # lowers it by less than ``tol`` (relative), averaged over the burst.
    def callback(intermediate_result) -> None:
        state["iters"] += 1
        f = float(intermediate_result.fun)
        if state["iters"] % 5 == 0:
            if state["mark"] - f <= cfg.tol * abs(f) * 5:
                raise StopIteration
            state["mark"] = f

    x0 = (init.float() @ L).double().cpu().numpy().ravel()
    with threadpool_limits(1, user_api="blas"):
        res = minimize(fun, x0, jac=True, method="L-BFGS-B", callback=callback,
                       options={"maxcor": 20, "maxiter": cfg.max_iter, "maxfun": int(cfg.max_iter * 1.5) + 10,
                                "ftol": 0.0, "gtol": 1e-9})
    del psi_pass
    with torch.no_grad():
        K = weights(torch.from_numpy(res.x.astype(np.float32)).view(C, F).to(dev)).contiguous()
    final = final_loss(psi, K, targets, cfg.l2)
    if not math.isfinite(final) or not torch.isfinite(K).all():
        raise NumericalError("the distillation loss diverged (NaN/Inf in K); lower the temperature or add --l2")
    info = FitInfo(iterations=int(state["iters"]), loss_evals=state["evals"], final_loss=final, extra=choice.as_dict())
    return K.detach().contiguous(), info


def engine_memory(n_rows: int, n_features: int, pass_dtype: str = "bfloat16", *, disk_backed: bool = False,
                  n_classes: int = 10, gram_rows: int = 10000) -> dict[str, int]:
    """Bytes of the large arrays one :func:`lbfgs_fit` (with its warm start) holds at once.

    ``disk_backed``: the features are a ``numpy.memmap`` (or a tensor over one), so their
    float32 bytes live in the file and the page cache, not in the process; a float32 pass then
    reads the file every pass, a bfloat16 pass reads its in-memory copy. ``auto`` is counted
    as ``bfloat16``, the larger.
    """
    N, F, C = n_rows, n_features, n_classes
    parts = {} if disk_backed else {"features (float32)": N * F * 4}
    if pass_dtype in ("bfloat16", "auto"):
        parts["pass copy (bfloat16)"] = N * F * 2
    parts["Gram and factors (float64)"] = 4 * F * F * 8
    parts["Gram rows (float32)"] = min(N, gram_rows) * F * 4
    parts["targets and logits"] = 4 * N * C * 4
    parts["temporaries"] = F * F * 4 + 8 * C * max(CHUNK_ROWS, fused_rows(F, 2)) * 4
    return parts


def fit_through_device(
    psi: torch.Tensor,
    labels: torch.Tensor,
    teacher_logits: torch.Tensor | None,
    layer: torch.nn.Module,
    init: torch.Tensor,
    cfg: FitConfig,
    checkpoints: Sequence[int] = (),
    on_checkpoint: Callable[[int, torch.nn.Module], None] | None = None,
    rows: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> FitInfo:
    """Hardware-aware training: minibatch Adam on the layer's parameters, K programmed first.

    ``cfg.aware_steps`` steps (or ``cfg.device_epochs`` passes over the data, when given) of
    minibatches of ``min(cfg.batch_size, N)`` rows, reshuffled every pass.

    The device layer replaces ``psi @ K^T``; it draws fresh noise in each forward pass and
    passes gradients straight through its quantizers.

    Args:
        checkpoints: step counts (below the total) after which ``on_checkpoint(steps, layer)``
            is called with a copy of the layer in eval mode: the layer a run of exactly that
            many steps ends with. The copy and the saved and restored RNG state keep the
            training itself unchanged, so the last step's result is the same with or without
            checkpoints (a multi-fidelity search scores its trials' rungs this way). Their time
            is not counted in the returned seconds.
        rows: ``rows(idx)`` gives the features of training rows ``idx`` for each minibatch
            (default ``psi[idx]``): a device-computed lift recomputes them with fresh noise
            per step (:func:`codesign.distill.lift_training_rows`).
    """
    if cfg.method == "naive":
        raise ConfigError("method='naive' is a closed-form float fit; it cannot be trained through a device")
    targets = KDTargets(teacher_logits if cfg.effective_alpha > 0 else None, labels, cfg.temperature, cfg.effective_alpha)
    layer.load_matrix(init)
    params = [p for p in layer.parameters() if p.requires_grad]
    t0 = time.perf_counter()
    N = psi.shape[0]
    batch = min(cfg.batch_size, N)
    total = cfg.aware_steps if cfg.device_epochs is None else cfg.device_epochs * math.ceil(N / batch)
    if not params or total == 0:
        return FitInfo(seconds=0.0)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    opt = torch.optim.Adam(params, lr=cfg.lr)
    stops = sorted({int(s) for s in checkpoints if 0 < int(s) < total}) if on_checkpoint is not None else []
    paused = 0.0  # seconds spent in on_checkpoint
    steps = 0
    layer.train()
    loss = torch.tensor(float("nan"))
    while steps < total:  # epochs of shuffled minibatches until ``total`` steps
        perm = torch.randperm(N, generator=gen)
        for i in range(0, N, batch):
            idx = perm[i : i + batch]
            opt.zero_grad(set_to_none=True)
            loss = kd_loss(layer(psi[idx] if rows is None else rows(idx)), targets.subset(idx))
            if not torch.isfinite(loss):
                raise NumericalError(f"hardware-aware training diverged (loss {float(loss)}) at step {steps}; lower --lr")
            loss.backward()
            opt.step()
            release_pages(psi)  # a disk-backed matrix: the rows this minibatch read
            steps += 1
            if stops and steps == stops[0]:
                stops.pop(0)
                t_pause = time.perf_counter()
                with torch.random.fork_rng(devices=[psi.device] if psi.device.type == "cuda" else []):
                    on_checkpoint(steps, copy.deepcopy(layer).eval())
                paused += time.perf_counter() - t_pause
            if steps >= total:
                break
    layer.eval()
    return FitInfo(seconds=time.perf_counter() - t0 - paused, iterations=steps, loss_evals=steps,
                   final_loss=float(loss.detach()))
