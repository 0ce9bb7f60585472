"""The README is a front page that agrees with CI, and its links into the docs site resolve.

(The site itself is checked by ``mkdocs build --strict`` in .ci/run: broken links, missing pages
and docstrings mkdocstrings cannot read fail the build.)
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _setup_commands() -> list[str]:
    block = README.split("## Set up", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line.startswith("python3 -m venv")]


def _steps(command: str) -> list[list[str]]:
    """``a && b && c`` as argument lists, with environment assignments and pip's -q dropped."""
    steps = []
    for part in command.split("&&"):
        words = [w for w in shlex.split(part) if w != "-q" and not re.match(r"^[A-Z_]+=", w)]
        steps.append(words)
    return steps


def test_readme_is_a_front_page():
    assert len(README.splitlines()) <= 200
    assert len(_setup_commands()) == 2


def test_readme_test_command_is_what_ci_runs():
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line.startswith("python3 -m venv")]
    assert len(ci) == 1
    assert _steps(_setup_commands()[1]) == _steps(ci[0])
    assert ["bash", ".ci/lint-imports"] in _steps(ci[0])
    assert [".venv/bin/mkdocs", "build", "--strict"] in _steps(ci[0])


def test_readme_links_resolve():
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", README)
    local = [t for t in targets if not re.match(r"^[a-z]+://", t)]
    assert local, "the README links into the docs"
    missing = [t for t in local if not (ROOT / t).exists()]
    assert not missing, f"README links to missing files: {missing}"


def _nav_files(node) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [f for v in node.values() for f in _nav_files(v)]
    return [f for item in node for f in _nav_files(item)]


def test_every_docs_page_is_in_the_nav():
    nav = set(_nav_files(yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"]))
    docs = ROOT / "docs"
    pages = {p.relative_to(docs).as_posix() for p in docs.rglob("*") if p.suffix in (".md", ".ipynb")
             and "hooks" not in p.parts and ".ipynb_checkpoints" not in p.parts}
    assert pages - nav == set(), "pages missing from mkdocs.yml's nav"
    assert nav - pages == set(), "nav entries without a page"


def test_getting_started_has_the_readme_setup():
    page = (ROOT / "docs" / "getting-started.md").read_text()
    block = page.split("## Set up", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    assert [line for line in block.splitlines() if line.startswith("python3 -m venv")] == _setup_commands()
