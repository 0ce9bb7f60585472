"""codesign: distil neural networks into linear (Koopman) students and co-design them with hardware.

The pipeline, one module per stage: :mod:`~codesign.data` -> :mod:`~codesign.teachers` ->
:mod:`~codesign.pca` and :mod:`~codesign.dictionaries` (:mod:`~codesign.features`) ->
:mod:`~codesign.students` (:mod:`~codesign.losses`) -> :mod:`~codesign.distill`.
"""

from .artifacts import SavedStudent, load_student, save_student
from .data import Dataset, load_dataset
from .dictionaries import Dictionary, create_dictionary, list_dictionaries, register_dictionary
from .distill import DistillConfig, DistillResult, Workspace, run_distill
from .errors import CodesignError, ConfigError, DataError, NumericalError, ResourceError, TeacherError
from .features import FeaturePipeline, build_features
from .losses import KDTargets, kd_loss
from .pca import PCA
from .students import FitConfig, LinearStudent
from .teachers import Teacher, get_teacher, user_teacher

__version__ = "0.1.0"

__all__ = [
    "CodesignError", "ConfigError", "DataError", "Dataset", "Dictionary", "DistillConfig", "DistillResult",
    "FeaturePipeline", "FitConfig", "KDTargets", "LinearStudent", "NumericalError", "PCA", "ResourceError",
    "SavedStudent", "Teacher", "TeacherError", "Workspace", "build_features", "create_dictionary", "get_teacher",
    "kd_loss", "list_dictionaries", "load_dataset", "load_student", "register_dictionary", "run_distill",
    "save_student", "user_teacher",
]
