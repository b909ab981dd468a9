"""The node-to-node link of a cluster: authenticated datagrams that carry DTLS records between nodes.

A node that receives a DTLS record whose Connection ID names another node (RFC 9146; the CID's
first byte is the node's byte, :mod:`lwm2m.cluster.node`) sends it over the link to that node,
with the device's address as it saw it; the owner sends what it has for that address back the
same way, and the forwarding node sends it to the device from its public socket
(:mod:`lwm2m.transport.dtls.forwarding`). This module is the sans-IO part: the message format
and its authentication. The cluster's key is kept in Redis (:mod:`lwm2m.cluster.link`).

A link message, all integers big-endian::

    version (1) = 1 | kind (1) | sender's node byte (1) | family (1): 4 or 6 | sent at, ms (8)
    | IPv4: address (4) port (2) | IPv6: address (16) port (2) flowinfo (4) scope id (4)
    | the datagram | tag (16)

``kind`` is :data:`TO_OWNER` (a device's record, for the node that holds its session),
:data:`TO_DEVICE` (a datagram for the device, to be sent from the receiving node's public
socket) or :data:`PING` (the sender is alive and its link works; peer 0.0.0.0:0, no datagram):
a node stops forwarding to a node it has not heard from for a moment, long before that node's
heartbeat in Redis lapses. The tag is HMAC-SHA256 (RFC 2104) of everything before it with the cluster key,
truncated to its first 16 bytes (RFC 2104 §5 allows truncation to half the hash's length).
A message older than ``max_age`` seconds (or as far in the future) by the receiver's wall
clock is refused, which bounds replays: the DTLS records inside are protected against replay
by their sessions anyway (RFC 6347 §4.1.2.6), so a replayed message costs a datagram, no more.
"""

from __future__ import annotations

import hmac
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from lwm2m.errors import ConfigError, LinkMessageError

__all__ = [
    "NO_PEER",
    "PING",
    "TAG_LEN",
    "TO_DEVICE",
    "TO_OWNER",
    "LinkMessage",
    "LinkMessageCodec",
    "format_link",
    "parse_link",
]

TAG_LEN: Final = 16
VERSION: Final = 1
TO_OWNER: Final = 1  # a device's record, for the node whose byte its CID begins with
TO_DEVICE: Final = 2  # a datagram of the owner's, for the device, from the receiver's public socket
PING: Final = 3  # "this node is here": sent to every live node twice a second, no peer, no data
_KINDS = frozenset((TO_OWNER, TO_DEVICE, PING))
NO_PEER: Final = ("0.0.0.0", 0)  # the peer of a PING
_HEAD = struct.Struct("!BBBBQ")
_V4 = struct.Struct("!4sH")
_V6 = struct.Struct("!16sHII")
_MIN = _HEAD.size + _V4.size + TAG_LEN

# (host, port) or (host, port, flowinfo, scope_id), as recvfrom gives it
Addr = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class LinkMessage:
    """``data`` of ``kind``, sent by the node of byte ``node`` about the device at ``peer``."""

    kind: int
    node: int
    peer: Addr
    data: bytes


class LinkMessageCodec:
    """Encodes and checks link messages with the cluster ``key``. ``clock`` gives the wall
    clock in seconds (``time.time``), ``max_age`` the freshness a message must have."""

    def __init__(self, key: bytes, *, max_age: float = 60.0, clock: Callable[[], float] = time.time) -> None:
        if len(key) < TAG_LEN:
            raise ConfigError(f"a link key of {len(key)} bytes: give at least {TAG_LEN}")
        if not max_age > 0:
            raise ConfigError(f"max_age {max_age!r}: give a positive number of seconds")
        self._key = bytes(key)
        self._max_age_ms = int(max_age * 1000)
        self._clock = clock

    def _tag(self, body: bytes) -> bytes:
        return hmac.digest(self._key, body, "sha256")[:TAG_LEN]

    def encode(self, message: LinkMessage) -> bytes:
        """The message as one datagram, tagged. Raises ValueError for an address that is no
        IP literal (the link carries the addresses sockets report, never names)."""
        if message.kind not in _KINDS or not 0 <= message.node <= 0xFF:
            raise ValueError(f"not a link message: kind {message.kind}, node {message.node}")
        peer = message.peer
        sent = int(self._clock() * 1000)
        host = str(peer[0]).partition("%")[0]  # a link-local scope travels as the scope id
        try:
            if len(peer) == 4:
                where = _V6.pack(socket.inet_pton(socket.AF_INET6, host), peer[1], peer[2], peer[3])
                family = 6
            else:
                where = _V4.pack(socket.inet_pton(socket.AF_INET, host), peer[1])
                family = 4
        except (OSError, struct.error) as exc:
            raise ValueError(f"the link carries IP socket addresses, not {peer!r}: {exc}") from None
        body = _HEAD.pack(VERSION, message.kind, message.node, family, sent) + where + message.data
        return body + self._tag(body)

    def decode(self, datagram: bytes) -> LinkMessage:
        """The message of ``datagram``; LinkMessageError when it does not authenticate, is not
        fresh or does not read (and for nothing else)."""
        if len(datagram) < _MIN:
            raise LinkMessageError(f"a link message of {len(datagram)} bytes is too short")
        body, tag = datagram[:-TAG_LEN], datagram[-TAG_LEN:]
        if not hmac.compare_digest(self._tag(body), tag):
            raise LinkMessageError("a link message that does not authenticate")
        version, kind, node, family, sent = _HEAD.unpack_from(body)
        if version != VERSION or kind not in _KINDS:
            raise LinkMessageError(f"link message version {version}, kind {kind}: not known")
        if abs(int(self._clock() * 1000) - sent) > self._max_age_ms:
            raise LinkMessageError("a link message that is not fresh (a replay, or clocks apart)")
        at = _HEAD.size
        peer: Addr
        if family == 4:
            raw, port = _V4.unpack_from(body, at)
            peer = (socket.inet_ntop(socket.AF_INET, raw), port)
            at += _V4.size
        elif family == 6:
            if len(body) < at + _V6.size:
                raise LinkMessageError("a link message too short for its IPv6 address")
            raw, port, flowinfo, scope = _V6.unpack_from(body, at)
            peer = (socket.inet_ntop(socket.AF_INET6, raw), port, flowinfo, scope)
            at += _V6.size
        else:
            raise LinkMessageError(f"link message address family {family}: not known")
        return LinkMessage(kind, node, peer, body[at:])


def format_link(addr: Addr) -> str:
    """``host:port`` (``[host]:port`` for IPv6) as the node registry publishes it."""
    host, port = str(addr[0]), int(addr[1])
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_link(text: str) -> Addr | None:
    """The address of :func:`format_link`'s text (IPv6 with flowinfo and scope 0); None when
    it does not read as one."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            socket.inet_pton(socket.AF_INET6, host)
        except OSError:
            return None
        return (host, int(port), 0, 0)
    try:
        socket.inet_pton(socket.AF_INET, host)
    except OSError:
        return None
    return (host, int(port))
