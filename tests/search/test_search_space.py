"""The search space: bounds from the data and memory, device specs to Optuna, replay for resume."""

from __future__ import annotations

import math

import optuna
import pytest

from codesign.errors import ConfigError
from codesign.devices.base import Choice, FloatRange, IntRange
from codesign.search.space import build_space, flatten_config, unflatten_config

DEVICE = {"bits": IntRange(2, 8), "gain": FloatRange(0.1, 10.0, log=True), "tile": Choice((64, 128, "auto"))}


def _space(**kw):
    args = dict(n_inputs=64, n_train=1293, n_rows=1437, max_memory=1 << 30, device_space=DEVICE)
    args.update(kw)
    return build_space(**args)


def _sample(space, n=40, seed=0):
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=optuna.samplers.RandomSampler(seed=seed))
    out = []
    for _ in range(n):
        t = study.ask()
        space(t)
        out.append(t.params)
        study.tell(t, [0.5, 1.0])
    return out


def test_rank_is_capped_by_input_dimension():
    space = _space(ranks=(2, 500))
    assert space.rank_max == 64
    with pytest.raises(ConfigError, match="at most 64"):
        _space(ranks=(70, 80))
    with pytest.raises(ConfigError, match="MIN <= MAX"):
        _space(ranks=(10, 5))


def test_rank_is_capped_by_memory_per_degree():
    # 60000 rows, 64 MiB: at most 279 features: C(24,2) = 276 -> r <= 22; C(12,3) = 220 -> r <= 9
    space = _space(n_inputs=784, n_train=54000, n_rows=60000, max_memory=64 << 20, ranks=(2, 100))
    assert space.max_rank("monomial", {"degree": 2}) == 22
    assert space.max_rank("monomial", {"degree": 3}) == 9
    for p in _sample(space):
        feats = math.comb(p["pca_rank"] + p.get("degree", 0), p.get("degree", 0)) if p["dictionary"] == "monomial" \
            else 1 + p["pca_rank"] + p["centers"]
        assert 60000 * feats * 4 <= 64 << 20


def test_branches_that_cannot_fit_are_dropped():
    # degree 3 cannot fit at rank 20 in 64 MiB, degree 2 can
    space = _space(n_rows=60000, max_memory=64 << 20, ranks=(20, 30), dictionaries=["monomial"])
    assert space.degrees == (2,)
    with pytest.raises(ConfigError, match="no dictionary fits"):
        _space(n_rows=60000, max_memory=1 << 20, ranks=(20, 30), dictionaries=["monomial"])


def test_device_specs_become_distributions_and_pins_are_left_out():
    params = _sample(_space())
    for p in params:
        assert 2 <= p["device/bits"] <= 8
        assert 0.1 <= p["device/gain"] <= 10.0
        assert p["device/tile"] in (64, 128, "auto")
        if p["dictionary"] == "monomial":
            assert p["degree"] in (2, 3) and "centers" not in p
        else:
            assert 16 <= p["centers"] <= 300 and "degree" not in p
    pinned = _space(pinned={"bits": 4})
    assert "bits" not in pinned.device and "gain" in pinned.device


def test_centres_capped_by_training_set():
    space = _space(n_train=100, max_centers=1000)
    assert space.max_centers() == 100


def test_bad_specs_and_dictionaries_are_refused():
    with pytest.raises(ConfigError, match="Choice values"):
        _space(device_space={"x": Choice(((1, 2), (3, 4)))})
    with pytest.raises(ConfigError, match="expected codesign.devices.base.IntRange"):
        _space(device_space={"x": (1, 2)})
    with pytest.raises(ConfigError, match="unknown dictionary"):
        _space(dictionaries=["fourier"])


def test_replay_gives_the_distributions_for_resume():
    space = _space()
    study = optuna.create_study(directions=["maximize", "minimize"])
    t = study.ask()
    space(t)
    dists = space.distributions(t.params)
    assert dists == t.distributions
    config = unflatten_config(t.params)
    assert flatten_config(config) == t.params
    assert set(config["device"]) == {"bits", "gain", "tile"}


def test_every_registered_device_space_builds():
    """Nothing device-specific in search/: every installed device's space converts."""
    from codesign import devices

    for name in devices.list_devices():
        space = _space(device_space=devices.get_device_class(name).search_space())
        assert _sample(space, n=5)
