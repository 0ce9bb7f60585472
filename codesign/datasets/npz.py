"""A data set in one ``.npz`` file.

The file holds ``x_train``, ``y_train``, ``x_test``, ``y_test`` (or ``x`` and ``y``, split here
by a stratified, seeded draw: options ``test=0.2``, ``seed=0``), and optionally ``classes``
(names by label) and ``image_shape`` (``[c, h, w]`` or ``[h, w]``). Inputs are ``[n, d]``
vectors or images ``[n, h, w]``, ``[n, c, h, w]`` or channels-last ``[n, h, w, c]``; the
image shape is then taken from the array. Inputs are used as stored (``scale=standard`` or
``scale=minmax`` rescales them with the training split's statistics); images are expected
in [0, 1].

    np.savez("data.npz", x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te, classes=["cat", "dog"])
    codesign distill --dataset data.npz
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Mapping

import numpy as np

from ..errors import DataError
from . import options as o
from .base import Dataset, make_dataset, scale, seeded_split

OPTIONS = ("test", "seed", "scale", "shape")
SPLIT_KEYS = ("x_train", "y_train", "x_test", "y_test")


def load_npz(path: Path, spec: str, opts: Mapping[str, str]) -> Dataset:
    """Load the ``.npz`` at ``path`` (see the module doc); ``spec`` names it in messages."""
    o.check_keys(spec, opts, OPTIONS)
    how = o.scaling(spec, opts, "none")
    given = o.dims(spec, opts, "shape", (2, 3))
    if not zipfile.is_zipfile(path):
        raise DataError(f"{path}: not a readable .npz file (not a zip archive); write it with numpy.savez")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except ValueError as exc:
        raise DataError(f"{path}: holds Python objects ({str(exc).split('.')[0]}); save plain numeric arrays "
                        "(labels as integers, class names as a string array)") from None
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"{path}: not a readable .npz file ({exc}); write it with numpy.savez") from None
    if all(k in arrays for k in SPLIT_KEYS):
        x_train, y_train, x_test, y_test = (arrays[k] for k in SPLIT_KEYS)
    elif "x" in arrays and "y" in arrays:
        y = np.asarray(arrays["y"])
        x = arrays["x"]
        if len(x) != len(y):
            raise DataError(f"{path}: x has {len(x)} rows but y has {len(y)} labels; give one label per sample")
        train_idx, test_idx = seeded_split(len(y), y, o.share(spec, opts, 0.2), o.seed(spec, opts))
        x_train, y_train, x_test, y_test = x[train_idx], y[train_idx], x[test_idx], y[test_idx]
    else:
        missing = [k for k in SPLIT_KEYS if k not in arrays]
        raise DataError(f"{path}: no {', '.join(missing)} (it holds {', '.join(sorted(arrays)) or 'nothing'}); "
                        "save x_train, y_train, x_test, y_test (or x and y to be split)")
    if given is None and "image_shape" in arrays:
        stored = np.asarray(arrays["image_shape"]).reshape(-1)
        if stored.dtype.kind not in "iu" or len(stored) not in (2, 3):
            raise DataError(f"{path}: image_shape={stored.tolist()}; store it as integers [c, h, w] or [h, w]")
        given = tuple(int(s) for s in stored)
    for name, x in (("x_train", x_train), ("x_test", x_test)):
        if np.asarray(x).ndim != np.asarray(x_train).ndim:
            raise DataError(f"{path}: x_train is {np.ndim(x_train)}-D but {name} is {np.ndim(x)}-D; store both alike")
    shape = o.image_shape_of(np.shape(x_train), given, str(path))
    if given is None and o.channels_last(np.shape(x_train)):
        x_train, x_test = np.moveaxis(x_train, 3, 1), np.moveaxis(x_test, 3, 1)
        shape = (shape[2], shape[0], shape[1]) if shape else None
    classes = None
    if "classes" in arrays:
        classes = [str(c) for c in np.asarray(arrays["classes"]).reshape(-1)]
    ds = make_dataset(spec, x_train, y_train, x_test, y_test, where=str(path), image_shape=shape, classes=classes)
    if how != "none":
        xs = scale(ds.x_train, ds.x_test, how)
        ds = make_dataset(spec, xs[0], ds.y_train, xs[1], ds.y_test, where=str(path), image_shape=shape,
                          classes=ds.classes, source=f"{path} (scale {how})")
    return ds
