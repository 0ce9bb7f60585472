"""Which loader a data set name goes to, the ``codesign.datasets`` entry-point group, and the memo.

A data set is named by one string (``--dataset``, :func:`load_dataset`'s ``name``):

* a built-in name: ``digits`` (embedded, the default), ``mnist``, ``fashion-mnist`` (IDX files
  under the data root), ``wine``, ``breast_cancer``, ``iris`` (embedded tabular sets);
* a name registered by an installed package in the ``codesign.datasets`` entry-point group, or
  in this process by :func:`register_dataset`;
* ``torchvision:CLASS`` (:mod:`codesign.datasets.torchvision_sets`), read from the data root;
* a path: ``FILE.npz`` (:mod:`~codesign.datasets.npz`), ``FILE.csv`` or ``TRAIN.csv,TEST.csv``
  (:mod:`~codesign.datasets.tables`), or a folder of images
  (:mod:`~codesign.datasets.image_folder`). A relative path that does not exist is also looked
  for under the data root.

Loader options follow the last colon: ``data.csv:label=species,test=0.3``
(:mod:`codesign.datasets.options`).

A plugin loader is a callable ``loader(root: Path | None, **options: str) -> Dataset``; build the
:class:`~codesign.datasets.base.Dataset` with :func:`~codesign.datasets.base.make_dataset`, which
checks the arrays. In a package's ``pyproject.toml``::

    [project.entry-points."codesign.datasets"]
    my-spectra = "my_package.data:load_spectra"
"""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable

from ..errors import ConfigError, DataError
from ..log import get_logger
from ..plugins import PluginRegistry
from . import options as o
from .base import Dataset
from .idx import CLASSES as IDX_CLASSES
from .idx import IDX_DATASETS, load_idx_dataset
from .sklearn_sets import DIGIT_CLASSES, TABULAR, TEST_SHARE, load_digits, load_tabular
from .torchvision_sets import PREFIX as TORCHVISION_PREFIX

#: Built-in data sets: images (digits embedded, MNIST and Fashion-MNIST from files) and the
#: embedded tabular sets.
DATASETS = ("digits", "mnist", "fashion-mnist", *TABULAR)
#: The image data sets among them (the ones the reproduction table covers).
IMAGE_DATASETS = ("digits", *IDX_DATASETS)

log = get_logger("datasets")

Loader = Callable[..., Dataset]
#: The name of arrays handed over in memory (:class:`codesign.KoopmanStudent`), never loaded by name.
IN_MEMORY = "<arrays>"


def _check_loader(obj: Any, name: str) -> str | None:
    return None if callable(obj) else f"{type(obj).__name__} is not callable; register a function (root, **options) -> Dataset"


#: Data sets of installed packages (entry-point group ``codesign.datasets``) and of this process.
REGISTRY = PluginRegistry("codesign.datasets", "data set", "data sets", _check_loader)


def register_dataset(name: str, loader: Loader) -> Loader:
    """Register ``loader`` as data set ``name`` in this process (a notebook, a script, a test).

    Args:
        name: the name ``--dataset`` and :func:`load_dataset` take; not a built-in one.
        loader: ``loader(root, **options) -> Dataset``.

    Returns:
        ``loader``, so that this works as a decorator's body.

    Raises:
        ConfigError: ``name`` is a built-in or installed data set, or ``loader`` is not callable.
    """
    if name in DATASETS or name.startswith(TORCHVISION_PREFIX) or ":" in name:
        raise ConfigError(f"cannot register data set {name!r}: a built-in name or a reserved form; choose another")
    problem = _check_loader(loader, name)
    if problem:
        raise ConfigError(f"cannot register data set {name!r}: {problem}")
    if REGISTRY._entry_points().get(name) is not None:
        raise ConfigError(f"cannot register data set {name!r}: that name is installed ({REGISTRY._entry_points()[name].value})")
    REGISTRY.registered[name] = loader
    _MEMO.clear()
    return loader


def list_datasets() -> list[str]:
    """Built-in data sets, then the installed and registered ones (sorted); paths and
    ``torchvision:CLASS`` are accepted besides."""
    return [*DATASETS, *(n for n in REGISTRY.names() if n not in DATASETS)]


def class_names(dataset: str) -> tuple[str, ...]:
    """Class names of the built-in image data set ``dataset``, by label; ``()`` for another name.

    (A loaded :class:`Dataset` carries its own in :attr:`Dataset.classes`.)
    """
    if dataset == "digits":
        return DIGIT_CLASSES
    return IDX_CLASSES.get(dataset, ())


def data_root(root: str | os.PathLike | None = None) -> Path | None:
    """The data root: the explicit argument, else ``$CODESIGN_DATA``, else None."""
    if root is not None:
        return Path(root)
    env = os.environ.get("CODESIGN_DATA")
    return Path(env) if env else None


def _is_pathlike(target: str) -> bool:
    return (target.lower().endswith((".npz", ".csv")) or "/" in target or os.sep in target
            or target.startswith((".", "~")) or Path(target).exists())


def check_dataset_spec(spec: str) -> None:
    """Refuse a data set name that no loader can take, without reading anything.

    Accepted: a built-in or registered name, ``torchvision:CLASS``, or something path-like
    (ends in ``.npz``/``.csv``, holds a ``/``, or exists); whether a path exists and holds good
    data is checked when it is loaded.

    Raises:
        ConfigError: naming the value and listing what is accepted.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"dataset={spec!r}: give a data set name or a path")
    target, _ = o.split_spec(spec)
    if target in DATASETS or target in ("breast-cancer", IN_MEMORY) or target.startswith(TORCHVISION_PREFIX):
        return
    if REGISTRY.load(target) is not None or _is_pathlike(target):
        return
    raise ConfigError(
        f"dataset={spec!r} is not one of {', '.join(list_datasets())}, nor torchvision:CLASS, nor a path to an "
        ".npz file, a .csv file (or TRAIN.csv,TEST.csv) or an image folder")


def _resolve(target: str, root: Path | None) -> Path | None:
    p = Path(target).expanduser()
    if p.exists():
        return p
    if root is not None and not p.is_absolute() and (root / p).exists():
        return root / p
    return None


def _signature(target: str, root: Path | None) -> tuple:
    """What a memoised load depends on besides its name: the files' sizes and times."""
    stamps = []
    for part in target.split(","):
        p = _resolve(part, root)
        if p is None:
            continue
        if p.is_dir():
            for dirpath, _, files in os.walk(p):
                st = os.stat(dirpath)
                stamps.append((dirpath, st.st_mtime_ns))
                stamps += [(f, os.stat(os.path.join(dirpath, f)).st_mtime_ns, os.stat(os.path.join(dirpath, f)).st_size)
                           for f in sorted(files)]
        else:
            st = p.stat()
            stamps.append((str(p.resolve()), st.st_mtime_ns, st.st_size))
    return tuple(stamps)


_MEMO: "OrderedDict[tuple, Dataset]" = OrderedDict()
_MEMO_SIZE = 4


def load_dataset(name: str, root: str | os.PathLike | None = None, *, download: bool = False) -> Dataset:
    """Load the data set ``name`` (see the module doc for the names and paths it takes).

    The last few data sets loaded are kept in memory, keyed by the name, the root and the
    files' sizes and modification times, so that a search loading one several times reads it once.

    Args:
        name: a built-in name, a registered one, ``torchvision:CLASS``, or a path (with
            ``:KEY=VALUE,...`` loader options).
        root: data root; defaults to ``$CODESIGN_DATA``.
        download: allow torchvision to download MNIST/Fashion-MNIST into ``root`` if the files
            are nowhere to be found. Never used by tests or CI, nor for ``torchvision:CLASS``.

    Returns:
        The :class:`~codesign.datasets.base.Dataset`, checked (one-line
        :class:`~codesign.errors.DataError` for bad data) and hashed (``fingerprint``).
    """
    check_dataset_spec(name)
    if name == IN_MEMORY:
        raise ConfigError(f"dataset={IN_MEMORY!r} names arrays handed over in memory (codesign.KoopmanStudent.fit); "
                          "give a data set name or a path to load")
    root_path = data_root(root)
    target, opts = o.split_spec(name)
    key = (name, str(root_path), download, _signature(target, root_path))
    hit = _MEMO.get(key)
    if hit is not None:
        _MEMO.move_to_end(key)
        ds = hit
    else:
        ds = _MEMO[key] = _load(name, target, opts, root_path, download)
    log.debug("data set %s: %d train / %d test rows of %d %s, %d classes, from %s%s (content hash %s)", ds.name,
              len(ds.y_train), len(ds.y_test), ds.n_inputs, "pixels" if ds.is_image else "features", ds.n_classes,
              ds.source, ", kept in memory" if hit is not None else "", ds.fingerprint)
    if hit is not None:
        return ds
    while len(_MEMO) > _MEMO_SIZE:
        _MEMO.popitem(last=False)
    return ds


def _load(spec: str, target: str, opts: dict[str, str], root: Path | None, download: bool) -> Dataset:
    if target == "digits":
        o.check_keys(spec, opts, ())
        return load_digits()
    if target in IDX_DATASETS:
        o.check_keys(spec, opts, ())
        return load_idx_dataset(target, root, download)
    if target in TABULAR or target == "breast-cancer":
        o.check_keys(spec, opts, ("test", "seed", "scale"))
        return load_tabular(target.replace("-", "_"), test=o.share(spec, opts, TEST_SHARE), seed=o.seed(spec, opts),
                            scale_=o.scaling(spec, opts, "standard"))
    if target.startswith(TORCHVISION_PREFIX):
        from .torchvision_sets import load_torchvision

        return load_torchvision(spec, target, opts, root)
    loader = REGISTRY.load(target)
    if loader is not None:
        try:
            ds = loader(root, **opts)
        except (ConfigError, DataError):
            raise
        except TypeError as exc:
            raise ConfigError(f"dataset={spec!r}: its loader refused the options {opts or '(none)'} ({exc})") from None
        if not isinstance(ds, Dataset):
            raise DataError(f"data set {target!r}: its loader returned {type(ds).__name__}, not a codesign Dataset; "
                            "build it with codesign.datasets.make_dataset")
        return ds
    parts = target.split(",")
    paths = [_resolve(p, root) for p in parts]
    missing = [p for p, r in zip(parts, paths) if r is None]
    if missing:
        where = f" (nor under the data root {root})" if root is not None else ""
        raise DataError(f"{missing[0]}: no such file or folder{where}; give the path of an .npz, a .csv or an image "
                        "folder, or a built-in name")
    if all(p.suffix.lower() == ".csv" and p.is_file() for p in paths) and len(paths) <= 2:
        from .tables import load_csv

        return load_csv(paths, spec, opts)
    if len(paths) == 1 and paths[0].is_file() and paths[0].suffix.lower() == ".npz":
        from .npz import load_npz

        return load_npz(paths[0], spec, opts)
    if len(paths) == 1 and paths[0].is_dir():
        from .image_folder import load_image_folder

        return load_image_folder(paths[0], spec, opts)
    raise ConfigError(f"dataset={spec!r}: codesign reads .npz files, .csv files (one, or TRAIN.csv,TEST.csv) and image "
                      "folders; convert the data to one of these, or register a loader (codesign.datasets entry point)")
