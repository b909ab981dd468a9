"""Helpers of the core object tests: a server and a registered client on loopback."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from lwm2m.client.config import ClientConfig
from lwm2m.client.instance import ObjectInstance
from lwm2m.client.role import Client
from lwm2m.model.path import Path
from lwm2m.model.record import Record
from lwm2m.protocol.management import Response
from lwm2m.server.config import ServerConfig
from lwm2m.server.role import Server

ENDPOINT = "core-test"


@contextlib.asynccontextmanager
async def running(*objects: ObjectInstance, **client_args: Any) -> AsyncIterator[tuple[Server, Client]]:
    """Our server on a free port and a client serving ``objects``, registered."""
    async with contextlib.AsyncExitStack() as stack:
        server = await stack.enter_async_context(Server(ServerConfig(host="127.0.0.1", port=0)))
        client = Client(
            ENDPOINT, server.uri, objects=objects, **client_args, config=ClientConfig(lifetime=30)
        )
        await stack.enter_async_context(client)
        await client.wait_registered(5)
        yield server, client


def values(response: Response) -> dict[str, object]:
    """A response's records as ``{path: value}``."""
    assert response.success, response
    return {str(r.path): r.value for r in response.records}


def record(path: str, value: Any) -> Record:
    """A record to write at ``path``."""
    return Record(Path.parse(path), value)
