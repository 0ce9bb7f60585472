"""MNIST and Fashion-MNIST from their IDX files (no download unless asked for).

Where files are looked for, in order:

1. ``--data-root`` (the ``root`` argument), else the ``CODESIGN_DATA`` environment variable;
   inside it ``<name>/``, ``<name with _>/``, the root itself, and torchvision's
   ``MNIST/raw`` / ``FashionMNIST/raw`` layout;
2. Debian's ``/usr/share/datasets/fashion-mnist`` (Fashion-MNIST only);
3. a torchvision download into ``root`` only when ``download=True`` is asked for.

A missing, truncated or corrupt file raises :class:`codesign.errors.DataError` listing every
place looked at.
"""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np

from ..errors import DataError
from .base import Dataset

IDX_DATASETS = ("mnist", "fashion-mnist")
DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")

_FILES = {
    ("train", "images"): "train-images-idx3-ubyte",
    ("train", "labels"): "train-labels-idx1-ubyte",
    ("test", "images"): "t10k-images-idx3-ubyte",
    ("test", "labels"): "t10k-labels-idx1-ubyte",
}
_TORCHVISION_DIR = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}
CLASSES = {
    "mnist": tuple(str(i) for i in range(10)),
    "fashion-mnist": (
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
        "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
    ),
}


def candidate_dirs(name: str, root: Path | None) -> list[Path]:
    """Every folder searched for ``name``'s IDX files, in order."""
    dirs: list[Path] = []
    if root is not None:
        dirs += [root / name, root / name.replace("-", "_"), root,
                 root / _TORCHVISION_DIR[name] / "raw"]
    if name == "fashion-mnist":
        dirs.append(DEBIAN_FASHION)
    return dirs


def _find(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / f"{stem}.gz", folder / stem):
        if candidate.is_file():
            return candidate
    return None


def load_idx_dataset(name: str, root: Path | None, download: bool = False) -> Dataset:
    """Load MNIST or Fashion-MNIST (``name``) from the IDX files under ``root`` (see the module doc)."""
    dirs = candidate_dirs(name, root)
    for folder in dirs:
        paths = {key: _find(folder, stem) for key, stem in _FILES.items()}
        if all(paths.values()):
            break
    else:
        if download:
            return _download(name, root, dirs)
        where = ", ".join(str(d) for d in dirs) or "nowhere (no data root given)"
        raise DataError(
            f"{name}: IDX files (train-images-idx3-ubyte.gz and the other three) not found; looked in: "
            f"{where}. Set --data-root or CODESIGN_DATA to the folder holding {name}/, or pass --download"
        )
    x_train = read_idx(paths["train", "images"])
    y_train = read_idx(paths["train", "labels"])
    x_test = read_idx(paths["test", "images"])
    y_test = read_idx(paths["test", "labels"])
    for xs, ys, split in ((x_train, y_train, "train"), (x_test, y_test, "test")):
        if xs.ndim != 3 or ys.ndim != 1 or len(xs) != len(ys):
            raise DataError(
                f"{name} {split}: images {xs.shape} and labels {ys.shape} do not match "
                f"(in {folder})"
            )
    h, w = x_train.shape[1:]
    return Dataset(
        name,
        (x_train.reshape(len(x_train), -1).astype(np.float32) / 255.0),
        y_train.astype(np.int64),
        (x_test.reshape(len(x_test), -1).astype(np.float32) / 255.0),
        y_test.astype(np.int64),
        (1, h, w),
        CLASSES[name],
        str(folder),
    )


_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (gzip-compressed when its name ends in ``.gz``).

    Raises:
        DataError: the file is unreadable, not IDX, or shorter than its header says.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            raw = fh.read()
    except EOFError as exc:  # a gzip stream cut short
        raise DataError(f"{path}: truncated gzip file ({exc}); replace it with a good copy") from None
    except (OSError, gzip.BadGzipFile) as exc:
        raise DataError(f"{path}: cannot read ({exc}); replace the file with a good copy") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DataError(f"{path}: not an IDX file (bad magic number); replace it with a good copy")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header; replace it with a good copy")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DataError(
            f"{path}: truncated or corrupt IDX file: header says {shape} "
            f"({expected} bytes of data), file holds {len(raw) - header}; "
            "replace it with a good copy"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)


def _download(name: str, root: Path | None, dirs: list[Path]) -> Dataset:
    if root is None:
        raise DataError(f"{name}: --download needs --data-root (or CODESIGN_DATA) to write into")
    from torchvision import datasets

    cls = {"mnist": datasets.MNIST, "fashion-mnist": datasets.FashionMNIST}[name]
    try:
        for train in (True, False):
            cls(str(root), train=train, download=True)
    except Exception as exc:  # network errors come in many types
        raise DataError(f"{name}: download into {root} failed: {exc}") from None
    return load_idx_dataset(name, root, download=False)
