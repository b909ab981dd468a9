"""What SenML-JSON and SenML-CBOR share: name and time resolution, typing by model.

RFC 8428 §4 defines one data model with two serialisations; LwM2M-TS-Core 1.2
§7.4.4 (SenML-JSON) and §7.4.5 (SenML-CBOR) map LwM2M paths onto it: the
resolved name ``bn + n`` is the path (``/3/0/7/0``), ``v`` carries Integer,
Unsigned Integer, Float and Time, ``vs`` String and Corelnk, ``vb`` Boolean,
``vd`` Opaque and ``vlo`` Objlnk (``"3:0"``). A record with a name and no
value stands for a path in a Read-Composite/Observe-Composite request or for
an empty object or instance.

Both codecs hand this module a pack as a list of dicts keyed by their own
labels (:class:`Labels`): strings in JSON, integers in CBOR. Times are kept
as the pack gives them (``bt + t``, Unix seconds): RFC 8428 §4.5.3 reads
values under 2**28 as relative to "now", but codecs are pure and have no
clock, so resolving relative times is left to the caller.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from lwm2m.errors import CodecError, InvalidPath
from lwm2m.model.path import MAX_ID, ROOT, Path, check_prefix
from lwm2m.model.record import Record, sort_records
from lwm2m.model.registry import ObjectRegistry
from lwm2m.model.value import (
    INT64_MAX,
    INT64_MIN,
    UINT64_MAX,
    ObjLink,
    ResourceType,
    Value,
    check_value,
    infer_type,
)

# Slots of the labels a decoder acts on; anything else is ignored (RFC 8428 §4.4).
_BN, _BT, _N, _T, _V, _VS, _VB, _VD, _VLO, _BV, _BVER = range(11)
_VALUE_SLOTS = (_V, _VS, _VB, _VD, _VLO)
_SENML_VERSION = 10  # RFC 8428 §4.4: packs of a higher bver must be rejected


@dataclass(frozen=True, slots=True)
class Labels:
    """The field labels of one SenML serialisation (RFC 8428 Table 4 for CBOR)."""

    bn: str | int
    bt: str | int
    n: str | int
    t: str | int
    v: str | int
    vs: str | int
    vb: str | int
    vd: str | int
    vlo: str | int
    bv: str | int
    bver: str | int

    def slots(self) -> dict[str | int, int]:
        order = (self.bn, self.bt, self.n, self.t, self.v, self.vs, self.vb, self.vd, self.vlo)
        table: dict[str | int, int] = {label: i for i, label in enumerate(order)}
        table[self.bv] = _BV
        table[self.bver] = _BVER
        return table


# vlo has no registered integer label: LwM2M-TS-Core 1.2 §7.4.5 keeps the string key in CBOR too.
JSON_LABELS = Labels("bn", "bt", "n", "t", "v", "vs", "vb", "vd", "vlo", "bv", "bver")
CBOR_LABELS = Labels(-2, -3, 0, 6, 2, 3, 4, 8, "vlo", -5, -1)


# --- opaque values ------------------------------------------------------------------------------


def b64url_encode(data: bytes) -> str:
    """base64url without padding, as RFC 8428 §5 asks for ``vd`` in JSON."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64_decode(text: object) -> bytes:
    """Decode base64url or base64, with or without padding; anything else is a CodecError.

    Senders disagree (older ones use the standard alphabet or pad), and both
    alphabets decode to the same bytes, so accepting both costs nothing.
    """
    if type(text) is not str:
        raise CodecError(f"an opaque value must be a base64 string, got {type(text).__name__}")
    s = text.rstrip("=")
    if len(s) % 4 == 1:
        raise CodecError(f"invalid base64 value {text[:40]!r}: bad length")
    try:
        return base64.b64decode(s + "=" * (-len(s) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise CodecError(f"invalid base64 value {text[:40]!r}") from None


# --- names --------------------------------------------------------------------------------------


@lru_cache(maxsize=4096)
def parse_name(name: str) -> Path:
    """The LwM2M path a resolved SenML name stands for (``/3/0/7/0``; a trailing ``/`` is allowed).

    A first segment that is not a number is the prefix of an end device behind a gateway
    (``/dev1/3303/0/5700``): LwM2M-TS-Gateway 1.1 carries it in the SenML name.
    Cached: packs repeat the same few names (a device's resources) over and over.
    """
    body = name[1:] if name.startswith("/") else name
    if body.endswith("/"):
        body = body[:-1]
    if not body:
        if name in ("", "/"):
            return ROOT
        raise CodecError(f"invalid name {name!r}: not an LwM2M path")
    parts = body.split("/")
    prefix = ""
    if parts[0] and not parts[0].isdigit():
        try:
            prefix = check_prefix(parts[0])
        except InvalidPath as exc:
            raise CodecError(f"invalid name {name[:60]!r}: {exc}") from None
        parts = parts[1:]
        if not parts:
            return Path((), prefix)
    if len(parts) > 4:
        raise CodecError(f"invalid name {name[:60]!r}: an LwM2M path has at most 4 levels")
    ids = []
    for p in parts:
        if not (p.isdigit() and p.isascii()) or len(p) > 5 or (len(p) > 1 and p[0] == "0"):
            raise CodecError(f"invalid name {name[:60]!r}: {p[:10]!r} is not an LwM2M ID")
        i = int(p)
        if i > MAX_ID:
            raise CodecError(f"invalid name {name!r}: ID {i} is over {MAX_ID}")
        ids.append(i)
    return Path(tuple(ids), prefix)


@lru_cache(maxsize=4096)
def relative_name(ids: tuple[int, ...]) -> str:
    """``7/0`` for (7, 0): the ``n`` of a record below its base name."""
    return "/".join([str(i) for i in ids])


def base_name(ids: tuple[int, ...], device: str = "") -> str:
    """``/3/0/`` for (3, 0); ``/dev1/3/0/`` on the end device ``dev1``."""
    return ("/" + device if device else "") + "/" + "".join(f"{i}/" for i in ids)


# --- typing by model ----------------------------------------------------------------------------


class TypeLookup:
    """Resource types by (object, resource) for the length of one encode/decode call.

    ``ObjectRegistry.resource`` picks the newest object version on every call;
    a pack names the same few resources many times, so remember the answers.
    """

    __slots__ = ("_cache", "_models")

    def __init__(self, models: ObjectRegistry | None) -> None:
        self._models = models
        self._cache: dict[tuple[int, int], ResourceType | None] = {}

    def __call__(self, ids: tuple[int, ...]) -> ResourceType | None:
        if self._models is None:
            return None
        key = (ids[0], ids[2])
        try:
            return self._cache[key]
        except KeyError:
            d = self._models.resource(ids[0], ids[2])
            t = self._cache[key] = d.type if d is not None and d.type is not ResourceType.NONE else None
            return t


# The Python type a value of each LwM2M type has when no coercion is needed; integer types are
# left out because they also need a range check. Lets the hot loops skip check_value.
NATIVE: dict[ResourceType, type] = {
    ResourceType.STRING: str,
    ResourceType.CORELNK: str,
    ResourceType.FLOAT: float,
    ResourceType.BOOLEAN: bool,
    ResourceType.OPAQUE: bytes,
    ResourceType.OBJLNK: ObjLink,
}


# Python types whose natural LwM2M type needs no check (ints do: 64-bit range).
_NATURAL: dict[type, ResourceType] = {
    str: ResourceType.STRING,
    float: ResourceType.FLOAT,
    bool: ResourceType.BOOLEAN,
    bytes: ResourceType.OPAQUE,
    ObjLink: ResourceType.OBJLNK,
}


def checked(path: Path, value: Value, rtype: ResourceType) -> Value:
    """``check_value`` with its ValueError as a CodecError naming the path."""
    if type(value) is NATIVE.get(rtype):
        return value
    try:
        return check_value(value, rtype)
    except ValueError as exc:
        raise CodecError(f"{path}: {exc}") from None


def wire_value(value: Value, rtype: ResourceType | None) -> tuple[ResourceType, Value]:
    """The wire type and checked value of ``value``: the model's type if known, else the natural one."""
    if rtype is None:
        natural = _NATURAL.get(type(value))
        if natural is not None:
            return natural, value
    elif type(value) is NATIVE.get(rtype):
        return rtype, value
    try:
        if rtype is None:
            rtype = infer_type(value)
            if rtype is ResourceType.INTEGER and type(value) is int and value > INT64_MAX:
                rtype = ResourceType.UNSIGNED_INTEGER
        return rtype, check_value(value, rtype)
    except ValueError as exc:
        raise CodecError(str(exc)) from None


def check_number(x: object, what: str) -> int | float:
    """A JSON/CBOR number that can stand for an LwM2M number (not a bool, not a huge integer)."""
    tx = type(x)
    if tx is int:
        if INT64_MIN <= x <= UINT64_MAX:  # type: ignore[operator]
            return x  # type: ignore[return-value]
        raise CodecError(f"{what} {x} is out of the 64-bit range")
    if tx is float:
        return x  # type: ignore[return-value]
    raise CodecError(f"{what} must be a number, got {tx.__name__}")


# --- decoding -----------------------------------------------------------------------------------


_Name = tuple[Path, object, "ResourceType | None", "type | None"]

# A decoder forgets the names it learnt past this many, so that a client that makes up a new
# name in every pack costs bounded memory.
NAME_CACHE_SIZE = 256


class PackDecoder:
    """Records of decoded SenML packs under one base path, typed by one registry.

    Remembers what it learnt of each resolved name (the path, whether it lies under
    the base, the resource's type): the notifications of one observation name the
    same few resources in every pack, so from the second pack on a record costs one
    dict lookup instead of parsing, checking and a model lookup. It answers exactly
    what a fresh decoder would, errors included; a name's type is looked up again
    when the registry's definition of its object changes.

    ``slots`` maps the serialisation's labels to slot numbers (``Labels.slots``);
    ``opaque`` turns a ``vd`` field into bytes (base64url in JSON, a byte string in CBOR).
    """

    __slots__ = ("_base", "_base_ids", "_bn", "_models", "_n", "_names", "_nbase", "_opaque", "_slots", "_v")

    def __init__(
        self,
        base: Path,
        models: ObjectRegistry | None,
        slots: dict[str | int, int],
        opaque: Callable[[object], bytes],
    ) -> None:
        self._base = base
        self._base_ids = base.ids
        self._nbase = len(base.ids)
        self._models = models
        self._slots = slots
        self._opaque = opaque
        by_slot = {slot: label for label, slot in slots.items()}
        self._bn, self._n, self._v = by_slot[_BN], by_slot[_N], by_slot[_V]
        # resolved name -> (path, the object's definition the type came from, the resource type,
        # the Python type its values have when they need no check)
        self._names: dict[str, _Name] = {}

    def _learn(self, name: str) -> _Name:
        path = parse_name(name) if name else ROOT
        ids = path.ids
        if ids[: self._nbase] != self._base_ids or (
            path.prefix != self._base.prefix and not path.within(self._base)
        ):
            raise CodecError(f"{path} is not under the request path {self._base}")
        definition: object = None
        rtype = None
        models = self._models
        if models is not None and len(ids) >= 3:
            definition = models.get(ids[0])
            if definition is not None:
                d = definition.resource(ids[2])
                if d is not None and d.type is not ResourceType.NONE:
                    rtype = d.type
        names = self._names
        if len(names) >= NAME_CACHE_SIZE:
            names.clear()
        entry = names[name] = (path, definition, rtype, NATIVE.get(rtype) if rtype is not None else None)
        return entry

    def decode(self, pack: object) -> list[Record]:
        """The records of ``pack`` (a list of label -> value dicts), sorted by path then time."""
        if type(pack) is not list:
            raise CodecError(f"a SenML pack must be an array of records, got {type(pack).__name__}")
        slot_of = self._slots.get
        names = self._names
        models = self._models
        l_bn, l_n, l_v = self._bn, self._n, self._v
        bn = ""
        bt: int | float | None = None
        bv: int | float | None = None
        # Declared once for the two ways through a record below (the types the checks ensure).
        raw: Any
        name: str | None
        value: Any
        time: int | float | None
        out: list[Record] = []
        append = out.append
        for item in pack:
            if type(item) is not dict:
                raise CodecError(f"a SenML record must be a map, got {type(item).__name__}")
            if len(item) == 2:
                # The usual record of a notification: a name known from an earlier pack and a
                # number. Anything else, or any doubt, takes the full way below.
                raw = item.get(l_v)
                tr = type(raw)
                if tr is float or (tr is int and INT64_MIN <= raw <= UINT64_MAX):
                    x = item.get(l_bn)
                    if type(x) is str:
                        bn = name = x
                    else:
                        x = item.get(l_n)
                        name = bn + x if type(x) is str else None
                    entry = names.get(name) if name is not None else None
                    if entry is not None:
                        path, definition, rtype, native = entry
                        ids = path.ids
                        if len(ids) >= 3 and (models is None or models.get(ids[0]) is definition):
                            value = raw if bv is None else bv + raw
                            if rtype is not None and type(value) is not native:
                                value = checked(path, value, rtype)
                            append(Record(path, value, bt))
                            continue
            n = ""
            t = None
            kind = -1
            raw = None
            for label, x in item.items():
                slot = slot_of(label)
                if slot is None:
                    # RFC 8428 §4.4: labels ending in "_" must be understood; we understand none.
                    if type(label) is str and label.endswith("_"):
                        raise CodecError(f"unsupported must-understand SenML field {label[:20]!r}")
                    continue
                if slot >= _V and slot <= _VLO:
                    if kind != -1:
                        raise CodecError("a SenML record carries more than one value field")
                    kind, raw = slot, x
                elif slot == _N:
                    if type(x) is not str:
                        raise CodecError("a SenML name (n) must be a string")
                    n = x
                elif slot == _BN:
                    if type(x) is not str:
                        raise CodecError("a SenML base name (bn) must be a string")
                    bn = x
                elif slot == _T:
                    t = check_number(x, "a SenML time (t)")
                elif slot == _BT:
                    bt = check_number(x, "a SenML base time (bt)")
                elif slot == _BV:
                    bv = check_number(x, "a SenML base value (bv)")
                elif type(x) is not int or x > _SENML_VERSION:  # bver
                    raise CodecError(f"unsupported SenML version {x!r}")
            name = bn + n
            entry = names.get(name)
            if entry is None:
                entry = self._learn(name)
            path, definition, rtype, native = entry
            if t is not None:
                time = t if bt is None else bt + t
                if time != time or time in (math.inf, -math.inf):
                    raise CodecError("a SenML time must be finite")
            else:
                time = bt
            if kind == -1:
                append(Record(path, None, time))
                continue
            ids = path.ids
            if len(ids) < 3:
                raise CodecError(f"{path} carries a value but is not a resource path")
            if kind == _V:
                value = check_number(raw, "a SenML value (v)")
                if bv is not None:
                    value = bv + value
            elif kind == _VS:
                if type(raw) is not str:
                    raise CodecError("a SenML string value (vs) must be a string")
                value = raw
            elif kind == _VB:
                if type(raw) is not bool:
                    raise CodecError("a SenML boolean value (vb) must be true or false")
                value = raw
            elif kind == _VD:
                value = self._opaque(raw)
            else:
                if type(raw) is not str:
                    raise CodecError("an object link value (vlo) must be a string such as 3:0")
                try:
                    value = ObjLink.parse(raw)
                except ValueError as exc:
                    raise CodecError(str(exc)) from None
            if models is not None and models.get(ids[0]) is not definition:
                path, definition, rtype, native = self._learn(name)  # the object's definition changed
            if rtype is not None and type(value) is not native:
                value = checked(path, value, rtype)
            append(Record(path, value, time))
        return out if len(out) < 2 else sort_records(out)


def decode_pack(
    pack: object,
    base: Path,
    models: ObjectRegistry | None,
    slots: dict[str | int, int],
    opaque: Callable[[object], bytes],
) -> list[Record]:
    """Records of a decoded SenML pack (a list of label → value dicts), sorted by path then time.

    One pack: see :class:`PackDecoder` for many under the same base.
    """
    return PackDecoder(base, models, slots, opaque).decode(pack)


# --- encoding -----------------------------------------------------------------------------------


def encode_pack(
    records: Sequence[Record],
    base: Path,
    models: ObjectRegistry | None,
    labels: Labels,
    opaque: Callable[[bytes], object],
    finite_only: bool,
) -> list[dict[str | int, object]]:
    """The SenML pack (a list of label → value dicts) for ``records``.

    Names: below a non-root base, one ``bn`` (the base path and ``/``) and each
    ``n`` relative to it, as in the examples of LwM2M-TS-Core 1.2 §7.4.4; at the
    root (composite content), a ``bn`` per object instance, set again only when
    the instance changes. A record at the base itself is named by ``bn`` alone.
    """
    base_ids = base.ids
    base_prefix = base.prefix
    nbase = len(base_ids)
    depth = nbase or 2
    types = TypeLookup(models)
    L_BN, L_N, L_T = labels.bn, labels.n, labels.t
    L_V, L_VS, L_VB, L_VD, L_VLO = labels.v, labels.vs, labels.vb, labels.vd, labels.vlo
    current: tuple[int, ...] | None = None  # the ids the last bn named, and whether it had a "/"
    current_prefix = ""  # the end device the last bn named
    long_bn = False
    out: list[dict[str | int, object]] = []
    for r in records:
        ids = r.path.ids
        device = r.path.prefix
        if ids[:nbase] != base_ids or (device != base_prefix and not r.path.within(base)):
            raise CodecError(f"{r.path} is not under the request path {base}")
        item: dict[str | int, object] = {}
        if len(ids) > depth:
            group = ids[:depth]
            if group != current or not long_bn or device != current_prefix:
                item[L_BN] = base_name(group, device)
                current, long_bn, current_prefix = group, True, device
            item[L_N] = relative_name(ids[depth:])
        elif ids != current or long_bn or device != current_prefix:
            item[L_BN] = str(r.path)
            current, long_bn, current_prefix = ids, False, device
        time = r.time
        if time is not None:
            if finite_only and (time != time or time in (math.inf, -math.inf)):
                raise CodecError(f"{r.path}: a time must be finite in this format")
            item[L_T] = time
        value = r.value
        if value is not None:
            if len(ids) < 3:
                raise CodecError(f"{r.path} carries a value but is not a resource path")
            rtype, value = wire_value(value, types(ids))
            if rtype is ResourceType.STRING or rtype is ResourceType.CORELNK:
                item[L_VS] = value
            elif rtype is ResourceType.BOOLEAN:
                item[L_VB] = value
            elif rtype is ResourceType.OPAQUE:
                item[L_VD] = opaque(value)  # type: ignore[arg-type]
            elif rtype is ResourceType.OBJLNK:
                item[L_VLO] = str(value)
            else:
                if finite_only and type(value) is float and not math.isfinite(value):
                    raise CodecError(f"{r.path}: {value} cannot be written in this format")
                item[L_V] = value
        out.append(item)
    return out
