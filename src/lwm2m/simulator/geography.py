"""Where simulated devices stand: a few European cities, street lights along a grid of straight
streets, other devices scattered over a few kilometres around the centre.

Positions are fixed per device (derived from its endpoint name and index, not from the fleet's
random stream), so a device stands in the same place every run and the values the other
profiles draw stay what they were. Distances are in metres on a local plane around the city
centre (equirectangular: a few kilometres from it the error is far below a metre).
"""

from __future__ import annotations

import math
import random
import zlib
from dataclasses import dataclass

__all__ = [
    "CITIES",
    "LIGHT_SPACING",
    "STREET_LIGHTS",
    "City",
    "city_for",
    "scattered_position",
    "street_light_position",
]

EARTH_RADIUS = 6_371_000.0  # metres, the mean radius
LIGHT_SPACING = 35.0  # metres between lights along a street (30-40 m is usual for residential streets)
STREET_LIGHTS = 16  # lights on one street of a district: 525 m of street
BLOCK = 4 * LIGHT_SPACING  # metres between parallel streets (140 m: a city block)
STREETS_EACH_WAY = 4  # a district: 4 streets one way and 4 the other, crossing
DISTRICT = 700.0  # metres between the corners of neighbouring districts
KERB = 8.0  # metres from the street's axis to its row of lights (the lights stand on one side)
SCATTER = 1_500.0  # metres: the spread of scattered devices around the centre
SCATTER_MAX = 4_000.0  # metres: none further than this from the centre


@dataclass(frozen=True, slots=True)
class City:
    """A city centre and the bearing of its street grid (degrees clockwise from north)."""

    name: str
    latitude: float
    longitude: float
    bearing: float = 0.0

    def position(self, east: float, north: float) -> tuple[float, float]:
        """(latitude, longitude) of the point ``east``/``north`` metres from the centre."""
        latitude = self.latitude + math.degrees(north / EARTH_RADIUS)
        longitude = self.longitude + math.degrees(
            east / (EARTH_RADIUS * math.cos(math.radians(self.latitude)))
        )
        return round(latitude, 7), round(longitude, 7)  # 1e-7 degree: about a centimetre

    def offset(self, latitude: float, longitude: float) -> tuple[float, float]:
        """(east, north) metres of a position from the centre: the inverse of :meth:`position`."""
        north = math.radians(latitude - self.latitude) * EARTH_RADIUS
        east = math.radians(longitude - self.longitude) * EARTH_RADIUS * math.cos(math.radians(self.latitude))
        return east, north

    def along_grid(self, x: float, y: float) -> tuple[float, float]:
        """(east, north) of the point ``x`` metres along the grid's first direction and ``y`` across."""
        a = math.radians(self.bearing)
        # x runs along the bearing, y at right angles to it (bearing + 90°).
        return x * math.sin(a) + y * math.cos(a), x * math.cos(a) - y * math.sin(a)


# City centres (public coordinates of each city's central square) and the rough bearing of
# their street grids.
CITIES: tuple[City, ...] = (
    City("Amsterdam", 52.3731, 4.8926, bearing=20.0),
    City("Barcelona", 41.3870, 2.1701, bearing=45.0),
    City("Lyon", 45.7578, 4.8320, bearing=0.0),
    City("Munich", 48.1374, 11.5755, bearing=10.0),
    City("Copenhagen", 55.6761, 12.5683, bearing=30.0),
    City("Turin", 45.0703, 7.6869, bearing=-30.0),
)


def city_for(name: str) -> City:
    """The city of a fleet or device named ``name`` (its prefix, say): always the same one."""
    return CITIES[zlib.crc32(name.encode()) % len(CITIES)]


def street_light_position(city: City, index: int) -> tuple[float, float]:
    """Where the street light in slot ``index`` stands: along straight streets ``LIGHT_SPACING``
    apart, the streets of a district crossing at right angles, districts side by side.

    Slot ``index`` is light ``index % STREET_LIGHTS`` of street ``index // STREET_LIGHTS``;
    streets alternate between the grid's two directions. A district holds
    ``2 * STREETS_EACH_WAY`` streets; the next district lies ``DISTRICT`` metres further, in
    rings around the first, so a fleet of ten thousand stays within a few kilometres.
    """
    street, light = divmod(index, STREET_LIGHTS)
    district, street = divmod(street, 2 * STREETS_EACH_WAY)
    row, vertical = divmod(street, 2)
    along = light * LIGHT_SPACING
    across = row * BLOCK + KERB
    x, y = (across, along) if vertical else (along, across)
    dx, dy = _district_corner(district)
    return city.position(*city.along_grid(x + dx, y + dy))


def _district_corner(district: int) -> tuple[float, float]:
    """The corner of district ``district``: 0 at the centre, then rings of districts around it."""
    if district == 0:
        return 0.0, 0.0
    ring = 1
    while (2 * ring + 1) ** 2 <= district:
        ring += 1
    # The 8 * ring cells of a ring, walked round its edge.
    k = district - (2 * ring - 1) ** 2
    side, step = divmod(k, 2 * ring)
    cells = (
        (ring, -ring + step),
        (ring - step, ring),
        (-ring, ring - step),
        (-ring + step, -ring),
    )
    i, j = cells[side]
    return i * DISTRICT, j * DISTRICT


def scattered_position(city: City, endpoint: str) -> tuple[float, float]:
    """A position within a few kilometres of the centre, denser towards it; the same one for the
    same endpoint every run."""
    rng = random.Random(zlib.crc32(endpoint.encode()))
    distance = min(abs(rng.gauss(0.0, SCATTER)), SCATTER_MAX)
    angle = rng.uniform(0.0, 2.0 * math.pi)
    return city.position(distance * math.sin(angle), distance * math.cos(angle))
