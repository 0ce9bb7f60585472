"""One import root: codesign, codesign.devices and codesign.search, from a wheel and an editable install."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROBE = (
    "import codesign.devices, codesign.search, codesign.cli\n"
    "import importlib.util as u\n"
    "for name in ('devices', 'search'):\n"
    "    try:\n"
    "        __import__(name)\n"
    "    except ModuleNotFoundError:\n"
    "        pass\n"
    "    else:\n"
    "        raise SystemExit(f'import {name} resolved to something')\n"
    "from importlib.metadata import entry_points\n"
    "eps = {e.name: e.value for e in entry_points(group='codesign.devices')}\n"
    "assert eps['photonic_mzi'].startswith('codesign.devices.'), eps\n"
    "print(codesign.devices.__file__)\n"
)


def _probe(cwd: Path, env: dict[str, str] | None = None) -> str:
    run = subprocess.run([sys.executable, "-c", PROBE], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    return run.stdout.strip()


@pytest.mark.parametrize("where", ["tmp", "root"])
def test_editable_install_imports_from_any_folder(where, tmp_path):
    """`import devices` / `import search` fail, the repository root included (where the folders are)."""
    cwd = {"tmp": tmp_path, "root": ROOT}[where]
    path = _probe(cwd)
    assert Path(path).resolve() == (ROOT / "devices" / "__init__.py").resolve()


@pytest.mark.slow
def test_wheel_install_has_one_root(tmp_path):
    """A wheel puts one package into site-packages: codesign, with devices and search inside it."""
    site = tmp_path / "site"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target", str(site), str(ROOT)],
        capture_output=True, text=True, timeout=600,
    )
    assert build.returncode == 0, build.stderr
    top = sorted(p.name for p in site.iterdir() if not p.name.endswith(".dist-info") and p.name != "bin")
    assert top == ["codesign"], top
    env = {**os.environ, "PYTHONPATH": str(site)}
    work = tmp_path / "elsewhere"
    work.mkdir()
    path = _probe(work, env)
    assert Path(path).is_relative_to(site), path
