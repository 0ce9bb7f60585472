"""The ``codesign`` command line: teacher, distill, reproduce, devices, search, pareto.

Every user error is a :class:`codesign.errors.CodesignError`: printed as one line
(``codesign: error: ...``) with exit code 2 and no traceback unless ``--debug``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from .errors import CodesignError, ConfigError

# Defaults of `distill` (flag name with _ -> default). Flags default to None in argparse so
# that a config file can fill what the command line leaves out.
DISTILL_DEFAULTS: dict[str, Any] = {
    "dataset": "digits", "data_root": None, "teacher": "mlp", "teacher_weights": None,
    "teacher_epochs": None, "pca_rank": 20, "dictionary": "monomial", "degree": 2, "centers": 200,
    "method": "kd", "temperature": 2.0, "alpha": 0.9, "l2": None, "max_iter": 200, "tol": 1e-2,
    "naive_target": "probs", "pass_dtype": "bfloat16", "device": None, "set": {}, "protocol": "posthoc", "hw_draws": 5,
    "device_epochs": 5, "batch_size": 4096, "lr": 2e-3, "seed": 0, "max_memory": None,
    "cache_dir": None, "torch_device": "cpu", "json": False, "out": None,
}


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="TOML or YAML file of options (flags override it)")
    p.add_argument("--debug", action="store_true", default=None, help="show tracebacks")


def _add_data(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", help="digits (default, embedded) | mnist | fashion-mnist")
    p.add_argument("--data-root", help="folder with the IDX files (default: $CODESIGN_DATA)")
    p.add_argument("--cache-dir", help="cache folder (default: $CODESIGN_CACHE or ~/.cache/codesign)")
    p.add_argument("--torch-device", help="cpu (default) or cuda")


def _parse_set(values: list[str] | None) -> dict[str, str] | None:
    if not values:
        return None
    out = {}
    for item in values:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise ConfigError(f"--set {item!r}: expected field=value, e.g. --set phase_bits=6")
        out[key.strip()] = value.strip()
    return out


def add_distill_args(p: argparse.ArgumentParser) -> None:
    """The student/fit/device flags shared by ``distill`` and ``search``."""
    _add_data(p)
    p.add_argument("--teacher", help="mlp (default) | mlp-narrow | resnet18 | FILE.pt (TorchScript) | module:factory")
    p.add_argument("--teacher-weights", help="state dict for a module:factory teacher")
    p.add_argument("--teacher-epochs", type=int, help="epochs for a built-in teacher")
    p.add_argument("--seed", type=int, help="seed of every random choice (default 0)")
    p.add_argument("--max-memory", help="budget for a feature matrix, e.g. 8G (default: half the RAM)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="codesign",
        description="Distil neural networks into linear (Koopman) students and co-design them with hardware.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("distill", help="fit one linear student (optionally on a device)")
    _add_common(p)
    add_distill_args(p)
    p.add_argument("--pca-rank", type=int, help="PCA rank r (default 20)")
    p.add_argument("--dictionary", help="monomial (default) | rbf")
    p.add_argument("--degree", type=int, help="monomial degree d (default 2)")
    p.add_argument("--centers", type=int, help="RBF centre count (default 200)")
    p.add_argument("--method", help="kd (default) | naive | labels")
    p.add_argument("--temperature", type=float, help="distillation temperature T (default 2)")
    p.add_argument("--alpha", type=float, help="weight of the teacher term (default 0.9)")
    p.add_argument("--l2", type=float, help="L2 penalty on K (default: 0 for kd, 1e-4 for labels)")
    p.add_argument("--max-iter", type=int, help="L-BFGS iteration cap (default 200)")
    p.add_argument("--tol", type=float, help="relative loss decrease per iteration that stops L-BFGS (default 1e-2)")
    p.add_argument("--naive-target", help="what EDMD regresses on: probs (default) | logits")
    p.add_argument("--pass-dtype", help="precision of the features L-BFGS reads: bfloat16 (default) | float32")
    p.add_argument("--device", help="device model to evaluate on (see `codesign devices`)")
    p.add_argument("--set", action="append", metavar="FIELD=VALUE", help="device config override (repeatable)")
    p.add_argument("--protocol", help="posthoc (default: train ideal, then map) | aware (train through the device)")
    p.add_argument("--hw-draws", type=int, help="hardware instances drawn for evaluation (default 5)")
    p.add_argument("--device-epochs", type=int, help="epochs of hardware-aware training (default 5)")
    p.add_argument("--batch-size", type=int, help="minibatch of hardware-aware training (default 4096)")
    p.add_argument("--lr", type=float, help="Adam learning rate of hardware-aware training (default 2e-3)")
    p.add_argument("--out", help="folder to save the student, its metrics and the resolved config")
    p.add_argument("--json", action="store_true", default=None, help="print the metrics as JSON")
    p.set_defaults(func=cmd_distill)

    p = sub.add_parser("teacher", help="train (or load from cache) a built-in teacher and report it")
    _add_common(p)
    _add_data(p)
    p.add_argument("--arch", help="mlp (default) | mlp-narrow | resnet18")
    p.add_argument("--seed", type=int, help="seed (default 0)")
    p.add_argument("--epochs", type=int, help="training epochs (default per architecture)")
    p.add_argument("--json", action="store_true", default=None, help="print JSON")
    p.set_defaults(func=cmd_teacher)

    p = sub.add_parser("reproduce", help="write the reproduction table (naive vs labels vs kd)")
    _add_common(p)
    from .reproduce import add_reproduce_args

    add_reproduce_args(p)
    p.set_defaults(func=_lazy("codesign.reproduce", "cmd_reproduce"))

    p = sub.add_parser("devices", help="list installed device models with their config fields")
    _add_common(p)
    p.set_defaults(func=cmd_devices)

    try:  # search/ adds `search` and `pareto`; absent only in a broken install
        from codesign.search.cli import add_search_commands
    except ImportError:
        pass
    else:
        add_search_commands(sub)
    return parser


def _lazy(module: str, name: str) -> Callable:
    def call(args):
        import importlib

        return getattr(importlib.import_module(module), name)(args)

    return call


def resolve(args: argparse.Namespace, defaults: dict[str, Any], command: str) -> dict[str, Any]:
    """Merge defaults, ``--config`` and flags into one dict of options."""
    from .config_files import merge_config, read_config_file

    file_values = read_config_file(args.config) if getattr(args, "config", None) else {}
    if hasattr(args, "set"):
        args.set = _parse_set(args.set) if isinstance(args.set, list) else args.set
    return merge_config(args, file_values, defaults, command)


def distill_config_from(opts: dict[str, Any]):
    """Build a :class:`DistillConfig` from resolved CLI options."""
    from .distill import DistillConfig
    from .students import FitConfig

    fit = FitConfig(
        method=opts["method"], temperature=float(opts["temperature"]), alpha=float(opts["alpha"]),
        l2=None if opts["l2"] is None else float(opts["l2"]), max_iter=int(opts["max_iter"]),
        tol=float(opts["tol"]), naive_target=opts["naive_target"], pass_dtype=opts["pass_dtype"], device_epochs=int(opts["device_epochs"]),
        batch_size=int(opts["batch_size"]), lr=float(opts["lr"]), seed=int(opts["seed"]),
    )
    return DistillConfig(
        dataset=opts["dataset"], data_root=opts["data_root"], teacher=opts["teacher"],
        teacher_weights=opts["teacher_weights"], teacher_epochs=opts["teacher_epochs"],
        pca_rank=opts["pca_rank"], dictionary=opts["dictionary"], degree=opts["degree"],
        centers=opts["centers"], fit=fit, device=opts["device"],
        device_overrides=tuple(sorted((opts["set"] or {}).items())), protocol=opts["protocol"],
        hw_draws=opts["hw_draws"], seed=opts["seed"], max_memory=opts["max_memory"],
        cache_dir=opts["cache_dir"], torch_device=opts["torch_device"],
    )


def cmd_distill(args: argparse.Namespace) -> int:
    from .artifacts import save_student
    from .config_files import dump_toml
    from .distill import run_distill

    opts = resolve(args, DISTILL_DEFAULTS, "distill")
    cfg = distill_config_from(opts)
    result = run_distill(cfg)
    m = result.metrics
    if opts["out"]:
        out = Path(opts["out"])
        resolved = {k: v for k, v in opts.items() if k not in ("json", "out")}
        save_student(out / "student.pt", result)
        from .cache import atomic_write_json, atomic_write_text

        atomic_write_json(out / "metrics.json", m)
        atomic_write_text(out / "config.toml", dump_toml(resolved))
    if opts["json"]:
        print(json.dumps(m, default=float))
    else:
        _print_distill(m)
    return 0


def _print_distill(m: dict) -> None:
    print(f"dataset {m['dataset']}  teacher {m['teacher']} (test {m['teacher_test_accuracy']:.4f})")
    print(f"student {m['method']}  pca_rank {m['pca_rank']}  {m['dictionary']}  n_features {m['n_features']}")
    print(f"test_accuracy {m['test_accuracy']:.4f}  fit_seconds {m['fit_seconds']:.2f}", end="")
    if m.get("condition_number") is not None:
        print(f"  condition_number {m['condition_number']:.3g}", end="")
    print()
    if "hw_accuracy_mean" in m:
        print(
            f"on {m['device']} ({m['protocol']}, {len(m['hw_accuracies'])} draws): "
            f"mean {m['hw_accuracy_mean']:.4f}  std {m['hw_accuracy_std']:.4f}  worst {m['hw_accuracy_worst']:.4f}"
        )
        print("cost: " + "  ".join(f"{k} {v:.4g}" for k, v in m["cost"].items()))


TEACHER_DEFAULTS = {"dataset": "digits", "data_root": None, "cache_dir": None, "torch_device": "cpu",
                    "arch": "mlp", "seed": 0, "epochs": None, "json": False}


def cmd_teacher(args: argparse.Namespace) -> int:
    from .data import load_dataset
    from .teachers import ARCHITECTURES, get_teacher

    opts = resolve(args, TEACHER_DEFAULTS, "teacher")
    if opts["arch"] not in ARCHITECTURES:
        raise ConfigError(f"unknown teacher architecture {opts['arch']!r}; built-in: {', '.join(ARCHITECTURES)}")
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


def cmd_devices(args: argparse.Namespace) -> int:
    from codesign.devices.describe import describe_devices

    print(describe_devices())
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    # Importing some device back-ends (brevitas) makes torch probe for a CUDA toolkit and log
    # "No CUDA runtime is found" on machines without a GPU: noise on stderr, never our message.
    import logging

    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
