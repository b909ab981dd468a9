"""Fleet simulator: thousands of virtual LwM2M devices (IPSO and uCIFI profiles) in one process.

``Fleet`` runs the devices; ``PROFILES`` names the kinds of device it can make
(``ipso-weather``, ``ucifi-streetlight``, ``ucifi-water-meter``,
``ucifi-air-quality``, ``ucifi-parking`` and ``mixed``).
"""

from lwm2m.simulator.fleet import Fleet, FleetConfig, FleetStats, SimulatedDevice
from lwm2m.simulator.profiles import PROFILES, BuiltDevice, DeviceSpec, Profile, build_device, get_profile
from lwm2m.simulator.values import Tick, Walk

__all__ = [
    "PROFILES",
    "BuiltDevice",
    "DeviceSpec",
    "Fleet",
    "FleetConfig",
    "FleetStats",
    "Profile",
    "SimulatedDevice",
    "Tick",
    "Walk",
    "build_device",
    "get_profile",
]
