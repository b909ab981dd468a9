"""Paths, value types, object and resource definitions, the DDF loader and catalogue."""

from lwm2m.errors import InvalidPath
from lwm2m.model.definition import ObjectDefinition, Operations, ResourceDefinition
from lwm2m.model.path import ROOT, Path
from lwm2m.model.record import Record, sort_records
from lwm2m.model.registry import ObjectRegistry
from lwm2m.model.value import ObjLink, ResourceType, Value

__all__ = [
    "ROOT",
    "InvalidPath",
    "ObjLink",
    "ObjectDefinition",
    "ObjectRegistry",
    "Operations",
    "Path",
    "Record",
    "ResourceDefinition",
    "ResourceType",
    "Value",
    "sort_records",
]
