"""What the commands that manage stored entries share: the ``--data``/``--api``/``--api-token``
options, and JSON calls to a running server's REST API with errors as one line."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import click

from lwm2m.cli.errors import fail


def api_call(api: str, token: str | None, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """``method path`` on the REST API at ``api``: the HTTP status and the decoded JSON answer
    (``{"error": ...}`` for an HTTP error). An unreachable server ends the command with a message."""
    url = api.rstrip("/") + path
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Accept", "application/json")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read() or b"null")
    except urllib.error.HTTPError as exc:
        try:
            detail = json.loads(exc.read()).get("error", exc.reason)
        except (ValueError, AttributeError):
            detail = exc.reason
        return exc.code, {"error": detail}
    except (urllib.error.URLError, OSError) as exc:
        fail(f"--api {api}: {getattr(exc, 'reason', exc)}")


def store_options(
    data: str, data_help: str, api_example: str
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--data`` (default ``data``), ``--api`` and ``--api-token`` on a command."""
    options = [
        click.option("--data", default=data, show_default=True, help=data_help),
        click.option("--api", default=None, help=f"a running server's base URL, e.g. {api_example}"),
        click.option(
            "--api-token", default=None, envvar="LWM2M_API_TOKEN", help="bearer token of the REST API"
        ),
    ]

    def decorate(f: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(options):
            f = option(f)
        return f

    return decorate
