"""Device profiles: which objects a simulated device has and how their values behave.

==================== ==========================================================================
profile              objects (besides Security 0, Server 1, Device 3 and Firmware Update 5)
==================== ==========================================================================
ipso-weather         Temperature 3303, Humidity 3304, Barometer 3315, Location 6
ucifi-streetlight    Outdoor lamp controller 3416, Electrical monitor 3418, Photocell 3419,
                     Luminaire asset 3417, Location 6
ucifi-water-meter    Water meter 3424, Battery 3411, LPWAN Communication 3412
ucifi-air-quality    Air quality 3428, Noise sensor 3433, Location 6
ucifi-parking        Parking Sensor 3431, Location 6
ucifi-lorawan-gateway Location 6, and object 25 (LwM2M Gateway) for the uCIFI end devices behind
                     it, each with a Device object 3 of its own: water meters, parking sensors,
                     street lights (``FleetConfig.end_devices``, ``uplink_period``)
mixed                each device one of the above (29% street lights, 25% water meters, …)
==================== ==========================================================================

``build_device(profile, spec)`` makes the object instances of one device;
the client adds Security (0) and Server (1) itself.

Devices with a Location (6) stand in the city of ``spec.city`` (see ``geography``): street
lights along a grid of straight streets, a light every 35 m, the others scattered over a few
kilometres around the centre. Water meters sit in cellars and have no position fix.
"""

from __future__ import annotations

import dataclasses
import math
import random
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from lwm2m.client.core.device import BatteryStatus, Device, PowerSource
from lwm2m.client.core.firmware import FirmwareUpdate
from lwm2m.client.core.location import Location
from lwm2m.client.instance import ObjectInstance
from lwm2m.model.catalogue import load_catalogue
from lwm2m.model.registry import ObjectRegistry
from lwm2m.simulator.geography import City, city_for, scattered_position, street_light_position
from lwm2m.simulator.lighting import ElectricalMonitor, LampController, Photocell
from lwm2m.simulator.objects import (
    AirQuality,
    Battery,
    Installer,
    LpwanLink,
    NoiseSensor,
    ParkingSensor,
    Sensor,
    Simulated,
    Wake,
    WaterMeter,
)
from lwm2m.simulator.values import HOUR, Tick, Walk, hour_of_day

MANUFACTURER = "lwm2m simulator"


@dataclass(frozen=True, slots=True)
class DeviceSpec:
    """What one device is built from: its place in the fleet and the simulated time it starts at."""

    index: int
    endpoint: str
    start: Tick
    models: ObjectRegistry
    binding: str = "U"
    on_reboot: Wake | None = None
    install_seconds: float = 2.0  # how long a firmware update takes
    city: City | None = None  # where devices with a Location stand (None: one chosen by the endpoint)

    @property
    def place(self) -> City:
        return self.city if self.city is not None else city_for(self.endpoint)


@dataclass(frozen=True, slots=True)
class BuiltDevice:
    """The object instances of one device; ``parts`` are those the fleet ticks, in tick order."""

    profile: Profile
    objects: tuple[ObjectInstance, ...]
    parts: tuple[Simulated, ...]
    device: Device
    firmware: FirmwareUpdate


Builder = Callable[[DeviceSpec, ObjectInstance], list[ObjectInstance]]


@dataclass(frozen=True, slots=True)
class Profile:
    """A kind of device. ``blend`` (profile name, weight) makes a profile that picks one per device."""

    name: str
    description: str
    objects: tuple[int, ...]
    model_number: str = ""
    device_type: str = ""
    battery: bool = False  # powered by a battery (Device Available Power Sources, Battery Level)
    builder: Builder | None = None
    blend: tuple[tuple[str, float], ...] = ()
    # A gateway: the profiles of the end devices behind it (profile name, weight).
    end_devices: tuple[tuple[str, float], ...] = ()

    def __call__(
        self, index: int = 0, endpoint: str = "device", seed: int | None = None
    ) -> list[ObjectInstance]:
        """The object instances of one device, valued at the current time (nothing moves them:
        a :class:`~lwm2m.simulator.fleet.Fleet` ticks the devices it runs)."""
        now = time.time()
        start = Tick(now, hour_of_day(now, time.localtime().tm_gmtoff), 0.0, random.Random(seed))
        return list(build_device(self, DeviceSpec(index, endpoint, start, load_catalogue())).objects)

    def end_device(self, rng: random.Random) -> Profile:
        """The profile of one end device behind a gateway of this profile."""
        names = [n for n, _ in self.end_devices]
        weights = [w for _, w in self.end_devices]
        return PROFILES[rng.choices(names, weights)[0]]

    def choose(self, spec: DeviceSpec) -> Profile:
        """The profile a device of this one gets (itself, unless it is a blend)."""
        if not self.blend:
            return self
        names = [n for n, _ in self.blend]
        weights = [w for _, w in self.blend]
        return PROFILES[spec.start.rng.choices(names, weights)[0]]


# --- the walks of each profile (bounded again by each resource's range in the model) ------------------

TEMPERATURE = Walk(12.0, -40.0, 60.0, swing=5.0, peaks=(15.0,), noise=1.2, decimals=1)
HUMIDITY = Walk(65.0, 5.0, 100.0, swing=-15.0, peaks=(15.0,), noise=5.0, decimals=1)
PRESSURE = Walk(1013.0, 950.0, 1060.0, swing=0.8, peaks=(10.0,), noise=6.0, reversion=0.1, decimals=1)
RUSH_HOURS = (8.5, 18.0)
POLLUTANTS: Mapping[int, Walk] = MappingProxyType(
    {
        1: Walk(18.0, 0.0, 600.0, swing=20.0, peaks=RUSH_HOURS, width=1.5, noise=5.0, decimals=1),  # PM10
        3: Walk(9.0, 0.0, 500.0, swing=12.0, peaks=RUSH_HOURS, width=1.5, noise=3.0, decimals=1),  # PM2.5
        5: Walk(5.0, 0.0, 300.0, swing=6.0, peaks=RUSH_HOURS, width=1.5, noise=2.0, decimals=1),  # PM1
        7: Walk(0.3, 0.0, 50.0, swing=0.6, peaks=RUSH_HOURS, width=1.5, noise=0.1, decimals=2),  # CO
        12: Walk(0.03, 0.0, 0.5, swing=0.02, peaks=(15.0,), noise=0.005, decimals=3),  # O3
        15: Walk(0.012, 0.0, 1.0, swing=0.03, peaks=RUSH_HOURS, width=1.5, noise=0.005, decimals=3),  # NO2
        17: Walk(420.0, 350.0, 5000.0, swing=60.0, peaks=RUSH_HOURS, width=2.0, noise=10.0, decimals=0),
        23: Walk(0.15, 0.0, 10.0, swing=0.15, peaks=RUSH_HOURS, width=2.0, noise=0.04, decimals=2),  # VOC
    }
)
NOISE = Walk(52.0, 30.0, 130.0, swing=9.0, peaks=(13.0,), noise=3.0, decimals=1)  # dB(A): 43 at night


def _location(spec: DeviceSpec, position: tuple[float, float], radius: float) -> Location:
    """A fixed installation's Location (6): its position, ``radius`` metres of accuracy, the fix
    taken when the simulation starts."""
    latitude, longitude = position
    return Location(
        latitude=latitude,
        longitude=longitude,
        radius=radius,
        timestamp=int(spec.start.now),
        models=spec.models,
    )


def _scattered(spec: DeviceSpec) -> Location:
    return _location(spec, scattered_position(spec.place, spec.endpoint), radius=10.0)


def _weather(spec: DeviceSpec, device: ObjectInstance) -> list[ObjectInstance]:
    rng, m = spec.start.rng, spec.models
    climate = rng.uniform(-6.0, 6.0)  # devices are spread over a region
    return [
        Sensor(
            0,
            object_id=3303,
            walk=dataclasses.replace(TEMPERATURE, mean=TEMPERATURE.mean + climate),
            units="Cel",
            start=spec.start,
            models=m,
        ),
        Sensor(0, object_id=3304, walk=HUMIDITY, units="%RH", start=spec.start, models=m),
        Sensor(
            0,
            object_id=3315,
            walk=dataclasses.replace(PRESSURE, mean=PRESSURE.mean + rng.gauss(0.0, 4.0)),
            units="hPa",
            start=spec.start,
            models=m,
        ),
        _scattered(spec),
    ]


def _gtin(spec: DeviceSpec) -> str:
    body = f"590{zlib.crc32(spec.endpoint.encode()) % 10**10:010d}"
    # GS1 check digit: weights 3 and 1 from the right.
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return body + str((10 - total % 10) % 10)


def _streetlight(spec: DeviceSpec, device: ObjectInstance) -> list[ObjectInstance]:
    rng, m = spec.start.rng, spec.models
    wattage = rng.choice((40, 60, 90, 120, 150))
    photocell = Photocell(0, start=spec.start, models=m)
    lamp = LampController(0, wattage=wattage, start=spec.start, photocell=photocell, models=m)
    monitor = ElectricalMonitor(0, lamp=lamp, start=spec.start, models=m)
    asset = ObjectInstance(
        0,
        {
            1: _gtin(spec),
            2: rng.randrange(2012, 2025),
            3: rng.randrange(1, 53),
            4: int(wattage * rng.uniform(120.0, 150.0)),  # lumen: LED efficacy
            5: 2,
            6: "RAL 7035",
            7: float(wattage),
            8: round(0.1 * wattage, 1),
            9: 253,
            10: 207,
            11: rng.choice((70, 80)),
            12: rng.choice((2700, 3000, 4000)),
        },
        object_id=3417,
        models=m,
    )
    # Slot by the device's index in the fleet: in a mixed fleet the other kinds leave gaps in the rows.
    where = _location(spec, street_light_position(spec.place, spec.index), radius=5.0)
    return [photocell, lamp, monitor, asset, where]


def _eui(spec: DeviceSpec) -> str:
    return f"70b3d5{zlib.crc32(spec.endpoint.encode()):08x}{spec.index % 256:02x}".upper()


def _water_meter(spec: DeviceSpec, device: ObjectInstance) -> list[ObjectInstance]:
    rng, m = spec.start.rng, spec.models
    daily = rng.lognormvariate(math.log(0.3), 0.4)  # m3 a day: a household
    leak = 0.002 / HOUR if rng.random() < 0.02 else 0.0  # 2 l/h from one meter in fifty
    return [
        WaterMeter(0, daily_use=daily, leak=leak, start=spec.start, models=m),
        Battery(0, years=12.0, start=spec.start, device=device, models=m),
        LpwanLink(0, mac=_eui(spec), start=spec.start, models=m),
    ]


def _scaled(walk: Walk, traffic: float) -> Walk:
    return dataclasses.replace(walk, swing=walk.swing * traffic) if walk.width else walk


def _air_quality(spec: DeviceSpec, device: ObjectInstance) -> list[ObjectInstance]:
    rng, m = spec.start.rng, spec.models
    traffic = rng.uniform(0.5, 1.8)  # a quiet street or a main road
    # Traffic scales the rush-hour peaks; ozone (one wide afternoon wave) is regional.
    walks = {rid: _scaled(w, traffic) for rid, w in POLLUTANTS.items()}
    noise = dataclasses.replace(NOISE, mean=NOISE.mean + 8.0 * (traffic - 1.0))
    return [
        AirQuality(0, walks=walks, start=spec.start, models=m),
        NoiseSensor(0, walk=noise, start=spec.start, models=m),
        _scattered(spec),
    ]


def _parking(spec: DeviceSpec, device: ObjectInstance) -> list[ObjectInstance]:
    return [ParkingSensor(0, start=spec.start, models=spec.models), _scattered(spec)]


def _lorawan_gateway(spec: DeviceSpec, device: ObjectInstance) -> list[ObjectInstance]:
    # On a rooftop; its object 25 instances come with its end devices (lwm2m.client.gateway).
    return [_scattered(spec)]


_BASE = (3, 5)
PROFILES: Mapping[str, Profile] = MappingProxyType(
    {
        p.name: p
        for p in (
            Profile(
                "ipso-weather",
                "weather station: temperature, humidity and pressure with daily cycles",
                (*_BASE, 6, 3303, 3304, 3315),
                "WS-300",
                "weather station",
                builder=_weather,
            ),
            Profile(
                "ucifi-streetlight",
                "street light: lamp controller driven by a photocell, power and energy metering",
                (*_BASE, 6, 3416, 3417, 3418, 3419),
                "SLC-200",
                "outdoor lamp controller",
                builder=_streetlight,
            ),
            Profile(
                "ucifi-water-meter",
                "battery water meter on LoRaWAN: an index that only grows, morning and evening peaks",
                (*_BASE, 3411, 3412, 3424),
                "WM-15",
                "water meter",
                battery=True,
                builder=_water_meter,
            ),
            Profile(
                "ucifi-air-quality",
                "air quality and noise: rush-hour peaks of particulates, NO2 and sound level",
                (*_BASE, 6, 3428, 3433),
                "AQ-40",
                "air quality sensor",
                builder=_air_quality,
            ),
            Profile(
                "ucifi-parking",
                "parking space sensor: cars come and go, busier by day",
                (*_BASE, 6, 3431),
                "PS-10",
                "parking sensor",
                battery=True,
                builder=_parking,
            ),
            Profile(
                "ucifi-lorawan-gateway",
                "LoRaWAN gateway: uCIFI end devices behind it, sparse uplinks, downlinks at the next uplink",
                (*_BASE, 6),
                "LGW-8",
                "LoRaWAN gateway",
                builder=_lorawan_gateway,
                end_devices=(
                    ("ucifi-water-meter", 0.4),
                    ("ucifi-parking", 0.35),
                    ("ucifi-streetlight", 0.25),
                ),
            ),
            Profile(
                "mixed",
                "a city: 29% street lights, 25% water meters, 20% parking, 15% weather, 10% air quality,"
                " 1% LoRaWAN gateways",
                (*_BASE, 6, 3303, 3304, 3315, 3411, 3412, 3416, 3417, 3418, 3419, 3424, 3428, 3431, 3433),
                blend=(
                    ("ucifi-lorawan-gateway", 0.01),
                    ("ucifi-streetlight", 0.29),
                    ("ucifi-water-meter", 0.25),
                    ("ucifi-parking", 0.20),
                    ("ipso-weather", 0.15),
                    ("ucifi-air-quality", 0.10),
                ),
            ),
        )
    }
)


def profile_names() -> list[str]:
    return list(PROFILES)


def get_profile(name: str) -> Profile:
    """The profile called ``name``; ValueError naming the choices otherwise."""
    profile = PROFILES.get(name)
    if profile is None:
        raise ValueError(f"unknown profile {name!r}: expected one of {', '.join(PROFILES)}")
    return profile


def _device(spec: DeviceSpec, profile: Profile) -> Device:
    rng = spec.start.rng
    return Device(
        manufacturer=MANUFACTURER,
        model_number=profile.model_number,
        serial_number=f"SIM{zlib.crc32(spec.endpoint.encode()):010d}",
        firmware_version="1.0.0",
        device_type=profile.device_type,
        hardware_version="rev B",
        software_version="1.0.0",
        battery_level=100 if profile.battery else None,
        battery_status=BatteryStatus.NORMAL if profile.battery else None,
        memory_total=256,
        memory_free=rng.randrange(40, 120),
        power_sources=[PowerSource.INTERNAL_BATTERY if profile.battery else PowerSource.DC],
        power_voltages=[3600 if profile.battery else 12000],  # mV
        power_currents=[rng.randrange(5, 40)],  # mA
        binding_modes=spec.binding,
        on_reboot=spec.on_reboot,
    )


def build_device(profile: Profile, spec: DeviceSpec) -> BuiltDevice:
    """The object instances of one device of ``profile`` (a blend picks its profile first)."""
    chosen = profile.choose(spec)
    assert chosen.builder is not None, f"profile {chosen.name} has no builder"
    device = _device(spec, chosen)
    installer = Installer(device, spec.install_seconds)
    firmware = FirmwareUpdate(on_update=installer, verify=installer.verify, device=device)
    installer.firmware = firmware
    objects = [device, firmware, *chosen.builder(spec, device)]
    parts = tuple(o for o in objects if isinstance(o, Simulated))
    return BuiltDevice(chosen, tuple(objects), parts, device, firmware)
