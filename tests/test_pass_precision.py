"""The pass-precision calibration: decided by timing, cached per machine, rebuilt when damaged."""

from __future__ import annotations

import json

import pytest
import torch

from codesign import pass_precision as pp


class FakePasses:
    """A ``time_pass`` whose timings are given, counting how often each precision ran."""

    def __init__(self, **seconds: float) -> None:
        self.seconds = seconds
        self.calls: dict[str, int] = {}

    def __call__(self, dtype: str) -> float:
        self.calls[dtype] = self.calls.get(dtype, 0) + 1
        return self.seconds[dtype]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CODESIGN_CACHE", str(tmp_path))
    pp.forget()
    yield tmp_path
    pp.forget()


BIG = (60000, 861)  # above SMALL_ELEMENTS: calibrated


def test_faster_precision_is_chosen_and_cached_per_machine(cache):
    passes = FakePasses(float32=0.030, bfloat16=0.012)
    c = pp.choose_pass_dtype("auto", *BIG, passes)
    assert (c.dtype, c.source) == ("bfloat16", "measured")
    assert c.ms == {"float32": 30.0, "bfloat16": 12.0}
    # one warm-up and REPEATS timed passes per candidate
    assert passes.calls == {"float32": 1 + pp.REPEATS, "bfloat16": 1 + pp.REPEATS}
    data = json.loads((cache / pp.FILE_NAME).read_text())
    (entry,) = data["entries"].values()
    assert entry["dtype"] == "bfloat16" and entry["key"]["columns"] == 1024
    assert entry["key"]["threads"] == torch.get_num_threads() and entry["key"]["torch"] == torch.__version__
    # the same process: no new timing
    again = FakePasses(float32=0.001, bfloat16=0.5)
    assert pp.choose_pass_dtype("auto", *BIG, again).dtype == "bfloat16" and again.calls == {}
    # a new process (memo dropped) reads the file, still without timing
    pp.forget()
    c = pp.choose_pass_dtype("auto", *BIG, again)
    assert (c.dtype, c.source, again.calls) == ("bfloat16", "cached", {})
    # another column-count class is timed on its own
    c = pp.choose_pass_dtype("auto", 60000, 1771, again)
    assert (c.dtype, c.source) == ("float32", "measured")
    assert len(json.loads((cache / pp.FILE_NAME).read_text())["entries"]) == 2


def test_float32_wins_ties_and_slow_bfloat16(cache):
    # bfloat16 only 5% faster: not worth a copy and 8 bits of mantissa
    assert pp.choose_pass_dtype("auto", *BIG, FakePasses(float32=0.100, bfloat16=0.095)).dtype == "float32"
    pp.forget()
    (cache / pp.FILE_NAME).unlink()
    # a CPU without native bfloat16 (issue 14: bfloat16 passes slower)
    assert pp.choose_pass_dtype("auto", *BIG, FakePasses(float32=0.20, bfloat16=0.26)).dtype == "float32"


def test_thread_count_is_part_of_the_key(cache):
    before = torch.get_num_threads()
    pp.choose_pass_dtype("auto", *BIG, FakePasses(float32=0.03, bfloat16=0.01))
    try:
        torch.set_num_threads(1 if before != 1 else 2)
        passes = FakePasses(float32=0.01, bfloat16=0.03)
        c = pp.choose_pass_dtype("auto", *BIG, passes)
    finally:
        torch.set_num_threads(before)
    assert (c.dtype, c.source) == ("float32", "measured") and passes.calls


def test_forced_and_small_need_no_timing(cache):
    passes = FakePasses(float32=1.0, bfloat16=0.1)
    assert pp.choose_pass_dtype("float32", *BIG, passes).source == "forced"
    assert pp.choose_pass_dtype("bfloat16", *BIG, passes).dtype == "bfloat16"
    c = pp.choose_pass_dtype("auto", 1437, 66, passes)
    assert (c.dtype, c.source) == ("float32", "small")
    assert passes.calls == {} and not (cache / pp.FILE_NAME).exists()


@pytest.mark.parametrize("damage", ["{not json", '{"version": 1, "entries": []}', '["a list"]', "\xff\xfe"])
def test_damaged_cache_file_is_rebuilt(cache, damage):
    (cache / pp.FILE_NAME).write_text(damage, encoding="latin-1")
    with pytest.warns(UserWarning, match="could not be read; rebuilding"):
        c = pp.choose_pass_dtype("auto", *BIG, FakePasses(float32=0.03, bfloat16=0.01))
    assert c.source == "measured"
    data = json.loads((cache / pp.FILE_NAME).read_text())
    assert data["version"] == 1 and len(data["entries"]) == 1


def test_invalid_entry_is_measured_again(cache):
    pp.choose_pass_dtype("auto", *BIG, FakePasses(float32=0.03, bfloat16=0.01))
    data = json.loads((cache / pp.FILE_NAME).read_text())
    for entry in data["entries"].values():
        entry["dtype"] = "float16"  # not a candidate: never trusted
    (cache / pp.FILE_NAME).write_text(json.dumps(data))
    pp.forget()
    passes = FakePasses(float32=0.01, bfloat16=0.03)
    c = pp.choose_pass_dtype("auto", *BIG, passes)
    assert (c.dtype, c.source) == ("float32", "measured")


def test_recalibrate_times_again(cache):
    pp.choose_pass_dtype("auto", *BIG, FakePasses(float32=0.03, bfloat16=0.01))
    c = pp.choose_pass_dtype("auto", *BIG, FakePasses(float32=0.01, bfloat16=0.03), recalibrate=True)
    assert (c.dtype, c.source) == ("float32", "measured")
    pp.forget()
    assert pp.choose_pass_dtype("auto", *BIG, FakePasses(float32=1, bfloat16=1)).dtype == "float32"


def test_column_classes_and_calibration_rows():
    assert [pp.column_class(f) for f in (1, 64, 65, 861, 1024, 1771)] == [64, 64, 128, 1024, 1024, 2048]
    assert pp.calibration_rows(60000, 861) == -(-pp.CALIBRATION_ELEMENTS // 861)
    assert pp.calibration_rows(100, 861) == 100


def test_machine_key_names_the_cpu():
    key = pp.machine_key(861)
    assert key["columns"] == 1024 and key["device"] == "cpu"
    assert key["model"] and key["machine"]


def test_instruction_set_caps_change_the_key(monkeypatch):
    """A run with oneDNN capped at AVX2 (a CPU without native bfloat16) must not read or
    overwrite the uncapped machine's cached choice."""
    for var in pp.ISA_LIMIT_VARS:
        monkeypatch.delenv(var, raising=False)
    plain = pp.machine_key(861)
    assert "isa_limits" not in plain
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    capped = pp.machine_key(861)
    assert capped["isa_limits"] == {"ONEDNN_MAX_CPU_ISA": "AVX2"}
    assert pp.stable_hash(capped) != pp.stable_hash(plain)
