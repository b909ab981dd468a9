"""The OpenAPI document against the server it describes: schemathesis (``st run --checks
all``: status codes, content types, headers, response schemas, schema-invalid data refused,
schema-valid data accepted, undocumented methods answered 405 with ``Allow``, ...) sends
generated requests to a live server on loopback with two of our own client devices
registered, and must find no failure.

The CLI runs in a subprocess with the hooks of :mod:`tests.web.schemathesis_hooks` (the
endpoint names of the devices, short device timeouts, the rules a JSON schema cannot say).
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from lwm2m.cli.server_cmd import http_server, start_http
from lwm2m.client import LwM2MClient
from lwm2m.client.instance import ObjectInstance
from lwm2m.server.server import LwM2MServer
from lwm2m.web.app import create_app

pytest.importorskip("schemathesis", reason="schemathesis is installed by `make test`")

ROOT = Path(__file__).resolve().parents[2]
ENDPOINTS = ("dev-1", "dev-2")


@pytest.fixture
async def live() -> AsyncIterator[str]:
    async with LwM2MServer("127.0.0.1", 0) as server:
        http = http_server(create_app(server), "127.0.0.1", 0)
        task, base = await start_http(http, "127.0.0.1", 0)
        temperature = ObjectInstance(0, {5700: 21.5, 5701: "Cel"}, object_id=3303)
        clients = [LwM2MClient(ep, server.uri, [temperature]) for ep in ENDPOINTS]
        try:
            for client in clients:
                await client.start()
            async with asyncio.timeout(10):
                while len((await server.store.registrations.page(None, 10)).registrations) < len(clients):
                    await asyncio.sleep(0.05)
            yield base
        finally:
            for client in clients:
                await client.stop()
            http.should_exit = True
            await task


@pytest.mark.timeout(300)
async def test_schemathesis_finds_no_failure(live: str, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "SCHEMATHESIS_HOOKS": "tests.web.schemathesis_hooks",
        "LWM2M_TEST_ENDPOINTS": ",".join(ENDPOINTS),
    }
    command = [
        *(sys.executable, "-m", "schemathesis.cli", "run", f"{live}/api/openapi.json"),
        *("--checks", "all", "--max-examples", "3", "--request-timeout", "5"),
        *("--seed", "1", "--no-color", "--report-dir", str(tmp_path)),
    ]
    run = await asyncio.create_subprocess_exec(
        *command, env=env, cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    output, _ = await run.communicate()
    text = output.decode(errors="replace")
    assert run.returncode == 0, text[-8000:]
    assert "No issues found" in text or " passed" in text
