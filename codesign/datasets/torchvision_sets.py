"""Any :mod:`torchvision.datasets` class whose files are already under the data root.

``--dataset torchvision:KMNIST --data-root DIR`` builds ``torchvision.datasets.KMNIST(DIR,
train=True/False, download=False)`` (``split="train"/"test"`` for classes that take a split
instead, such as SVHN); further ``KEY=VALUE`` options go to the constructor
(``torchvision:EMNIST:split=balanced``). codesign never downloads here: a set that is not on
disk is a one-line error saying where it was looked for and how to put it there. Images are
scaled to [0, 1] (``uint8`` / 255), channels first.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Mapping

import numpy as np

from ..errors import ConfigError, DataError
from .base import Dataset, make_dataset

PREFIX = "torchvision:"


def _split(cls, root: Path, train: bool, kwargs: dict):
    params = inspect.signature(cls.__init__).parameters
    args = dict(kwargs)
    if "train" in params:
        args["train"] = train
    elif "split" in params and "split" not in kwargs:
        args["split"] = "train" if train else "test"
    if "download" in params:
        args["download"] = False
    return cls(str(root), **args)


def _arrays(ds, where: str) -> tuple[np.ndarray, np.ndarray]:
    data = getattr(ds, "data", None)
    targets = getattr(ds, "targets", getattr(ds, "labels", None))
    if data is not None and targets is not None and len(data) == len(targets):
        x = np.asarray(data.numpy() if hasattr(data, "numpy") else data)
        y = np.asarray(targets.numpy() if hasattr(targets, "numpy") else targets)
        if x.ndim == 4 and x.shape[-1] in (1, 3, 4) and x.shape[1] not in (1, 3, 4):
            x = np.moveaxis(x, 3, 1)  # CIFAR: [n, h, w, c]
        elif x.ndim == 3:
            x = x[:, None]
    else:  # a class without .data / .targets: read it sample by sample
        xs, ys = [], []
        for img, label in ds:
            a = np.asarray(img)
            xs.append(a[None] if a.ndim == 2 else np.moveaxis(a, 2, 0))
            ys.append(int(label))
        if not xs:
            raise DataError(f"{where}: holds no samples; put the data set's files there")
        x, y = np.stack(xs), np.array(ys)
    if x.dtype == np.uint8:
        x = x.astype(np.float32) / 255.0
    return x, y


def load_torchvision(spec: str, target: str, opts: Mapping[str, str], root: Path | None) -> Dataset:
    """Load ``torchvision:NAME`` (``target``) from ``root`` without downloading (see the module doc)."""
    import torchvision.datasets as tvd

    name = target[len(PREFIX):]
    cls = getattr(tvd, name, None)
    if not inspect.isclass(cls) or not issubclass(cls, tvd.VisionDataset):
        known = sorted(n for n in dir(tvd) if inspect.isclass(getattr(tvd, n))
                       and issubclass(getattr(tvd, n), tvd.VisionDataset) and n != "VisionDataset")
        raise ConfigError(f"dataset={spec!r}: torchvision.datasets has no data set class {name!r}; "
                          f"some it has: {', '.join(known[:25])}")
    if root is None:
        raise DataError(f"{spec}: give --data-root (or CODESIGN_DATA) with the folder holding {name}'s files; "
                        "codesign never downloads torchvision data sets")
    parts = []
    for train in (True, False):
        try:
            parts.append(_split(cls, root, train, dict(opts)))
        except TypeError as exc:
            raise ConfigError(f"dataset={spec!r}: torchvision.datasets.{name} refused the options "
                              f"{dict(opts) or '(none)'} ({exc}); give the ones its constructor needs, "
                              f"e.g. {PREFIX}EMNIST:split=balanced") from None
        except (RuntimeError, FileNotFoundError, OSError) as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise DataError(f"{spec}: not found under {root} ({first}); codesign never downloads at run time: put "
                            f"the files there first, e.g. python -c \"import torchvision; "
                            f"torchvision.datasets.{name}('{root}', download=True)\" on a machine with network") from None
    (x_train, y_train), (x_test, y_test) = (_arrays(p, f"{spec} under {root}") for p in parts)
    classes = getattr(parts[0], "classes", None)
    if classes is not None and len(classes) <= int(max(y_train.max(), y_test.max())):
        classes = None
    return make_dataset(spec, x_train, y_train, x_test, y_test, where=f"{spec} under {root}",
                        image_shape=x_train.shape[1:], classes=classes,
                        source=f"torchvision.datasets.{name}({root})")
