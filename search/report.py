"""``codesign pareto``: the fronts of finished searches as one plot and a markdown summary."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from codesign.cache import atomic_write_text, check_writable_dir
from codesign.config_files import read_json_file
from codesign.errors import ConfigError
from codesign.options import option_keys

from .config import SearchConfig
from .outputs import front_markdown, load_search
from .plots import output_paths, plot_breakdown, plot_fronts, run_labels
from .runner import summarise, upgrade_options


#: Keys every ``front.json`` holds that ``codesign pareto`` reads.
FRONT_KEYS = ("dataset", "device", "cost_key", "front")


def _load(d: Path) -> dict[str, Any]:
    """:func:`load_search`, with a damaged ``front.json`` named, and the way out, in one line."""
    if not d.is_dir():
        raise ConfigError(f"{d}: {'is a file' if d.exists() else 'no such folder'}; "
                          "give a folder written by `codesign search`")
    meta_path = d / "search.json"
    if meta_path.is_file():
        meta = read_json_file(meta_path, "it holds the search's settings: restore it, or rerun the search into a "
                                         "fresh --out")
        if not isinstance(meta, dict):
            raise ConfigError(f"{meta_path} is damaged (not a table of settings); restore it, or rerun the search "
                              "into a fresh --out")
    front_path = d / "front.json"
    if front_path.is_file():
        fix = ("delete it and rerun `codesign pareto` (it recomputes the front from trials.jsonl), "
               f"or rewrite it with `codesign search --resume --out {d}`")
        front = read_json_file(front_path, fix)
        if not isinstance(front, dict) or any(k not in front for k in FRONT_KEYS) or not isinstance(front["front"], list):
            raise ConfigError(f"{front_path} is damaged (not a front written by `codesign search`: it needs "
                              f"{', '.join(FRONT_KEYS)}); {fix}")
    return load_search(d)


def summary_of(run: dict) -> dict:
    """The front summary of a loaded search folder (recomputed from its log if not written yet)."""
    if run["front"] is not None:
        return run["front"]
    search = run["search"]
    if not run["records"]:
        raise ConfigError(f"{run['dir']} holds no finished trial yet")
    known = set(option_keys(SearchConfig))
    options = {k: v for k, v in upgrade_options(search.get("options") or {}).items() if k in known}
    try:
        cfg = SearchConfig.from_options(options)
    except ConfigError as exc:
        raise ConfigError(f"{Path(run['dir']) / 'search.json'} records a setting refused today ({exc}); "
                          "rerun the search into a fresh --out with a valid value") from None
    return summarise(run["records"], cfg)


def pareto_command(dirs: Sequence[str | Path], output: str | Path | None = None, title: str | None = None,
                   breakdown: bool = False) -> list[Path]:
    """Plot the fronts of the search folders ``dirs`` into ``output``; return the files written.

    Args:
        dirs: folders written by ``codesign search``.
        output: the plot file (``.png``, ``.pdf`` or ``.svg``); default ``DIR/pareto.png`` for one folder.
        title: figure title.
        breakdown: also draw each front member's cost by stage into ``<output>-breakdown.<ext>``.
    """
    dirs = [Path(d) for d in dirs]
    if output is None:
        if len(dirs) > 1:
            raise ConfigError("several search folders: give -o FILE for the combined plot")
        out = dirs[0] / "pareto.png"
    else:
        out = Path(output)
    output_paths(out)  # validates the format before any work
    if out.exists() and out.is_dir():
        raise ConfigError(f"-o {out}: is a folder; give a plot file name such as {out / 'pareto.png'}")
    check_writable_dir(str(out.parent), "-o: the folder of")
    summaries = [summary_of(_load(d)) for d in dirs]
    labels = run_labels(summaries, [d.resolve().name for d in dirs])
    written = plot_fronts(summaries, out, title=title, labels=labels)
    extra = []
    if breakdown:
        extra = plot_breakdown(summaries, out.with_name(out.stem + "-breakdown" + out.suffix), labels=labels)
    md = out.with_suffix(".md")
    parts = [f"# Pareto fronts\n\nPlot: `{written[0].name}` (and `{written[1].name}`).\n"]
    for d, s, label in zip(dirs, summaries, labels):
        parts.append(f"Search folder: `{d}` ({label})\n\n" + front_markdown(s))
    atomic_write_text(md, "\n".join(parts))
    return [*written, md, *extra]
