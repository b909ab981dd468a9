"""The LwM2M server role (LwM2M-TS-Core 1.2 §6): registration, device management, observe,
Send and queue mode, as an asyncio object with an async Python API.

``Server`` runs it, configured by a ``ServerConfig``; its events (``ClientRegistered``,
``NotificationReceived``, …) come from ``Server.events()``.
"""

from lwm2m.server.config import ServerConfig
from lwm2m.server.events import (
    ClientAwake,
    ClientDeregistered,
    ClientRegistered,
    ClientSleeping,
    ClientUpdated,
    EventHook,
    EventStream,
    EventTap,
    NotificationReceived,
    ObservationEnded,
    RegistrationExpired,
    SendReceived,
    ServerEvent,
)
from lwm2m.server.observation import ServerObservation
from lwm2m.server.registrar import RegistrationLimits
from lwm2m.server.role import Server

__all__ = [
    "ClientAwake",
    "ClientDeregistered",
    "ClientRegistered",
    "ClientSleeping",
    "ClientUpdated",
    "EventHook",
    "EventStream",
    "EventTap",
    "NotificationReceived",
    "ObservationEnded",
    "RegistrationExpired",
    "RegistrationLimits",
    "SendReceived",
    "Server",
    "ServerConfig",
    "ServerEvent",
    "ServerObservation",
]
