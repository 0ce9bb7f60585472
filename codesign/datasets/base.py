"""The :class:`Dataset` every loader returns, its checks, its content hash and a seeded split.

Every loader in :mod:`codesign.datasets` ends in :func:`make_dataset`, which converts the
arrays (float32 inputs ``[n, d]``, int64 labels), refuses bad data with a one-line
:class:`~codesign.errors.DataError` naming the file and the fix, and hashes the contents
(:attr:`Dataset.fingerprint`, which enters every cache key and a search's identity).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..errors import DataError


@dataclass(frozen=True)
class Dataset:
    """A train/test split of flattened inputs and integer labels.

    Attributes:
        name: the data set as it was asked for (``digits``, ``wine``, ``path/to/data.npz``...);
            :func:`codesign.datasets.load_dataset` loads it again from this name.
        x_train: ``[n_train, d]`` float32.
        y_train: ``[n_train]`` int64 labels in ``0..n_classes-1``.
        x_test: ``[n_test, d]`` float32.
        y_test: ``[n_test]`` int64.
        image_shape: ``(channels, height, width)`` of an image data set (``channels * height *
            width == d``); None for vectors (tabular data), which image-only teachers and
            augmentation refuse.
        classes: class names, by label.
        source: where the data was read from (for reports).
        fingerprint: a hash of the contents (arrays, classes, image shape); computed when not given.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    image_shape: tuple[int, int, int] | None
    classes: tuple[str, ...]
    source: str
    fingerprint: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if self.image_shape is not None:
            object.__setattr__(self, "image_shape", tuple(int(s) for s in self.image_shape))
        object.__setattr__(self, "classes", tuple(str(c) for c in self.classes))
        if not self.fingerprint:
            object.__setattr__(self, "fingerprint", content_hash(
                self.x_train, self.y_train, self.x_test, self.y_test, extra=(self.image_shape, self.classes)))

    @property
    def n_classes(self) -> int:
        """Number of classes (``len(classes)``)."""
        return len(self.classes)

    @property
    def n_inputs(self) -> int:
        """Input width ``d``."""
        return int(self.x_train.shape[1])

    @property
    def is_image(self) -> bool:
        """Whether the rows are images (:attr:`image_shape` is known)."""
        return self.image_shape is not None

    @property
    def slug(self) -> str:
        """A short file-name-safe label of the data set, for cache folder names."""
        base = self.name.rstrip("/").replace("\\", "/").split("/")[-1]
        base = re.sub(r"[^A-Za-z0-9_.-]+", "_", base).strip("._") or "data"
        return base[:40]


def content_hash(*arrays: np.ndarray, extra: object = None) -> str:
    """SHA-256 of every byte of ``arrays`` (with shapes and dtypes) and ``repr(extra)``; 16 hex digits."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.shape}{a.dtype.str}".encode())
        h.update(memoryview(a).cast("B"))
    h.update(repr(extra).encode())
    return h.hexdigest()[:16]


def as_inputs(x: np.ndarray, where: str, what: str) -> np.ndarray:
    """``x`` as float32 ``[n, d]``; refuse non-numeric, empty or non-finite arrays."""
    x = np.asarray(x)
    if x.dtype == object or not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
        raise DataError(f"{where}: {what} has dtype {x.dtype}, not numbers; store the inputs as a float or int array")
    if np.issubdtype(x.dtype, np.complexfloating):
        raise DataError(f"{where}: {what} is complex ({x.dtype}); store real-valued inputs")
    if x.ndim < 2 or x.shape[0] == 0 or x.size == 0:
        raise DataError(f"{where}: {what} has shape {list(x.shape)}; expected [n_samples, n_features] "
                        "(or [n, height, width(, channels)] images) with n >= 1")
    x = x.reshape(len(x), -1)
    if np.issubdtype(x.dtype, np.floating):
        bad = ~np.isfinite(x)
        if bad.any():
            row, col = (int(i) for i in np.argwhere(bad)[0])
            raise DataError(f"{where}: {what} holds {int(bad.sum())} NaN or inf value(s) (first at row {row}, "
                            f"column {col}); remove or impute them before loading")
    return x.astype(np.float32, copy=False)


def as_labels(y: np.ndarray, where: str, what: str) -> np.ndarray:
    """``y`` as int64 ``[n]``; refuse float labels with fractions, non-finite or 2-D labels."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise DataError(f"{where}: {what} has shape {list(y.shape)}; expected one integer label per sample [n] "
                        "(not one-hot: use argmax)")
    if np.issubdtype(y.dtype, np.floating):
        if not np.isfinite(y).all():
            raise DataError(f"{where}: {what} holds NaN or inf; every sample needs an integer class label")
        if not np.array_equal(y, np.round(y)):
            raise DataError(f"{where}: {what} holds non-integer values ({y[y != np.round(y)][0]!r}); labels must be "
                            "class indices 0..n_classes-1 (this is a classifier, not a regression)")
    elif not (np.issubdtype(y.dtype, np.integer) or y.dtype == bool):
        raise DataError(f"{where}: {what} has dtype {y.dtype}; store integer class indices 0..n_classes-1 "
                        "(and the names in 'classes')")
    return y.astype(np.int64)


def make_dataset(
    name: str,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    *,
    where: str,
    image_shape: Sequence[int] | None = None,
    classes: Sequence[str] | None = None,
    source: str | None = None,
) -> Dataset:
    """Check and convert arrays into a :class:`Dataset`.

    Args:
        name: the data set's name (what :func:`~codesign.datasets.load_dataset` was given).
        x_train: training inputs ``[n, ...]`` (flattened here).
        y_train: integer training labels ``[n]``.
        x_test: test inputs ``[m, ...]``.
        y_test: integer test labels ``[m]``.
        where: the file or folder named in errors.
        image_shape: ``(c, h, w)`` when the rows are images; None for vectors.
        classes: class names by label (default ``"0"``, ``"1"``...).
        source: where the data came from (default ``where``).

    Raises:
        DataError: non-numeric or non-finite inputs, lengths that disagree, train and test of
            different widths, labels out of range or negative, a single class, or an image shape
            that does not match the width.
    """
    xs = {"train": as_inputs(x_train, where, "x_train"), "test": as_inputs(x_test, where, "x_test")}
    ys = {"train": as_labels(y_train, where, "y_train"), "test": as_labels(y_test, where, "y_test")}
    for split in ("train", "test"):
        if len(xs[split]) != len(ys[split]):
            raise DataError(f"{where}: x_{split} has {len(xs[split])} rows but y_{split} has {len(ys[split])} labels; "
                            "give one label per sample")
    if xs["train"].shape[1] != xs["test"].shape[1]:
        raise DataError(f"{where}: x_train rows have {xs['train'].shape[1]} values but x_test rows "
                        f"{xs['test'].shape[1]}; train and test need the same features")
    low = min(int(ys["train"].min()), int(ys["test"].min()))
    if low < 0:
        raise DataError(f"{where}: labels out of range (found {low}); labels must be class indices 0..n_classes-1")
    high = max(int(ys["train"].max()), int(ys["test"].max()))
    if classes is None:
        classes = tuple(str(i) for i in range(high + 1))
    classes = tuple(str(c) for c in classes)
    if high >= len(classes):
        raise DataError(f"{where}: labels out of range: found label {high} but only {len(classes)} classes are named "
                        f"(0..{len(classes) - 1}); fix the labels or list every class in 'classes'")
    present = np.unique(ys["train"])
    if len(present) < 2:
        raise DataError(f"{where}: y_train holds a single class ({classes[int(present[0])]!r}); a classifier needs "
                        "samples of at least two classes")
    d = xs["train"].shape[1]
    if image_shape is not None:
        image_shape = tuple(int(s) for s in image_shape)
        if len(image_shape) == 2:
            image_shape = (1, *image_shape)
        if len(image_shape) != 3 or int(np.prod(image_shape)) != d or min(image_shape) < 1:
            raise DataError(f"{where}: image shape {list(image_shape)} does not hold {d} values per sample; give "
                            "(channels, height, width) with channels*height*width equal to the row width")
    return Dataset(name, xs["train"], ys["train"], xs["test"], ys["test"], image_shape, classes, source or where)


def seeded_split(n: int, labels: np.ndarray, test_share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train and test indices: a seeded split stratified by label (every class keeps its share).

    Each class puts ``round(test_share * count)`` of its samples (at least one where it has two
    or more) into the test split, chosen by ``numpy.random.default_rng(seed)``.
    """
    rng = np.random.default_rng(seed)
    test: list[np.ndarray] = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        k = int(round(test_share * len(idx)))
        if len(idx) >= 2:
            k = min(max(k, 1), len(idx) - 1)
        else:
            k = 0
        test.append(idx[:k])
    test_idx = np.sort(np.concatenate(test)) if test else np.array([], dtype=np.int64)
    mask = np.zeros(n, dtype=bool)
    mask[test_idx] = True
    return np.flatnonzero(~mask), test_idx


def standardize(x_train: np.ndarray, x_test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Z-score both splits with the training split's mean and standard deviation (constant columns: 1)."""
    mean = x_train.mean(0, dtype=np.float64)
    std = x_train.std(0, dtype=np.float64)
    std[std == 0] = 1.0
    return ((x_train - mean) / std).astype(np.float32), ((x_test - mean) / std).astype(np.float32)


def minmax(x_train: np.ndarray, x_test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scale both splits to [0, 1] per column with the training split's range (constant columns: 0)."""
    lo = x_train.min(0).astype(np.float64)
    span = x_train.max(0).astype(np.float64) - lo
    span[span == 0] = 1.0
    return ((x_train - lo) / span).astype(np.float32), ((x_test - lo) / span).astype(np.float32)


SCALINGS = ("none", "standard", "minmax")


def scale(x_train: np.ndarray, x_test: np.ndarray, how: str) -> tuple[np.ndarray, np.ndarray]:
    """Apply the scaling ``how`` (one of :data:`SCALINGS`) fitted on the training split."""
    if how == "standard":
        return standardize(x_train, x_test)
    if how == "minmax":
        return minmax(x_train, x_test)
    return x_train, x_test
