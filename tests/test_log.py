"""The ``codesign`` logger hierarchy and the command line's -v / -q."""

from __future__ import annotations

import io
import logging

import pytest

from codesign.cli import main
from codesign.log import configure_logging, get_logger

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def restore_logger():
    logger = logging.getLogger("codesign")
    level, handlers, propagate = logger.level, list(logger.handlers), logger.propagate
    yield
    logger.setLevel(level)
    logger.handlers[:] = handlers
    logger.propagate = propagate


def test_hierarchy_and_levels():
    assert get_logger("codesign.teachers").parent is logging.getLogger("codesign")
    assert get_logger("datasets").name == "codesign.datasets"
    assert any(isinstance(h, logging.NullHandler) for h in logging.getLogger("codesign").handlers)
    out = io.StringIO()
    configure_logging(0, out)
    get_logger("x").debug("hidden")
    get_logger("x").info("shown %d", 1)
    configure_logging(-1, out)  # a second call replaces the handler: no line twice
    get_logger("x").info("hidden too")
    get_logger("x").warning("a warning")
    configure_logging(2, out)
    get_logger("x").debug("detail")
    assert out.getvalue().splitlines() == ["shown 1", "a warning", "[codesign.x] detail"]


def _distill(capsys, *flags, epochs):
    args = ["distill", "--dataset", "iris", "--pca-rank", "2", "--teacher-epochs", str(epochs), *flags]
    assert main(args) == 0
    return capsys.readouterr()


def test_cli_verbosity(capsys):
    # each run trains a new teacher (another epoch count): INFO says so unless -q
    plain = _distill(capsys, epochs=3)
    assert plain.err.startswith("training the mlp teacher on iris (120 samples, 3 epochs")
    assert "test_accuracy" in plain.out
    quiet = _distill(capsys, "-q", epochs=4)
    assert "training" not in quiet.err and "test_accuracy" in quiet.out
    loud = _distill(capsys, "-v", epochs=5)
    assert "[codesign.teachers] training the mlp teacher on iris" in loud.err
    assert "[codesign.datasets] data set iris: 120 train / 30 test rows of 4 features, 3 classes" in loud.err
    again = _distill(capsys, "--verbose", epochs=5)  # the same teacher: a cache hit, said at -v
    assert "teacher mlp on iris from the cache" in again.err and "training" not in again.err
