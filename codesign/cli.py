"""The ``codesign`` command line: teacher, distill, reproduce, devices, search, pareto, export.

This module owns every command group. Each command's options are declared once, on its config
dataclass (:class:`~codesign.distill.DistillConfig`, :class:`~codesign.students.FitConfig`,
:class:`~codesign.search.config.SearchConfig`, :class:`~codesign.reproduce.ReproduceConfig`,
:class:`TeacherCommand`, and each registered dictionary's ``Params``); the flags, the keys a
``--config`` file accepts and the defaults ``--help`` prints are derived from them
(:mod:`codesign.options`).

Every user error is a :class:`codesign.errors.CodesignError`: printed as one line
(``codesign: error: ...``) with exit code 2 and no traceback unless ``--debug``.
"""

from __future__ import annotations

import os
import signal
import sys


def _exit_interrupted(signum=None, frame=None) -> None:
    """Ctrl-C while the command line starts (imports, plugin discovery): one line, exit 130.

    A KeyboardInterrupt raised inside a half-imported library would print its traceback; nothing
    has been written yet at that point, so leaving at once is safe.
    """
    try:
        sys.stderr.write("codesign: interrupted\n")
        sys.stderr.flush()
    finally:
        os._exit(130)


def _guard_startup():
    """Route Ctrl-C to :func:`_exit_interrupted`; returns the previous handler (None: untouched)."""
    try:
        previous = signal.getsignal(signal.SIGINT)
        if previous is signal.SIG_IGN or previous is None:  # ignored (a background job): leave it so
            return None
        signal.signal(signal.SIGINT, _exit_interrupted)
        return previous
    except (ValueError, OSError):  # not the main thread
        return None


def _run_as_command() -> bool:
    """Whether this process is the ``codesign`` command (not a program importing this module)."""
    argv0 = sys.argv[0] if sys.argv else ""
    return os.path.basename(argv0) in ("codesign", "codesign.exe") or argv0 == "-m" or \
        argv0.endswith(os.path.join("codesign", "__main__.py"))


_previous_sigint = _guard_startup()
try:
    import argparse
    import dataclasses
    import json
    import logging
    from dataclasses import dataclass
    from pathlib import Path
    from typing import Any, Sequence

    from . import reproduce
    from .artifacts import save_student
    from .cache import CACHE_ENV, atomic_write_json, atomic_write_text, check_writable_dir, default_cache_dir
    from .config_files import dump_toml, merge_config, read_config_file
    from .devices.describe import describe_devices, devices_json
    from .dictionaries import get_dictionary_class, list_dictionaries, params_by_name
    from .distill import DistillConfig, run_distill
    from .data import load_dataset
    from .features import format_bytes
    from .errors import CodesignError, ConfigError, check_choice
    from .log import configure_logging
    from .options import add_options, field_default, option, option_fields, option_key, same_as
    from .options import resolve as resolve_options
    from .search import pareto_command, runner
    from .search.config import SearchConfig
    from .students import FitConfig
    from .teachers import ARCHITECTURES, get_teacher
finally:
    # The ``codesign`` command keeps the start-up handler until main() takes over; a program
    # importing this module (tests, notebooks) gets its own handler back.
    if _previous_sigint is not None and not _run_as_command():
        signal.signal(signal.SIGINT, _previous_sigint)

#: Command-only keys of ``distill`` (not part of the run's config) and their defaults.
DISTILL_EXTRA = {"json": False, "out": None}
#: The data options every command that loads a data set takes.
DATA_KEYS = ("dataset", "data_root", "cache_dir", "torch_device")


@dataclass(frozen=True)
class TeacherCommand:
    """Options of ``codesign teacher``."""

    dataset: str = same_as(DistillConfig, "dataset")
    data_root: str | None = same_as(DistillConfig, "data_root")
    cache_dir: str | None = same_as(DistillConfig, "cache_dir")
    torch_device: str = same_as(DistillConfig, "torch_device")
    arch: str = option("mlp", "built-in teacher architecture", choices=ARCHITECTURES)
    seed: int = same_as(DistillConfig, "seed")
    epochs: int | None = same_as(DistillConfig, "teacher_epochs")
    json: bool = option(False, "print JSON")

    def __post_init__(self) -> None:
        check_choice("arch", self.arch, ARCHITECTURES)


# --------------------------------------------------------------------------- dictionary options
def dictionary_params() -> dict[str, list[tuple[str, dataclasses.Field]]]:
    """``{param: [(dictionary, field), ...]}`` over every installed dictionary's ``Params`` and
    every installed device's primitives (``<device>.<primitive>``, :mod:`codesign.device_lifts`)."""
    from .device_lifts import lift_params_by_name

    fields = {name: {f.name: f for f in dataclasses.fields(get_dictionary_class(name).Params)}
              for name in list_dictionaries()}
    out = {param: [(n, fields[n][param]) for n in owners] for param, owners in params_by_name().items()}
    for param, owners in lift_params_by_name().items():
        out.setdefault(param, []).extend(owners)
    return out


def _add_dictionary_params(p: argparse.ArgumentParser) -> None:
    """One flag per parameter of the installed dictionaries (``--degree``, ``--centers``...)."""
    for param, owners in dictionary_params().items():
        names = ", ".join(n for n, _ in owners)
        f = owners[0][1]
        typ = f.type if isinstance(f.type, type) else {"int": int, "float": float}.get(str(f.type), str)
        defaults = "; ".join(f"{n}: {field_default(fl)}" for n, fl in owners)
        doc = f.metadata.get("doc", param)
        p.add_argument("--" + param.replace("_", "-"), dest=param, type=typ if typ in (int, float) else None,
                       default=None, help=f"{doc} ({names}) (default: {defaults})")


def _dictionary_params_of(opts: dict[str, Any], dictionary: str) -> dict[str, Any]:
    """The dictionary parameters given for ``dictionary``; one given for another family is an error."""
    from .device_lifts import dictionary_class, resolve_lift

    if opts.get("lift_placement") == "device" and opts.get("device"):
        from .dictionaries import DEFAULT_DICTIONARY

        dictionary = resolve_lift(opts["device"], dictionary, default_ok=dictionary == DEFAULT_DICTIONARY)
    fields = {f.name for f in dataclasses.fields(dictionary_class(dictionary).Params)}
    given = {k: opts[k] for k in dictionary_params() if opts.get(k) is not None}
    wrong = sorted(set(given) - fields)
    if wrong:
        owners = dictionary_params()
        raise ConfigError(
            "; ".join(f"{k} is a parameter of {', '.join(n for n, _ in owners[k])}, not of {dictionary!r}" for k in wrong)
            + f" (its parameters: {', '.join(sorted(fields)) or 'none'})"
        )
    return given


# --------------------------------------------------------------------------- parser
def _add_common(p: argparse.ArgumentParser, keys: str | None = None) -> None:
    keys = f"the key {keys}" if keys else "the same keys as the long flags"
    p.add_argument("--config", help=f"TOML or YAML file of options, with {keys} (flags given override it)")
    p.add_argument("--debug", action="store_true", default=None, help="show tracebacks")
    _add_verbosity(p)


def _add_verbosity(p: argparse.ArgumentParser) -> None:
    """``-v``/``--verbose`` and ``-q``/``--quiet`` (repeatable): the ``codesign`` loggers' level
    (:func:`codesign.log.configure_logging`); progress bars stay."""
    p.add_argument("-v", "--verbose", dest="log_verbose", action="count", default=0,
                   help="more detail on stderr (cache hits, data set hashes); progress bars stay either way")
    has_quiet = any("--quiet" in a.option_strings for a in p._actions)  # search's own --quiet also quiets the log
    p.add_argument("-q", *(() if has_quiet else ("--quiet",)), dest="log_quiet", action="count", default=0,
                   help="fewer messages: -q warnings only, -qq errors only; progress bars stay")


def verbosity(args: argparse.Namespace) -> int:
    """``-v`` count minus ``-q`` count (a search's ``--quiet`` counts as one ``-q``)."""
    quiet = getattr(args, "log_quiet", 0) + (1 if getattr(args, "quiet", None) is True else 0)
    return getattr(args, "log_verbose", 0) - quiet


def build_parser() -> argparse.ArgumentParser:
    """The ``codesign`` parser with every command."""
    parser = argparse.ArgumentParser(
        prog="codesign",
        description="Distil neural networks into linear (Koopman) students and co-design them with hardware.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("distill", help="fit one linear student (optionally on a device)")
    _add_common(p)
    add_options(p, DistillConfig, skip=("dictionary_params",))
    _add_dictionary_params(p)
    add_options(p, FitConfig)
    p.add_argument("--out", help="folder to save the student, its metrics and the resolved config (default: none)")
    p.add_argument("--json", action="store_true", default=None, help="print the metrics as JSON")
    p.set_defaults(func=cmd_distill)

    p = sub.add_parser("teacher", help="train (or load from cache) a built-in teacher and report it")
    _add_common(p)
    add_options(p, TeacherCommand)
    p.set_defaults(func=cmd_teacher)

    p = sub.add_parser("reproduce", help="write the reproduction table (naive vs labels vs kd)")
    _add_common(p)
    add_options(p, reproduce.ReproduceConfig)
    p.set_defaults(func=cmd_reproduce)

    p = sub.add_parser("devices", help="list installed device models: config fields, presets, search space")
    _add_common(p, "json")
    p.add_argument("--json", action="store_true", default=None,
                   help="print every device with its fields, defaults, docs, presets and search space as JSON")
    p.set_defaults(func=cmd_devices)

    p = sub.add_parser(
        "calibrate", help="fit a device model to measurements of your chip and write a preset file",
        description="Fit DEVICE's config to a measurement file with the device's calibrator and write the preset "
                    "file --out PRESET.toml (fitted fields, their standard errors, the source file's SHA-256, the "
                    "codesign version) and the data-vs-model plot PRESET.png beside it; use it with "
                    "`codesign distill --device DEVICE --preset-file PRESET.toml`. --generate OUT writes "
                    "synthetic measurements drawn from the device's own model instead (config: --preset, "
                    "--preset-file, --set; --seed, --size); --write-preset NAME writes built-in preset NAME out "
                    "as a preset file. Measurement formats: docs/how-to/calibrate.md.",
    )
    p.add_argument("device", metavar="DEVICE", help="an installed device with a calibrator (see `codesign devices`)")
    p.add_argument("measurements", metavar="MEASUREMENTS", nargs="?",
                   help="the measurement file (the device's format; e.g. a CSV for analog_crossbar)")
    p.add_argument("--out", metavar="PRESET.toml", help="preset file to write (with a fit, or with --write-preset)")
    p.add_argument("--generate", metavar="OUT",
                   help="write synthetic measurements drawn from the device's model: a CSV file (analog_crossbar, "
                        "photonic_mzi), or for fpga_fixed_point a folder of Vivado-layout reports and its designs.csv")
    p.add_argument("--write-preset", metavar="NAME", help="write built-in preset NAME to --out as a preset file")
    p.add_argument("--preset", metavar="NAME", help="with --generate: the built-in preset to draw from")
    p.add_argument("--preset-file", metavar="PATH", help="with --generate: the preset file to draw from")
    p.add_argument("--set", action="append", metavar="FIELD=VALUE",
                   help="with --generate: config override, after the preset (repeatable)")
    p.add_argument("--seed", type=int, default=0, help="with --generate: seed of the drawn chip and reads (default: 0)")
    p.add_argument("--size", type=int, default=None, metavar="N",
                   help="with --generate: devices (MZIs, reports) to draw (default: the calibrator's realistic size)")
    p.add_argument("--no-plot", action="store_true", help="do not write the data-vs-model plot")
    p.add_argument("--json", action="store_true", help="print the fit as JSON")
    p.add_argument("--debug", action="store_true", default=None, help="show tracebacks")
    _add_verbosity(p)
    p.set_defaults(func=cmd_calibrate)

    p = sub.add_parser(
        "search", help="co-design search (Ray Tune + Optuna): accuracy on hardware vs cost",
        description="Search dictionary, PCA rank and the device's own constraints for the Pareto front of "
                    "accuracy on hardware (validation split) against a cost; write trials, front, plots and "
                    "the best students to --out.",
    )
    p.add_argument("--config", help="TOML or YAML file of options, with the same keys as the long flags "
                                    "(flags given override it)")
    p.add_argument("--debug", action="store_true", default=None, help="show tracebacks")
    add_options(p, SearchConfig)
    _add_verbosity(p)  # after SearchConfig's --quiet: -q joins it
    p.set_defaults(func=cmd_search)

    p = sub.add_parser(
        "pareto", help="plot the Pareto fronts of one or more searches",
        description="Draw accuracy on hardware against cost for the given search folders (one colour per search), "
                    "with the front as a step line, dominated trials faint and the knee annotated; writes FILE, its "
                    "PNG/PDF companion and a markdown summary FILE.md.",
    )
    p.add_argument("dirs", nargs="+", metavar="DIR", help="search folders written by `codesign search`")
    p.add_argument("--config", help="TOML or YAML file of options, with the keys output, title and breakdown "
                                    "(flags given override it)")
    p.add_argument("-o", "--output", help="plot file (.png, .pdf or .svg; default DIR/pareto.png for one DIR)")
    p.add_argument("--title", help="figure title")
    p.add_argument("--breakdown", action="store_true", default=None,
                   help="also draw each front member's cost split by stage (PCA, lift, conversion, matrix) "
                        "into FILE-breakdown.png/.pdf")
    p.add_argument("--debug", action="store_true", default=None, help="show tracebacks")
    _add_verbosity(p)
    p.set_defaults(func=cmd_pareto)

    p = sub.add_parser(
        "export", help="export a saved student: whole-inference ONNX/QONNX, front end, device-native files",
        description="Write the student's complete inference into DIR: export.json (manifest with checksums), "
                    "frontend.npz, matrix.npz, model.onnx, model.qonnx.onnx (FPGA) and device/ (the device's own "
                    "format); --verify re-imports the files alone and compares them with the student.",
    )
    p.add_argument("student", metavar="STUDENT",
                   help="a student.pt (codesign distill --out DIR writes DIR/student.pt), a search folder with "
                        "--member, or an export folder to --verify again")
    p.add_argument("--member", help="with a search folder: knee, accuracy, cost, or a trial number or Ray trial id")
    p.add_argument("--out", metavar="DIR", help="folder to write (new or empty; --force replaces its contents)")
    p.add_argument("--student", dest="against", metavar="FILE",
                   help="with an export folder: the student to verify it against (default: the file of the name and SHA-256 "
                        "it was exported from, in the current folder or beside the export folder)")
    p.add_argument("--force", action="store_true", help="replace the contents of a non-empty --out")
    p.add_argument("--verify", action="store_true",
                   help="re-import the files and check them against the student on the test set (exit 1 on a failure)")
    p.add_argument("--data-root", metavar="DIR", default=None,
                   help="folder with the IDX files, for --verify (default: $CODESIGN_DATA)")
    p.add_argument("--qonnx-rows", type=int, default=None, metavar="N",
                   help="test rows the QONNX executor checks with --verify (default: all)")
    p.add_argument("--instance", type=int, default=None, metavar="SEED",
                   help="export hardware instance (chip) SEED: the device files then hold what belongs to that chip "
                        "(e.g. a plugin's fault map), the manifest its seed, and --verify checks the rebuilt chip's "
                        "outputs (default: none, nominal files only)")
    p.add_argument("--eval-time", default=None, metavar="TIME",
                   help="with --instance: time since programming the chip is read at, seconds or 30s, 1h, 1d, 1y "
                        "(default: the one of the student's test-set hardware score)")
    p.add_argument("--digest", default=None, metavar="HEX",
                   help="with --verify of an export folder: the digest `codesign export` printed for it; the bundle "
                        "must still be that export (catches a bundle rewritten with its checksums redone)")
    p.add_argument("--hls4ml", action="store_true",
                   help="FPGA students: also write the layer as an hls4ml HLS project into DIR/hls4ml/, precisions taken "
                        "from the trained layer; --verify then compiles its C simulation and checks it bit for bit "
                        "(extra: pip install -e '.[hls4ml]')")
    p.add_argument("--hls4ml-backend", default="Vitis", choices=("Vitis", "Vivado"),
                   help="with --hls4ml: the HLS flow the project is written for (default: Vitis)")
    p.add_argument("--debug", action="store_true", default=None, help="show tracebacks")
    _add_verbosity(p)
    p.set_defaults(func=cmd_export)
    return parser


# --------------------------------------------------------------------------- resolving options
def _file_values(args: argparse.Namespace) -> dict[str, Any]:
    path = getattr(args, "config", None)
    return {} if path is None else read_config_file(path)


def check_output_dirs(out: str | None, cache_dir: str | None) -> None:
    """Refuse, before any work, an ``--out`` or cache folder that cannot be written to.

    Without ``--cache-dir`` the folder checked is ``$CODESIGN_CACHE`` or ``~/.cache/codesign``.
    """
    check_writable_dir(out, "--out")
    if cache_dir is not None:
        check_writable_dir(cache_dir, "--cache-dir")
    elif os.environ.get(CACHE_ENV):
        check_writable_dir(default_cache_dir(), f"${CACHE_ENV}")
    else:
        check_writable_dir(default_cache_dir(), "the cache folder (set --cache-dir or $CODESIGN_CACHE)")


def parse_set(values: Any) -> dict[str, Any]:
    """``--set FIELD=VALUE`` strings (or a config file's table) as a dict."""
    if not values:
        return {}
    if isinstance(values, dict):
        return dict(values)
    if isinstance(values, str):
        values = [values]
    if not isinstance(values, (list, tuple)):
        raise ConfigError(f"set={values!r}: expected a table of device fields ([set] then phase_bits = 6) "
                          "or a list of \"FIELD=VALUE\" strings")
    if all(isinstance(v, (list, tuple)) and len(v) == 2 for v in values):
        return dict(values)
    out = {}
    for item in values:
        if not isinstance(item, str):
            raise ConfigError(f"set={list(values)!r}: {item!r} is not FIELD=VALUE; in a config file write a table "
                              "([set] then phase_bits = 6) or strings (set = [\"phase_bits=6\"])")
        key, eq, value = str(item).partition("=")
        if not eq or not key.strip():
            raise ConfigError(f"--set {item!r}: expected field=value, e.g. --set phase_bits=6")
        out[key.strip()] = value.strip()
    return out


def resolve_distill(args: argparse.Namespace | None, file_values: dict[str, Any] | None = None) -> dict[str, Any]:
    """``distill``'s options: dataclass defaults < ``--config`` file < flags."""
    file_values = _file_values(args) if file_values is None else file_values
    extra = {**DISTILL_EXTRA, **{k: None for k in dictionary_params()}}
    opts = resolve_options(args, file_values, [DistillConfig, FitConfig], "distill", extra)
    refuse_ignored_fit_options(args, file_values, str(opts.get("method")))
    opts["set"] = parse_set(opts["set"])
    return opts


def refuse_ignored_fit_options(args: argparse.Namespace | None, file_values: dict[str, Any], method: str) -> None:
    """Refuse a fit option given as a flag that ``method`` does not use.

    A ``--config`` file may hold numbers for several methods (one file, ``--method`` varied);
    ``auto`` there is refused too (:class:`~codesign.students.FitConfig`), since it asks for a choice.
    """
    from .students import AUTO, IGNORED_BY_METHOD, IGNORED_WHY

    for name in IGNORED_BY_METHOD.get(method, ()):
        value = getattr(args, name, None) if args is not None else None
        if value is None and str(file_values.get(name)).strip().lower() == AUTO:
            value = file_values.get(name)
        if value is not None:
            raise ConfigError(f"--{name} {value}: --method {method} {IGNORED_WHY[method]}, so --{name} would be "
                              f"ignored; drop it, or use --method kd")


def distill_config_from(opts: dict[str, Any]) -> DistillConfig:
    """A :class:`DistillConfig` from resolved ``distill`` options."""
    fit = FitConfig(**{f.name: opts[option_key(f, o)] for f, o in option_fields(FitConfig)}, seed=int(opts["seed"]))
    kwargs = {f.name: opts[option_key(f, o)] for f, o in option_fields(DistillConfig) if f.name != "dictionary_params"}
    kwargs["device_overrides"] = tuple(sorted(parse_set(opts["set"]).items()))
    return DistillConfig(fit=fit, dictionary_params=_dictionary_params_of(opts, opts["dictionary"]), **kwargs)


def resolved_distill_options(opts: dict[str, Any], cfg: DistillConfig) -> dict[str, Any]:
    """What ``distill --out`` writes to ``config.toml``: every option, rerunnable as ``--config``."""
    from .students import IGNORED_BY_METHOD

    ignored = IGNORED_BY_METHOD.get(str(opts.get("method")), ())  # rerunnable: no option the method refuses
    out = {k: v for k, v in opts.items() if k not in (*DISTILL_EXTRA, *dictionary_params(), *ignored)}
    out.update(cfg.dictionary_kwargs)
    out["eval_time"] = cfg.eval_time_s
    return out


def resolve_search(args: argparse.Namespace) -> SearchConfig:
    """Defaults < stored settings of the search being resumed < ``--config`` < flags."""
    file_values = _file_values(args)
    opts = resolve_options(args, file_values, [SearchConfig], "search")
    if opts.get("resume") and opts.get("out"):
        stored = runner.stored_options(opts["out"])
        if stored:
            opts = resolve_options(args, {**stored, **file_values}, [SearchConfig], "search")
    opts["set"] = parse_set(opts["set"])
    return SearchConfig.from_options(opts)


# --------------------------------------------------------------------------- commands
def cmd_distill(args: argparse.Namespace) -> int:
    """``codesign distill``."""
    opts = resolve_distill(args)
    cfg = distill_config_from(opts)
    check_output_dirs(opts["out"], cfg.cache_dir)  # before the fit, whose result would be lost
    result = run_distill(cfg)
    m = result.metrics
    if opts["out"] is not None:
        out = Path(opts["out"]).expanduser()
        save_student(out / "student.pt", result)
        atomic_write_json(out / "metrics.json", m)
        atomic_write_text(out / "config.toml", dump_toml(resolved_distill_options(opts, cfg)))
    if opts["json"]:
        print(json.dumps(m, default=float))
    else:
        _print_distill(m)
    return 0


def _print_distill(m: dict) -> None:
    teacher = "" if m.get("teacher_test_accuracy") is None else f" (test {m['teacher_test_accuracy']:.4f})"
    print(f"dataset {m['dataset']}  teacher {m['teacher']}{teacher}")
    print(f"student {m['method']}  pca_rank {m['pca_rank']}  {m['dictionary']}  n_features {m['n_features']}")
    split = "val" if m.get("scored_on") == "validation" else "test"
    print(f"{split}_accuracy {m[f'{split}_accuracy']:.4f}  fit_seconds {m['fit_seconds']:.2f}", end="")
    if m.get("condition_number") is not None:
        print(f"  condition_number {m['condition_number']:.3g}", end="")
    print()
    if m.get("features_disk_backed"):  # --disk-features: mapped from the feature cache
        print(f"features on disk (memory-mapped from the feature cache): estimate "
              f"{format_bytes(m['memory_estimate_bytes'])} of --max-memory {format_bytes(m['max_memory_bytes'])}")
    sel = m.get("kd_selection")
    if sel:  # --temperature auto / --alpha auto: what was chosen, on which rows
        kd = f"T {sel['temperature']:g}  alpha {sel['alpha']:g}  " if m["method"] == "kd" else ""  # labels: L2 only
        print(f"chosen on {sel['val_rows']} held-out training rows: {kd}l2 {sel['l2']:g}  "
              f"(validation accuracy {sel['val_accuracy']:.4f}; the best of the {len(sel['grid'])} grid points "
              f"{sel['best_val_accuracy']:.4f})")
    if "hw_accuracy_mean" in m:
        preset = f", preset {m['device_preset']}" if m.get("device_preset") else ""
        if m.get("device_preset_file"):
            pf = m["device_preset_file"]
            preset = f", preset file {pf['file']} (overrides sha256:{pf['digest'][:12]})"
        print(
            f"on {m['device']}{preset} ({m['protocol']}, {len(m['hw_accuracies'])} draws, t = {m['eval_time_s']:g} s): "
            f"mean {m['hw_accuracy_mean']:.4f}  std {m['hw_accuracy_std']:.4f}  worst {m['hw_accuracy_worst']:.4f}"
        )
        _print_cost(m["cost"])


def _print_shared(cost: dict) -> None:
    """The budgets the device's matrices share (K with the lift or the PCA on one part or chip)."""
    for entry in (cost.get("shared_resources") or {}).values():
        parts = " + ".join(f"{label} {n:,}" for label, n in entry["by"].items())
        print(f"  shared {entry['name']} on one {entry['of']}: {parts} = {entry['used']:,} of {entry['budget']:,}")


def _print_cost(cost: dict) -> None:
    if cost["energy_pj"] is None:
        print("cost: INFEASIBLE (not priced)")
        for reason in cost["infeasible"]:
            print(f"  {reason}")
        _print_shared(cost)
        return
    if not cost["feasible"]:  # priced, but above a power limit
        print("cost: INFEASIBLE (over a power limit; priced below)")
        for reason in cost["infeasible"]:
            print(f"  {reason}")
    mode = cost.get("operating_mode", "latency")
    print(f"cost per inference: {cost['energy_pj']:.4g} pJ  {cost['latency_ns']:.4g} ns  {cost['area_mm2']:.4g} mm^2"
          f"  (host {cost['host']['datapath']})")
    if "static_power_mw" in cost:
        print(f"  {mode} mode: one inference every {cost['interval_ns']:.4g} ns; held power "
              f"{cost['static_power_mw']:.4g} mW -> {cost['static_energy_pj']:.4g} pJ static + "
              f"{cost['dynamic_energy_pj']:.4g} pJ dynamic")
    for name, st in cost["stages"].items():
        share = st["energy_pj"] / cost["energy_pj"] if cost["energy_pj"] else 0.0
        held = f"  (held {st['static_energy_pj']:.4g} pJ)" if st.get("static_energy_pj") else ""
        print(f"  {name:<10} on {st['runs_on']:<6} {st['energy_pj']:>11.4g} pJ ({100 * share:4.1f} %)"
              f"  {st['latency_ns']:>9.4g} ns  {st['area_mm2']:>9.4g} mm^2{held}")
    for name, h in (cost.get("static") or {}).items():
        print(f"  held {name:<12} {h['power_mw']:>11.4g} mW x {cost['interval_ns']:.4g} ns = {h['energy_pj']:.4g} pJ")
    print("  device: " + "  ".join(f"{k} {v:.4g}" for k, v in cost["device"].items()))
    _print_shared(cost)


def cmd_teacher(args: argparse.Namespace) -> int:
    """``codesign teacher``."""
    opts = dataclasses.asdict(TeacherCommand(**resolve_options(args, _file_values(args), [TeacherCommand], "teacher")))
    check_output_dirs(None, opts["cache_dir"])
    ds = load_dataset(opts["dataset"], opts["data_root"])
    t = get_teacher(opts["arch"], ds, seed=opts["seed"], epochs=opts["epochs"], cache_dir=opts["cache_dir"],
                    torch_device=opts["torch_device"], verbose=not opts["json"])
    info = {k: v for k, v in t.info.items() if k != "data"}
    if opts["json"]:
        print(json.dumps(info))
    else:
        print(f"{opts['arch']} on {ds.name} (seed {opts['seed']}): test accuracy {info['test_accuracy']:.4f}"
              f"{' (cached)' if info.get('cached') else ''}")
    return 0


def cmd_reproduce(args: argparse.Namespace) -> int:
    """``codesign reproduce``."""
    opts = resolve_options(args, _file_values(args), [reproduce.ReproduceConfig], "reproduce")
    cfg = reproduce.ReproduceConfig(**opts)
    check_output_dirs(cfg.out, cfg.cache_dir)
    command = "codesign " + " ".join(sys.argv[1:]) if sys.argv[0].endswith("codesign") else "codesign reproduce"
    out = reproduce.main(cfg, command)
    print(f"wrote {out / 'reproduction.md'} and {out / 'reproduction.json'}")
    return 0


def cmd_devices(args: argparse.Namespace) -> int:
    """``codesign devices``."""
    opts = merge_config(args, _file_values(args), {"json": False}, "devices")
    if not isinstance(opts["json"], bool):
        raise ConfigError(f"json={opts['json']!r}: expected true or false")
    if opts["json"]:
        print(json.dumps(devices_json(), indent=2, default=str))
    else:
        print(describe_devices())
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    """``codesign calibrate DEVICE MEASUREMENTS --out PRESET.toml`` (or ``--generate``, ``--write-preset``)."""
    from .devices import calibrate_device as cd

    modes = [m for m, given in (("MEASUREMENTS", args.measurements), ("--generate", args.generate),
                                ("--write-preset", args.write_preset)) if given is not None]
    if len(modes) != 1:
        raise ConfigError("give one of: MEASUREMENTS --out PRESET.toml (fit), --generate OUT (synthetic "
                          f"measurements) or --write-preset NAME --out PRESET.toml{'; got ' + ', '.join(modes) if modes else ''}")
    drawing = (args.preset, args.preset_file, args.set, args.size)
    if modes[0] != "--generate" and any(v is not None for v in drawing):
        raise ConfigError("--preset, --preset-file, --set and --size choose the config --generate draws from; "
                          "a fit takes none of them")
    if modes[0] == "--generate":
        if args.out is not None:
            raise ConfigError("--generate OUT names its own output; drop --out")
        path = cd.generate(args.device, args.generate, preset=args.preset, preset_file=args.preset_file,
                           overrides=parse_set(args.set), seed=args.seed, size=args.size)
        print(f"wrote {path}")
        return 0
    if args.out is None:
        raise ConfigError("give --out PRESET.toml, the preset file to write")
    if modes[0] == "--write-preset":
        print(f"wrote {cd.write_builtin_preset(args.device, args.write_preset, args.out)}")
        return 0
    fit, preset, png = cd.calibrate(args.device, args.measurements, args.out, plot=not args.no_plot)
    if args.json:
        print(json.dumps({"device": fit.device, "overrides": dict(fit.overrides), "uncertainty": dict(fit.uncertainty),
                          "samples": dict(fit.samples), "notes": list(fit.notes), "preset_file": str(preset),
                          "plot": None if png is None else str(png)}, default=float))
        return 0
    print("\n".join(cd.fit_lines(fit)))
    print(f"wrote {preset}" + (f" and {png}" if png is not None else ""))
    print(f"use it: codesign distill --device {fit.device} --preset-file {preset}")
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    """``codesign search``."""
    cfg = resolve_search(args)
    check_output_dirs(cfg.out, cfg.cache_dir)
    summary = runner.run_search(cfg)
    return 130 if summary.get("interrupted") else 0


def cmd_pareto(args: argparse.Namespace) -> int:
    """``codesign pareto DIR [DIR ...] -o FILE``."""
    opts = merge_config(args, _file_values(args), {"output": None, "title": None, "breakdown": False}, "pareto")
    for key in ("output", "title"):
        if opts[key] is not None and not isinstance(opts[key], str):
            raise ConfigError(f"{key}={opts[key]!r}: expected a string")
    if not isinstance(opts["breakdown"], bool):
        raise ConfigError(f"breakdown={opts['breakdown']!r}: expected true or false")
    if opts["output"] is not None and not opts["output"].strip():
        raise ConfigError("--output '': empty file name; give a plot file such as pareto.png, or leave -o out")
    for path in pareto_command(args.dirs, opts["output"], opts["title"], breakdown=opts["breakdown"]):
        print(path)
    return 0


def export_source(student: str, member: str | None) -> Path:
    """The student file ``codesign export`` reads: ``student`` itself, or a search folder's ``member``."""
    from .search.outputs import load_search, student_path

    path = Path(student).expanduser()
    if not path.is_dir():
        if member is not None:
            raise ConfigError(f"--member {member!r} picks a student of a search folder, but {path} is not a folder")
        if not path.is_file():
            raise ConfigError(f"{path}: no such student file; give a student.pt or a search folder with --member")
        return path
    if member is None:
        raise ConfigError(f"{path} is a folder: give --member knee|accuracy|cost|TRIAL to pick one of its students")
    search = load_search(path)
    if member in ("knee", "accuracy", "cost"):
        target = path / "students" / f"{member}.pt"
        if not target.is_file():
            raise ConfigError(f"{target}: missing; the search has no front yet (let it finish, or --resume it)")
        return target
    records = search["records"]
    picked = [r for r in records if str(r["trial"]) == member or r.get("ray_trial_id") == member]
    if not picked:
        raise ConfigError(f"--member {member!r}: no trial with that number or Ray trial id in {path} "
                          f"(trials {', '.join(str(r['trial']) for r in records[:10]) or 'none'}"
                          f"{'...' if len(records) > 10 else ''}); or use knee, accuracy, cost")
    target = path / student_path(picked[0])
    if not target.is_file():
        raise ConfigError(f"{target}: missing; trial {picked[0]['trial']} saved no student "
                          f"(status {picked[0].get('status')!r})")
    return target


def cmd_export(args: argparse.Namespace) -> int:
    """``codesign export STUDENT --out DIR [--member M] [--instance SEED] [--verify]``."""
    from .export import export_student, manifest_digest, verify_export
    from .units import parse_duration

    if args.qonnx_rows is not None and args.qonnx_rows < 1:
        raise ConfigError(f"--qonnx-rows {args.qonnx_rows}: expected a positive row count")
    t_chip = None if args.eval_time is None else parse_duration(args.eval_time, "eval-time")
    if (Path(args.student).expanduser() / "export.json").is_file():  # an existing bundle: verify it again
        if not args.verify or args.out is not None or args.member is not None or args.instance is not None \
                or t_chip is not None:
            raise ConfigError(f"{args.student} is an export folder: check it with `codesign export {args.student} "
                              "--verify` (no --out, --member, --instance or --eval-time)")
        out, source = Path(args.student).expanduser(), args.against
    else:
        if args.out is None:
            raise ConfigError("give --out DIR, the folder to write the export into")
        if args.against is not None:
            raise ConfigError("--student FILE applies when verifying an existing export folder")
        source = export_source(args.student, args.member)
        if args.digest is not None:
            raise ConfigError("--digest applies when verifying an existing export folder")
        out = export_student(source, args.out, force=args.force, member=args.member, instance=args.instance,
                             t_inference_s=t_chip, hls4ml=args.hls4ml_backend if args.hls4ml else None)
        print(f"wrote {out} (from {source}); digest sha256:{manifest_digest(out)} (keep it to check the bundle later "
              f"with `codesign export {out} --verify --digest ...`)")
        if not args.verify:
            return 0
    report = verify_export(out, source, data_root=args.data_root, qonnx_rows=args.qonnx_rows, digest=args.digest)
    print(report.table())
    print("verify: " + ("all checks pass" if report.ok else "FAILED"))
    return 0 if report.ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (2: a user error, 130: interrupted)."""
    previous = _guard_startup()  # Ctrl-C while plugins load: one line, exit 130
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        try:
            # Importing some device back-ends (brevitas) makes torch probe for a CUDA toolkit and log
            # "No CUDA runtime is found" on machines without a GPU: noise on stderr, never our message.
            logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
            parser = build_parser()
            args = parser.parse_args(argv)
        finally:
            if previous is not None:  # from here on Ctrl-C raises KeyboardInterrupt, caught below
                signal.signal(signal.SIGINT, signal.default_int_handler if previous is _exit_interrupted else previous)
        configure_logging(verbosity(args))
        return int(args.func(args) or 0)
    except CodesignError as exc:
        if debug:
            raise
        # One line whatever the message holds (wrapped library errors can span several).
        msg = "; ".join(line.strip() for line in str(exc).strip().splitlines() if line.strip())
        print(f"codesign: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("codesign: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:  # a full disk anywhere a library writes (the atomic writers say more)
        from .cache import DISK_FULL, disk_full

        if debug or exc.errno not in DISK_FULL:
            raise
        where = Path(exc.filename).parent if exc.filename else Path.cwd()
        print(f"codesign: error: {disk_full(where, None, Path(exc.filename).name if exc.filename else '')}",
              file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
