"""The LwM2M client role: objects as Python classes, registration, reporting.

``LwM2MClient`` runs one device; ``ObjectInstance`` is the base of every object
(and the generic in-memory instance of any catalogued object).
"""

from lwm2m.client.client import LwM2MClient
from lwm2m.client.config import ClientConfig
from lwm2m.client.connection import ServerUri
from lwm2m.client.errors import (
    BadRequest,
    MethodNotAllowed,
    NotAcceptable,
    NotFound,
    OperationFailed,
    RegistrationFailed,
    Unauthorized,
    UnsupportedContentFormat,
)
from lwm2m.client.instance import ObjectInstance, parse_arguments
from lwm2m.client.objects import LwM2MObject, ObjectTree
from lwm2m.client.registration import ClientState, ServerRegistration

__all__ = [
    "BadRequest",
    "ClientConfig",
    "ClientState",
    "LwM2MClient",
    "LwM2MObject",
    "MethodNotAllowed",
    "NotAcceptable",
    "NotFound",
    "ObjectInstance",
    "ObjectTree",
    "OperationFailed",
    "RegistrationFailed",
    "ServerRegistration",
    "ServerUri",
    "Unauthorized",
    "UnsupportedContentFormat",
    "parse_arguments",
]
