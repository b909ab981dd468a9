"""The LwM2M core objects with device behaviour (LwM2M-TS-Core 1.2 Appendix E)."""

from lwm2m.client.core.access_control import AccessControl, AccessRight
from lwm2m.client.core.connectivity import ConnectivityMonitoring, NetworkBearer
from lwm2m.client.core.device import Device
from lwm2m.client.core.firmware import FirmwareUpdate, State, UpdateResult
from lwm2m.client.core.location import Location
from lwm2m.client.core.oscore import Oscore
from lwm2m.client.core.security import Security, SecurityMode
from lwm2m.client.core.server import ServerAccount
from lwm2m.errors import FirmwareError

__all__ = [
    "AccessControl",
    "AccessRight",
    "ConnectivityMonitoring",
    "Device",
    "FirmwareError",
    "FirmwareUpdate",
    "Location",
    "NetworkBearer",
    "Oscore",
    "Security",
    "SecurityMode",
    "ServerAccount",
    "State",
    "UpdateResult",
]
