"""The distillation pipeline: data -> teacher -> features -> student (-> device), one call.

:func:`run_distill` is a pure, seeded function of a :class:`DistillConfig` (plus a
:class:`Workspace` that memoises the expensive, shareable pieces: data sets, teachers and
lifted features). The CLI, the reproduction table, the robustness table and the search all
call it.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .data import DATASETS, Dataset, load_dataset
from .dictionaries import create_dictionary, list_dictionaries
from .errors import ConfigError, check_choice, check_range
from .features import Features, build_features, cached_features, parse_memory
from .students import FitConfig, LinearStudent, accuracy, fit_through_device
from .teachers import Teacher, check_torch_device, get_teacher

PROTOCOLS = ("posthoc", "aware")


@dataclass(frozen=True)
class DistillConfig:
    """Everything that determines one distillation run (plain values; validated here).

    Attributes:
        dataset: ``digits`` (embedded), ``mnist`` or ``fashion-mnist``.
        data_root: folder with the IDX files (default ``$CODESIGN_DATA``).
        teacher: built-in architecture, TorchScript file, or ``module:factory``.
        teacher_weights: state dict for a factory teacher.
        teacher_epochs: training epochs for a built-in teacher (None: its default).
        pca_rank: PCA rank r.
        dictionary: ``monomial`` or ``rbf`` (or any registered dictionary).
        degree: monomial degree d.
        centers: RBF centre count.
        fit: how K is fitted (method, temperature, alpha, ...).
        device: device name for hardware evaluation (None: ideal float only).
        device_overrides: ``{field: value}`` applied to the device's default config.
        protocol: ``posthoc`` (train ideal, then map) or ``aware`` (train through the device).
        hw_draws: hardware instances drawn for evaluation.
        seed: seeds the teacher, k-means, minibatches, device noise and hardware draws.
        validation: hold out this share of the training set and report accuracy on it
            (the search's objective); 0 disables.
        max_memory: byte budget for a feature matrix (None: half the RAM).
        cache_dir: cache folder (None: ``$CODESIGN_CACHE`` or ``~/.cache/codesign``).
        torch_device: where teachers train and students are fitted (``cpu`` or ``cuda``).
    """

    dataset: str = "digits"
    data_root: str | None = None
    teacher: str = "mlp"
    teacher_weights: str | None = None
    teacher_epochs: int | None = None
    pca_rank: int = 20
    dictionary: str = "monomial"
    degree: int = 2
    centers: int = 200
    fit: FitConfig = field(default_factory=FitConfig)
    device: str | None = None
    device_overrides: tuple[tuple[str, Any], ...] = ()
    protocol: str = "posthoc"
    hw_draws: int = 5
    seed: int = 0
    validation: float = 0.0
    max_memory: int | None = None
    cache_dir: str | None = None
    torch_device: str = "cpu"

    def __post_init__(self) -> None:
        check_choice("dataset", self.dataset, DATASETS)
        check_range("pca_rank", self.pca_rank, 1, None, integer=True)
        if self.dictionary not in list_dictionaries():
            raise ConfigError(
                f"unknown dictionary {self.dictionary!r}; known dictionaries: {', '.join(list_dictionaries())}"
            )
        create_dictionary(self.dictionary, **self.dictionary_params)  # validates degree / centers
        check_choice("protocol", self.protocol, PROTOCOLS)
        check_range("hw_draws", self.hw_draws, 1, 10_000, integer=True)
        check_range("seed", self.seed, 0, 2**31 - 1, integer=True)
        check_range("validation", self.validation, 0.0, 0.9)
        if self.teacher_epochs is not None:
            check_range("teacher_epochs", self.teacher_epochs, 1, 1000, integer=True)
        if isinstance(self.device_overrides, dict):
            object.__setattr__(self, "device_overrides", tuple(sorted(self.device_overrides.items())))
        if self.fit.seed != self.seed:
            object.__setattr__(self, "fit", dataclasses.replace(self.fit, seed=self.seed))
        if self.protocol == "aware" and self.device is None:
            raise ConfigError("protocol='aware' trains through a device: give --device NAME")
        if self.protocol == "aware" and self.fit.method == "naive":
            raise ConfigError(
                "method='naive' is a closed-form float fit and can only be mapped post hoc; "
                "use --protocol posthoc, or --method kd|labels for hardware-aware training"
            )
        check_choice("torch_device", self.torch_device.split(":")[0], ("cpu", "cuda"))
        if self.max_memory is not None:
            object.__setattr__(self, "max_memory", parse_memory(self.max_memory))

    @property
    def dictionary_params(self) -> dict:
        if self.dictionary == "monomial":
            return {"degree": self.degree}
        if self.dictionary == "rbf":
            return {"centers": self.centers}
        return {}

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["device_overrides"] = dict(self.device_overrides)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "DistillConfig":
        d = dict(d)
        fit = d.pop("fit", {}) or {}
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown config key(s) {', '.join(unknown)}; known keys: {', '.join(sorted(known))}")
        fit_known = {f.name for f in dataclasses.fields(FitConfig)}
        bad = sorted(set(fit) - fit_known)
        if bad:
            raise ConfigError(f"unknown fit key(s) {', '.join(bad)}; known keys: {', '.join(sorted(fit_known))}")
        d["device_overrides"] = tuple(sorted((d.get("device_overrides") or {}).items()))
        return cls(fit=FitConfig(**fit), **d)


class Workspace:
    """Memoises data sets, teachers and lifted features across runs in one process.

    Args:
        disk_features: also cache lifted features on disk (for searches in several processes).
    """

    def __init__(self, disk_features: bool = False) -> None:
        self.disk_features = disk_features
        self._data: dict = {}
        self._teachers: dict = {}
        self._features: dict = {}

    def dataset(self, cfg: DistillConfig) -> Dataset:
        key = (cfg.dataset, cfg.data_root, cfg.validation, cfg.seed if cfg.validation else 0)
        if key not in self._data:
            ds = load_dataset(cfg.dataset, cfg.data_root)
            if cfg.validation:
                ds = split_validation(ds, cfg.validation, cfg.seed)
            self._data[key] = ds
        return self._data[key]

    def teacher(self, cfg: DistillConfig, ds: Dataset) -> Teacher:
        key = (ds.name, len(ds.y_train), cfg.teacher, cfg.teacher_weights, cfg.teacher_epochs, cfg.seed, cfg.validation)
        if key not in self._teachers:
            self._teachers[key] = get_teacher(
                cfg.teacher, ds, seed=cfg.seed, epochs=cfg.teacher_epochs, weights=cfg.teacher_weights,
                cache_dir=cfg.cache_dir, torch_device=cfg.torch_device,
            )
        return self._teachers[key]

    def features(self, cfg: DistillConfig, ds: Dataset) -> Features:
        seed = cfg.seed if cfg.dictionary != "monomial" else 0  # monomials are seed-free
        key = (ds.name, len(ds.y_train), cfg.validation, cfg.pca_rank, cfg.dictionary,
               tuple(sorted(cfg.dictionary_params.items())), seed)
        if key not in self._features:
            build = cached_features if self.disk_features else build_features
            kwargs = {"cache_dir": cfg.cache_dir} if self.disk_features else {}
            self._features[key] = build(
                ds.x_train, ds.x_test, cfg.pca_rank, cfg.dictionary, cfg.dictionary_params,
                seed=seed, max_memory=cfg.max_memory, **kwargs,
            )
        return self._features[key]


def split_validation(ds: Dataset, share: float, seed: int) -> Dataset:
    """Hold out ``share`` of the training set (stratified by a seeded shuffle) as the test split.

    The search optimises on this split and never sees the real test set.
    """
    gen = np.random.default_rng(seed + 7919)
    perm = gen.permutation(len(ds.y_train))
    n_val = int(round(share * len(perm)))
    val, train = perm[:n_val], perm[n_val:]
    return dataclasses.replace(
        ds, x_train=ds.x_train[train], y_train=ds.y_train[train], x_test=ds.x_train[val],
        y_test=ds.y_train[val], source=f"{ds.source} (validation split {share:g}, seed {seed})",
    )


@dataclass
class DistillResult:
    """A fitted student and what was measured (``metrics`` is the JSON the CLI prints)."""

    student: LinearStudent
    features: Features
    teacher: Teacher
    layer: torch.nn.Module | None
    metrics: dict


def run_distill(cfg: DistillConfig, ws: Workspace | None = None) -> DistillResult:
    """Run one distillation (and hardware evaluation, if a device is given)."""
    ws = ws or Workspace()
    ds = ws.dataset(cfg)
    if cfg.pca_rank > ds.n_inputs:
        raise ConfigError(
            f"pca_rank={cfg.pca_rank} is larger than the input dimension of {ds.name} "
            f"({ds.n_inputs} pixels); use pca_rank <= {ds.n_inputs}"
        )
    device = None
    if cfg.device is not None:  # validate the device before any expensive work
        from codesign.devices import create_device

        device = create_device(cfg.device, dict(cfg.device_overrides))
    check_torch_device(cfg.torch_device)  # before the teacher: fits run there too
    teacher = ws.teacher(cfg, ds)
    feats = ws.features(cfg, ds)
    dev = torch.device(cfg.torch_device)
    psi_train, psi_test = feats.train.to(dev), feats.test.to(dev)
    y_train = torch.from_numpy(ds.y_train).to(dev)
    y_test = torch.from_numpy(ds.y_test).to(dev)
    t_logits = torch.from_numpy(teacher.train_logits).to(dev)
    student = LinearStudent(cfg.fit).fit(psi_train, y_train, t_logits, n_classes=ds.n_classes, gram_cache=feats.gram)
    metrics: dict[str, Any] = {
        "dataset": ds.name,
        "teacher": cfg.teacher,
        "teacher_test_accuracy": teacher.test_accuracy(ds) if not cfg.validation else None,
        "method": cfg.fit.method,
        "dictionary": feats.pipeline.dictionary.describe(),
        "pca_rank": cfg.pca_rank,
        "seed": cfg.seed,
        "n_features": feats.pipeline.n_features,
        "test_accuracy": student.accuracy(psi_test, y_test),
        "train_accuracy": student.accuracy(psi_train, y_train),
        "fit_seconds": student.info_.seconds,
        **{k: v for k, v in student.info_.as_dict().items() if k != "seconds"},
    }
    layer = None
    if device is not None:
        n_out, n_in = student.K_.shape
        layer = device.layer(n_in, n_out).to(dev)
        if cfg.protocol == "aware":
            info = fit_through_device(psi_train, y_train, t_logits, layer, student.K_, cfg.fit)
            metrics["aware_seconds"] = info.seconds
            metrics["aware_steps"] = info.iterations
        else:
            layer.load_matrix(student.K_)
        accs = hardware_accuracy(layer, psi_test, y_test, cfg.hw_draws, cfg.seed)
        metrics.update(
            device=cfg.device,
            device_config=dataclasses.asdict(device.config),
            protocol=cfg.protocol,
            hw_accuracies=accs,
            hw_accuracy_mean=float(np.mean(accs)),
            hw_accuracy_std=float(np.std(accs)),
            hw_accuracy_worst=float(np.min(accs)),
            cost=device.cost(n_in, n_out),
        )
    if dev.type != "cpu":  # results leave on the CPU, whatever trained them
        student.K_ = student.K_.cpu()
        layer = layer.cpu() if layer is not None else None
    return DistillResult(student, feats, teacher, layer, metrics)


def hardware_accuracy(layer: torch.nn.Module, psi: torch.Tensor, labels: torch.Tensor, draws: int, seed: int) -> list[float]:
    """Test accuracy on ``draws`` seeded hardware instances (deterministic for ``seed``)."""
    accs = []
    layer.eval()
    with torch.no_grad():
        for i in range(draws):
            layer.draw_instance(seed * 100_003 + i)
            accs.append(accuracy(layer(psi), labels))
    layer.clear_instance()
    return accs
