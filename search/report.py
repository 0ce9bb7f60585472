"""``codesign pareto``: the fronts of finished searches as one plot and a markdown summary."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from codesign.cache import atomic_write_text
from codesign.errors import ConfigError
from codesign.options import option_keys

from .config import SearchConfig
from .outputs import front_markdown, load_search
from .plots import output_paths, plot_breakdown, plot_fronts, run_labels
from .runner import summarise, upgrade_options


def summary_of(run: dict) -> dict:
    """The front summary of a loaded search folder (recomputed from its log if not written yet)."""
    if run["front"] is not None:
        return run["front"]
    search = run["search"]
    if not run["records"]:
        raise ConfigError(f"{run['dir']} holds no finished trial yet")
    known = set(option_keys(SearchConfig))
    options = {k: v for k, v in upgrade_options(search.get("options") or {}).items() if k in known}
    return summarise(run["records"], SearchConfig.from_options(options))


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
    summaries = [summary_of(load_search(d)) for d in dirs]
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
