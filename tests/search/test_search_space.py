"""The search space: bounds from the data and memory, dictionary and device specs to Optuna, --space, replay."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import optuna
import pytest
import torch

from codesign.opcounts import OpCounts

from codesign import dictionaries
from codesign.dictionaries import Dictionary, DictionaryParams, create_dictionary, get_dictionary_class, register_dictionary
from codesign.errors import ConfigError
from codesign.features import fit_memory
from codesign.devices.base import Choice, FloatRange, IntRange
from codesign.search.space import (
    build_space,
    dictionary_params,
    flatten_config,
    normalize_config,
    parse_space_option,
    unflatten_config,
)

DEVICE = {"bits": IntRange(2, 8), "gain": FloatRange(0.1, 10.0, log=True), "tile": Choice((64, 128, "auto"))}


def _space(**kw):
    args = dict(n_inputs=64, n_train=1293, n_rows=1437, max_memory=1 << 30, device_space=DEVICE,
                dictionaries=["monomial", "rbf"])
    args.update(kw)
    return build_space(**args)


def _sample(space, n=40, seed=0, sampler=None):
    sampler = sampler or optuna.samplers.RandomSampler(seed=seed)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    out = []
    for _ in range(n):
        t = study.ask()
        space(t)
        out.append(t.params)
        study.tell(t, [0.5, 1.0])
    return out


def _n_features(p):
    config = unflatten_config(p)
    return create_dictionary(config["dictionary"], **dictionary_params(config)).n_features(p["pca_rank"])


def test_rank_is_capped_by_input_dimension():
    space = _space(ranks=(2, 500))
    assert space.rank_max == 64
    with pytest.raises(ConfigError, match="at most 64"):
        _space(ranks=(70, 80))
    with pytest.raises(ConfigError, match="MIN <= MAX"):
        _space(ranks=(10, 5))


def test_rank_is_capped_by_memory_per_dictionary_size():
    # 60000 rows, 103 MB: at most 279 features (60000 x F x 6 bytes of features and their pass
    # copy + 4 F^2 x 8 of Gram and factors): C(24,2) = 276 -> r <= 22; C(12,3) = 220 -> r <= 9
    space = _space(n_inputs=784, n_train=54000, n_rows=60000, max_memory=103_000_000, ranks=(2, 100))
    assert space.max_rank("monomial", {"degree": 2}) == 22
    assert space.max_rank("monomial", {"degree": 3}) == 9
    # and the centre count by the same budget at the smallest rank: 1 + 2 + 276 = 279
    assert space.dictionaries["rbf"]["centers"] == IntRange(16, 276, log=True)
    for p in _sample(space):
        assert sum(fit_memory(60000, _n_features(p)).values()) <= 103_000_000
    d = json.loads(json.dumps(space.describe()))
    assert d["max_rank"]["monomial"] == {"degree=2": 22, "degree=3": 9}
    assert d["dictionaries"]["rbf"]["centers"] == {"int": [16, 276], "log": True}


def test_branches_that_cannot_fit_are_dropped():
    # degree 3 cannot fit at rank 20 in 64 MiB, degree 2 can
    space = _space(n_rows=60000, max_memory=103_000_000, ranks=(20, 30), dictionaries=["monomial"])
    assert space.dictionaries["monomial"]["degree"] == Choice((2,))
    space = _space(n_rows=60000, max_memory=103_000_000, ranks=(20, 30), dictionary_space={"degree": "3"})
    assert list(space.dictionaries) == ["rbf"] and "no degree searched fits" in space.dropped["monomial"]
    with pytest.raises(ConfigError, match=r"no dictionary fits --max-memory \(1.0 MiB for 60000 rows\) even at "
                                          r"pca_rank=20 \(monomial: no degree searched fits"):
        _space(n_rows=60000, max_memory=1 << 20, ranks=(20, 30), dictionaries=["monomial"])


def test_dictionary_and_device_specs_become_distributions_and_pins_are_left_out():
    params = _sample(_space())
    assert {p["dictionary"] for p in params} == {"monomial", "rbf"}
    for p in params:
        assert 2 <= p["device/bits"] <= 8
        assert 0.1 <= p["device/gain"] <= 10.0
        assert p["device/tile"] in (64, 128, "auto")
        if p["dictionary"] == "monomial":
            assert p["monomial/degree"] in (2, 3) and "rbf/centers" not in p
        else:
            assert 16 <= p["rbf/centers"] <= 300 and "monomial/degree" not in p
    pinned = _space(pinned={"bits": 4})
    assert "bits" not in pinned.device and "gain" in pinned.device


def test_centres_capped_by_training_set():
    space = _space(n_train=100, dictionary_space={"centers": "16:1000"})
    assert space.dictionaries["rbf"]["centers"] == IntRange(16, 100, log=True)
    space = _space(n_train=10, dictionary_space={"centers": "16:1000"})
    assert space.dictionaries["rbf"]["centers"] == IntRange(10, 10, log=True)


def test_rff_searches_feature_count_and_bandwidth_with_the_count_capped_by_memory():
    space = _space(dictionaries=["rff"], max_memory=1 << 30)  # 4 x 4099^2 x 8 bytes of Gram fit in 1 GiB
    assert space.dictionaries["rff"] == {"features": IntRange(64, 4096, log=True),
                                         "bandwidth": FloatRange(0.5, 2.0, log=True)}
    params = _sample(space, n=30)
    assert {p["dictionary"] for p in params} == {"rff"}
    for p in params:
        assert 64 <= p["rff/features"] <= 4096 and 0.5 <= p["rff/bandwidth"] <= 2.0
    # 60000 rows in 200 MB: the count's upper end is the largest n whose 1 + 2 + n features fit
    # (features, pass copy and Gram, codesign.features.fit_memory) at the smallest rank
    space = _space(n_inputs=784, n_train=54000, n_rows=60000, max_memory=200_000_000, ranks=(2, 100),
                   dictionaries=["rff"])
    spec = space.dictionaries["rff"]["features"]
    assert spec.low == 64 and 64 <= spec.high < 4096
    assert sum(fit_memory(60000, 1 + 2 + spec.high).values()) <= 200_000_000
    assert sum(fit_memory(60000, 1 + 2 + spec.high + 1).values()) > 200_000_000
    for p in _sample(space):
        assert sum(fit_memory(60000, _n_features(p)).values()) <= 200_000_000
    narrowed = _space(dictionaries=["rff"], dictionary_space={"bandwidth": FloatRange(0.7, 1.4, log=True)})
    assert narrowed.dictionaries["rff"]["bandwidth"] == FloatRange(0.7, 1.4, log=True)


def test_bad_specs_and_dictionaries_are_refused():
    with pytest.raises(ConfigError, match="Choice values"):
        _space(device_space={"x": Choice(((1, 2), (3, 4)))})
    with pytest.raises(ConfigError, match="expected codesign.devices.base.IntRange"):
        _space(device_space={"x": (1, 2)})
    with pytest.raises(ConfigError, match="unknown dictionary 'fourier'; known dictionaries: monomial, rbf"):
        _space(dictionaries=["fourier"])
    with pytest.raises(ConfigError, match="degree=11 is out of range"):
        _space(dictionary_space={"degree": "2,11"})
    with pytest.raises(ConfigError, match="centers=0 is out of range"):
        _space(dictionary_space={"centers": IntRange(0, 10)})


# --------------------------------------------------------------------------- --space PARAM=SPEC
CLASSES = {name: get_dictionary_class(name) for name in ("monomial", "rbf")}


def test_parse_space_option():
    assert parse_space_option(CLASSES, "degree=2,3") == ("degree", Choice((2, 3)))
    assert parse_space_option(CLASSES, "centers=16:300") == ("centers", IntRange(16, 300, log=True))  # log as declared
    assert parse_space_option(CLASSES, " centers = 64 ") == ("centers", Choice((64,)))  # pinned
    assert parse_space_option(CLASSES, "kmeans_iters=5:10") == ("kmeans_iters", IntRange(5, 10))  # not declared: linear
    assert parse_space_option(CLASSES, "degree=3,2,3") == ("degree", Choice((3, 2)))


@pytest.mark.parametrize("text,message", [
    ("degree", r"--space 'degree': expected PARAM=SPEC"),
    ("degree=", r"expected PARAM=SPEC"),
    ("degree=2:3", r"--space degree=2:3 \(monomial\): degree takes values, not a range"),
    ("degree=two", r"--space degree=two \(monomial\): 'two' is not a valid int"),
    ("centers=16:1.5", r"--space centers=16:1.5 \(rbf\): '1.5' is not a valid int"),
    ("centers=300:16", r"the range is empty"),
    ("degree=2,,3", r"an empty value"),
    ("width=3", r"--space width=3: no dictionary searched has a parameter 'width' "
                r"\(their parameters: monomial: degree; rbf: centers, kmeans_iters\)"),
])
def test_parse_space_option_errors_name_the_value(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_space_option(CLASSES, text)


def test_space_option_pins_and_narrows_and_must_belong_to_a_searched_dictionary():
    space = _space(dictionary_space=dict(parse_space_option(CLASSES, t) for t in ("centers=64", "degree=3")))
    assert space.dictionaries == {"monomial": {"degree": Choice((3,))}, "rbf": {"centers": Choice((64,))}}
    for p in _sample(space, n=10):
        assert p.get("rbf/centers", 64) == 64 and p.get("monomial/degree", 3) == 3
    with pytest.raises(ConfigError, match="no dictionary searched has a parameter 'centers'"):
        _space(dictionaries=["monomial"], dictionary_space={"centers": "16:64"})


# --------------------------------------------------------------------------- plugins
@dataclass(frozen=True)
class _WidthParams(DictionaryParams):
    width: int = field(default=2, metadata={"doc": "copies of the linear block"})


class _WidthsA(Dictionary):
    """[1, z, z, ...]: ``width`` copies of z (a toy dictionary)."""

    name = "widths_a"
    Params = _WidthParams

    @classmethod
    def search_space(cls):
        return {"width": Choice((1, 2))}

    def n_features(self, rank):
        return 1 + rank * self.config.width

    def transform(self, z):
        return torch.cat([torch.ones(len(z), 1, dtype=z.dtype)] + [z] * self.config.width, 1)

    def lift_ops(self, rank):
        return OpCounts(inputs=rank, outputs=self.n_features(rank))


class _WidthsB(_WidthsA):
    name = "widths_b"

    @classmethod
    def search_space(cls):
        return {"width": IntRange(1, 8)}


@pytest.fixture
def width_dictionaries(monkeypatch):
    monkeypatch.setattr(dictionaries.REGISTRY, "registered", {})
    register_dictionary(_WidthsA)
    register_dictionary(_WidthsB)


def test_plugins_sharing_a_parameter_name_search_side_by_side(width_dictionaries):
    # The same name with a categorical in one branch and an int range in the other: Optuna
    # refuses that under one parameter name, so each is prefixed with its dictionary.
    space = _space(dictionaries=["widths_a", "widths_b"])
    params = _sample(space, n=30, sampler=optuna.samplers.TPESampler(seed=0, n_startup_trials=5))
    assert {p["dictionary"] for p in params} == {"widths_a", "widths_b"}
    assert all(("widths_a/width" in p) != ("widths_b/width" in p) for p in params)
    # An integer parameter is capped by bisection: F = 1 + 2 w features of 1000 rows take
    # 1000 F 6 + 32 F^2 bytes <= 60000 -> F <= 9 -> w <= 4
    space = _space(dictionaries=["widths_b"], n_rows=1000, max_memory=60_000, ranks=(2, 10))
    assert space.dictionaries["widths_b"]["width"] == IntRange(1, 4)
    for p in _sample(space, n=20):
        assert sum(fit_memory(1000, _n_features(p)).values()) <= 60_000


def test_every_installed_dictionary_space_builds():
    """Nothing dictionary-specific in search/: every installed dictionary's space converts."""
    for name in dictionaries.list_dictionaries():
        space = _space(dictionaries=[name])
        assert space.dictionaries[name] == dict(get_dictionary_class(name).search_space())
        assert {p["dictionary"] for p in _sample(space, n=5)} == {name}


# --------------------------------------------------------------------------- records and replay
def test_replay_gives_the_distributions_for_resume():
    space = _space()
    study = optuna.create_study(directions=["maximize", "minimize"])
    for _ in range(4):
        t = study.ask()
        space(t)
        dists = space.distributions(t.params)
        assert dists == t.distributions
        config = unflatten_config(t.params)
        assert flatten_config(config) == t.params
        assert set(config["device"]) == {"bits", "gain", "tile"}
        assert set(config[config["dictionary"]]) == set(space.dictionaries[config["dictionary"]])
        study.tell(t, [0.5, 1.0])


def test_old_records_with_top_level_sizes_are_read():
    old = {"dictionary": "monomial", "degree": 2, "pca_rank": 8, "device": {"bits": 3}}
    new = {"dictionary": "monomial", "monomial": {"degree": 2}, "pca_rank": 8, "device": {"bits": 3}}
    assert normalize_config(old) == new == normalize_config(new)
    assert normalize_config({"dictionary": "rbf", "degree": None, "centers": 40, "pca_rank": 3}) == \
        {"dictionary": "rbf", "rbf": {"centers": 40}, "pca_rank": 3}
    assert dictionary_params(old) == {"degree": 2}
    flat = flatten_config(old)
    assert flat == {"dictionary": "monomial", "monomial/degree": 2, "pca_rank": 8, "device/bits": 3}
    assert set(_space(device_space={"bits": IntRange(2, 8)}).distributions(flat)) == set(flat)


def test_every_registered_device_space_builds():
    """Nothing device-specific in search/: every installed device's space converts."""
    from codesign import devices

    for name in devices.list_devices():
        space = _space(device_space=devices.get_device_class(name).search_space())
        assert _sample(space, n=5)
