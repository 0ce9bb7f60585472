"""An image-folder tree in :class:`torchvision.datasets.ImageFolder` layout.

Either ``ROOT/train/<class>/*.png`` and ``ROOT/test/<class>/*.png`` (the split as given; the
classes are the training folder's), or ``ROOT/<class>/*.png``, split here by a stratified,
seeded draw (options ``test=0.2``, ``seed=0``). Class names are the folder names in sorted
order, as ImageFolder numbers them. Images are read with Pillow; all grayscale images give one
channel, otherwise every image is converted to RGB. Pixels are scaled to [0, 1]. Every image
must have the same size, or ``size=HxW`` resizes them all (bilinear).

    codesign distill --dataset path/to/images/ --teacher cnn
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np

from ..errors import DataError
from . import options as o
from .base import Dataset, make_dataset, seeded_split

OPTIONS = ("test", "seed", "size")


def _samples(folder: Path, class_to_idx: dict[str, int] | None = None) -> tuple[list[tuple[str, int]], list[str]]:
    from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset as tv_make

    try:
        classes, found = find_classes(str(folder))
    except FileNotFoundError:
        raise DataError(f"{folder}: no class folders; lay images out as {folder}/<class>/<image>.png "
                        "(one folder per class)") from None
    if class_to_idx is not None:
        unknown = [c for c in classes if c not in class_to_idx]
        if unknown:
            raise DataError(f"{folder}: class folder(s) {', '.join(unknown)} are not among the training classes "
                            f"({', '.join(class_to_idx)}); give train/ a folder for every class")
        found = {c: class_to_idx[c] for c in classes}
    try:
        samples = tv_make(str(folder), found, extensions=IMG_EXTENSIONS, allow_empty=True)
    except FileNotFoundError as exc:
        raise DataError(f"{folder}: {exc}") from None
    if not samples:
        raise DataError(f"{folder}: holds no images ({', '.join(e.lstrip('.') for e in IMG_EXTENSIONS[:6])}...) in "
                        f"its class folders; lay images out as {folder}/<class>/<image>.png")
    return samples, classes


def _read(samples: list[tuple[str, int]], size: tuple[int, ...] | None) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image, UnidentifiedImageError

    images = []
    gray = True
    for path, _ in samples:
        try:
            with Image.open(path) as im:
                im.load()
                gray &= im.mode in ("L", "1", "I", "I;16", "F")
                images.append(im.copy())
        except (OSError, UnidentifiedImageError) as exc:
            raise DataError(f"{path}: not a readable image ({exc}); replace or remove it") from None
    arrays = []
    first = None
    for (path, _), im in zip(samples, images):
        im = im.convert("L" if gray else "RGB")
        if size is not None:
            im = im.resize((size[1], size[0]), Image.BILINEAR)
        a = np.asarray(im, dtype=np.float32) / 255.0
        if first is None:
            first = (path, a.shape)
        elif a.shape != first[1]:
            raise DataError(f"{path}: image of size {a.shape[1]}x{a.shape[0]}, but {first[0]} is "
                            f"{first[1][1]}x{first[1][0]}; resize them to one size or pass size=HxW "
                            "(e.g. --dataset 'folder/:size=32x32')")
        arrays.append(a if gray else np.moveaxis(a, 2, 0))
    x = np.stack(arrays)
    if gray:
        x = x[:, None]
    return x, np.array([label for _, label in samples], dtype=np.int64)


def load_image_folder(root: Path, spec: str, opts: Mapping[str, str]) -> Dataset:
    """Load the image-folder tree under ``root`` (see the module doc)."""
    o.check_keys(spec, opts, OPTIONS)
    size = o.dims(spec, opts, "size", (2,))
    if (root / "train").is_dir() and (root / "test").is_dir():
        train, classes = _samples(root / "train")
        test, _ = _samples(root / "test", {c: i for i, c in enumerate(classes)})
        x_train, y_train = _read(train, size)
        x_test, y_test = _read(test, size)
        if x_train.shape[1:] != x_test.shape[1:]:
            raise DataError(f"{root / 'test'}: images of shape {list(x_test.shape[1:])}, train/ has "
                            f"{list(x_train.shape[1:])}; resize them to one size or pass size=HxW")
        source = f"{root} (train/ and test/)"
    else:
        samples, classes = _samples(root)
        x, y = _read(samples, size)
        train_idx, test_idx = seeded_split(len(y), y, o.share(spec, opts, 0.2), o.seed(spec, opts))
        x_train, y_train, x_test, y_test = x[train_idx], y[train_idx], x[test_idx], y[test_idx]
        if len(y_test) == 0:
            raise DataError(f"{root}: too few images to hold out a test split; add images or give train/ and test/")
        source = f"{root} (split {o.share(spec, opts, 0.2):g}, seed {o.seed(spec, opts)})"
    return make_dataset(spec, x_train, y_train, x_test, y_test, where=str(root), image_shape=x_train.shape[1:],
                        classes=classes, source=source)
