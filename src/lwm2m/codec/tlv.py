"""OMA-TLV, content format 11542 (LwM2M-TS-Core 1.2 §7.4.3).

Each TLV is a type byte, an 8- or 16-bit identifier, a length of 0 to 3
bytes and the value::

    bits 7-6  what it is: 00 object instance, 01 resource instance,
              10 multiple resource, 11 resource with a value
    bit  5    identifier length: 0 = 8 bits, 1 = 16 bits
    bits 4-3  length field: 00 = length in bits 2-0, 01/10/11 = 8/16/24-bit length
    bits 2-0  the length when bits 4-3 are 00

Object instance and multiple resource TLVs hold other TLVs. TLV carries no
types: values are read with the model; without one a value is returned as
Opaque bytes. What the top level holds follows from the request path:
object → object instance TLVs, instance → resource TLVs, resource → one
resource or multiple resource TLV, resource instance → one resource
instance TLV. TLV has no timestamps.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping, Sequence

from lwm2m.codec.base import ContentFormat, typed_value
from lwm2m.errors import CodecError
from lwm2m.model.definition import ResourceDefinition
from lwm2m.model.path import MAX_ID, Path
from lwm2m.model.record import Record
from lwm2m.model.registry import ObjectRegistry
from lwm2m.model.value import (
    INT64_MAX,
    INT64_MIN,
    UINT64_MAX,
    ObjLink,
    ResourceType,
    UntypedBytes,
    Value,
    infer_type,
)

# Type byte bits 7-6 (LwM2M-TS-Core 1.2 §7.4.3, Table 7.4.3.-1).
OBJECT_INSTANCE = 0x00
RESOURCE_INSTANCE = 0x40
MULTIPLE_RESOURCE = 0x80
RESOURCE = 0xC0

_KIND_NAMES = {
    OBJECT_INSTANCE: "object instance",
    RESOURCE_INSTANCE: "resource instance",
    MULTIPLE_RESOURCE: "multiple resource",
    RESOURCE: "resource",
}
_MAX_LENGTH = 0xFFFFFF  # 24-bit length field
_F32 = struct.Struct(">f")
_F64 = struct.Struct(">d")
_OBJLNK = struct.Struct(">HH")
_NO_RESOURCES: Mapping[int, ResourceDefinition] = {}

T = ResourceType


# -- encoding -------------------------------------------------------------------------------


def _header(kind: int, id_: int, length: int) -> bytes:
    if id_ > 0xFF:
        kind |= 0x20
        if length < 8:
            return bytes((kind | length, id_ >> 8, id_ & 0xFF))
        if length <= 0xFF:
            return bytes((kind | 0x08, id_ >> 8, id_ & 0xFF, length))
        ident = id_.to_bytes(2, "big")
    else:
        if length < 8:
            return bytes((kind | length, id_))
        if length <= 0xFF:
            return bytes((kind | 0x08, id_, length))
        ident = bytes((id_,))
    if length <= 0xFFFF:
        return bytes((kind | 0x10,)) + ident + length.to_bytes(2, "big")
    if length <= _MAX_LENGTH:
        return bytes((kind | 0x18,)) + ident + length.to_bytes(3, "big")
    raise CodecError(f"TLV value of {length} bytes is over the 24-bit length limit")


def _enc_int(v: int) -> bytes:
    # LwM2M-TS-Core 1.2 Appendix C: signed integers in 1, 2, 4 or 8 bytes; use the shortest.
    if -0x80 <= v <= 0x7F:
        return v.to_bytes(1, "big", signed=True)
    if -0x8000 <= v <= 0x7FFF:
        return v.to_bytes(2, "big", signed=True)
    if -0x80000000 <= v <= 0x7FFFFFFF:
        return v.to_bytes(4, "big", signed=True)
    return v.to_bytes(8, "big", signed=True)


def _enc_uint(v: int) -> bytes:
    if v <= 0xFF:
        return bytes((v,))
    if v <= 0xFFFF:
        return v.to_bytes(2, "big")
    if v <= 0xFFFFFFFF:
        return v.to_bytes(4, "big")
    return v.to_bytes(8, "big")


def _enc_float(v: float) -> bytes:
    # 4 bytes when single precision holds the value exactly, else 8 (Appendix C allows both).
    try:
        b = _F32.pack(v)
    except OverflowError:
        return _F64.pack(v)
    return b if _F32.unpack(b)[0] == v else _F64.pack(v)


# Encoders take a value already of the right Python type, or answer None so that
# _value_bytes can coerce it (int -> Float, "3:0" -> Objlnk, ...) or refuse it. Keyed by the
# type's value string: hashing an Enum member runs Python code, hashing its str does not.
_ENCODERS: dict[str, Callable[[Value], bytes | None]] = {
    T.STRING.value: lambda v: v.encode("utf-8") if type(v) is str else None,
    T.CORELNK.value: lambda v: v.encode("utf-8") if type(v) is str else None,
    T.INTEGER.value: lambda v: _enc_int(v) if type(v) is int and INT64_MIN <= v <= INT64_MAX else None,
    T.TIME.value: lambda v: _enc_int(v) if type(v) is int and INT64_MIN <= v <= INT64_MAX else None,
    T.UNSIGNED_INTEGER.value: lambda v: _enc_uint(v) if type(v) is int and 0 <= v <= UINT64_MAX else None,
    T.FLOAT.value: lambda v: _enc_float(v) if type(v) is float else None,
    T.BOOLEAN.value: lambda v: (b"\x01" if v else b"\x00") if type(v) is bool else None,
    T.OPAQUE.value: lambda v: v if type(v) is bytes else None,
    T.OBJLNK.value: lambda v: _OBJLNK.pack(v.object_id, v.instance_id) if type(v) is ObjLink else None,
}


def _value_bytes(path: Path, value: Value, rdef: ResourceDefinition | None) -> bytes:
    t = rdef.type if rdef is not None else None
    if t is None or t is T.NONE:
        try:
            t = infer_type(value)
        except ValueError as exc:
            raise CodecError(f"{path}: {exc}") from None
    enc = _ENCODERS[t._value_]
    b = enc(value)
    if b is None:
        b = enc(typed_value(path, value, t))
        assert b is not None
    return b


def _resource_tlv(group: list[Record], rdef: ResourceDefinition | None) -> bytes:
    """The resource or multiple resource TLV for the records of one resource (sorted)."""
    first = group[0]
    rid = first.path.ids[2]
    if len(group) == 1 and len(first.path.ids) == 3 and first.value is not None:
        if rdef is not None and rdef.multiple:
            raise CodecError(f"{first.path} is a multi-instance resource: give its instances")
        body = _value_bytes(first.path, first.value, rdef)
        return _header(RESOURCE, rid, len(body)) + body
    if rdef is not None and not rdef.multiple:
        raise CodecError(f"{first.path.resource_path()} is a single-instance resource: give one value")
    parts: list[bytes] = []
    last = -1
    for r in group:
        ids = r.path.ids
        if len(ids) == 3:
            if r.value is not None:
                raise CodecError(f"{r.path}: a value for the resource beside values for its instances")
            continue  # the empty resource itself; its instances (if any) follow
        if r.value is None:
            raise CodecError(f"{r.path}: a resource instance needs a value")
        if ids[3] == last:
            raise CodecError(f"{r.path} is given twice")
        last = ids[3]
        body = _value_bytes(r.path, r.value, rdef)
        parts.append(_header(RESOURCE_INSTANCE, ids[3], len(body)))
        parts.append(body)
    body = b"".join(parts)
    return _header(MULTIPLE_RESOURCE, rid, len(body)) + body


def _instance_body(recs: list[Record], resources: Mapping[int, ResourceDefinition]) -> bytes:
    """Resource TLVs for the sorted records of one object instance."""
    parts: list[bytes] = []
    i, n = 0, len(recs)
    while i < n:
        r = recs[i]
        ids = r.path.ids
        if len(ids) == 2:
            if r.value is not None:
                raise CodecError(f"{r.path}: an object instance cannot have a value")
            i += 1
            continue
        rid = ids[2]
        j = i + 1
        while j < n and recs[j].path.ids[2] == rid:
            j += 1
        if j - i == 1 and len(ids) == 3 and r.value is not None:
            # The common case, inlined: a single resource with its value.
            rdef = resources.get(rid)
            if rdef is not None and rdef.multiple:
                raise CodecError(f"{r.path} is a multi-instance resource: give its instances")
            body = _value_bytes(r.path, r.value, rdef)
            parts.append(_header(RESOURCE, rid, len(body)))
            parts.append(body)
        else:
            parts.append(_resource_tlv(recs[i:j], resources.get(rid)))
        i = j
    return b"".join(parts)


def _path_key(r: Record) -> tuple[int, ...]:
    return r.path.ids


class TlvCodec:
    content_format = ContentFormat.TLV
    name = "tlv"

    def encode(self, records: Sequence[Record], base: Path, models: ObjectRegistry | None = None) -> bytes:
        bids = base.ids
        level = len(bids)
        if level == 0:
            raise CodecError("TLV cannot hold several objects: encode each object under its own path")
        for r in records:
            if r.path.ids[:level] != bids:
                raise CodecError(f"record {r.path} is not under the request path {base}")
            if r.path.prefix != base.prefix:
                # TLV names no path: on an end device behind a gateway, the prefix is in the
                # request's Uri-Path only (LwM2M-TS-Gateway 1.1), so one TLV holds one device.
                raise CodecError(f"TLV cannot carry {r.path} under {base}: it holds one device's content")
            if r.time is not None:
                raise CodecError(f"TLV cannot carry timestamps ({r.path} has one): use SenML")
        recs = sorted(records, key=_path_key)
        objdef = models.get(bids[0]) if models is not None else None
        resources = objdef.resources if objdef is not None else _NO_RESOURCES
        if level == 1:
            return self._object(recs, resources)
        if level == 2:
            return _instance_body(recs, resources)
        if level == 3:
            if not recs:
                raise CodecError(f"nothing to encode for {base}")
            return _resource_tlv(recs, resources.get(bids[2]))
        if len(recs) != 1 or recs[0].value is None:
            raise CodecError(f"a resource instance TLV carries one value for {base}")
        r = recs[0]
        body = _value_bytes(r.path, r.value, resources.get(bids[2]))  # type: ignore[arg-type]
        return _header(RESOURCE_INSTANCE, bids[3], len(body)) + body

    @staticmethod
    def _object(recs: list[Record], resources: Mapping[int, ResourceDefinition]) -> bytes:
        parts: list[bytes] = []
        i, n = 0, len(recs)
        while i < n:
            ids = recs[i].path.ids
            if len(ids) == 1:
                if recs[i].value is not None:
                    raise CodecError(f"{recs[i].path}: an object cannot have a value")
                i += 1
                continue
            iid = ids[1]
            j = i + 1
            while j < n and recs[j].path.ids[1] == iid:
                j += 1
            body = _instance_body(recs[i:j], resources)
            parts.append(_header(OBJECT_INSTANCE, iid, len(body)))
            parts.append(body)
            i = j
        return b"".join(parts)

    # -- decoding ---------------------------------------------------------------------------

    def decode(self, data: bytes, base: Path, models: ObjectRegistry | None = None) -> list[Record]:
        if not isinstance(data, bytes):
            data = bytes(data)
        bids = base.ids
        level = len(bids)
        if level == 0:
            raise CodecError("TLV cannot hold several objects: decode it under an object path")
        objdef = models.get(bids[0]) if models is not None else None
        resources = objdef.resources if objdef is not None else _NO_RESOURCES
        top = _split(data, 0, len(data))
        out: list[Record] = []
        if level == 1:
            if not top:
                return [Record(base)]
            for kind, id_, start, end in top:
                if kind != OBJECT_INSTANCE:
                    got = _KIND_NAMES[kind]
                    raise CodecError(f"expected object instance TLVs for {base}, got a {got} TLV")
                _decode_instance(data, (bids[0], id_), _split(data, start, end), resources, out)
        elif level == 2:
            if len(top) == 1 and top[0][0] == OBJECT_INSTANCE:
                # LwM2M-TS-Core 1.2 §7.4.3: an instance may come wrapped in its object instance TLV.
                kind, id_, start, end = top[0]
                if id_ != bids[1]:
                    raise CodecError(f"object instance TLV {id_} does not match the request path {base}")
                top = _split(data, start, end)
            _decode_instance(data, bids, top, resources, out)
        elif level == 3:
            rdef = resources.get(bids[2])
            if top and all(t[0] == RESOURCE_INSTANCE for t in top):
                # Resource instances without their multiple resource TLV: seen from some clients.
                _decode_instances(data, base, top, rdef, out)
            elif len(top) == 1 and top[0][0] in (RESOURCE, MULTIPLE_RESOURCE) and top[0][1] == bids[2]:
                _decode_resource(data, bids[:2], top[0], rdef, out)
            else:
                raise CodecError(f"expected one resource TLV with ID {bids[2]} for {base}")
        else:
            if len(top) != 1 or top[0][0] != RESOURCE_INSTANCE or top[0][1] != bids[3]:
                raise CodecError(f"expected one resource instance TLV with ID {bids[3]} for {base}")
            _, _, start, end = top[0]
            out.append(Record(base, _decode_value(data[start:end], base, resources.get(bids[2]))))
        if len(out) > 1:
            out.sort(key=_path_key)
            # Decoded records never nest (an empty instance or resource has no children),
            # so a record at or under the one before it means a repeated ID in the payload.
            prev = out[0].path.ids
            for r in out[1:]:
                ids = r.path.ids
                if ids[: len(prev)] == prev:
                    raise CodecError(f"{Path(prev)} is given twice")
                prev = ids
        if base.prefix:  # the end device the request names (LwM2M-TS-Gateway 1.1)
            return [Record(r.path.with_prefix(base.prefix), r.value, r.time) for r in out]
        return out


def _path(ids: tuple[int, ...]) -> Path:
    # IDs from the payload are checked in _split (8-bit IDs always fit), so skip Path's own
    # per-ID validation: it is a sizeable share of decoding time.
    p = _new_path(Path)
    _set_attr(p, "ids", ids)
    _set_attr(p, "prefix", "")
    return p


_new_path = object.__new__
_set_attr = object.__setattr__


def _split(data: bytes, pos: int, end: int) -> list[tuple[int, int, int, int]]:
    """The TLVs in ``data[pos:end]`` as (kind, id, value start, value end)."""
    out: list[tuple[int, int, int, int]] = []
    while pos < end:
        t = data[pos]
        if t & 0x20:
            if pos + 3 > end:
                raise CodecError(f"TLV header at offset {pos} is cut short")
            id_ = (data[pos + 1] << 8) | data[pos + 2]
            pos += 3
            if id_ > MAX_ID:
                raise CodecError(f"TLV identifier {id_} is reserved")
        else:
            if pos + 2 > end:
                raise CodecError(f"TLV header at offset {pos} is cut short")
            id_ = data[pos + 1]
            pos += 2
        ltype = t & 0x18
        if ltype == 0:
            length = t & 0x07
        else:
            nbytes = ltype >> 3
            if pos + nbytes > end:
                raise CodecError(f"TLV length field at offset {pos} is cut short")
            length = int.from_bytes(data[pos : pos + nbytes], "big")
            pos += nbytes
        if pos + length > end:
            raise CodecError(f"TLV value at offset {pos} needs {length} bytes, {end - pos} are left")
        out.append((t & 0xC0, id_, pos, pos + length))
        pos += length
    return out


def _decode_instance(
    data: bytes,
    prefix: tuple[int, ...],
    tlvs: list[tuple[int, int, int, int]],
    resources: Mapping[int, ResourceDefinition],
    out: list[Record],
) -> None:
    if not tlvs:
        out.append(Record(_path(prefix)))  # an empty instance
        return
    for tlv in tlvs:
        kind, rid = tlv[0], tlv[1]
        if kind == RESOURCE:
            # The common case, inlined: a single resource with its value.
            rdef = resources.get(rid)
            path = _path((*prefix, rid))
            if rdef is not None and rdef.multiple:
                raise CodecError(f"{path} is a multi-instance resource but came as a single resource TLV")
            out.append(Record(path, _decode_value(data[tlv[2] : tlv[3]], path, rdef)))
        elif kind == MULTIPLE_RESOURCE:
            _decode_resource(data, prefix, tlv, resources.get(rid), out)
        else:
            got = _KIND_NAMES[kind]
            raise CodecError(f"a {got} TLV cannot sit directly in object instance {Path(prefix)}")


def _decode_resource(
    data: bytes,
    prefix: tuple[int, ...],
    tlv: tuple[int, int, int, int],
    rdef: ResourceDefinition | None,
    out: list[Record],
) -> None:
    kind, rid, start, end = tlv
    path = _path((*prefix, rid))
    if kind == RESOURCE:
        if rdef is not None and rdef.multiple:
            raise CodecError(f"{path} is a multi-instance resource but came as a single resource TLV")
        out.append(Record(path, _decode_value(data[start:end], path, rdef)))
        return
    if rdef is not None and not rdef.multiple:
        raise CodecError(f"{path} is a single-instance resource but came as a multiple resource TLV")
    inner = _split(data, start, end)
    if not inner:
        out.append(Record(path))  # a multi-instance resource with no instances
        return
    for t in inner:
        if t[0] != RESOURCE_INSTANCE:
            raise CodecError(f"a {_KIND_NAMES[t[0]]} TLV cannot sit in multiple resource {path}")
    _decode_instances(data, path, inner, rdef, out)


def _decode_instances(
    data: bytes,
    path: Path,
    tlvs: list[tuple[int, int, int, int]],
    rdef: ResourceDefinition | None,
    out: list[Record],
) -> None:
    ids = path.ids
    for _, riid, start, end in tlvs:
        p = _path((*ids, riid))
        out.append(Record(p, _decode_value(data[start:end], p, rdef)))


def _dec_int(b: bytes) -> int | None:
    return int.from_bytes(b, "big", signed=True) if len(b) in (1, 2, 4, 8) else None


def _dec_uint(b: bytes) -> int | None:
    return int.from_bytes(b, "big") if len(b) in (1, 2, 4, 8) else None


def _dec_float(b: bytes) -> float | None:
    n = len(b)
    if n == 4:
        value: float = _F32.unpack(b)[0]
        return value
    if n == 8:
        value = _F64.unpack(b)[0]
        return value
    return None


def _dec_bool(b: bytes) -> bool | None:
    if b == b"\x01":
        return True
    if b == b"\x00":
        return False
    return None


def _dec_objlnk(b: bytes) -> ObjLink | None:
    return ObjLink(*_OBJLNK.unpack(b)) if len(b) == 4 else None


def _dec_str(b: bytes) -> str | None:
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError:
        return None


_DECODERS: dict[str, Callable[[bytes], Value | None]] = {
    T.STRING.value: _dec_str,
    T.CORELNK.value: _dec_str,
    T.INTEGER.value: _dec_int,
    T.TIME.value: _dec_int,
    T.UNSIGNED_INTEGER.value: _dec_uint,
    T.FLOAT.value: _dec_float,
    T.BOOLEAN.value: _dec_bool,
    T.OBJLNK.value: _dec_objlnk,
}

_EXPECTED = {
    T.STRING: "UTF-8 text",
    T.CORELNK: "UTF-8 text",
    T.INTEGER: "1, 2, 4 or 8 bytes",
    T.TIME: "1, 2, 4 or 8 bytes",
    T.UNSIGNED_INTEGER: "1, 2, 4 or 8 bytes",
    T.FLOAT: "4 or 8 bytes",
    T.BOOLEAN: "one byte 0 or 1",
    T.OBJLNK: "4 bytes",
}


def _decode_value(b: bytes, path: Path, rdef: ResourceDefinition | None) -> Value:
    """A value as the model types it; Opaque bytes for Opaque, untyped bytes without a model."""
    if rdef is None:
        return UntypedBytes(b)
    dec = _DECODERS.get(rdef.type._value_)
    if dec is None:  # Opaque, or none (executable): the bytes as they are
        return b
    v = dec(b)
    if v is None:
        t = rdef.type
        raise CodecError(f"{path}: invalid {t.value} value {b[:16].hex()} (expected {_EXPECTED[t]})")
    return v


TLV = TlvCodec()
