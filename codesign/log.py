"""The ``codesign`` logger hierarchy and the command line's verbosity.

Every module logs to ``logging.getLogger("codesign.<module>")`` (:func:`get_logger`); the
``codesign`` logger carries a :class:`logging.NullHandler`, so a program importing codesign
decides where its messages go, as for any library. The command line calls
:func:`configure_logging` with its ``-v``/``-q`` count: by default it says what it is doing
(``INFO``: a teacher being trained, a data set read from files), ``-v`` adds detail
(``DEBUG``: cache hits, content hashes), ``-q`` keeps warnings only and ``-qq`` errors only.
Progress bars are not log messages and stay either way.

In a notebook::

    import codesign
    codesign.configure_logging(1)   # DEBUG lines on stderr
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

LOGGER_NAME = "codesign"
#: verbosity (``-v`` count minus ``-q`` count) -> level
LEVELS = {-2: logging.ERROR, -1: logging.WARNING, 0: logging.INFO, 1: logging.DEBUG}

logging.getLogger(LOGGER_NAME).addHandler(logging.NullHandler())


def get_logger(name: str) -> logging.Logger:
    """The logger of module ``name`` (``codesign.teachers`` -> itself; ``teachers`` -> ``codesign.teachers``)."""
    return logging.getLogger(name if name == LOGGER_NAME or name.startswith(LOGGER_NAME + ".")
                             else f"{LOGGER_NAME}.{name}")


class _Handler(logging.StreamHandler):
    """The handler :func:`configure_logging` installs (found again and replaced on a second call)."""


def configure_logging(verbosity: int = 0, stream: TextIO | None = None) -> logging.Logger:
    """Send the ``codesign`` loggers' messages to ``stream`` (stderr) at the level of ``verbosity``.

    Args:
        verbosity: ``-v`` count minus ``-q`` count: ``-2`` errors only, ``-1`` warnings, ``0``
            what is being done (INFO, the default), ``1`` or more detail (DEBUG).
        stream: where the lines go (default: ``sys.stderr`` at the time of each message).

    Returns:
        The ``codesign`` logger.
    """
    logger = logging.getLogger(LOGGER_NAME)
    level = LEVELS[max(-2, min(1, int(verbosity)))]
    logger.setLevel(level)
    for h in [h for h in logger.handlers if isinstance(h, _Handler)]:
        logger.removeHandler(h)
    handler = _Handler(stream) if stream is not None else _StderrHandler()
    # plain lines, as the commands always printed them ("codesign: error: ..." stays the only prefixed
    # line); with -v each says which module it comes from
    fmt = "[%(name)s] %(message)s" if level <= logging.DEBUG else "%(message)s"
    handler.setFormatter(logging.Formatter(fmt))
    logger.addHandler(handler)
    logger.propagate = False  # one line per message, not a second one from the root logger
    return logger


class _StderrHandler(_Handler):
    """Writes to whatever ``sys.stderr`` is when a message arrives (pytest and notebooks replace it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)
