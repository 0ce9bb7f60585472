"""CITATION.cff and CHANGELOG.md: present, well formed, and in step with the package version."""

from __future__ import annotations

import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_citation_cff_names_the_software_and_the_method_paper():
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert cff["cff-version"] == "1.2.0" and cff["type"] == "software" and cff["version"] == version
    assert cff["title"].startswith("codesign") and cff["license"] == "MIT" and cff["authors"]
    (paper,) = cff["references"]
    assert [a["family-names"] for a in paper["authors"]] == ["Kimura", "Ohkubo"]
    assert paper["identifiers"][0]["value"] == "arXiv:2604.06732" and paper["year"] == 2026


def test_changelog_has_unreleased_and_the_current_version():
    text = (ROOT / "CHANGELOG.md").read_text()
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert "## [Unreleased]" in text and f"## [{version}]" in text
