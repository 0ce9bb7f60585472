"""``--gpus-per-trial``: validated, passed to Ray's trial resources, and trials move to cuda.

No GPU is needed: the request is read back from the trainable the runner hands to Tune (its
placement group factory), and the trial's torch device from what ``_trainable`` passes on when
Ray says it got a GPU.
"""

from __future__ import annotations

import math

import pytest

from codesign.cli import main
from codesign.errors import ConfigError
from codesign.search import runner
from codesign.search.config import SearchConfig
from codesign.search.resources import (
    check_cluster_gpus,
    concurrent_trials,
    trial_resources,
    trial_torch_device,
    with_trial_resources,
)


@pytest.mark.parametrize("value", [0, 0.25, 0.5, 1, 2, 8])
def test_gpu_requests_ray_can_schedule_are_accepted(value):
    assert SearchConfig(dataset="digits", gpus_per_trial=value).gpus_per_trial == float(value)


@pytest.mark.parametrize("value, message", [
    (-0.5, "out of range"), (1.5, "use 1 or 2"), (math.nan, "expected a number"), ("1", "expected a number"),
    (True, "expected a number"), (100, "out of range"),
])
def test_gpu_requests_ray_cannot_schedule_are_refused(value, message):
    with pytest.raises(ConfigError, match=message):
        SearchConfig(dataset="digits", gpus_per_trial=value)


def test_cli_refuses_a_bad_request_in_one_line(capsys):
    assert main(["search", "--dataset", "digits", "--gpus-per-trial", "1.5", "--out", "unused"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "gpus_per_trial=1.5" in err


def test_resource_request_reaches_the_placement_group():
    def trainable(config):
        return None

    pgf = with_trial_resources(trainable, 0.25)._resources
    assert pgf.bundles == [{"CPU": 1.0, "GPU": 0.25}]
    assert with_trial_resources(lambda c: None, 0.0)._resources.bundles == [{"CPU": 1.0}]
    assert trial_resources(1) == {"cpu": 1, "gpu": 1.0}


def test_concurrency_is_bounded_by_the_gpus():
    assert concurrent_trials(16, 32, 0.25, {"GPU": 1.0}) == 4  # four quarter-GPU trials on one GPU
    assert concurrent_trials(16, 32, 1, {"GPU": 2.0}) == 2
    assert concurrent_trials(2, 32, 0.0, {}) == 2  # CPU trials: one per CPU
    assert concurrent_trials(16, 3, 0.25, {"GPU": 1.0}) == 3


def test_a_cluster_without_gpus_is_refused_before_trials_wait_forever():
    with pytest.raises(ConfigError, match="has 0 GPU"):
        check_cluster_gpus(0.5, {"CPU": 2.0})
    check_cluster_gpus(0.5, {"CPU": 2.0, "GPU": 1.0})
    check_cluster_gpus(0.0, {"CPU": 2.0})


def test_trial_fits_on_cuda_when_ray_gave_it_a_gpu():
    assert trial_torch_device("cpu", [0]) == "cuda"
    assert trial_torch_device("cpu", []) == "cpu"
    assert trial_torch_device("cuda:1", ["0"]) == "cuda:1"  # an explicit choice is kept


class _Stop(Exception):
    pass


@pytest.mark.slow
def test_search_passes_the_request_to_tune(ray_session, split_teacher, tmp_path, monkeypatch):
    """The runner's trainable carries the GPU share (a cluster with a GPU faked; Tune never runs)."""
    import ray
    from ray import tune

    seen = {}

    class FakeTuner:
        def __init__(self, trainable, tune_config=None, run_config=None):
            seen["bundles"] = trainable._resources.bundles
            seen["concurrent"] = tune_config.max_concurrent_trials
            raise _Stop

    real = ray.cluster_resources
    monkeypatch.setattr(ray, "cluster_resources", lambda: {**real(), "GPU": 1.0})
    monkeypatch.setattr(tune, "Tuner", FakeTuner)
    cfg = SearchConfig(dataset="digits", device="ideal", samples=4, gpus_per_trial=0.5, ranks=(4, 8), hw_draws=1,
                       quiet=True, out=str(tmp_path / "s"))
    with pytest.raises(_Stop):
        runner.run_search(cfg)
    assert seen == {"bundles": [{"CPU": 1.0, "GPU": 0.5}], "concurrent": 2}


def test_trainable_moves_the_trial_to_cuda(monkeypatch, tmp_path):
    """``_trainable`` under Ray with a GPU id: the trial's DistillConfig asks for cuda."""
    import ray
    from ray import tune

    got = {}

    class Ctx:
        def get_trial_id(self):
            return "t0"

    monkeypatch.setattr(tune, "get_context", lambda: Ctx())
    monkeypatch.setattr(tune, "report", lambda m: None)
    monkeypatch.setattr(ray, "get_gpu_ids", lambda: [0])
    monkeypatch.setattr(ray, "get_runtime_context", lambda: type("R", (), {"get_node_id": lambda self: "n"})())

    def fake_run_trial(config, base, cost, **kw):
        got["device"] = base.torch_device
        return {"hw_accuracy": 1.0}, None

    monkeypatch.setattr(runner, "run_trial", fake_run_trial)
    base = SearchConfig(dataset="digits").trial_base()
    runner._trainable({}, base, "energy_pj", str(tmp_path))
    assert got["device"] == "cuda"
    monkeypatch.setattr(ray, "get_gpu_ids", lambda: [])
    runner._trainable({}, base, "energy_pj", str(tmp_path))
    assert got["device"] == "cpu"
