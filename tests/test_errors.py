"""The error hierarchy, the range/choice checks, and how the CLI reports errors."""

from __future__ import annotations

import math

import pytest

from codesign import cli
from codesign.errors import (
    CodesignError,
    ConfigError,
    DataError,
    NumericalError,
    ResourceError,
    TeacherError,
    check_choice,
    check_range,
)


@pytest.mark.parametrize("cls", [ConfigError, DataError, TeacherError, NumericalError, ResourceError])
def test_every_error_is_a_codesign_error(cls):
    assert issubclass(cls, CodesignError) and issubclass(cls, Exception)


def test_config_error_is_also_value_error():
    with pytest.raises(ValueError):
        check_range("x", 5, 0, 1)


@pytest.mark.parametrize("value", [0, 1, 0.5, 1.0])
def test_check_range_accepts_bounds(value):
    check_range("x", value, 0, 1)


@pytest.mark.parametrize("value,match", [
    (-0.1, r"x=-0\.1 is out of range: allowed \[0, 1\]"),
    (2, r"x=2 is out of range: allowed \[0, 1\]"),
    (math.nan, r"x=nan: expected a finite number in \[0, 1\]"),
    (math.inf, "finite"),
    ("0.5", r"x='0\.5': expected a number"),
    (True, "expected a number"),
    (None, "expected a number"),
])
def test_check_range_refuses(value, match):
    with pytest.raises(ConfigError, match=match):
        check_range("x", value, 0, 1)


def test_check_range_integers():
    check_range("n", 3, 1, None, integer=True)
    with pytest.raises(ConfigError, match=r"n=2\.0: expected an integer in \[1, inf\)"):
        check_range("n", 2.0, 1, None, integer=True)
    with pytest.raises(ConfigError, match="expected an integer"):
        check_range("n", True, 0, 5, integer=True)
    with pytest.raises(ConfigError, match=r"allowed \(-inf, 5\]"):
        check_range("n", 6, None, 5, integer=True)


def test_check_range_unbounded():
    check_range("x", -1e300, None, None)
    with pytest.raises(ConfigError, match=r"\(-inf, inf\)"):
        check_range("x", "a", None, None)


def test_check_choice():
    check_choice("m", "b", ("a", "b"))
    with pytest.raises(ConfigError, match="m='c': expected one of a, b"):
        check_choice("m", "c", ("a", "b"))
    with pytest.raises(ConfigError, match="expected one of 1, 2"):
        check_choice("k", 3, [1, 2])


# --------------------------------------------------------------------------- CLI reporting


@pytest.fixture
def failing_distill(monkeypatch):
    def install(exc: BaseException):
        def cmd(args):
            raise exc

        monkeypatch.setattr(cli, "cmd_distill", cmd)

    return install


@pytest.mark.parametrize("cls", [ConfigError, DataError, TeacherError, NumericalError, ResourceError])
def test_cli_prints_user_errors_as_one_line(capsys, failing_distill, cls):
    failing_distill(cls("something is off"))
    assert cli.main(["distill"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err == "codesign: error: something is off\n"


def test_cli_folds_a_multi_line_message(capsys, failing_distill):
    failing_distill(TeacherError("first part:\n  detail one\n\n  detail two\n"))
    assert cli.main(["distill"]) == 2
    assert capsys.readouterr().err == "codesign: error: first part:; detail one; detail two\n"


def test_cli_keeps_tracebacks_of_bugs(failing_distill):
    failing_distill(ZeroDivisionError("a bug"))
    with pytest.raises(ZeroDivisionError, match="a bug"):
        cli.main(["distill"])


def test_cli_interrupt(capsys, failing_distill):
    failing_distill(KeyboardInterrupt())
    assert cli.main(["distill"]) == 130
    assert capsys.readouterr().err == "codesign: interrupted\n"
