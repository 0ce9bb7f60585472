"""One source of defaults: every flag, config-file key and printed default comes from a dataclass field."""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys

import pytest

from codesign import cli
from codesign.distill import DistillConfig
from codesign.errors import ConfigError
from codesign.options import META, field_default, format_default, option_fields, option_key, resolve
from codesign.reproduce import ReproduceConfig
from codesign.search.config import SearchConfig
from codesign.students import FitConfig

#: command -> the config dataclasses its flags come from
COMMANDS = {
    "distill": (DistillConfig, FitConfig),
    "search": (SearchConfig,),
    "reproduce": (ReproduceConfig,),
    "teacher": (cli.TeacherCommand,),
}
#: flags a command adds itself (not config options)
OWN_FLAGS = {"help", "config", "debug", "out", "json", "log_verbose", "log_quiet"}  # log_*: -v/-q, the log level


def _subparser(name: str) -> argparse.ArgumentParser:
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[name]


def _fields(classes) -> dict[str, dataclasses.Field]:
    out: dict[str, dataclasses.Field] = {}
    for cls in classes:
        for f, opt in option_fields(cls):
            out.setdefault(option_key(f, opt), f)
    return out


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_flag_prints_its_dataclass_default(command):
    """Each flag's help ends with the default of the field it comes from, formatted once."""
    fields = _fields(COMMANDS[command])
    dict_params = cli.dictionary_params() if command == "distill" else {}
    seen = set()
    for action in _subparser(command)._actions:
        if action.dest in OWN_FLAGS and action.dest not in fields:
            continue
        if action.dest in dict_params:
            for name, f in dict_params[action.dest]:
                assert f"{name}: {field_default(f)}" in action.help, (action.dest, action.help)
            seen.add(action.dest)
            continue
        assert action.dest in fields, f"--{action.dest} of {command} is declared on no config dataclass"
        f = fields[action.dest]
        opt = f.metadata[META]
        shown = opt.show_default if opt.show_default is not None else format_default(field_default(f))
        assert action.help.endswith(f"(default: {shown})".replace("%", "%%")), (action.dest, action.help)
        assert action.default is None  # so that a --config file can fill what the flags leave out
        seen.add(action.dest)
    assert set(fields) <= seen, f"options without a flag: {set(fields) - seen}"


def test_help_shows_real_defaults_and_registered_choices(capsys):
    with pytest.raises(SystemExit):
        cli.main(["distill", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "PCA rank r (default: 20)" in text
    assert "hardware instances drawn for evaluation (default: 5)" in text
    for device in ("ideal", "photonic_mzi", "analog_crossbar", "fpga_fixed_point"):
        assert device in text  # registered devices are the --device choices
    assert "monomial" in text and "rbf" in text  # registered dictionaries
    assert "--aware-steps AWARE_STEPS Adam steps of hardware-aware training (--protocol aware) (default: 200)" in text
    assert "instead of --aware-steps (default: none: --aware-steps counts)" in text
    with pytest.raises(SystemExit):
        cli.main(["search", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: 0.1)" in text and "trials in the search (default: 16)" in text


def test_search_shares_distill_declarations():
    """Options the search shares with distill are declared once (same help and default)."""
    dist, search = _fields([DistillConfig, FitConfig]), _fields([SearchConfig])
    for key in ("dataset", "teacher", "seed", "protocol", "method", "eval_time", "preset"):
        assert search[key].metadata[META].help == dist[key].metadata[META].help
        assert field_default(search[key]) == field_default(dist[key])
    # defaults that differ on purpose
    assert field_default(search["validation"]) == 0.1 and field_default(dist["validation"]) == 0.0
    assert field_default(search["device"]) == "ideal" and field_default(dist["device"]) is None


def test_config_dataclass_defaults_build_valid_configs():
    assert DistillConfig().fit == FitConfig()
    opts = resolve(None, {}, [SearchConfig], "search")
    assert SearchConfig.from_options({**opts, "set": {}}) == SearchConfig()


def test_config_file_keys_are_the_flags(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("pca_rank = 4\nnot_an_option = 1\n")
    with pytest.raises(ConfigError, match="unknown key\\(s\\) not_an_option for 'distill'.*pca_rank"):
        cli.resolve_distill(None, {"pca_rank": 4, "not_an_option": 1})
    opts = cli.resolve_distill(None, {"pca-rank".replace("-", "_"): 4, "eval_time": "1d", "degree": 3})
    cfg = cli.distill_config_from(opts)
    assert cfg.pca_rank == 4 and cfg.eval_time_s == 86400.0 and cfg.dictionary_kwargs["degree"] == 3


def test_dictionary_parameter_of_another_family_is_refused():
    opts = cli.resolve_distill(None, {"dictionary": "monomial", "centers": 50})
    with pytest.raises(ConfigError, match="centers is a parameter of rbf, not of 'monomial'"):
        cli.distill_config_from(opts)


@pytest.mark.parametrize("text, seconds", [("30s", 30.0), ("1h", 3600.0), ("1d", 86400.0), ("1y", 31_557_600.0),
                                           ("10y", 315_576_000.0), ("3600", 3600.0), (2.5, 2.5)])
def test_eval_time_units(text, seconds):
    assert DistillConfig(eval_time_s=text).eval_time_s == seconds


@pytest.mark.parametrize("text", ["1 fortnight", "-1s", "h", "nan", True])
def test_eval_time_refuses_bad_values(text):
    with pytest.raises(ConfigError, match="eval_time"):
        DistillConfig(eval_time_s=text)


def test_python_dash_m_codesign():
    run = subprocess.run([sys.executable, "-m", "codesign", "devices"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "photonic_mzi" in run.stdout and "presets" in run.stdout


def test_distill_preset_and_eval_time_reach_the_device(digits_teacher, capsys):
    """--preset picks a published chip, --set overrides its fields, --eval-time is when it is read."""
    args = ["distill", "--pca-rank", "8", "--device", "analog_crossbar", "--preset", "ibm_hermes",
            "--set", "adc_bits=6", "--hw-draws", "2", "--json"]
    assert cli.main([*args, "--eval-time", "1y"]) == 0
    year = json.loads(capsys.readouterr().out)
    assert year["device_preset"] == "ibm_hermes" and year["eval_time_s"] == 31_557_600.0
    assert year["device_config"]["tile_rows"] == 256 and year["device_config"]["adc_bits"] == 6
    assert cli.main([*args, "--eval-time", "1s"]) == 0
    second = json.loads(capsys.readouterr().out)
    assert second["test_accuracy"] == year["test_accuracy"]  # the same float student
    assert second["hw_accuracies"] != year["hw_accuracies"]  # read at another time after programming
    assert cli.main(["distill", "--device", "ideal", "--preset", "no_such_chip"]) == 2
    assert "its presets: horowitz45_fp32" in capsys.readouterr().err


def test_search_config_carries_the_preset_to_every_trial():
    cfg = SearchConfig(device="analog_crossbar", device_preset="isaac", device_overrides={"adc_bits": 6})
    base = cfg.trial_base()
    assert base.device_preset == "isaac" and dict(base.device_overrides) == {"adc_bits": 6}
    assert SearchConfig.from_options(cfg.options()) == cfg


@pytest.mark.parametrize("value, annotation, match", [
    ("x", "int", "expected an integer"),
    (True, "int", "expected an integer"),
    (1.5, "int | None", "expected an integer"),
    (3, "str", "expected a string"),
    ("x", "float", "expected a number"),
    ("yes", "bool", "expected true or false"),
    (5, "tuple[str, ...]", "expected a list of strings"),
    ([1, "a"], "tuple[int, ...]", "expected a list of integers"),
    ([1], "tuple[int, int]", "expected a list of 2 integers"),
    ([], "str | int | None", "expected a string or an integer"),
])
def test_config_values_are_type_checked(value, annotation, match):
    from codesign.options import check_type

    with pytest.raises(ConfigError, match=match):
        check_type("key", value, annotation)


@pytest.mark.parametrize("value, annotation", [
    (None, "int | None"), (3, "float"), ("mnist", "tuple[str, ...]"), ([2, 40], "tuple[int, int]"),
    ("8G", "str | int | None"), (8, "str | int | None"), ({"a": 1}, "tuple[tuple[str, Any], ...]"), (1, "Any"),
])
def test_config_values_of_the_right_type_pass(value, annotation):
    from codesign.options import check_type

    check_type("key", value, annotation)
