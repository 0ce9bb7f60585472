"""The feature pipeline: standardisation, chunking, the memory budget, the disk cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from codesign import features as features_mod
from codesign.errors import ConfigError, NumericalError, ResourceError
from codesign.features import FeaturePipeline, build_features, cached_features, dictionary_seed, fit_memory, format_bytes, parse_memory
from codesign.dictionaries import create_dictionary

pytestmark = pytest.mark.usefixtures("one_thread")  # small tensors: one thread is fastest on a shared machine


@pytest.fixture(scope="module")
def feats(digits):
    return build_features(digits.x_train, digits.x_test, 10, "monomial", {"degree": 2})


def test_shapes(feats):
    assert feats.train.shape == (1437, 66) and feats.test.shape == (360, 66)
    assert feats.train.dtype == torch.float32
    assert feats.pipeline.n_features == 66


def test_standardised_on_train(feats):
    x = feats.train.double()
    assert torch.equal(feats.train[:, 0], torch.ones(1437))
    assert torch.equal(feats.test[:, 0], torch.ones(360))
    assert torch.allclose(x[:, 1:].mean(0), torch.zeros(65, dtype=torch.float64), atol=1e-5)
    assert torch.allclose(x[:, 1:].std(0, unbiased=False), torch.ones(65, dtype=torch.float64), atol=1e-4)
    # The test split is lifted with the training statistics, so it is only roughly standard.
    t = feats.test.double()[:, 1:]
    assert t.mean(0).abs().max() < 0.5 and not torch.allclose(t.mean(0), torch.zeros(65, dtype=torch.float64), atol=1e-3)


def test_features_equal_the_hand_pipeline(feats, digits):
    pipe = feats.pipeline
    z = pipe.pca_.transform(digits.x_test)
    lifted = pipe.dictionary.transform(z)
    assert torch.allclose(feats.test, (lifted - pipe.mean_) / pipe.std_, atol=1e-6)
    # Linear block = whitened scores (sample variance 1) rescaled to population variance 1.
    assert torch.allclose(feats.train[:, 1:11], pipe.pca_.transform(digits.x_train) * np.sqrt(1437 / 1436), atol=1e-4)


def test_chunked_transform_equals_unchunked(digits, monkeypatch):
    whole = build_features(digits.x_train, digits.x_test, 6, "monomial", {"degree": 3})
    monkeypatch.setattr(features_mod, "CHUNK_ROWS", 100)  # 15 chunks, the last one partial
    chunked = build_features(digits.x_train, digits.x_test, 6, "monomial", {"degree": 3})
    assert torch.allclose(chunked.pipeline.mean_, whole.pipeline.mean_, atol=1e-6)
    assert torch.allclose(chunked.pipeline.std_, whole.pipeline.std_, atol=1e-6)
    assert torch.allclose(chunked.train, whole.train, atol=1e-5)
    assert torch.allclose(chunked.test, whole.test, atol=1e-5)
    # The same fitted pipeline gives the same rows whatever the chunk size.
    again = whole.pipeline.transform(digits.x_train)
    assert torch.allclose(again, whole.train, atol=1e-6)


def test_max_memory_too_small_names_the_size(digits):
    # the features, their 16-bit pass copy and four 66 x 66 float64 Gram-sized arrays
    need = (1437 + 360) * 66 * 4 + (1437 + 360) * 66 * 2 + 4 * 66 * 66 * 8
    with pytest.raises(ResourceError) as err:
        build_features(digits.x_train, digits.x_test, 10, "monomial", {"degree": 2}, max_memory=need - 1)
    msg = str(err.value)
    assert format_bytes(need) in msg and "1797 rows x 66" in msg and "Gram and factors" in msg
    assert "pca_rank=10" in msg and "monomial(degree=2)" in msg and "--max-memory" in msg
    # Exactly the size it needs is enough.
    ok = build_features(digits.x_train, digits.x_test, 10, "monomial", {"degree": 2}, max_memory=need)
    assert ok.train.shape == (1437, 66)


def test_max_memory_counts_the_rff_features(digits):
    """--max-memory sees rff's 1 + r + n columns: the estimate's feature bytes are exactly what is
    allocated, and one byte less than the whole estimate is refused before anything is fitted."""
    n, r = 700, 10
    F = 1 + r + n
    parts = fit_memory(1437 + 360, F)
    assert parts["features"] == (1437 + 360) * F * 4 and parts["Gram and factors"] == 4 * F * F * 8
    need = sum(parts.values())
    with pytest.raises(ResourceError, match=rf"rff\(features=700, bandwidth=1.0\) \(1797 rows x {F} features\)"):
        build_features(digits.x_train, digits.x_test, r, "rff", {"features": n}, max_memory=need - 1)
    ok = build_features(digits.x_train, digits.x_test, r, "rff", {"features": n}, max_memory=need)
    assert ok.train.shape == (1437, F) and ok.train.nbytes + ok.test.nbytes == parts["features"]


def test_memory_is_checked_before_fitting(digits, monkeypatch):
    def boom(*a, **k):
        raise AssertionError("PCA must not run when the budget is exceeded")

    monkeypatch.setattr(features_mod.PCA, "fit", boom)
    with pytest.raises(ResourceError, match="would need"):
        build_features(digits.x_train, digits.x_test, 20, "monomial", {"degree": 3}, max_memory=1 << 20)


@pytest.mark.parametrize("text,expected", [
    ("8G", 8 << 30), ("512M", 512 << 20), ("1.5K", 1536), ("100", 100), ("2gb", 2 << 30), (4096, 4096),
])
def test_parse_memory(text, expected):
    assert parse_memory(text) == expected


def test_parse_memory_default_and_errors():
    assert parse_memory(None) > 0
    with pytest.raises(ConfigError, match="max_memory='lots'"):
        parse_memory("lots")


def test_format_bytes():
    assert format_bytes(100) == "100.0 B"
    assert format_bytes(1536) == "1.5 KiB"
    assert format_bytes(3 << 30) == "3.0 GiB"


def test_nan_in_test_inputs_is_numerical_error(digits):
    x = digits.x_test.copy()
    x[5, 20] = np.inf
    with pytest.raises(NumericalError, match="NaN or Inf"):
        build_features(digits.x_train, x, 5, "monomial", {"degree": 2})


@pytest.mark.parametrize("name,params", [("monomial", {"degree": 3}), ("rbf", {"centers": 15}),
                                         ("rff", {"features": 50, "bandwidth": 0.8})])
def test_pipeline_state_dict_round_trip(digits, name, params):
    f = build_features(digits.x_train, digits.x_test, 5, name, params, seed=4)
    back = FeaturePipeline.from_state_dict(f.pipeline.state_dict())
    assert torch.equal(back.transform(digits.x_test), f.test)


def test_cached_features_round_trip(digits, tmp_path, monkeypatch):
    args = (digits.x_train, digits.x_test, 7, "monomial", {"degree": 2})
    first = cached_features(*args, cache_dir=tmp_path)
    files = list((tmp_path / "features").glob("monomial-r7-*.npz"))
    assert len(files) == 1

    def no_rebuild(*a, **k):
        raise AssertionError("the second call must load from disk")

    monkeypatch.setattr(features_mod, "build_features", no_rebuild)
    second = cached_features(*args, cache_dir=tmp_path)
    assert torch.equal(second.train, first.train) and torch.equal(second.test, first.test)
    assert torch.equal(second.pipeline.transform(digits.x_test), first.test)
    # The key changes with the setting: another rank is a miss.
    with pytest.raises(AssertionError, match="must load from disk"):
        cached_features(digits.x_train, digits.x_test, 8, "monomial", {"degree": 2}, cache_dir=tmp_path)


def test_cached_features_rebuilds_a_damaged_entry(digits, tmp_path):
    args = (digits.x_train, digits.x_test, 4, "rbf", {"centers": 10})
    first = cached_features(*args, seed=1, cache_dir=tmp_path)
    (path,) = (tmp_path / "features").glob("rbf-r4-*.npz")
    path.write_bytes(b"not an npz file")
    again = cached_features(*args, seed=1, cache_dir=tmp_path)
    assert torch.equal(again.train, first.train)
    assert path.stat().st_size > 1000  # rewritten
    # A different seed moves the k-means centres: a different entry.
    cached_features(*args, seed=2, cache_dir=tmp_path)
    assert len(list((tmp_path / "features").glob("rbf-r4-*.npz"))) == 2


def test_seed_free_dictionaries_share_cache_entries(digits, tmp_path):
    from codesign.dictionaries import get_dictionary_class, list_dictionaries

    for name in list_dictionaries():
        assert dictionary_seed(name, 7) == (7 if get_dictionary_class(name).uses_seed else 0)
    args = (digits.x_train, digits.x_test, 5, "monomial", {"degree": 2})
    a = cached_features(*args, seed=1, cache_dir=tmp_path)
    b = cached_features(*args, seed=2, cache_dir=tmp_path)
    assert len(list((tmp_path / "features").glob("monomial-r5-*.npz"))) == 1
    assert torch.equal(a.train, b.train)
    # Defaults filled: {} and the default value are one entry.
    cached_features(digits.x_train, digits.x_test, 5, "monomial", {}, cache_dir=tmp_path)
    assert len(list((tmp_path / "features").glob("monomial-r5-*.npz"))) == 1


# --------------------------------------------------------------------------- one PCA decomposition for every rank
@pytest.mark.parametrize("name, params", [("monomial", {"degree": 2}), ("rbf", {"centers": 12})])
def test_features_from_the_shared_decomposition_equal_a_fresh_fit(digits, name, params):
    """Every rank's features built on one decomposition of the training set are exactly those of
    a pipeline that fits its own rank-r PCA (and fit_transform equals fit + transform)."""
    from codesign.pca import PCADecomposition

    dec = PCADecomposition.fit(digits.x_train)
    for rank in (3, 9, 25):
        fresh = build_features(digits.x_train, digits.x_test, rank, name, params, seed=3)
        shared = build_features(digits.x_train, digits.x_test, rank, name, params, seed=3, decomposition=dec)
        assert torch.equal(fresh.train, shared.train) and torch.equal(fresh.test, shared.test)
        assert torch.equal(fresh.pipeline.mean_, shared.pipeline.mean_)
        pipe = FeaturePipeline(rank, create_dictionary(name, **params), seed=3).fit(digits.x_train, dec)
        assert torch.equal(pipe.transform(digits.x_train), shared.train)


def test_pca_decomposition_is_computed_once_per_training_set(digits, tmp_path, monkeypatch):
    from codesign.pca import PCADecomposition

    calls = []
    real = PCADecomposition.fit.__func__

    def counted(cls, x):
        calls.append(len(x))
        return real(cls, x)

    monkeypatch.setattr(features_mod, "_PCA_MEMO", type(features_mod._PCA_MEMO)())
    monkeypatch.setattr(PCADecomposition, "fit", classmethod(counted))
    for rank in (4, 6, 9):
        cached_features(digits.x_train, digits.x_test, rank, "monomial", {"degree": 2}, cache_dir=tmp_path)
    assert calls == [len(digits.x_train)]  # three ranks, one decomposition
    assert len(list((tmp_path / "pca").glob("pca-*.npz"))) == 1
    # a new process (empty memo) reads it from disk instead of decomposing again
    features_mod._PCA_MEMO.clear()
    again = features_mod.pca_decomposition(digits.x_train, cache_dir=tmp_path)
    assert calls == [len(digits.x_train)]
    assert np.array_equal(again.components, PCADecomposition.from_state_dict(
        dict(np.load(next((tmp_path / "pca").glob("pca-*.npz"))))).components)
    # another training set is another decomposition; a damaged file is rebuilt with a warning
    features_mod.pca_decomposition(digits.x_train[:500], cache_dir=tmp_path)
    assert calls == [len(digits.x_train), 500]
    features_mod._PCA_MEMO.clear()
    for p in (tmp_path / "pca").glob("pca-*.npz"):
        p.write_bytes(b"damaged")
    with pytest.warns(UserWarning, match="could not be read"):
        features_mod.pca_decomposition(digits.x_train, cache_dir=tmp_path)
    assert calls == [len(digits.x_train), 500, len(digits.x_train)]
