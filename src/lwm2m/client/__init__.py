"""The LwM2M client role: objects as Python classes, registration, reporting.

``Client`` runs one device; ``Gateway`` a client with end devices behind it;
``ObjectInstance`` is the base of every object (and the generic in-memory instance of any
catalogued object).
"""

from lwm2m.client.config import ClientConfig
from lwm2m.client.connection import ServerUri
from lwm2m.client.gateway import Gateway
from lwm2m.client.instance import ObjectInstance, parse_arguments
from lwm2m.client.objects import LwM2MObject, ObjectTree
from lwm2m.client.registration import ClientState, ServerRegistration
from lwm2m.client.role import Client
from lwm2m.errors import (
    BadRequest,
    DeviceError,
    MethodNotAllowed,
    NotAcceptable,
    NotFound,
    RegistrationFailed,
    Unauthorized,
    UnsupportedContentFormat,
)

__all__ = [
    "BadRequest",
    "Client",
    "ClientConfig",
    "ClientState",
    "DeviceError",
    "Gateway",
    "LwM2MObject",
    "MethodNotAllowed",
    "NotAcceptable",
    "NotFound",
    "ObjectInstance",
    "ObjectTree",
    "RegistrationFailed",
    "ServerRegistration",
    "ServerUri",
    "Unauthorized",
    "UnsupportedContentFormat",
    "parse_arguments",
]
