"""A device with an object the catalogue does not model."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from lwm2m.client import Client, ObjectInstance
from lwm2m.client.config import ClientConfig
from lwm2m.model.catalogue import load_catalogue
from lwm2m.model.definition import ObjectDefinition, Operations, ResourceDefinition
from lwm2m.model.value import ResourceType as T
from lwm2m.server.config import ServerConfig
from lwm2m.server.events import ClientRegistered
from lwm2m.server.role import Server

VENDOR = 32769  # a private object ID (LwM2M-TS-Core 1.2 §7.1.1: 32769-42800), in no catalogue


# The device knows its object; the server does not.
TYPES = {1: T.OPAQUE, 2: T.UNSIGNED_INTEGER, 3: T.STRING, 4: T.FLOAT, 5: T.BOOLEAN, 6: T.TIME}


def device_models():  # type: ignore[no-untyped-def]
    models = load_catalogue().copy()
    resources = {i: ResourceDefinition(i, f"r{i}", t, Operations.RW) for i, t in TYPES.items()}
    models.add(ObjectDefinition(VENDOR, "Vendor", resources))
    return models


@contextlib.asynccontextmanager
async def vendor_device() -> AsyncIterator[tuple[Server, Client]]:
    values = {1: b"\x01\x02\xff", 2: 42, 3: "hello", 4: 21.5, 5: True, 6: -2}
    models = device_models()
    async with Server(ServerConfig(port=0)) as server:
        events = server.events()
        client = Client(
            "vendor-1",
            server=server.uri,
            objects=[ObjectInstance(0, values, definition=models.get(VENDOR))],
            models=models,
            config=ClientConfig(lwm2m_version="1.1"),
        )
        async with client:
            async for event in events:
                if isinstance(event, ClientRegistered):
                    break
            yield server, client
