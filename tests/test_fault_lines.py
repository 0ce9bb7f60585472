"""Issue 28's remaining tracebacks, each now one line naming the value and the fix (exit code 2).

Ray addresses, search folders whose files have the wrong shape, plot files that cannot be
written, a full disk, a bad ``--storage``, an ``--eval-time`` past the physical bound and fit
options the chosen method would ignore. None of them starts a fit or a trial.
"""

from __future__ import annotations

import errno
import json
import time
from pathlib import Path

import pytest

from codesign import cli
from codesign.errors import ConfigError



def run_cli(capsys, *args) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, *names: str) -> None:
    """Exit code 2, a single ``codesign: error:`` line holding every one of ``names``, no traceback."""
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("codesign: error: "), err
    for name in names:
        assert name in lines[0], (name, lines[0])

SEARCH = ["search", "--dataset", "digits", "--ranks", "4", "8", "--samples", "1", "--quiet"]


@pytest.mark.parametrize("address, fragment", [
    ("not an address", "expected HOST:PORT"),
    ("10.0.0.1:99999", "expected HOST:PORT"),
    ("127.0.0.1:1", "no Ray cluster answers there"),
])
def test_ray_address_is_one_line_and_quick(capsys, tmp_path, address, fragment):
    t0 = time.perf_counter()
    code, _, err = run_cli(capsys, *SEARCH, "--address", address, "--out", tmp_path / "s")
    assert_one_line_error(code, err, "--address", address, fragment)
    assert time.perf_counter() - t0 < 10
    assert not [p.name for p in (tmp_path / "s").glob("*") if not p.name.startswith(".")]  # no search started


def _list_search(folder: Path) -> Path:
    folder.mkdir()
    (folder / "search.json").write_text("[1, 2]")
    (folder / "trials.jsonl").write_text("")
    return folder


@pytest.mark.parametrize("command", ["resume", "pareto", "export"])
def test_search_json_holding_a_list_is_one_line(capsys, tmp_path, command):
    folder = _list_search(tmp_path / "s")
    argv = {"resume": [*SEARCH, "--out", folder, "--resume"], "pareto": ["pareto", folder],
            "export": ["export", folder, "--member", "knee", "--out", tmp_path / "b"]}[command]
    code, _, err = run_cli(capsys, *argv)
    assert_one_line_error(code, err, "search.json is damaged")


def test_search_json_with_a_section_of_the_wrong_type_is_one_line(capsys, tmp_path):
    folder = tmp_path / "s"
    folder.mkdir()
    (folder / "search.json").write_text(json.dumps({"options": [1], "identity": {}}))
    code, _, err = run_cli(capsys, *SEARCH, "--out", folder, "--resume")
    assert_one_line_error(code, err, "search.json is damaged", "options is a JSON list")


def test_pareto_output_under_a_regular_file_or_unwritable_folder(capsys, tmp_path):
    (tmp_path / "file").write_text("x")
    code, _, err = run_cli(capsys, "pareto", tmp_path, "-o", tmp_path / "file" / "p.png")
    assert_one_line_error(code, err, "-o", "file", "not a folder")
    code, _, err = run_cli(capsys, "pareto", tmp_path, "-o", "/proc/codesign-test/p.png")  # not writable, even as root
    assert_one_line_error(code, err, "-o", "/proc")
    (tmp_path / "d.png").mkdir()
    code, _, err = run_cli(capsys, "pareto", tmp_path, "-o", tmp_path / "d.png")
    assert_one_line_error(code, err, "is a folder")


def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_full_disk_in_an_atomic_write_names_the_folder_and_the_size(tmp_path, monkeypatch):
    from codesign import cache

    monkeypatch.setattr(cache.os, "fsync", _enospc)
    with pytest.raises(ConfigError) as info:
        cache.atomic_write_bytes(tmp_path / "cache" / "teacher.pt", b"x" * 5000)
    msg = str(info.value)
    assert "\n" not in msg and str(tmp_path / "cache") in msg and "no space left" in msg
    assert "writing teacher.pt needs 4.9 KiB" in msg and "free there" in msg and "--cache-dir" in msg
    assert [p.name for p in (tmp_path / "cache").iterdir()] == []  # nothing half-written


def test_full_disk_during_export_is_one_line(capsys, tmp_path, monkeypatch, digits_teacher):
    from codesign.artifacts import save_student
    from codesign.distill import DistillConfig, run_distill
    from codesign.export import bundle

    save_student(tmp_path / "s.pt", run_distill(DistillConfig(dataset="digits", pca_rank=4)))
    monkeypatch.setattr(bundle.np, "savez", _enospc)
    code, _, err = run_cli(capsys, "export", tmp_path / "s.pt", "--out", tmp_path / "b")
    assert_one_line_error(code, err, str(tmp_path), "no space left", "the export b", "free there")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.pt"]


def test_full_disk_anywhere_else_is_one_line(capsys, monkeypatch, tmp_path):
    def full(args):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "x.bin"))

    monkeypatch.setattr(cli, "cmd_devices", full)
    code, _, err = run_cli(capsys, "devices")
    assert_one_line_error(code, err, str(tmp_path), "no space left", "x.bin")


@pytest.mark.parametrize("kind", ["parent_is_a_file", "folder", "unwritable"])
def test_bad_storage_is_refused_before_any_trial(capsys, tmp_path, kind):
    (tmp_path / "file").write_text("x")
    (tmp_path / "dir").mkdir()
    storage = {"parent_is_a_file": tmp_path / "file" / "study.db", "folder": tmp_path / "dir",
               "unwritable": Path("/proc/codesign-test/study.db")}[kind]
    code, _, err = run_cli(capsys, *SEARCH, "--storage", storage, "--out", tmp_path / "s")
    assert_one_line_error(code, err, "--storage")
    assert not (tmp_path / "s" / "trials.jsonl").exists()


@pytest.mark.parametrize("value", ["1e30", "11y", "3.2e8"])
def test_eval_time_past_ten_years_is_refused(capsys, value):
    code, _, err = run_cli(capsys, "distill", "--dataset", "digits", "--device", "analog_crossbar", "--eval-time", value)
    assert_one_line_error(code, err, f"eval_time={value!r}", "10 years", "JESD47")


@pytest.mark.parametrize("method, option, value", [
    ("naive", "--temperature", "auto"), ("naive", "--alpha", "auto"), ("naive", "--l2", "auto"),
    ("labels", "--alpha", "auto"), ("labels", "--temperature", "auto"), ("labels", "--temperature", "4"),
    ("naive", "--alpha", "0.5"),
])
def test_options_the_method_ignores_are_refused(capsys, method, option, value):
    code, _, err = run_cli(capsys, "distill", "--dataset", "digits", "--method", method, option, value)
    assert_one_line_error(code, err, f"{option} {value}", f"--method {method}", "--method kd")
