"""The settings of one co-design search: a typed, validated :class:`SearchConfig`.

Options a search shares with ``codesign distill`` (data, teacher, device, protocol, ...) are
declared once, on :class:`~codesign.distill.DistillConfig` and
:class:`~codesign.students.FitConfig`, and reused here with :func:`~codesign.options.same_as`:
the same default, help and choices, so the two commands cannot drift apart. Where the search's
default differs on purpose (it needs a device and a validation split), the field says so.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

from codesign.device_lifts import LIFT_PLACEMENTS, device_lift_names, is_device_lift, resolve_lift
from codesign.dictionaries import list_dictionaries
from codesign.distill import DistillConfig
from codesign.errors import ConfigError, check_choice, check_range
from codesign.inference_cost import PCA_PLACEMENTS
from codesign.options import option, option_fields, option_key, same_as
from codesign.students import FitConfig
from codesign.units import parse_duration

from .asha import rung_steps
from .resources import check_gpus_per_trial

#: ``--cost`` short names -> keys of the whole-inference cost (see :mod:`codesign.inference_cost`).
COST_ALIASES = {"energy": "energy_pj", "latency": "latency_ns", "area": "area_mm2", "power": "power_mw"}


#: ``--sampler`` choices: Optuna samplers that handle two objectives (see :func:`make_sampler`).
SAMPLERS = ("tpe", "nsga2", "random")
#: ``--scheduler`` choices (see :mod:`codesign.search.asha`).
SCHEDULERS = ("auto", "fifo", "asha")
#: ``--tracker`` choices (see :mod:`codesign.search.tracking`).
TRACKERS = ("mlflow",)


def resolve_scheduler(scheduler: str | None, protocol: str | None, aware_steps: int, eta: int, min_steps: int) -> str:
    """``fifo`` or ``asha``: ``auto`` (and a missing value, ``fifo``) resolved.

    ``auto`` is asha when trials train through the device (``protocol="aware"``) for long enough
    that a rung of at least ``min_steps`` fits below the end (``aware_steps / eta``), else fifo.
    """
    if scheduler != "auto":
        return scheduler or "fifo"
    return "asha" if protocol == "aware" and round(aware_steps / eta) >= min_steps else "fifo"


def cost_key(name: str) -> str:
    """The cost-dict key for ``--cost`` (``energy`` -> ``energy_pj``; other keys pass through)."""
    return COST_ALIASES.get(name, name)


def _distill(name: str, **changes: Any) -> Any:
    return same_as(DistillConfig, name, **changes)


@dataclass(frozen=True)
class SearchConfig:
    """Everything ``codesign search`` takes (see ``codesign search --help`` for each option)."""

    dataset: str = _distill("dataset")
    data_root: str | None = _distill("data_root")
    cache_dir: str | None = _distill("cache_dir")
    torch_device: str = _distill("torch_device")
    teacher: str = _distill("teacher")
    teacher_weights: str | None = _distill("teacher_weights")
    teacher_epochs: int | None = _distill("teacher_epochs")
    seed: int = _distill("seed")
    max_memory: str | int | None = _distill("max_memory")
    device: str = _distill("device", default="ideal", help="device to co-design for (see `codesign devices`)")
    device_overrides: tuple[tuple[str, Any], ...] = _distill(
        "device_overrides", help="pin a device field (left out of the search; repeatable)")
    device_preset: str | None = _distill("device_preset")
    device_preset_file: str | None = _distill("device_preset_file")
    #: The preset file's overrides and digest, read once (as DistillConfig's; trials carry them).
    device_preset_file_overrides: tuple[tuple[str, Any], ...] = ()
    device_preset_file_digest: str | None = None
    eval_time_s: float = _distill("eval_time_s")
    samples: int = option(16, "trials in the search")
    sampler: str = option(
        "tpe", "how trials are chosen: tpe (Optuna's multi-objective TPE), nsga2 (NSGA-II) or random; "
               "experiments/bench_search.py compares them", choices=SAMPLERS)
    sampler_seed: int | None = option(None, "seed of the sampler alone (data, teacher, fits and hardware draws "
                                            "keep --seed)", show_default="--seed")
    scheduler: str = option(
        "auto", "how long trials train: fifo (every trial to the end), asha (--protocol aware only: multi-objective "
                "successive halving over the aware steps; at each rung a trial goes on only while among the best "
                "1/--asha-eta there) or auto (asha for --protocol aware, fifo otherwise; "
                "experiments/bench_asha_live.py measured it)", choices=SCHEDULERS)
    asha_eta: int = option(2, "--scheduler asha: keep the best 1/ETA at each rung; rungs at aware steps / ETA^k",
                           metavar="ETA")
    asha_min_steps: int = option(25, "--scheduler asha: the first rung's aware steps (the fewest a trial trains)",
                                 metavar="STEPS")
    cost: str = option("energy", "cost objective: energy (energy_pj), latency (latency_ns), area (area_mm2), "
                                 "or any key of the device's cost model")
    protocol: str = _distill("protocol")
    method: str = same_as(FitConfig, "method")
    aware_steps: int = same_as(FitConfig, "aware_steps")
    hw_draws: int = _distill("hw_draws", help="hardware instances per accuracy estimate")
    validation: float = _distill(
        "validation", default=0.1, help="share of the training set held out as the search's validation split")
    dictionaries: tuple[str, ...] = option(
        (), "dictionary families searched", choices=list_dictionaries, show_default="every installed dictionary")
    space: tuple[str, ...] = option(
        (), "narrow a dictionary parameter's range: PARAM=A,B,C (choices), PARAM=LOW:HIGH (range) or PARAM=VALUE "
            "(repeatable)", metavar="PARAM=SPEC", show_default="each dictionary's own search_space()")
    pca_placements: tuple[str, ...] = option(
        ("host",), "where the PCA projection may run: host, device, or both (then a search dimension)",
        choices=PCA_PLACEMENTS, key="pca_placement")
    lift_placements: tuple[str, ...] = option(
        ("host",), "where the dictionary lift may run: host, device (the device's nonlinear primitives), or both (then a "
        "search dimension: the search picks among the host dictionaries and the device's primitives)",
        choices=LIFT_PLACEMENTS, key="lift_placement")
    host_datapath: str = _distill("host_datapath")
    operating_mode: str = _distill("operating_mode")
    search_kd: bool = option(
        False, "also search the distillation temperature and weight (kd/temperature in auto, 1, 2, 4; kd/alpha in "
               "auto, 0, 0.5, 0.9; auto: chosen on a validation split inside the trial, 5-15x a fit); method kd only")
    ranks: tuple[int, int] = option((2, 40), "PCA rank range (capped by the input dimension and --max-memory)",
                                    metavar=("MIN", "MAX"))
    max_cost: float | None = option(None, "hard limit on the cost: trials above it are recorded but kept off the front "
                                          "(under --scheduler asha they stop at the first rung)")
    min_accuracy: float | None = option(
        None, "hard limit on hardware accuracy (0-1): trials below it are kept off the front")
    cpus: int | None = option(None, "CPUs (= concurrent trials) to use", show_default="all local CPUs / the cluster's")
    address: str | None = option(None, "Ray cluster to run on (auto, or host:port)", show_default="$RAY_ADDRESS, else a local Ray")
    resume: bool = option(False, "continue the search in --out (finished trials are kept)")
    out: str | None = option(None, "results folder (required)")
    storage: str | None = option(
        None, "Optuna storage the search's study is written to: a SQLAlchemy URL (sqlite:///f.db, "
              "postgresql://...) or a SQLite file path; rewritten from trials.jsonl after every run",
        metavar="URL", show_default="sqlite:///OUT/study.db")
    study_name: str = option("codesign", "name of the Optuna study in --storage", metavar="NAME")
    quiet: bool = option(False, "no per-trial lines or progress bar")
    gpus_per_trial: float = option(
        0.0, "GPUs Ray gives each trial (fractions share one GPU: 0.25 runs four trials on it); a trial that got "
             "one fits and evaluates its student on cuda", metavar="N", show_default="0, CPU only")
    tracker: str | None = option(
        None, "experiment tracker each trial and the front are logged to: mlflow (extra: pip install -e "
              "'.[mlflow]')", choices=TRACKERS)
    tracking_uri: str | None = option(
        None, "--tracker mlflow: where runs are logged (a tracking server http://host:5000, a database "
              "sqlite:///f.db, or a path: PATH.db or PATH/mlflow.db, a local SQLite store)", metavar="URI",
        show_default="OUT/mlflow.db, a local store in the search folder")
    tracking_experiment: str | None = option(
        None, "--tracker mlflow: the experiment the runs go into", metavar="NAME", show_default="the --out folder's name")

    def __post_init__(self) -> None:
        for name in ("dictionaries", "space", "pca_placements"):
            value = getattr(self, name)
            if isinstance(value, str):
                value = (value,)
            object.__setattr__(self, name, tuple(value or ()))
        if isinstance(self.device_overrides, Mapping):
            object.__setattr__(self, "device_overrides", tuple(sorted(self.device_overrides.items())))
        object.__setattr__(self, "ranks", tuple(int(r) for r in self.ranks))
        if len(self.ranks) != 2:
            raise ConfigError(f"ranks={list(self.ranks)}: expected two integers MIN MAX")
        object.__setattr__(self, "eval_time_s", parse_duration(self.eval_time_s, "eval_time"))
        check_range("samples", self.samples, 1, 1_000_000, integer=True)
        check_choice("sampler", self.sampler, SAMPLERS)
        if self.sampler_seed is not None:
            check_range("sampler_seed", self.sampler_seed, 0, 2**31 - 1, integer=True)
        if not 0 < self.validation < 0.9:
            raise ConfigError(f"validation={self.validation}: the search needs a validation split in (0, 0.9)")
        if self.max_cost is not None:
            check_range("max_cost", self.max_cost, 0.0, None)
            object.__setattr__(self, "max_cost", float(self.max_cost))
        if self.min_accuracy is not None:
            v = self.min_accuracy
            if isinstance(v, (int, float)) and not isinstance(v, bool) and 1 < v <= 100:  # a percentage
                raise ConfigError(f"min_accuracy={v!r} is out of range: allowed [0, 1], a share of correct answers "
                                  f"(for {v:g}% write {v / 100:g})")
            check_range("min_accuracy", v, 0.0, 1.0)
            object.__setattr__(self, "min_accuracy", float(v))
        if not isinstance(self.study_name, str) or not self.study_name.strip():
            raise ConfigError(f"study_name={self.study_name!r}: give a non-empty name")
        if self.storage is not None and (not isinstance(self.storage, str) or not self.storage.strip()):
            raise ConfigError(f"storage={self.storage!r}: give a SQLAlchemy URL or a file path")
        if self.cpus is not None:
            check_range("cpus", self.cpus, 1, 1 << 16, integer=True)
        check_gpus_per_trial(self.gpus_per_trial)
        object.__setattr__(self, "gpus_per_trial", float(self.gpus_per_trial))
        if self.tracker is not None:
            check_choice("tracker", self.tracker, TRACKERS)
        elif self.tracking_uri is not None or self.tracking_experiment is not None:
            raise ConfigError("tracking_uri and tracking_experiment apply to a tracker; add --tracker mlflow")
        for name in ("tracking_uri", "tracking_experiment"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, str) or not v.strip()):
                raise ConfigError(f"{name}={v!r}: give a non-empty string or leave it out")
        check_choice("scheduler", self.scheduler, SCHEDULERS)
        check_range("asha_eta", self.asha_eta, 2, 64, integer=True)
        check_range("asha_min_steps", self.asha_min_steps, 1, None, integer=True)
        check_range("aware_steps", self.aware_steps, 0, None, integer=True)
        if self.resolved_scheduler == "asha":
            if self.protocol != "aware":
                raise ConfigError(f"scheduler='asha' cuts hardware-aware training short, and "
                                  f"protocol={self.protocol!r} trials have none (their K is programmed after the float "
                                  "fit); use --protocol aware, or --scheduler fifo")
            self.rungs  # noqa: B018 - validates asha_min_steps and asha_eta against the aware steps
        if self.search_kd and self.method != "kd":
            raise ConfigError(f"search_kd needs method='kd' (got {self.method!r}): the temperature and weight "
                              "are those of distillation; drop --search-kd or use --method kd")
        if not self.pca_placements:
            raise ConfigError(f"pca_placement: give at least one of {', '.join(PCA_PLACEMENTS)}")
        for p in self.pca_placements:
            check_choice("pca_placement", p, PCA_PLACEMENTS)
        object.__setattr__(self, "pca_placements", tuple(dict.fromkeys(self.pca_placements)))
        if not self.lift_placements:
            raise ConfigError(f"lift_placement: give at least one of {', '.join(LIFT_PLACEMENTS)}")
        for p in self.lift_placements:
            check_choice("lift_placement", p, LIFT_PLACEMENTS)
        object.__setattr__(self, "lift_placements", tuple(dict.fromkeys(self.lift_placements)))
        if "device" in self.lift_placements:
            resolve_lift(self.device, "", default_ok=True)  # one line for a device without primitives
        known = list_dictionaries()
        for d in self.dictionaries:
            if d in known and not is_device_lift(d):
                continue
            if "device" not in self.lift_placements:
                raise ConfigError(f"dictionaries: unknown dictionary {d!r}; installed: {', '.join(known)}"
                                  + (" (a device's primitive needs --lift-placement device)" if is_device_lift(d) else ""))
            resolve_lift(self.device, d)  # a primitive the device does not compute: one line
        base = self.trial_base()  # validates the options shared with distill (dataset, protocol, seed...) up front
        if self.device_preset_file is not None and self.device_preset_file_digest is None:  # read once
            object.__setattr__(self, "device_preset_file_overrides", base.device_preset_file_overrides)
            object.__setattr__(self, "device_preset_file_digest", base.device_preset_file_digest)

    @property
    def cost_key(self) -> str:
        """The cost-dict key of ``cost`` (``energy`` -> ``energy_pj``; other keys pass through)."""
        return cost_key(self.cost)

    @property
    def resolved_scheduler(self) -> str:
        """``fifo`` or ``asha`` (``auto``: asha when trials train through the device, ``--protocol aware``,
        for long enough that a rung of at least ``asha_min_steps`` fits below the end)."""
        return resolve_scheduler(self.scheduler, self.protocol, self.aware_steps, self.asha_eta, self.asha_min_steps)

    @property
    def rungs(self) -> list[int]:
        """Aware steps at which ``--scheduler asha`` judges trials (none with ``fifo``)."""
        if self.resolved_scheduler != "asha":
            return []
        return rung_steps(self.aware_steps, self.asha_eta, self.asha_min_steps)

    @property
    def searched_dictionaries(self) -> tuple[str, ...]:
        """The dictionary families searched: with host lifting, the host dictionaries named (every
        installed one when none is named); with device lifting, the device's primitives named
        (``<device>.<primitive>``; every one it declares when none is named)."""
        known = list_dictionaries()
        host = [d for d in self.dictionaries if d in known and not is_device_lift(d)]
        named = [resolve_lift(self.device, d) for d in self.dictionaries if d not in host]
        out: list[str] = []
        if "host" in self.lift_placements:
            out += host if self.dictionaries else known
        if "device" in self.lift_placements:
            out += named or device_lift_names(self.device)
        return tuple(dict.fromkeys(out))

    def options(self) -> dict[str, Any]:
        """``{option key: value}``: what ``config.toml`` and ``search.json`` record."""
        out = {}
        for f, opt in option_fields(type(self)):
            value = getattr(self, f.name)
            if f.name == "device_overrides":
                value = dict(value)
            elif isinstance(value, tuple):
                value = list(value)
            out[option_key(f, opt)] = value
        return out

    @classmethod
    def from_options(cls, values: Mapping[str, Any]) -> "SearchConfig":
        """The inverse of :meth:`options` (keys as in config files; unknown keys are errors)."""
        by_key = {option_key(f, o): f.name for f, o in option_fields(cls)}
        unknown = sorted(set(values) - set(by_key))
        if unknown:
            raise ConfigError(f"search: unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(by_key))}")
        return cls(**{by_key[k]: v for k, v in values.items()})

    def trial_base(self) -> DistillConfig:
        """The :class:`DistillConfig` every trial starts from; a trial sets the dictionary, its
        parameters, the PCA rank and the searched device fields."""
        return DistillConfig(
            dataset=self.dataset, data_root=self.data_root, teacher=self.teacher,
            teacher_weights=self.teacher_weights, teacher_epochs=self.teacher_epochs,
            dictionary=self.searched_dictionaries[0], pca_rank=1,
            fit=FitConfig(method=self.method, seed=self.seed, aware_steps=self.aware_steps), device=self.device,
            device_overrides=self.device_overrides, device_preset=self.device_preset,
            device_preset_file=self.device_preset_file,
            device_preset_file_overrides=self.device_preset_file_overrides,
            device_preset_file_digest=self.device_preset_file_digest, protocol=self.protocol,
            hw_draws=self.hw_draws, seed=self.seed, validation=self.validation, max_memory=self.max_memory,
            cache_dir=self.cache_dir, torch_device=self.torch_device, eval_time_s=self.eval_time_s,
            pca_placement=self.pca_placements[0], host_datapath=self.host_datapath,
            operating_mode=self.operating_mode,
            lift_placement="device" if is_device_lift(self.searched_dictionaries[0]) else "host",
        )

    def replace(self, **changes: Any) -> "SearchConfig":
        """A validated copy with ``changes``."""
        return dataclasses.replace(self, **changes)
