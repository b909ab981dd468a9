"""The bundled catalogue of object definitions, object ID groups, and user models on top.

The catalogue (``catalogue.json`` beside this module, written by
``tools/gen_catalogue.py`` from a copy of the OMA LwM2M Object & Resource
Registry) holds facts only: IDs, names, versions, multiplicity, mandatory
flags, and per resource its operations, type, units and range. It carries no
description text. It covers the LwM2M core objects, the IPSO Smart Objects
and the uCIFI objects (see :func:`in_catalogue`).

User DDF files add objects to it or replace a catalogue object of the same ID
and version (:func:`build_registry`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from functools import cache
from importlib import resources
from typing import Any

from lwm2m.errors import DDFError, ModelError
from lwm2m.model.ddf import load_ddf, sort_definitions
from lwm2m.model.definition import ObjectDefinition, Operations, ResourceDefinition
from lwm2m.model.registry import ObjectRegistry
from lwm2m.model.value import ResourceType

__all__ = [
    "CATALOGUE_FILE",
    "CATALOGUE_GROUPS",
    "GROUPS",
    "build_registry",
    "catalogue_definitions",
    "dump_catalogue",
    "group_of",
    "in_catalogue",
    "load_catalogue",
    "load_models",
    "object_from_dict",
    "object_to_dict",
    "objects_in_group",
]

CATALOGUE_FILE = "catalogue.json"
FORMAT = 1
SOURCE = "OMA SpecWorks LwM2M Object and Resource Registry (facts only, no descriptions)"

# The OMA registry's object ID ranges. IPSO and uCIFI are blocks inside the ext
# range (2048-10240) kept by their owners; the first match wins, so they come first.
_RANGES: tuple[tuple[str, int, int], ...] = (
    ("core", 0, 31),
    ("oma", 32, 1023),
    ("reserved", 1024, 2047),
    ("ipso", 3200, 3203),
    ("ipso", 3300, 3350),
    ("ucifi", 3410, 3439),
    ("ucifi", 3445, 3461),
    ("ext", 2048, 10240),
    ("vendor", 10241, 26240),
    ("vendor-reuse", 26241, 32768),
    ("vendor-private", 32769, 42768),
    ("test", 42769, 42800),
)
GROUPS: tuple[str, ...] = tuple(dict.fromkeys(name for name, _, _ in _RANGES))
CATALOGUE_GROUPS: tuple[str, ...] = ("core", "ipso", "ucifi")
# The core objects worth bundling: Security, Server, Access Control, Device,
# Connectivity Monitoring, Firmware Update, Location, Connectivity Statistics,
# Software Management, OSCORE and LwM2M Gateway.
_CORE_IDS = frozenset({0, 1, 2, 3, 4, 5, 6, 7, 9, 21, 25})


def group_of(object_id: int) -> str:
    """The registry group of an object ID: core, oma, ipso, ucifi, ext, vendor, … or reserved."""
    for name, lo, hi in _RANGES:
        if lo <= object_id <= hi:
            return name
    return "reserved"


def in_catalogue(object_id: int) -> bool:
    """Whether the bundled catalogue is meant to hold this object."""
    group = group_of(object_id)
    return object_id in _CORE_IDS if group == "core" else group in ("ipso", "ucifi")


def object_to_dict(definition: ObjectDefinition, *, descriptions: bool = False) -> dict[str, Any]:
    """The JSON form of a definition (the catalogue's and ``lwm2m models show --json``'s)."""
    out: dict[str, Any] = {
        "id": definition.id,
        "name": definition.name,
        "version": definition.version,
        "lwm2m_version": definition.lwm2m_version,
        "multiple": definition.multiple,
        "mandatory": definition.mandatory,
        "urn": definition.urn,
    }
    if descriptions and definition.description:
        out["description"] = definition.description
    res = []
    for r in definition.resources.values():
        item: dict[str, Any] = {
            "id": r.id,
            "name": r.name,
            "operations": r.operations.value,
            "multiple": r.multiple,
            "mandatory": r.mandatory,
            "type": r.type.value,
            "units": r.units,
            "range": r.range,
            "minimum": r.minimum,  # ints stay ints: 0..18446744073709551615 is exact
            "maximum": r.maximum,
        }
        if descriptions and r.description:
            item["description"] = r.description
        res.append(item)
    out["resources"] = res
    return out


def object_from_dict(data: Mapping[str, Any]) -> ObjectDefinition:
    """A definition from its JSON form (see :func:`object_to_dict`)."""
    try:
        resources = {}
        for r in data["resources"]:
            rd = ResourceDefinition(
                id=int(r["id"]),
                name=r["name"],
                type=ResourceType(r["type"]),
                operations=Operations(r["operations"]),
                multiple=bool(r["multiple"]),
                mandatory=bool(r["mandatory"]),
                units=r.get("units", ""),
                range=r.get("range", ""),
                minimum=r.get("minimum"),
                maximum=r.get("maximum"),
                description=r.get("description", ""),
            )
            resources[rd.id] = rd
        return ObjectDefinition(
            id=int(data["id"]),
            name=data["name"],
            resources=resources,
            version=data["version"],
            lwm2m_version=data["lwm2m_version"],
            multiple=bool(data["multiple"]),
            mandatory=bool(data["mandatory"]),
            urn=data.get("urn", ""),
            description=data.get("description", ""),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"invalid object definition {data.get('id', '?')!r}: {exc!r}") from None


def dump_catalogue(definitions: Iterable[ObjectDefinition]) -> str:
    """The catalogue file's text: deterministic, one resource per line so diffs stay readable."""
    objects = [object_to_dict(d) for d in sort_definitions(definitions)]
    lines = ["{", f' "format": {FORMAT},', f' "source": {json.dumps(SOURCE)},', ' "objects": [']
    for i, obj in enumerate(objects):
        res = obj.pop("resources")
        head = json.dumps(obj)[:-1]
        lines.append(f'  {head}, "resources": [')
        lines += [f"   {json.dumps(r)}" + ("," if j < len(res) - 1 else "") for j, r in enumerate(res)]
        lines.append("  ]}" + ("," if i < len(objects) - 1 else ""))
    lines += [" ]", "}"]
    return "\n".join(lines) + "\n"


@cache
def catalogue_definitions() -> tuple[ObjectDefinition, ...]:
    """The bundled definitions, read once per process (definitions are immutable)."""
    text = resources.files(__package__).joinpath(CATALOGUE_FILE).read_text(encoding="utf-8")
    data = json.loads(text)
    if data.get("format") != FORMAT:
        raise ModelError(f"{CATALOGUE_FILE}: format {data.get('format')!r}, expected {FORMAT}")
    return tuple(object_from_dict(o) for o in data["objects"])


@cache
def _catalogue_registry() -> ObjectRegistry:
    return ObjectRegistry(catalogue_definitions())


def catalogue_definition(object_id: int, version: str | None = None) -> ObjectDefinition | None:
    """One bundled definition (the newest version, or ``version``), without copying the catalogue
    as ``load_catalogue`` does: for an object instance made without a registry of its own."""
    return _catalogue_registry().get(object_id, version)


def load_catalogue() -> ObjectRegistry:
    """The bundled catalogue as a registry of its own (a copy: adding to it leaves the cache alone)."""
    return _catalogue_registry().copy()


def objects_in_group(group: str, registry: ObjectRegistry | None = None) -> list[ObjectDefinition]:
    """The objects of one group (``core``, ``ipso``, ``ucifi``, …) in a registry, the catalogue by default."""
    if group not in GROUPS:
        raise ModelError(f"unknown group {group!r}: expected one of {', '.join(GROUPS)}")
    reg = registry if registry is not None else _catalogue_registry()
    return [d for d in reg if group_of(d.id) == group]


def load_models(path: str | os.PathLike[str]) -> list[ObjectDefinition]:
    """User object definitions from a DDF file or a folder of them (``*.xml``), by ID and version."""
    if not os.path.exists(path):
        raise DDFError(os.fspath(path), "no such file or folder")
    return sort_definitions(load_ddf(path))


def build_registry(user_dirs: Iterable[str | os.PathLike[str]] = ()) -> ObjectRegistry:
    """The catalogue plus user models; a user definition replaces the catalogue's of the same ID and version.

    A user definition of a new version of a catalogue object is added beside
    it and, being newer, becomes the one ``get(id)`` answers. Later folders
    override earlier ones.
    """
    if isinstance(user_dirs, str | os.PathLike):
        user_dirs = (user_dirs,)
    registry = load_catalogue()
    for d in user_dirs:
        registry.update(load_models(d))
    return registry
