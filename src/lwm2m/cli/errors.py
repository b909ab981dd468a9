"""How CLI commands fail on bad input: exit code 2 and one line naming the bad value."""

from __future__ import annotations

import sys
from typing import NoReturn

import click


def fail(message: str) -> NoReturn:
    ctx = click.get_current_context(silent=True)
    prog = ctx.command_path if ctx is not None else "lwm2m"
    click.echo(f"{prog}: error: {message}", err=True)
    sys.exit(2)
