"""Dictionaries: monomial counts and values, RBF centres and width, the registry."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy.spatial.distance import pdist

from codesign import dictionaries
from codesign.dictionaries import Dictionary, Monomial, RBF, create_dictionary, kmeans, list_dictionaries, register_dictionary
from codesign.errors import ConfigError

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


def test_rbf_state_dict_round_trip(scores):
    rbf = RBF(centers=10).fit(scores, seed=0)
    back = RBF(centers=10)
    back.load_state_dict(rbf.state_dict())
    assert torch.equal(back.transform(scores[:50]), rbf.transform(scores[:50]))


# --------------------------------------------------------------------------- registry


def test_known_dictionaries():
    assert {"monomial", "rbf"} <= set(list_dictionaries())
    assert isinstance(create_dictionary("monomial", degree=3), Monomial)
    assert create_dictionary("rbf", centers=7).describe() == "rbf(centers=7)"


def test_unknown_dictionary_lists_known_ones():
    with pytest.raises(ConfigError, match="unknown dictionary 'foo'; known dictionaries: monomial, rbf"):
        create_dictionary("foo")


class Squares(Dictionary):
    """[1, z, z^2]: a user's dictionary for the registry test."""

    name = "squares"

    def n_features(self, rank: int) -> int:
        return 1 + 2 * rank

    def transform(self, z: torch.Tensor) -> torch.Tensor:
        return torch.cat([torch.ones(z.shape[0], 1, dtype=z.dtype), z, z * z], 1)

    def params(self) -> dict:
        return {}


@pytest.fixture
def squares_registered(monkeypatch):
    monkeypatch.setattr(dictionaries, "_REGISTRY", dict(dictionaries._REGISTRY))
    assert register_dictionary(Squares) is Squares
    return Squares


def test_registered_dictionary_is_listed_and_built(squares_registered):
    assert "squares" in list_dictionaries()
    d = create_dictionary("squares")
    assert isinstance(d, Squares)
    with pytest.raises(ConfigError, match="known dictionaries: monomial, rbf, squares"):
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
