"""Reading and writing the CSV tables of calibrators' measurement files (issue 32).

:func:`read_csv_table` reads a CSV file whose header names the columns a calibrator documents
(:class:`~codesign.devices.calibration.Column`) and turns every defect into one
:class:`~codesign.devices.calibration.MeasurementError` line naming the file, the row, the column
and the fix: a missing file or column, too few rows, an empty or non-numeric cell, a NaN or
infinite value. Extra columns are ignored; a missing optional column is absent from the result;
blank lines and lines starting with ``#`` (comments) are skipped. :func:`write_csv_table` writes
such a table atomically, :func:`write_figure` a calibrator's plot. Every built-in calibrator with
a table format reads and writes through here; a plugin's calibrator may too.
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


def read_csv_table(path: Path | str, columns: Sequence[Column], *, text: Collection[str] = (),
                   integer: Collection[str] = (), min_rows: int = 1) -> dict[str, np.ndarray]:
    """``{column: 1-D array}`` of the CSV file ``path`` (float64; ``text`` columns as str,
    ``integer`` columns as int64), with at least ``min_rows`` data rows.

    Raises:
        MeasurementError: one line naming ``path`` and the fix, for a missing or unreadable
            file, a missing required column (the message lists the file's columns), fewer than
            ``min_rows`` data rows, or a cell that is empty, NaN, infinite or not a number (or
            not an integer in an ``integer`` column).
    """
    path = Path(path).expanduser()
    required = ", ".join(c.name for c in columns if c.required)
    try:
        raw = path.read_text(encoding="utf-8-sig")
    except (FileNotFoundError, IsADirectoryError):
        raise MeasurementError(f"{path}: no such measurement file; give a CSV file with the columns {required}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise MeasurementError(f"{path}: cannot read it as UTF-8 text ({exc.__class__.__name__}); give a CSV file") from None
    try:
        rows = [r for r in csv.reader(io.StringIO(raw))
                if any(cell.strip() for cell in r) and not r[0].lstrip().startswith("#")]
    except csv.Error as exc:
        raise MeasurementError(f"{path}: not a readable CSV file ({exc}); give a CSV file with a header row") from None
    if not rows:
        raise MeasurementError(f"{path}: the file is empty; give a CSV file with a header row ({required})")
    header = [h.strip() for h in rows[0]]
    missing = [c.name for c in columns if c.required and c.name not in header]
    if missing:
        raise MeasurementError(
            f"{path}: missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)} (the header has "
            f"{', '.join(header) or 'nothing'}); add {'them' if len(missing) > 1 else 'it'} with the units the "
            "calibrator documents (`codesign devices`, docs/how-to/calibrate.md)")
    body = rows[1:]
    if not body:
        raise MeasurementError(f"{path}: the header has no data rows under it; add the measurements")
    if len(body) < min_rows:
        raise MeasurementError(f"{path}: {len(body)} data row(s); the fit needs at least {min_rows}")
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


def write_csv_table(data: Mapping[str, Any], columns: Sequence[Column], path: Path | str,
                    formats: Mapping[str, str] | None = None) -> None:
    """Write the ``columns`` of ``data`` that it has as a CSV file, atomically.

    ``formats``: ``{column: format spec}`` (e.g. ``".6g"``); by default integers as they are and
    floats with 10 significant digits (so phases on a DAC grid stay on it).
    """
    names = [c.name for c in columns if c.name in data]
    formats = dict(formats or {})
    n = len(np.asarray(data[names[0]])) if names else 0
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(names)
    cols = [np.asarray(data[name]) for name in names]
    fmts = [formats.get(name) for name in names]
    for i in range(n):
        w.writerow([_fmt(c[i]) if f is None else format(c[i], f) for c, f in zip(cols, fmts)])
    atomic_write_text(Path(path).expanduser(), buf.getvalue())


def _fmt(v: object) -> str:
    if isinstance(v, (np.integer, int)) and not isinstance(v, bool):
        return str(int(v))
    if isinstance(v, (np.floating, float)):
        return f"{float(v):.10g}"
    return str(v)


def write_figure(fig: Any, path: Path | str) -> None:
    """Save a matplotlib figure to ``path`` atomically (format from the suffix, PNG by default)."""
    buf = io.BytesIO()
    fig.savefig(buf, format=(Path(path).suffix.lstrip(".") or "png"), dpi=120)
    atomic_write_bytes(Path(path), buf.getvalue())
