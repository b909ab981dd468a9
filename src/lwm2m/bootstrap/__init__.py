"""The LwM2M bootstrap server role (LwM2M-TS-Core 1.2 §6.1): per-endpoint configurations written
into devices over the Bootstrap Interface.

``BootstrapServer(BootstrapServerConfig(...), store)`` serves Bootstrap-Request and
Bootstrap-Pack-Request and runs each session; its events (``BootstrapStarted``, ``BootstrapFinished``,
``BootstrapFailed``) carry a ``BootstrapSession`` record.
"""

from lwm2m.bootstrap.config import DEFAULT_PORT, BootstrapServerConfig
from lwm2m.bootstrap.events import (
    BootstrapEvent,
    BootstrapEventStream,
    BootstrapFailed,
    BootstrapFinished,
    BootstrapSession,
    BootstrapStarted,
)
from lwm2m.bootstrap.server import BootstrapServer
from lwm2m.errors import ConfigError
from lwm2m.protocol.bootstrap_config import DEFAULT_ENDPOINT, BootstrapConfig

__all__ = [
    "DEFAULT_ENDPOINT",
    "DEFAULT_PORT",
    "BootstrapConfig",
    "BootstrapEvent",
    "BootstrapEventStream",
    "BootstrapFailed",
    "BootstrapFinished",
    "BootstrapServer",
    "BootstrapServerConfig",
    "BootstrapSession",
    "BootstrapStarted",
    "ConfigError",
]
