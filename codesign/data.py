"""Data sets (kept for compatibility): everything here now lives in :mod:`codesign.datasets`."""

from __future__ import annotations

from .datasets import (DATASETS, DEBIAN_FASHION, IMAGE_DATASETS, Dataset, candidate_dirs, check_dataset_spec,
                       class_names, data_root, list_datasets, load_dataset, make_dataset, read_idx, register_dataset)

__all__ = [
    "DATASETS", "DEBIAN_FASHION", "Dataset", "IMAGE_DATASETS", "candidate_dirs", "check_dataset_spec", "class_names",
    "data_root", "list_datasets", "load_dataset", "make_dataset", "read_idx", "register_dataset",
]
