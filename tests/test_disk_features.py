"""The disk-backed feature path (issue 30, item 4): lifted features written once to the feature
cache, memory-mapped read-only, fitted from the map, and counted by ``--max-memory``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from codesign import cli, features
from codesign.cache import atomic_stream_npz
from codesign.distill import DistillConfig, Workspace, run_distill
from codesign.errors import ConfigError, ResourceError
from codesign.features import FeaturePipeline, disk_fit_memory, fit_memory
from codesign.dictionaries import create_dictionary
from codesign.students import (FitConfig, as_features, engine_memory, is_mapped, memmap_npz, pass_copy,
                               release_pages)

RFF = {"features": 120}


@pytest.fixture
def cache(tmp_path, digits_teacher, codesign_cache):
    """A cache folder of the test's own, sharing the session's digits teacher (not trained again)."""
    (tmp_path / "teachers").symlink_to(Path(codesign_cache) / "teachers", target_is_directory=True)
    return tmp_path


def distill(cache: Path, disk: str, **kw):
    kw.setdefault("fit", FitConfig(pass_dtype="float32"))
    cfg = DistillConfig(dataset="digits", pca_rank=16, dictionary="rff", dictionary_params=RFF, disk_features=disk,
                        cache_dir=str(cache), **kw)
    return run_distill(cfg, Workspace(verbose=False))


def entries(cache: Path) -> list[Path]:
    return sorted((cache / "features").glob("*.npz"))


def test_disk_backed_fit_equals_the_in_memory_fit(cache):
    mem = distill(cache, "never")
    disk = distill(cache, "always")
    assert not mem.features.disk_backed and mem.metrics["features_disk_backed"] is False
    assert disk.features.disk_backed and disk.metrics["features_disk_backed"] is True
    assert is_mapped(disk.features.train) and is_mapped(disk.features.test)
    assert disk.features.path == entries(cache)[0] and mem.features.path is None
    torch.testing.assert_close(disk.features.train, mem.features.train, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(disk.student.K_, mem.student.K_, rtol=1e-5, atol=1e-5)
    assert disk.metrics["test_accuracy"] == mem.metrics["test_accuracy"] > 0.9
    # the estimate each path checked is the one it recorded
    n, F = 1437, mem.features.pipeline.n_features
    assert mem.metrics["memory_estimate"] == fit_memory(n + 360, F)
    assert disk.metrics["memory_estimate"] == disk_fit_memory(n, 360, F)
    assert disk.metrics["memory_estimate_bytes"] == sum(disk_fit_memory(n, 360, F).values())
    assert set(engine_memory(n, F, disk_backed=True)) <= set(disk.metrics["memory_estimate"])


def test_hardware_aware_training_from_the_map(cache):
    kw = dict(device="ideal", protocol="aware", hw_draws=1, fit=FitConfig(aware_steps=3, pass_dtype="float32"))
    mem, disk = distill(cache, "never", **kw), distill(cache, "always", **kw)
    assert disk.features.disk_backed and disk.metrics["aware_steps"] == mem.metrics["aware_steps"] == 3
    assert disk.metrics["hw_accuracies"] == pytest.approx(mem.metrics["hw_accuracies"], abs=1e-9)


def test_the_entry_is_written_once_and_reused(cache, monkeypatch):
    first = distill(cache, "always")
    (entry,) = entries(cache)
    stamp = entry.stat().st_mtime_ns

    def refuse(*a, **k):
        raise AssertionError("the feature cache entry was written again")

    monkeypatch.setattr(features, "atomic_stream_npz", refuse)
    monkeypatch.setattr(features, "atomic_save_npz", refuse)
    again = distill(cache, "always")
    assert entries(cache) == [entry] and entry.stat().st_mtime_ns == stamp
    assert again.features.disk_backed
    assert torch.equal(again.student.K_, first.student.K_)


def test_a_partial_or_damaged_entry_is_never_read(cache):
    good = distill(cache, "always")
    (entry,) = entries(cache)
    # a write that stops half way leaves no entry: the temp file is removed, the name never used
    blocks = (np.zeros((10, 4), np.float32) if i < 2 else 1 / 0 for i in range(3))
    with pytest.raises(ZeroDivisionError):
        atomic_stream_npz(cache / "features" / "x.npz", train=((30, 4), np.float32, blocks))
    assert entries(cache) == [entry] and not list((cache / "features").glob(".*.tmp"))
    # a truncated entry (a copy cut short, a full disk outside codesign) is refused and rebuilt
    entry.write_bytes(entry.read_bytes()[: entry.stat().st_size // 2])
    with pytest.warns(UserWarning, match="could not be read"):
        rebuilt = distill(cache, "always")
    assert rebuilt.features.disk_backed and torch.equal(rebuilt.student.K_, good.student.K_)
    # an entry whose splits have another shape is refused too, not fitted on
    with np.load(entry) as f:
        arrays = {k: f[k] for k in f.files}
    arrays["train"] = arrays["train"][:-1]
    np.savez(entry, **arrays)
    plan = rebuilt.features.memory
    with pytest.raises(ValueError, match=r"expected \(1437, 137\)"):
        features._read_entry(entry, plan, (1437, 360, 137))


def test_auto_puts_features_on_disk_only_when_memory_is_short():
    pipe = FeaturePipeline(50, create_dictionary("rff", features=8000), max_memory=1)
    n, n_test, F = 60_000, 10_000, pipe.n_features
    in_memory = sum(fit_memory(n + n_test, F).values())
    on_disk = sum(disk_fit_memory(n, n_test, F).values())
    assert on_disk < in_memory - n * F * 2  # the float32 splits are off the budget (less the Gram rows kept)
    pipe.max_memory = in_memory
    assert not pipe.plan_memory(n, n_test, "auto").disk_backed
    pipe.max_memory = in_memory - 1
    plan = pipe.plan_memory(n, n_test, "auto")
    assert plan.disk_backed and plan.need == on_disk and plan.as_dict()["memory_estimate_bytes"] == on_disk
    with pytest.raises(ResourceError, match=r"in memory .*keep the features on disk \(--disk-features auto"):
        pipe.plan_memory(n, n_test, "never")
    pipe.max_memory = on_disk - 1
    with pytest.raises(ResourceError, match="even with the features on disk"):
        pipe.plan_memory(n, n_test, "auto")


def test_max_memory_below_the_disk_estimate_is_one_line(cache, capsys):
    code = cli.main(["distill", "--dataset", "digits", "--pca-rank", "16", "--dictionary", "rff", "--features", "120",
                     "--disk-features", "always", "--max-memory", "1M", "--cache-dir", str(cache)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert "even with the features on disk" in err and "--max-memory is 1.0 MiB" in err and "raise --max-memory" in err
    assert not entries(cache)  # refused before anything was written
    code = cli.main(["distill", "--dataset", "digits", "--pca-rank", "16", "--dictionary", "rff", "--features", "120",
                     "--disk-features", "always", "--max-memory", "1G", "--cache-dir", str(cache), "--pass-dtype",
                     "float32"])
    out = capsys.readouterr().out
    assert code == 0 and "features on disk (memory-mapped from the feature cache)" in out
    assert "of --max-memory 1.0 GiB" in out and len(entries(cache)) == 1


def test_disk_features_is_checked():
    with pytest.raises(ConfigError, match="disk_features"):
        DistillConfig(disk_features="sometimes")


@pytest.mark.skipif(not Path("/proc/self/smaps").is_file(), reason="reads the resident pages from /proc")
def test_a_pass_over_the_map_leaves_its_pages_to_the_page_cache(tmp_path):
    path = tmp_path / "f.npz"
    x = np.random.default_rng(0).standard_normal((8192, 1024), dtype=np.float32)  # 32 MiB
    atomic_stream_npz(path, train=x)
    psi = as_features(memmap_npz(path, "train"))
    assert is_mapped(psi) and not is_mapped(torch.zeros(3))
    copy = pass_copy(psi, "bfloat16")
    assert torch.equal(copy, torch.from_numpy(x).bfloat16())
    assert resident(path) < 1 << 20  # every block's pages released after it was read
    float(psi.sum())
    assert resident(path) > 16 << 20
    release_pages(psi)
    assert resident(path) < 1 << 20


def resident(path: Path) -> int:
    """Bytes of ``path``'s mappings resident in this process (``/proc/self/smaps``)."""
    total, inside = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        if line[:1].isdigit() or line[:1] in "abcdef" and "-" in line.split()[0]:
            inside = line.rstrip().endswith(str(path))
        elif inside and line.startswith("Rss:"):
            total += int(line.split()[1]) << 10
    return total


def test_a_validated_choice_counts_its_in_memory_copies(cache):
    plan = features.feature_plan(16, "rff", RFF, 1437, 360, max_memory=1 << 40, disk="always")
    fit = FitConfig(temperature="auto", pass_dtype="float32")
    with pytest.raises(ResourceError, match=r"auto copies the selection split's 1437 rows x 137 features into memory"):
        distill(cache, "always", fit=fit, max_memory=plan.need + 1437 * 137 * 4 - 1)
