"""The DDF XML loader: object definitions from the files of the OMA registry or a user.

The format is the Device Description Framework of LwM2M-TS-Core 1.2 Appendix D
(schemas ``LWM2M.xsd`` and ``LWM2M-v1_1.xsd``). Files in the wild do not all
validate, so the loader looks elements up by name rather than position,
tolerates a byte order mark, a missing XML declaration, empty ``<Type/>`` and
``<Operations/>``, a missing ``<RangeEnumeration>`` and stray whitespace, and
fails with :class:`DDFError` (naming the file) on anything it cannot read.

DDF files come from users, so they are parsed with defusedxml and a document
type declaration is refused outright: no entity expansion, no external fetch.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path as FsPath
from xml.etree.ElementTree import Element, ParseError

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from lwm2m.errors import DDFError
from lwm2m.model.definition import ObjectDefinition, Operations, ResourceDefinition
from lwm2m.model.path import MAX_ID
from lwm2m.model.value import ResourceType

__all__ = [
    "DDFError",
    "load_ddf",
    "load_ddf_dir",
    "load_ddf_file",
    "parse_ddf",
    "parse_range",
    "sort_definitions",
]

_BOM = b"\xef\xbb\xbf"
_VERSION = re.compile(r"\d+\.\d+")
_NUMBER = r"[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?"
# ``min..max``; the registry also writes ``min...max`` (e.g. object 27 resource 5: ``1...15``).
# A trailing ``bytes`` is accepted on String/Opaque resources, whose range is a length.
_MIN_MAX = re.compile(rf"\s*({_NUMBER})\s*\.{{2,3}}\s*({_NUMBER})\s*(bytes)?\s*", re.IGNORECASE)
_LENGTH_TYPES = (ResourceType.STRING, ResourceType.OPAQUE)
_NUMERIC_TYPES = (
    ResourceType.INTEGER,
    ResourceType.UNSIGNED_INTEGER,
    ResourceType.FLOAT,
    ResourceType.TIME,
    ResourceType.BOOLEAN,
)


def _number(text: str) -> int | float:
    # Keep integers exact: 0..18446744073709551615 must not round through float.
    try:
        return int(text)
    except ValueError:
        return float(text)


def parse_range(text: str, type_: ResourceType) -> tuple[int | float | None, int | float | None]:
    """Numeric bounds of a ``<RangeEnumeration>``, or ``(None, None)`` when it is not clearly ``min..max``.

    The registry writes free text here (LwM2M-TS-Core 1.2 Appendix D leaves it
    unconstrained): lists, sentences and ``N: label`` enumerations keep no
    bounds. For String and Opaque resources the bounds are a length in bytes.
    Reversed bounds (``-30..-120``) are kept as text only: guessing is worse.
    """
    if type_ not in _NUMERIC_TYPES and type_ not in _LENGTH_TYPES:
        return None, None
    m = _MIN_MAX.fullmatch(text)
    if m is None or (m.group(3) and type_ not in _LENGTH_TYPES):
        return None, None
    lo, hi = _number(m.group(1)), _number(m.group(2))
    if lo > hi:
        return None, None
    return lo, hi


def _text(el: Element | None) -> str | None:
    """The stripped text content of an element (``None`` when the element is absent)."""
    if el is None:
        return None
    return "".join(el.itertext()).strip()


class _Reader:
    """Reads one ``<Object>`` element; knows the source name for error messages."""

    def __init__(self, source: str, descriptions: bool) -> None:
        self.source = source
        self.descriptions = descriptions

    def fail(self, problem: str) -> DDFError:
        return DDFError(self.source, problem)

    def required(self, parent: Element, tag: str, where: str) -> str:
        value = _text(parent.find(tag))
        if value is None:
            raise self.fail(f"{where} has no <{tag}>")
        return value

    def flag(self, parent: Element, tag: str, where: str, true: str, false: str) -> bool:
        value = self.required(parent, tag, where)
        if value.lower() == true.lower():
            return True
        if value.lower() == false.lower():
            return False
        raise self.fail(f"{where}: <{tag}> is {value!r}, expected {true} or {false}")

    def id(self, text: str | None, where: str) -> int:
        if text is None:
            raise self.fail(f"{where} has no ID")
        t = text.strip()
        if not (t.isascii() and t.isdigit()) or int(t) > MAX_ID:
            raise self.fail(f"{where}: ID {text!r} is not an integer 0..{MAX_ID}")
        return int(t)

    def version(self, parent: Element, tag: str, where: str) -> str:
        # Both are optional in the schema (minOccurs=0, LwM2M-TS-Core 1.2 Appendix D); an
        # object without a version is version 1.0, the registry's own 1.0 files of 0, 1, 3
        # and 15 leave it out and 12-1_0 has it empty.
        value = _text(parent.find(tag)) or "1.0"
        if not _VERSION.fullmatch(value):
            raise self.fail(f"{where}: <{tag}> is {value!r}, expected MAJOR.MINOR such as 1.0")
        return value

    def description(self, parent: Element, *tags: str) -> str:
        if not self.descriptions:
            return ""
        parts = [_text(parent.find(t)) for t in tags]
        return "\n\n".join(p for p in parts if p)

    def resource(self, item: Element, object_where: str) -> ResourceDefinition:
        rid = self.id(item.get("ID"), f"{object_where}: resource <Item>")
        where = f"{object_where} resource {rid}"
        name = self.required(item, "Name", where)
        try:
            operations = Operations.parse(self.required(item, "Operations", where))
            type_ = ResourceType.parse(_text(item.find("Type")))
        except ValueError as exc:
            raise self.fail(f"{where}: {exc}") from None
        # RangeEnumeration and Units are missing in some uCIFI files; missing reads as empty.
        range_text = _text(item.find("RangeEnumeration")) or ""
        minimum, maximum = parse_range(range_text, type_)
        return ResourceDefinition(
            id=rid,
            name=name,
            type=type_,
            operations=operations,
            multiple=self.flag(item, "MultipleInstances", where, "Multiple", "Single"),
            mandatory=self.flag(item, "Mandatory", where, "Mandatory", "Optional"),
            units=_text(item.find("Units")) or "",
            range=range_text,
            minimum=minimum,
            maximum=maximum,
            description=self.description(item, "Description"),
        )

    def object(self, obj: Element) -> ObjectDefinition:
        oid = self.id(_text(obj.find("ObjectID")), "<Object>")
        where = f"object {oid}"
        resources: dict[int, ResourceDefinition] = {}
        container = obj.find("Resources")
        items = container.findall("Item") if container is not None else []
        for item in items:
            r = self.resource(item, where)
            if r.id in resources:
                raise self.fail(f"{where}: resource ID {r.id} appears twice")
            resources[r.id] = r
        return ObjectDefinition(
            id=oid,
            name=self.required(obj, "Name", where),
            resources=resources,
            version=self.version(obj, "ObjectVersion", where),
            lwm2m_version=self.version(obj, "LWM2MVersion", where),
            multiple=self.flag(obj, "MultipleInstances", where, "Multiple", "Single"),
            mandatory=self.flag(obj, "Mandatory", where, "Mandatory", "Optional"),
            urn=_text(obj.find("ObjectURN")) or "",
            description=self.description(obj, "Description1", "Description2"),
        )


def parse_ddf(
    data: bytes | str, source: str = "<bytes>", *, descriptions: bool = True
) -> list[ObjectDefinition]:
    """The object definitions in one DDF document (a ``<LWM2M>`` root holds one or more ``<Object>``).

    ``source`` names the document in error messages. With ``descriptions=False``
    the description texts are left out (the bundled catalogue holds facts only).
    """
    if isinstance(data, str):
        try:
            data = data.encode("utf-8")
        except UnicodeEncodeError as exc:  # lone surrogates: not Unicode text
            raise DDFError(source, f"not Unicode text: {exc.reason} at {exc.start}") from None
    # A BOM or blank lines before the XML declaration would make expat refuse the
    # declaration; neither carries meaning here (every registry file is UTF-8).
    if data.startswith(_BOM):
        data = data[len(_BOM) :]
    data = data.lstrip()
    if not data:
        raise DDFError(source, "the file is empty")
    try:
        root = SafeET.fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        raise DDFError(source, f"refused unsafe XML ({type(exc).__name__}): DDF files need no DTD") from None
    except ParseError as exc:
        raise DDFError(source, f"not well-formed XML: {exc}") from None
    except LookupError as exc:
        # An XML declaration naming an encoding Python does not know (encoding="UTF-9").
        raise DDFError(source, f"unknown encoding in the XML declaration: {exc}") from None
    except (ValueError, TypeError) as exc:
        # A known codec that is no text encoding (rot13, hex, ...) or bytes it cannot decode.
        raise DDFError(source, f"cannot decode the document: {exc}") from None
    if root.tag != "LWM2M":
        raise DDFError(source, f"the root element is <{root.tag}>, expected <LWM2M>")
    objects = root.findall("Object")
    if not objects:
        raise DDFError(source, "<LWM2M> holds no <Object>")
    reader = _Reader(source, descriptions)
    try:
        return [reader.object(o) for o in objects]
    except RecursionError:
        # itertext() recurses: markup nested thousands deep inside a text element.
        raise DDFError(source, "elements nested too deeply") from None


def load_ddf_file(path: str | os.PathLike[str], *, descriptions: bool = True) -> list[ObjectDefinition]:
    """The object definitions in one DDF file."""
    p = FsPath(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise DDFError(str(p), f"cannot read: {exc.strerror or exc}") from None
    return parse_ddf(data, str(p), descriptions=descriptions)


def load_ddf_dir(path: str | os.PathLike[str], *, descriptions: bool = True) -> list[ObjectDefinition]:
    """The object definitions of every ``*.xml`` file in a folder (not its subfolders), by ID and version.

    Two files defining the same object ID and version are an error: which one
    should win would depend on file names.
    """
    folder = FsPath(path)
    if not folder.is_dir():
        raise DDFError(str(folder), "not a folder")
    seen: dict[tuple[int, str], FsPath] = {}
    found: list[ObjectDefinition] = []
    for file in sorted(folder.glob("*.xml")):
        if not file.is_file():
            continue
        for d in load_ddf_file(file, descriptions=descriptions):
            key = (d.id, d.version)
            if key in seen:
                raise DDFError(str(file), f"object {d.id} version {d.version} is also defined in {seen[key]}")
            seen[key] = file
            found.append(d)
    return sorted(found, key=_order)


def load_ddf(source: str | os.PathLike[str] | bytes, *, descriptions: bool = True) -> list[ObjectDefinition]:
    """Object definitions from a DDF file, a folder of them, or the bytes of one document."""
    if isinstance(source, bytes | bytearray | memoryview):
        return parse_ddf(bytes(source), descriptions=descriptions)
    p = FsPath(source)
    if p.is_dir():
        return load_ddf_dir(p, descriptions=descriptions)
    return load_ddf_file(p, descriptions=descriptions)


def _order(d: ObjectDefinition) -> tuple[int, tuple[int, ...]]:
    return d.id, tuple(int(x) for x in d.version.split("."))


def sort_definitions(definitions: Iterable[ObjectDefinition]) -> list[ObjectDefinition]:
    """Definitions by object ID, then version."""
    return sorted(definitions, key=_order)
