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
    from codesign.devices import get_device_class
    from codesign.dictionaries import get_dictionary_class
    from codesign.features import parse_memory
    from codesign.search.config import SearchConfig
    from codesign.search.space import build_space, parse_space_option

    for path in sorted((ROOT / "experiments/search").glob("mnist-*.toml")):
        cfg = read_config_file(path)
        SearchConfig.from_options(cfg)  # every key known, every value valid
        assert cfg["dataset"] == "mnist" and cfg["samples"] >= 32 and path.stem == f"mnist-{cfg['device']}"
        # The space builds for MNIST (784 inputs, 54000 training + 6000 validation rows), as the comment says.
        classes = {d: get_dictionary_class(d) for d in cfg["dictionaries"]}
        space = build_space(
            n_inputs=784, n_train=54000, n_rows=60000, max_memory=parse_memory(cfg["max_memory"]),
            device_space=get_device_class(cfg["device"]).search_space(), dictionaries=cfg["dictionaries"],
            ranks=cfg["ranks"], dictionary_space=dict(parse_space_option(classes, t) for t in cfg["space"]),
        )
        assert set(space.dictionaries) == set(cfg["dictionaries"]) and not space.dropped
        assert space.max_rank("monomial", {"degree": 3}) == 27 and space.max_rank("monomial", {"degree": 2}) == 60
