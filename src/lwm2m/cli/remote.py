"""What the commands that manage stored entries share: the ``--data``/``--api``/``--api-token``
options, and JSON calls to a running server's REST API with errors as one line."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import click

from lwm2m.cli.errors import fail
from lwm2m.errors import HttpError
from lwm2m.transport.http import HttpClient

TIMEOUT = 10.0  # seconds a call may take


def api_call(
    api: str, token: str | None, method: str, path: str, body: Any = None, *, timeout: float = TIMEOUT
) -> tuple[int, Any]:
    """``method path`` on the REST API at ``api``: the HTTP status and the decoded JSON answer
    (``{"error": ...}`` for an answer other than 2xx), within ``timeout`` seconds. An unreachable
    server ends the command with a message. The call goes through the package's HTTP client
    (``lwm2m.transport.http``)."""
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        client = HttpClient(api, headers=headers, timeout=timeout, keep_alive=False)
    except ValueError as exc:
        fail(f"--api {exc}")

    async def call() -> Any:
        async with client:
            if body is None:
                return await client.request(method, path)
            return await client.request(method, path, json=body)

    try:
        answer = asyncio.run(call())
    except HttpError as exc:
        fail(f"--api {exc}")  # the message starts with the URL
    decoded = answer.json()
    if answer.ok:
        return answer.status, decoded
    detail = decoded.get("error") if isinstance(decoded, dict) else None
    return answer.status, {"error": detail or answer.reason or answer.status}


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
