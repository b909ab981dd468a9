"""LwM2M-CBOR, content format 11544 (LwM2M-TS-Core 1.2 §7.4.7).

Nested CBOR maps keyed by path IDs from the root, where a key may also be an
array of IDs standing for several levels at once::

    {3: {0: {0: "Open Mobile Alliance", 7: {0: 3800, 1: 5000}}}}
    {[3, 0]: {0: "Open Mobile Alliance", 7: {0: 3800, 1: 5000}}}

Values: String and Corelnk as text strings, Integer/Unsigned Integer/Time as
integers, Float as a float, Boolean, Opaque as a byte string and Objlnk as the
text ``"3:0"``. The format has no timestamps: records with a time cannot be
encoded. An empty map (or ``null``) stands for a node without content.

On an end device behind a gateway the first key of a path is its prefix, a text
string (``{"dev1": {3303: {0: {5700: 21.5}}}}`` or ``{["dev1", 3303, 0]: {...}}``),
as LwM2M-TS-Gateway 1.1 carries the prefix in the formats that name paths; a
Send at the root may hold the gateway's own paths beside its end devices'.

The encoder collapses every chain of single children into one array key
(``{[3, 0, 7]: {0: 3800, 1: 5000}}``); the decoder accepts any split, and
merges the subtrees of a key that appears more than once in a map (some
clients write ``{3: {...}, 3303: {...}, 3: {...}}`` in a Send) into one
tree. A path given twice with different values, or with a value and also
with children, is a CodecError: no value is dropped without one.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

import cbor2

from lwm2m.codec.base import CBOR_MAX_DEPTH, ContentFormat, cbor_loads
from lwm2m.codec.senml import NATIVE, TypeLookup, check_number, wire_value
from lwm2m.errors import CodecError, InvalidPath
from lwm2m.model.path import MAX_ID, Path, check_prefix
from lwm2m.model.record import Record, sort_records
from lwm2m.model.registry import ObjectRegistry
from lwm2m.model.value import ObjLink, ResourceType, Value, check_value, values_equal


def _leaf(value: Value, rtype: ResourceType) -> object:
    if rtype is ResourceType.OBJLNK:
        return str(value)
    return value


def _collapse(node: dict[int | str, object]) -> dict[object, object]:
    """Turn ``{3: {0: {1: x}}}`` into ``{(3, 0, 1): x}``: one array key per chain of single children."""
    out: dict[object, object] = {}
    for k, child in node.items():
        key: tuple[int | str, ...] = (k,)
        while type(child) is dict and len(child) == 1:
            ((k2, child),) = child.items()
            key += (k2,)
        out[key[0] if len(key) == 1 else key] = _collapse(child) if type(child) is dict else child
    return out


class LwM2MCBORCodec:
    content_format = ContentFormat.LWM2M_CBOR
    name = "lwm2m-cbor"

    def encode(self, records: Sequence[Record], base: Path, models: ObjectRegistry | None = None) -> bytes:
        base_ids = base.ids
        nbase = len(base_ids)
        types = TypeLookup(models)
        top: dict[int | str, object] = {}
        for r in records:
            ids = r.path.ids
            device = r.path.prefix
            if ids[:nbase] != base_ids or (device != base.prefix and not r.path.within(base)):
                raise CodecError(f"{r.path} is not under the request path {base}")
            if r.time is not None:
                raise CodecError(f"{r.path}: LwM2M-CBOR has no timestamps (LwM2M-TS-Core 1.2 §7.4.7)")
            root: dict[int | str, object] = top
            if device:
                sub = top.setdefault(device, {})
                assert type(sub) is dict  # a prefix key only ever holds a map
                root = sub
            node = root
            for i in ids[:-1]:
                child = node.setdefault(i, {})
                if type(child) is not dict:
                    raise CodecError(f"{r.path} lies under a resource that has a value")
                node = child
            value = r.value
            if not ids:
                if value is not None:
                    raise CodecError("the root path cannot carry a value")
                continue
            last = ids[-1]
            if value is None:
                if type(node.setdefault(last, {})) is not dict:
                    raise CodecError(f"{r.path} is given both with and without a value")
                continue
            if len(ids) < 3:
                raise CodecError(f"{r.path} carries a value but is not a resource path")
            if last in node:
                raise CodecError(f"{r.path} is given twice or also has children")
            rtype, value = wire_value(value, types(ids))
            node[last] = _leaf(value, rtype)
        return cbor2.dumps(_collapse(top))

    def decode(self, data: bytes, base: Path, models: ObjectRegistry | None = None) -> list[Record]:
        data = bytes(data)
        try:
            top: object = cbor_loads(data)
        except CodecError:
            # cbor2 refuses a map with a repeated key (a dict would keep only its last value);
            # read the maps as lists of pairs instead, which either merges the repeats or
            # fails with the payload's own fault.
            top = _read_pairs(data)
        if type(top) is not dict and type(top) is not _Pairs:
            raise CodecError(f"LwM2M-CBOR content must be a map, got {type(top).__name__}")
        out: list[Record] = []
        self._walk(top, (), None, base, TypeLookup(models), out)
        return _merged(sort_records(out))

    def _walk(
        self,
        node: dict[Any, Any] | _Pairs,
        prefix: tuple[int, ...],
        device: str | None,
        base: Path,
        types: TypeLookup,
        out: list[Record],
    ) -> None:
        # Every level adds at least one ID (or the device's prefix, once, at the top) and a path
        # has at most four IDs: recursion stays shallow even for hostile input (shared-reference
        # cycles included). ``device`` is None at the top, where a prefix may still come.
        base_ids = base.ids
        for key, val in node.items() if type(node) is dict else node:
            here = device or ""
            if type(key) is int:
                ids = (*prefix, key)
            elif type(key) is tuple and key and all(type(i) is int for i in key):
                ids = prefix + key
            elif device is None and (
                type(key) is str or (type(key) is tuple and key and type(key[0]) is str)
            ):
                # LwM2M-TS-Gateway 1.1: an end device's prefix, first in its paths.
                rest = key[1:] if type(key) is tuple else ()
                if not all(type(i) is int for i in rest):
                    raise CodecError(f"invalid LwM2M-CBOR key {key!r:.40}: a prefix then IDs")
                try:
                    here = check_prefix(key[0] if type(key) is tuple else key)
                except InvalidPath as exc:
                    raise CodecError(f"invalid LwM2M-CBOR key {key!r:.40}: {exc}") from None
                ids = rest
            else:
                raise CodecError(f"invalid LwM2M-CBOR key {key!r:.40}: expected an ID or an array of IDs")
            if len(ids) > 4:
                raise CodecError(f"LwM2M-CBOR path {ids!r:.60} is deeper than a resource instance")
            for i in ids[len(prefix) :]:
                if not 0 <= i <= MAX_ID:
                    raise CodecError(f"invalid ID {i} in LwM2M-CBOR content: IDs are 0..{MAX_ID}")
            n = min(len(ids), len(base_ids))
            if ids[:n] != base_ids[:n] or (here != base.prefix and (base.prefix or base_ids)):
                raise CodecError(f"{Path(ids, here)} is not under the request path {base}")
            if type(val) is dict or type(val) is _Pairs:
                if val:
                    self._walk(val, ids, here, base, types, out)
                    continue
                val = None
            if len(ids) < len(base_ids):
                raise CodecError(f"{Path(ids, here)} is not under the request path {base}")
            path = Path(ids, here)
            if val is None:
                out.append(Record(path))
                continue
            if len(ids) < 3:
                raise CodecError(f"{path} carries a value but is not a resource path")
            out.append(Record(path, self._value(path, val, types(ids))))

    @staticmethod
    def _tagged(path: Path, raw: object) -> int | float:
        """A decimal fraction (tag 4, a valid CBOR number form) or a date/time (tag 0/1, for Time)."""
        try:
            if isinstance(raw, Decimal):
                return float(raw)
            assert isinstance(raw, datetime)
            if raw.tzinfo is None:
                raise CodecError(f"{path}: a date/time value needs a time zone")
            ts = raw.timestamp()
            return int(ts) if ts.is_integer() else ts
        except (ValueError, OverflowError, ArithmeticError, OSError):
            raise CodecError(f"{path}: invalid tagged number {raw!r:.40}") from None

    @staticmethod
    def _value(path: Path, raw: object, rtype: ResourceType | None) -> Value:
        t = type(raw)
        value: Value
        if t is str or t is bool or t is bytes:
            value = raw  # type: ignore[assignment]
        elif t is int or t is float:
            value = check_number(raw, f"{path}: the value")
        elif t is Decimal or t is datetime:
            value = LwM2MCBORCodec._tagged(path, raw)
        else:
            raise CodecError(f"{path}: unsupported LwM2M-CBOR value of type {t.__name__}")
        if rtype is None or type(value) is NATIVE.get(rtype):
            return value
        if rtype is ResourceType.OBJLNK:
            if type(value) is not str:
                raise CodecError(f"{path}: an object link must be a text string such as 3:0")
            try:
                return ObjLink.parse(value)
            except ValueError as exc:
                raise CodecError(f"{path}: {exc}") from None
        try:
            return check_value(value, rtype)
        except ValueError as exc:
            raise CodecError(f"{path}: {exc}") from None


def _merged(records: list[Record]) -> list[Record]:
    """Sorted records as one tree: repeats of a path merged, empty nodes that have children dropped.

    A map key may come more than once, and array keys may split a path in several ways,
    so one path can arrive more than once. The same value twice is one record; two
    different values, or a value on a node that also has children, cannot both hold.
    """
    if len(records) < 2:
        return records
    out = [records[0]]
    for r in records[1:]:
        prev = out[-1]
        if r.path.prefix != prev.path.prefix:  # another end device: sorted, so nothing to merge
            out.append(r)
            continue
        ids, pids = r.path.ids, prev.path.ids
        if ids == pids:
            if prev.value is None and r.value is None:
                continue
            if prev.value is not None and r.value is not None and values_equal(prev.value, r.value):
                continue
            if prev.value is None or r.value is None:
                raise CodecError(f"{r.path} is given both with a value and as a node with content")
            shown = f"{prev.value!r:.40}, {r.value!r:.40}"
            raise CodecError(f"{r.path} is given twice with different values ({shown})")
        if ids[: len(pids)] == pids:
            if prev.value is not None:
                raise CodecError(f"{prev.path} has a value and also children ({r.path})")
            out[-1] = r  # an empty map for a node whose content comes under another key
            continue
        out.append(r)
    return out


# --- reading maps with repeated keys ------------------------------------------------------------


class _Pairs(list[tuple[Any, Any]]):
    """A CBOR map as its (key, value) pairs in order, repeats kept."""

    __slots__ = ()


_BREAK = 0xFF


def _head(data: bytes, pos: int) -> tuple[int, int, int | None, int]:
    """The major type, additional info, argument (None if indefinite) and the position after
    the head of the item at ``pos`` (RFC 8949 §3)."""
    if pos >= len(data):
        raise CodecError("invalid CBOR: the payload ends inside a data item")
    ib = data[pos]
    major, info = ib >> 5, ib & 0x1F
    pos += 1
    if info < 24:
        return major, info, info, pos
    if info <= 27:
        n = 1 << (info - 24)
        if pos + n > len(data):
            raise CodecError("invalid CBOR: the payload ends inside a data item")
        return major, info, int.from_bytes(data[pos : pos + n], "big"), pos + n
    if info == 31 and major in (2, 3, 4, 5, 7):
        return major, info, None, pos
    raise CodecError(f"invalid CBOR: reserved initial byte 0x{ib:02x}")


def _skip(data: bytes, pos: int, depth: int) -> int:
    """The position after the data item at ``pos``; CodecError if it is not well-formed."""
    if depth > CBOR_MAX_DEPTH:
        raise CodecError("invalid CBOR: nested too deeply")
    major, info, arg, pos = _head(data, pos)
    if major in (0, 1):
        return pos
    if major in (2, 3):
        if arg is not None:
            if pos + arg > len(data):
                raise CodecError("invalid CBOR: a string runs past the end of the payload")
            return pos + arg
        while True:  # indefinite-length string: definite chunks of the same type up to a break
            if pos < len(data) and data[pos] == _BREAK:
                return pos + 1
            chunk_major, _, chunk, pos = _head(data, pos)
            if chunk_major != major or chunk is None:
                raise CodecError("invalid CBOR: bad chunk in an indefinite-length string")
            if pos + chunk > len(data):
                raise CodecError("invalid CBOR: a string runs past the end of the payload")
            pos += chunk
    if major in (4, 5):
        items = 1 if major == 4 else 2
        if arg is not None:
            for _ in range(arg * items):  # each item takes a byte: the end of data stops a huge count
                pos = _skip(data, pos, depth + 1)
            return pos
        while True:
            if pos < len(data) and data[pos] == _BREAK:
                return pos + 1
            for _ in range(items):
                pos = _skip(data, pos, depth + 1)
    if major == 6:
        return _skip(data, pos, depth + 1)
    if arg is None:
        raise CodecError("invalid CBOR: unexpected break")
    if info == 24 and arg < 32:
        raise CodecError("invalid CBOR: simple value in the wrong form")
    return pos


def _item(data: bytes, pos: int, depth: int) -> tuple[object, int]:
    """The data item at ``pos`` and the position after it: maps as :class:`_Pairs`, anything
    else through cbor2 (as the fast path decodes it), arrays as tuples (they are keys here)."""
    if depth > CBOR_MAX_DEPTH:
        raise CodecError("invalid CBOR: nested too deeply")
    major, _, arg, after = _head(data, pos)
    if major != 5:
        end = _skip(data, pos, depth)
        value = cbor_loads(data[pos:end])
        return (tuple(value) if type(value) is list else value), end
    pairs = _Pairs()
    pos = after
    while arg is None or len(pairs) < arg:
        if arg is None and pos < len(data) and data[pos] == _BREAK:
            return pairs, pos + 1
        key, pos = _item(data, pos, depth + 1)
        value, pos = _item(data, pos, depth + 1)
        pairs.append((key, value))
    return pairs, pos


def _read_pairs(data: bytes) -> object:
    top, end = _item(data, 0, 0)
    if end != len(data):
        raise CodecError(f"invalid CBOR: {len(data) - end} bytes after the data item")
    return top


LWM2M_CBOR = LwM2MCBORCodec()
