"""Saving and reloading a student with everything it needs to score new inputs.

A saved student is one file holding K, the fitted feature pipeline (PCA, dictionary,
standardisation), the run's config and metrics, and, where a device was used, the device's
name, config and the trained layer's state. :func:`load_student` rebuilds it in one call.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from .cache import atomic_torch_save
from .devices import get_device_class
from .distill import hardware_accuracy, hardware_accuracy_with_pca, hardware_accuracy_with_lift, pca_device_layer
from .errors import ConfigError
from .features import FeaturePipeline
from .plainstate import join_arrays, split_arrays

FORMAT = "codesign-student/2"
#: Students saved before the safe format: a pickled dict, loadable only when trusted.
OLD_FORMATS = ("codesign-student/1",)


def _payload(result) -> dict[str, Any]:
    m = result.metrics
    return {
        "K": result.student.K_,
        "pipeline": result.features.pipeline.state_dict(),
        "metrics": {k: v for k, v in m.items() if k != "hw_accuracies"},
        "device": m.get("device"),
        "device_config": m.get("device_config"),
        "layer_state": None if result.layer is None else {k: v.detach().cpu() for k, v in result.layer.state_dict().items()},
    }


def _write(path: str | Path, payload: Mapping[str, Any]) -> None:
    text, arrays = split_arrays(dict(payload))
    atomic_torch_save(path, {"format": FORMAT, "state": text,
                             "arrays": {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}})


def save_student(path: str | Path, result) -> None:
    """Save a :class:`codesign.distill.DistillResult` to ``path`` (atomically).

    The file holds tensors and a JSON text only (:mod:`codesign.plainstate`), so that
    :func:`load_student` reads it with ``torch.load(weights_only=True)``: a student from a
    colleague cannot run code when it is loaded.
    """
    _write(path, _payload(result))


def update_metrics(path: str | Path, **metrics: Any) -> None:
    """Add ``metrics`` to a saved student's metrics (e.g. its test-set scores), atomically."""
    payload = _read(Path(path))
    payload["metrics"] = {**payload["metrics"], **metrics}
    _write(path, payload)


def _read(p: Path, trust_old_format: bool = False) -> dict[str, Any]:
    if not p.is_file():
        raise ConfigError(f"no saved student at {p}")
    try:
        raw = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same one-line error
        if trust_old_format:
            raw = torch.load(p, map_location="cpu", weights_only=False)
        else:
            hint = ("it may be a student saved before the safe format (codesign-student/1): if you made it "
                    "yourself, convert it once with codesign.artifacts.upgrade_student(path, trust_old_format=True)")
            raise ConfigError(f"{p} is not a safe codesign student file ({type(exc).__name__}); {hint}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{p} is not a saved codesign student")
    if raw.get("format") in OLD_FORMATS:
        if not trust_old_format:
            raise ConfigError(f"{p} is in the old format {raw['format']}; convert it with "
                              "codesign.artifacts.upgrade_student(path, trust_old_format=True) if you trust it")
        payload = {k: raw.get(k) for k in ("K", "pipeline", "metrics", "device", "device_config", "layer_state")}
        payload["K"] = torch.as_tensor(payload["K"])
        return payload
    if raw.get("format") != FORMAT or not isinstance(raw.get("state"), str) or not isinstance(raw.get("arrays"), dict):
        raise ConfigError(f"{p} is not a saved codesign student (format {raw.get('format')!r}, expected {FORMAT})")
    payload = join_arrays(raw["state"], raw["arrays"])
    if not isinstance(payload, dict) or not {"K", "pipeline", "metrics"} <= set(payload):
        raise ConfigError(f"{p} is a damaged codesign student (its state lacks K, pipeline or metrics)")
    return payload


def upgrade_student(path: str | Path, trust_old_format: bool = False) -> Path:
    """Rewrite a student saved before the safe format in the safe format (in place).

    Reading the old format unpickles it, which can run code: only do this for files you made,
    and say so with ``trust_old_format=True``.
    """
    p = Path(path)
    if not trust_old_format:
        raise ConfigError("upgrade_student reads a pickle: pass trust_old_format=True for a file you trust")
    _write(p, _read(p, trust_old_format=True))
    return p


@dataclass
class SavedStudent:
    """A reloaded student: ``logits(x)`` on raw inputs, optionally through its device."""

    K: torch.Tensor
    pipeline: FeaturePipeline
    metrics: dict
    device_name: str | None
    device_config: dict | None
    layer_state: dict | None

    def features(self, x: np.ndarray) -> torch.Tensor:
        return self.pipeline.transform(np.asarray(x, dtype=np.float32))

    def logits(self, x: np.ndarray) -> torch.Tensor:
        """Ideal (float) logits of raw inputs ``x`` (``[n, n_inputs]`` in [0, 1])."""
        return self.features(x) @ self.K.T

    def accuracy(self, x: np.ndarray, y: np.ndarray) -> float:
        return float((self.logits(x).argmax(1).numpy() == np.asarray(y)).mean())

    def device(self):
        """The device the student was saved with, its config read through ``Config.from_dict``."""
        cls = get_device_class(self.device_name)
        return cls(cls.Config.from_dict(dict(self.device_config or {})))

    def device_layer(self, t_inference_s: float | None = None):
        """The device layer as trained/programmed (None if no device was used).

        Configs saved before device API v2 are read through the device's
        ``Config.from_dict`` (renamed fields mapped: the crossbar's ``drift_time_s`` becomes
        ``train_drift_time_s``); their layer states carry no device name and config, which is
        accepted.

        Args:
            t_inference_s: time since programming the layer is read at, s. None: the
                ``drift_time_s`` a pre-v2 crossbar student was evaluated at, if it has one, else
                the layer's default (``DEFAULT_T_INFERENCE_S``).
        """
        if self.device_name is None:
            return None
        saved = dict(self.device_config or {})
        dev = self.device()
        layer = dev.layer(self.K.shape[1], self.K.shape[0])
        layer.load_matrix(self.K)
        if self.layer_state is not None:
            layer.load_state_dict(self.layer_state)
        if t_inference_s is None and "drift_time_s" in saved:  # pre-v2: evaluated at that time
            t_inference_s = saved["drift_time_s"]
        if t_inference_s is not None:
            layer.set_inference_time(t_inference_s)
        return layer.eval()

    def hw_accuracy(
        self, x: np.ndarray, y: np.ndarray, draws: int, seed: int, t_inference_s: float | None = None
    ) -> list[float]:
        """Accuracy over ``draws`` seeded hardware instances, as :func:`run_distill` measures it.

        Args:
            x: raw inputs ``[n, n_inputs]``.
            y: labels ``[n]``.
            draws: hardware instances.
            seed: seeds the instances.
            t_inference_s: time since programming to read them at, s (see :meth:`device_layer`).
        """
        layer = self.device_layer(t_inference_s)
        labels = torch.as_tensor(np.asarray(y))
        if self.metrics.get("lift_placement") == "device":  # the lift ran on the device, with its noise
            pca_layer = None
            if self.metrics.get("pca_placement") == "device":
                pca_layer = pca_device_layer(self.device(), self.pipeline)
                pca_layer.set_inference_time(layer.t_inference_s)
            lift_layer = self.pipeline.dictionary.device_lift(self.device()).layer()
            return hardware_accuracy_with_lift(layer, lift_layer, self.pipeline, np.asarray(x, dtype=np.float32),
                                               labels, draws, seed, layer.t_inference_s, pca_layer=pca_layer)
        if self.metrics.get("pca_placement") == "device":  # the projection ran on the device too
            pca_layer = pca_device_layer(self.device(), self.pipeline)
            pca_layer.set_inference_time(layer.t_inference_s)
            return hardware_accuracy_with_pca(layer, pca_layer, self.pipeline, np.asarray(x, dtype=np.float32),
                                              labels, draws, seed)
        return hardware_accuracy(layer, self.features(x), labels, draws, seed)


def load_student(path: str | Path) -> SavedStudent:
    """Reload a student saved by :func:`save_student` (nothing in the file is executed).

    Raises:
        ConfigError: the file is missing, damaged, not a codesign student, or in the old
            pickled format (see :func:`upgrade_student`).
    """
    p = Path(path)
    payload = _read(p)
    try:
        return SavedStudent(
            torch.as_tensor(payload["K"]), FeaturePipeline.from_state_dict(payload["pipeline"]), payload["metrics"],
            payload.get("device"), payload.get("device_config"), payload.get("layer_state"),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"{p} is a damaged codesign student ({type(exc).__name__}: {exc})") from None
