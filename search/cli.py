"""``codesign search`` and ``codesign pareto``.

Flags default to None so that ``--config FILE`` can fill what the command line leaves out
(:func:`codesign.cli.resolve`); with ``--resume`` the settings stored in the results folder fill
them too, so ``codesign search --out DIR --resume`` finishes an interrupted search.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from codesign.errors import ConfigError

SEARCH_DEFAULTS: dict[str, Any] = {
    "dataset": "digits", "data_root": None, "cache_dir": None, "torch_device": "cpu", "teacher": "mlp",
    "teacher_weights": None, "teacher_epochs": None, "seed": 0, "max_memory": None, "device": "ideal", "set": {},
    "samples": 16, "cost": "energy", "protocol": "posthoc", "method": "kd", "hw_draws": 5, "validation": 0.1,
    "dictionaries": ["monomial", "rbf"], "degrees": [2, 3], "ranks": [2, 40], "min_centers": 16, "max_centers": 300,
    "max_cost": None, "min_accuracy": None, "cpus": None, "address": None, "resume": False, "out": None,
    "quiet": False,
}
PARETO_DEFAULTS: dict[str, Any] = {"dirs": [], "output": None, "title": None}


def add_search_commands(sub) -> None:
    """Add the ``search`` and ``pareto`` subcommands to ``codesign``'s subparsers."""
    from codesign.cli import _add_common, add_distill_args

    p = sub.add_parser(
        "search", help="co-design search (Ray Tune + Optuna): accuracy on hardware vs cost",
        description="Search dictionary, PCA rank and the device's own constraints for the Pareto front of "
                    "accuracy on hardware (validation split) against a cost; write trials, front, plots and "
                    "the best students to --out.",
    )
    _add_common(p)
    add_distill_args(p)
    p.add_argument("--device", help="device to co-design for (default ideal; see `codesign devices`)")
    p.add_argument("--set", action="append", metavar="FIELD=VALUE", help="pin a device field (left out of the search; repeatable)")
    p.add_argument("--samples", type=int, help="trials in the search (default 16)")
    p.add_argument("--cost", help="cost objective: energy (default, energy_pj) | latency (latency_ns) | area (area_mm2) "
                                  "| any key of the device's cost model")
    p.add_argument("--protocol", help="posthoc (default: train ideal, then map) | aware (train through the device)")
    p.add_argument("--method", help="kd (default) | labels | naive")
    p.add_argument("--hw-draws", type=int, help="hardware instances per accuracy estimate (default 5)")
    p.add_argument("--validation", type=float, help="share of the training set held out as the search's validation split (default 0.1)")
    p.add_argument("--dictionaries", nargs="+", help="dictionary families searched (default: monomial rbf)")
    p.add_argument("--degrees", type=int, nargs="+", help="monomial degrees searched (default: 2 3)")
    p.add_argument("--ranks", type=int, nargs=2, metavar=("MIN", "MAX"),
                   help="PCA rank range (default 2 40; capped by the input dimension and --max-memory)")
    p.add_argument("--min-centers", type=int, help="smallest RBF centre count (default 16)")
    p.add_argument("--max-centers", type=int, help="largest RBF centre count (default 300)")
    p.add_argument("--max-cost", type=float, help="hard limit on the cost: trials above it are recorded but kept off the front")
    p.add_argument("--min-accuracy", type=float, help="hard limit on hardware accuracy (0-1): trials below it are kept off the front")
    p.add_argument("--cpus", type=int, help="CPUs (= concurrent trials) to use (default: all local CPUs / the cluster's)")
    p.add_argument("--address", help="Ray cluster to run on (e.g. auto, or host:port; default: $RAY_ADDRESS, else a local Ray)")
    p.add_argument("--resume", action="store_true", default=None, help="continue the search in --out (finished trials are kept)")
    p.add_argument("--out", help="results folder (required)")
    p.add_argument("--quiet", action="store_true", default=None, help="no per-trial lines or progress bar")
    p.set_defaults(func=cmd_search)

    p = sub.add_parser(
        "pareto", help="plot the Pareto fronts of one or more searches",
        description="Draw accuracy on hardware against cost for the given search folders (one colour per search), "
                    "with the front as a step line, dominated trials faint and the knee annotated; writes FILE, its "
                    "PNG/PDF companion and a markdown summary FILE.md.",
    )
    p.add_argument("dirs", nargs="+", metavar="DIR", help="search folders written by `codesign search`")
    p.add_argument("-o", "--output", help="plot file (.png, .pdf or .svg; default DIR/pareto.png for one DIR)")
    p.add_argument("--title", help="figure title")
    p.add_argument("--debug", action="store_true", default=None, help="show tracebacks")
    p.set_defaults(func=cmd_pareto)


def resolve_search(args: argparse.Namespace) -> dict[str, Any]:
    """Defaults < stored settings of the search being resumed < ``--config`` < flags."""
    from codesign.cli import resolve

    opts = resolve(args, SEARCH_DEFAULTS, "search")
    if opts.get("resume") and opts.get("out"):
        from .runner import stored_options

        stored = stored_options(opts["out"])
        if stored:
            defaults = {**SEARCH_DEFAULTS, **{k: v for k, v in stored.items() if k in SEARCH_DEFAULTS}}
            opts = resolve(args, defaults, "search")
    for k in ("ranks", "degrees", "dictionaries"):
        if isinstance(opts.get(k), (str, int)):
            opts[k] = [opts[k]]
    return opts


def cmd_search(args: argparse.Namespace) -> int:
    """``codesign search``."""
    from .runner import run_search

    opts = resolve_search(args)
    summary = run_search(opts)
    return 130 if summary.get("interrupted") else 0


def cmd_pareto(args: argparse.Namespace) -> int:
    """``codesign pareto DIR [DIR ...] -o FILE``."""
    from codesign.cache import atomic_write_text

    from .outputs import front_markdown, load_search
    from .plots import output_paths, plot_fronts

    dirs = [Path(d) for d in args.dirs]
    if args.output is None:
        if len(dirs) > 1:
            raise ConfigError("several search folders: give -o FILE for the combined plot")
        out = dirs[0] / "pareto.png"
    else:
        out = Path(args.output)
    output_paths(out)  # validates the format before any work
    from .plots import run_labels

    summaries = [summary_of(load_search(d)) for d in dirs]
    labels = run_labels(summaries, [d.resolve().name for d in dirs])
    written = plot_fronts(summaries, out, title=args.title, labels=labels)
    md = out.with_suffix(".md")
    parts = [f"# Pareto fronts\n\nPlot: `{written[0].name}` (and `{written[1].name}`).\n"]
    for d, s, label in zip(dirs, summaries, labels):
        parts.append(f"Search folder: `{d}` ({label})\n\n" + front_markdown(s))
    atomic_write_text(md, "\n".join(parts))
    for p in [*written, md]:
        print(p)
    return 0


def summary_of(run: dict) -> dict:
    """The front summary of a loaded search folder (recomputed from its log if not written yet)."""
    if run["front"] is not None:
        return run["front"]
    from .runner import summarise

    search = run["search"]
    if not run["records"]:
        raise ConfigError(f"{run['dir']} holds no finished trial yet")
    return summarise(run["records"], search.get("options") or {}, search["base"])
