"""Which precision the engine's passes read, chosen by measuring this machine, cached per machine.

The L-BFGS engine (:mod:`codesign.students`) reads the feature matrix once or twice per loss
evaluation. A bfloat16 copy halves the bytes, but whether it is faster depends on the CPU:
with native bfloat16 dot products (AVX512-BF16, AMX) the products run faster than in float32;
without them (AVX2 only) oneDNN widens every element first and the pass runs slower than in
float32 (issue 14 measured 4.5-5.6 s per fit in bfloat16 against 2.6-4.3 s in float32 on such
a machine). So the choice is made by timing the engine's own pass in each precision on a
slice of the real features, once per machine, and remembered in the cache folder.

The cache key is everything that changes the answer: the CPU (model name and flag set from
``/proc/cpuinfo``, else :mod:`platform`), torch's version and CPU capability, the torch thread
count, the device (a GPU's name), the column-count class (the next power of two at or above
the feature count) and any instruction-set cap set in the environment (:data:`ISA_LIMIT_VARS`).
The file is ``<cache>/pass_precision.json`` (``$CODESIGN_CACHE`` by default), written atomically; a damaged file is rebuilt. Delete it, or call
:func:`choose_pass_dtype` with ``recalibrate=True``, after changing the machine's load pattern.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .cache import atomic_write_json, default_cache_dir, stable_hash

#: Precisions the engine's passes can read (``auto`` picks one of the others by measurement).
PASS_DTYPES = ("auto", "float32", "bfloat16")
#: What :func:`choose_pass_dtype` times against each other.
CANDIDATES = ("float32", "bfloat16")
#: bfloat16 must be at least this much faster to be chosen: it costs a copy of the features
#: and 8 bits of mantissa, so a tie goes to float32.
MARGIN = 0.9
#: Timed passes per candidate (interleaved, the fastest counts: the least disturbed by others).
REPEATS = 3
#: Elements of the calibration slice: 2^23 (32 MiB in float32), larger than the last-level
#: cache of common CPUs, so that the timing includes the memory traffic the real passes pay.
CALIBRATION_ELEMENTS = 1 << 23
#: Feature matrices below this many elements (8 MiB in float32) are read in float32 without
#: calibrating: they sit in cache, a copy would cost as much as it saves, and the fit is
#: milliseconds either way.
SMALL_ELEMENTS = 1 << 21
FILE_NAME = "pass_precision.json"
_VERSION = 1

_memo: dict[str, "PassChoice"] = {}
_lock = threading.Lock()


@dataclass(frozen=True)
class PassChoice:
    """The precision chosen and why.

    Attributes:
        dtype: ``float32`` or ``bfloat16``.
        source: ``forced`` (given), ``small`` (below :data:`SMALL_ELEMENTS`), ``measured``
            (timed now) or ``cached`` (timed earlier on this machine).
        ms: fastest timed pass per candidate, in milliseconds (empty unless measured or cached).
    """

    dtype: str
    source: str
    ms: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"pass_dtype": self.dtype, "pass_dtype_source": self.source,
                **({"pass_dtype_ms": dict(self.ms)} if self.ms else {})}


#: Environment variables that cap the instruction sets oneDNN (bfloat16 products), MKL and
#: ATen use; part of the cache key when set.
ISA_LIMIT_VARS = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS", "ATEN_CPU_CAPABILITY")


def column_class(n_features: int) -> int:
    """The next power of two at or above ``n_features`` (at least 64): one calibration serves a class."""
    c = 64
    while c < n_features:
        c *= 2
    return c


def calibration_rows(n_rows: int, n_features: int) -> int:
    """Rows of the calibration slice: :data:`CALIBRATION_ELEMENTS` elements, at most ``n_rows``."""
    return max(1, min(n_rows, -(-CALIBRATION_ELEMENTS // max(n_features, 1))))


def _cpu_identity() -> dict:
    """CPU model name and a digest of its flag set (``/proc/cpuinfo``; :mod:`platform` elsewhere)."""
    info: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key, sep, value = line.partition(":")
                key = key.strip()
                if sep and key in ("model name", "Model", "cpu model", "flags", "Features") and key not in info:
                    info[key] = value.strip()
    except OSError:
        pass
    model = info.get("model name") or info.get("Model") or info.get("cpu model") or platform.processor()
    flags = " ".join(sorted((info.get("flags") or info.get("Features") or "").split()))
    return {"machine": platform.machine(), "model": model,
            "flags": hashlib.sha256(flags.encode()).hexdigest()[:16] if flags else ""}


def machine_key(n_features: int, device: str = "cpu") -> dict:
    """Everything the choice depends on (see the module docstring)."""
    import torch

    key = {**_cpu_identity(), "torch": torch.__version__, "threads": torch.get_num_threads(),
           "columns": column_class(n_features), "device": device}
    try:
        key["capability"] = torch.backends.cpu.get_cpu_capability()
    except Exception:  # noqa: BLE001 - older torch: the flags above still tell CPUs apart
        key["capability"] = ""
    if device.startswith("cuda"):
        key["device"] = f"cuda:{torch.cuda.get_device_name(torch.device(device))}"
    # Instruction-set limits of the BLAS libraries (experiments/bench_distill.py --emulate-avx2
    # sets them to time a CPU without native bfloat16): the same CPU then answers differently.
    limits = {k: os.environ[k] for k in ISA_LIMIT_VARS if os.environ.get(k)}
    if limits:
        key["isa_limits"] = limits
    return key


def cache_file(cache_dir: str | os.PathLike | None = None) -> Path:
    """``<cache>/pass_precision.json``."""
    return (default_cache_dir() if cache_dir is None else Path(cache_dir)) / FILE_NAME


def _read(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or data.get("version") != _VERSION or not isinstance(data.get("entries"), dict):
            raise ValueError("not a pass-precision cache")
        return data
    except FileNotFoundError:
        return {"version": _VERSION, "entries": {}}
    except (OSError, ValueError, UnicodeDecodeError):
        warnings.warn(f"pass-precision cache {path} could not be read; rebuilding it", stacklevel=3)
        return {"version": _VERSION, "entries": {}}


def _valid(entry) -> bool:
    return (isinstance(entry, dict) and entry.get("dtype") in CANDIDATES
            and isinstance(entry.get("ms"), dict))


def measure(time_pass: Callable[[str], float], candidates=CANDIDATES, repeats: int = REPEATS) -> dict[str, float]:
    """Fastest of ``repeats`` timed passes per candidate, in ms, after one untimed warm-up each.

    The candidates are interleaved (a, b, a, b, ...) so that a change in the machine's load
    during the calibration falls on both.
    """
    for dt in candidates:
        time_pass(dt)
    best = {dt: float("inf") for dt in candidates}
    for _ in range(repeats):
        for dt in candidates:
            best[dt] = min(best[dt], time_pass(dt) * 1e3)
    return best


def decide(ms: dict[str, float]) -> str:
    """``bfloat16`` if its pass took at most :data:`MARGIN` of float32's, else ``float32``."""
    return "bfloat16" if ms.get("bfloat16", float("inf")) <= MARGIN * ms["float32"] else "float32"


def choose_pass_dtype(
    requested: str,
    n_rows: int,
    n_features: int,
    time_pass: Callable[[str], float],
    *,
    device: str = "cpu",
    cache_dir: str | os.PathLike | None = None,
    recalibrate: bool = False,
) -> PassChoice:
    """Resolve ``requested`` (``auto``, ``float32`` or ``bfloat16``) to a precision.

    Args:
        requested: :attr:`codesign.students.FitConfig.pass_dtype`.
        n_rows, n_features: the feature matrix's shape.
        time_pass: ``time_pass(dtype_name)`` runs one engine pass over the calibration slice in
            that precision and returns its wall time in seconds (synchronised on a GPU).
        device: ``cpu`` or the GPU the passes run on (part of the cache key).
        cache_dir: cache folder (default ``$CODESIGN_CACHE``, else ``~/.cache/codesign``).
        recalibrate: time again even if this machine has an entry.
    """
    if requested != "auto":
        return PassChoice(requested, "forced")
    if n_rows * n_features < SMALL_ELEMENTS:
        return PassChoice("float32", "small")
    key = machine_key(n_features, device)
    digest = stable_hash(key)
    path = cache_file(cache_dir)
    with _lock:
        memo_key = f"{path}:{digest}"
        if not recalibrate and memo_key in _memo:
            return _memo[memo_key]
        if not recalibrate:
            entry = _read(path)["entries"].get(digest)
            if _valid(entry):
                choice = PassChoice(entry["dtype"], "cached", {k: float(v) for k, v in entry["ms"].items()})
                _memo[memo_key] = choice
                return choice
        ms = measure(time_pass)
        choice = PassChoice(decide(ms), "measured", {k: round(v, 3) for k, v in ms.items()})
        _memo[memo_key] = PassChoice(choice.dtype, "cached", choice.ms)
        data = _read(path)  # re-read: another process may have added entries meanwhile
        data["entries"][digest] = {"key": key, "dtype": choice.dtype, "ms": choice.ms,
                                   "rows": calibration_rows(n_rows, n_features),
                                   "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        try:
            atomic_write_json(path, data)
        except OSError as exc:  # a read-only cache folder: the choice still holds for this process
            warnings.warn(f"pass-precision cache {path} not written ({exc.strerror or exc}); "
                          "the calibration will run again in the next process", stacklevel=2)
        return choice


def forget() -> None:
    """Drop this process's memory of earlier choices (the file stays); for tests."""
    with _lock:
        _memo.clear()
