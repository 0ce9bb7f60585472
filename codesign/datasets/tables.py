"""Tabular data in CSV files: one file split here, or a train file and a test file.

* ``--dataset data.csv``: one file, split into train and test by a stratified, seeded draw
  (options ``test=0.2``, ``seed=0``: each class puts ``test`` of its rows in the test split);
* ``--dataset train.csv,test.csv``: the two splits as given (same columns in both).

The first row is a header when any of its cells is not a number. The label column is the
``label=`` option (a header name, or a 0-based column index), else the header column named
``label``, ``target``, ``class`` or ``y`` (any case), else the only column that is not all
numbers, else the last column. Labels that are
all integers are class indices (``0..n_classes-1``); any other labels are class names, numbered
in sorted order. Every other column must be numeric; empty cells and ``nan``/``inf`` are
refused. Features are z-scored with the training split's statistics (``scale=standard``, the
default; ``minmax`` or ``none`` otherwise); ``shape=CxHxW`` declares the rows images (then
``scale`` defaults to ``none``).

    codesign distill --dataset measurements.csv:label=species,test=0.25
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..errors import ConfigError, DataError
from . import options as o
from .base import Dataset, make_dataset, scale, seeded_split

OPTIONS = ("label", "test", "seed", "scale", "shape")
LABEL_NAMES = ("label", "target", "class", "y")


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def read_table(path: Path) -> tuple[list[str] | None, list[list[str]]]:
    """The header (None when the first row is all numbers) and the rows of a CSV file, as text."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = [r for r in csv.reader(fh) if any(c.strip() for c in r)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: not a readable CSV text file ({exc}); save it as UTF-8 comma-separated text") from None
    if not rows:
        raise DataError(f"{path}: empty; give one row per sample (features and a label column)")
    header = None
    if not all(_is_number(c) for c in rows[0]):
        header, rows = [c.strip() for c in rows[0]], rows[1:]
    width = len(header) if header else len(rows[0]) if rows else 0
    for i, r in enumerate(rows):
        if len(r) != width:
            raise DataError(f"{path}: row {i + 1 + (header is not None)} has {len(r)} cells, the "
                            f"{'header' if header else 'first row'} {width}; give every row the same columns")
    if not rows:
        raise DataError(f"{path}: a header and no rows; give one row per sample")
    if width < 2:
        raise DataError(f"{path}: {width} column(s); give at least one feature column and a label column")
    return header, rows


def label_column(path: Path, header: list[str] | None, rows: Sequence[Sequence[str]], spec: str,
                 chosen: str | None) -> int:
    """The 0-based index of the label column (see the module doc)."""
    width = len(rows[0])
    if chosen is not None:
        if header and chosen in header:
            return header.index(chosen)
        if chosen.lstrip("-").isdigit() and -width <= int(chosen) < width:
            return int(chosen) % width
        names = f"its columns: {', '.join(header)}" if header else f"it has {width} columns and no header"
        raise ConfigError(f"dataset={spec!r}: label={chosen!r} is not a column of {path} ({names}); "
                          "give a header name or a 0-based index")
    if header:
        lower = [h.lower() for h in header]
        for name in LABEL_NAMES:
            if name in lower:
                return lower.index(name)
    text = [j for j in range(width) if not all(_is_number(r[j]) for r in rows)]
    if len(text) == 1:  # the one column of names
        return text[0]
    return width - 1


def _features(path: Path, rows: Sequence[Sequence[str]], label: int, header: list[str] | None) -> np.ndarray:
    cols = [j for j in range(len(rows[0])) if j != label]
    out = np.empty((len(rows), len(cols)), dtype=np.float64)
    for i, r in enumerate(rows):
        for k, j in enumerate(cols):
            cell = r[j].strip()
            try:
                out[i, k] = float(cell) if cell else math.nan
            except ValueError:
                name = header[j] if header else f"column {j}"
                raise DataError(f"{path}: row {i + 1 + (header is not None)}, {name}: {cell!r} is not a number; "
                                "features must be numeric (encode categories as numbers, or drop the column)") from None
    bad = ~np.isfinite(out)
    if bad.any():
        i, k = (int(v) for v in np.argwhere(bad)[0])
        name = header[cols[k]] if header else f"column {cols[k]}"
        raise DataError(f"{path}: {int(bad.sum())} empty, NaN or inf cell(s) (first at row "
                        f"{i + 1 + (header is not None)}, {name}); remove or impute them before loading")
    return out


def _labels(cells: list[str]) -> tuple[np.ndarray, list[str] | None]:
    cells = [c.strip() for c in cells]
    if all(c.lstrip("-").isdigit() for c in cells):
        values = sorted({int(c) for c in cells})
        if values == list(range(len(values))):
            return np.array([int(c) for c in cells], dtype=np.int64), None
        index = {str(v): i for i, v in enumerate(values)}  # 1-based or sparse codes: numbered in order
        return np.array([index[str(int(c))] for c in cells], dtype=np.int64), [str(v) for v in values]
    names = sorted(set(cells))
    index = {n: i for i, n in enumerate(names)}
    return np.array([index[c] for c in cells], dtype=np.int64), names


def load_csv(paths: Sequence[Path], spec: str, opts: Mapping[str, str]) -> Dataset:
    """Load one CSV file (split here) or a train and a test file (see the module doc)."""
    o.check_keys(spec, opts, OPTIONS)
    shape = o.dims(spec, opts, "shape", (2, 3))
    how = o.scaling(spec, opts, "none" if shape else "standard")
    tables = [(p, *read_table(p)) for p in paths]
    if len(tables) == 2:
        (p0, h0, r0), (p1, h1, r1) = tables
        if h0 != h1 or len(r0[0]) != len(r1[0]):
            raise DataError(f"{p1}: its columns ({', '.join(h1) if h1 else len(r1[0])}) differ from {p0}'s "
                            f"({', '.join(h0) if h0 else len(r0[0])}); give both files the same columns")
        if "test" in opts or "seed" in opts:
            raise ConfigError(f"dataset={spec!r}: test= and seed= choose a split of one file; two files are the "
                              "split already (drop them, or give one file)")
    path, header, rows = tables[0]
    label = label_column(path, header, rows, spec, opts.get("label"))
    all_rows = [r for _, _, rs in tables for r in rs]
    y, names = _labels([r[label] for r in all_rows])
    where = " and ".join(str(p) for p in paths)
    xs = [_features(p, rs, label, h) for p, h, rs in tables]
    if len(tables) == 2:
        n0 = len(tables[0][2])
        x_train, x_test, y_train, y_test = xs[0], xs[1], y[:n0], y[n0:]
    else:
        train_idx, test_idx = seeded_split(len(y), y, o.share(spec, opts, 0.2), o.seed(spec, opts))
        x_train, x_test, y_train, y_test = xs[0][train_idx], xs[0][test_idx], y[train_idx], y[test_idx]
    if len(x_test) == 0:
        raise DataError(f"{where}: too few rows to hold out a test split; give more rows or a separate test file")
    x_train, x_test = x_train.astype(np.float32), x_test.astype(np.float32)
    ds = make_dataset(spec, x_train, y_train, x_test, y_test, where=where, image_shape=shape, classes=names)
    x_train, x_test = scale(ds.x_train, ds.x_test, how)
    source = f"{where} (label column {header[label] if header else label}, scale {how})"
    return make_dataset(spec, x_train, ds.y_train, x_test, ds.y_test, where=where, image_shape=shape,
                        classes=ds.classes, source=source)
