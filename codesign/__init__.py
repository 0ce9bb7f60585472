"""codesign: distil neural networks into linear (Koopman) students and co-design them with hardware.

The pipeline, one module per stage: :mod:`~codesign.data` -> :mod:`~codesign.teachers` ->
:mod:`~codesign.pca` and :mod:`~codesign.dictionaries` (:mod:`~codesign.features`) ->
:mod:`~codesign.students` (:mod:`~codesign.losses`) -> :mod:`~codesign.distill`; device models
in :mod:`codesign.devices`, the co-design search in :mod:`codesign.search`.

The public API is what ``__all__`` lists: the scikit-learn estimator :class:`KoopmanStudent`, the
pipeline's entry points (:func:`load_dataset`, :func:`run_distill`, :func:`run_search`,
:func:`export_student`...), the configs and the errors. The names are imported on first use
(PEP 562), so that ``import codesign.errors`` or a device plugin's ``import codesign.devices``
does not load the whole pipeline, and ``import codesign`` never starts Ray.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

__version__ = "0.1.0"

#: public name -> the module that defines it
_EXPORTS = {
    "SavedStudent": "artifacts", "load_student": "artifacts", "save_student": "artifacts",
    "Dataset": "datasets", "load_dataset": "datasets", "make_dataset": "datasets", "register_dataset": "datasets",
    "list_datasets": "datasets",
    "KoopmanStudent": "estimator",
    "SearchConfig": "search", "run_search": "search", "pareto_front": "search", "knee_point": "search",
    "plot_fronts": "search", "plot_breakdown": "search", "load_search": "search",
    "Device": "devices", "create_device": "devices", "get_device_class": "devices", "list_devices": "devices",
    "ExportedModel": "export", "export_student": "export", "load_export": "export", "verify_export": "export",
    "Dictionary": "dictionaries", "create_dictionary": "dictionaries", "list_dictionaries": "dictionaries",
    "get_dictionary_class": "dictionaries",
    "DistillConfig": "distill", "DistillResult": "distill", "Workspace": "distill", "run_distill": "distill",
    "CodesignError": "errors", "ConfigError": "errors", "DataError": "errors", "NumericalError": "errors",
    "ResourceError": "errors", "TeacherError": "errors",
    "FeaturePipeline": "features", "build_features": "features",
    "flat_cost": "inference_cost", "inference_cost": "inference_cost",
    "OpCounts": "opcounts",
    "configure_logging": "log", "get_logger": "log",
    "KDTargets": "losses", "kd_loss": "losses",
    "PCA": "pca",
    "FitConfig": "students", "LinearStudent": "students",
    "Teacher": "teachers", "get_teacher": "teachers", "user_teacher": "teachers",
}

__all__ = sorted(_EXPORTS)

logging.getLogger("codesign").addHandler(logging.NullHandler())  # a library: the program chooses the handlers


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'codesign' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
