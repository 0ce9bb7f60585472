"""The feature pipeline: PCA -> dictionary lift -> standardisation, built in chunks.

Lifted features are the student's whole input, so they are computed once per
(data, rank, dictionary) and reused: in memory by the caller, and on disk through
:func:`cached_features` for searches that run in several processes. The PCA of every rank comes
from one decomposition of the training set (:func:`pca_decomposition`, memoised in the process
and on disk): the rank-r basis is the top r directions of it, exactly what a rank-r fit gives.
"""

from __future__ import annotations

import math
import os
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .cache import array_fingerprint, atomic_save_npz, atomic_stream_npz, cache_root, stable_hash
from .device_lifts import dictionary_class, make_dictionary
from .dictionaries import Dictionary
from .errors import ConfigError, NumericalError, ResourceError, check_choice, check_range
from .pca import PCA, PCADecomposition
from .plainstate import join_arrays, split_arrays
from .students import GramCache, engine_memory, memmap_npz

#: Rows lifted at a time: bounds the temporary memory of a large lift.
CHUNK_ROWS = 8192
#: Number formats of the digital host that runs the PCA projection and the lift
#: (:data:`codesign.devices.digital.DATAPATHS`); every one is simulated, not only priced.
HOST_FORMATS = ("fp32", "fp16", "int32", "int8")
#: Percentile of ``|value|`` that sets an integer host's range for the PCA scores and the lifted
#: features (values beyond it saturate): the 99.9th, as brevitas's percentile calibration and the
#: FPGA device's input quantizer (Wu et al., "Integer quantization for deep learning inference",
#: NVIDIA 2020, and TensorRT's percentile calibrator use it).
HOST_PERCENTILE = 99.9
#: Entries a percentile is taken on (a seeded sample of a large matrix).
HOST_PERCENTILE_SAMPLE = 1 << 20


def host_quantize(t: torch.Tensor, fmt: str, scale: float | torch.Tensor | None = None) -> torch.Tensor:
    """``t`` as the host holds it in number format ``fmt``.

    ``fmt`` ``fp32``: unchanged; ``fp16``: rounded to half precision; ``int8`` / ``int32``:
    symmetric integers with zero point 0, ``scale`` the value of the largest positive code
    ``2^(b-1) - 1`` (per tensor, or a column of per-row scales), rounded half to even and
    saturated to ``[-2^(b-1), 2^(b-1) - 1]``. int8 is computed in float32 exactly as the exported
    ONNX graph does (``Div``, ``Round``, ``Clip``, ``Mul`` by the float32 step), so the two agree
    bit for bit; int32 codes exceed float32's mantissa and are computed in float64.
    """
    if fmt == "fp32":
        return t
    if fmt == "fp16":
        return t.to(torch.float16).to(t.dtype)
    return host_codes(t, fmt, scale) * host_step(fmt, scale, t.dtype)


def host_step(fmt: str, scale: float | torch.Tensor | None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The value of one integer code of ``fmt`` for range ``scale`` (``scale / (2^(b-1) - 1)``;
    float32 for int8, as the export's constant, float64 for int32)."""
    top = 2 ** ((8 if fmt == "int8" else 32) - 1)
    step = torch.as_tensor(1.0 if scale is None else scale, dtype=torch.float64) / (top - 1)
    step = torch.where(step > 0, step, torch.ones_like(step))
    return step.to(torch.float32 if fmt == "int8" else torch.float64)


def host_codes(t: torch.Tensor, fmt: str, scale: float | torch.Tensor | None) -> torch.Tensor:
    """The integer codes (as floats) of ``t`` in ``fmt`` (:func:`host_quantize` without the step)."""
    top = 2 ** ((8 if fmt == "int8" else 32) - 1)
    step = host_step(fmt, scale)
    work = t.to(step.dtype)
    return torch.clamp(torch.round(work / step), -top, top - 1).to(t.dtype)


def _percentile_abs(t: torch.Tensor, seed: int = 0) -> float:
    """The :data:`HOST_PERCENTILE` th percentile of ``|t|`` (on a seeded sample of its entries)."""
    flat = t.reshape(-1).abs().float()
    if flat.numel() > HOST_PERCENTILE_SAMPLE:
        gen = torch.Generator().manual_seed(seed)
        flat = flat[torch.randint(flat.numel(), (HOST_PERCENTILE_SAMPLE,), generator=gen)]
    return float(torch.quantile(flat, HOST_PERCENTILE / 100)) if flat.numel() else 1.0
#: Decompositions :func:`pca_decomposition` keeps in memory (one per training set).
PCA_MEMO_SIZE = 2
_PCA_MEMO: "OrderedDict[str, PCADecomposition]" = OrderedDict()


def pca_decomposition(x_train: np.ndarray, *, cache_dir: str | os.PathLike | None = None,
                      disk: bool = True, data_key: str | None = None) -> PCADecomposition:
    """The :class:`~codesign.pca.PCADecomposition` of ``x_train``, computed once per training set.

    Memoised in this process (the last :data:`PCA_MEMO_SIZE` training sets) and, with ``disk``,
    in ``CACHE/pca/`` keyed by the data's fingerprint, so every rank of a search, in every trial
    process, takes its basis from one decomposition.

    Args:
        data_key: a hash of every byte of the data set ``x_train`` comes from
            (:attr:`codesign.datasets.Dataset.fingerprint`); None: a fingerprint of a strided
            sample of ``x_train``.
    """
    data = array_fingerprint(x_train) if data_key is None else f"dataset:{data_key}"
    key = stable_hash({"data": data, "shape": list(x_train.shape), "v": 1})
    hit = _PCA_MEMO.get(key)
    if hit is not None:
        _PCA_MEMO.move_to_end(key)
        return hit
    dec = None
    path = Path(cache_root(cache_dir)) / "pca" / f"pca-{key}.npz" if disk else None
    if path is not None and path.is_file():
        try:  # arrays only: nothing in the file is unpickled
            with np.load(path, allow_pickle=False) as f:
                dec = PCADecomposition.from_state_dict({k: f[k] for k in f.files})
        except Exception as exc:  # noqa: BLE001 - a damaged cache entry is rebuilt, never trusted
            warnings.warn(f"PCA cache entry {path} could not be read ({type(exc).__name__}); rebuilding it",
                          stacklevel=2)
            path.unlink(missing_ok=True)
            dec = None
    if dec is None:
        dec = PCADecomposition.fit(x_train)
        if path is not None:
            atomic_save_npz(path, **dec.state_dict())
    _PCA_MEMO[key] = dec
    while len(_PCA_MEMO) > PCA_MEMO_SIZE:
        _PCA_MEMO.popitem(last=False)
    return dec


def dictionary_seed(dictionary: str, seed: int) -> int:
    """The seed a lift depends on: ``seed``, or 0 for a seed-free dictionary (``uses_seed`` false).

    Feature caches key on this, so every seed shares the features of a deterministic lift.
    """
    return seed if dictionary_class(dictionary).uses_seed else 0


def default_max_memory() -> int:
    """Half of the physical RAM, in bytes (the default ``--max-memory``)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") * 0.5)
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return 8 << 30


#: F x F float64 arrays a fit holds at once: the Gram, its ridge-shifted copy, the Cholesky
#: factor and one factor per ridge tried (``codesign.students.GramCache``).
GRAM_COPIES = 4


def fit_memory(n_rows: int, n_features: int) -> dict[str, int]:
    """Bytes of the large arrays of one fit on ``n_rows`` x ``n_features`` lifted features.

    The float32 feature matrices (train and test), the 16-bit copy L-BFGS's passes read (at
    most one per row), and :data:`GRAM_COPIES` ``F x F`` float64 arrays of the Gram and its
    factors. What ``--max-memory`` bounds, in distill and in every search trial.
    """
    return {
        "features": n_rows * n_features * 4,
        "pass copy": n_rows * n_features * 2,
        "Gram and factors": GRAM_COPIES * n_features * n_features * 8,
    }


#: ``--disk-features``: ``auto`` puts the lifted features on disk when the in-memory fit would
#: exceed ``--max-memory`` and the disk-backed one fits; ``always``; ``never``.
DISK_FEATURES = ("auto", "always", "never")
#: Bytes of one block of lifted rows on the disk-backed path (the lift's temporaries are a few
#: of these): at 8,000 features, 1,048 rows instead of :data:`CHUNK_ROWS`' 262 MB.
DISK_BLOCK_BYTES = 32 << 20
#: Blocks of lifted rows the disk-backed build holds at once (the raw lift, its standardised
#: copy and the dictionary's own temporaries).
DISK_BLOCKS = 4


def disk_chunk_rows(n_features: int) -> int:
    """Rows per block of the disk-backed build: :data:`DISK_BLOCK_BYTES` of float32, 256 to :data:`CHUNK_ROWS`."""
    return int(min(CHUNK_ROWS, max(256, DISK_BLOCK_BYTES // max(1, 4 * n_features))))


def disk_fit_memory(n_rows: int, n_test: int, n_features: int) -> dict[str, int]:
    """Bytes of the large arrays of one fit whose lifted features live on disk (memory-mapped).

    What the engine holds (:func:`codesign.students.engine_memory` with ``disk_backed``: the
    bfloat16 pass copy, the Gram and its factors, the Gram's strided rows, targets and
    temporaries), the lift's blocks while the file is written, and the scored split, which a
    device's layers read whole (counted whether or not a device is given).
    """
    return {
        **engine_memory(n_rows, n_features, disk_backed=True),
        "lift blocks (float32)": DISK_BLOCKS * min(disk_chunk_rows(n_features), max(n_rows, n_test)) * n_features * 4,
        "scored split (float32)": n_test * n_features * 4,
    }


@dataclass(frozen=True)
class MemoryPlan:
    """Where a fit's lifted features live and what its large arrays take (``--max-memory``).

    ``disk_backed``: written once to the feature cache and memory-mapped read-only
    (:func:`cached_features`); ``parts``: the estimate checked, by array; ``budget``: ``--max-memory``.
    """

    disk_backed: bool
    parts: dict
    budget: int

    @property
    def need(self) -> int:
        return int(sum(self.parts.values()))

    def as_dict(self) -> dict:
        """What a run's metrics record of it."""
        return {"features_disk_backed": self.disk_backed, "memory_estimate_bytes": self.need,
                "memory_estimate": dict(self.parts), "max_memory_bytes": self.budget}


def parse_memory(text: str | int | None) -> int:
    """Parse ``--max-memory`` (``"8G"``, ``"512M"``, bytes) into bytes."""
    if text is None:
        return default_max_memory()
    bad = ConfigError(f"max_memory={text!r}: expected a positive size such as 8G, 512M or a byte count")
    if isinstance(text, bool):
        raise bad
    if isinstance(text, int):
        if text <= 0:
            raise bad
        return text
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    s = str(text).strip().upper().removesuffix("B")
    try:
        value = float(s[:-1]) * units[s[-1]] if s and s[-1] in units else float(s)
    except ValueError:
        raise bad from None
    if not math.isfinite(value) or value < 1:
        raise bad
    return int(value)


def format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


@dataclass
class FeaturePipeline:
    """PCA of rank r, then a dictionary, then standardisation with training statistics.

    Column 0 (the dictionary's constant) is left at exactly 1; every other column is shifted
    and scaled to zero mean and unit variance on the training set (columns with zero variance
    are only shifted).

    Args:
        rank: PCA rank r.
        dictionary: a :class:`~codesign.dictionaries.Dictionary` (unfitted).
        max_memory: bytes a feature matrix may take; larger ones raise ``ResourceError``
            before anything is allocated.
        seed: seeds data-dependent dictionaries (k-means).
        host_datapath: the digital host's number format for the PCA projection and the lift
            (:data:`HOST_FORMATS`), simulated: ``int8`` quantizes the pixels (per tensor, their
            abs-max), the projection's weights (per row, whitening folded in), the scores and
            the standardised lifted features (per tensor, their :data:`HOST_PERCENTILE` th
            percentile on the training set; the standardisation is one scale per raw feature)
            and accumulates exactly (int32); ``fp16`` rounds the same values to half precision;
            ``int32`` as int8 with 32-bit codes; ``fp32`` is the float32 reference.
    """

    rank: int
    dictionary: Dictionary
    max_memory: int | None = None
    seed: int = 0
    host_datapath: str = "fp32"

    def __post_init__(self) -> None:
        check_range("pca_rank", self.rank, 1, None, integer=True)
        check_choice("host_datapath", self.host_datapath, HOST_FORMATS)
        self.host_scales_: dict[str, float] = {}
        if self.max_memory is None:
            self.max_memory = default_max_memory()

    @property
    def n_features(self) -> int:
        return self.dictionary.n_features(self.rank)

    def check_memory(self, n_rows: int) -> None:
        """Refuse, before allocating, a fit whose large arrays exceed ``max_memory`` (:func:`fit_memory`)."""
        parts = fit_memory(n_rows, self.n_features)
        need = sum(parts.values())
        if need > self.max_memory:
            detail = ", ".join(f"{k} {format_bytes(v)}" for k, v in parts.items())
            raise ResourceError(
                f"fitting pca_rank={self.rank}, {self.dictionary.describe()} ({n_rows} rows x {self.n_features} "
                f"features) would need {format_bytes(need)} ({detail}) but --max-memory is "
                f"{format_bytes(self.max_memory)}; lower the rank or the dictionary's size, or raise --max-memory"
            )

    def plan_memory(self, n_train: int, n_test: int, disk: str = "never") -> MemoryPlan:
        """Where the lifted features of ``n_train`` + ``n_test`` rows live, checked against ``max_memory``.

        ``disk`` (:data:`DISK_FEATURES`): ``never`` keeps them in memory (:func:`fit_memory` of
        both splits must fit); ``always`` puts them on disk (:func:`disk_fit_memory` must fit);
        ``auto`` keeps them in memory when that fits, else on disk. Raises ``ResourceError``,
        one line naming the estimate and the fix, when the chosen path does not fit.
        """
        check_choice("disk_features", disk, DISK_FEATURES)
        F, budget = self.n_features, int(self.max_memory)
        memory = fit_memory(n_train + n_test, F)
        disk_parts = disk_fit_memory(n_train, n_test, F)
        if disk == "never" or (disk == "auto" and sum(memory.values()) <= budget):
            plan = MemoryPlan(False, memory, budget)
        else:
            plan = MemoryPlan(True, disk_parts, budget)
        if plan.need <= budget:
            return plan
        what = f"fitting pca_rank={self.rank}, {self.dictionary.describe()} ({n_train + n_test} rows x {F} features)"
        detail = ", ".join(f"{k} {format_bytes(v)}" for k, v in plan.parts.items())
        if not plan.disk_backed:
            fix = ("; lower the rank or the dictionary's size, raise --max-memory, or keep the features on disk "
                   f"(--disk-features auto: {format_bytes(sum(disk_parts.values()))})"
                   if sum(disk_parts.values()) <= budget else
                   "; lower the rank or the dictionary's size, or raise --max-memory")
            raise ResourceError(f"{what} would need {format_bytes(plan.need)} in memory ({detail}) but --max-memory is "
                                f"{format_bytes(budget)}{fix}")
        raise ResourceError(
            f"{what} would need {format_bytes(plan.need)} even with the features on disk ({detail}; in memory: "
            f"{format_bytes(sum(memory.values()))}) but --max-memory is {format_bytes(budget)}; lower the rank or "
            f"the dictionary's size (the Gram grows as features squared), or raise --max-memory")

    def fit(self, x_train: np.ndarray, decomposition: PCADecomposition | None = None) -> "FeaturePipeline":
        """Fit PCA, the dictionary and the standardisation on the training inputs.

        Args:
            decomposition: the training set's :class:`~codesign.pca.PCADecomposition` (its top
                ``rank`` directions are the PCA; the same as fitting one); None decomposes here.
        """
        self._fit(x_train, decomposition, None)
        return self

    def transform_blocks(self, x: np.ndarray, rows: int | None = None):
        """The standardised lifted features of ``x`` as float32 numpy blocks of at most ``rows`` rows
        (default :func:`disk_chunk_rows`), in order: what :meth:`transform` returns, never whole.

        The PCA scores are computed :data:`CHUNK_ROWS` rows at a time, as :meth:`transform` does.
        """
        rows = rows or disk_chunk_rows(self.n_features)
        for i in range(0, len(x), CHUNK_ROWS):
            z = self._scores(x[i : i + CHUNK_ROWS])
            for k in range(0, len(z), rows):
                block = self.lift(z[k : k + rows])
                self._check_finite(block)
                yield block.numpy()

    def fit_transform(self, x_train: np.ndarray, decomposition: PCADecomposition | None = None) -> torch.Tensor:
        """:meth:`fit`, then the standardised features of ``x_train``, lifting it once.

        Equal to ``fit(x_train).transform(x_train)``: the raw lift is kept and standardised in
        place instead of being computed a second time.
        """
        self.check_memory(len(x_train))
        out = torch.empty(len(x_train), self.n_features, dtype=torch.float32)
        self._fit(x_train, decomposition, out)
        for i in range(0, len(out), CHUNK_ROWS):
            block = out[i : i + CHUNK_ROWS]
            torch.div(block - self.mean_, self.std_, out=block)
            if self.host_datapath != "fp32":
                block.copy_(host_quantize(block, self.host_datapath, self.host_scales_.get("psi")))
        self._check_finite(out)
        return out

    def _fit(self, x_train: np.ndarray, decomposition: PCADecomposition | None, keep: torch.Tensor | None,
             chunk: int = CHUNK_ROWS, check: bool = True) -> None:
        """Fit PCA, dictionary and standardisation; the lift is taken ``chunk`` rows at a time (a
        disk-backed build: smaller blocks, ``check`` false: the caller checked its own estimate)."""
        if check:
            self.check_memory(len(x_train))
        if decomposition is None:
            self.pca_ = PCA(self.rank).fit(x_train)
        else:
            self.pca_ = PCA(self.rank)
            self.pca_._check_rank(*x_train.shape)
            self.pca_.fit_decomposition(decomposition)
        self.host_scales_ = {}
        if self.host_datapath != "fp32":  # the integer host's ranges, calibrated on the training set
            self.host_scales_["x"] = float(np.abs(x_train).max()) or 1.0
            z = torch.cat([self._scores(x_train[i : i + CHUNK_ROWS], quantize=False)
                           for i in range(0, len(x_train), CHUNK_ROWS)])
            self.host_scales_["z"] = _percentile_abs(z, self.seed)
        # the scores chunk by chunk, as transform() computes them, so fit_transform equals fit + transform
        z = torch.cat([self._scores(x_train[i : i + CHUNK_ROWS]) for i in range(0, len(x_train), CHUNK_ROWS)])
        self.dictionary.fit(z, self.seed)
        # Mean and variance in float64 over chunks: no second copy of the lifted matrix.
        F = self.n_features
        s1 = torch.zeros(F, dtype=torch.float64)
        s2 = torch.zeros(F, dtype=torch.float64)
        for i in range(0, len(z), chunk):
            raw = self.dictionary.transform(z[i : i + chunk])
            if keep is not None:
                keep[i : i + chunk] = raw
            block = raw.double()
            s1 += block.sum(0)
            s2 += block.square().sum(0)
        n = len(z)
        mean = s1 / n
        var = (s2 / n - mean.square()).clamp_min(0)
        std = var.sqrt()
        std[std < 1e-8 * std.max().clamp_min(1e-30)] = 1.0
        mean[0], std[0] = 0.0, 1.0
        self.mean_ = mean.float()
        self.std_ = std.float()
        if self.host_datapath != "fp32":
            raw = self.dictionary.transform(z[: max(1, HOST_PERCENTILE_SAMPLE // max(F, 1))])
            self.host_scales_["psi"] = _percentile_abs((raw - self.mean_) / self.std_, self.seed)

    def lift(self, z: torch.Tensor, lift_layer: torch.nn.Module | None = None) -> torch.Tensor:
        """Standardised lifted features of PCA scores ``z`` (``[n, r]``, e.g. from a device layer).

        On a host other than fp32 the scores are taken in its format, and the standardised
        features leave it in its format (:func:`host_quantize`). ``lift_layer``: a device's
        simulation of a device-native dictionary's lift (:class:`~codesign.devices.lifts.LiftLayer`),
        computing ``phi`` in ``[1, z, phi(z)]`` instead of the exact math.
        """
        fmt, sc = self.host_datapath, self.host_scales_
        if fmt != "fp32":
            z = host_quantize(z, fmt, sc.get("z"))
        if lift_layer is None:
            raw = self.dictionary.transform(z)
        else:
            raw = torch.cat([torch.ones(len(z), 1, dtype=z.dtype), z, lift_layer(z).to(z.dtype)], 1)
        psi = (raw - self.mean_) / self.std_
        return psi if fmt == "fp32" else host_quantize(psi, fmt, sc.get("psi"))

    def host_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(W, b)`` of the host's projection in its format: ``z = x @ W.T + b`` (float32 values).

        :meth:`projection` with ``W`` in the host's format (per-row scales for integers); the
        bias ``-W mu`` is the integer accumulator's offset.
        """
        w, _ = self.projection()
        fmt = self.host_datapath
        w = host_quantize(w, fmt, w.abs().amax(1, keepdim=True)) if fmt in ("int8", "int32") else host_quantize(w, fmt)
        return w.float(), (-(w @ torch.from_numpy(self.pca_.mean_).to(w.dtype))).float()

    def host_int8_projection(self) -> dict[str, torch.Tensor]:
        """The int8 host's projection as it runs: ``z = (x_codes @ w_codes.T) * gain + bias``.

        ``w_codes`` ``[r, D]`` are the weights' int8 codes (per-row scales), ``gain`` ``[r]`` the
        float32 product of the input's step and each row's step, ``bias`` ``[r]`` float32. The
        accumulator is exact in float32: ``|acc| <= 128 x 127 x D < 2^24`` for ``D <= 1031``.
        """
        w, _ = self.projection()
        row = w.abs().amax(1, keepdim=True)
        codes = host_codes(w, "int8", row)
        w_deq = codes.double() * host_step("int8", row).double()
        gain = (host_step("int8", self.host_scales_.get("x", 1.0)).double() * host_step("int8", row).double()[:, 0])
        bias = -(w_deq @ torch.from_numpy(self.pca_.mean_).double())
        return {"w_codes": codes.float(), "gain": gain.float(), "bias": bias.float()}

    def _scores(self, x: np.ndarray | torch.Tensor, quantize: bool = True) -> torch.Tensor:
        """The PCA scores the host computes from inputs ``x`` in its format (fp32: exactly
        ``pca_.transform``)."""
        fmt = self.host_datapath
        if fmt == "fp32":
            return self.pca_.transform(x)
        if fmt == "int8":
            p = self.host_int8_projection()
            xc = host_codes(torch.as_tensor(np.asarray(x), dtype=torch.float32), fmt, self.host_scales_.get("x", 1.0))
            z = (xc @ p["w_codes"].T) * p["gain"] + p["bias"]  # integer accumulator: exact in float32
        else:
            w, b = self.host_weights()
            xq = host_quantize(torch.as_tensor(np.asarray(x), dtype=torch.float64), fmt, self.host_scales_.get("x", 1.0))
            z = (xq @ w.double().T + b.double()).float()
        return host_quantize(z, fmt, self.host_scales_["z"]) if quantize else z

    def projection(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(W, b)`` with PCA scores ``z = x @ W.T + b``: ``W`` is ``[r, D]`` (whitening folded in)."""
        pca = self.pca_
        w = torch.from_numpy(pca.components_)
        if pca.whiten:
            w = w / torch.from_numpy(np.sqrt(pca.explained_variance_))[:, None]
        return w, -(w @ torch.from_numpy(pca.mean_))

    def transform(self, x: np.ndarray) -> torch.Tensor:
        """Standardised lifted features of ``x``: ``[n, F]`` float32, built chunk by chunk."""
        self.check_memory(len(x))
        out = torch.empty(len(x), self.n_features, dtype=torch.float32)
        for i in range(0, len(x), CHUNK_ROWS):
            out[i : i + CHUNK_ROWS] = self.lift(self._scores(x[i : i + CHUNK_ROWS]))
        self._check_finite(out)
        return out

    def _check_finite(self, out: torch.Tensor) -> None:
        if not torch.isfinite(out).all():
            raise NumericalError(
                f"lifted features hold NaN or Inf ({self.dictionary.describe()}, pca_rank={self.rank}); "
                "check the input data for NaN/Inf or use a smaller dictionary"
            )

    def state_dict(self) -> dict:
        return {
            "rank": self.rank,
            "dictionary": self.dictionary.name,
            "dictionary_params": self.dictionary.params(),
            "dictionary_state": self.dictionary.state_dict(),
            "pca": self.pca_.state_dict(),
            "mean_": self.mean_.numpy(),
            "std_": self.std_.numpy(),
            "seed": self.seed,
            "host_datapath": self.host_datapath,
            "host_scales": dict(self.host_scales_),
        }

    @classmethod
    def from_state_dict(cls, state: dict) -> "FeaturePipeline":
        d = make_dictionary(state["dictionary"], **state["dictionary_params"])
        d.load_state_dict(state["dictionary_state"])
        pipe = cls(int(state["rank"]), d, seed=int(state.get("seed", 0)),
                   host_datapath=str(state.get("host_datapath", "fp32")))  # saved before issue 26: fp32
        pipe.host_scales_ = {k: float(v) for k, v in dict(state.get("host_scales") or {}).items()}
        pipe.pca_ = PCA.from_state_dict(state["pca"])
        pipe.mean_ = torch.as_tensor(np.asarray(state["mean_"]), dtype=torch.float32)
        pipe.std_ = torch.as_tensor(np.asarray(state["std_"]), dtype=torch.float32)
        return pipe


@dataclass
class Features:
    """A fitted pipeline and its standardised train/test feature matrices.

    ``gram`` caches the training Gram's factors for every student fitted on these features.
    ``memory``: the :class:`MemoryPlan` checked when they were built; with ``disk_backed`` true,
    ``train`` and ``test`` are read-only tensors over memory-mapped cache files (``path``).
    """

    pipeline: FeaturePipeline
    train: torch.Tensor
    test: torch.Tensor
    gram: "GramCache" = None  # type: ignore[assignment]
    memory: MemoryPlan | None = None
    path: Path | None = None

    def __post_init__(self) -> None:
        if self.gram is None:
            self.gram = GramCache()

    @property
    def disk_backed(self) -> bool:
        return self.memory is not None and self.memory.disk_backed


def feature_plan(rank: int, dictionary: str, dictionary_params: dict, n_train: int, n_test: int, *,
                 max_memory: int | None = None, disk: str = "never") -> MemoryPlan:
    """The :class:`MemoryPlan` of lifting ``n_train`` + ``n_test`` rows (:meth:`FeaturePipeline.plan_memory`),
    before anything is built."""
    pipe = FeaturePipeline(rank, make_dictionary(dictionary, **dictionary_params), max_memory)
    return pipe.plan_memory(n_train, n_test, disk)


def build_features(
    x_train: np.ndarray,
    x_test: np.ndarray,
    rank: int,
    dictionary: str,
    dictionary_params: dict,
    *,
    seed: int = 0,
    max_memory: int | None = None,
    decomposition: PCADecomposition | None = None,
    host_datapath: str = "fp32",
) -> Features:
    """Fit the pipeline on ``x_train`` and lift both splits, in memory.

    Args:
        decomposition: ``x_train``'s PCA decomposition (:func:`pca_decomposition`), shared by
            every rank; None decomposes here.
    """
    pipe = FeaturePipeline(rank, make_dictionary(dictionary, **dictionary_params), max_memory, seed, host_datapath)
    plan = pipe.plan_memory(len(x_train), len(x_test), "never")
    train = pipe.fit_transform(x_train, decomposition)
    return Features(pipe, train, pipe.transform(x_test), memory=plan)


def cached_features(
    x_train: np.ndarray,
    x_test: np.ndarray,
    rank: int,
    dictionary: str,
    dictionary_params: dict,
    *,
    seed: int = 0,
    max_memory: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    data_key: str | None = None,
    host_datapath: str = "fp32",
    disk: str = "never",
) -> Features:
    """:func:`build_features` through a disk cache keyed by data, rank, dictionary and seed.

    With the features on disk (``disk``, :meth:`FeaturePipeline.plan_memory`), the cache entry
    is written block by block (:func:`~codesign.cache.atomic_stream_npz`: a temp file, then a
    rename) without the whole matrix ever being in memory, and both splits are returned as
    read-only memory maps of it (:func:`~codesign.students.memmap_npz`). The entry is the same
    file either way: one written in memory is mapped, one written block by block is loaded.

    Args:
        data_key: a hash of every byte of the data set both splits come from
            (:attr:`codesign.datasets.Dataset.fingerprint`); None: a fingerprint of a strided
            sample of the arrays.
        disk: ``never``, ``always`` or ``auto`` (:data:`DISK_FEATURES`).
    """
    lift = make_dictionary(dictionary, **dictionary_params)
    data = array_fingerprint(x_train, x_test) if data_key is None else f"dataset:{data_key}"
    key = stable_hash({
        "data": data, "rank": rank, "dictionary": dictionary,
        "params": lift.params(), "seed": dictionary_seed(dictionary, seed), "v": 3,
        **({"host": host_datapath} if host_datapath != "fp32" else {}),  # fp32 keeps its entries
    })
    folder = Path(cache_root(cache_dir)) / "features"
    path = folder / f"{dictionary}-r{rank}-{key}.npz"
    pipe = FeaturePipeline(rank, lift, max_memory, seed, host_datapath)
    plan = pipe.plan_memory(len(x_train), len(x_test), disk)
    if path.is_file():
        try:
            return _read_entry(path, plan, (len(x_train), len(x_test), pipe.n_features))
        except Exception as exc:  # noqa: BLE001 - a damaged or foreign cache entry is rebuilt, never trusted
            warnings.warn(f"feature cache entry {path} could not be read ({type(exc).__name__}); rebuilding it",
                          stacklevel=2)
            path.unlink(missing_ok=True)
    decomposition = pca_decomposition(x_train, cache_dir=cache_dir, data_key=data_key)
    if plan.disk_backed:
        F = pipe.n_features
        pipe._fit(x_train, decomposition, None, chunk=disk_chunk_rows(F), check=False)
        text, arrays = split_arrays(pipe.state_dict())
        atomic_stream_npz(
            path,
            train=((len(x_train), F), np.float32, pipe.transform_blocks(x_train)),
            test=((len(x_test), F), np.float32, pipe.transform_blocks(x_test)),
            state_json=np.frombuffer(text.encode("utf-8"), dtype=np.uint8),
            **arrays,
        )
        return _read_entry(path, plan, (len(x_train), len(x_test), F))
    feats = build_features(x_train, x_test, rank, dictionary, dictionary_params, seed=seed, max_memory=max_memory,
                           decomposition=decomposition, host_datapath=host_datapath)
    text, arrays = split_arrays(feats.pipeline.state_dict())
    atomic_save_npz(
        path,
        train=feats.train.numpy(),
        test=feats.test.numpy(),
        state_json=np.frombuffer(text.encode("utf-8"), dtype=np.uint8),
        **arrays,
    )
    return feats


def _read_entry(path: Path, plan: MemoryPlan, shape: tuple[int, int, int]) -> Features:
    """A feature cache entry: the pipeline, and both splits loaded, or memory-mapped (``plan.disk_backed``).

    Arrays and a JSON text only: nothing in the file is unpickled or executed. Splits of another
    shape than ``shape`` (train rows, test rows, features) are refused.
    """
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files if k not in ("train", "test", "state_json")}
        pipe = FeaturePipeline.from_state_dict(join_arrays(bytes(f["state_json"]).decode("utf-8"), arrays))
        pipe.max_memory = plan.budget
        if plan.disk_backed:
            train, test = memmap_npz(path, "train"), memmap_npz(path, "test")
        else:
            train, test = f["train"].copy(), f["test"].copy()
    n_train, n_test, F = shape
    if train.shape != (n_train, F) or test.shape != (n_test, F) or train.dtype != np.float32 or test.dtype != np.float32:
        raise ValueError(f"splits {train.shape} {train.dtype} and {test.shape} {test.dtype}, expected "
                         f"({n_train}, {F}) and ({n_test}, {F}) float32")
    with warnings.catch_warnings():  # a read-only map gives a read-only tensor: intended, nothing writes to it
        warnings.simplefilter("ignore", UserWarning)
        return Features(pipe, torch.from_numpy(train), torch.from_numpy(test), memory=plan, path=path)
