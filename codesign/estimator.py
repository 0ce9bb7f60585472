"""A scikit-learn estimator for the linear (Koopman) student: :class:`KoopmanStudent`.

It is the whole pipeline of :func:`codesign.distill.run_distill` (PCA, dictionary lift,
standardisation, one matrix K fitted by knowledge distillation, optionally a device) behind
``fit`` / ``predict`` / ``predict_proba`` / ``score``, so that it drops into scikit-learn's
``Pipeline``, ``GridSearchCV`` and ``cross_val_score``::

    from codesign import KoopmanStudent
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    X_tr, X_te, y_tr, y_te = train_test_split(X / 16, y, random_state=0)
    student = KoopmanStudent(pca_rank=20, device="photonic_mzi").fit(X_tr, y_tr)
    student.score(X_te, y_te)        # the float student's accuracy
    student.hw_score(X_te, y_te)     # mean accuracy over seeded hardware instances
    student.cost_["energy_pj"]       # the whole inference, priced on the device
    student.export("bundle/")        # ONNX and the device's own files (codesign.export)

The teacher is, in order: the ``teacher_logits`` given to :meth:`KoopmanStudent.fit`; none for
``method="labels"``; a ``torch.nn.Module`` given as ``teacher`` (a pre-trained network taking
the rows of ``X``); or a built-in architecture trained on ``(X, y)`` and cached
(``teacher="mlp"``, the default).
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from .artifacts import SavedStudent, save_student
from .datasets import Dataset
from .datasets.registry import IN_MEMORY
from .devices.base import DEFAULT_OPERATING_MODE, DEFAULT_T_INFERENCE_S
from .devices.digital import DEFAULT_HOST_DATAPATH
from .dictionaries import DEFAULT_DICTIONARY
from .distill import DistillConfig, DistillResult, Workspace, run_distill
from .errors import ConfigError
from .features import Features
from .students import FitConfig
from .teachers import Teacher, user_teacher


class _ArrayWorkspace(Workspace):
    """A :class:`~codesign.distill.Workspace` serving arrays handed over in memory, and their teacher."""

    def __init__(self, ds: Dataset, teacher: Any, logits: np.ndarray | None, method: str) -> None:
        super().__init__(verbose=False)
        self.given, self.given_teacher, self.logits, self.method = ds, teacher, logits, method

    def dataset(self, cfg: DistillConfig) -> Dataset:
        return self.given

    def teacher(self, cfg: DistillConfig, ds: Dataset) -> Teacher:
        if self.logits is not None:
            return Teacher("given logits", None, self.logits, self.logits, {"teacher": "given logits"})
        if self.method == "labels":  # no teacher is used: its logits are never read
            zeros = np.zeros((len(ds.y_train), ds.n_classes), np.float32)
            return Teacher("none", None, zeros, zeros, {"teacher": "none"})
        if isinstance(self.given_teacher, torch.nn.Module):
            return user_teacher(self.given_teacher, ds, name=type(self.given_teacher).__name__)
        return super().teacher(cfg, ds)


def _seed(random_state: Any) -> int:
    if random_state is None:
        return 0
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(0, 2**31 - 1))
    if isinstance(random_state, (int, np.integer)) and not isinstance(random_state, bool):
        return int(random_state)
    raise ConfigError(f"random_state={random_state!r}: give an int, None or a numpy RandomState")


class KoopmanStudent(ClassifierMixin, BaseEstimator):
    """The linear student ``softmax(K psi(PCA(x)))`` as a scikit-learn classifier.

    Every parameter is one of :class:`codesign.distill.DistillConfig` (and its
    :class:`~codesign.students.FitConfig`); they are checked when :meth:`fit` runs.

    Args:
        pca_rank: PCA rank r (lowered to ``min(n_samples, n_features)`` when the data is smaller;
            ``pca_rank_`` says what was used).
        dictionary: the dictionary lifting the PCA scores (``monomial``, ``rbf``, ``rff``, or a
            plugin); with ``lift_placement="device"``, a nonlinear primitive of ``device``
            (``intensity`` or ``photonic_mzi.intensity``; ``codesign devices`` lists them; the
            default dictionary stands for the device's first primitive).
        dictionary_params: ``{param: value}`` of the dictionary (e.g. ``{"degree": 3}``).
        method: ``kd`` (distillation from the teacher), ``labels`` (no teacher) or ``naive``
            (least-squares EDMD on the teacher's outputs).
        temperature: distillation temperature T, or ``"auto"``.
        alpha: weight of the teacher term, or ``"auto"``.
        l2: L2 penalty on K (None: the method's default), or ``"auto"``.
        max_iter: L-BFGS iteration cap.
        tol: relative loss decrease that stops L-BFGS.
        teacher: a built-in architecture name trained on ``(X, y)`` and cached (``mlp``,
            ``mlp-narrow``; ``cnn``/``resnet18`` need images and are refused for plain rows), a
            TorchScript file, ``module:factory``, or a ``torch.nn.Module`` taking rows of ``X``.
            Unused when :meth:`fit` receives ``teacher_logits`` or ``method="labels"``.
        teacher_epochs: training epochs of a built-in teacher (None: its default).
        device: a device model (``codesign devices``) to train or map K onto; None: float only.
        device_preset: a named preset of ``device``.
        device_preset_file: a preset file of ``device`` (``codesign calibrate``), instead of ``device_preset``.
        device_overrides: ``{field: value}`` overriding the device's config.
        protocol: ``posthoc`` (fit in float, then map) or ``aware`` (train through the device).
        hw_draws: hardware instances drawn by :meth:`hw_accuracy` unless it is told otherwise.
        eval_time_s: time since programming at which the hardware is read, s (None: the default).
        pca_placement: ``host`` or ``device`` (the PCA projection on the device too).
        lift_placement: ``host`` (the dictionary's arithmetic on the digital host) or ``device``
            (one of the device's nonlinear primitives, named by ``dictionary``: K is fitted on its
            exact features, its noise and quantisation run in every hardware draw of
            :meth:`hw_accuracy` and ``cost_`` prices it on the device), as
            ``codesign distill --lift-placement``.
        host_datapath: number format of the digital host that runs the PCA projection and the
            lift (``int8`` by default, simulated: the logits follow it; ``fp32`` for a float host).
        operating_mode: ``latency`` or ``stream``, the time base of held power in ``cost_``.
        random_state: seeds the teacher, k-means, the fit and the hardware draws.
        cache_dir: cache folder of teachers (None: ``$CODESIGN_CACHE`` or ``~/.cache/codesign``).
        torch_device: ``cpu`` or ``cuda[:N]``.
        max_memory: byte budget of a feature matrix (None: half the RAM), e.g. ``"8G"``.

    Attributes:
        classes_: the class labels, sorted.
        n_features_in_: input width seen by :meth:`fit`.
        pca_rank_: the PCA rank used.
        pipeline_: the fitted :class:`~codesign.features.FeaturePipeline`.
        coef_: K, ``[n_classes, n_lifted_features]`` float32 (the float student).
        layer_: the programmed or trained device layer (None without a device).
        n_iter_: L-BFGS iterations of the fit (1 for the closed-form ``naive`` fit).
        cost_: the whole inference priced on the device (``inference_cost``), or None.
        fit_metrics_: what :func:`~codesign.distill.run_distill` measured; its accuracies are
            scored on the training rows.
    """

    def __init__(
        self,
        pca_rank: int = 20,
        dictionary: str = DEFAULT_DICTIONARY,
        dictionary_params: Mapping[str, Any] | None = None,
        method: str = "kd",
        temperature: float | str = 2.0,
        alpha: float | str = 0.9,
        l2: float | str | None = None,
        max_iter: int = 200,
        tol: float = 1e-2,
        teacher: Any = "mlp",
        teacher_epochs: int | None = None,
        device: str | None = None,
        device_preset: str | None = None,
        device_preset_file: str | None = None,
        device_overrides: Mapping[str, Any] | None = None,
        protocol: str = "posthoc",
        hw_draws: int = 5,
        eval_time_s: float | None = None,
        pca_placement: str = "host",
        lift_placement: str = "host",
        host_datapath: str = DEFAULT_HOST_DATAPATH,
        operating_mode: str = DEFAULT_OPERATING_MODE,
        random_state: Any = 0,
        cache_dir: str | None = None,
        torch_device: str = "cpu",
        max_memory: int | str | None = None,
    ) -> None:
        self.pca_rank = pca_rank
        self.host_datapath = host_datapath
        self.operating_mode = operating_mode
        self.dictionary = dictionary
        self.dictionary_params = dictionary_params
        self.method = method
        self.temperature = temperature
        self.alpha = alpha
        self.l2 = l2
        self.max_iter = max_iter
        self.tol = tol
        self.teacher = teacher
        self.teacher_epochs = teacher_epochs
        self.device = device
        self.device_preset = device_preset
        self.device_preset_file = device_preset_file
        self.device_overrides = device_overrides
        self.protocol = protocol
        self.hw_draws = hw_draws
        self.eval_time_s = eval_time_s
        self.pca_placement = pca_placement
        self.lift_placement = lift_placement
        self.random_state = random_state
        self.cache_dir = cache_dir
        self.torch_device = torch_device
        self.max_memory = max_memory

    # ------------------------------------------------------------------ fitting
    def distill_config(self, rank: int | None = None) -> DistillConfig:
        """The :class:`~codesign.distill.DistillConfig` this estimator fits with (validated)."""
        seed = _seed(self.random_state)
        teacher = self.teacher if isinstance(self.teacher, str) else "user"
        return DistillConfig(
            dataset=IN_MEMORY, teacher=teacher, teacher_epochs=self.teacher_epochs,
            pca_rank=int(rank if rank is not None else self.pca_rank), dictionary=self.dictionary,
            dictionary_params=tuple(sorted(dict(self.dictionary_params or {}).items())),
            fit=FitConfig(method=self.method, temperature=self.temperature, alpha=self.alpha, l2=self.l2,
                          max_iter=self.max_iter, tol=self.tol, seed=seed),
            device=self.device, device_preset=self.device_preset, device_preset_file=self.device_preset_file,
            device_overrides=tuple(sorted(dict(self.device_overrides or {}).items())), protocol=self.protocol,
            hw_draws=self.hw_draws, seed=seed, cache_dir=self.cache_dir, torch_device=self.torch_device,
            pca_placement=self.pca_placement, lift_placement=self.lift_placement, max_memory=self.max_memory,
            host_datapath=self.host_datapath, operating_mode=self.operating_mode,
            eval_time_s=DEFAULT_T_INFERENCE_S if self.eval_time_s is None else self.eval_time_s,
        )

    def fit(self, X: Any, y: Any, teacher_logits: Any = None) -> "KoopmanStudent":
        """Fit the student on rows ``X`` ``[n, d]`` and labels ``y``.

        Args:
            X: inputs, one row per sample (images flattened).
            y: class labels (any sortable values).
            teacher_logits: ``[n, n_classes]`` outputs of your teacher on ``X``, columns in the
                order of ``numpy.unique(y)``; None: the ``teacher`` parameter provides them.

        Returns:
            self.

        Raises:
            ValueError: bad ``X``, ``y`` or ``teacher_logits`` (scikit-learn's checks; one class),
                or a bad parameter (:class:`~codesign.errors.ConfigError` is a ``ValueError``).
        """
        X, y = validate_data(self, X, y, dtype=np.float32)
        check_classification_targets(y)
        classes, y_enc = np.unique(y, return_inverse=True)
        if len(classes) < 2:
            raise ValueError(f"y holds one class ({classes[0]!r}); a classifier needs samples of at least two classes")
        X = np.array(X, dtype=np.float32, order="C")  # a private, writable copy (torch warns on read-only arrays)
        logits = None
        if teacher_logits is not None:
            logits = np.asarray(teacher_logits, dtype=np.float32)
            if logits.shape != (len(X), len(classes)):
                raise ValueError(f"teacher_logits has shape {list(logits.shape)}; expected [n_samples, n_classes] = "
                                 f"{[len(X), len(classes)]} (columns in the order of numpy.unique(y))")
            if not np.isfinite(logits).all():
                raise ValueError("teacher_logits holds NaN or inf; give finite teacher outputs")
        rank = max(1, min(int(self.pca_rank), X.shape[0], X.shape[1]))
        cfg = self.distill_config(rank)
        ds = Dataset(IN_MEMORY, X, y_enc.astype(np.int64), X, y_enc.astype(np.int64), None,
                     tuple(str(c) for c in classes), "arrays given to KoopmanStudent.fit")
        result = run_distill(cfg, _ArrayWorkspace(ds, self.teacher, logits, cfg.fit.method))
        self.classes_ = classes
        self.pca_rank_ = rank
        self.pipeline_ = result.features.pipeline
        self.coef_ = result.student.K_.detach().cpu().float()
        self.layer_ = result.layer
        metrics = dict(result.metrics)
        if logits is not None:
            metrics["teacher"] = "given logits"
        elif cfg.fit.method == "labels":
            metrics["teacher"], metrics["teacher_test_accuracy"] = None, None
        self.fit_metrics_ = metrics
        self.cost_ = metrics.get("cost")
        self.n_iter_ = max(1, int(metrics.get("iterations") or 0))  # L-BFGS iterations (1 for a closed form)
        self._student = result.student
        return self

    # ------------------------------------------------------------------ inference
    def _logits(self, X: Any) -> torch.Tensor:
        """Float logits in float64: each row's, whatever rows it is scored with (the pipeline's float32
        products differ in the last bits between batch sizes)."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=np.float64)
        if self.pipeline_.host_datapath != "fp32":
            # the host's number format is simulated: its codes (exact integer arithmetic for int8)
            # give each row the same logits whatever rows it is scored with
            psi = self.pipeline_.transform(np.asarray(X, dtype=np.float32)).double()
            return psi @ self.coef_.double().T
        pca = self.pipeline_.pca_
        z = (torch.from_numpy(np.asarray(X, dtype=np.float64)) - torch.from_numpy(pca.mean_).double()) \
            @ torch.from_numpy(pca.components_).double().T
        if pca.whiten:
            z = z / torch.from_numpy(np.sqrt(pca.explained_variance_)).double()
        psi = self.pipeline_.lift(z).double()
        return psi @ self.coef_.double().T

    def decision_function(self, X: Any) -> np.ndarray:
        """The float student's logits ``[n, n_classes]`` (for two classes, the second minus the first, ``[n]``)."""
        z = self._logits(X).numpy()
        return z[:, 1] - z[:, 0] if len(self.classes_) == 2 else z

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities ``softmax(K psi(x))`` of the float student, ``[n, n_classes]``."""
        return torch.softmax(self._logits(X), 1).numpy()

    def predict(self, X: Any) -> np.ndarray:
        """The most probable class of each row (the float student)."""
        index = self._logits(X).argmax(1).numpy()
        return self.classes_[index]

    # ------------------------------------------------------------------ hardware
    def saved_student(self) -> SavedStudent:
        """The fitted student as :func:`codesign.load_student` would return it (device included)."""
        check_is_fitted(self)
        m = self.fit_metrics_
        state = None if self.layer_ is None else {k: v.detach().cpu() for k, v in self.layer_.state_dict().items()}
        return SavedStudent(self.coef_, self.pipeline_, m, m.get("device"), m.get("device_config"), state)

    def hw_accuracy(self, X: Any, y: Any, draws: int | None = None, seed: int | None = None) -> list[float]:
        """Accuracy of the device-evaluated student on ``(X, y)``, one value per seeded hardware instance.

        Args:
            X: inputs ``[n, d]``.
            y: labels (values of ``classes_``).
            draws: hardware instances (default ``hw_draws``).
            seed: seeds the instances (default ``random_state``).

        Raises:
            ConfigError: the student was fitted without a ``device``.
        """
        check_is_fitted(self)
        if self.layer_ is None:
            raise ConfigError("hw_accuracy needs a device: fit KoopmanStudent(device=NAME) (see `codesign devices`)")
        X = validate_data(self, X, reset=False, dtype=np.float32)
        y = np.asarray(y)
        index = {c: i for i, c in enumerate(self.classes_.tolist())}
        unknown = sorted({v for v in y.tolist() if v not in index}, key=str)
        if unknown:
            raise ValueError(f"y holds labels the student was not fitted on: {unknown[:5]}")
        labels = np.array([index[v] for v in y.tolist()], dtype=np.int64)
        return self.saved_student().hw_accuracy(
            np.array(X, dtype=np.float32), labels, self.hw_draws if draws is None else draws,
            _seed(self.random_state) if seed is None else seed, self.fit_metrics_.get("eval_time_s"))

    def hw_score(self, X: Any, y: Any, draws: int | None = None, seed: int | None = None) -> float:
        """Mean of :meth:`hw_accuracy`: the accuracy on hardware."""
        return float(np.mean(self.hw_accuracy(X, y, draws, seed)))

    # ------------------------------------------------------------------ files
    def _result(self) -> DistillResult:
        empty = torch.empty(0, self.coef_.shape[1])
        return DistillResult(self._student, Features(self.pipeline_, empty, empty), None, self.layer_,
                             dict(self.fit_metrics_))

    def save(self, path: str | Path) -> Path:
        """Save the student as a ``student.pt`` (:func:`codesign.save_student`; reload with
        :func:`codesign.load_student`); returns ``path``."""
        check_is_fitted(self)
        save_student(path, self._result())
        return Path(path)

    def export(self, out: str | Path, *, force: bool = False, instance: int | None = None):
        """Export the student as a bundle (:func:`codesign.export_student`: ONNX, QONNX for FPGA
        students, the device layer in its native format) and return it reloaded
        (:class:`codesign.ExportedModel`).

        Args:
            out: the bundle's folder (must not exist or be empty, unless ``force``).
            force: replace a non-empty ``out``.
            instance: also export hardware instance (chip) ``instance`` of the device layer.
        """
        from .export import export_student, load_export

        check_is_fitted(self)
        with tempfile.TemporaryDirectory() as tmp:
            path = self.save(Path(tmp) / "student.pt")
            export_student(path, out, force=force, instance=instance)
        return load_export(out)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags


__all__ = ["KoopmanStudent"]
