"""CoAP message encode/decode (RFC 7252 §3).

The codec is on the value object, as aiocoap does it: ``Message.decode(data)``
and ``message.encode()``. Options are kept raw as ``(number, bytes)`` pairs in
wire order; typed accessors read them on demand, which keeps the decode path
short for the messages that only need the token and code.

The endpoint's receive path decodes with ``decode_message``, which also returns
a bitmask of the option numbers seen (so that a plain request needs no second
walk over its options), and answers with ``encode_parts``, which needs no
``Message`` built.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from lwm2m.coap.numbers import Code, OptionNumber, Type, code_str
from lwm2m.coap.option import BlockOption, decode_uint, encode_uint
from lwm2m.coap.twin import slot_setters, unfrozen_twin
from lwm2m.errors import MessageError

_TYPES = (Type.CON, Type.NON, Type.ACK, Type.RST)
_CODES = {int(c): c for c in Code}
PAYLOAD_MARKER = 0xFF
MAX_TOKEN_LENGTH = 8


Options = tuple[tuple[int, bytes], ...]


def _uint_option(number: OptionNumber) -> property:
    def get(self: Message) -> int | None:
        v = self.option(number)
        return None if v is None else decode_uint(v)

    # Never raises: any byte string reads as a big-endian integer (RFC 7252 §3.2).
    return property(get, doc=f"The {number.name} option as an integer, or None.")


def _strings_option(number: OptionNumber) -> property:
    def get(self: Message) -> tuple[str, ...]:
        return tuple([v.decode("utf-8", "replace") for n, v in self.options if n == number])

    # Never raises: bytes that are not UTF-8 read with U+FFFD in their place.
    return property(get, doc=f"The {number.name} options as strings, in order.")


def _block_option(number: OptionNumber) -> property:
    def get(self: Message) -> BlockOption | None:
        v = self.option(number)
        if v is None:
            return None
        try:
            return BlockOption.decode(v)
        except ValueError as exc:
            # A value over 3 bytes or with SZX 7 (RFC 7959 §2.2) is a message format error of
            # this message, not of the caller: the endpoint answers it like any other.
            raise MessageError(
                f"bad {number.name} option {v.hex()}: {exc}", mid=self.mid, type=self.type
            ) from None

    return property(get, doc=f"The {number.name} option, or None; MessageError if its value is malformed.")


@dataclass(frozen=True, slots=True)
class Message:
    type: Type
    code: int  # a Code member where the number is registered, else the raw int
    mid: int = 0
    token: bytes = b""
    options: Options = ()
    payload: bytes = b""

    # --- wire format ---------------------------------------------------------

    @classmethod
    def decode(cls, data: bytes) -> Message:
        msg = decode_message(data)[0]
        if cls is Message:
            return msg
        return cls(msg.type, msg.code, msg.mid, msg.token, msg.options, msg.payload)

    def encode(self) -> bytes:
        tkl = len(self.token)
        if tkl > MAX_TOKEN_LENGTH:
            raise ValueError(f"token of {tkl} bytes: at most {MAX_TOKEN_LENGTH}")
        if not 0 <= self.mid <= 0xFFFF:
            raise ValueError(f"message ID {self.mid} out of range 0..65535")
        out = bytearray((0x40 | (int(self.type) << 4) | tkl, int(self.code), self.mid >> 8, self.mid & 0xFF))
        out += self.token
        options = self.options
        if any(options[i][0] > options[i + 1][0] for i in range(len(options) - 1)):
            options = tuple(sorted(options, key=lambda o: o[0]))  # stable: repeats keep their order
        last = 0
        for number, value in options:
            delta = number - last
            last = number
            length = len(value)
            dn, dext = _nibble(delta)
            ln, lext = _nibble(length)
            out.append((dn << 4) | ln)
            out += dext
            out += lext
            out += value
        if self.payload:
            out.append(PAYLOAD_MARKER)
            out += self.payload
        return bytes(out)

    # --- building --------------------------------------------------------------

    @classmethod
    def build(
        cls,
        type: Type,
        code: int,
        mid: int = 0,
        token: bytes = b"",
        *,
        uri_path: str | Sequence[str] = (),
        uri_query: Sequence[str] = (),
        location_path: Sequence[str] = (),
        content_format: int | None = None,
        accept: int | None = None,
        observe: int | None = None,
        block1: BlockOption | None = None,
        block2: BlockOption | None = None,
        size1: int | None = None,
        size2: int | None = None,
        options: Iterable[tuple[int, bytes]] = (),
        payload: bytes = b"",
    ) -> Message:
        """A message with the common options set by name (``uri_path`` may be ``"/3/0"``)."""
        opts: list[tuple[int, bytes]] = []
        if observe is not None:
            opts.append((OptionNumber.OBSERVE, encode_uint(observe)))
        opts += [(OptionNumber.LOCATION_PATH, s.encode()) for s in location_path]
        if isinstance(uri_path, str):
            uri_path = [s for s in uri_path.split("/") if s]
        opts += [(OptionNumber.URI_PATH, s.encode()) for s in uri_path]
        if content_format is not None:
            opts.append((OptionNumber.CONTENT_FORMAT, encode_uint(content_format)))
        opts += [(OptionNumber.URI_QUERY, s.encode()) for s in uri_query]
        if accept is not None:
            opts.append((OptionNumber.ACCEPT, encode_uint(accept)))
        if block2 is not None:
            opts.append((OptionNumber.BLOCK2, block2.encode()))
        if block1 is not None:
            opts.append((OptionNumber.BLOCK1, block1.encode()))
        if size2 is not None:
            opts.append((OptionNumber.SIZE2, encode_uint(size2)))
        if size1 is not None:
            opts.append((OptionNumber.SIZE1, encode_uint(size1)))
        opts += options
        opts.sort(key=lambda o: o[0])
        return cls(type, code, mid, token, tuple(opts), payload)

    def replace(self, **changes: object) -> Message:
        return replace(self, **changes)  # type: ignore[arg-type]

    def with_option(self, number: int, value: bytes | int | str) -> Message:
        """This message with every ``number`` option replaced by one with ``value``."""
        if isinstance(value, int):
            value = encode_uint(value)
        elif isinstance(value, str):
            value = value.encode()
        rest = [o for o in self.options if o[0] != number]
        rest.append((number, value))
        rest.sort(key=lambda o: o[0])
        return replace(self, options=tuple(rest))

    def without_option(self, number: int) -> Message:
        return replace(self, options=tuple(o for o in self.options if o[0] != number))

    # --- reading options -------------------------------------------------------

    def option(self, number: int) -> bytes | None:
        for n, v in self.options:
            if n == number:
                return v
        return None

    def option_values(self, number: int) -> list[bytes]:
        return [v for n, v in self.options if n == number]

    def has_option(self, number: int) -> bool:
        return any(n == number for n, _ in self.options)

    uri_path = _strings_option(OptionNumber.URI_PATH)
    uri_query = _strings_option(OptionNumber.URI_QUERY)
    location_path = _strings_option(OptionNumber.LOCATION_PATH)
    content_format = _uint_option(OptionNumber.CONTENT_FORMAT)
    accept = _uint_option(OptionNumber.ACCEPT)
    observe = _uint_option(OptionNumber.OBSERVE)
    size1 = _uint_option(OptionNumber.SIZE1)
    max_age = _uint_option(OptionNumber.MAX_AGE)
    size2 = _uint_option(OptionNumber.SIZE2)
    block1 = _block_option(OptionNumber.BLOCK1)
    block2 = _block_option(OptionNumber.BLOCK2)

    @property
    def uri_path_str(self) -> str:
        return "/" + "/".join(self.uri_path)

    # --- classification ----------------------------------------------------------

    @property
    def is_request(self) -> bool:
        return 1 <= self.code <= 31

    @property
    def is_response(self) -> bool:
        return 64 <= self.code <= 191

    @property
    def is_empty(self) -> bool:
        return self.code == 0

    def __str__(self) -> str:
        name = self.code.name if isinstance(self.code, Code) else code_str(self.code)
        return (
            f"<{self.type.name} {name} mid={self.mid} token={self.token.hex() or '-'}"
            f" options={len(self.options)} payload={len(self.payload)}B>"
        )


# The receive path builds a Message through its unfrozen twin (see lwm2m.coap.twin), or through
# the slot descriptors where the interpreter refuses that.
_new = object.__new__
_Fields = unfrozen_twin(Message)
_MSG_SET = slot_setters(Message)

# Every code byte to its Code member, or the int itself where none is registered.
_CODE_OF = tuple(_CODES.get(i, i) for i in range(256))
_ATTENTION_HIGH = 1 << 63  # in decode_message's summary: some option numbered 63 or above


def _first_byte(b0: int) -> tuple[Type, int, int] | None:
    tkl = b0 & 0x0F
    if b0 >> 6 != 1 or tkl > MAX_TOKEN_LENGTH:
        return None
    mtype = _TYPES[(b0 >> 4) & 0x3]
    return mtype, 4 + tkl, 0 if mtype in (Type.CON, Type.NON) else 1


# First header byte -> (type, end of the token, 1 for an ACK or RST), None where the byte is a
# format error.
_FIRST = tuple(_first_byte(b0) for b0 in range(256))
# Code byte -> 0 for a request code (1..31), else 1.
_NOT_REQUEST_CODE = tuple(0 if 1 <= c <= 31 else 1 for c in range(256))


def _header_error(data: bytes) -> MessageError:
    """The MessageError for a datagram whose fixed header or token does not parse (§3)."""
    n = len(data)
    if n < 4:
        return MessageError(f"truncated header: {n} bytes, need 4")
    b0 = data[0]
    mtype = _TYPES[(b0 >> 4) & 0x3]
    mid = (data[2] << 8) | data[3]
    if b0 >> 6 != 1:
        return MessageError(f"unknown CoAP version {b0 >> 6}", mid=mid, type=mtype, version_ok=False)
    tkl = b0 & 0x0F
    if tkl > MAX_TOKEN_LENGTH:
        return MessageError(f"reserved token length {tkl}", mid=mid, type=mtype)
    return MessageError("token runs past the end of the datagram", mid=mid, type=mtype)


def decode_message(data: bytes) -> tuple[Message, int]:
    """``Message.decode(data)``, and a summary of its option numbers for the endpoint's fast path.

    The summary has bit ``n`` set for every option number ``n`` from 1 to 62
    the message carries, bit 63 for any number from 63 up, and bit 0 when the
    message is no request (an ACK or RST, or a code outside 1..31; also set by
    an option numbered 0): one ``&`` tells whether a message can take the
    endpoint's plain request path or needs more (a response, Observe, Block,
    unknown critical options) without a second walk over its options.
    """
    if type(data) is not bytes:
        data = bytes(data)  # slices of bytes are bytes: the fields need no copy each
    n = len(data)
    try:
        # The type, where the token ends, ACK/RST; None (a TypeError here) for a format error.
        mtype, pos, summary = _FIRST[data[0]]  # type: ignore[misc]
    except (IndexError, TypeError):
        raise _header_error(data) from None  # too short, unknown version or token length 9-15
    if pos > n:
        raise _header_error(data)
    raw_code = data[1]
    if raw_code == 0 and n > 4:
        # RFC 7252 §4.1: an Empty message has nothing after the Message ID.
        raise MessageError(
            "empty message with token, options or payload", mid=(data[2] << 8) | data[3], type=mtype
        )
    mid = (data[2] << 8) | data[3]
    token = data[4:pos]
    payload = b""
    summary |= _NOT_REQUEST_CODE[raw_code]
    if pos == n:
        options: Options = ()
    else:
        found: list[tuple[int, bytes]] = []
        number = 0
        while pos < n:
            byte = data[pos]
            delta = byte >> 4
            length = byte & 0x0F
            if delta < 13 and length < 13:
                # The common option: number and length fit in the first byte. (One that runs
                # past the end leaves pos > n: the check after the loop raises for it.)
                number += delta
                start = pos + 1
                pos = start + length
                found.append((number, data[start:pos]))
                summary |= 1 << number if number < 63 else _ATTENTION_HIGH
                continue
            pos += 1
            if byte == PAYLOAD_MARKER:
                if pos == n:
                    raise MessageError("payload marker with an empty payload", mid=mid, type=mtype)
                payload = data[pos:]
                break
            if delta == 13:
                if pos >= n:
                    raise MessageError("option delta runs past the end", mid=mid, type=mtype)
                delta = data[pos] + 13
                pos += 1
            elif delta == 14:
                if pos + 1 >= n:
                    raise MessageError("option delta runs past the end", mid=mid, type=mtype)
                delta = ((data[pos] << 8) | data[pos + 1]) + 269
                pos += 2
            elif delta == 15:
                raise MessageError("reserved option delta nibble 15", mid=mid, type=mtype)
            if length == 13:
                if pos >= n:
                    raise MessageError("option length runs past the end", mid=mid, type=mtype)
                length = data[pos] + 13
                pos += 1
            elif length == 14:
                if pos + 1 >= n:
                    raise MessageError("option length runs past the end", mid=mid, type=mtype)
                length = ((data[pos] << 8) | data[pos + 1]) + 269
                pos += 2
            elif length == 15:
                raise MessageError("reserved option length nibble 15", mid=mid, type=mtype)
            number += delta
            start = pos
            pos = start + length
            found.append((number, data[start:pos]))
            summary |= 1 << number if number < 63 else _ATTENTION_HIGH
        if pos > n:
            raise MessageError(f"option {number} runs past the end of the datagram", mid=mid, type=mtype)
        options = tuple(found)
    code = _CODE_OF[raw_code]
    msg: Any
    if _Fields is not None:
        msg = _new(_Fields)
        msg.type = mtype
        msg.code = code
        msg.mid = mid
        msg.token = token
        msg.options = options
        msg.payload = payload
        msg.__class__ = Message
    else:
        msg = _new(Message)
        st, sc, sm, stk, so, sp = _MSG_SET
        st(msg, mtype)
        sc(msg, code)
        sm(msg, mid)
        stk(msg, token)
        so(msg, options)
        sp(msg, payload)
    return msg, summary


def encode_parts(
    mtype: int, code: int, mid: int, token: bytes, options: Options | list[tuple[int, bytes]], payload: bytes
) -> bytes:
    """``Message(mtype, code, mid, token, options, payload).encode()`` without building the Message.

    The endpoint's hot path (a piggybacked response) encodes through this; options
    are expected in number order, as ``Message.build`` and ``with_option`` keep them.
    """
    tkl = len(token)
    try:
        if tkl > MAX_TOKEN_LENGTH:
            raise struct.error
        head = _HEAD(_FIRST_BYTE[mtype] | tkl, code, mid)
    except (struct.error, IndexError, TypeError):
        return Message(Type(mtype), code, mid, token, tuple(options), payload).encode()  # raises
    if not options:
        if payload:
            return b"".join((head, token, b"\xff", payload))
        return head + token if tkl else head
    out = bytearray(head)
    out += token
    last = 0
    for number, value in options:
        delta = number - last
        if delta < 0:
            return Message(Type(mtype), code, mid, token, tuple(options), payload).encode()  # sorts
        last = number
        length = len(value)
        if delta < 13 and length < 13:
            out.append((delta << 4) | length)
        else:
            dn, dext = _nibble(delta)
            ln, lext = _nibble(length)
            out.append((dn << 4) | ln)
            out += dext
            out += lext
        out += value
    if payload:
        out.append(PAYLOAD_MARKER)
        out += payload
    return bytes(out)


_HEAD = struct.Struct(">BBH").pack  # first byte, code, Message ID
_FIRST_BYTE = tuple(0x40 | (t << 4) for t in range(4))  # version 1 and the type; | the token length


def _nibble(value: int) -> tuple[int, bytes]:
    if value < 13:
        return value, b""
    if value < 269:
        return 13, bytes((value - 13,))
    if value < 65805:
        v = value - 269
        return 14, bytes((v >> 8, v & 0xFF))
    raise ValueError(f"option delta or length {value} is too large")
