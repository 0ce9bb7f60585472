"""Dictionaries: monomial counts and values, RBF centres and width, the registry, the plugin contract."""

from __future__ import annotations

import dataclasses
import itertools
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch

from codesign.opcounts import OpCounts
from scipy.spatial.distance import pdist

from codesign import dictionaries
from codesign.dictionaries import (
    Dictionary,
    DictionaryParams,
    Monomial,
    RBF,
    RFF,
    broken_dictionaries,
    contract_problem,
    create_dictionary,
    draw_fourier_features,
    fourier_features,
    get_dictionary_class,
    kmeans,
    list_dictionaries,
    median_distance,
    params_by_name,
    register_dictionary,
)
from codesign.errors import ConfigError
from codesign.specs import Choice, FloatRange, IntRange

pytestmark = pytest.mark.usefixtures("one_thread")  # small tensors: one thread is fastest on a shared machine


def monomial(degree: int, z: torch.Tensor) -> torch.Tensor:
    return Monomial(degree).fit(z).transform(z)


# --------------------------------------------------------------------------- monomial


@pytest.mark.parametrize("r,d", [(1, 1), (2, 2), (3, 2), (5, 2), (4, 3), (10, 3), (20, 2), (6, 4)])
def test_monomial_feature_count(r, d):
    z = torch.randn(7, r)
    out = monomial(d, z)
    assert Monomial(d).n_features(r) == math.comb(r + d, d)
    assert out.shape == (7, math.comb(r + d, d))


def test_monomial_values_r2_d2():
    z = torch.tensor([[2.0, 3.0], [-1.0, 0.5]])
    out = monomial(2, z)
    expected = torch.tensor([
        [1, 2, 3, 4, 6, 9],
        [1, -1, 0.5, 1, -0.5, 0.25],
    ])
    assert torch.equal(out, expected)  # [1, z1, z2, z1^2, z1 z2, z2^2]


def test_monomial_values_r2_d3():
    z = torch.tensor([[2.0, 3.0]])
    out = monomial(3, z)
    # [1, z1, z2, z1^2, z1z2, z2^2, z1^3, z1^2 z2, z1 z2^2, z2^3]
    assert out.tolist() == [[1, 2, 3, 4, 6, 9, 8, 12, 18, 27]]


@pytest.mark.parametrize("r,d", [(3, 2), (3, 3), (4, 3)])
def test_monomial_every_term_once_in_graded_blocks(r, d):
    # Distinct primes as inputs: every monomial's value is unique (unique factorisation).
    primes = [2.0, 3.0, 5.0, 7.0][:r]
    out = monomial(d, torch.tensor([primes], dtype=torch.float64))[0].tolist()
    col = 0
    for k in range(d + 1):
        expected = sorted(math.prod(c) for c in itertools.combinations_with_replacement(primes, k))
        block = out[col : col + len(expected)]
        assert sorted(block) == expected, f"degree-{k} block"
        col += len(expected)
    assert col == len(out)


def test_monomial_degree_one_is_affine():
    z = torch.randn(4, 3)
    out = monomial(1, z)
    assert torch.equal(out[:, 0], torch.ones(4)) and torch.equal(out[:, 1:], z)


@pytest.mark.parametrize("degree", [0, -1, 11, 2.0])
def test_monomial_bad_degree(degree):
    with pytest.raises(ConfigError, match="degree"):
        Monomial(degree)


def test_monomial_checks_width():
    d = Monomial(2).fit(torch.zeros(3, 4))
    with pytest.raises(ConfigError, match="rank 4.*width 5"):
        d.transform(torch.zeros(3, 5))


# --------------------------------------------------------------------------- rbf


@pytest.fixture(scope="module")
def scores(digits):
    from codesign.pca import PCA

    return PCA(5).fit(digits.x_train).transform(digits.x_train)


def test_rbf_count_and_values(scores):
    rbf = RBF(centers=30).fit(scores, seed=0)
    out = rbf.transform(scores)
    assert rbf.n_features(5) == 1 + 5 + 30 and out.shape == (1437, 36)
    assert torch.equal(out[:, 0], torch.ones(1437))
    assert torch.equal(out[:, 1:6], scores)
    g = out[:, 6:]
    assert (g > 0).all() and (g <= 1).all()
    # A centre scores exp(0) = 1 on itself.
    at_centres = rbf.transform(rbf.centers_)[:, 6:]
    assert torch.allclose(torch.diagonal(at_centres), torch.ones(30), atol=1e-5)
    # And the Gaussian formula holds for one hand-picked pair.
    d2 = float(((scores[7] - rbf.centers_[3]) ** 2).sum())
    assert float(g[7, 3]) == pytest.approx(math.exp(-d2 / (2 * rbf.sigma_**2)), rel=1e-4)


def test_rbf_sigma_is_median_pairwise_centre_distance(scores):
    rbf = RBF(centers=25).fit(scores, seed=3)
    assert rbf.sigma_ == pytest.approx(float(np.median(pdist(rbf.centers_.double().numpy()))), rel=1e-9)


def test_rbf_centres_deterministic_for_a_seed(scores):
    a = RBF(centers=20).fit(scores, seed=1).centers_
    b = RBF(centers=20).fit(scores, seed=1).centers_
    c = RBF(centers=20).fit(scores, seed=2).centers_
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_kmeans_centres_are_cluster_means():
    # Three well separated blobs: k-means must find their means.
    gen = torch.Generator().manual_seed(0)
    means = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    z = torch.cat([m + 0.1 * torch.randn(50, 2, generator=gen) for m in means])
    c = kmeans(z, 3, 50, seed=0)
    order = torch.cdist(means, c).argmin(1)
    assert sorted(order.tolist()) == [0, 1, 2]
    for i in range(3):
        assert torch.allclose(c[order[i]], z[50 * i : 50 * (i + 1)].mean(0), atol=1e-5)


def test_rbf_more_centres_than_samples():
    with pytest.raises(ConfigError, match="centers=11 exceeds the 10 training samples"):
        RBF(centers=11).fit(torch.randn(10, 2))


def test_rbf_bad_centres():
    with pytest.raises(ConfigError, match="centers"):
        RBF(centers=0)


def test_monomial_state_dict_restores_the_index():
    z = torch.randn(6, 4)
    fitted = Monomial(3).fit(z)
    back = Monomial(3)
    back.load_state_dict(fitted.state_dict())  # no fit: the index comes back from the rank
    assert torch.equal(back.transform(z), fitted.transform(z))


def test_rbf_state_dict_round_trip(scores):
    rbf = RBF(centers=10).fit(scores, seed=0)
    back = RBF(centers=10)
    back.load_state_dict(rbf.state_dict())
    assert torch.equal(back.transform(scores[:50]), rbf.transform(scores[:50]))


# --------------------------------------------------------------------------- rff
def test_rff_count_values_and_width(scores):
    rff = RFF(features=40, bandwidth=0.5).fit(scores, seed=0)
    out = rff.transform(scores)
    assert rff.n_features(5) == 1 + 5 + 40 and out.shape == (1437, 46)
    assert torch.equal(out[:, 0], torch.ones(1437)) and torch.equal(out[:, 1:6], scores)
    # sigma = bandwidth x the median distance between training scores (all 1437 rows < RFF_MEDIAN_ROWS)
    assert rff.sigma_ == pytest.approx(0.5 * float(np.median(pdist(scores.double().numpy()))), rel=1e-9)
    assert rff.weights_.shape == (40, 5) and rff.phases_.shape == (40,)
    # one feature by hand: cos(w . z + u)
    w, u = rff.weights_[7].double(), float(rff.phases_[7])
    assert float(out[11, 6 + 7]) == pytest.approx(math.cos(float(scores[11].double() @ w) + u), abs=1e-5)


def test_rff_draws_are_seeded_and_scaled():
    w, u = draw_fourier_features(6, 20_000, 2.5, seed=4)
    w2, u2 = draw_fourier_features(6, 20_000, 2.5, seed=4)
    assert torch.equal(w, w2) and torch.equal(u, u2)
    assert not torch.equal(w, draw_fourier_features(6, 20_000, 2.5, seed=5)[0])
    # W ~ N(0, 1/sigma^2): 120k entries, std 1/2.5 within 1 %; u uniform on [0, 2 pi)
    assert float(w.std()) == pytest.approx(1 / 2.5, rel=0.01) and abs(float(w.mean())) < 0.005
    assert 0 <= float(u.min()) and float(u.max()) < 2 * math.pi and float(u.mean()) == pytest.approx(math.pi, rel=0.02)
    with pytest.raises(ConfigError, match="sigma=0.0: the kernel width must be a positive"):
        draw_fourier_features(6, 10, 0.0, seed=0)


def test_rff_fit_is_deterministic_for_a_seed(scores):
    a = RFF(features=30).fit(scores, seed=1).transform(scores[:100])
    b = RFF(features=30).fit(scores, seed=1).transform(scores[:100])
    c = RFF(features=30).fit(scores, seed=2).transform(scores[:100])
    assert torch.equal(a, b) and not torch.equal(a[:, 6:], c[:, 6:])
    assert torch.equal(a[:, :6], c[:, :6])  # the seed moves only the random features


@pytest.mark.parametrize("n,tol", [(4096, 0.05), (65536, 0.012)])
def test_rff_approximates_the_gaussian_kernel(n, tol):
    """2 mean_j cos(w_j.x + u_j) cos(w_j.y + u_j) -> exp(-|x - y|^2 / (2 sigma^2)) (Rahimi & Recht 2007).

    The Monte-Carlo error of one kernel value is about 1 / sqrt(n) (each term is bounded by 2 and
    has variance <= 1); the tolerance is ~3 standard errors: 0.05 at 4096 features, 0.012 at 65536,
    over 40 pairs at distances 0 to 3 sigma.
    """
    sigma = 1.7
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(40, 8, generator=gen, dtype=torch.float64)
    dist = torch.linspace(0, 3 * sigma, 40, dtype=torch.float64)
    step = torch.randn(40, 8, generator=gen, dtype=torch.float64)
    y = x + step / step.norm(dim=1, keepdim=True) * dist[:, None]
    w, u = draw_fourier_features(8, n, sigma, seed=9)
    fx = fourier_features(x, w.double(), u.double())
    fy = fourier_features(y, w.double(), u.double())
    approx = 2 * (fx * fy).mean(1)
    exact = torch.exp(-dist**2 / (2 * sigma**2))
    err = (approx - exact).abs()
    assert float(err.max()) < tol
    assert float(err.mean()) < tol / 2.5


def test_rff_lift_ops_count_matmul_phase_and_cosine():
    ops = RFF(features=1000).lift_ops(50)
    # per feature: 50 multiplies and 49 adds of w.z, 1 add of the phase, 1 cosine; W (50000) and u (1000) read
    assert (ops.mults, ops.adds, ops.exps, ops.params, ops.inputs, ops.outputs) == (50_000, 50_000, 1000, 51_000, 50, 1051)


def test_rff_median_distance_needs_spread():
    with pytest.raises(ConfigError, match="median distance 0"):
        RFF(features=5).fit(torch.ones(20, 3))
    assert median_distance(torch.tensor([[0.0, 0.0], [3.0, 4.0]])) == 5.0


def test_rff_state_dict_keeps_the_draws(scores):
    fitted = RFF(features=25, bandwidth=2.0).fit(scores, seed=7)
    back = RFF(features=25, bandwidth=2.0)
    back.load_state_dict(fitted.state_dict())
    assert back.sigma_ == fitted.sigma_ and torch.equal(back.weights_, fitted.weights_)
    assert torch.equal(back.transform(scores[:64]), fitted.transform(scores[:64]))


# --------------------------------------------------------------------------- registry
ROOT = Path(__file__).resolve().parents[1]


def test_known_dictionaries():
    assert {"monomial", "rbf", "rff"} <= set(list_dictionaries())
    assert list_dictionaries("rb*") == ["rbf"]
    assert isinstance(create_dictionary("monomial", degree=3), Monomial)
    assert get_dictionary_class("rbf") is RBF
    assert create_dictionary("rbf", centers=7).describe() == "rbf(centers=7)"
    assert create_dictionary("rbf", centers=7, kmeans_iters=3).describe() == "rbf(centers=7, kmeans_iters=3)"
    assert get_dictionary_class("rff") is RFF
    assert create_dictionary("rff", features=64).describe() == "rff(features=64, bandwidth=1.0)"
    assert broken_dictionaries() == {}


def test_unknown_dictionary_lists_known_ones():
    with pytest.raises(ConfigError, match="unknown dictionary 'foo'; known dictionaries: monomial, rbf, rff"):
        create_dictionary("foo")


def test_params_fill_defaults_convert_strings_and_refuse_unknown_keys():
    assert Monomial().params() == {"degree": 2} and Monomial(3).params() == {"degree": 3}
    assert RBF(centers="40").params() == {"centers": 40, "kmeans_iters": 25}
    with pytest.raises(ConfigError, match=r"unknown parameter\(s\) 'centres' for dictionary 'rbf'; its parameters: centers, kmeans_iters"):
        RBF(centres=40)
    with pytest.raises(ConfigError, match="centers='many': expected a value of type int"):
        RBF(centers="many")
    with pytest.raises(ConfigError, match="at most 1"):
        Monomial(2, 3)
    assert params_by_name() == {"degree": ["monomial"], "centers": ["rbf"], "kmeans_iters": ["rbf"],
                                "features": ["rff"], "bandwidth": ["rff"]}


@pytest.mark.parametrize("cls,values,message", [
    (Monomial, {"degree": 0}, r"degree=0 is out of range: allowed \[1, 10\]"),
    (Monomial, {"degree": 2.5}, r"degree=2.5: expected an integer in \[1, 10\]"),
    (RBF, {"centers": 0}, r"centers=0 is out of range: allowed \[1, 100000\]"),
    (RBF, {"kmeans_iters": 0}, r"kmeans_iters=0 is out of range"),
    (RFF, {"features": 0}, r"features=0 is out of range: allowed \[1, 1000000\]"),
    (RFF, {"bandwidth": 0.0}, r"bandwidth=0.0 is out of range"),
])
def test_params_validation_names_the_field(cls, values, message):
    with pytest.raises(ConfigError, match=message):
        cls.Params(**values)
    with pytest.raises(ConfigError, match=message):
        cls(**values)


# --------------------------------------------------------------------------- the contract, for every dictionary
@pytest.mark.parametrize("name", list_dictionaries())
def test_dictionary_meets_the_static_contract(name):
    cls = get_dictionary_class(name)
    assert contract_problem(cls, name) is None
    fields = {f.name: f for f in dataclasses.fields(cls.Params)}
    for f in fields.values():
        assert f.metadata.get("doc"), f"{name}.Params.{f.name} has no doc"
    space = cls.search_space()
    assert space, f"{name} declares nothing to search"
    for param, spec in space.items():
        assert param in fields and isinstance(spec, (IntRange, FloatRange, Choice))
    assert isinstance(cls.uses_seed, bool)
    assert set(cls.limits(10)) <= set(fields)


def _smallest_params(cls) -> dict:
    out = {}
    for param, spec in cls.search_space().items():
        out[param] = spec.values[0] if isinstance(spec, Choice) else spec.low
    return out


@pytest.mark.parametrize("name", list_dictionaries())
def test_dictionary_state_dict_round_trip(name):
    cls = get_dictionary_class(name)
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(300, 4, generator=gen)
    params = _smallest_params(cls)
    fitted = create_dictionary(name, **params).fit(z, seed=1)
    out = fitted.transform(z)
    assert out.shape == (300, fitted.n_features(4)) and torch.equal(out[:, 0], torch.ones(300))
    back = create_dictionary(name, **fitted.params())
    back.load_state_dict(fitted.state_dict())
    assert torch.equal(back.transform(z[:50]), out[:50])
    if not cls.uses_seed:  # a seed-free dictionary lifts the same for every seed
        assert torch.equal(create_dictionary(name, **params).fit(z, seed=2).transform(z), out)


@pytest.mark.parametrize("path", ["codesign/distill.py", "codesign/features.py", "search/space.py",
                                  "search/objective.py", "search/runner.py", "search/outputs.py"])
def test_no_dictionary_is_special_cased(path):
    """Dictionaries are plugins: the pipeline and the search never name one."""
    text = (ROOT / path).read_text()
    for name in list_dictionaries():
        assert not re.search(rf"\b{re.escape(name)}\b", text, re.IGNORECASE), f"{path} names the dictionary {name!r}"


# --------------------------------------------------------------------------- plugins
class Squares(Dictionary):
    """[1, z, z^2]: a user's dictionary for the registry test."""

    name = "squares"

    def n_features(self, rank: int) -> int:
        return 1 + 2 * rank

    def transform(self, z: torch.Tensor) -> torch.Tensor:
        return torch.cat([torch.ones(z.shape[0], 1, dtype=z.dtype), z, z * z], 1)

    def lift_ops(self, rank: int) -> OpCounts:
        return OpCounts(mults=rank, inputs=rank, outputs=self.n_features(rank))


class MutableParams(Squares):
    """Breaks the contract: its Params is a plain (mutable) dataclass."""

    name = "mutable"

    @dataclass
    class Params:
        scale: float = field(default=1.0, metadata={"doc": "a scale"})


class Undecorated(Squares):
    """Breaks the contract: its Params declares a field but is no dataclass of its own."""

    name = "undecorated"

    class Params(DictionaryParams):
        scale: float = 1.0


class BadSpace(Squares):
    """Breaks the contract: it searches a parameter it does not have."""

    name = "badspace"

    @classmethod
    def search_space(cls):
        return {"width": IntRange(1, 4)}


class _EntryPoint:
    """Stands in for an importlib.metadata entry point."""

    def __init__(self, name, value, obj=None, error=None):
        self.name, self.value, self.obj, self.error = name, value, obj, error

    def load(self):
        if self.error is not None:
            raise self.error
        return self.obj


@pytest.fixture
def fake_plugins(monkeypatch):
    eps = {name: _EntryPoint(name, f"{cls.__module__}:{cls.__name__}", cls) for name, cls in
           (("monomial", Monomial), ("rbf", RBF))}
    eps["squares"] = _EntryPoint("squares", "tests:Squares", Squares)
    eps["mutable"] = _EntryPoint("mutable", "tests:MutableParams", MutableParams)
    eps["badspace"] = _EntryPoint("badspace", "tests:BadSpace", BadSpace)
    eps["undecorated"] = _EntryPoint("undecorated", "tests:Undecorated", Undecorated)
    eps["missing_dep"] = _EntryPoint("missing_dep", "fancy_lifts:Wavelets", error=ModuleNotFoundError("No module named 'pywt'"))
    eps["renamed"] = _EntryPoint("renamed", "tests:Squares", Squares)
    eps["notaclass"] = _EntryPoint("notaclass", "tests:kmeans", kmeans)
    monkeypatch.setattr(dictionaries.REGISTRY, "_eps", eps)
    monkeypatch.setattr(dictionaries.REGISTRY, "loaded", {})
    monkeypatch.setattr(dictionaries.REGISTRY, "broken", {})
    return eps


def test_broken_plugins_are_listed_with_the_reason(fake_plugins):
    assert list_dictionaries() == ["monomial", "rbf", "squares"]
    broken = broken_dictionaries()
    assert set(broken) == {"mutable", "undecorated", "badspace", "missing_dep", "renamed", "notaclass"}
    assert "Params is not a dataclass subclass of codesign.dictionaries.DictionaryParams" in broken["mutable"]
    assert "not decorated with @dataclass(frozen=True)" in broken["undecorated"]
    assert "'width', which is not a Params field" in broken["badspace"]
    assert broken["missing_dep"] == "ModuleNotFoundError: No module named 'pywt'"
    assert "Squares.name is 'squares', but it is registered as 'renamed'" in broken["renamed"]
    assert "not a codesign.dictionaries.Dictionary subclass" in broken["notaclass"]
    with pytest.raises(ConfigError, match=r"unknown dictionary 'missing_dep' \(it failed to load: ModuleNotFoundError.*"
                                          r"known dictionaries: monomial, rbf, squares"):
        create_dictionary("missing_dep")
    assert isinstance(create_dictionary("squares"), Squares)


@pytest.fixture
def squares_registered(monkeypatch):
    monkeypatch.setattr(dictionaries.REGISTRY, "registered", {})
    assert register_dictionary(Squares) is Squares
    return Squares


def test_register_dictionary_checks_the_contract(monkeypatch):
    monkeypatch.setattr(dictionaries.REGISTRY, "registered", {})
    with pytest.raises(ConfigError, match="cannot register dictionary 'mutable'.*not a dataclass subclass"):
        register_dictionary(MutableParams)

    class Monomial2(Squares):
        name = "monomial"

    with pytest.raises(ConfigError, match="that name is installed"):
        register_dictionary(Monomial2)


def test_registered_dictionary_is_listed_and_built(squares_registered):
    assert "squares" in list_dictionaries()
    d = create_dictionary("squares")
    assert isinstance(d, Squares) and d.params() == {} and d.describe() == "squares()"
    with pytest.raises(ConfigError, match="known dictionaries: monomial, rbf, rff, squares"):
        create_dictionary("nope")


def test_registered_dictionary_drives_the_pipeline(squares_registered, digits, digits_teacher):
    from codesign.distill import DistillConfig, run_distill
    from codesign.features import build_features

    feats = build_features(digits.x_train, digits.x_test, 8, "squares", {})
    assert feats.train.shape == (1437, 17) and feats.test.shape == (360, 17)
    z = feats.pipeline.pca_.transform(digits.x_test)
    raw = torch.cat([torch.ones(360, 1), z, z * z], 1)
    assert torch.allclose(feats.test, (raw - feats.pipeline.mean_) / feats.pipeline.std_)

    m = run_distill(DistillConfig(dataset="digits", pca_rank=8, dictionary="squares")).metrics
    assert m["dictionary"] == "squares()" and m["n_features"] == 17
    assert m["test_accuracy"] > 0.85


# --------------------------------------------------------------------------- DistillConfig
def test_distill_config_dictionary_params():
    from codesign.distill import DistillConfig

    cfg = DistillConfig(dictionary="rbf", dictionary_params={"centers": 64})
    assert cfg.dictionary_params == (("centers", 64),)
    assert cfg.dictionary_kwargs == {"centers": 64, "kmeans_iters": 25}
    assert DistillConfig().dictionary_kwargs == {"degree": 2}
    assert DistillConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="unknown parameter.*'centers' for dictionary 'monomial'"):
        DistillConfig(dictionary_params={"centers": 64})
    with pytest.raises(ConfigError, match="degree=0 is out of range"):
        DistillConfig(dictionary_params={"degree": 0})


def test_distill_config_reads_old_dicts_with_top_level_sizes():
    from codesign.distill import DistillConfig

    # Old configs held every dictionary's size at the top level.
    old = DistillConfig.from_dict({"dictionary": "monomial", "degree": 3, "centers": 200, "pca_rank": 5})
    assert old == DistillConfig(dictionary="monomial", dictionary_params={"degree": 3}, pca_rank=5)
    old = DistillConfig.from_dict({"dictionary": "rbf", "degree": 2, "centers": 40})
    assert old.dictionary_params == (("centers", 40),)
    with pytest.raises(ConfigError, match="unknown config key"):
        DistillConfig.from_dict({"dictionary": "rbf", "widht": 3})
