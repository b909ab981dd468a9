"""The hello extensions that name the server and bound the size of records: server_name
(RFC 6066 §3), max_fragment_length (RFC 6066 §4) and record_size_limit (RFC 8449 §4, §5).

- server_name: a client names the server it means by its DNS name (ASCII, IDNA A-labels for
  other names, no trailing dot; RFC 6066 §3 permits no IP literal, so a client given an address
  sends nothing); the server reads it and answers with an empty extension when it took it.
- record_size_limit: each side tells the largest record plaintext it takes; once both sent it,
  each keeps the records it protects towards the other within the other's limit (with a
  Connection ID the DTLSInnerPlaintext counts, its content type byte included, RFC 9146 §4), and
  a protected record over one's own limit is a record_overflow. A limit below 64 is an
  illegal_parameter (RFC 8449 §4); one above 2^14 + 1 is taken as 2^14 + 1 (the most a DTLS 1.2
  record carries anyway).
- max_fragment_length: a client asks for 2^9..2^12; a server that agrees echoes the same value,
  and from then on both keep every record within it; any other value, or an answer the client
  did not ask for, is an illegal_parameter (RFC 6066 §4).
- Both offered: record_size_limit wins; the server answers only that one, and a client that
  gets both answered aborts with illegal_parameter (RFC 8449 §5).

Everything here is a pure function of the hellos and the configuration: the connection keeps
the result (:class:`SizeLimits`) and applies it when it frames records.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Final

from lwm2m.errors import DtlsError, HandshakeAborted, HandshakeFormatError
from lwm2m.tls.messages import (
    MIN_RECORD_SIZE_LIMIT,
    ClientHello,
    Extension,
    ExtensionType,
    MaxFragmentLengthExtension,
    RecordSizeLimitExtension,
    ServerHello,
    ServerNameExtension,
)
from lwm2m.tls.record import MAX_PLAINTEXT

__all__ = [
    "DEFAULT_RECORD_SIZE_LIMIT",
    "MAX_FRAGMENT_LENGTHS",
    "SizeLimits",
    "check_limits",
    "client_extensions",
    "client_limits",
    "parse_host_name",
    "server_extensions",
    "sni_host_name",
]

# RFC 8449 §4: 2^14 + 1 is what a peer takes when it sets no limit of its own (the plaintext of
# a record plus the inner content type of a protected one); as a default it changes nothing.
DEFAULT_RECORD_SIZE_LIMIT: Final = MAX_PLAINTEXT + 1
# RFC 6066 §4: the codes 1..4 stand for these lengths.
MAX_FRAGMENT_LENGTHS: Final = (512, 1024, 2048, 4096)

# Alerts (RFC 5246 §7.2; record_overflow 22), as the connection sends them.
RECORD_OVERFLOW: Final = 22
ILLEGAL_PARAMETER: Final = 47
DECODE_ERROR: Final = 50
UNSUPPORTED_EXTENSION: Final = 110

# A DNS host name (RFC 1123 §2.1, with the underscore that real names carry): labels of 1..63
# letters, digits, hyphens or underscores, not starting nor ending with a hyphen.
_LABEL = re.compile(rb"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)")
MAX_HOST_NAME: Final = 253


def _is_ip_literal(name: str) -> bool:
    try:
        ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return False
    return True


def _valid_host_name(raw: bytes) -> bool:
    if not 1 <= len(raw) <= MAX_HOST_NAME:
        return False
    return all(_LABEL.fullmatch(label) is not None for label in raw.split(b"."))


def sni_host_name(name: str | None) -> bytes | None:
    """What a client puts in server_name for ``name`` (e.g. the host of the server URI): the
    name in ASCII (IDNA for other names), without a trailing dot; None for no name or an IP
    literal, for which RFC 6066 §3 sends nothing. A name that is neither raises
    :class:`~lwm2m.errors.DtlsError` (a configuration mistake, found before any handshake)."""
    if name is None or _is_ip_literal(name):
        return None
    host = name[:-1] if name.endswith(".") else name
    try:
        raw = host.encode("ascii") if host.isascii() else host.encode("idna")
    except UnicodeError:
        raise DtlsError(f"server name {name!r} is not a host name") from None
    if not _valid_host_name(raw):
        raise DtlsError(f"server name {name!r} is not a host name")
    return raw


def parse_host_name(raw: bytes) -> str | None:
    """The server's reading of a client's host_name: the name in lower case (DNS names compare
    without case), None for an IP literal (not permitted by RFC 6066 §3, so not a name to act
    on: ignored, as some clients send one); anything else that is no host name raises
    :class:`~lwm2m.errors.HandshakeFormatError` (the decode_error alert)."""
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        raise HandshakeFormatError("server_name: a host_name that is not ASCII") from None
    if _is_ip_literal(text):
        return None
    if not _valid_host_name(raw):
        raise HandshakeFormatError(f"server_name: {text!r} is not a host name")
    return text.lower()


@dataclass(frozen=True, slots=True)
class SizeLimits:
    """What the negotiation settled: ``send`` bounds the plaintext of each record we protect
    towards the peer (its inner plaintext with a CID); ``receive`` bounds those from the peer
    (None: no bound beyond DTLS 1.2's own, nothing to check)."""

    send: int = DEFAULT_RECORD_SIZE_LIMIT
    receive: int | None = None
    # The most plaintext a record from the peer may carry: ``receive``, or DTLS 1.2's own bound
    # (RFC 5246 §6.2.1) without one; the receiver of application data compares with it alone.
    room: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        room = MAX_PLAINTEXT if self.receive is None else min(self.receive, MAX_PLAINTEXT)
        object.__setattr__(self, "room", room)


def check_limits(record_size_limit: int | None, max_fragment_length: int | None) -> None:
    """Refuse a configuration whose limits could not be sent (:class:`~lwm2m.errors.DtlsError`)."""
    if record_size_limit is not None and not MIN_RECORD_SIZE_LIMIT <= record_size_limit <= 0xFFFF:
        raise DtlsError(f"record_size_limit {record_size_limit} is not {MIN_RECORD_SIZE_LIMIT}..65535")
    if max_fragment_length is not None and max_fragment_length not in MAX_FRAGMENT_LENGTHS:
        raise DtlsError(f"max_fragment_length {max_fragment_length} is not one of {MAX_FRAGMENT_LENGTHS}")


def _clamped(limit: int) -> int:
    # RFC 8449 §4: a larger value than the protocol allows means the protocol's maximum.
    return min(limit, DEFAULT_RECORD_SIZE_LIMIT)


def _receive_bound(limit: int) -> int | None:
    # The default bounds nothing the record layer does not bound already: no check at all then.
    return limit if limit < DEFAULT_RECORD_SIZE_LIMIT else None


def client_extensions(
    server_name: bytes | None, record_size_limit: int | None, max_fragment_length: int | None
) -> tuple[Extension, ...]:
    """The extensions a client adds to its hello for these settings."""
    extensions: tuple[Extension, ...] = ()
    if server_name is not None:
        extensions += (ServerNameExtension(server_name),)
    if max_fragment_length is not None:
        # RFC 6066 §4: 2^9 is code 1.
        extensions += (MaxFragmentLengthExtension(max_fragment_length.bit_length() - 9),)
    if record_size_limit is not None:
        extensions += (RecordSizeLimitExtension(record_size_limit),)
    return extensions


def server_extensions(
    hello: ClientHello, record_size_limit: int | None
) -> tuple[tuple[Extension, ...], SizeLimits]:
    """A server's answer to the client's size extensions, and the limits it then keeps.
    ``record_size_limit`` None: the server does not take that extension (it ignores it).
    Raises :class:`~lwm2m.errors.HandshakeAborted` (illegal_parameter) for a value RFC 6066 §4
    or RFC 8449 §4 forbids."""
    offered_limit = hello.extension(ExtensionType.RECORD_SIZE_LIMIT)
    offered_length = hello.extension(ExtensionType.MAX_FRAGMENT_LENGTH)
    if isinstance(offered_limit, RecordSizeLimitExtension) and record_size_limit is not None:
        if offered_limit.limit < MIN_RECORD_SIZE_LIMIT:
            raise HandshakeAborted(ILLEGAL_PARAMETER, f"record_size_limit {offered_limit.limit} is below 64")
        # RFC 8449 §5: with both offered, max_fragment_length is ignored.
        limits = SizeLimits(_clamped(offered_limit.limit), _receive_bound(record_size_limit))
        return (RecordSizeLimitExtension(record_size_limit),), limits
    if isinstance(offered_length, MaxFragmentLengthExtension):
        length = offered_length.length
        if length is None:
            raise HandshakeAborted(
                ILLEGAL_PARAMETER, f"max_fragment_length code {offered_length.code} is not 1..4"
            )
        # RFC 6066 §4: the same value echoed, and both sides keep to it.
        return (MaxFragmentLengthExtension(offered_length.code),), SizeLimits(length, length)
    return (), SizeLimits()


def client_limits(
    hello: ServerHello, record_size_limit: int | None, max_fragment_length: int | None
) -> SizeLimits:
    """The limits a client keeps after the server's hello; :class:`~lwm2m.errors.HandshakeAborted`
    for an answer it did not ask for or may not take (RFC 6066 §4, RFC 8449 §4, §5)."""
    limit = hello.extension(ExtensionType.RECORD_SIZE_LIMIT)
    length = hello.extension(ExtensionType.MAX_FRAGMENT_LENGTH)
    if limit is not None and length is not None:
        # RFC 8449 §5: a server that knows record_size_limit ignores max_fragment_length.
        raise HandshakeAborted(ILLEGAL_PARAMETER, "the server answered both size extensions")
    if limit is not None:
        if record_size_limit is None:
            raise HandshakeAborted(UNSUPPORTED_EXTENSION, "the server answered record_size_limit unasked")
        if not isinstance(limit, RecordSizeLimitExtension):
            raise HandshakeAborted(DECODE_ERROR, "a malformed record_size_limit")
        if limit.limit < MIN_RECORD_SIZE_LIMIT:
            raise HandshakeAborted(ILLEGAL_PARAMETER, f"record_size_limit {limit.limit} is below 64")
        return SizeLimits(_clamped(limit.limit), _receive_bound(record_size_limit))
    if length is not None:
        if not isinstance(length, MaxFragmentLengthExtension):
            raise HandshakeAborted(DECODE_ERROR, "a malformed max_fragment_length")
        if max_fragment_length is None or length.length != max_fragment_length:
            # RFC 6066 §4: only the value asked for may come back.
            raise HandshakeAborted(
                ILLEGAL_PARAMETER, f"the server answered max_fragment_length code {length.code}"
            )
        return SizeLimits(max_fragment_length, max_fragment_length)
    return SizeLimits()
