"""What each trial of a search asks Ray for: one CPU, and with ``--gpus-per-trial`` a GPU share.

Ray schedules a trial only where its request fits (``tune.with_resources``): with
``--gpus-per-trial 0.25`` four trials share one GPU, with ``1`` each has its own. Ray then sets
``CUDA_VISIBLE_DEVICES`` in the trial's worker, so ``ray.get_gpu_ids()`` is non-empty there and
:func:`trial_torch_device` moves the trial's fit and its device evaluation to ``cuda``.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

from codesign.errors import ConfigError

#: the most GPUs one trial may ask for (a sanity bound: one node rarely has more)
MAX_GPUS_PER_TRIAL = 64


def check_gpus_per_trial(value: Any) -> None:
    """Refuse what Ray cannot schedule: negative, not finite, or above 1 but not whole.

    Ray gives fractions of a single GPU only (0.5 = two trials on one GPU); a trial needing more
    than one GPU gets whole GPUs.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"gpus_per_trial={value!r}: expected a number of GPUs, e.g. 1, or 0.25 to share one GPU "
                          "between four trials")
    if value < 0 or value > MAX_GPUS_PER_TRIAL:
        raise ConfigError(f"gpus_per_trial={value!r} is out of range: allowed [0, {MAX_GPUS_PER_TRIAL}] "
                          "(0: CPU only)")
    if value > 1 and value != int(value):
        raise ConfigError(f"gpus_per_trial={value!r}: Ray shares one GPU between trials (a fraction below 1) or "
                          f"gives whole GPUs; use {math.floor(value)} or {math.ceil(value)}")


def trial_resources(gpus_per_trial: float = 0.0, cpus_per_trial: int = 1) -> dict[str, float]:
    """The resource request of one trial, as ``tune.with_resources`` takes it."""
    check_gpus_per_trial(gpus_per_trial)
    request: dict[str, float] = {"cpu": cpus_per_trial}
    if gpus_per_trial > 0:
        request["gpu"] = float(gpus_per_trial)
    return request


def with_trial_resources(trainable: Any, gpus_per_trial: float = 0.0) -> Any:
    """``trainable`` wrapped with :func:`trial_resources` (``tune.with_resources``)."""
    from ray import tune

    return tune.with_resources(trainable, trial_resources(gpus_per_trial))


def check_cluster_gpus(gpus_per_trial: float, cluster: Mapping[str, float]) -> None:
    """Refuse a GPU request the Ray cluster can never meet (its trials would wait forever)."""
    have = float(cluster.get("GPU", 0.0))
    if gpus_per_trial > 0 and have < gpus_per_trial:
        raise ConfigError(f"--gpus-per-trial {gpus_per_trial:g}: the Ray cluster has {have:g} GPU(s), so no trial "
                          "could start; leave --gpus-per-trial out (CPU trials) or run on a machine or cluster with GPUs")


def concurrent_trials(cpus: int, remaining: int, gpus_per_trial: float, cluster: Mapping[str, float]) -> int:
    """Trials run at once: one per CPU, and no more than the GPUs hold at ``gpus_per_trial`` each."""
    n = min(cpus, remaining)
    if gpus_per_trial > 0:
        n = min(n, max(1, int(math.floor(float(cluster.get("GPU", 0.0)) / gpus_per_trial + 1e-9))))
    return max(1, n)


def trial_torch_device(requested: str, gpu_ids: Sequence[Any]) -> str:
    """The torch device a trial fits on: ``cuda`` when Ray gave it a GPU and the search asked for
    the default ``cpu``; else what was asked (an explicit ``--torch-device cuda:N`` is kept)."""
    if gpu_ids and requested == "cpu":
        return "cuda"
    return requested


__all__ = ["MAX_GPUS_PER_TRIAL", "check_cluster_gpus", "check_gpus_per_trial", "concurrent_trials", "trial_resources",
           "trial_torch_device", "with_trial_resources"]
