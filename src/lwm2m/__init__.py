"""OMA LightweightM2M (1.0, 1.1, 1.2) for Python: server, client, bootstrap server, fleet
simulator.

The public surface is flat::

    from lwm2m import Server, ServerConfig, Client, ClientConfig, Path, Record, LwM2MError

    async with Server(ServerConfig(port=0)) as server:
        async for event in server.events():
            ...

Everything in ``__all__`` is public; subpackages export their own public names the same way
(``from lwm2m.server import Server``). A name is imported when first used, so that
``import lwm2m.coap`` (the sans-IO layer) does not load the roles.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from lwm2m.errors import (
    ApiError,
    CodecError,
    ConfigError,
    DeviceError,
    LwM2MError,
    ModelError,
    NotRegistered,
    ProtocolError,
    RequestTimeout,
    SecurityError,
    StoreError,
    TransportError,
)

__version__ = "0.1.0"

# name -> the subpackage that exports it.
_LAZY: dict[str, str] = {
    # the roles and their configuration
    "Server": "lwm2m.server",
    "ServerConfig": "lwm2m.server",
    "Client": "lwm2m.client",
    "ClientConfig": "lwm2m.client",
    "ObjectInstance": "lwm2m.client",
    "Gateway": "lwm2m.client",
    "BootstrapServer": "lwm2m.bootstrap",
    "BootstrapServerConfig": "lwm2m.bootstrap",
    "BootstrapConfig": "lwm2m.bootstrap",
    "Fleet": "lwm2m.simulator",
    "FleetConfig": "lwm2m.simulator",
    # data
    "Path": "lwm2m.model",
    "Record": "lwm2m.model",
    "ObjectRegistry": "lwm2m.model",
    "ContentFormat": "lwm2m.codec",
    "Code": "lwm2m.coap",
    "Response": "lwm2m.protocol",
    "Registration": "lwm2m.protocol",
    "EndDevice": "lwm2m.protocol",
    "Attributes": "lwm2m.protocol",
    # storage
    "Store": "lwm2m.storage",
    "open_store": "lwm2m.storage",
    # the server's events
    "ClientRegistered": "lwm2m.server",
    "ClientUpdated": "lwm2m.server",
    "ClientDeregistered": "lwm2m.server",
    "RegistrationExpired": "lwm2m.server",
    "ClientAwake": "lwm2m.server",
    "ClientSleeping": "lwm2m.server",
    "NotificationReceived": "lwm2m.server",
    "SendReceived": "lwm2m.server",
    "ObservationEnded": "lwm2m.server",
    # the bootstrap server's events
    "BootstrapStarted": "lwm2m.bootstrap",
    "BootstrapFinished": "lwm2m.bootstrap",
    "BootstrapFailed": "lwm2m.bootstrap",
}

__all__ = [
    "ApiError",
    "Attributes",
    "BootstrapConfig",
    "BootstrapFailed",
    "BootstrapFinished",
    "BootstrapServer",
    "BootstrapServerConfig",
    "BootstrapStarted",
    "Client",
    "ClientAwake",
    "ClientConfig",
    "ClientDeregistered",
    "ClientRegistered",
    "ClientSleeping",
    "ClientUpdated",
    "Code",
    "CodecError",
    "ConfigError",
    "ContentFormat",
    "DeviceError",
    "EndDevice",
    "Fleet",
    "FleetConfig",
    "Gateway",
    "LwM2MError",
    "ModelError",
    "NotRegistered",
    "NotificationReceived",
    "ObjectInstance",
    "ObjectRegistry",
    "ObservationEnded",
    "Path",
    "ProtocolError",
    "Record",
    "Registration",
    "RegistrationExpired",
    "RequestTimeout",
    "Response",
    "SecurityError",
    "SendReceived",
    "Server",
    "ServerConfig",
    "Store",
    "StoreError",
    "TransportError",
    "__version__",
    "open_store",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'lwm2m' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next lookup is a plain module attribute
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:
    from lwm2m.bootstrap import (
        BootstrapConfig,
        BootstrapFailed,
        BootstrapFinished,
        BootstrapServer,
        BootstrapServerConfig,
        BootstrapStarted,
    )
    from lwm2m.client import Client, ClientConfig, Gateway, ObjectInstance
    from lwm2m.coap import Code
    from lwm2m.codec import ContentFormat
    from lwm2m.model import ObjectRegistry, Path, Record
    from lwm2m.protocol import Attributes, EndDevice, Registration, Response
    from lwm2m.server import (
        ClientAwake,
        ClientDeregistered,
        ClientRegistered,
        ClientSleeping,
        ClientUpdated,
        NotificationReceived,
        ObservationEnded,
        RegistrationExpired,
        SendReceived,
        Server,
        ServerConfig,
    )
    from lwm2m.simulator import Fleet, FleetConfig
    from lwm2m.storage import Store, open_store
