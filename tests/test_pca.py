"""PCA: orthonormal components, sorted variances, whitening, agreement with an SVD, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from codesign.errors import ConfigError
from codesign.pca import PCA

pytestmark = pytest.mark.usefixtures("one_thread")  # small tensors: one thread is fastest on a shared machine


@pytest.fixture(scope="module")
def fitted(digits):
    return PCA(20).fit(digits.x_train)


def test_components_orthonormal(fitted):
    c = fitted.components_.astype(np.float64)
    assert c.shape == (20, 64)
    assert np.allclose(c @ c.T, np.eye(20), atol=1e-5)


def test_explained_variance_sorted_and_ratio(fitted, digits):
    v = fitted.explained_variance_
    assert v.shape == (20,)
    assert np.all(np.diff(v) <= 0) and v[-1] > 0
    total = digits.x_train.astype(np.float64).var(0, ddof=1).sum()
    assert np.allclose(fitted.explained_variance_ratio_, v / total, rtol=1e-4)
    assert 0.5 < fitted.explained_variance_ratio_.sum() < 1.0


def test_whitened_scores_have_unit_variance_on_train(fitted, digits):
    z = fitted.transform(digits.x_train).double().numpy()
    assert z.shape == (1437, 20)
    assert np.allclose(z.mean(0), 0, atol=1e-4)
    assert np.allclose(z.var(0, ddof=1), 1, atol=1e-4)
    # Decorrelated too.
    assert np.allclose(np.cov(z.T), np.eye(20), atol=1e-4)
    # Test scores are near, not exactly at, unit variance.
    zt = fitted.transform(digits.x_test).numpy()
    assert np.all(np.abs(zt.var(0) - 1) < 0.5)


def test_unwhitened_scores_match_numpy_svd(digits):
    x = digits.x_train.astype(np.float64)
    pca = PCA(10, whiten=False).fit(digits.x_train)
    xc = x - x.mean(0)
    _, s, vt = np.linalg.svd(xc, full_matrices=False)
    assert np.allclose(pca.explained_variance_, s[:10] ** 2 / (len(x) - 1), rtol=1e-4)
    # Same directions up to sign: |<c_i, v_i>| = 1.
    dots = np.abs(np.sum(pca.components_ * vt[:10], axis=1))
    assert np.allclose(dots, 1, atol=1e-4)
    signs = np.sign(np.sum(pca.components_ * vt[:10], axis=1))
    ref_scores = xc @ vt[:10].T * signs
    assert np.allclose(pca.transform(digits.x_train).numpy(), ref_scores, atol=1e-4)
    assert np.allclose(pca.mean_, x.mean(0), atol=1e-6)


def test_signs_are_deterministic(fitted, digits):
    c = fitted.components_
    # The largest-magnitude entry of every row is positive.
    assert np.all(c[np.arange(len(c)), np.abs(c).argmax(1)] > 0)
    # Reordering the samples (a different eigen-solver path) gives the same signed rows.
    again = PCA(20).fit(digits.x_train[::-1].copy())
    assert np.allclose(again.components_, c, atol=1e-4)


def test_transform_accepts_tensor_and_checks_width(fitted, digits):
    a = fitted.transform(digits.x_test[:5])
    b = fitted.transform(torch.from_numpy(digits.x_test[:5]))
    assert a.dtype == torch.float32 and torch.equal(a, b)
    with pytest.raises(ConfigError, match="fitted on 64 inputs but got 63"):
        fitted.transform(digits.x_test[:5, :63])


def test_state_dict_round_trip(fitted, digits):
    back = PCA.from_state_dict(fitted.state_dict())
    assert torch.equal(back.transform(digits.x_test), fitted.transform(digits.x_test))


@pytest.mark.parametrize("rank", [65, 100])
def test_rank_larger_than_input_dimension(digits, rank):
    with pytest.raises(ConfigError, match=f"pca_rank={rank}.*n_inputs=64"):
        PCA(rank).fit(digits.x_train)


def test_rank_larger_than_sample_count():
    x = np.random.default_rng(0).random((5, 30)).astype(np.float32)
    with pytest.raises(ConfigError, match="pca_rank=6.*n_samples=5"):
        PCA(6).fit(x)


@pytest.mark.parametrize("rank", [0, -3, 2.5, True])
def test_bad_rank_values(rank):
    with pytest.raises(ConfigError, match="pca_rank"):
        PCA(rank)


def test_rank_beyond_data_span_when_whitening():
    # 10 samples in 30 dimensions span at most 9 centred directions.
    x = np.random.default_rng(1).random((10, 30)).astype(np.float32)
    with pytest.raises(ConfigError, match="only span 9 directions; use pca_rank <= 9"):
        PCA(10).fit(x)
    assert PCA(9).fit(x).components_.shape == (9, 30)


def test_digits_constant_pixels_limit_the_whitened_rank(digits):
    # Three digits pixels are always 0 (sklearn's corners): 61 directions at most.
    span = int(np.linalg.matrix_rank(digits.x_train - digits.x_train.mean(0)))
    assert span < 64
    with pytest.raises(ConfigError, match="use pca_rank <="):
        PCA(64).fit(digits.x_train)
    assert PCA(64, whiten=False).fit(digits.x_train).components_.shape == (64, 64)


def test_nan_input_is_refused(digits):
    from codesign.errors import NumericalError

    x = digits.x_train.copy()
    x[3, 10] = np.nan
    with pytest.raises(NumericalError, match="NaN"):
        PCA(5).fit(x)


# --------------------------------------------------------------------------- one decomposition, every rank
def test_every_rank_of_one_decomposition_equals_a_fresh_fit(digits):
    """The rank-r PCA taken from the full decomposition is bit for bit a rank-r fit: same mean,
    directions, signs, variances and ratios, and so the same (whitened) scores."""
    from codesign.pca import PCADecomposition

    dec = PCADecomposition.fit(digits.x_train)
    assert dec.max_rank == 64 and dec.components.dtype == np.float64
    for rank in (1, 2, 7, 20, 40):
        fresh = PCA(rank).fit(digits.x_train)
        shared = PCA.from_decomposition(dec, rank)
        for name in ("mean_", "components_", "explained_variance_", "explained_variance_ratio_"):
            assert np.array_equal(getattr(fresh, name), getattr(shared, name)), (rank, name)
        assert torch.equal(fresh.transform(digits.x_test), shared.transform(digits.x_test))
    # the rank-r basis is the top r rows of the largest rank's basis
    big, small = PCA.from_decomposition(dec, 40), PCA.from_decomposition(dec, 12)
    assert np.array_equal(big.components_[:12], small.components_)
    # the sign convention: each row's largest-magnitude entry is positive
    rows = big.components_
    assert (rows[np.arange(40), np.abs(rows).argmax(1)] > 0).all()


def test_decomposition_state_round_trip_and_rank_limits(digits):
    from codesign.pca import PCADecomposition

    dec = PCADecomposition.fit(digits.x_train[:30])  # 30 samples: at most 30 directions
    assert dec.max_rank == 30
    back = PCADecomposition.from_state_dict(dec.state_dict())
    assert np.array_equal(PCA.from_decomposition(back, 9).components_, PCA(9).fit(digits.x_train[:30]).components_)
    with pytest.raises(ConfigError, match="pca_rank=31 is larger than the input allows: at most 30"):
        PCA.from_decomposition(dec, 31)
