"""Data sets: built-in ones, your own files, torchvision classes on disk, and plugins.

One module per source: :mod:`~codesign.datasets.sklearn_sets` (digits, wine, breast_cancer,
iris: embedded), :mod:`~codesign.datasets.idx` (MNIST, Fashion-MNIST from IDX files),
:mod:`~codesign.datasets.npz`, :mod:`~codesign.datasets.tables` (CSV),
:mod:`~codesign.datasets.image_folder`, :mod:`~codesign.datasets.torchvision_sets`;
:mod:`~codesign.datasets.registry` maps a name to its loader (and reads the
``codesign.datasets`` entry-point group); :mod:`~codesign.datasets.base` holds the
:class:`Dataset`, its checks and its content hash.

Examples:
    >>> from codesign.datasets import load_dataset
    >>> ds = load_dataset("wine")
    >>> ds.n_inputs, ds.n_classes, ds.image_shape
    (13, 3, None)
"""

from .base import Dataset, content_hash, make_dataset, seeded_split
from .idx import DEBIAN_FASHION, candidate_dirs, read_idx
from .registry import (DATASETS, IMAGE_DATASETS, REGISTRY, check_dataset_spec, class_names, data_root,
                       list_datasets, load_dataset, register_dataset)

__all__ = [
    "DATASETS", "DEBIAN_FASHION", "Dataset", "IMAGE_DATASETS", "REGISTRY", "candidate_dirs", "check_dataset_spec",
    "class_names", "content_hash", "data_root", "list_datasets", "load_dataset", "make_dataset", "read_idx",
    "register_dataset", "seeded_split",
]
