"""Pareto plots: accuracy on hardware against a cost, one colour per search.

Drawn with matplotlib's object API (no pyplot, no global backend change), so it is safe in
scripts, tests and notebooks alike. The legend sits below the axes so it never hides a point;
with one search the knee is labelled in the plot, with several each search's knee is written in
its legend entry (and marked by a star in its colour). Before a figure is written, every text
artist is moved or wrapped until it lies inside the figure (:func:`keep_texts_inside`).
"""

from __future__ import annotations

import io
import textwrap
from pathlib import Path
from typing import Any, Mapping, Sequence

from codesign.cache import atomic_write_bytes
from codesign.errors import ConfigError

from .outputs import cost_label, cost_unit, describe_config
from .pareto import use_log_scale

#: Formats written beside the one asked for: a PNG for viewing, a PDF for papers.
COMPANION = {".png": ".pdf", ".pdf": ".png", ".svg": ".png"}
_VARYING = ("dataset", "protocol", "method", "teacher")


def output_paths(path: str | Path) -> list[Path]:
    """The requested file and its companion format (``x.png`` -> ``x.png``, ``x.pdf``)."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in COMPANION:
        raise ConfigError(f"-o {p}: unsupported plot format {p.suffix or '(none)'!r}; use .png, .pdf or .svg")
    return [p, p.with_suffix(COMPANION[suffix])]


def run_labels(summaries: Sequence[Mapping[str, Any]], names: Sequence[str] | None = None) -> list[str]:
    """One legend label per search: the device, plus whatever differs between the searches.

    Where two labels would still be equal, ``names`` (e.g. the folders' names) tell them apart.
    """
    varying = [k for k in _VARYING if len({str(s.get(k)) for s in summaries}) > 1]
    labels = []
    for s in summaries:
        extras = [str(s[k]) for k in varying]
        labels.append(s["device"] + (f" ({', '.join(extras)})" if extras else ""))
    if len(set(labels)) < len(labels):
        names = names or [f"#{i + 1}" for i in range(len(summaries))]
        labels = [f"{lab} [{n}]" for lab, n in zip(labels, names)]
    return labels


def _knee_text(knee: Mapping[str, Any], key: str) -> str:
    test = "" if knee.get("test_hw_accuracy") is None else f" / {100 * knee['test_hw_accuracy']:.1f}% test"
    unit = cost_unit(key)
    return (f"{knee['describe']}\n{100 * knee['val_hw_accuracy']:.1f}% val{test} at "
            f"{knee['cost']:.3g} {unit}").rstrip()


def plot_fronts(
    summaries: Sequence[Mapping[str, Any]],
    path: str | Path,
    *,
    title: str | None = None,
    labels: Sequence[str] | None = None,
) -> list[Path]:
    """Draw one or more searches' fronts into ``path`` and its companion format.

    Args:
        summaries: ``front.json`` contents (as :func:`codesign.search.runner.summarise` writes them).
        path: output file (``.png``, ``.pdf`` or ``.svg``); the other format is written beside it.
        title: figure title (default: says what is plotted against what, on which data).
        labels: legend label per search (default: :func:`run_labels`).

    Returns:
        The files written.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    if not summaries:
        raise ConfigError("nothing to plot: give at least one search folder")
    keys = {s["cost_key"] for s in summaries}
    if len(keys) > 1:
        raise ConfigError(
            f"the searches optimised different costs ({', '.join(sorted(keys))}); plot searches with the same --cost together"
        )
    key = keys.pop()
    labels = list(labels) if labels is not None else run_labels(summaries)
    single = len(summaries) == 1
    all_costs = [p["cost"] for s in summaries for p in s.get("points", []) if p.get("cost") is not None]
    log_x = use_log_scale(all_costs)
    all_acc = [p["hw_accuracy"] for s in summaries for p in s.get("points", [])] or [0.0, 1.0]

    fig = Figure(figsize=(8, 6.2 if single else 6.2 + 0.45 * len(summaries)), dpi=150, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    handles: list[Any] = []
    any_infeasible = any_test = False
    for i, (s, label) in enumerate(zip(summaries, labels)):
        c = f"C{i % 10}"
        pts = s.get("points", [])
        dom = [p for p in pts if p["feasible"] and not p["on_front"]]
        bad = [p for p in pts if not p["feasible"]]
        if dom:
            ax.scatter([p["cost"] for p in dom], [100 * p["hw_accuracy"] for p in dom], s=16, color=c, alpha=0.25,
                       linewidths=0, zorder=2)
        if bad:
            any_infeasible = True
            ax.scatter([p["cost"] for p in bad], [100 * p["hw_accuracy"] for p in bad], s=18, color=c, alpha=0.3,
                       marker="x", linewidths=0.8, zorder=2)
        front = s.get("front", [])
        knee = next((p for p in front if p["trial"] == s.get("knee")), None)
        if front:
            fc = [p["cost"] for p in front]
            fa = [100 * p["val_hw_accuracy"] for p in front]
            ax.step(fc, fa, where="post", color=c, lw=1.6, zorder=3)
            ax.scatter(fc, fa, s=30, color=c, edgecolors="white", linewidths=0.6, zorder=4)
            tests = [(p["cost"], 100 * p["test_hw_accuracy"]) for p in front if p.get("test_hw_accuracy") is not None]
            if tests:
                any_test = True
                ax.scatter([t[0] for t in tests], [t[1] for t in tests], s=34, facecolors="none", edgecolors=c,
                           marker="D", linewidths=0.9, zorder=4)
        if knee is not None:
            kx, ky = knee["cost"], 100 * knee["val_hw_accuracy"]
            ax.scatter([kx], [ky], s=180, marker="*", color=c, edgecolors="black", linewidths=0.7, zorder=5)
            if single:
                # Below the knee when it sits in the upper half of the accuracies (the usual case).
                upper = ky >= 50 * (min(all_acc) + max(all_acc))
                text = "\n".join(textwrap.fill(line, 60, subsequent_indent="  ")
                                  for line in ("knee: " + _knee_text(knee, key)).split("\n"))
                note = ax.annotate(
                    text, xy=(kx, ky), xytext=(0.30, 0.40 if upper else 0.92),
                    textcoords="axes fraction", va="top", fontsize=8, color="black",
                    bbox={"boxstyle": "round,pad=0.3", "fc": "white", "ec": c, "alpha": 0.9},
                    arrowprops={"arrowstyle": "-", "color": c, "lw": 0.8}, zorder=6,
                )
                note.set_in_layout(False)  # inside the axes: the layout must not shrink them for it
        cons = s.get("constraints") or {}
        if cons.get("max_cost") is not None:
            ax.axvline(cons["max_cost"], color=c, ls="--", lw=0.8, alpha=0.7)
        if cons.get("min_accuracy") is not None:
            ax.axhline(100 * cons["min_accuracy"], color=c, ls="--", lw=0.8, alpha=0.7)
        entry = f"{label}: front, {len(front)} of {s['n_completed']} completed trials"
        if knee is not None and not single:
            config, result = _knee_text(knee, key).split("\n")
            lines = textwrap.wrap(f"knee ★ {config}: {result}", 100, subsequent_indent="    ")
            entry += "\n" + "\n".join("    " + ln for ln in lines)
        handles.append(Line2D([], [], color=c, lw=1.6, marker="o", ms=4, label=entry))
    grey = "0.45"
    handles.append(Line2D([], [], ls="", marker="o", ms=4, color=grey, alpha=0.35, label="dominated trials"))
    if any_infeasible:
        handles.append(Line2D([], [], ls="", marker="x", ms=5, color=grey, alpha=0.5,
                              label="trials breaking --max-cost / --min-accuracy"))
    n_unbuildable = sum(int(s.get("n_infeasible") or 0) for s in summaries)
    if n_unbuildable:
        handles.append(Line2D([], [], ls="", label=f"{n_unbuildable} trial(s) infeasible on the device (cannot be built, or above a power limit): not shown"))
    if any_test:
        handles.append(Line2D([], [], ls="", marker="D", ms=5, mfc="none", mec=grey,
                              label="front members scored on the test set"))
    handles.append(Line2D([], [], ls="", marker="*", ms=11, color=grey, mec="black", label="knee of the front"))

    if log_x:
        ax.set_xscale("log")
    ax.set_xlabel(cost_label(key) + (", log scale" if log_x else ""))
    ax.set_ylabel("accuracy on hardware, validation split (%)")
    ax.grid(True, which="major", alpha=0.3)
    fig.legend(handles=handles, loc="outside lower center", ncols=1 if not single else 2, fontsize=8, frameon=False)
    datasets = sorted({str(s["dataset"]) for s in summaries})
    if title is None:
        quantity = cost_label(key).split(" (")[0]
        title = f"Accuracy on hardware vs {quantity} on {', '.join(datasets)}"
        if single:
            s = summaries[0]
            failed = f", {s['n_failed']} failed" if s.get("n_failed") else ""
            title += f"\n{s['device']}, {s['protocol']}, teacher {s['teacher']}, {s['n_trials']} trials{failed}"
    ax.set_title(title, fontsize=10)

    return _save(fig, path)


def _text_extent(text: Any, renderer: Any) -> Any:
    """The window extent of ``text``, its box (an annotation's frame) included."""
    from matplotlib.transforms import Bbox

    bb = text.get_window_extent(renderer)
    patch = text.get_bbox_patch()
    if patch is not None:
        bb = Bbox.union([bb, patch.get_window_extent(renderer)])
    return bb


def _texts(fig: Any) -> list[Any]:
    """Every visible, non-empty text artist of ``fig`` (titles, labels, tick labels, legends, annotations)."""
    from matplotlib.text import Text

    hidden = set()  # labels of ticks outside the view limits: kept by the axis, never drawn
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            drawn = {id(lab) for tick in axis._update_ticks() for lab in (tick.label1, tick.label2)}
            ticks = axis.get_major_ticks() + axis.get_minor_ticks()
            hidden |= {id(lab) for tick in ticks for lab in (tick.label1, tick.label2) if id(lab) not in drawn}
    return [t for t in fig.findobj(match=Text) if t.get_visible() and t.get_text().strip() and id(t) not in hidden]


def texts_outside(fig: Any, pad: float = 0.5) -> list[tuple[str, Any]]:
    """``(text, window extent)`` of every text artist of ``fig`` reaching outside the figure by more
    than ``pad`` pixels (the figure drawn first, so that the layout is final)."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    box = fig.bbox
    out = []
    for t in _texts(fig):
        bb = _text_extent(t, renderer)
        if bb.x0 < box.x0 - pad or bb.y0 < box.y0 - pad or bb.x1 > box.x1 + pad or bb.y1 > box.y1 + pad:
            out.append((t.get_text(), bb))
    return out


def _rewrap(text: str, ratio: float) -> str:
    """``text`` with its lines wrapped to ``ratio`` of its longest line's length."""
    lines = text.split("\n")
    width = max(12, int(max(len(ln) for ln in lines) * ratio))
    return "\n".join(textwrap.fill(ln, width, subsequent_indent="  ") if len(ln) > width else ln for ln in lines)


def keep_texts_inside(fig: Any, margin: float = 4.0, rounds: int = 8) -> None:
    """Move or wrap every text artist of ``fig`` until it lies inside the figure.

    An annotation (the knee's label) is slid back inside along the axes, and wrapped if it is
    wider than the figure; a legend wider than the figure has its widest entries wrapped; any
    other text (a title, an axis or tick label) is wrapped to the room it has from where it
    starts (a word too long to wrap gets a smaller font). Repeated, since a constrained layout
    moves things again after each change.

    Args:
        fig: a matplotlib figure with a canvas.
        margin: pixels kept free at the figure's edges.
        rounds: passes at most.
    """
    from matplotlib.text import Annotation

    for _ in range(rounds):
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        box = fig.bbox
        avail_w, avail_h = box.width - 2 * margin, box.height - 2 * margin
        legend_of = {id(t): leg for leg in _legends(fig) for t in leg.get_texts()}
        changed = False
        done_legends: set[int] = set()
        for t in _texts(fig):
            bb = _text_extent(t, renderer)
            left, right = box.x0 + margin - bb.x0, bb.x1 - (box.x1 - margin)
            below, above = box.y0 + margin - bb.y0, bb.y1 - (box.y1 - margin)
            if max(left, right, below, above) <= 0:
                continue
            changed = True
            if isinstance(t, Annotation) and bb.width <= avail_w and bb.height <= avail_h:
                _slide(t, -right if right > 0 else max(left, 0.0), -above if above > 0 else max(below, 0.0), fig)
                continue
            leg = legend_of.get(id(t))
            if leg is not None:
                if id(leg) not in done_legends:
                    done_legends.add(id(leg))
                    _fit_legend(leg, renderer, avail_w)
                continue
            vertical = abs(t.get_rotation() % 180 - 90) < 1
            if vertical:
                room = avail_h if t.get_verticalalignment() == "center" or below > 0 else box.y1 - margin - bb.y0
                size = bb.height
            else:
                room = avail_w if t.get_horizontalalignment() == "center" or left > 0 else box.x1 - margin - bb.x0
                size = bb.width
            _shrink(t, min(0.9, 0.95 * max(room, 1.0) / max(size, 1.0)))
        if not changed:
            return


def _legends(fig: Any) -> list[Any]:
    return [leg for leg in [*fig.legends, *(ax.get_legend() for ax in fig.axes)] if leg is not None]


def _fit_legend(leg: Any, renderer: Any, avail: float) -> None:
    """Wrap the widest entries of a legend so that it is at most ``avail`` pixels wide."""
    lb = leg.get_window_extent(renderer)
    texts = [t for t in leg.get_texts() if t.get_text().strip()]
    if not texts:
        return
    widths = [t.get_window_extent(renderer).width for t in texts]
    over = max(lb.width - avail, 0.0) + 8.0
    target = max(max(widths) - over, 40.0)
    for t, w in zip(texts, widths):
        if w > target:
            _shrink(t, min(0.95, 0.97 * target / w))


def _slide(t: Any, dx: float, dy: float, fig: Any) -> None:
    """Move an annotation's text by ``(dx, dy)`` pixels in whatever coordinates it is placed in."""
    coords = t.anncoords if isinstance(t.anncoords, str) else ""
    x, y = t.xyann
    if coords == "axes fraction":
        t.xyann = (x + dx / t.axes.bbox.width, y + dy / t.axes.bbox.height)
    elif coords in ("figure fraction", "subfigure fraction"):
        t.xyann = (x + dx / fig.bbox.width, y + dy / fig.bbox.height)
    elif coords == "offset points":
        t.xyann = (x + dx * 72 / fig.dpi, y + dy * 72 / fig.dpi)
    elif coords == "offset pixels":
        t.xyann = (x + dx, y + dy)
    else:
        _shrink(t, 0.8)


def _shrink(t: Any, ratio: float) -> None:
    """Wrap ``t``'s lines to ``ratio`` of their length; a single unbreakable word gets a smaller font."""
    new = _rewrap(t.get_text(), ratio)
    if new == t.get_text():
        t.set_fontsize(t.get_fontsize() * max(0.5, ratio))
    else:
        _set_text(t, new)


def _set_text(t: Any, text: str) -> None:
    """Set a text's string; a tick label through its axis (a formatter would undo a plain set)."""
    for ax in t.figure.axes:
        for axis in (ax.xaxis, ax.yaxis):
            labels = axis.get_ticklabels()
            if any(lab is t for lab in labels):
                axis.set_ticks(axis.get_ticklocs(), [text if lab is t else lab.get_text() for lab in labels])
                return
    t.set_text(text)


def _save(fig: Any, path: str | Path) -> list[Path]:
    """Write ``fig`` to ``path`` and its companion format, atomically; return the files.

    Every text is first brought inside the figure (:func:`keep_texts_inside`)."""
    keep_texts_inside(fig)
    written = []
    for p in output_paths(path):
        buf = io.BytesIO()
        fig.savefig(buf, format=p.suffix.lstrip(".").lower())
        atomic_write_bytes(p, buf.getvalue())
        written.append(p)
    return written


#: Stages of an inference in the order they run (``codesign.inference_cost.STAGES``), with colours.
_STAGE_COLOURS = {"pca": "#4C72B0", "lift": "#55A868", "conversion": "#C44E52", "matrix": "#8172B2"}


def stage_key(stage: str, key: str) -> str:
    """The flat cost key of one stage's share of ``key`` (``pca`` + ``energy_pj`` -> ``pca_energy_pj``)."""
    return f"{stage}_{key}"


def _short_label(point: Mapping[str, Any]) -> str:
    """``trial 12: monomial(degree=2), r=36, pca on device (97.4%)``: the device fields left out
    (they are in front.md), so that the bars keep the figure's width."""
    cfg = point.get("config") or {}
    text = describe_config({k: v for k, v in cfg.items() if k != "device"})
    return f"trial {point['trial']}: {text} ({100 * point['val_hw_accuracy']:.1f}%)"


def plot_breakdown(
    summaries: Sequence[Mapping[str, Any]],
    path: str | Path,
    *,
    title: str | None = None,
    labels: Sequence[str] | None = None,
) -> list[Path]:
    """Stacked bars of each front member's cost by stage (PCA, lift, conversion, matrix).

    One panel per search, one bar per front member (cheapest first, labelled with its
    configuration and accuracy), the cost objective split into the stages of the inference; for
    energy, each stage's held (static) energy is hatched after its dynamic part.

    Args:
        summaries: ``front.json`` contents whose cost objective is ``energy_pj``, ``latency_ns``
            or ``area_mm2`` (the quantities priced per stage).
        path: output file (``.png``, ``.pdf`` or ``.svg``); the other format is written beside it.
        title: figure title.
        labels: panel title per search (default: :func:`run_labels`).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    if not summaries:
        raise ConfigError("nothing to plot: give at least one search folder")
    keys = {s["cost_key"] for s in summaries}
    key = keys.pop() if len(keys) == 1 else None
    if key not in ("energy_pj", "latency_ns", "area_mm2"):
        raise ConfigError(
            f"a stage breakdown needs searches whose cost is energy, latency or area (got {', '.join(sorted(map(str, keys | {key})))})")
    labels = list(labels) if labels is not None else run_labels(summaries)
    heights = [max(1, len(s.get("front", []))) for s in summaries]
    any_held = False
    fig = Figure(figsize=(9, 1.2 + 0.26 * sum(heights) + 0.5 * len(summaries)), dpi=150, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(summaries), 1, squeeze=False, height_ratios=heights)[:, 0]
    for ax, s, label in zip(axes, summaries, labels):
        front = s.get("front", [])
        names = [_short_label(p) for p in front]
        left = [0.0] * len(front)
        for stage, colour in _STAGE_COLOURS.items():
            vals = [float((p.get("costs") or {}).get(stage_key(stage, key), 0.0) or 0.0) for p in front]
            # energy: the stage's held (static) part hatched after its dynamic part (issue 26)
            held = [float((p.get("costs") or {}).get(stage_key(stage, "static_energy_pj"), 0.0) or 0.0)
                    if key == "energy_pj" else 0.0 for p in front]
            dyn = [v - h for v, h in zip(vals, held)]
            ax.barh(range(len(front)), dyn, left=left, color=colour, height=0.7)
            left = [a + b for a, b in zip(left, dyn)]
            if any(held):
                any_held = True
                ax.barh(range(len(front)), held, left=left, color=colour, height=0.7, hatch="///",
                        edgecolor="white", linewidth=0)
                left = [a + b for a, b in zip(left, held)]
        ax.set_yticks(range(len(front)), names, fontsize=6.5)
        ax.invert_yaxis()
        ax.set_title(f"{label}: front members by stage", fontsize=9, loc="left")
        ax.grid(True, axis="x", alpha=0.3)
        if not front:
            ax.text(0.5, 0.5, "empty front", transform=ax.transAxes, ha="center", va="center")
    axes[-1].set_xlabel(cost_label(key))
    handles = [Patch(color=c, label=n) for n, c in _STAGE_COLOURS.items()]
    if any_held:
        handles.append(Patch(facecolor="0.6", hatch="///", edgecolor="white", label="held (static) power"))
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=8, frameon=False)
    if title is None:
        title = f"Where the {cost_label(key).split(' (')[0]} of an inference goes, front by front"
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)
