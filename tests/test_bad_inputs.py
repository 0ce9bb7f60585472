"""Bad input: one line naming the value and the fix, exit code 2 (130 for Ctrl-C), nothing lost.

Every case runs the command line in process (``codesign.cli.main``) unless it needs a real
process (Ctrl-C). None of them may start a fit: the checks come before any work.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from codesign import cli, reproduce
from codesign.cache import atomic_write_json, atomic_write_text, check_writable_dir
from codesign.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, *names: str) -> str:
    """Exit code 2, a single ``codesign: error:`` line holding every one of ``names``, no traceback."""
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("codesign: error: "), err
    assert "Traceback" not in err
    for name in names:
        assert name in lines[0], (name, lines[0])
    return lines[0]


@pytest.fixture
def no_work(monkeypatch):
    """Fail the test if a command gets as far as fitting anything."""

    def refuse(*a, **k):
        raise AssertionError("a fit started although the input was bad")

    monkeypatch.setattr(cli, "run_distill", refuse)
    monkeypatch.setattr(reproduce, "run_distill", refuse)
    monkeypatch.setattr(cli.runner, "run_search", refuse)
    monkeypatch.setattr(cli, "get_teacher", refuse)


def toml(tmp_path: Path, text: str, name: str = "c.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# --------------------------------------------------------------------------- wrong types and ranges
@pytest.mark.parametrize("command, text, names", [
    ("distill", 'temperature = "hot"\n', ["temperature", "'hot'", "number"]),
    ("distill", 'max_iter = "many"\n', ["max_iter", "'many'", "integer"]),
    ("distill", "set = [1, 2]\n", ["set=[1, 2]", "[set]", "FIELD=VALUE"]),
    ("distill", 'set = "adc_bits"\n', ["'adc_bits'", "field=value"]),
    ("search", 'samples = "two"\n', ["samples", "'two'", "integer"]),
    ("search", 'min_accuracy = "high"\n', ["min_accuracy", "'high'"]),
    ("reproduce", 'seeds = "two"\n', ["seeds", "'two'"]),
    ("reproduce", 'datasets = ["cifar"]\n', ["datasets", "'cifar'", "mnist"]),
    ("reproduce", "ranks2 = [0]\n", ["ranks2", "0"]),
    # found by a sweep of every key with values of every type (each was a TypeError/ValueError traceback)
    ("distill", 'seed = "zzz"\n', ["seed='zzz'", "integer"]),
    ("distill", "cache_dir = 5\n", ["cache_dir=5", "string"]),
    ("distill", "torch_device = 5\n", ["torch_device=5", "string"]),
    ("teacher", "cache_dir = true\n", ["cache_dir=True", "string"]),
    ("search", 'validation = "zzz"\n', ["validation='zzz'", "number"]),
    ("search", "ranks = 5\n", ["ranks=5", "a list of 2 integers"]),
    ("search", 'ranks = [1, "a"]\n', ["ranks=[1, 'a']", "a list of 2 integers"]),
    ("search", "dictionaries = 5\n", ["dictionaries=5", "strings"]),
    ("search", 'dataset = "zzz"\n', ["dataset='zzz'", "digits"]),
    ("search", 'protocol = "zzz"\n', ["protocol='zzz'", "aware"]),
])
def test_config_file_value_of_wrong_type(capsys, tmp_path, no_work, command, text, names):
    extra = ["--out", tmp_path / "out"] if command in ("search", "reproduce") else []
    code, _, err = run_cli(capsys, command, "--config", toml(tmp_path, text), *extra)
    assert_one_line_error(code, err, *names)


@pytest.mark.parametrize("args, names", [
    (["search", "--cpus", "-1"], ["cpus=-1", "[1, "]),
    (["search", "--cpus", "0"], ["cpus=0", "[1, "]),
    (["search", "--min-accuracy", "2"], ["min_accuracy=2", "[0, 1]", "0.02"]),
    (["search", "--min-accuracy", "95"], ["min_accuracy=95", "0.95"]),
    (["search", "--max-cost", "-5"], ["max_cost=-5", "[0.0, inf)"]),
    (["search", "--max-cost", "nan"], ["max_cost=nan", "finite"]),
    (["search", "--max-cost", "inf"], ["max_cost=inf", "finite"]),
    (["reproduce", "--seeds", "0"], ["seeds=0", "[1, 1000]"]),
    (["reproduce", "--tol", "-1"], ["tol=-1", "[0.0, 1.0]"]),
    (["distill", "--aware-steps", "-3"], ["aware_steps=-3"]),
])
def test_flag_out_of_range(capsys, tmp_path, no_work, args, names):
    extra = ["--out", tmp_path / "out"] if args[0] != "distill" else []
    code, _, err = run_cli(capsys, *args, *extra)
    assert_one_line_error(code, err, *names)
    assert not (tmp_path / "out").exists()


def test_reproduce_honours_tol_zero(monkeypatch):
    """``--tol 0`` was dropped as falsy (the engine's 1e-2 ran) while the table recorded 0."""
    seen = []

    class Result:
        metrics = {"dataset": "digits", "teacher": "mlp", "teacher_test_accuracy": 0.9, "method": "kd",
                   "pca_rank": 5, "seed": 0, "n_features": 21, "test_accuracy": 0.9, "fit_seconds": 0.0,
                   "iterations": 1, "condition_number": None}

    def fake(cfg, ws=None):
        seen.append(cfg.fit.tol)
        return Result()

    monkeypatch.setattr(reproduce, "run_distill", fake)
    cfg = reproduce.ReproduceConfig(smoke_test=True, tol=0.0)
    opts = {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.__dict__.items()}
    opts["seeds"], opts["ranks2"], opts["ranks3"] = 1, [5], []
    reproduce.run(opts, log=lambda *a: None)
    assert seen and all(t == 0.0 for t in seen)


@pytest.mark.parametrize("args, names", [
    (["distill", "--config", ""], ["--config ''", "empty", "drop --config"]),
    (["devices", "--config", ""], ["--config ''", "empty"]),
    (["distill", "--out", ""], ["--out ''", "empty", "drop --out"]),
    (["distill", "--cache-dir", ""], ["--cache-dir ''", "empty"]),
    (["search", "--out", ""], ["--out ''", "empty"]),
    (["reproduce", "--smoke-test", "--out", ""], ["--out ''", "empty"]),
])
def test_empty_paths_are_refused(capsys, no_work, args, names):
    code, _, err = run_cli(capsys, *args)
    assert_one_line_error(code, err, *names)


def test_config_that_is_a_folder(capsys, tmp_path, no_work):
    code, _, err = run_cli(capsys, "distill", "--config", tmp_path)
    assert_one_line_error(code, err, str(tmp_path), "folder")


# --------------------------------------------------------------------------- devices and pareto --config
def test_devices_reads_its_config(capsys, tmp_path):
    code, _, err = run_cli(capsys, "devices", "--config", toml(tmp_path, "temperature = 2\n"))
    assert_one_line_error(code, err, "temperature", "devices", "known keys: json")
    code, _, err = run_cli(capsys, "devices", "--config", tmp_path / "missing.toml")
    assert_one_line_error(code, err, "missing.toml", "no such file")
    code, _, err = run_cli(capsys, "devices", "--config", toml(tmp_path, 'json = "yes"\n'))
    assert_one_line_error(code, err, "json='yes'")
    code, out, err = run_cli(capsys, "devices", "--config", toml(tmp_path, "json = true\n"))
    assert code == 0, err
    assert "ideal" in json.loads(out)["devices"]


def _search_folder(path: Path) -> Path:
    """A finished search folder, written without Ray (two trials on the ideal device)."""
    from codesign.search import SearchConfig, outputs
    from codesign.search.runner import summarise

    cfg = SearchConfig(dataset="digits", device="ideal", hw_draws=3, out=str(path))
    records = []
    for i, (acc, cost) in enumerate([(0.9, 10.0), (0.8, 5.0)]):
        m = {"hw_accuracy": acc, "cost": cost, "energy_pj": cost, "student": f"{path}/students/trials/t{i}.pt"}
        records.append({"trial": i, "round": 0, "status": "completed", "ray_trial_id": f"t{i}", "error": "",
                        "config": {"dictionary": "monomial", "degree": 2, "pca_rank": 10 + i, "device": {}},
                        "metrics": m})
    path.mkdir(parents=True)
    log = outputs.TrialLog(path / outputs.LOG_NAME)
    for r in records:
        log.append(r)
    atomic_write_json(path / outputs.SEARCH_NAME, {"options": cfg.options()})
    outputs.write_front(path, summarise(records, cfg))
    return path


def test_pareto_takes_a_config(capsys, tmp_path):
    d = _search_folder(tmp_path / "s")
    plot = tmp_path / "plots" / "fronts.svg"
    cfg = toml(tmp_path, f'output = "{plot}"\ntitle = "From a file"\nbreakdown = false\n')
    code, out, err = run_cli(capsys, "pareto", d, "--config", cfg)
    assert code == 0, err
    assert plot.is_file() and plot.with_suffix(".md").is_file()
    assert str(plot) in out
    code, _, err = run_cli(capsys, "pareto", d, "--config", toml(tmp_path, "samples = 3\n", "bad.toml"))
    assert_one_line_error(code, err, "samples", "pareto", "breakdown, output, title")
    code, _, err = run_cli(capsys, "pareto", d, "--config", toml(tmp_path, "breakdown = 1\n", "b.toml"))
    assert_one_line_error(code, err, "breakdown=1", "true or false")


@pytest.mark.parametrize("text, names", [
    ('{"front": [', ["front.json", "damaged", "line", "trials.jsonl"]),
    ("[1, 2]", ["front.json", "damaged", "cost_key"]),
    ("\udcff", ["front.json", "damaged"]),
])
def test_pareto_names_a_damaged_front(capsys, tmp_path, text, names):
    d = _search_folder(tmp_path / "s")
    (d / "front.json").write_bytes(text.encode("utf-8", "surrogateescape"))
    code, _, err = run_cli(capsys, "pareto", d)
    assert_one_line_error(code, err, str(d / "front.json"), *names)
    assert not (d / "pareto.png").exists()
    # The advice holds: without front.json the front is recomputed from the trial log.
    (d / "front.json").unlink()
    code, _, err = run_cli(capsys, "pareto", d)
    assert code == 0, err


def test_pareto_names_a_damaged_search_json(capsys, tmp_path):
    d = _search_folder(tmp_path / "s")
    (d / "search.json").write_text('{"options": ')
    code, _, err = run_cli(capsys, "pareto", d)
    assert_one_line_error(code, err, str(d / "search.json"), "damaged")


@pytest.mark.parametrize("text, names", [
    ('{"runs": [', ["damaged", "line 1", "move it away"]),
    ('{"runs": [{"seed": 0}], "meta": {}}', ["damaged", "codesign reproduce", "move it away"]),
    ("[]", ["damaged"]),
])
def test_reproduce_resume_names_a_damaged_table(capsys, tmp_path, no_work, text, names):
    out = tmp_path / "table"
    out.mkdir()
    (out / "reproduction.json").write_text(text)
    code, _, err = run_cli(capsys, "reproduce", "--smoke-test", "--resume", "--out", out)
    assert_one_line_error(code, err, str(out / "reproduction.json"), *names)
    assert (out / "reproduction.json").read_text() == text  # left as it was
    assert not (out / "reproduction.md").exists()


# --------------------------------------------------------------------------- unwritable output folders
OUTPUT_COMMANDS = {
    "distill": ["distill"],
    "search": ["search"],
    "reproduce": ["reproduce", "--smoke-test"],
}


@pytest.mark.parametrize("command", sorted(OUTPUT_COMMANDS))
@pytest.mark.parametrize("option", ["--out", "--cache-dir"])
def test_output_folder_that_is_a_file(capsys, tmp_path, no_work, command, option):
    f = tmp_path / "a-file"
    f.write_text("keep me")
    other = ["--out", tmp_path / "out"] if option == "--cache-dir" else []
    code, _, err = run_cli(capsys, *OUTPUT_COMMANDS[command], option, f, *other)
    assert_one_line_error(code, err, f"{option} {f}", "file", "folder")
    assert f.read_text() == "keep me"
    code, _, err = run_cli(capsys, *OUTPUT_COMMANDS[command], option, f / "sub", *other)
    assert_one_line_error(code, err, f"{option} {f / 'sub'}", "is a file")


@pytest.mark.parametrize("command", sorted(OUTPUT_COMMANDS))
def test_output_folder_not_writable(capsys, tmp_path, monkeypatch, no_work, command):
    """A read-only folder (simulated: root may write anywhere) is refused before any fit."""
    import tempfile

    ro = tmp_path / "ro"
    ro.mkdir()
    real = tempfile.mkstemp

    def mkstemp(*a, dir=None, **k):
        if dir is not None and Path(dir) == ro:
            raise PermissionError(13, "Permission denied")
        return real(*a, dir=dir, **k)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    code, _, err = run_cli(capsys, *OUTPUT_COMMANDS[command], "--out", ro)
    assert_one_line_error(code, err, f"--out {ro}", "not writable", "Permission denied")
    code, _, err = run_cli(capsys, *OUTPUT_COMMANDS[command], "--out", ro / "new" / "deeper")
    assert_one_line_error(code, err, f"--out {ro / 'new' / 'deeper'}", f"cannot be created in {ro}")


def test_cache_env_that_is_a_file(capsys, tmp_path, monkeypatch, no_work):
    f = tmp_path / "cache-file"
    f.write_text("")
    monkeypatch.setenv("CODESIGN_CACHE", str(f))
    code, _, err = run_cli(capsys, "distill")
    assert_one_line_error(code, err, "$CODESIGN_CACHE", str(f))


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_folder_for_real(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(ConfigError, match="not writable"):
            check_writable_dir(ro, "--out")
    finally:
        ro.chmod(0o755)


def test_writable_folders_pass(tmp_path):
    assert check_writable_dir(tmp_path / "a" / "b", "--out") == tmp_path / "a" / "b"
    assert not (tmp_path / "a").exists()  # nothing is created by the check
    assert check_writable_dir(None, "--out") is None


# --------------------------------------------------------------------------- file permissions
@pytest.mark.parametrize("mask", [0o022, 0o027, 0o002])
def test_atomic_writes_honour_the_umask(tmp_path, mask):
    from codesign.search.outputs import TrialLog

    old = os.umask(mask)
    try:
        atomic_write_text(tmp_path / "front.md", "x")
        atomic_write_json(tmp_path / "front.json", {})
        TrialLog(tmp_path / "trials.jsonl").append(
            {"trial": 0, "round": 0, "status": "failed", "ray_trial_id": "t0", "config": {}, "metrics": {}, "error": "x"})
    finally:
        os.umask(old)
    modes = {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir()}
    assert modes == {"front.md": 0o666 & ~mask, "front.json": 0o666 & ~mask, "trials.jsonl": 0o666 & ~mask}


# --------------------------------------------------------------------------- Ctrl-C
def _codesign_exe() -> list[str]:
    exe = Path(sys.executable).parent / "codesign"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "codesign"]


@pytest.mark.parametrize("delay", [0.3, 1.0, 2.5, 5.0])
def test_ctrl_c_is_one_line_and_130(tmp_path, delay):
    """SIGINT at several moments of start-up (imports, plugin discovery) and of the run itself.

    Python's own start-up (``site``, the first ~50 ms) comes before any of our code and is not covered.
    """
    env = {**os.environ, "CODESIGN_CACHE": str(tmp_path / "cache")}
    proc = subprocess.Popen(
        [*_codesign_exe(), "distill", "--teacher-epochs", "1000"], cwd=tmp_path, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # a background parent may ignore it
    )
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    if proc.returncode == 0:  # pragma: no cover - finished before the signal (a very fast machine)
        pytest.skip("the command finished before the signal")
    assert proc.returncode == 130, err
    assert "Traceback" not in err, err
    assert err.strip().splitlines()[-1] == "codesign: interrupted", err
    assert err.count("codesign:") == 1, err
