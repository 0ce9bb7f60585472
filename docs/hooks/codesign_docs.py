"""MkDocs hook: the parts of the site that are generated from the code, so they cannot drift.

* ``reference/cli.md`` holds the marker ``<!-- codesign-cli -->``; it is replaced by ``codesign --help``
  and ``codesign COMMAND --help`` of every command, printed by the real parser
  (:func:`codesign.cli.build_parser`, whose options are declared on the option dataclasses), and a
  table of each command's flags with their config-file keys, read from the same parser.
* ``reference/api/codesign.md`` holds ``<!-- codesign-all -->``; it becomes one mkdocstrings block
  (``::: module.name``) per name in ``codesign.__all__``, documented where it is defined, so the
  reference lists exactly the public API.
* ``codesign.devices`` and ``codesign.search`` live in ``devices/`` and ``search/`` at the root
  (setuptools ``package-dir``), where griffe (mkdocstrings) does not look for submodules of
  ``codesign``: :func:`on_startup` lays out the installed package as a tree of links,
  ``build/griffe-src/codesign/`` (``build/`` is ignored by git), which ``mkdocs.yml`` gives
  mkdocstrings as its search path. The code is read statically, never imported by mkdocstrings.
* ``how-to/calibrate.md`` holds ``<!-- codesign-calibrators -->``; it becomes one section per
  installed device that declares a calibrator: what it fits, its measurement file's columns (name,
  unit, meaning, required) and the fields it sets, read from the calibrator class itself, so every
  calibrator (built-in or plugin) documents its own format.
* The committed figures under ``experiments/`` that pages show are published under ``figures/``
  from where they are, so the site always shows the figures the repository holds (no copies).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
from pathlib import Path

from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[2]
MARKER = "<!-- codesign-cli -->"
API_MARKER = "<!-- codesign-all -->"
CALIBRATORS_MARKER = "<!-- codesign-calibrators -->"
WIDTH = "90"  # columns argparse wraps --help at

#: the folder mkdocs.yml gives mkdocstrings as its search path
GRIFFE_SRC = ROOT / "build" / "griffe-src"
#: subpackages of codesign that live outside codesign/ (pyproject.toml [tool.setuptools.package-dir])
MAPPED = {"devices": ROOT / "devices", "search": ROOT / "search"}

#: site path -> committed file (relative to the repository root)
FIGURES = {
    "figures/combined.png": "experiments/search/results/combined.png",
    "figures/combined-breakdown.png": "experiments/search/results/combined-breakdown.png",
    "figures/robustness-drift.png": "experiments/robustness/robustness-drift.png",
    "figures/robustness-laser.png": "experiments/robustness/robustness-laser.png",
    "figures/optuna-dashboard-pareto-front.png": "experiments/search/dashboard/pareto-front.png",
    "figures/calibration-my_chip.png": "experiments/calibration/my_chip.png",
    "figures/calibration-photonic_fit.png": "experiments/calibration/photonic_fit.png",
    "figures/calibration-fpga_fit.png": "experiments/calibration/fpga_fit.png",
}


def on_startup(command, dirty):
    """Lay out ``codesign`` as installed: ``build/griffe-src/codesign/`` links to every entry of
    ``codesign/`` plus ``devices`` and ``search`` (rebuilt each time, so new modules appear)."""
    package = GRIFFE_SRC / "codesign"
    shutil.rmtree(GRIFFE_SRC, ignore_errors=True)
    package.mkdir(parents=True)
    for entry in (ROOT / "codesign").iterdir():
        if entry.name != "__pycache__":
            (package / entry.name).symlink_to(entry)
    for name, path in MAPPED.items():
        (package / name).symlink_to(path)


def on_files(files, config):
    for dest, src in FIGURES.items():
        path = ROOT / src
        if not path.is_file():
            raise FileNotFoundError(f"docs hook: {src} is missing; the site shows it as {dest}")
        files.append(File.generated(config, dest, abs_src_path=str(path)))
    return files


def _help(parser: argparse.ArgumentParser, argv: list[str]) -> str:
    """What ``codesign *argv`` prints (``--help``), at a fixed width."""
    before = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = WIDTH
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
            parser.parse_args([*argv, "--help"])
    finally:
        if before is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = before
    return out.getvalue().rstrip()


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _option_table(sub: argparse.ArgumentParser) -> list[str]:
    """Flags and config-file keys of a command whose ``--config`` takes the long flags' keys."""
    rows = ["| flag | config-file key | what it sets |", "|---|---|---|"]
    for action in sub._actions:
        if not action.option_strings or action.dest in ("help", "config"):
            continue
        flags = ", ".join(f"`{s}`" for s in action.option_strings)
        params = dict(vars(action), prog=sub.prog)  # as argparse expands %(default)s etc.
        if params.get("choices") is not None:
            params["choices"] = ", ".join(map(str, params["choices"]))
        help_ = (action.help or "") % params
        rows.append(f"| {flags} | `{action.dest}` | {_cell(help_)} |")
    return rows


def cli_reference() -> str:
    from codesign.cli import build_parser

    parser = build_parser()
    lines = ["## `codesign`", "", "```text", _help(parser, []), "```", ""]
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    summaries = {a.dest: a.help for a in commands._choices_actions}
    for name, sub in commands.choices.items():
        lines += [f"## `codesign {name}`", "", f"{summaries.get(name, '')}.", "",
                  "```text", _help(parser, [name]), "```", ""]
        config = next((a for a in sub._actions if a.dest == "config"), None)
        if config is not None and "the same keys as the long flags" in (config.help or ""):
            lines += [f"Every flag of `codesign {name}` is also a key of its `--config` file:", ""]
            lines += _option_table(sub) + [""]
    return "\n".join(lines)


def _rendered_elsewhere() -> dict[str, str]:
    """``{identifier: page}`` of what the other API pages render with ``:::`` blocks."""
    found = {}
    for page in sorted((ROOT / "docs" / "reference" / "api").glob("*.md")):
        if page.name in ("codesign.md", "index.md"):
            continue
        ident = None
        for line in page.read_text().splitlines():
            if line.startswith(":::"):
                ident = line[3:].strip()
                found[ident] = page.name
            elif ident and line.strip().startswith("members:"):
                # a block restricted to some members renders those, not the whole module
                del found[ident]
                names = line.split(":", 1)[1].strip().strip("[]")
                found.update({f"{ident}.{n.strip()}": page.name for n in names.split(",") if n.strip()})
            elif not line.startswith(" "):
                ident = None
    return found


def public_api() -> str:
    import codesign

    elsewhere = _rendered_elsewhere()
    blocks = []
    for name in codesign.__all__:
        obj = getattr(codesign, name)
        module = getattr(obj, "__module__", None) or "codesign"
        ident = f"{module}.{name}"
        # one primary place per object: a name another API page renders (itself or its whole
        # module) is linked there instead of rendered twice
        page = elsewhere.get(ident) or elsewhere.get(module)
        if page:
            blocks.append(f"`codesign.{name}`: see [`{ident}`][{ident}] ({page}).\n")
        else:
            blocks.append(f"::: {ident}\n")
    return "\n".join(blocks)


def calibrator_formats() -> str:
    """One section per installed device with a calibrator: description, columns, fitted fields."""
    from codesign.devices import get_device_class, list_devices
    from codesign.devices.calibration import calibrator_for

    out = []
    for name in list_devices():
        cal = calibrator_for(get_device_class(name))
        if cal is None:
            continue
        kind = type(cal)
        out += [f"### `{name}`", "", f"{cal.description} (`{kind.__module__}.{kind.__name__}`)", "",
                "| column | unit | meaning | required |", "|---|---|---|---|"]
        out += [f"| `{c.name}` | {c.unit} | {_cell(c.description)} | {'yes' if c.required else 'no'} |"
                for c in cal.columns]
        out += ["", "Fitted config fields: " + ", ".join(f"`{f}`" for f in cal.fields) + ".", ""]
        if cal.tolerances:
            out += ["Recovery it promises on its own model's measurements (`check_device` checks it): "
                    + ", ".join(f"`{k}` within {a:g} + {r:g} x |true|" for k, (a, r) in cal.tolerances.items())
                    + ".", ""]
    return "\n".join(out) if out else "(no installed device declares a calibrator)"


def on_page_markdown(markdown, page, config, files):
    if CALIBRATORS_MARKER in markdown:
        markdown = markdown.replace(CALIBRATORS_MARKER, calibrator_formats())
    if MARKER in markdown:
        markdown = markdown.replace(MARKER, cli_reference())
    if API_MARKER in markdown:
        markdown = markdown.replace(API_MARKER, public_api())
    return markdown
