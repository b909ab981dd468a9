"""The DTLS 1.2 record layer's framing, read without keys (RFC 6347 §4.1).

Enough to route a datagram before any TLS library sees it: is it a
ClientHello that opens a new handshake (epoch 0, handshake type 1), and where
does each record of a flight end, so that a flight can be cut into datagrams
that fit the path MTU (§4.1.1: records never span datagrams).
"""

from __future__ import annotations

from enum import IntEnum

__all__ = [
    "HEADER_LEN",
    "ContentType",
    "datagrams",
    "epoch",
    "is_client_hello",
    "records",
]

HEADER_LEN = 13  # type(1) version(2) epoch(2) sequence_number(6) length(2)
_HANDSHAKE_HEADER_LEN = 12  # msg_type(1) length(3) message_seq(2) fragment_offset(3) fragment_length(3)
_CLIENT_HELLO = 1


class ContentType(IntEnum):
    """TLS ContentType values (RFC 5246 §6.2.1; RFC 9146 §4 adds tls12_cid)."""

    CHANGE_CIPHER_SPEC = 20
    ALERT = 21
    HANDSHAKE = 22
    APPLICATION_DATA = 23
    TLS12_CID = 25


def epoch(data: bytes) -> int:
    """The epoch of the first record of ``data`` (-1 when it is too short to have one)."""
    if len(data) < HEADER_LEN:
        return -1
    return (data[3] << 8) | data[4]


def is_client_hello(data: bytes) -> bool:
    """True when the datagram starts with an epoch-0 handshake record holding a ClientHello.

    A DTLS version's major byte is 0xFE (DTLS 1.0 is 0xFEFF, 1.2 0xFEFD); the
    fragment must at least hold the handshake header. Only such a datagram may
    create state on a server, and only once it carries a valid cookie (§4.2.1).
    """
    return (
        len(data) >= HEADER_LEN + _HANDSHAKE_HEADER_LEN
        and data[0] == ContentType.HANDSHAKE
        and data[1] == 0xFE
        and data[3] == 0
        and data[4] == 0
        and data[HEADER_LEN] == _CLIENT_HELLO
    )


def records(data: bytes) -> list[bytes]:
    """The records of a datagram, each with its header; a truncated tail is dropped."""
    out: list[bytes] = []
    i = 0
    n = len(data)
    while i + HEADER_LEN <= n:
        end = i + HEADER_LEN + ((data[i + 11] << 8) | data[i + 12])
        if end > n:
            break
        out.append(data[i:end])
        i = end
    return out


def datagrams(flight: bytes, mtu: int) -> list[bytes]:
    """Whole records of ``flight`` packed into datagrams of at most ``mtu`` bytes where they fit.

    A record larger than ``mtu`` goes alone (the TLS library was told the MTU and
    fragments handshake messages itself, so this only happens when it could not).
    """
    if len(flight) <= mtu:
        return [flight] if flight else []
    out: list[bytes] = []
    current = b""
    for record in records(flight):
        if current and len(current) + len(record) > mtu:
            out.append(current)
            current = b""
        current += record
    if current:
        out.append(current)
    return out
