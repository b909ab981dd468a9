"""DTLS 1.2 handshake messages: the handshake header, the bodies a PSK/ECDHE handshake uses, and
the hello extensions; each parsed from and serialized to bytes.

- The handshake header with message_seq and fragment fields (RFC 6347 §4.2.2).
- ClientHello with its cookie and HelloVerifyRequest (RFC 6347 §4.2.1), ServerHello,
  ServerHelloDone, Finished (RFC 5246 §7.4.1.2, §7.4.1.3, §7.4.5, §7.4.9).
- ServerKeyExchange and ClientKeyExchange of the PSK suites (RFC 4279 §2, RFC 5489 §2); the
  ECDHE parameters and public value are kept opaque here.
- Extensions (RFC 5246 §7.4.1.4): server_name (RFC 6066 §3), max_fragment_length (RFC 6066
  §4), supported_groups and
  ec_point_formats (RFC 8422 §5.1), signature_algorithms (RFC 5246 §7.4.1.4.1),
  extended_master_secret (RFC 7627 §5.1), session_ticket (RFC 5077 §3.2), record_size_limit
  (RFC 8449 §4), connection_id (RFC 9146 §3), client_certificate_type and
  server_certificate_type (RFC 7250 §3); any other kept as raw bytes.

Every length is checked against the bytes present and against the bounds of the presentation
language; anything wrong raises ``HandshakeFormatError`` naming the field.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import ClassVar, Self

from lwm2m.errors import HandshakeFormatError

__all__ = [
    "DTLS_1_2",
    "HANDSHAKE_HEADER_LENGTH",
    "MAX_PSK_IDENTITY_LENGTH",
    "ClientCertificateTypeExtension",
    "ClientHello",
    "ClientKeyExchange",
    "ConnectionIdExtension",
    "EcPointFormatsExtension",
    "ExtendedMasterSecretExtension",
    "Extension",
    "ExtensionType",
    "Finished",
    "HandshakeHeader",
    "HandshakeMessage",
    "HandshakeType",
    "HelloVerifyRequest",
    "MaxFragmentLengthExtension",
    "RecordSizeLimitExtension",
    "ServerCertificateTypeExtension",
    "ServerHello",
    "ServerHelloDone",
    "ServerKeyExchange",
    "ServerNameExtension",
    "SessionTicketExtension",
    "SignatureAlgorithmsExtension",
    "SupportedGroupsExtension",
    "UnknownExtension",
    "encode_handshake",
    "handshake_header_bytes",
    "parse_extensions",
    "parse_handshake_body",
    "serialize_extensions",
    "split_handshake_fragments",
]

DTLS_1_2 = 0xFEFD  # RFC 6347 §4.1: {254, 253}, the one's complement of 1.2
DTLS_1_0 = 0xFEFF  # RFC 6347 §4.2.1: a HelloVerifyRequest may carry 1.0 whatever is negotiated
HANDSHAKE_HEADER_LENGTH = 12  # RFC 6347 §4.2.2: type 1, length 3, seq 2, offset 3, frag length 3
RANDOM_LENGTH = 32
MAX_SESSION_ID_LENGTH = 32  # RFC 5246 §7.4.1.2: SessionID<0..32>
MAX_COOKIE_LENGTH = 255  # RFC 6347 §4.2.1: opaque cookie<0..2^8-1> in DTLS 1.2
MAX_PSK_IDENTITY_LENGTH = 128  # RFC 4279 §5.3 asks for at least 128; we take no more
VERIFY_DATA_LENGTH = 12
MIN_RECORD_SIZE_LIMIT = 64  # RFC 8449 §4: smaller values are an illegal_parameter (the connection's check)


class HandshakeType(enum.IntEnum):
    """HandshakeType of RFC 5246 §7.4 and RFC 6347 §4.3.2 (hello_verify_request)."""

    HELLO_REQUEST = 0
    CLIENT_HELLO = 1
    SERVER_HELLO = 2
    HELLO_VERIFY_REQUEST = 3
    NEW_SESSION_TICKET = 4
    CERTIFICATE = 11
    SERVER_KEY_EXCHANGE = 12
    CERTIFICATE_REQUEST = 13
    SERVER_HELLO_DONE = 14
    CERTIFICATE_VERIFY = 15
    CLIENT_KEY_EXCHANGE = 16
    FINISHED = 20


class ExtensionType(enum.IntEnum):
    """The extension numbers this module knows (IANA TLS ExtensionType registry)."""

    SERVER_NAME = 0
    MAX_FRAGMENT_LENGTH = 1  # RFC 6066 §4
    SUPPORTED_GROUPS = 10
    EC_POINT_FORMATS = 11
    SIGNATURE_ALGORITHMS = 13
    CLIENT_CERTIFICATE_TYPE = 19  # RFC 7250 §3
    SERVER_CERTIFICATE_TYPE = 20  # RFC 7250 §3
    EXTENDED_MASTER_SECRET = 23
    RECORD_SIZE_LIMIT = 28
    SESSION_TICKET = 35
    CONNECTION_ID = 54  # RFC 9146 §3 (not the draft's 53)
    RENEGOTIATION_INFO = 0xFF01  # RFC 5746 §3.2


class _Reader:
    """Consumes a byte string front to back; every read checks that the bytes are there."""

    __slots__ = ("_at", "_data", "_what")

    def __init__(self, data: bytes, what: str) -> None:
        self._data = bytes(data)
        self._at = 0
        self._what = what

    # The reads check and slice in place rather than through one another: every hello is read
    # field by field, and a call or an error text built per field is most of the cost.

    def _short(self, n: int, field_name: str) -> HandshakeFormatError:
        return HandshakeFormatError(
            f"{self._what}: {field_name} needs {n} bytes, {len(self._data) - self._at} remain"
        )

    def _take(self, n: int, field_name: str) -> bytes:
        at = self._at
        end = at + n
        if end > len(self._data):
            raise self._short(n, field_name)
        self._at = end
        return self._data[at:end]

    def uint(self, size: int, field_name: str) -> int:
        at = self._at
        end = at + size
        if end > len(self._data):
            raise self._short(size, field_name)
        self._at = end
        return int.from_bytes(self._data[at:end], "big")

    def raw(self, n: int, field_name: str) -> bytes:
        return self._take(n, field_name)

    def vector(self, length_size: int, field_name: str, low: int = 0, high: int | None = None) -> bytes:
        data = self._data
        at = self._at + length_size
        if at > len(data):
            raise self._short(length_size, f"the length of {field_name}")
        n = int.from_bytes(data[self._at : at], "big")
        top = (1 << (8 * length_size)) - 1 if high is None else high
        if not low <= n <= top:
            raise HandshakeFormatError(f"{self._what}: {field_name} is {n} bytes, not {low}..{top}")
        end = at + n
        if end > len(data):
            self._at = at
            raise self._short(n, field_name)
        self._at = end
        return data[at:end]

    def rest(self) -> bytes:
        out = self._data[self._at :]
        self._at = len(self._data)
        return out

    @property
    def remaining(self) -> int:
        return len(self._data) - self._at

    def done(self) -> None:
        if self._at != len(self._data):
            raise HandshakeFormatError(f"{self._what}: {len(self._data) - self._at} bytes after the end")


def _vector(length_size: int, value: bytes, field_name: str, low: int = 0, high: int | None = None) -> bytes:
    top = (1 << (8 * length_size)) - 1 if high is None else high
    if not low <= len(value) <= top:
        raise HandshakeFormatError(f"{field_name} is {len(value)} bytes, not {low}..{top}")
    return len(value).to_bytes(length_size, "big") + value


def _uint(value: int, size: int, field_name: str) -> bytes:
    if not 0 <= value < 1 << (8 * size):
        raise HandshakeFormatError(f"{field_name} {value} does not fit in {size} bytes")
    return value.to_bytes(size, "big")


def _uint16_list(data: bytes, field_name: str) -> tuple[int, ...]:
    if len(data) % 2:
        raise HandshakeFormatError(f"{field_name} has an odd length {len(data)}")
    return struct.unpack(f"!{len(data) // 2}H", data)


def _pack_uint16s(values: Iterable[int], field_name: str) -> bytes:
    return b"".join(_uint(v, 2, field_name) for v in values)


# --- the handshake header --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HandshakeHeader:
    """The 12-byte DTLS handshake header (RFC 6347 §4.2.2).

    An unfragmented message has ``fragment_offset`` 0 and ``fragment_length == length``.
    """

    msg_type: int
    length: int
    message_seq: int
    fragment_offset: int
    fragment_length: int

    def __post_init__(self) -> None:
        # Plain comparisons rather than a loop over the fields: a header is checked for every
        # fragment received and sent.
        if not (
            0 <= self.length <= 0xFFFFFF
            and 0 <= self.fragment_offset <= 0xFFFFFF
            and 0 <= self.fragment_length <= 0xFFFFFF
        ):
            raise HandshakeFormatError(
                f"handshake length {self.length}, fragment_offset {self.fragment_offset} or "
                f"fragment_length {self.fragment_length} does not fit in 3 bytes"
            )
        _uint(self.msg_type, 1, "handshake msg_type")
        _uint(self.message_seq, 2, "handshake message_seq")
        # A fragment must lie inside its message; this also refuses offset > length.
        if self.fragment_offset + self.fragment_length > self.length:
            raise HandshakeFormatError(
                f"handshake fragment {self.fragment_offset}+{self.fragment_length} "
                f"runs past the message length {self.length}"
            )

    @classmethod
    def parse(cls, data: bytes) -> Self:
        """Read the header from the first 12 bytes of ``data``."""
        if len(data) < HANDSHAKE_HEADER_LENGTH:
            raise HandshakeFormatError(
                f"handshake header: needs {HANDSHAKE_HEADER_LENGTH} bytes, {len(data)} remain"
            )
        # type(1) length(3) message_seq(2) fragment_offset(3) fragment_length(3), read as one
        # 96-bit number.
        value = int.from_bytes(data[:HANDSHAKE_HEADER_LENGTH], "big")
        return cls(
            msg_type=value >> 88,
            length=(value >> 64) & 0xFFFFFF,
            message_seq=(value >> 48) & 0xFFFF,
            fragment_offset=(value >> 24) & 0xFFFFFF,
            fragment_length=value & 0xFFFFFF,
        )

    def to_bytes(self) -> bytes:
        # The fields were checked at construction (the dataclass is frozen), so they fit.
        value = (
            self.msg_type << 88
            | self.length << 64
            | self.message_seq << 48
            | self.fragment_offset << 24
            | self.fragment_length
        )
        return value.to_bytes(HANDSHAKE_HEADER_LENGTH, "big")


def split_handshake_fragments(payload: bytes) -> list[tuple[HandshakeHeader, bytes]]:
    """The handshake fragments of one record's payload (a record may carry several,
    RFC 6347 §4.2.3), each with its header; a truncated fragment is an error."""
    out: list[tuple[HandshakeHeader, bytes]] = []
    at = 0
    while at < len(payload):
        header = HandshakeHeader.parse(payload[at : at + HANDSHAKE_HEADER_LENGTH])
        at += HANDSHAKE_HEADER_LENGTH
        end = at + header.fragment_length
        if end > len(payload):
            raise HandshakeFormatError(
                f"handshake fragment announces {header.fragment_length} bytes, {len(payload) - at} remain"
            )
        out.append((header, bytes(payload[at:end])))
        at = end
    return out


def encode_handshake(msg_type: int, message_seq: int, body: bytes) -> bytes:
    """A whole, unfragmented handshake message: header and body (RFC 6347 §4.2.2)."""
    return handshake_header_bytes(msg_type, len(body), message_seq, 0, len(body)) + body


def handshake_header_bytes(
    msg_type: int, length: int, message_seq: int, fragment_offset: int, fragment_length: int
) -> bytes:
    """The 12 header bytes of :class:`HandshakeHeader` with these fields, checked as it checks
    them, without making one (a sender writes a header per message and per fragment)."""
    if not (
        0 <= msg_type <= 0xFF
        and 0 <= message_seq <= 0xFFFF
        and fragment_offset >= 0
        and fragment_length >= 0
        and fragment_offset + fragment_length <= length <= 0xFFFFFF
    ):
        # The header's own checks name the field that does not fit.
        HandshakeHeader(msg_type, length, message_seq, fragment_offset, fragment_length)
    value = msg_type << 88 | length << 64 | message_seq << 48 | fragment_offset << 24 | fragment_length
    return value.to_bytes(HANDSHAKE_HEADER_LENGTH, "big")


# --- extensions ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServerNameExtension:
    """server_name (RFC 6066 §3): a host name in a ClientHello, empty in a ServerHello."""

    host_name: bytes | None = None
    extension_type: ClassVar[int] = ExtensionType.SERVER_NAME

    @classmethod
    def parse_data(cls, data: bytes) -> Self:
        if not data:
            return cls(None)
        reader = _Reader(data, "server_name")
        names = _Reader(reader.vector(2, "server_name_list", 1), "server_name_list")
        reader.done()
        host: bytes | None = None
        while names.remaining:
            name_type = names.uint(1, "name_type")
            # Only host_name (0) is defined, and an unknown type's body has no known length.
            if name_type != 0:
                raise HandshakeFormatError(f"server_name: unknown name_type {name_type}")
            name = names.vector(2, "host_name", 1)
            if host is not None:
                raise HandshakeFormatError("server_name: more than one host_name")
            host = name
        return cls(host)

    def data(self) -> bytes:
        if self.host_name is None:
            return b""
        entry = b"\x00" + _vector(2, self.host_name, "host_name", 1)
        return _vector(2, entry, "server_name_list", 1)


@dataclass(frozen=True, slots=True)
class MaxFragmentLengthExtension:
    """max_fragment_length (RFC 6066 §4): one byte, 1..4 for 2^9..2^12. Any other byte parses,
    as it calls for an illegal_parameter alert rather than a decode_error (``length`` is None)."""

    code: int
    extension_type: ClassVar[int] = ExtensionType.MAX_FRAGMENT_LENGTH

    @classmethod
    def parse_data(cls, data: bytes) -> Self:
        reader = _Reader(data, "max_fragment_length")
        code = reader.uint(1, "MaxFragmentLength")
        reader.done()
        return cls(code)

    def __post_init__(self) -> None:
        if not 0 <= self.code <= 0xFF:
            raise HandshakeFormatError(f"max_fragment_length {self.code} does not fit in one byte")

    @property
    def length(self) -> int | None:
        """The fragment length in bytes, or None for a code RFC 6066 §4 does not define."""
        return 1 << (8 + self.code) if 1 <= self.code <= 4 else None

    def data(self) -> bytes:
        return _uint(self.code, 1, "MaxFragmentLength")


@dataclass(frozen=True, slots=True)
class SupportedGroupsExtension:
    """supported_groups (RFC 8422 §5.1.1): NamedGroup named_group_list<2..2^16-1>."""

    groups: tuple[int, ...]
    extension_type: ClassVar[int] = ExtensionType.SUPPORTED_GROUPS

    @classmethod
    def parse_data(cls, data: bytes) -> Self:
        reader = _Reader(data, "supported_groups")
        groups = _uint16_list(reader.vector(2, "named_group_list", 2), "named_group_list")
        reader.done()
        return cls(groups)

    def data(self) -> bytes:
        return _vector(2, _pack_uint16s(self.groups, "named group"), "named_group_list", 2)


@dataclass(frozen=True, slots=True)
class EcPointFormatsExtension:
    """ec_point_formats (RFC 8422 §5.1.2): ECPointFormat ec_point_format_list<1..2^8-1>."""

    formats: tuple[int, ...] = (0,)  # uncompressed, the only one RFC 8422 keeps
    extension_type: ClassVar[int] = ExtensionType.EC_POINT_FORMATS

    @classmethod
    def parse_data(cls, data: bytes) -> Self:
        reader = _Reader(data, "ec_point_formats")
        formats = tuple(reader.vector(1, "ec_point_format_list", 1))
        reader.done()
        return cls(formats)

    def data(self) -> bytes:
        return _vector(
            1, bytes(_uint(f, 1, "point format")[0] for f in self.formats), "ec_point_format_list", 1
        )


@dataclass(frozen=True, slots=True)
class SignatureAlgorithmsExtension:
    """signature_algorithms (RFC 5246 §7.4.1.4.1): (hash, signature) pairs as uint16s,
    supported_signature_algorithms<2..2^16-2>."""

    algorithms: tuple[int, ...]
    extension_type: ClassVar[int] = ExtensionType.SIGNATURE_ALGORITHMS

    @classmethod
    def parse_data(cls, data: bytes) -> Self:
        reader = _Reader(data, "signature_algorithms")
        algorithms = _uint16_list(reader.vector(2, "supported_signature_algorithms", 2, 0xFFFE), "algorithms")
        reader.done()
        return cls(algorithms)

    def data(self) -> bytes:
        packed = _pack_uint16s(self.algorithms, "signature algorithm")
        return _vector(2, packed, "supported_signature_algorithms", 2, 0xFFFE)


@dataclass(frozen=True, slots=True)
class ExtendedMasterSecretExtension:
    """extended_master_secret (RFC 7627 §5.1): empty extension_data."""

    extension_type: ClassVar[int] = ExtensionType.EXTENDED_MASTER_SECRET

    @classmethod
    def parse_data(cls, data: bytes) -> Self:
        if data:
            raise HandshakeFormatError(f"extended_master_secret carries {len(data)} bytes, not 0")
        return cls()

    def data(self) -> bytes:
        return b""


@dataclass(frozen=True, slots=True)
class RecordSizeLimitExtension:
    """record_size_limit (RFC 8449 §4): uint16 RecordSizeLimit. A value below
    :data:`MIN_RECORD_SIZE_LIMIT` parses, as it calls for an illegal_parameter alert rather
    than a decode_error: the connection refuses it."""

    limit: int
    extension_type: ClassVar[int] = ExtensionType.RECORD_SIZE_LIMIT

    @classmethod
    def parse_data(cls, data: bytes) -> Self:
        reader = _Reader(data, "record_size_limit")
        limit = reader.uint(2, "RecordSizeLimit")
        reader.done()
        return cls(limit)

    def __post_init__(self) -> None:
        if not 0 <= self.limit <= 0xFFFF:
            raise HandshakeFormatError(f"record_size_limit {self.limit} does not fit in 16 bits")

    def data(self) -> bytes:
        return _uint(self.limit, 2, "RecordSizeLimit")


@dataclass(frozen=True, slots=True)
class SessionTicketExtension:
    """SessionTicket (RFC 5077 §3.2): the extension_data is the ticket itself, no inner length;
    empty to ask for a ticket, or in the ServerHello to promise one."""

    ticket: bytes = b""
    extension_type: ClassVar[int] = ExtensionType.SESSION_TICKET

    @classmethod
    def parse_data(cls, data: bytes) -> Self:
        return cls(bytes(data))

    def data(self) -> bytes:
        return self.ticket


@dataclass(frozen=True, slots=True)
class ConnectionIdExtension:
    """connection_id (RFC 9146 §3): opaque cid<0..2^8-1>, the CID the sender wants to receive;
    empty means "I send CIDs but want none"."""

    cid: bytes
    extension_type: ClassVar[int] = ExtensionType.CONNECTION_ID

    @classmethod
    def parse_data(cls, data: bytes) -> Self:
        reader = _Reader(data, "connection_id")
        cid = reader.vector(1, "cid")
        reader.done()
        return cls(cid)

    def data(self) -> bytes:
        return _vector(1, self.cid, "cid")


def _parse_certificate_types(data: bytes, what: str) -> tuple[tuple[int, ...], bool]:
    # RFC 7250 §3: a list <1..2^8-1> in the ClientHello, one type in the ServerHello. A list
    # takes at least two bytes (its length and a type), so one byte is always the answer.
    if len(data) == 1:
        return (data[0],), True
    reader = _Reader(data, what)
    types = tuple(reader.vector(1, "certificate_types", 1))
    reader.done()
    return types, False


def _certificate_types_data(types: tuple[int, ...], answer: bool) -> bytes:
    if answer:
        if len(types) != 1:
            raise HandshakeFormatError("a certificate type answer carries exactly one type")
        return _uint(types[0], 1, "certificate type")
    return _vector(1, bytes(_uint(t, 1, "certificate type")[0] for t in types), "certificate_types", 1)


@dataclass(frozen=True, slots=True)
class ClientCertificateTypeExtension:
    """client_certificate_type (RFC 7250 §3): the types the client can present (ClientHello),
    or the one the server chose (ServerHello, ``answer``)."""

    types: tuple[int, ...]
    answer: bool = False
    extension_type: ClassVar[int] = ExtensionType.CLIENT_CERTIFICATE_TYPE

    @classmethod
    def parse_data(cls, data: bytes) -> Self:
        return cls(*_parse_certificate_types(data, "client_certificate_type"))

    def data(self) -> bytes:
        return _certificate_types_data(self.types, self.answer)


@dataclass(frozen=True, slots=True)
class ServerCertificateTypeExtension:
    """server_certificate_type (RFC 7250 §3): the types the client can check (ClientHello), or
    the one the server presents (ServerHello, ``answer``)."""

    types: tuple[int, ...]
    answer: bool = False
    extension_type: ClassVar[int] = ExtensionType.SERVER_CERTIFICATE_TYPE

    @classmethod
    def parse_data(cls, data: bytes) -> Self:
        return cls(*_parse_certificate_types(data, "server_certificate_type"))

    def data(self) -> bytes:
        return _certificate_types_data(self.types, self.answer)


@dataclass(frozen=True, slots=True)
class UnknownExtension:
    """An extension this module does not interpret, kept byte for byte."""

    extension_type: int
    raw: bytes

    def data(self) -> bytes:
        return self.raw


Extension = (
    ServerNameExtension
    | MaxFragmentLengthExtension
    | SupportedGroupsExtension
    | EcPointFormatsExtension
    | SignatureAlgorithmsExtension
    | ExtendedMasterSecretExtension
    | RecordSizeLimitExtension
    | SessionTicketExtension
    | ConnectionIdExtension
    | ClientCertificateTypeExtension
    | ServerCertificateTypeExtension
    | UnknownExtension
)

_EXTENSIONS: dict[
    int,
    type[ServerNameExtension]
    | type[MaxFragmentLengthExtension]
    | type[SupportedGroupsExtension]
    | type[EcPointFormatsExtension]
    | type[SignatureAlgorithmsExtension]
    | type[ExtendedMasterSecretExtension]
    | type[RecordSizeLimitExtension]
    | type[SessionTicketExtension]
    | type[ConnectionIdExtension]
    | type[ClientCertificateTypeExtension]
    | type[ServerCertificateTypeExtension],
] = {
    ExtensionType.SERVER_NAME: ServerNameExtension,
    ExtensionType.MAX_FRAGMENT_LENGTH: MaxFragmentLengthExtension,
    ExtensionType.SUPPORTED_GROUPS: SupportedGroupsExtension,
    ExtensionType.EC_POINT_FORMATS: EcPointFormatsExtension,
    ExtensionType.SIGNATURE_ALGORITHMS: SignatureAlgorithmsExtension,
    ExtensionType.EXTENDED_MASTER_SECRET: ExtendedMasterSecretExtension,
    ExtensionType.RECORD_SIZE_LIMIT: RecordSizeLimitExtension,
    ExtensionType.SESSION_TICKET: SessionTicketExtension,
    ExtensionType.CONNECTION_ID: ConnectionIdExtension,
    ExtensionType.CLIENT_CERTIFICATE_TYPE: ClientCertificateTypeExtension,
    ExtensionType.SERVER_CERTIFICATE_TYPE: ServerCertificateTypeExtension,
}


def parse_extensions(data: bytes) -> tuple[Extension, ...]:
    """The extension list's contents (without its own 2-byte length), RFC 5246 §7.4.1.4.

    Two extensions of one type are refused (§7.4.1.4: "MUST NOT be more than one").
    """
    reader = _Reader(data, "extensions")
    out: list[Extension] = []
    seen: set[int] = set()
    while reader.remaining:
        ext_type = reader.uint(2, "extension_type")
        ext_data = reader.vector(2, f"extension {ext_type} data")
        if ext_type in seen:
            raise HandshakeFormatError(f"extension {ext_type} appears twice")
        seen.add(ext_type)
        known = _EXTENSIONS.get(ext_type)
        out.append(UnknownExtension(ext_type, ext_data) if known is None else known.parse_data(ext_data))
    return tuple(out)


def serialize_extensions(extensions: Iterable[Extension]) -> bytes:
    """The extensions block with its 2-byte length; nothing at all for no extensions
    (RFC 5246 §7.4.1.2 lets a hello end after compression_methods)."""
    items = list(extensions)
    if not items:
        return b""
    types = [e.extension_type for e in items]
    if len(set(types)) != len(types):
        raise HandshakeFormatError("an extension type appears twice")
    body = b"".join(
        _uint(e.extension_type, 2, "extension_type") + _vector(2, e.data(), "extension_data") for e in items
    )
    return _vector(2, body, "extensions")


def _read_extensions(reader: _Reader) -> tuple[Extension, ...]:
    if not reader.remaining:
        return ()
    block = reader.vector(2, "extensions")
    reader.done()
    return parse_extensions(block)


# --- the messages --------------------------------------------------------------------------


def _is_tls(version: int) -> bool:
    # TLS versions are {3, x} (RFC 5246 Appendix E), DTLS ones {254, x} (RFC 6347 §4.1).
    return version >> 8 == 3


@dataclass(frozen=True, slots=True)
class ClientHello:
    """ClientHello with the DTLS cookie (RFC 6347 §4.2.1, RFC 5246 §7.4.1.2).

    A TLS ClientHello (a ``client_version`` whose major is 3, RFC 5246 Appendix E) has no
    cookie field: it is neither read nor written, and ``cookie`` stays empty."""

    random: bytes
    cipher_suites: tuple[int, ...]
    session_id: bytes = b""
    cookie: bytes = b""
    compression_methods: bytes = b"\x00"
    extensions: tuple[Extension, ...] = field(default=())
    client_version: int = DTLS_1_2
    msg_type: ClassVar[int] = HandshakeType.CLIENT_HELLO

    @classmethod
    def parse(cls, body: bytes) -> Self:
        reader = _Reader(body, "ClientHello")
        version = reader.uint(2, "client_version")
        random = reader.raw(RANDOM_LENGTH, "random")
        session_id = reader.vector(1, "session_id", 0, MAX_SESSION_ID_LENGTH)
        cookie = b"" if _is_tls(version) else reader.vector(1, "cookie", 0, MAX_COOKIE_LENGTH)
        suites = _uint16_list(reader.vector(2, "cipher_suites", 2, 0xFFFE), "cipher_suites")
        compression = reader.vector(1, "compression_methods", 1)
        extensions = _read_extensions(reader)
        return cls(random, suites, session_id, cookie, compression, extensions, version)

    def to_bytes(self) -> bytes:
        if len(self.random) != RANDOM_LENGTH:
            raise HandshakeFormatError(f"ClientHello random is {len(self.random)} bytes, not 32")
        return (
            _uint(self.client_version, 2, "client_version")
            + self.random
            + _vector(1, self.session_id, "session_id", 0, MAX_SESSION_ID_LENGTH)
            + (
                b""
                if _is_tls(self.client_version)
                else _vector(1, self.cookie, "cookie", 0, MAX_COOKIE_LENGTH)
            )
            + _vector(2, _pack_uint16s(self.cipher_suites, "cipher suite"), "cipher_suites", 2, 0xFFFE)
            + _vector(1, self.compression_methods, "compression_methods", 1)
            + serialize_extensions(self.extensions)
        )

    def extension(self, extension_type: int) -> Extension | None:
        """The extension of that type, if the hello has it."""
        return next((e for e in self.extensions if e.extension_type == extension_type), None)


@dataclass(frozen=True, slots=True)
class HelloVerifyRequest:
    """HelloVerifyRequest (RFC 6347 §4.2.1): the server's stateless cookie.

    §4.2.1 lets the server put ``DTLS_1_0`` here whatever it later negotiates, so a client must
    not take this version as the negotiated one.
    """

    cookie: bytes
    server_version: int = DTLS_1_2
    msg_type: ClassVar[int] = HandshakeType.HELLO_VERIFY_REQUEST

    @classmethod
    def parse(cls, body: bytes) -> Self:
        reader = _Reader(body, "HelloVerifyRequest")
        version = reader.uint(2, "server_version")
        cookie = reader.vector(1, "cookie", 0, MAX_COOKIE_LENGTH)
        reader.done()
        return cls(cookie, version)

    def to_bytes(self) -> bytes:
        return _uint(self.server_version, 2, "server_version") + _vector(
            1, self.cookie, "cookie", 0, MAX_COOKIE_LENGTH
        )


@dataclass(frozen=True, slots=True)
class ServerHello:
    """ServerHello (RFC 5246 §7.4.1.3): one cipher suite, one compression method."""

    random: bytes
    cipher_suite: int
    session_id: bytes = b""
    compression_method: int = 0
    extensions: tuple[Extension, ...] = field(default=())
    server_version: int = DTLS_1_2
    msg_type: ClassVar[int] = HandshakeType.SERVER_HELLO

    @classmethod
    def parse(cls, body: bytes) -> Self:
        reader = _Reader(body, "ServerHello")
        version = reader.uint(2, "server_version")
        random = reader.raw(RANDOM_LENGTH, "random")
        session_id = reader.vector(1, "session_id", 0, MAX_SESSION_ID_LENGTH)
        suite = reader.uint(2, "cipher_suite")
        compression = reader.uint(1, "compression_method")
        extensions = _read_extensions(reader)
        return cls(random, suite, session_id, compression, extensions, version)

    def to_bytes(self) -> bytes:
        if len(self.random) != RANDOM_LENGTH:
            raise HandshakeFormatError(f"ServerHello random is {len(self.random)} bytes, not 32")
        return (
            _uint(self.server_version, 2, "server_version")
            + self.random
            + _vector(1, self.session_id, "session_id", 0, MAX_SESSION_ID_LENGTH)
            + _uint(self.cipher_suite, 2, "cipher_suite")
            + _uint(self.compression_method, 1, "compression_method")
            + serialize_extensions(self.extensions)
        )

    def extension(self, extension_type: int) -> Extension | None:
        """The extension of that type, if the hello has it."""
        return next((e for e in self.extensions if e.extension_type == extension_type), None)


@dataclass(frozen=True, slots=True)
class ServerKeyExchange:
    """ServerKeyExchange of the PSK suites (RFC 4279 §2): psk_identity_hint<0..2^16-1>,
    followed for ECDHE_PSK by the ServerECDHParams (RFC 5489 §2), kept opaque here."""

    psk_identity_hint: bytes = b""
    params: bytes = b""
    msg_type: ClassVar[int] = HandshakeType.SERVER_KEY_EXCHANGE

    @classmethod
    def parse(cls, body: bytes) -> Self:
        reader = _Reader(body, "ServerKeyExchange")
        hint = reader.vector(2, "psk_identity_hint")
        return cls(hint, reader.rest())

    def to_bytes(self) -> bytes:
        return _vector(2, self.psk_identity_hint, "psk_identity_hint") + self.params


@dataclass(frozen=True, slots=True)
class ServerHelloDone:
    """ServerHelloDone (RFC 5246 §7.4.5): an empty body."""

    msg_type: ClassVar[int] = HandshakeType.SERVER_HELLO_DONE

    @classmethod
    def parse(cls, body: bytes) -> Self:
        if body:
            raise HandshakeFormatError(f"ServerHelloDone carries {len(body)} bytes, not 0")
        return cls()

    def to_bytes(self) -> bytes:
        return b""


@dataclass(frozen=True, slots=True)
class ClientKeyExchange:
    """ClientKeyExchange of the PSK suites (RFC 4279 §2): psk_identity<0..2^16-1>, followed
    for ECDHE_PSK by the client's ECDH public value (RFC 5489 §2), kept opaque here.

    Identities longer than 128 bytes are refused (RFC 4279 §5.3's minimum, our maximum).
    """

    psk_identity: bytes
    exchange_keys: bytes = b""
    msg_type: ClassVar[int] = HandshakeType.CLIENT_KEY_EXCHANGE

    @classmethod
    def parse(cls, body: bytes) -> Self:
        reader = _Reader(body, "ClientKeyExchange")
        identity = reader.vector(2, "psk_identity", 0, MAX_PSK_IDENTITY_LENGTH)
        return cls(identity, reader.rest())

    def to_bytes(self) -> bytes:
        return _vector(2, self.psk_identity, "psk_identity", 0, MAX_PSK_IDENTITY_LENGTH) + self.exchange_keys


@dataclass(frozen=True, slots=True)
class Finished:
    """Finished (RFC 5246 §7.4.9): 12 bytes of verify_data."""

    verify_data: bytes
    msg_type: ClassVar[int] = HandshakeType.FINISHED

    @classmethod
    def parse(cls, body: bytes) -> Self:
        if len(body) != VERIFY_DATA_LENGTH:
            raise HandshakeFormatError(f"Finished verify_data is {len(body)} bytes, not 12")
        return cls(bytes(body))

    def to_bytes(self) -> bytes:
        if len(self.verify_data) != VERIFY_DATA_LENGTH:
            raise HandshakeFormatError(f"Finished verify_data is {len(self.verify_data)} bytes, not 12")
        return self.verify_data


HandshakeMessage = (
    ClientHello
    | HelloVerifyRequest
    | ServerHello
    | ServerKeyExchange
    | ServerHelloDone
    | ClientKeyExchange
    | Finished
)

_MESSAGES: dict[
    int,
    type[ClientHello]
    | type[HelloVerifyRequest]
    | type[ServerHello]
    | type[ServerKeyExchange]
    | type[ServerHelloDone]
    | type[ClientKeyExchange]
    | type[Finished],
] = {
    HandshakeType.CLIENT_HELLO: ClientHello,
    HandshakeType.HELLO_VERIFY_REQUEST: HelloVerifyRequest,
    HandshakeType.SERVER_HELLO: ServerHello,
    HandshakeType.SERVER_KEY_EXCHANGE: ServerKeyExchange,
    HandshakeType.SERVER_HELLO_DONE: ServerHelloDone,
    HandshakeType.CLIENT_KEY_EXCHANGE: ClientKeyExchange,
    HandshakeType.FINISHED: Finished,
}


def parse_handshake_body(msg_type: int, body: bytes) -> HandshakeMessage:
    """The message of that type from its reassembled body; a type this module does not
    parse (Certificate, CertificateRequest, ...) is an error here."""
    cls = _MESSAGES.get(msg_type)
    if cls is None:
        raise HandshakeFormatError(f"handshake type {msg_type} is not one this module parses")
    return cls.parse(body)
