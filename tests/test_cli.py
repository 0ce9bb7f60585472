"""The command line, in process: distill's outputs, config files, saved students, user errors."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import codesign
from codesign.cli import main

pytestmark = [
    pytest.mark.usefixtures("one_thread", "digits_teacher"),  # the seed-0 mlp teacher is cached
    pytest.mark.filterwarnings("ignore:.*torch.jit.*deprecated:FutureWarning"),
]

ROOT = Path(__file__).resolve().parents[1]
METRIC_KEYS = {
    "dataset", "teacher", "teacher_test_accuracy", "method", "dictionary", "pca_rank", "seed", "n_features",
    "test_accuracy", "train_accuracy", "fit_seconds", "iterations", "loss_evals", "final_loss", "condition_number",
}


def cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def cli_json(capsys, *args: str) -> dict:
    code, out, err = cli(capsys, "distill", "--json", *args)
    assert code == 0, err
    return json.loads(out)


def without_timing(m: dict) -> dict:
    return {k: v for k, v in m.items() if k != "fit_seconds"}


@pytest.fixture
def ts_teacher(digits, tmp_path):
    """A briefly trained linear TorchScript teacher, saved as a file."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    x, y = torch.from_numpy(digits.x_train), torch.from_numpy(digits.y_train)
    for _ in range(150):
        opt.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    path = tmp_path / "teacher.pt"
    torch.jit.script(net.eval()).save(str(path))
    return path


# --------------------------------------------------------------------------- distill


def test_distill_prints_test_accuracy(capsys):
    code, out, err = cli(capsys, "distill", "--pca-rank", "10")
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0].startswith("dataset digits  teacher mlp (test 0.9")
    assert "n_features 66" in lines[1] and "monomial(degree=2)" in lines[1]
    acc = float(lines[2].split()[1])
    assert lines[2].startswith("test_accuracy ") and acc > 0.95


def test_distill_json_keys_and_values(capsys, digits_teacher, digits):
    m = cli_json(capsys, "--pca-rank", "10", "--method", "naive")
    assert METRIC_KEYS <= set(m)
    assert m["dataset"] == "digits" and m["method"] == "naive" and m["pca_rank"] == 10
    assert m["n_features"] == 66 and m["condition_number"] > 1
    assert m["teacher_test_accuracy"] == pytest.approx(digits_teacher.test_accuracy(digits))
    assert 0.9 < m["test_accuracy"] <= 1 and m["fit_seconds"] >= 0


def test_same_seed_same_numbers(capsys):
    a = cli_json(capsys, "--pca-rank", "12", "--seed", "0")
    b = cli_json(capsys, "--pca-rank", "12", "--seed", "0")
    assert without_timing(a) == without_timing(b)


def test_seed_moves_rbf_centres_and_nothing_else_is_random(capsys, ts_teacher):
    args = ("--teacher", str(ts_teacher), "--dictionary", "rbf", "--centers", "25", "--pca-rank", "6")
    a = cli_json(capsys, *args, "--seed", "1")
    b = cli_json(capsys, *args, "--seed", "1")
    c = cli_json(capsys, *args, "--seed", "2")
    assert without_timing(a) == without_timing(b)
    assert a["n_features"] == 1 + 6 + 25 and a["dictionary"] == "rbf(centers=25)"
    assert a["final_loss"] != c["final_loss"]


def test_distill_with_rff_dictionary(capsys, ts_teacher):
    args = ("--teacher", str(ts_teacher), "--dictionary", "rff", "--features", "60", "--bandwidth", "0.8",
            "--pca-rank", "8")
    a = cli_json(capsys, *args, "--seed", "1")
    b = cli_json(capsys, *args, "--seed", "2")
    assert a["n_features"] == 1 + 8 + 60 and a["dictionary"] == "rff(features=60, bandwidth=0.8)"
    assert a["test_accuracy"] > 0.9 and a["final_loss"] != b["final_loss"]  # the seed draws W and u


def test_torchscript_teacher_end_to_end(capsys, ts_teacher):
    m = cli_json(capsys, "--teacher", str(ts_teacher), "--dataset", "digits", "--pca-rank", "10")
    assert {"test_accuracy", "n_features", "fit_seconds"} <= set(m)
    assert m["teacher"] == str(ts_teacher) and m["n_features"] == 66
    assert m["teacher_test_accuracy"] > 0.9 and m["test_accuracy"] > 0.9
    assert m["fit_seconds"] >= 0


def test_factory_teacher_end_to_end(capsys, tmp_path, monkeypatch):
    (tmp_path / "cli_factory_teacher.py").write_text(
        "from torch import nn\n\ndef make():\n    return nn.Sequential(nn.Flatten(), nn.Linear(64, 10))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "cli_factory_teacher", raising=False)
    torch.manual_seed(1)
    weights = tmp_path / "w.pt"
    torch.save(nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).state_dict(), weights)
    m = cli_json(capsys, "--teacher", "cli_factory_teacher:make", "--teacher-weights", str(weights),
                 "--pca-rank", "5", "--method", "labels")
    assert m["teacher"] == "cli_factory_teacher:make" and m["method"] == "labels"
    assert m["test_accuracy"] > 0.85  # labels ignore the (random) teacher


# --------------------------------------------------------------------------- config files


def test_config_toml_and_flag_override(capsys, tmp_path):
    cfg = tmp_path / "run.toml"
    cfg.write_text('pca_rank = 8\ndegree = 3\nmethod = "labels"\ntemperature = 3.0\n')
    m = cli_json(capsys, "--config", str(cfg))
    assert m["pca_rank"] == 8 and m["n_features"] == math.comb(11, 3) and m["method"] == "labels"
    m2 = cli_json(capsys, "--config", str(cfg), "--pca-rank", "6", "--method", "kd")
    assert m2["pca_rank"] == 6 and m2["n_features"] == math.comb(9, 3) and m2["method"] == "kd"


@pytest.mark.parametrize("suffix", [".yaml", ".yml"])
def test_config_yaml_with_dashed_keys(capsys, tmp_path, suffix):
    cfg = tmp_path / ("run" + suffix)
    cfg.write_text("pca-rank: 7\ndictionary: monomial\ndegree: 2\nmethod: naive\n")
    m = cli_json(capsys, "--config", str(cfg))
    assert m["pca_rank"] == 7 and m["n_features"] == math.comb(9, 2) and m["method"] == "naive"
    m = cli_json(capsys, "--config", str(cfg), "--degree", "1")
    assert m["n_features"] == 8 and m["dictionary"] == "monomial(degree=1)"


def test_out_folder_and_reloaded_student(capsys, tmp_path, digits):
    out = tmp_path / "run"
    m = cli_json(capsys, "--pca-rank", "9", "--out", str(out))
    assert {p.name for p in out.iterdir()} >= {"student.pt", "metrics.json", "config.toml"}
    saved = json.loads((out / "metrics.json").read_text())
    assert without_timing(saved) == without_timing(m)

    student = codesign.load_student(out / "student.pt")
    assert student.K.shape == (10, 55)
    # Same predictions (one test sample is 1/360; the CLI's accuracy is a float32 mean).
    assert student.accuracy(digits.x_test, digits.y_test) == pytest.approx(m["test_accuracy"], abs=1e-6)
    assert student.metrics["n_features"] == 55 and student.device_layer() is None

    # The resolved config reproduces the run.
    import tomllib

    resolved = tomllib.loads((out / "config.toml").read_text())
    assert resolved["pca_rank"] == 9 and resolved["dataset"] == "digits" and "json" not in resolved
    again = cli_json(capsys, "--config", str(out / "config.toml"))
    assert without_timing(again) == without_timing(m)


def test_teacher_command_reports_the_cached_teacher(capsys, digits_teacher):
    code, out, err = cli(capsys, "teacher", "--json")
    assert code == 0
    info = json.loads(out)
    assert info["cached"] is True and info["key"] == digits_teacher.info["key"]
    assert info["test_accuracy"] == pytest.approx(digits_teacher.info["test_accuracy"])


# --------------------------------------------------------------------------- user errors


def wrong_width_teacher(tmp_path: Path) -> str:
    path = tmp_path / "seven.pt"
    torch.jit.script(nn.Sequential(nn.Flatten(), nn.Linear(64, 7))).save(str(path))
    return str(path)


def bad_config(tmp_path: Path) -> str:
    path = tmp_path / "bad.toml"
    path.write_text("pca_rank = 5\nlearning_rate_of_doom = 3\n")
    return str(path)


BAD_INPUTS = {
    "rank": (["--pca-rank", "100"], ["pca_rank=100", "64 pixels"]),
    "degree": (["--degree", "0"], ["degree=0", "[1, 10]"]),
    "dictionary": (["--dictionary", "foo"], ["unknown dictionary 'foo'", "monomial", "rbf"]),
    "teacher_width": (["--teacher", wrong_width_teacher], ["outputs 7 values", "10 classes"]),
    "data_root": (["--dataset", "mnist", "--data-root", "/nonexistent"], ["/nonexistent/mnist", "not found"]),
    "method": (["--method", "ridge"], ["method='ridge'", "kd, labels, naive"]),
    "set": (["--set", "phase_bits"], ["--set 'phase_bits'", "field=value"]),
    "config_key": (["--config", bad_config], ["unknown key(s) learning_rate_of_doom", "pca_rank"]),
    "config_missing": (["--config", "/nonexistent/run.toml"], ["no such file"]),
    "alpha": (["--alpha", "1.5"], ["alpha=1.5"]),
    "temperature": (["--temperature", "0"], ["temperature=0"]),
    "teacher_missing": (["--teacher", "/nonexistent/net.pt"], ["no such TorchScript file"]),
    "max_memory": (["--max-memory", "1K"], ["would need", "--max-memory is 1.0 KiB"]),
    "max_memory_text": (["--max-memory", "lots"], ["max_memory='lots'"]),
}


if not torch.cuda.is_available():  # an untrained teacher on an absent GPU: refused before training
    BAD_INPUTS["torch_device"] = (["--torch-device", "cuda", "--teacher-epochs", "1"], ["sees no CUDA device"])


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_exits_2_with_one_line(capsys, tmp_path, case):
    args, fragments = BAD_INPUTS[case]
    args = [a(tmp_path) if callable(a) else a for a in args]
    code, out, err = cli(capsys, "distill", *args)
    assert code == 2
    assert out == ""
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("codesign: error: ")
    for fragment in fragments:
        assert fragment in lines[0]


def test_unknown_device_lists_installed_devices(capsys):
    from codesign.devices import list_devices

    code, out, err = cli(capsys, "distill", "--device", "nosuchdevice")
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err
    assert "unknown device 'nosuchdevice'" in err and "installed devices: " in err
    for name in list_devices():
        assert name in err


def test_config_file_of_unknown_format(capsys, tmp_path):
    path = tmp_path / "run.ini"
    path.write_text("[x]\n")
    code, _, err = cli(capsys, "distill", "--config", str(path))
    assert code == 2 and "unknown format '.ini'" in err


def test_unparsable_config_file(capsys, tmp_path):
    path = tmp_path / "run.toml"
    path.write_text("pca_rank = = 3\n")
    code, _, err = cli(capsys, "distill", "--config", str(path))
    assert code == 2 and "cannot parse" in err and len(err.splitlines()) == 1


def test_teacher_command_bad_torch_device(capsys):
    code, out, err = cli(capsys, "teacher", "--torch-device", "tpu")
    assert code == 2 and out == "" and err == "codesign: error: torch_device='tpu': expected one of cpu, cuda\n"


def test_debug_shows_the_exception(capsys):
    from codesign.errors import ConfigError

    with pytest.raises(ConfigError, match="pca_rank=100"):
        main(["distill", "--pca-rank", "100", "--debug"])


def test_argparse_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as err:
        main(["distill", "--no-such-flag"])
    assert err.value.code == 2
    assert "unrecognized arguments: --no-such-flag" in capsys.readouterr().err


def test_stderr_is_one_line_in_a_fresh_process(tmp_path):
    """The whole stderr of a real process, library start-up noise included, is the one error line."""
    proc = subprocess.run(
        [sys.executable, "-m", "codesign.cli", "distill", "--device", "nosuchdevice"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.splitlines() == [proc.stderr.strip()], proc.stderr
    assert proc.stderr.startswith("codesign: error: unknown device 'nosuchdevice'")
