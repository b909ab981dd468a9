"""Diagnostics of the long-running commands (``server``, ``bootstrap``, ``demo``) through the
standard ``logging`` module: one ``--log-level`` option and one line format.

Every module logs to a logger named after it (``lwm2m.server.registrar``,
``lwm2m.transport.dtls``, ...); the option sets the level of the ``lwm2m`` logger, so the
web server and other libraries keep their own (warnings and errors only, on the same
handler). DEBUG adds a line per CoAP message (logger ``lwm2m.transport.wire``).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

import click

__all__ = ["LEVELS", "LOG_FORMAT", "configure_logging", "log_level_option"]

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler this module installs, told apart from others so that it is replaced, not doubled."""


def log_level_option(default: str = "INFO") -> Callable[[Any], Any]:
    """``--log-level`` (DEBUG, INFO, WARNING or ERROR, any case); a bad value is a usage error."""
    return click.option(
        "--log-level",
        type=click.Choice(LEVELS, case_sensitive=False),
        default=default,
        show_default=True,
        help="diagnostics on stderr: DEBUG adds a line per CoAP message",
    )


def configure_logging(level: str) -> None:
    """Log ``lwm2m.*`` from ``level`` up, everything else from WARNING up, to stderr."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(handler)
    handler = _Handler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root.addHandler(handler)
    if root.level == logging.NOTSET or root.level > logging.WARNING:
        root.setLevel(logging.WARNING)
    logging.getLogger("lwm2m").setLevel(level.upper())
    _lean_records()


def _lean_records() -> None:
    """Records without what ``LOG_FORMAT`` does not show: the caller's file, line and function,
    the thread and the process (the logging HOWTO's "Optimization"). Looking them up cost some
    10 µs of the ~30 µs a line costs, and INFO writes a line per Register: in a registration
    storm, that line is a third of a Register's CPU time."""
    logging._srcfile = None  # type: ignore[attr-defined]
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
