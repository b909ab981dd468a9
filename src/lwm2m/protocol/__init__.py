"""The LwM2M operations as frozen dataclasses and their mapping to and from CoAP: registration
(LwM2M-TS-Core 1.2 §6.2), device management and information reporting (§6.3, §6.4),
attributes (§5.1), bootstrap (§6.1) and bootstrap configurations."""

from lwm2m.protocol.attributes import AttributeChange, Attributes
from lwm2m.protocol.bootstrap_config import (
    AccessControlConfig,
    BootstrapConfig,
    SecurityConfig,
    ServerAccountConfig,
)
from lwm2m.protocol.management import (
    CreateRequest,
    DeleteRequest,
    DiscoverRequest,
    ExecuteRequest,
    ObserveRequest,
    ReadCompositeRequest,
    ReadRequest,
    Response,
    WriteAttributesRequest,
    WriteCompositeRequest,
    WriteRequest,
)
from lwm2m.protocol.registration import (
    DeregisterRequest,
    EndDevice,
    ObjectLink,
    RegisterRequest,
    Registration,
    UpdateRequest,
)

__all__ = [
    "AccessControlConfig",
    "AttributeChange",
    "Attributes",
    "BootstrapConfig",
    "CreateRequest",
    "DeleteRequest",
    "DeregisterRequest",
    "DiscoverRequest",
    "EndDevice",
    "ExecuteRequest",
    "ObjectLink",
    "ObserveRequest",
    "ReadCompositeRequest",
    "ReadRequest",
    "RegisterRequest",
    "Registration",
    "Response",
    "SecurityConfig",
    "ServerAccountConfig",
    "UpdateRequest",
    "WriteAttributesRequest",
    "WriteCompositeRequest",
    "WriteRequest",
]
