"""The on-disk cache (teachers, their outputs, lifted features) and atomic writes.

The cache root is ``--cache-dir``, else ``$CODESIGN_CACHE``, else ``~/.cache/codesign``.
Entries are keyed by a hash of everything that determines their content, so a changed
setting never returns stale results.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import os
import shutil
import tempfile
import struct
import threading
import zipfile
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterable, Iterator

import numpy as np

from .errors import ConfigError

#: Environment variable naming the default cache folder.
CACHE_ENV = "CODESIGN_CACHE"


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """The cache folder (created on first use)."""
    path = default_cache_dir() if cache_dir is None else Path(cache_dir)
    path.mkdir(parents=True, exist_ok=True)
    return path


def default_cache_dir() -> Path:
    """``$CODESIGN_CACHE``, else ``~/.cache/codesign`` (not created)."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "codesign")


def check_writable_dir(path: str | os.PathLike | None, option: str) -> Path | None:
    """Refuse, before any work, an output folder the command could not write to.

    ``path`` may not exist yet (it is created later, with its parents): then its nearest
    existing ancestor must be a writable folder. Nothing is created here. The test is a real
    write (a temp file, removed at once), so read-only mounts and permissions are caught for
    every user, root included.

    Args:
        path: the folder given (None: nothing to check).
        option: how the user gave it, for the message (``--out``, ``--cache-dir``, ``$CODESIGN_CACHE``).

    Returns:
        ``path`` as a :class:`~pathlib.Path` (None for None).

    Raises:
        ConfigError: naming the option, the value and what to do.
    """
    if path is None:
        return None
    if not isinstance(path, (str, os.PathLike)):
        raise ConfigError(f"{option} {path!r}: expected a folder name (a string)")
    text = os.fspath(path)
    if not str(text).strip():
        raise ConfigError(f"{option} {text!r}: empty folder name; give a folder, or drop {option}")
    p = Path(text).expanduser()
    if p.exists() and not p.is_dir():
        raise ConfigError(f"{option} {text}: is an existing file, not a folder; give a folder")
    probe = p
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise ConfigError(f"{option} {text}: {probe} is a file, so the folder cannot be created; give another folder")
    try:
        fd, tmp = tempfile.mkstemp(dir=probe, prefix=".codesign-write-test.", suffix=".tmp")
    except OSError as exc:
        why = exc.strerror or str(exc)
        where = "the folder is not writable" if probe == p else f"it cannot be created in {probe}"
        raise ConfigError(f"{option} {text}: {where} ({why}); give a folder you can write to") from None
    os.close(fd)
    os.unlink(tmp)
    return p


_UMASK_LOCK = threading.Lock()


def _umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux ``/proc``)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def stable_hash(obj: Any, length: int = 16) -> str:
    """A short hex digest of a JSON-able object (keys sorted)."""
    blob = json.dumps(obj, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:length]


def array_fingerprint(*arrays: np.ndarray) -> str:
    """Digest of array contents (shape, dtype and bytes of a strided sample for speed)."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.shape}{a.dtype}".encode())
        flat = a.reshape(-1)
        step = max(1, flat.size // 200_000)
        h.update(np.ascontiguousarray(flat[::step]).tobytes())
    return h.hexdigest()[:16]


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temp file in the same folder and a rename.

    A crash or a full disk leaves either the old file or the new one, never half of one.
    The file gets the permissions a plain ``open()`` would give it (``0666`` less the umask),
    not ``mkstemp``'s private ``0600``, so colleagues on a shared file system can read results.
    """
    with _atomic_file(path, lambda: len(data)) as fh:
        fh.write(data)


@contextlib.contextmanager
def _atomic_file(path: str | os.PathLike, needed: Callable[[], int | None]) -> Iterator[BinaryIO]:
    """A binary file that becomes ``path`` only when the block completes: a temp file in the same
    folder, with the permissions a plain ``open()`` gives (``0666`` less the umask), synced, then
    renamed. If the block raises, the temp file is removed and ``path`` is untouched; a full disk
    becomes :func:`disk_full`'s one-line error, ``needed()`` the bytes it names.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError) and exc.errno in DISK_FULL:
            raise disk_full(path.parent, needed(), path.name) from None
        raise


#: ``errno`` values of a full disk (ENOSPC) or an exhausted quota (EDQUOT).
DISK_FULL = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))


def disk_full(folder: str | os.PathLike, needed: int | None, what: str = "") -> ConfigError:
    """The one-line error of a write that found the disk full: the folder, the space it needed
    (None: unknown) and the space free there."""
    def size(n: float) -> str:
        for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
            if abs(n) < 1024 or unit == "TiB":
                return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
            n /= 1024
        return f"{n} B"

    folder = Path(folder)
    probe = folder
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    try:
        free = shutil.disk_usage(probe).free
        free_text = f"{size(free)} free there"
    except OSError:
        free_text = "free space unknown"
    need = "" if needed is None else f" needs {size(needed)}"
    item = f"writing {what}" if what else "the write"
    return ConfigError(f"{folder}: no space left on the device ({item}{need}; {free_text}); free space there or "
                       "give a folder on another disk (--out, --cache-dir or $CODESIGN_CACHE)")


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """:func:`atomic_write_bytes` for text (UTF-8)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def atomic_save_npz(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    """``np.savez`` to ``path`` atomically."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


#: Byte alignment of a streamed array's data in its file (:func:`atomic_stream_npz`): a cache line,
#: as ``.npy`` files align theirs.
NPZ_ALIGN = 64


def atomic_stream_npz(path: str | os.PathLike, **members: "np.ndarray | tuple[tuple[int, ...], Any, Iterable[np.ndarray]]") -> None:
    """Write an uncompressed ``.npz`` atomically, streaming the large members block by block.

    A member is an array (written whole) or ``(shape, dtype, blocks)``: C-order row blocks that
    together are exactly ``shape``, written as they come, so the whole array is never held.
    The file is what ``np.savez`` writes (``np.load`` reads it), with each array's data aligned
    to :data:`NPZ_ALIGN` bytes in the file, so a member can be memory-mapped
    (:func:`codesign.students.memmap_npz`). Written to a temp file in the same folder, synced,
    then renamed: a crash, a full disk or a block iterator that raises leaves no file at
    ``path`` (or the old one), never half of one.
    """
    written = [0]  # bytes of array data written so far (a full disk names them)
    with _atomic_file(path, lambda: written[0] or None) as fh:
        with zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
            for name, value in members.items():
                if isinstance(value, np.ndarray):
                    shape, dtype, blocks = value.shape, value.dtype, [value]
                else:
                    shape, dtype, blocks = value
                dtype = np.dtype(dtype)
                with zf.open(f"{name}.npy", "w", force_zip64=True) as out:
                    out.write(_npy_header(tuple(shape), dtype, fh.tell()))
                    rows = 0
                    for block in blocks:
                        block = np.ascontiguousarray(block, dtype=dtype)
                        if block.shape[1:] != tuple(shape[1:]):
                            raise ValueError(f"{name}: a block of shape {block.shape} in an array of shape {shape}")
                        out.write(block.data.cast("B") if block.size else b"")
                        rows += block.shape[0] if block.ndim else 1
                        written[0] += block.nbytes
                    if rows != (shape[0] if shape else 1):
                        raise ValueError(f"{name}: blocks of {rows} rows for an array of shape {shape}")


def _npy_header(shape: tuple[int, ...], dtype: np.dtype, at: int) -> bytes:
    """A ``.npy`` version 1.0 header whose data starts at a multiple of :data:`NPZ_ALIGN` when
    the header is written at file offset ``at``."""
    text = repr({"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape})
    pad = -(at + 10 + len(text) + 1) % NPZ_ALIGN
    text = text + " " * pad + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text.encode("latin1")


def atomic_torch_save(path: str | os.PathLike, obj: Any) -> None:
    """``torch.save`` to ``path`` atomically."""
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def _json_default(o: Any):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
