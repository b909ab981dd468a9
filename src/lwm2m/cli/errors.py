"""How CLI commands fail on bad input: exit code 2 and one line naming the bad value."""

from __future__ import annotations

import errno
import sys
from collections.abc import Mapping
from typing import NoReturn

import click


def fail(message: str) -> NoReturn:
    ctx = click.get_current_context(silent=True)
    prog = ctx.command_path if ctx is not None else "lwm2m"
    click.echo(f"{prog}: error: {message}", err=True)
    sys.exit(2)


def bind_failure(exc: OSError, ports: Mapping[str, int | None]) -> str | None:
    """The one line for a port that could not be taken, naming the option that set it.

    ``exc.filename`` is the address (``host:port``) the transport's binds put there; ``ports``
    maps each option to its value. None when ``exc`` is not such a failure.
    """
    where = exc.filename
    if not isinstance(where, str) or exc.errno is None:
        return None
    text = where.rpartition(":")[2]
    port = int(text) if text.isdigit() else None
    options = [option for option, value in ports.items() if value is not None and value == port]
    named = f"{' / '.join(options)} {port}" if options else f"port {port}"
    if exc.errno == errno.EADDRINUSE:
        return f"{named}: {where} is already in use (another process listens there); choose another port"
    if exc.errno == errno.EACCES:
        return f"{named}: not allowed to listen on {where} (ports below 1024 need privileges)"
    return f"{named}: cannot listen on {where}: {exc.strerror}"
