"""What a search writes, and reads back: the trial log, trials.csv, the front (CSV, JSON, MD).

Everything is written atomically (temp file + rename), so an interrupted search leaves either
the old file or the new one. The trial log ``trials.jsonl`` is the search's memory: one line per
finished trial, appended and fsynced by the driver as soon as the trial ends, so a search killed
at any moment resumes without redoing a finished trial. A torn last line (a kill mid-write) is
ignored on reading.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from codesign.cache import atomic_write_json, atomic_write_text
from codesign.errors import ConfigError
from codesign.inference_cost import STAGES

from .space import dictionary_params

LOG_NAME = "trials.jsonl"
SEARCH_NAME = "search.json"
FORMAT = "codesign-search/1"

# Units of cost keys, by suffix (device cost keys carry their unit in the name).
_UNITS = {
    "pj": "pJ", "nj": "nJ", "uj": "µJ", "mj": "mJ", "j": "J",
    "ns": "ns", "us": "µs", "ms": "ms", "s": "s",
    "mm2": "mm²", "um2": "µm²", "cm2": "cm²",
    "mw": "mW", "uw": "µW", "w": "W", "db": "dB", "dbm": "dBm", "ghz": "GHz", "mhz": "MHz",
}
_QUANTITY = {"energy_pj": "energy per inference", "latency_ns": "latency per inference", "area_mm2": "area"}


def cost_label(key: str) -> str:
    """An axis label with units for a cost key (``energy_pj`` -> ``energy per inference (pJ)``)."""
    stem, _, suffix = key.rpartition("_")
    if key in _QUANTITY:
        return f"{_QUANTITY[key]} ({_UNITS[suffix]})"
    if stem and suffix.lower() in _UNITS:
        return f"{stem.replace('_', ' ')} ({_UNITS[suffix.lower()]})"
    if key.startswith("n_"):
        return f"{key[2:].replace('_', ' ')} (count)"
    return key.replace("_", " ")


def cost_unit(key: str) -> str:
    """The unit of a cost key ('' when its name carries none)."""
    suffix = key.rpartition("_")[2].lower()
    return _UNITS.get(suffix, "")


def describe_config(config: Mapping[str, Any]) -> str:
    """A short text for a trial config: ``D(param=2), r=18, phase_bits=6`` (any record format)."""
    params = dictionary_params(config)
    parts = [f"{config.get('dictionary')}(" + ", ".join(f"{k}={_fmt(v)}" for k, v in params.items()) + ")"]
    parts.append(f"r={config.get('pca_rank')}")
    if config.get("pca_placement"):
        parts.append(f"pca on {config['pca_placement']}")
    for k, v in (config.get("device") or {}).items():
        parts.append(f"{k}={_fmt(v)}")
    for k, v in (config.get("kd") or {}).items():
        parts.append(f"{'T' if k == 'temperature' else k}={_fmt(v)}")
    return ", ".join(parts)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _json_default(o: Any):
    import numpy as np

    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, (np.ndarray, tuple, set)):
        return list(o.tolist() if isinstance(o, np.ndarray) else o)
    return str(o)


# --------------------------------------------------------------------------- trial log
#: A Ray trial id as Tune makes them (hex, optionally with an index): the only text a record
#: may put into a file name.
RAY_TRIAL_ID = re.compile(r"[A-Za-z0-9_]{1,64}")
STATUSES = ("completed", "failed", "infeasible")


def record_problem(record: Any) -> str:
    """Why ``record`` is not a trial record this code wrote ('' when it is one)."""
    if not isinstance(record, dict):
        return "not a JSON object"
    trial = record.get("trial")
    if isinstance(trial, bool) or not isinstance(trial, int) or trial < 0:
        return f"trial number {trial!r} is not a non-negative integer"
    if record.get("status") not in STATUSES:
        return f"status {record.get('status')!r} is none of {', '.join(STATUSES)}"
    rid = record.get("ray_trial_id")
    if rid is not None and not (isinstance(rid, str) and RAY_TRIAL_ID.fullmatch(rid)):
        return f"ray_trial_id {rid!r} is not a Ray trial id"
    if not isinstance(record.get("config"), dict) or not isinstance(record.get("metrics"), dict):
        return "config or metrics is not a JSON object"
    if record["status"] == "completed":
        m = record["metrics"]
        for key in ("hw_accuracy", "cost"):
            v = m.get(key)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v:
                return f"a completed trial with {key} = {v!r}"
    return metrics_problem(record["metrics"]) or config_problem(record["config"])


#: Metrics that are shares of rows classified correctly: in [0, 1].
ACCURACY_METRICS = ("hw_accuracy", "hw_accuracy_worst", "float_accuracy", "train_accuracy", "val_hw_accuracy",
                    "test_hw_accuracy", "test_hw_accuracy_worst", "test_float_accuracy")


def metrics_problem(m: Mapping[str, Any]) -> str:
    """Why a record's metrics are out of range ('' when none is): accuracies in [0, 1], the cost and
    every priced quantity (a key with a unit suffix, ``_std``, ``n_`` counts) finite and >= 0."""
    for key, v in m.items():
        if v is None or isinstance(v, (bool, str, dict, list)):
            continue
        if not isinstance(v, (int, float)):
            return f"metric {key} = {v!r} is not a number"
        if not math.isfinite(v):
            return f"metric {key} = {v!r} is not finite"
        if key in ACCURACY_METRICS and not 0.0 <= v <= 1.0:
            return f"metric {key} = {v!r} is outside [0, 1]"
        suffix = key.rpartition("_")[2].lower()
        if (key == "cost" or suffix in _UNITS or key.endswith("_std") or key.startswith("n_")) and v < 0:
            return f"metric {key} = {v!r} is negative"
    return ""


def config_problem(config: Mapping[str, Any]) -> str:
    """Why a record's configuration is not one a search samples ('' when it is)."""
    rank = config.get("pca_rank")
    if rank is not None and (isinstance(rank, bool) or not isinstance(rank, int) or rank < 1):
        return f"config pca_rank {rank!r} is not a positive integer"
    if config.get("dictionary") is not None and not isinstance(config.get("dictionary"), str):
        return f"config dictionary {config.get('dictionary')!r} is not a name"
    for section in ("device", "kd"):
        if config.get(section) is not None and not isinstance(config.get(section), dict):
            return f"config {section} is not a JSON object"
    return ""


def student_problem(record: Mapping[str, Any], folder: str | Path) -> str:
    """Why a record's configuration differs from its saved student's ('' when it agrees, or when it
    saved none): the PCA rank, the dictionary and its parameters, every device field it names."""
    rid = record.get("ray_trial_id")
    if not (isinstance(rid, str) and RAY_TRIAL_ID.fullmatch(rid)):
        return ""
    path = Path(folder) / student_path(record)
    if not path.is_file():
        return ""
    from codesign.artifacts import load_student
    from codesign.errors import CodesignError

    try:
        st = load_student(path)
    except CodesignError as exc:
        return f"its student {path.name} is unreadable ({exc})"
    config = record["config"]
    pipe = st.pipeline
    if config.get("pca_rank") is not None and config["pca_rank"] != pipe.rank:
        return f"config pca_rank {config['pca_rank']!r}, but its student {path.name} has rank {pipe.rank}"
    if config.get("dictionary") is not None and config["dictionary"] != pipe.dictionary.name:
        return f"config dictionary {config['dictionary']!r}, but its student {path.name} lifts with {pipe.dictionary.name!r}"
    params = pipe.dictionary.params()
    for k, v in dictionary_params(config).items():
        if k in params and params[k] != v:
            return f"config {config.get('dictionary')} {k} {v!r}, but its student {path.name} has {params[k]!r}"
    saved = st.device_config or {}
    for k, v in (config.get("device") or {}).items():
        if k in saved and saved[k] != v and not (isinstance(v, (int, float)) and isinstance(saved[k], (int, float))
                                                 and math.isclose(float(v), float(saved[k]), rel_tol=1e-9)):
            return f"config device field {k} {v!r}, but its student {path.name} has {saved[k]!r}"
    return ""


def student_path(record: Mapping[str, Any]) -> str:
    """Where a trial's student is saved, relative to the search folder (the folder may move).

    The Ray trial id comes from ``trials.jsonl``: anything but a Ray id (``../x``, ``/etc``) is
    refused, so that no file outside the folder is read or written.
    """
    rid = record.get("ray_trial_id")
    if not (isinstance(rid, str) and RAY_TRIAL_ID.fullmatch(rid)):
        raise ConfigError(f"trial {record.get('trial')!r}: ray_trial_id {rid!r} is not a Ray trial id; "
                          "the search folder's trials.jsonl is damaged or not from codesign")
    return f"students/trials/{rid}.pt"


def next_trial_number(records: Sequence[Mapping[str, Any]]) -> int:
    """The number of the next trial: one past the largest so far (never one in use)."""
    return max((int(r["trial"]) for r in records), default=-1) + 1
class TrialLog:
    """Append-only JSON-lines log of finished trials (``DIR/trials.jsonl``)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        #: ``(line number, why)`` of the lines the last :meth:`read` skipped.
        self.damaged: list[tuple[int, str]] = []
        #: ``{trial number: line number}`` of the records the last :meth:`read` returned.
        self.line_numbers: dict[int, int] = {}

    def read(self) -> list[dict]:
        """Every readable record, in the order written.

        A line that is not a JSON record of a trial (a kill in the middle of a write, a damaged
        file), or that repeats an earlier record's trial number or Ray trial id, is skipped and
        listed in :attr:`damaged`: its trial counts as not run, so ``--resume`` runs it again.
        """
        self.damaged = []
        self.line_numbers = {}
        if not self.path.is_file():
            return []
        out: list[dict] = []
        seen_numbers: set[int] = set()
        seen_ids: set[str] = set()
        with open(self.path, encoding="utf-8", errors="replace") as fh:
            for no, line in enumerate(fh, 1):
                line = line.strip()
                if not line:
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    self.damaged.append((no, "not JSON"))
                    continue
                why = record_problem(record)
                if not why and record["trial"] in seen_numbers:
                    why = f"repeats trial {record['trial']}"
                if not why and record.get("ray_trial_id") in seen_ids:
                    why = f"repeats Ray trial {record['ray_trial_id']}"
                if why:
                    self.damaged.append((no, why))
                    continue
                seen_numbers.add(record["trial"])
                self.line_numbers[record["trial"]] = no
                if record.get("ray_trial_id"):
                    seen_ids.add(record["ray_trial_id"])
                out.append(record)
        return out

    def append(self, record: Mapping[str, Any]) -> None:
        """Append one record and flush it to disk before returning."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(record, default=_json_default, sort_keys=False)
        # A torn previous line must not swallow this one: start on a fresh line.
        prefix = ""
        if self.path.is_file() and self.path.stat().st_size > 0:
            with open(self.path, "rb") as fh:
                fh.seek(-1, os.SEEK_END)
                if fh.read(1) != b"\n":
                    prefix = "\n"
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(prefix + line + "\n")
            fh.flush()
            os.fsync(fh.fileno())


# --------------------------------------------------------------------------- rows
CORE_METRICS = (
    "hw_accuracy", "cost", "hw_accuracy_std", "hw_accuracy_worst", "float_accuracy", "train_accuracy", "n_features",
)
#: Where a trial's wall time went (``objective.run_trial``): the data set and teacher, the lifted
#: features (memo, disk cache or built), the fit (reused: ~0), the device (layers, hardware draws,
#: cost), saving the student, and the rest (``trial_seconds`` less the others).
TIME_METRICS = ("time_data_s", "time_features_s", "time_fit_s", "time_hw_s", "time_save_s", "time_overhead_s")
TAIL_METRICS = ("aware_steps", "rung_accuracies", "fit_seconds", "fit_reused", "iterations", "trial_seconds",
                *TIME_METRICS, "node_id", "student")


def config_columns(config: Mapping[str, Any], dictionary_fields: Sequence[str] = ()) -> dict[str, Any]:
    """The CSV columns of a trial config: ``dictionary``, ``<dictionary>.<param>``, ``pca_rank``.

    ``dictionary_fields`` (``<dictionary>.<param>``) are always present, empty where not drawn.
    """
    row: dict[str, Any] = {"dictionary": config.get("dictionary")}
    row.update({f: None for f in dictionary_fields})
    row.update({f"{config.get('dictionary')}.{k}": v for k, v in dictionary_params(config).items()})
    row["pca_rank"] = config.get("pca_rank")
    if "pca_placement" in config:
        row["pca_placement"] = config["pca_placement"]
    return row


def trial_rows(records: Sequence[Mapping[str, Any]], device_fields: Sequence[str] = (),
               dictionary_fields: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Flat CSV rows of trial records, all with the same columns.

    Columns: trial, round, status, feasible, on_front, violation, the sampled config
    (``<dictionary>.<param>`` for dictionary parameters, ``device.<field>`` for device fields),
    the objectives and accuracies, the device's cost counts, timings, the saved student
    (relative to the search folder), Ray's trial id and the error.
    """
    fields = list(device_fields)
    dict_fields = list(dictionary_fields)
    extra: list[str] = []
    for r in records:
        for f in config_columns(r.get("config") or {}):
            if f not in ("dictionary", "pca_rank", "pca_placement") and f not in dict_fields:
                dict_fields.append(f)
        for f in (r.get("config") or {}).get("device") or {}:
            if f not in fields:
                fields.append(f)
        for k in r.get("metrics") or {}:
            if k not in CORE_METRICS and k not in TAIL_METRICS and k not in extra:
                extra.append(k)
    rows = []
    for r in records:
        cfg = r.get("config") or {}
        m = r.get("metrics") or {}
        dev = cfg.get("device") or {}
        row: dict[str, Any] = {
            "trial": r.get("trial"), "round": r.get("round"), "status": r.get("status"),
            "feasible": r.get("feasible"), "on_front": r.get("on_front"), "violation": r.get("violation", ""),
        }
        row.update(config_columns(cfg, dict_fields))
        row.update({f"device.{f}": dev.get(f) for f in fields})
        if any((rec.get("config") or {}).get("kd") for rec in records):  # --search-kd: sampled values
            row.update({f"kd.{f}": (cfg.get("kd") or {}).get(f) for f in ("temperature", "alpha")})
        row.update({k: m.get(k) for k in CORE_METRICS})
        row.update({k: m.get(k) for k in extra})
        row.update({k: m.get(k) for k in TAIL_METRICS})
        if r.get("status") == "completed" and r.get("ray_trial_id"):
            row["student"] = student_path(r)  # relative: the folder may move
        row["ray_trial_id"] = r.get("ray_trial_id")
        row["error"] = r.get("error", "")
        rows.append(row)
    return rows


def write_csv(path: str | Path, rows: Iterable[Mapping[str, Any]]) -> None:
    """Write dict rows as CSV (columns: union in first-seen order), atomically."""
    rows = list(rows)
    columns: list[str] = []
    for r in rows:
        for k in r:
            if k not in columns:
                columns.append(k)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: _csv_value(r.get(k)) for k in columns})
    atomic_write_text(path, buf.getvalue())


def _csv_value(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else str(v)
    if isinstance(v, (list, dict)):
        return json.dumps(v, default=_json_default)
    return v


def read_csv(path: str | Path) -> list[dict[str, str]]:
    """Rows of a CSV file as dicts of strings."""
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


# --------------------------------------------------------------------------- front
def write_front(out: Path, summary: Mapping[str, Any], device_fields: Sequence[str] = (),
                dictionary_fields: Sequence[str] = ()) -> None:
    """Write ``front.json``, ``front.csv`` and ``front.md`` for a search summary."""
    atomic_write_json(out / "front.json", summary)
    dict_fields = list(dictionary_fields)
    for p in summary["front"]:
        dict_fields += [f for f in config_columns(p["config"]) if f not in ("dictionary", "pca_rank", "pca_placement", *dict_fields)]
    rows = []
    for p in summary["front"]:
        row = {"trial": p["trial"], "knee": p["trial"] == summary.get("knee"), "config": p["describe"]}
        cfg = p["config"]
        row.update(config_columns(cfg, dict_fields))
        dev = cfg.get("device") or {}
        for f in list(device_fields) + [k for k in dev if k not in device_fields]:
            row[f"device.{f}"] = dev.get(f)
        row.update({
            "cost": p["cost"], summary["cost_key"]: p["cost"],
            "val_hw_accuracy": p["val_hw_accuracy"], "val_hw_accuracy_std": p.get("val_hw_accuracy_std"),
            "test_hw_accuracy": p.get("test_hw_accuracy"), "test_hw_accuracy_std": p.get("test_hw_accuracy_std"),
            "test_hw_accuracy_worst": p.get("test_hw_accuracy_worst"), "test_float_accuracy": p.get("test_float_accuracy"),
            "n_features": p.get("n_features"), "aware_steps": p.get("aware_steps"), "student": p.get("student"),
        })
        costs = p.get("costs") or {}
        row.update({k: costs[k] for k in stage_columns(costs)})
        rows.append(row)
    if rows:
        write_csv(out / "front.csv", rows)
    else:  # an empty front: a header-only CSV still parses
        atomic_write_text(out / "front.csv", "trial,knee,config,cost,val_hw_accuracy,test_hw_accuracy\n")
    atomic_write_text(out / "front.md", front_markdown(summary))


#: The stages of an inference (``codesign.inference_cost.STAGES``).
STAGE_NAMES = STAGES


#: Held-power columns of a front (issue 26): the time between inferences in the operating mode,
#: the power held and its energy, and the dynamic energy beside it.
HELD_COLUMNS = ("interval_ns", "dynamic_energy_pj", "static_power_mw", "static_energy_pj")


def stage_columns(costs: Mapping[str, Any]) -> list[str]:
    """The held-power totals (:data:`HELD_COLUMNS`) and the per-stage keys (``pca_energy_pj``,
    ``pca_static_energy_pj``...) present in a flat cost dict, in stage order."""
    return [k for k in HELD_COLUMNS if k in costs] + [
        f"{s}_{k}" for k in ("energy_pj", "static_energy_pj", "latency_ns", "area_mm2") for s in STAGE_NAMES
        if f"{s}_{k}" in costs]


def _pct(v: Any) -> str:
    return "–" if v is None else f"{100 * float(v):.2f}"


def front_markdown(summary: Mapping[str, Any], heading: str = "##") -> str:
    """A markdown summary of one search's front: settings, counts, the front table, the knee."""
    key = summary["cost_key"]
    unit = cost_unit(key)
    lines = [
        f"{heading} Pareto front: {summary['device']} on {summary['dataset']} "
        f"(teacher {summary['teacher']}, {summary['protocol']}, {summary['method']})",
        "",
        f"- objectives: hardware accuracy (mean over {summary['hw_draws']} draws, validation split "
        f"{summary['validation']:g} of the training set) vs `{key}`",
        f"- trials: {summary['n_trials']} ({summary['n_completed']} completed, "
        f"{summary.get('n_infeasible', 0)} infeasible on the device (cannot build (not priced), or above a power limit), "
        f"{summary['n_failed']} failed, "
        f"{summary['n_feasible']} feasible)"
        + (f"; scheduler asha: {summary.get('n_stopped_early', 0)} stopped before the full "
           f"{summary.get('aware_steps')} aware steps" if summary.get("scheduler") == "asha" else ""),
        "- cost: the whole inference (PCA projection, lifting, conversions, the matrix K); "
        "the stage columns split it",
        f"- held (static) power charged in operating mode `{summary.get('operating_mode', 'latency')}` "
        "(latency: for the whole inference; stream: for the pipeline's interval); host "
        f"`{summary.get('host_datapath', 'fp32')}`",
    ]
    cons = summary.get("constraints") or {}
    if cons.get("max_cost") is not None or cons.get("min_accuracy") is not None:
        lines.append(f"- constraints: max cost {cons.get('max_cost')}, min accuracy {cons.get('min_accuracy')}")
    lines.append("- test accuracy: each front member's student scored once on the real test set, after the search")
    lines.append("")
    if not summary["front"]:
        lines.append("No feasible trial: the front is empty.")
        return "\n".join(lines) + "\n"
    stages = [s for s in STAGE_NAMES if all(f"{s}_{key}" in (p.get("costs") or {}) for p in summary["front"])]
    asha = summary.get("scheduler") == "asha"  # trials stopped at a rung: say how long each front member trained
    held = key == "energy_pj" and all("static_energy_pj" in (p.get("costs") or {}) for p in summary["front"])
    if held:  # the held part of the energy beside the stages
        stages.append("static")
    lines += [
        f"| trial | config | {key} | " + "".join(f"{s} | " for s in stages)
        + "val hw acc (%) | test hw acc (%) | test float acc (%) | " + ("aware steps | " if asha else "") + "knee |",
        "|---:|---|---:|" + "---:|" * len(stages) + "---:|---:|---:|" + ("---:|" if asha else "") + ":-:|",
    ]
    for p in summary["front"]:
        knee = "★" if p["trial"] == summary.get("knee") else ""
        parts = "".join(f"{p['costs'][f'{s}_{key}']:.3g} | " for s in stages)
        steps = f"{p.get('aware_steps')} | " if asha else ""
        lines.append(
            f"| {p['trial']} | {p['describe']} | {p['cost']:.4g} | {parts}{_pct(p['val_hw_accuracy'])} | "
            f"{_pct(p.get('test_hw_accuracy'))} | {_pct(p.get('test_float_accuracy'))} | {steps}{knee} |"
        )
    k = next((p for p in summary["front"] if p["trial"] == summary.get("knee")), None)
    if k is not None:
        lines += ["", f"Knee: trial {k['trial']} ({k['describe']}): {_pct(k.get('test_hw_accuracy'))}% test accuracy "
                      f"on hardware at {k['cost']:.4g} {unit}".rstrip()]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- reading a search
def load_search(path: str | Path) -> dict[str, Any]:
    """Read a finished (or partial) search folder: its settings, trial records and front.

    Returns:
        ``{"dir", "search", "records", "front"}``; ``front`` is None if not written yet.
    """
    d = Path(path)
    meta = d / SEARCH_NAME
    if not meta.is_file():
        raise ConfigError(f"{d} is not a search folder (no {SEARCH_NAME}); give a folder written by `codesign search`")
    def read(path: Path) -> Any:
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: unreadable ({type(exc).__name__}: {exc}); restore it, or rerun the search "
                              "into a fresh --out") from None

    search = read(meta)
    if not isinstance(search, dict):
        raise ConfigError(f"{meta} is damaged (a JSON {type(search).__name__}, not a table of settings); restore it, "
                          "or rerun the search into a fresh --out")
    front_path = d / "front.json"
    front = read(front_path) if front_path.is_file() else None
    if front is not None and not isinstance(front, dict):
        raise ConfigError(f"{front_path} is damaged (a JSON {type(front).__name__}, not a front); delete it and rerun "
                          f"`codesign pareto {d}`, or `codesign search --resume --out {d}`")
    return {"dir": d, "search": search, "records": TrialLog(d / LOG_NAME).read(), "front": front}
