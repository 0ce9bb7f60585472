"""Files researchers share never run code or reach outside their folder; broken plugins are named.

Each crafted payload, if it were unpickled or imported, would create a marker file; the tests
assert the marker never appears and the load fails (or rebuilds) with a one-line error.
"""

from __future__ import annotations

import json
import math
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch

from codesign.artifacts import load_student, save_student, upgrade_student
from codesign.devices.registry import REGISTRY as DEVICES
from codesign.devices.base import Device, DeviceConfig, DeviceLayer
from codesign.distill import DistillConfig, Workspace, run_distill
from codesign.errors import ConfigError, ResourceError
from codesign.features import FeaturePipeline, cached_features, fit_memory, parse_memory
from codesign.dictionaries import create_dictionary
from codesign.search import outputs, runner


class _Boom:
    """Unpickling this creates the file ``path``: proof that code ran."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _pickled(marker: Path) -> bytes:
    return pickle.dumps({"format": "codesign-student/2", "payload": _Boom(marker)})


# --------------------------------------------------------------------------- students
def test_a_crafted_student_runs_nothing(tmp_path):
    marker = tmp_path / "ran"
    evil = tmp_path / "student.pt"
    torch.save({"format": "codesign-student/1", "K": _Boom(marker)}, evil)
    with pytest.raises(ConfigError, match="not a safe codesign student file"):
        load_student(evil)
    assert not marker.exists()
    evil.write_bytes(_pickled(marker))
    with pytest.raises(ConfigError, match=str(evil)):
        load_student(evil)
    assert not marker.exists()
    evil.write_bytes(b"not a student at all")
    with pytest.raises(ConfigError, match="not a safe codesign student"):
        load_student(evil)


def test_students_round_trip_in_the_safe_format(tmp_path, digits_teacher):
    result = run_distill(DistillConfig(device="analog_crossbar", pca_rank=6, hw_draws=2))
    path = tmp_path / "s.pt"
    save_student(path, result)
    raw = torch.load(path, weights_only=True)  # tensors and text only
    assert raw["format"] == "codesign-student/2" and isinstance(raw["state"], str)
    st = load_student(path)
    assert torch.equal(st.K, result.student.K_)
    assert st.metrics["scored_on"] == "test" and st.metrics["hw_draws"] == 2 and st.metrics["seed"] == 0
    assert st.metrics["cost"]["stages"]["pca"]["runs_on"] == "host"


def test_an_old_student_loads_only_when_trusted(tmp_path, digits_teacher):
    result = run_distill(DistillConfig(pca_rank=6))
    old = tmp_path / "old.pt"
    torch.save({"format": "codesign-student/1", "K": result.student.K_.numpy(),
                "pipeline": result.features.pipeline.state_dict(), "metrics": result.metrics, "device": None,
                "device_config": None, "layer_state": None}, old)
    with pytest.raises(ConfigError, match="upgrade_student"):
        load_student(old)
    with pytest.raises(ConfigError, match="trust_old_format=True"):
        upgrade_student(old)
    upgrade_student(old, trust_old_format=True)
    assert torch.equal(load_student(old).K, result.student.K_)


# --------------------------------------------------------------------------- caches
def _features_args(digits):
    return (digits.x_train, digits.x_test, 4, "rbf", {"centers": 8})


def test_a_crafted_feature_cache_entry_runs_nothing_and_is_rebuilt(tmp_path, digits):
    feats = cached_features(*_features_args(digits), cache_dir=tmp_path)
    (entry,) = (tmp_path / "features").glob("*.npz")
    marker = tmp_path / "ran"
    np.savez(entry, train=feats.train.numpy(), test=feats.test.numpy(),
             state=np.array([_Boom(marker)], dtype=object))
    with pytest.warns(UserWarning, match="could not be read .* rebuilding it"):
        again = cached_features(*_features_args(digits), cache_dir=tmp_path)
    assert not marker.exists()
    assert torch.equal(again.train, feats.train)
    with np.load(entry, allow_pickle=False) as f:  # the rebuilt entry needs no pickle
        assert "state_json" in f.files


def test_a_crafted_teacher_cache_entry_runs_nothing_and_is_rebuilt(tmp_path, digits):
    from codesign.teachers import get_teacher

    first = get_teacher("mlp", digits, seed=3, epochs=1, cache_dir=tmp_path)
    (folder,) = (tmp_path / "teachers").iterdir()
    marker = tmp_path / "ran"
    np.savez(folder / "outputs.npz", train=np.array([_Boom(marker)], dtype=object), test=np.zeros(3))
    with pytest.warns(UserWarning, match="teacher cache entry .* could not be read"):
        again = get_teacher("mlp", digits, seed=3, epochs=1, cache_dir=tmp_path)
    assert not marker.exists() and not again.info["cached"]
    assert np.array_equal(again.train_logits, first.train_logits)
    assert get_teacher("mlp", digits, seed=3, epochs=1, cache_dir=tmp_path).info["cached"]


# --------------------------------------------------------------------------- search folders
def test_trial_log_skips_damaged_and_hostile_records(tmp_path):
    log = tmp_path / "trials.jsonl"
    good = {"trial": 0, "status": "completed", "ray_trial_id": "ab12", "config": {}, "metrics": {"hw_accuracy": 0.9, "cost": 1.0}}
    lines = [
        json.dumps(good),
        '{"trial": 1, "status": "compl',  # torn
        json.dumps({**good, "trial": 2, "ray_trial_id": "../../etc/x"}),
        json.dumps({**good, "trial": 0, "ray_trial_id": "cd34"}),  # a second trial 0
        json.dumps({**good, "trial": 3, "ray_trial_id": "ef56", "metrics": {"hw_accuracy": float("nan"), "cost": 1}}),
        json.dumps({**good, "trial": 4, "ray_trial_id": "aa11"}),
    ]
    log.write_text("\n".join(lines) + "\n")
    tl = outputs.TrialLog(log)
    records = tl.read()
    assert [r["trial"] for r in records] == [0, 4]
    assert [no for no, _ in tl.damaged] == [2, 3, 4, 5]
    assert "ray_trial_id '../../etc/x'" in dict(tl.damaged)[3]
    assert outputs.next_trial_number(records) == 5  # never a number in use, whatever was skipped
    with pytest.raises(ConfigError, match="not a Ray trial id"):
        runner.student_path({"trial": 2, "ray_trial_id": "../../etc/x"})


def test_resume_never_imports_a_teacher_named_by_the_folder(tmp_path, monkeypatch):
    marker = tmp_path / "imported"
    (tmp_path / "evilmod.py").write_text(f"open({str(marker)!r}, 'w').close()\ndef thing(ds):\n    return None\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "search"
    out.mkdir()
    (out / "search.json").write_text(json.dumps({"options": {"teacher": "evilmod:thing", "device": "ideal",
                                                             "teacher_weights": "/etc/passwd"}}))
    stored = runner.stored_options(out)
    assert "teacher" not in stored and "teacher_weights" not in stored and stored["device"] == "ideal"
    assert not marker.exists()


def test_a_second_search_into_the_same_folder_is_refused(tmp_path):
    with runner.out_lock(tmp_path):
        with pytest.raises(ConfigError, match="another search is writing to .* \\(pid"):
            with runner.out_lock(tmp_path):
                pass
    with runner.out_lock(tmp_path):  # released: the next one may start
        pass


# --------------------------------------------------------------------------- memory
def test_the_memory_guard_counts_the_gram():
    # degree 5 at rank 25: 142,506 features; the Gram alone is 162 GB
    pipe = FeaturePipeline(25, create_dictionary("monomial", degree=5), max_memory=parse_memory("24G"))
    with pytest.raises(ResourceError, match="Gram and factors 605.*--max-memory is 24.0 GiB"):
        pipe.check_memory(70_000)
    parts = fit_memory(60_000, 861)
    assert parts["Gram and factors"] == 4 * 861 * 861 * 8 and parts["features"] == 60_000 * 861 * 4


@pytest.mark.parametrize("text", ["inf", "-1G", "0", "nan", "lots", True])
def test_max_memory_must_be_a_positive_size(text):
    with pytest.raises(ConfigError, match="max_memory=.*expected a positive size"):
        parse_memory(text)


# --------------------------------------------------------------------------- plugins at run time
@dataclass(frozen=True)
class _Cfg(DeviceConfig):
    mode: str = field(default="shape", metadata={"doc": "how the layer breaks the contract"})

    def validate(self) -> None:
        pass


class _BadLayer(DeviceLayer):
    def __init__(self, i, o, how):
        super().__init__(i, o)
        self.how = how
        self.weight = torch.nn.Parameter(torch.zeros(o, i))

    def load_matrix(self, m):
        with torch.no_grad():
            self.weight.copy_(m)

    def effective_matrix(self):
        return self.weight.detach()

    def forward(self, x):
        y = x @ self.weight.T
        if self.how == "shape":
            return y[:, :1]
        if self.how == "transposed":
            return y.T
        if self.how == "nan":
            return y * math.nan
        return y


class _BadDevice(Device):
    name = "badplugin"
    Config = _Cfg

    def layer(self, i, o):
        return _BadLayer(i, o, self.config.mode)

    def cost(self, i, o):
        out = {"energy_pj": 1.0, "area_mm2": 1.0}
        if self.config.mode != "nolatency":
            out["latency_ns"] = 1.0
        return out

    @classmethod
    def search_space(cls):
        return {}


@pytest.fixture
def bad_plugin(monkeypatch):
    """The plugin, past the contract run at first use (which refuses it: test_plugin_contract.py),
    so that the run-time probes, the second line of defence for configs the contract never
    built, are tested on their own."""
    from codesign import distill

    monkeypatch.setitem(DEVICES.registered, "badplugin", _BadDevice)
    monkeypatch.setattr(distill, "require_device", lambda *a, **k: None)
    yield


@pytest.mark.parametrize(("mode", "message"), [
    ("shape", r"device 'badplugin' returned outputs of shape \[8, 1\].*\[batch, out_features\] = \[8, 10\]"),
    ("transposed", r"device 'badplugin' returned outputs of shape \[10, 8\]"),
    ("nan", r"device 'badplugin' returned non-finite outputs"),
    ("nolatency", r"device 'badplugin' cost model lacks latency_ns"),
])
def test_a_plugin_breaking_the_contract_at_run_time_is_named(bad_plugin, digits_teacher, mode, message):
    with pytest.raises(ConfigError, match=message):
        run_distill(DistillConfig(device="badplugin", device_overrides={"mode": mode}, pca_rank=4), Workspace())


def test_the_run_time_probe_programs_a_layer_of_its_own(digits_teacher, monkeypatch):
    """The contract probe must not calibrate the layer that is evaluated (converter ranges and
    quantizer statistics come from the real data): it builds a throw-away layer."""
    from codesign import distill

    built = []
    real = distill.probe_layer

    def spy(device, matrix, x, name):
        built.append(matrix.shape)
        return real(device, matrix, x, name)

    monkeypatch.setattr(distill, "probe_layer", spy)
    a = run_distill(DistillConfig(device="fpga_fixed_point", pca_rank=10, hw_draws=1), Workspace()).metrics
    monkeypatch.setattr(distill, "probe_layer", lambda *args: None)
    b = run_distill(DistillConfig(device="fpga_fixed_point", pca_rank=10, hw_draws=1), Workspace()).metrics
    assert built == [(10, 66)] and a["hw_accuracies"] == b["hw_accuracies"]
