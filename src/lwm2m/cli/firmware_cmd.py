"""``lwm2m firmware``: the firmware packages a running server hosts for its devices, through its REST
API (``/api/firmware``).

::

    lwm2m firmware add lamp-2.1.0.bin --version 2.1.0            # name: the file's, lamp-2.1.0
    lwm2m firmware add build/fw.bin --version 2.2.0 --name lamp
    lwm2m firmware list
    lwm2m firmware rm 3q2vY0x8Qm6Jd1wOqkF7Vg

``add`` prints the package's id, size, SHA-256 and the URIs devices pull it from (their
Package URI, /5/0/1): ``coap://…/fw/ID/NAME@VERSION`` and ``http://…/fw/ID/NAME@VERSION``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import click

from lwm2m.cli import main
from lwm2m.cli.errors import fail
from lwm2m.cli.remote import api_call
from lwm2m.errors import HttpError
from lwm2m.transport.http import HttpClient, url_path

UPLOAD_TIMEOUT = 300.0  # seconds an upload may take (a package may be tens of MiB)
DEFAULT_API = "http://127.0.0.1:8080"


def _api_options(f: Any) -> Any:
    f = click.option(
        "--api-token", default=None, envvar="LWM2M_API_TOKEN", help="bearer token of the REST API"
    )(f)
    api = click.option("--api", default=DEFAULT_API, show_default=True, help="the running server's base URL")
    return api(f)


def _upload(api: str, token: str | None, name: str, version: str, data: bytes) -> tuple[int, Any]:
    """``POST /api/firmware`` with ``data`` as the body: the status and the decoded answer."""
    headers = {"Accept": "application/json", "Content-Type": "application/octet-stream"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        client = HttpClient(api, headers=headers, timeout=UPLOAD_TIMEOUT, keep_alive=False)
    except ValueError as exc:
        fail(f"--api {exc}")
    query = "?" + urlencode({"name": name, "version": version})  # "+" is "%2B", not a space

    async def call() -> Any:
        async with client:
            return await client.request("POST", "/api/firmware" + query, body=data)

    try:
        answer = asyncio.run(call())
    except HttpError as exc:
        fail(f"--api {exc}")
    decoded = answer.json()
    if answer.ok:
        return answer.status, decoded
    detail = decoded.get("error") if isinstance(decoded, dict) else None
    return answer.status, {"error": detail or answer.reason or answer.status}


def _describe(package: dict[str, Any]) -> str:
    what = f"{package['name']} {package['version']}"
    return f"{package['id']}  {what}  {package['size']} bytes  sha256 {package['sha256']}"


@main.group()
def firmware() -> None:
    """Firmware packages the server hosts for devices to pull (coap[s]://…/fw/ID, http://…/fw/ID)."""


@firmware.command("add")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--version", "version", required=True, help="the package's version, e.g. 2.1.0")
@click.option("--name", default=None, help="the package's name (default: the file's name without suffix)")
@_api_options
def add(file: Path, version: str, name: str | None, api: str, api_token: str | None) -> None:
    """Upload FILE as a firmware package."""
    from lwm2m.errors import InvalidPackage
    from lwm2m.fleet.packages import check_name, check_version

    name = name if name is not None else file.stem
    try:
        check_name(name)
        check_version(version)
    except InvalidPackage as exc:
        fail(f"{exc} (see --name and --version)")
    data = file.read_bytes()
    if not data:
        fail(f"{file}: the file is empty")
    status, answer = _upload(api, api_token, name, version, data)
    if status != 201:
        fail(f"{file}: {answer['error']}")
    click.echo(f"added {_describe(answer)}")
    for scheme, uri in sorted(answer.get("uris", {}).items()):
        click.echo(f"  {scheme}: {uri}")


@firmware.command("list")
@_api_options
def list_(api: str, api_token: str | None) -> None:
    """The packages, oldest first."""
    status, answer = api_call(api, api_token, "GET", "/api/firmware")
    if status != 200:
        fail(str(answer["error"]))
    if not answer:
        click.echo("no firmware packages")
    for package in answer:
        click.echo(_describe(package))


@firmware.command("rm")
@click.argument("package_id", metavar="ID")
@_api_options
def remove(package_id: str, api: str, api_token: str | None) -> None:
    """Delete the package ID: its URIs answer 4.04/404 from then on."""
    status, answer = api_call(api, api_token, "DELETE", url_path("api", "firmware", package_id))
    if status != 200:
        fail(f"{package_id}: {answer['error']}")
    click.echo(f"removed {package_id}")
