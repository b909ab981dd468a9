"""The OpenAPI document against the server it describes: schemathesis (``st run --checks
all``: status codes, content types, headers, response schemas, schema-invalid data refused,
schema-valid data accepted, undocumented methods answered 405 with ``Allow``, ...) sends
generated requests to a live server on loopback with two of our own client devices
registered and a bootstrap server beside it (as ``lwm2m server --bootstrap-port`` runs one, so
that ``/api/bootstrap`` is in the document), and must find no failure.

The CLI runs in a subprocess with the hooks of :mod:`tests.web.schemathesis_hooks` (the
endpoint names of the devices, short device timeouts, the rules a JSON schema cannot say).
"""

from __future__ import annotations

import asyncio
import copy
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from tests.helpers.openapi import component_validator

from lwm2m.bootstrap import BootstrapServer
from lwm2m.bootstrap.config import BootstrapServerConfig
from lwm2m.cli.server_cmd import http_server, start_http
from lwm2m.client import Client
from lwm2m.client.instance import ObjectInstance
from lwm2m.errors import ConfigError
from lwm2m.model.catalogue import load_catalogue
from lwm2m.protocol.bootstrap_config import BootstrapConfig
from lwm2m.server.config import ServerConfig
from lwm2m.server.role import Server
from lwm2m.web.app import create_app
from lwm2m.web.openapi import openapi_document

pytest.importorskip("schemathesis", reason="schemathesis is installed by `make test`")

ROOT = Path(__file__).resolve().parents[2]
ENDPOINTS = ("dev-1", "dev-2")
MODELS = load_catalogue()


@pytest.fixture
async def live() -> AsyncIterator[str]:
    async with (
        Server(ServerConfig(host="127.0.0.1", port=0)) as server,
        BootstrapServer(
            BootstrapServerConfig(host="127.0.0.1", port=0), server.store, models=server.models
        ) as bootstrap,
    ):
        http = http_server(create_app(server, bootstrap=bootstrap), "127.0.0.1", 0)
        task, base = await start_http(http, "127.0.0.1", 0)
        temperature = ObjectInstance(0, {5700: 21.5, 5701: "Cel"}, object_id=3303)
        clients = [Client(ep, server.uri, [temperature]) for ep in ENDPOINTS]
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
    # The coverage phase (every parameter's boundary and negative values, about 80 cases an
    # operation) skips the end devices' routes below an object: they are the device routes'
    # handlers with the device's path parameters, and those run the phase on the device routes;
    # the prefix parameter keeps it on the end devices' object-level routes. The other phases
    # run on every operation.
    (tmp_path / "schemathesis.toml").write_text(
        "[[operations]]\n"
        'include-path-regex = "/devices/[{]prefix[}]/.*[{]instanceId[}]"\n'
        "phases.coverage.enabled = false\n"
    )
    command = [
        *(sys.executable, "-m", "schemathesis.cli", "run", f"{live}/api/openapi.json"),
        *("--checks", "all", "--max-examples", "3", "--request-timeout", "5"),
        *("--seed", "1", "--no-color", "--report-dir", str(tmp_path)),
        # The bootstrap configuration's cross-field rules (schemathesis_hooks) filter out most
        # generated bodies; that is a cost of generation, not a failure of the API.
        "--suppress-health-check=filter_too_much",
    ]
    run = await asyncio.create_subprocess_exec(
        *command, env=env, cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    output, _ = await run.communicate()
    text = output.decode(errors="replace")
    print(text[-3000:])  # the summary, shown by pytest -rP
    assert run.returncode == 0, text[-8000:]
    assert "No issues found" in text or " passed" in text


CONFIG: dict[str, Any] = {
    "servers": [
        {
            "uri": "coaps://lwm2m.example:5684",
            "shortServerId": 101,
            "lifetime": 300,
            "binding": "UQ",
            "security": {"mode": "psk", "identity": "dev-1", "key": "00:01:02:03"},
            "defaultMinPeriod": 1,
            "defaultMaxPeriod": None,
        },
        {"uri": "coap://[2001:db8::1]/x?y", "shortServerId": 102, "security": {}},
        {
            "uri": "coaps+tcp://h",
            "shortServerId": 103,
            "security": {"mode": "x509", "certificate": "30", "privateKey": "31", "serverCertificate": ""},
        },
        {
            "uri": "coaps://h",
            "shortServerId": 104,
            "security": {"mode": "rpk", "publicKey": "aa", "privateKey": "bb"},
        },
    ],
    "deletePaths": ["/", "/1", "/3303/0"],
    "bootstrapAccountId": None,
    "accessControl": [{"objectId": 3, "objectInstanceId": 0, "acl": {"101": 31, "0": 1}, "owner": 101}],
    "objects": {"records": [{"path": "/3/0/14", "value": "+01:00", "time": None}]},
}


def _with(path: list[Any], value: Any) -> dict[str, Any]:
    body = copy.deepcopy(CONFIG)
    target: Any = body
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return body


@pytest.mark.parametrize(
    "body",
    [
        CONFIG,
        _with(["servers", 0, "security", "key"], "0a 0b"),  # bytes.fromhex would take it
        _with(["servers", 0, "security", "key"], "00" * 65),  # a PSK has at most 64 bytes
        _with(["servers", 0, "security", "identity"], ""),
        _with(["servers", 0, "security", "extra"], 1),
        _with(["servers", 0, "security", "mode"], None),
        _with(["servers", 0, "uri"], " coaps://h"),
        _with(["servers", 0, "uri"], "coaps://h:65536"),
        _with(["servers", 0, "binding"], "UX"),
        _with(["servers", 0, "notificationStoring"], None),
        _with(["servers", 3, "security", "privateKey"], ""),
        _with(["servers", 1, "shortServerId"], 65535),
        _with(["servers", 1, "uri"], "coaps://h"),  # coaps needs a key
        _with(["servers", 0, "uri"], "coap://h"),  # a key needs coaps
        _with(["servers", 0, "security"], {"mode": "nosec"}),
        _with(["servers"], []),
        _with(["deletePaths"], ["/0/1/2"]),
        _with(["deletePaths"], [""]),  # Path.parse would take it as /
        _with(["deletePaths"], ["3/0"]),
        _with(["accessControl", 0, "acl"], []),
        _with(["accessControl", 0, "acl"], {"0101": 1}),
        _with(["accessControl", 0, "acl"], None),
        _with(["accessControl", 0, "objectId"], 21),
        _with(["objects", "records", 0, "path"], "/1/0/1"),
        _with(["objects", "extra"], []),
        _with(["bootstrapDiscover"], None),
        _with(["surprise"], 1),
    ],
)
def test_the_bootstrap_configuration_schema_takes_what_the_parser_takes(body: dict[str, Any]) -> None:
    """The document's ``BootstrapConfig`` and :meth:`BootstrapConfig.from_json` agree, body by body
    (the cross-field rules aside: none of these bodies breaks one)."""
    pytest.importorskip("jsonschema_rs")
    validator = component_validator(openapi_document(bootstrap=True), "BootstrapConfig")
    try:
        BootstrapConfig.from_json(body, MODELS)
        accepted = True
    except ConfigError:
        accepted = False
    assert validator.is_valid(body) == accepted
