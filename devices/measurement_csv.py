"""Reading and writing the CSV tables of calibrators' measurement files (issue 32).

:func:`read_table` reads a CSV file whose header names the columns a calibrator documents
(:class:`~codesign.devices.calibration.Column`) and turns every defect into one
:class:`~codesign.devices.calibration.MeasurementError` line naming the file, the column, the
row and the fix: a missing file or column, an empty or non-numeric cell, a NaN. Extra columns
are ignored; a missing optional column is absent from the result. :func:`write_table` writes
such a table atomically, :func:`write_figure` a calibrator's plot.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any, Collection, Mapping, Sequence

import numpy as np

from codesign.cache import atomic_write_bytes, atomic_write_text

from .calibration import Column, MeasurementError


def read_table(path: Path, columns: Sequence[Column], *, text: Collection[str] = (),
               integer: Collection[str] = ()) -> dict[str, np.ndarray]:
    """``{column: 1-D array}`` of the CSV file ``path`` (float64; ``text`` columns as str,
    ``integer`` columns as int64).

    Raises:
        MeasurementError: one line naming ``path`` and the fix, for a missing or unreadable
            file, a missing required column, no data rows, or a cell that is empty, NaN or not
            a number (or not an integer in an ``integer`` column).
    """
    path = Path(path)
    try:
        raw = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise MeasurementError(f"{path}: no such measurement file; give the path of the CSV file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise MeasurementError(f"{path}: cannot read it as UTF-8 text ({exc.__class__.__name__}); give a CSV file") from None
    rows = [r for r in csv.reader(io.StringIO(raw)) if any(cell.strip() for cell in r)]
    if not rows:
        raise MeasurementError(f"{path}: the file is empty; give a CSV file with a header row "
                               f"({', '.join(c.name for c in columns if c.required)})")
    header = [h.strip() for h in rows[0]]
    missing = [c.name for c in columns if c.required and c.name not in header]
    if missing:
        raise MeasurementError(
            f"{path}: missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)} (the header has "
            f"{', '.join(header) or 'nothing'}); add {'them' if len(missing) > 1 else 'it'} with the units the "
            "calibrator documents")
    body = rows[1:]
    if not body:
        raise MeasurementError(f"{path}: the header has no data rows under it; add the measurements")
    out: dict[str, np.ndarray] = {}
    for col in columns:
        if col.name not in header:
            continue
        j = header.index(col.name)
        cells = []
        for i, r in enumerate(body, start=2):
            cell = r[j].strip() if j < len(r) else ""
            if not cell:
                raise MeasurementError(f"{path}: row {i}: column {col.name} is empty; fill it in ({col.unit}) or "
                                       "drop the row")
            cells.append(cell)
        if col.name in text:
            out[col.name] = np.array(cells, dtype=str)
            continue
        values = np.empty(len(cells))
        for i, cell in enumerate(cells):
            try:
                values[i] = float(cell)
            except ValueError:
                raise MeasurementError(f"{path}: row {i + 2}: column {col.name} is {cell!r}, not a number; give "
                                       f"{col.name} in {col.unit} as a plain number") from None
            if not math.isfinite(values[i]):
                raise MeasurementError(f"{path}: row {i + 2}: column {col.name} is {cell}; every measurement must "
                                       "be finite: drop the row or repeat the measurement")
        if col.name in integer:
            if np.any(values != np.round(values)):
                i = int(np.flatnonzero(values != np.round(values))[0])
                raise MeasurementError(f"{path}: row {i + 2}: column {col.name} is {cells[i]}, not an integer; "
                                       f"give {col.name} as a whole number")
            out[col.name] = values.astype(np.int64)
        else:
            out[col.name] = values
    return out


def write_table(data: Mapping[str, np.ndarray], path: Path, columns: Sequence[Column]) -> None:
    """Write the ``columns`` of ``data`` that it has as a CSV file, atomically (floats with 10
    significant digits, so phases on a DAC grid stay on it)."""
    names = [c.name for c in columns if c.name in data]
    n = len(np.asarray(data[names[0]])) if names else 0
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(names)
    cols = [np.asarray(data[name]) for name in names]
    for i in range(n):
        w.writerow([_fmt(c[i]) for c in cols])
    atomic_write_text(Path(path), buf.getvalue())


def _fmt(v: object) -> str:
    if isinstance(v, (np.integer, int)):
        return str(int(v))
    if isinstance(v, (np.floating, float)):
        return f"{float(v):.10g}"
    return str(v)


def write_figure(fig: Any, path: Path) -> None:
    """Save a matplotlib figure to ``path`` atomically (format from the suffix, PNG by default)."""
    buf = io.BytesIO()
    fig.savefig(buf, format=(Path(path).suffix.lstrip(".") or "png"), dpi=120)
    atomic_write_bytes(Path(path), buf.getvalue())
