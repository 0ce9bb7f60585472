"""The experiment script runs end to end in its --smoke-test mode (digits, 3 trials per device)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_run_searches_smoke(ray_session, split_teacher, tmp_path):
    spec = importlib.util.spec_from_file_location("run_searches", ROOT / "experiments/search/run_searches.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main(["--smoke-test", "--out", str(tmp_path), "--quiet"]) == 0
    for device in mod.DEVICES:
        front = json.loads((tmp_path / device / "front.json").read_text())
        assert front["device"] == device and front["dataset"] == "digits" and front["n_trials"] == 3
    for name in ("combined.png", "combined.pdf", "combined.md"):
        assert (tmp_path / name).is_file()


def test_mnist_configs_are_valid_search_configs():
    from codesign.config_files import read_config_file
    from codesign.search.cli import SEARCH_DEFAULTS

    for path in sorted((ROOT / "experiments/search").glob("mnist-*.toml")):
        cfg = read_config_file(path)
        assert set(cfg) <= set(SEARCH_DEFAULTS), path
        assert cfg["dataset"] == "mnist" and cfg["samples"] >= 32 and path.stem == f"mnist-{cfg['device']}"
