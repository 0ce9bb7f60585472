"""The distillation pipeline: data -> teacher -> features -> student (-> device), one call.

:func:`run_distill` is a pure, seeded function of a :class:`DistillConfig` (plus a
:class:`Workspace` that memoises the expensive, shareable pieces: data sets, teachers and
lifted features). The CLI, the reproduction table, the robustness table and the search all
call it.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import itertools
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from .augment import MAX_COPIES, TRANSFORMS, augmented_features, check_augment, parse_augment
from .data import Dataset, check_dataset_spec, load_dataset
from .devices import create_device, list_devices
from .devices.base import DEFAULT_OPERATING_MODE, DEFAULT_T_INFERENCE_S, OPERATING_MODES
from .devices.digital import DATAPATHS, DEFAULT_HOST_DATAPATH
from .devices.preset_file import read_preset_file
from .devices.verdict import require_device
from .device_lifts import LIFT_PLACEMENTS, dictionary_class, is_device_lift, resolve_lift
from .dictionaries import DEFAULT_DICTIONARY, list_dictionaries, params_by_name
from .errors import ConfigError, ResourceError, check_choice, check_range
from .inference_cost import PCA_PLACEMENTS, inference_cost
from .features import (DISK_FEATURES, FeaturePipeline, Features, build_features, cached_features, dictionary_seed,
                       feature_plan, format_bytes, parse_memory, pca_decomposition)
from .students import AUTO, FitConfig, LinearStudent, accuracy, fit_through_device
from .options import option
from .selection import chooses, resolve_fit, select_kd
from .teachers import ARCHITECTURES, Teacher, check_torch_device, get_teacher, predict_logits
from .units import format_duration, parse_duration

PROTOCOLS = ("posthoc", "aware")


@dataclass(frozen=True)
class DistillConfig:
    """Everything that determines one distillation run (plain values; validated here).

    Attributes:
        dataset: a built-in data set (``digits``, embedded, the default; ``mnist``,
            ``fashion-mnist``; ``wine``, ``breast_cancer``, ``iris``), an installed one,
            ``torchvision:CLASS``, or a path to an ``.npz``, a ``.csv`` (or ``TRAIN.csv,TEST.csv``)
            or an image folder, with ``:KEY=VALUE`` loader options (:mod:`codesign.datasets`).
        data_root: folder with the data files (default ``$CODESIGN_DATA``).
        teacher: built-in architecture, TorchScript file, or ``module:factory``.
        teacher_weights: state dict for a factory teacher.
        teacher_epochs: training epochs for a built-in teacher (None: its default).
        pca_rank: PCA rank r.
        dictionary: a registered dictionary (``codesign.dictionaries.list_dictionaries()``) or,
            with ``lift_placement="device"``, a primitive of the device (``cosine`` or
            ``photonic_mzi.cosine``; stored as ``<device>.<primitive>``).
        dictionary_params: ``{param: value}`` for the dictionary's ``Params`` (missing ones take
            their defaults); a dict is stored as a sorted tuple of pairs.
        fit: how K is fitted (method, temperature, alpha, ...).
        device: device name for hardware evaluation (None: ideal float only).
        device_overrides: ``{field: value}`` applied to the device's default config.
        protocol: ``posthoc`` (train ideal, then map) or ``aware`` (train through the device).
        hw_draws: hardware instances drawn for evaluation.
        seed: seeds the teacher, k-means, minibatches, device noise and hardware draws.
        validation: hold out this share of the training set and report accuracy on it
            (the search's objective); 0 disables.
        max_memory: byte budget for a feature matrix (None: half the RAM).
        disk_features: ``auto`` (lifted features written once to the feature cache and
            memory-mapped when the in-memory fit would exceed ``max_memory``), ``always`` or
            ``never`` (:meth:`codesign.features.FeaturePipeline.plan_memory`).
        cache_dir: cache folder (None: ``$CODESIGN_CACHE`` or ``~/.cache/codesign``).
        torch_device: where teachers train and students are fitted (``cpu`` or ``cuda``).
        device_preset: a named preset of ``device`` (``Device.presets()``), applied before
            ``device_overrides``.
        eval_time_s: time since programming at which hardware instances are evaluated, s
            (an evaluation condition, not a device setting: aihwkit's ``t_inference``).
        lift_placement: ``host`` (the dictionary's arithmetic on the digital host) or ``device``
            (one of the device's nonlinear primitives, :meth:`Device.lifts
            <codesign.devices.base.Device.lifts>`, computed with its noise and priced by it).
    """

    dataset: str = option(
        "digits", "data set: digits, wine, breast_cancer, iris (embedded); mnist, fashion-mnist, torchvision:CLASS "
        "(from --data-root); or a path: FILE.npz, FILE.csv, TRAIN.csv,TEST.csv, an image folder "
        "(options after a colon: data.csv:label=y,test=0.2; see codesign.datasets)", metavar="NAME|PATH")
    data_root: str | None = option(None, "folder with the data files (MNIST IDX files, torchvision sets; "
                                   "relative data set paths are also looked for there)", show_default="$CODESIGN_DATA")
    teacher: str = option("mlp", f"teacher network: a built-in architecture ({', '.join(ARCHITECTURES)}), "
                          "a TorchScript FILE.pt, or module:factory")
    teacher_weights: str | None = option(None, "state dict for a module:factory teacher")
    teacher_epochs: int | None = option(None, "training epochs of a built-in teacher", show_default="per architecture")
    pca_rank: int = option(20, "PCA rank r")
    dictionary: str = option(DEFAULT_DICTIONARY, "dictionary lifting the PCA scores (its parameters have flags of their own)",
                             choices=list_dictionaries)
    dictionary_params: tuple[tuple[str, Any], ...] = ()
    fit: FitConfig = field(default_factory=FitConfig)
    device: str | None = option(None, "device model to evaluate on (see `codesign devices`)", choices=list_devices)
    device_overrides: tuple[tuple[str, Any], ...] = option(
        (), "device config override FIELD=VALUE (repeatable)", key="set", metavar="FIELD=VALUE")
    device_preset: str | None = option(None, "named device preset of a published chip (see `codesign devices`); --set overrides its fields",
                                       key="preset")
    device_preset_file: str | None = option(
        None, "device preset file (written by `codesign calibrate`); instead of --preset; --set overrides its fields",
        key="preset_file", metavar="PATH")
    #: The preset file's overrides and their digest, read once when the config is made (a
    #: config rebuilt from these, in a search's trial, does not read the file again).
    device_preset_file_overrides: tuple[tuple[str, Any], ...] = ()
    device_preset_file_digest: str | None = None
    protocol: str = option("posthoc", "posthoc: train ideal, then map; aware: train through the device", choices=PROTOCOLS)
    hw_draws: int = option(5, "hardware instances drawn for evaluation")
    seed: int = option(0, "seed of every random choice")
    validation: float = option(0.0, "share of the training set held out and scored instead of the test set (0: off)")
    augment: tuple[str, ...] = option(
        (), f"teacher-labelled augmentation of the student's training set: NAME[,NAME] of {', '.join(TRANSFORMS)} "
        "(the teacher labels every copy; codesign.augment)", parse=parse_augment, metavar="NAME[,NAME]")
    augment_copies: int = option(1, "augmented copies of each training image (with --augment)")
    max_memory: int | str | None = option(None, "budget for a feature matrix, e.g. 8G", show_default="half the RAM")
    disk_features: str = option(
        "auto", "where the lifted features live: auto (in memory if the fit fits --max-memory there, else written once "
        "to the feature cache and memory-mapped), always (on disk), never (in memory)", choices=DISK_FEATURES)
    cache_dir: str | None = option(None, "cache folder", show_default="$CODESIGN_CACHE or ~/.cache/codesign")
    torch_device: str = option("cpu", "where teachers train and students are fitted: cpu or cuda[:N]")
    pca_placement: str = option(
        "host", "where the PCA projection runs: host (digital) or device (a second matrix on the device, "
        "noise included)", choices=PCA_PLACEMENTS)
    lift_placement: str = option(
        "host", "where the dictionary lift runs: host (digital arithmetic) or device (one of the device's nonlinear "
        "primitives, named by --dictionary: e.g. photonic_mzi: intensity, cosine; analog_crossbar: relu; "
        "fpga_fixed_point: lut; its noise simulated in every hardware draw and its cost priced by the device)",
        choices=LIFT_PLACEMENTS)
    host_datapath: str = option(
        DEFAULT_HOST_DATAPATH, "number format of the digital host that runs the PCA projection and the lift, simulated "
        "and priced: int8 (pixels, weights, scores and features in int8, int32 accumulation) as an edge host runs "
        "them, or fp16, int32, fp32", choices=tuple(DATAPATHS))
    operating_mode: str = option(
        DEFAULT_OPERATING_MODE, "time base of held (static) power: latency (one inference at a time, held for its whole "
        "latency) or stream (inferences pipelined, held for the initiation interval)", choices=OPERATING_MODES)
    eval_time_s: float = option(
        DEFAULT_T_INFERENCE_S, "time since programming at which the hardware is evaluated, and which hardware-aware "
        "training simulates (the crossbar's train_read_time field can train for a fixed time or a range instead): "
        "seconds or 30s, 1h, 1d, 1y",
        key="eval_time", parse=parse_duration, show_default=format_duration(DEFAULT_T_INFERENCE_S))

    def __post_init__(self) -> None:
        check_dataset_spec(self.dataset)
        check_range("pca_rank", self.pca_rank, 1, None, integer=True)
        check_choice("lift_placement", self.lift_placement, LIFT_PLACEMENTS)
        if self.lift_placement == "device":
            if self.device is None:
                raise ConfigError("lift_placement='device' computes the lift on a device: give --device NAME")
            object.__setattr__(self, "dictionary", resolve_lift(self.device, self.dictionary,
                                                                default_ok=self.dictionary == DEFAULT_DICTIONARY))
        elif is_device_lift(self.dictionary):
            raise ConfigError(f"dictionary {self.dictionary!r} is a device's primitive: give --lift-placement device "
                              "(and its --device), or a host dictionary")
        given = dict(self.dictionary_params)
        params = dictionary_class(self.dictionary).make_params(given)  # validates every value
        object.__setattr__(self, "dictionary_params", tuple(sorted((k, getattr(params, k)) for k in given)))
        check_choice("protocol", self.protocol, PROTOCOLS)
        check_choice("pca_placement", self.pca_placement, PCA_PLACEMENTS)
        check_choice("host_datapath", self.host_datapath, DATAPATHS)
        check_choice("operating_mode", self.operating_mode, OPERATING_MODES)
        if self.pca_placement == "device" and self.device is None:
            raise ConfigError("pca_placement='device' runs the PCA projection on a device: give --device NAME")
        check_range("hw_draws", self.hw_draws, 1, 10_000, integer=True)
        check_range("seed", self.seed, 0, 2**31 - 1, integer=True)
        check_range("validation", self.validation, 0.0, 0.9)
        object.__setattr__(self, "augment", parse_augment(self.augment))
        check_range("augment_copies", self.augment_copies, 1, MAX_COPIES, integer=True)
        if self.augment:
            check_augment(self.augment, self.dataset)
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
        check_choice("disk_features", self.disk_features, DISK_FEATURES)
        object.__setattr__(self, "eval_time_s", parse_duration(self.eval_time_s, "eval_time"))
        if self.device_preset is not None and self.device is None:
            raise ConfigError(f"preset={self.device_preset!r} is a device preset: give --device NAME too")
        if self.device_preset_file is not None:
            if self.device_preset is not None:
                raise ConfigError(f"give --preset or --preset-file, not both (preset={self.device_preset!r}, "
                                  f"preset_file={self.device_preset_file!r})")
            if self.device is None:
                raise ConfigError(f"preset_file={self.device_preset_file!r} is a device preset: give --device NAME too")
            if self.device_preset_file_digest is None:
                pf = read_preset_file(self.device_preset_file, self.device)
                object.__setattr__(self, "device_preset_file_overrides", tuple(sorted(pf.overrides.items())))
                object.__setattr__(self, "device_preset_file_digest", pf.digest)
        elif self.device_preset_file_overrides or self.device_preset_file_digest is not None:
            raise ConfigError("device_preset_file_overrides come from a preset file: give preset_file too")
        if isinstance(self.device_preset_file_overrides, dict):
            object.__setattr__(self, "device_preset_file_overrides", tuple(sorted(self.device_preset_file_overrides.items())))

    def device_config_overrides(self) -> dict[str, Any]:
        """The device's overrides: the preset file's, then ``--set`` (the named preset is applied apart)."""
        return {**dict(self.device_preset_file_overrides), **dict(self.device_overrides)}

    def preset_file_record(self) -> dict[str, Any] | None:
        """What metrics and manifests record of the preset file: its name, overrides digest and overrides."""
        if self.device_preset_file is None:
            return None
        return {"file": Path(self.device_preset_file).name, "digest": self.device_preset_file_digest,
                "overrides": dict(self.device_preset_file_overrides)}

    @property
    def dictionary_kwargs(self) -> dict:
        """Every parameter of the dictionary, defaults filled (``create_dictionary(name, **these)``)."""
        return dataclasses.asdict(dictionary_class(self.dictionary).make_params(dict(self.dictionary_params)))

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["device_overrides"] = dict(self.device_overrides)
        d["device_preset_file_overrides"] = dict(self.device_preset_file_overrides)
        d["dictionary_params"] = dict(self.dictionary_params)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "DistillConfig":
        d = dict(d)
        fit = d.pop("fit", {}) or {}
        known = {f.name for f in dataclasses.fields(cls)}
        # Older configs held each dictionary's size as a top-level key (degree=, centers=), all of
        # them whatever the dictionary: the chosen dictionary's go into dictionary_params, the
        # others' are dropped.
        legacy = {k: d.pop(k) for k in list(d) if k not in known and k in params_by_name()}
        if legacy:
            own = params_by_name([d.get("dictionary", DEFAULT_DICTIONARY)])
            d["dictionary_params"] = {
                **{k: v for k, v in legacy.items() if k in own}, **dict(d.get("dictionary_params") or {}),
            }
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown config key(s) {', '.join(unknown)}; known keys: {', '.join(sorted(known))}")
        fit_known = {f.name for f in dataclasses.fields(FitConfig)}
        bad = sorted(set(fit) - fit_known)
        if bad:
            raise ConfigError(f"unknown fit key(s) {', '.join(bad)}; known keys: {', '.join(sorted(fit_known))}")
        d["device_overrides"] = tuple(sorted((d.get("device_overrides") or {}).items()))
        d["device_preset_file_overrides"] = tuple(sorted((d.get("device_preset_file_overrides") or {}).items()))
        d["dictionary_params"] = tuple(sorted(dict(d.get("dictionary_params") or {}).items()))
        return cls(fit=FitConfig(**fit), **d)


class Workspace:
    """Memoises data sets, teachers and lifted features across runs in one process.

    Args:
        disk_features: also cache lifted features on disk (for searches in several processes). Without
            it, features go through the disk cache only when ``cfg.disk_features`` puts them on
            disk (written once, then memory-mapped: :func:`codesign.features.cached_features`).
        verbose: say on stderr when a teacher is trained (it takes minutes on MNIST), with progress.
    """

    def __init__(self, disk_features: bool = False, verbose: bool = True) -> None:
        self.disk_features = disk_features
        self.verbose = verbose
        self._data: dict = {}
        self._teachers: dict = {}
        self._features: dict = {}
        self._augmented: dict = {}

    def dataset(self, cfg: DistillConfig) -> Dataset:
        key = (cfg.dataset, cfg.data_root, cfg.validation, cfg.seed if cfg.validation else 0)
        if key not in self._data:
            ds = load_dataset(cfg.dataset, cfg.data_root)
            if cfg.validation:
                ds = split_validation(ds, cfg.validation, cfg.seed)
            self._data[key] = ds
        return self._data[key]

    def teacher(self, cfg: DistillConfig, ds: Dataset) -> Teacher:
        key = (ds.fingerprint, cfg.teacher, cfg.teacher_weights, cfg.teacher_epochs, cfg.seed, cfg.validation)
        if key not in self._teachers:
            self._teachers[key] = get_teacher(
                cfg.teacher, ds, seed=cfg.seed, epochs=cfg.teacher_epochs, weights=cfg.teacher_weights,
                cache_dir=cfg.cache_dir, torch_device=cfg.torch_device, verbose=self.verbose,
            )
        return self._teachers[key]

    def features(self, cfg: DistillConfig, ds: Dataset) -> Features:
        params = cfg.dictionary_kwargs
        seed = dictionary_seed(cfg.dictionary, cfg.seed)
        key = (ds.fingerprint, cfg.validation, cfg.pca_rank, cfg.dictionary,
               tuple(sorted(params.items())), seed, cfg.host_datapath)
        if key not in self._features:
            # refused here, before anything is built, if neither path fits --max-memory
            on_disk = feature_plan(cfg.pca_rank, cfg.dictionary, params, len(ds.x_train), len(ds.x_test),
                                   max_memory=cfg.max_memory, disk=cfg.disk_features).disk_backed
            build = cached_features if self.disk_features or on_disk else build_features
            # every rank's PCA from one decomposition of the training set (exactly a fresh fit's)
            kwargs = ({"cache_dir": cfg.cache_dir, "data_key": ds.fingerprint, "disk": cfg.disk_features}
                      if build is cached_features
                      else {"decomposition": pca_decomposition(ds.x_train, disk=False, data_key=ds.fingerprint)})
            self._features[key] = build(
                ds.x_train, ds.x_test, cfg.pca_rank, cfg.dictionary, params,
                seed=seed, max_memory=cfg.max_memory, host_datapath=cfg.host_datapath, **kwargs,
            )
        return self._features[key]

    def student(self, fit: FitConfig, psi: torch.Tensor, labels: torch.Tensor, teacher_logits: torch.Tensor, *,
                n_classes: int, init: torch.Tensor | None = None, gram_cache=None) -> LinearStudent:
        """The float student ``LinearStudent(fit).fit(...)`` (a search workspace reuses identical fits)."""
        return LinearStudent(fit).fit(psi, labels, teacher_logits, n_classes=n_classes, init=init,
                                      gram_cache=gram_cache)


    def augmented(self, cfg: DistillConfig, ds: Dataset, teacher: Teacher, feats: Features):
        """Training rows with ``cfg.augment_copies`` teacher-labelled copies appended (memoised).

        Returns ``(features [(1+copies) N, F], labels [(1+copies) N], teacher logits)``; rows
        ``c N + i`` are copy ``c`` of image ``i`` (copy 0: the original). The copies are lifted
        by the pipeline fitted on the original images, chunk by chunk (``codesign.augment``).
        """
        key = (id(feats), id(teacher), cfg.augment, cfg.augment_copies, cfg.seed)
        hit = self._augmented.get(key)
        if hit is not None and hit[0] is feats and hit[1] is teacher:
            return hit[2]
        self._augmented = {}  # one augmented set at a time: they are the largest arrays here
        if teacher.model is None:
            raise ConfigError(f"augment={','.join(cfg.augment)} needs the teacher's network to label the copies, but "
                              f"teacher {cfg.teacher!r} was cached with its logits only; train it here or drop --augment")
        n = len(ds.y_train)
        total = (1 + cfg.augment_copies) * n
        # the augmented matrix (in memory), the original one (kept by the workspace) and the test features
        feats.pipeline.check_memory(total + (0 if feats.disk_backed else n + len(ds.y_test)))
        aug, y_aug, t_aug = augmented_features(
            ds.x_train, ds.y_train, ds.image_shape, cfg.augment, cfg.augment_copies, cfg.seed,
            label_fn=functools.partial(predict_logits, teacher.model), lift_fn=feats.pipeline.transform, n_features=feats.pipeline.n_features,
            original=(feats.train, teacher.train_logits))
        out = (aug, y_aug, t_aug)
        self._augmented[key] = (feats, teacher, out)
        return out


def check_selection_memory(feats: Features, n_rows: int) -> None:
    """Refuse a validated choice (``auto``) on disk-backed features whose split copies exceed ``--max-memory``.

    :func:`~codesign.selection.select_kd` copies its fit and validation rows (every training
    row, float32) into memory, next to what the disk-backed fit holds.
    """
    plan = feats.memory
    copies = n_rows * feats.pipeline.n_features * 4
    if plan.need + copies > plan.budget:
        raise ResourceError(
            f"--temperature/--alpha/--l2 auto copies the selection split's {n_rows} rows x "
            f"{feats.pipeline.n_features} features into memory ({format_bytes(copies)}) next to the disk-backed fit's "
            f"{format_bytes(plan.need)}, but --max-memory is {format_bytes(plan.budget)}; give the numbers (e.g. "
            "--temperature 2 --alpha 0.9), lower the dictionary's size, or raise --max-memory")


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
        fingerprint="",  # hashed anew: another split is other data
    )


@dataclass
class DistillResult:
    """A fitted student and what was measured (``metrics`` is the JSON the CLI prints)."""

    student: LinearStudent
    features: Features
    teacher: Teacher
    layer: torch.nn.Module | None
    metrics: dict
    #: wall seconds per stage (``data_s``: data set and teacher, ``features_s``, ``fit_s``: the fit and its
    #: scores, ``hw_s``: device layers, hardware draws and cost); kept out of ``metrics``, which are results
    timings: dict = field(default_factory=dict)


def scored_key(cfg: DistillConfig, name: str) -> str:
    """``test_<name>``, or ``val_<name>`` when ``cfg`` scores a validation split."""
    return f"{'val' if cfg.validation else 'test'}_{name}"


def run_distill(cfg: DistillConfig, ws: Workspace | None = None, *, checkpoints: Sequence[int] = (),
                on_checkpoint: Callable[[DistillResult], None] | None = None) -> DistillResult:
    """Run one distillation (and hardware evaluation, if a device is given).

    Args:
        cfg: what to run.
        ws: the workspace to load and cache through (default: a fresh one).
        checkpoints: with ``--protocol aware``, step counts of hardware-aware training at which
            ``on_checkpoint`` receives the result a run of exactly that many steps returns
            (metrics, hardware draws and cost scored as at the end; ``aware_steps`` says the
            steps). The final result is the same with or without checkpoints.
        on_checkpoint: called with each checkpoint's :class:`DistillResult`.
    """
    ws = ws or Workspace()
    t0 = time.perf_counter()
    ds = ws.dataset(cfg)
    if cfg.pca_rank > ds.n_inputs:
        raise ConfigError(
            f"pca_rank={cfg.pca_rank} is larger than the input dimension of {ds.name} "
            f"({ds.n_inputs} {'pixels' if ds.is_image else 'features'}); use pca_rank <= {ds.n_inputs}"
        )
    if cfg.augment and not ds.is_image:
        raise ConfigError(f"augment={','.join(cfg.augment)}: {ds.name} holds vectors, not images; image "
                          "transformations need images (drop --augment, or give the data an image shape)")
    device = None
    if cfg.device is not None:  # validate the device before any expensive work
        device = create_device(cfg.device, cfg.device_config_overrides(), preset=cfg.device_preset)
        require_device(cfg.device, cfg.cache_dir, command="distill")  # the contract, at first use (cached)
    check_torch_device(cfg.torch_device)  # before the teacher: fits run there too
    teacher = ws.teacher(cfg, ds)
    t_data = time.perf_counter()
    feats = ws.features(cfg, ds)
    t_feats = time.perf_counter()
    dev = torch.device(cfg.torch_device)
    psi_train, psi_test = feats.train.to(dev), feats.test.to(dev)
    y_train = torch.from_numpy(ds.y_train).to(dev)
    y_test = torch.from_numpy(ds.y_test).to(dev)
    t_logits = torch.from_numpy(teacher.train_logits).to(dev)
    n_orig = len(ds.y_train)
    gram = feats.gram
    if cfg.augment:
        aug, y_aug, t_aug = ws.augmented(cfg, ds, teacher, feats)
        psi_train, y_train = aug.to(dev), torch.from_numpy(y_aug).to(dev)
        t_logits = torch.from_numpy(t_aug).to(dev)
        gram = None  # another matrix than feats.train: a Gram of its own
    fit_cfg, selection = cfg.fit, None
    if chooses(cfg.fit) and feats.disk_backed:
        check_selection_memory(feats, psi_train.shape[0])
    if chooses(cfg.fit):
        selection = select_kd(psi_train, y_train, t_logits, cfg.fit, n_original=n_orig, seed=cfg.seed,
                              n_classes=ds.n_classes)
        fit_cfg = resolve_fit(cfg.fit, selection)
    elif cfg.fit.auto_fields:  # labels has no T or alpha to choose, naive no L2 either: the numbers are unused
        fit_cfg = dataclasses.replace(cfg.fit, temperature=2.0 if cfg.fit.temperature == AUTO else cfg.fit.temperature,
                                      alpha=0.9 if cfg.fit.alpha == AUTO else cfg.fit.alpha,
                                      l2=None if cfg.fit.l2 == AUTO else cfg.fit.l2)
    # with "auto", the refit on the whole training set is exactly the fit of the chosen numbers
    # (its own warm start, not the grid's K): kd validated = kd at the (T, alpha) chosen, and
    # alpha=0 chosen = labels, to the last digit
    student = ws.student(fit_cfg, psi_train, y_train, t_logits, n_classes=ds.n_classes, gram_cache=gram)
    metrics: dict[str, Any] = {
        "dataset": ds.name,
        "classes": list(ds.classes),  # names by label (a saved student and its export carry them)
        "teacher": cfg.teacher,
        "teacher_test_accuracy": teacher.test_accuracy(ds) if not cfg.validation else None,
        "method": cfg.fit.method,
        "dictionary": feats.pipeline.dictionary.describe(),
        "pca_rank": cfg.pca_rank,
        "seed": cfg.seed,
        "n_features": feats.pipeline.n_features,
        # which split every held-out figure below comes from (``test_*`` only for the test set)
        "scored_on": "validation" if cfg.validation else "test",
        "hw_draws": cfg.hw_draws,
        scored_key(cfg, "accuracy"): student.accuracy(psi_test, y_test),
        "train_accuracy": student.accuracy(psi_train[:n_orig], y_train[:n_orig]),
        # the T and alpha fitted (chosen on a validation split of the training set when "auto");
        # alpha=0 chosen (the labels fit) keeps the T it was chosen with, which it does not use
        "temperature": fit_cfg.temperature if cfg.fit.method == "kd" else None,
        "alpha": fit_cfg.effective_alpha if fit_cfg.method != "naive" else None,
        "l2": fit_cfg.l2 if fit_cfg.method != "naive" else None,
        "kd_selection": None if selection is None else selection.as_dict(),
        "augment": list(cfg.augment),
        "augment_copies": cfg.augment_copies if cfg.augment else 0,
        "train_rows": int(psi_train.shape[0]),
        # where the lifted features lived (in memory, or memory-mapped from the feature cache) and
        # the --max-memory estimate checked for that path
        **(feats.memory.as_dict() if feats.memory is not None else {}),
        "fit_seconds": student.info_.seconds,
        **{k: v for k, v in student.info_.as_dict().items() if k != "seconds"},
    }
    t_fit = time.perf_counter()

    def stage_seconds() -> dict:  # DistillResult.timings, the device stage up to now
        return {"data_s": t_data - t0, "features_s": t_feats - t_data, "fit_s": t_fit - t_feats,
                "hw_s": time.perf_counter() - t_fit}

    layer = None
    if device is not None:
        n_out, n_in = student.K_.shape
        probe_layer(device, student.K_, psi_train[:8], cfg.device)
        layer = device.layer(n_in, n_out).to(dev)
        # the chip is read at --eval-time; hardware-aware training trains for that read (a device
        # may say otherwise: the crossbar's train_read_time='fixed' or 'range')
        layer.set_inference_time(cfg.eval_time_s)
        device_lift = (feats.pipeline.dictionary.device_lift(device) if cfg.lift_placement == "device" else None)
        cost = inference_cost(
            device, n_inputs=ds.n_inputs, rank=cfg.pca_rank, dictionary=feats.pipeline.dictionary,
            n_classes=ds.n_classes, pca_placement=cfg.pca_placement, host_datapath=cfg.host_datapath,
            operating_mode=cfg.operating_mode, device_lift=device_lift)

        def scored(layer_: torch.nn.Module) -> dict:
            """The device metrics of ``layer_`` (programmed or trained): its hardware draws and the cost.

            The PCA layer is built here, at each call, so that a checkpoint builds it from the
            same RNG state as a run that ends there (a device may draw while programming).
            """
            if device_lift is not None:
                pca_layer = pca_device_layer(device, feats.pipeline).to(dev) if cfg.pca_placement == "device" else None
                accs = hardware_accuracy_with_lift(layer_, device_lift.layer(), feats.pipeline, ds.x_test, y_test,
                                                   cfg.hw_draws, cfg.seed, cfg.eval_time_s, pca_layer=pca_layer)
            elif cfg.pca_placement == "device":
                pca_layer = pca_device_layer(device, feats.pipeline).to(dev)
                accs = hardware_accuracy_with_pca(layer_, pca_layer, feats.pipeline, ds.x_test, y_test, cfg.hw_draws,
                                                  cfg.seed, cfg.eval_time_s)
            else:
                accs = hardware_accuracy(layer_, psi_test, y_test, cfg.hw_draws, cfg.seed, cfg.eval_time_s)
            return dict(
                device=cfg.device, device_preset=cfg.device_preset, device_preset_file=cfg.preset_file_record(),
                device_config=dataclasses.asdict(device.config),
                protocol=cfg.protocol, eval_time_s=cfg.eval_time_s, hw_accuracies=accs,
                hw_accuracy_mean=float(np.mean(accs)), hw_accuracy_std=float(np.std(accs)),
                hw_accuracy_worst=float(np.min(accs)), pca_placement=cfg.pca_placement,
                lift_placement=cfg.lift_placement, cost=cost)

        if cfg.protocol == "aware":
            def checkpoint(steps: int, layer_: torch.nn.Module) -> None:
                m = {**metrics, "aware_steps": steps, **scored(layer_)}
                on_checkpoint(_on_cpu(DistillResult(student, feats, teacher, layer_, m, stage_seconds())))

            rows = None
            if device_lift is not None:  # the lift's noise in training too, as K's (fresh per step)
                rows = lift_training_rows(feats.pipeline, device_lift.layer(), ds.x_train, psi_train, n_orig,
                                          cfg.eval_time_s)
                metrics["aware_lift_noise"] = True
            info = fit_through_device(psi_train, y_train, t_logits, layer, student.K_, fit_cfg,
                                      checkpoints=checkpoints, on_checkpoint=checkpoint if on_checkpoint else None,
                                      rows=rows)
            metrics["aware_seconds"] = info.seconds
            metrics["aware_steps"] = info.iterations
        else:
            layer.load_matrix(student.K_)
            calibrate_layer(layer, calibration_rows(psi_train[:n_orig]), cfg.seed)  # ranges from training data
        metrics.update(scored(layer))
    return _on_cpu(DistillResult(student, feats, teacher, layer, metrics, stage_seconds()))


def _on_cpu(result: DistillResult) -> DistillResult:
    """``result`` with its student and layer on the CPU (results leave there, whatever trained them)."""
    layer_on = ({t.device.type for t in itertools.chain(result.layer.parameters(), result.layer.buffers())}
                if result.layer is not None else set())
    if result.student.K_.device.type != "cpu" or layer_on - {"cpu"}:
        student = copy.copy(result.student)
        student.K_ = student.K_.cpu()
        result = dataclasses.replace(result, student=student,
                                     layer=result.layer.cpu() if result.layer is not None else None)
    return result


def check_layer_output(y, batch: int, layer: torch.nn.Module, device_name: str, where: str) -> None:
    """Refuse a device layer's output that breaks the contract: ``[batch, out_features]``, finite.

    A plugin that returns another shape or NaN would otherwise be scored as a chance-level
    student; this names the device instead.
    """
    expected = (batch, layer.out_features)
    shape = tuple(getattr(y, "shape", ()))
    if shape != expected:
        raise ConfigError(
            f"device {device_name!r} returned outputs of shape {list(shape)} {where}; the device contract is "
            f"[batch, out_features] = {list(expected)} (fix the plugin's forward)")
    if not bool(torch.isfinite(y).all()):
        raise ConfigError(f"device {device_name!r} returned non-finite outputs (NaN or Inf) {where}; "
                          "check the plugin's forward and its config")


def probe_layer(device, matrix: torch.Tensor, x: torch.Tensor, device_name: str) -> None:
    """Program a throw-away layer of ``device`` with ``matrix``, run it once in training and once
    in eval mode on ``x``, and check its outputs.

    Throw-away: a forward pass may calibrate state (converter ranges, quantizer statistics) that
    must come from the real data, not from this probe.
    """
    try:
        probe = device.layer(matrix.shape[1], matrix.shape[0]).to(x.device)
        probe.load_matrix(matrix)
    except Exception as exc:  # noqa: BLE001 - a plugin's own error, reported with its name
        raise ConfigError(f"device {device_name!r} failed to build or program a {matrix.shape[0]}x{matrix.shape[1]} "
                          f"layer: {type(exc).__name__}: {exc}") from exc
    for train in (True, False):
        probe.train(train)
        try:
            with torch.no_grad():
                y = probe(x)
        except Exception as exc:  # noqa: BLE001 - a plugin's own error, reported with its name
            raise ConfigError(f"device {device_name!r} failed on a [{x.shape[0]}, {x.shape[1]}] batch "
                              f"({'training' if train else 'eval'} mode): {type(exc).__name__}: {exc}") from exc
        check_layer_output(y, x.shape[0], probe, device_name, f"in {'training' if train else 'eval'} mode")


#: Training rows (evenly strided) on which a layer that was not trained through the device sets
#: its calibrated converter ranges (ADC ranges, ``input_range='calibrated'``) before it is scored.
CALIBRATION_ROWS = 2048


def calibration_rows(x, rows: int = CALIBRATION_ROWS):
    """At most ``rows`` evenly strided rows of ``x`` (a tensor or an array), in their order."""
    n = len(x)
    if n <= rows:
        return x
    idx = np.linspace(0, n - 1, rows).round().astype(np.int64)
    return x[torch.as_tensor(idx, device=x.device)] if isinstance(x, torch.Tensor) else x[idx]


def calibrate_layer(layer: torch.nn.Module, x: torch.Tensor, seed: int = 0) -> None:
    """Set a programmed layer's calibrated converter ranges from training inputs ``x``.

    One forward pass in training mode, without gradients: a calibrated range that has seen no
    data takes this batch's value (:class:`~codesign.devices.base.CalibratedRange`), as the
    first batch of hardware-aware training does. Then the layer is put in eval mode, where the
    ranges are frozen. Without this pass, the first batch a post-hoc layer is evaluated on (the
    test or validation split) would set them. The pass's noise is drawn from ``seed`` in a
    forked RNG: the ranges are reproducible and the caller's random state is left alone.
    """
    layer.train()
    devices = [x.device] if x.device.type == "cuda" else []
    with torch.no_grad(), torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        layer(x)
    layer.eval()


def pca_device_layer(device, pipeline: FeaturePipeline):
    """A ``device`` layer of the PCA projection (``[r, D]``, whitening folded in), programmed."""
    w, _ = pipeline.projection()
    layer = device.layer(w.shape[1], w.shape[0])
    layer.load_matrix(w)
    return layer


#: Added to a draw's seed for the PCA layer's instance, so that it is another chip region than K's.
PCA_SEED_OFFSET = 7_777_777


def hardware_accuracy_with_pca(
    layer: torch.nn.Module,
    pca_layer: torch.nn.Module,
    pipeline: FeaturePipeline,
    x: np.ndarray,
    labels: torch.Tensor,
    draws: int,
    seed: int,
    t_inference_s: float | None = None,
) -> list[float]:
    """Like :func:`hardware_accuracy`, with the PCA projection on the device too.

    For each draw, the raw inputs ``x`` go through the drawn PCA layer, the host adds the mean
    offset and lifts and standardises the scores, and the drawn K layer classifies them.
    """
    _, offset = pipeline.projection()
    dev = labels.device
    xt = torch.as_tensor(x, dtype=torch.float32, device=dev)
    offset = offset.to(dev)
    accs = []
    layer.eval()
    pca_layer.eval()
    with torch.no_grad():
        for i in range(draws):
            s = seed * 100_003 + i
            layer.draw_instance(s, t_inference_s=t_inference_s)
            pca_layer.draw_instance(s + PCA_SEED_OFFSET, t_inference_s=t_inference_s)
            z = pca_layer(xt)
            check_layer_output(z, len(xt), pca_layer, getattr(pca_layer, "device_name", None) or "device",
                               "for the PCA projection")
            psi = pipeline.lift((z + offset).cpu()).to(dev)
            y = layer(psi)
            check_layer_output(y, len(psi), layer, getattr(layer, "device_name", None) or "device", f"on draw {i}")
            accs.append(accuracy(y, labels))
    layer.clear_instance()
    pca_layer.clear_instance()
    return accs


#: Added to a draw's seed for the device lift's instance (another chip region than K's and the PCA's).
LIFT_SEED_OFFSET = 5_555_555


def lift_training_rows(pipeline: FeaturePipeline, lift_layer, x_train: np.ndarray, psi_train: torch.Tensor,
                       n_original: int, t_inference_s: float) -> Callable[[torch.Tensor], torch.Tensor]:
    """Hardware-aware training's features with the lift computed on the device: ``rows(idx)``
    gives rows ``idx`` of the training features, their lift columns from ``lift_layer`` in
    training mode (fresh noise at every call, as a device layer draws it for K in every step;
    its quantisation always), the constant and the scores as the host has them.

    The scores of the ``n_original`` training rows are the host's, from ``x_train``; those of
    augmented copies after them (``--augment``) are read back from their features' score
    columns (un-standardised; the host's format re-applies its rounding in
    :meth:`~codesign.features.FeaturePipeline.lift`).
    """
    z = torch.cat([pipeline._scores(x_train[i : i + 8192]) for i in range(0, len(x_train), 8192)])
    if len(psi_train) > n_original:
        r = z.shape[1]
        copies = psi_train[n_original:, 1 : r + 1].detach().cpu().float()
        z = torch.cat([z, copies * pipeline.std_[1 : r + 1] + pipeline.mean_[1 : r + 1]])
    lift_layer.set_inference_time(t_inference_s)
    lift_layer.train()
    target = psi_train.device

    def rows(idx: torch.Tensor) -> torch.Tensor:
        return pipeline.lift(z[idx.cpu()], lift_layer=lift_layer).to(target)

    return rows


def hardware_accuracy_with_lift(
    layer: torch.nn.Module,
    lift_layer,
    pipeline: FeaturePipeline,
    x: np.ndarray,
    labels: torch.Tensor,
    draws: int,
    seed: int,
    t_inference_s: float | None = None,
    *,
    pca_layer: torch.nn.Module | None = None,
) -> list[float]:
    """Like :func:`hardware_accuracy`, with the dictionary lift computed on the device.

    For each draw, the PCA scores of ``x`` (the host's, or the drawn PCA layer's plus the mean
    offset) go through the drawn lift layer (:class:`~codesign.devices.lifts.LiftLayer`: the
    device's primitive with its noise and quantisation), the host standardises ``[1, z, phi]``
    in its format, and the drawn K layer classifies them.
    """
    dev = labels.device
    accs = []
    layer.eval()
    lift_layer.eval()
    lift_layer.set_inference_time(t_inference_s if t_inference_s is not None else layer.t_inference_s)
    if pca_layer is None:
        z = torch.cat([pipeline._scores(x[i : i + 8192]) for i in range(0, len(x), 8192)])
    else:
        pca_layer.eval()
        _, offset = pipeline.projection()
        xt = torch.as_tensor(x, dtype=torch.float32, device=dev)
    with torch.no_grad():
        for i in range(draws):
            s = seed * 100_003 + i
            layer.draw_instance(s, t_inference_s=t_inference_s)
            lift_layer.draw_instance(s + LIFT_SEED_OFFSET, t_inference_s=t_inference_s)
            if pca_layer is not None:
                pca_layer.draw_instance(s + PCA_SEED_OFFSET, t_inference_s=t_inference_s)
                z = (pca_layer(xt) + offset.to(dev)).cpu()
            psi = pipeline.lift(z, lift_layer=lift_layer).to(dev)
            y = layer(psi)
            check_layer_output(y, len(psi), layer, getattr(layer, "device_name", None) or "device", f"on draw {i}")
            accs.append(accuracy(y, labels))
    layer.clear_instance()
    lift_layer.clear_instance()
    if pca_layer is not None:
        pca_layer.clear_instance()
    return accs


def hardware_accuracy(
    layer: torch.nn.Module,
    psi: torch.Tensor,
    labels: torch.Tensor,
    draws: int,
    seed: int,
    t_inference_s: float | None = None,
) -> list[float]:
    """Test accuracy on ``draws`` seeded hardware instances (deterministic for ``seed``).

    Args:
        layer: a programmed or trained device layer.
        psi: test features ``[n, in]``.
        labels: test labels ``[n]``.
        draws: hardware instances to evaluate.
        seed: seeds the instances (``seed * 100003 + i``).
        t_inference_s: time since programming to read the instances at, s (``draw_instance``);
            None keeps the layer's own (``DEFAULT_T_INFERENCE_S`` unless set).
    """
    accs = []
    layer.eval()
    with torch.no_grad():
        for i in range(draws):
            layer.draw_instance(seed * 100_003 + i, t_inference_s=t_inference_s)
            y = layer(psi)
            check_layer_output(y, len(psi), layer, getattr(layer, "device_name", None) or "device", f"on draw {i}")
            accs.append(accuracy(y, labels))
    layer.clear_instance()
    return accs
