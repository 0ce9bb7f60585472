"""scikit-learn's bundled data sets, embedded (no files, no download).

* ``digits``: 1797 8x8 images of handwritten digits, pixels scaled to [0, 1]; every 5th sample
  is test (360), a fixed split;
* ``wine`` (178 x 13, 3 classes), ``breast_cancer`` (569 x 30, 2 classes), ``iris`` (150 x 4,
  3 classes): tabular vectors (no image shape), split 80/20 by a stratified, seeded draw
  (:func:`~codesign.datasets.base.seeded_split`, seed 0 unless ``seed=`` is given) and
  z-scored with the training split's mean and standard deviation (``scale=none`` keeps the raw
  measurements, whose scales differ by orders of magnitude).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from .base import Dataset, make_dataset, scale, seeded_split

DIGIT_CLASSES = tuple(str(i) for i in range(10))
#: Tabular sets: name -> the ``sklearn.datasets`` loader's name.
TABULAR = {"wine": "load_wine", "breast_cancer": "load_breast_cancer", "iris": "load_iris"}
#: Test share of the tabular sets' seeded split.
TEST_SHARE = 0.2


def load_digits() -> Dataset:
    """scikit-learn's 8x8 digits, pixels in [0, 1], every 5th sample in the test split."""
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    x = (bunch.data / 16.0).astype(np.float32)
    y = bunch.target.astype(np.int64)
    # A fixed, stratified-by-construction split: every 5th sample is test (360 of 1797).
    test = np.arange(len(y)) % 5 == 0
    return Dataset("digits", x[~test], y[~test], x[test], y[test], (1, 8, 8), DIGIT_CLASSES,
                   "sklearn.datasets.load_digits")


def load_tabular(name: str, *, test: float = TEST_SHARE, seed: int = 0, scale_: str = "standard") -> Dataset:
    """One of scikit-learn's bundled tabular sets (:data:`TABULAR`), split and scaled.

    Args:
        name: ``wine``, ``breast_cancer`` or ``iris``.
        test: share of each class put in the test split.
        seed: seed of the split.
        scale_: ``standard`` (z-score, the default), ``minmax`` or ``none``.
    """
    import sklearn.datasets

    loader: Callable = getattr(sklearn.datasets, TABULAR[name])
    bunch = loader()
    x = np.asarray(bunch.data, dtype=np.float32)
    y = np.asarray(bunch.target, dtype=np.int64)
    train_idx, test_idx = seeded_split(len(y), y, test, seed)
    x_train, x_test = scale(x[train_idx], x[test_idx], scale_)
    return make_dataset(name, x_train, y[train_idx], x_test, y[test_idx], where=f"sklearn.datasets.{TABULAR[name]}",
                        classes=[str(c) for c in bunch.target_names],
                        source=f"sklearn.datasets.{TABULAR[name]} (split {test:g} seed {seed}, scale {scale_})")
