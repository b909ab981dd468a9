"""Object and resource definitions (the facts of a DDF file)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType

from lwm2m.errors import ModelError
from lwm2m.model.value import ResourceType


class Operations(Enum):
    """Operations a resource allows (LwM2M-TS-Core 1.2 Appendix D, ``<Operations>``)."""

    NONE = ""  # only the bootstrap server may access it
    R = "R"
    W = "W"
    RW = "RW"
    E = "E"

    @classmethod
    def parse(cls, text: str | None) -> Operations:
        t = (text or "").strip().upper()
        try:
            return cls(t)
        except ValueError:
            raise ModelError(f"unknown operations {text!r}: expected R, W, RW, E or empty") from None

    @property
    def readable(self) -> bool:
        return "R" in self.value

    @property
    def writable(self) -> bool:
        return "W" in self.value

    @property
    def executable(self) -> bool:
        return self is Operations.E


@dataclass(frozen=True, slots=True)
class ResourceDefinition:
    id: int
    name: str
    type: ResourceType
    operations: Operations = Operations.R
    multiple: bool = False
    mandatory: bool = False
    units: str = ""
    range: str = ""  # RangeEnumeration as written (free text in the registry)
    # Numeric bounds parsed from ``range`` when it is clearly min..max (ints stay ints); for String
    # and Opaque resources the registry means a length in bytes.
    minimum: float | None = None
    maximum: float | None = None
    description: str = ""


def _freeze(resources: Mapping[int, ResourceDefinition]) -> Mapping[int, ResourceDefinition]:
    return MappingProxyType(dict(sorted(resources.items())))


@dataclass(frozen=True, slots=True)
class ObjectDefinition:
    id: int
    name: str
    resources: Mapping[int, ResourceDefinition] = field(default_factory=dict, hash=False)
    version: str = "1.0"
    lwm2m_version: str = "1.0"
    multiple: bool = True
    mandatory: bool = False
    urn: str = ""
    description: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "resources", _freeze(self.resources))

    def resource(self, resource_id: int) -> ResourceDefinition | None:
        return self.resources.get(resource_id)
