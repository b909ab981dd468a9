"""The server side of many DTLS 1.2 connections on one socket, sans-IO.

It follows RFC 6347 §4.2.1 (no state for a client before its cookie checks out: a ClientHello
from an unknown address is answered statelessly with a HelloVerifyRequest), RFC 6347 §4.2.8
(a new ClientHello of epoch 0 from the address of an established connection is a client that
lost its state: it goes through the cookie exchange and its new connection replaces the old
one) and RFC 9146 §6 (a record that carries a known Connection ID is routed by it, whatever
its source address; the connection moves to the new address only when the record
authenticates and is newer than every record accepted before, so a replayed record cannot
redirect it).

A datagram is routed by the CID of its first record when it is a ``tls12_cid`` record (the
CID has the length this server gives its CIDs, RFC 9146 §4), else by its source address.
The table is bounded: a cap on connections, and a cap on handshakes in progress beyond which
the oldest handshake is dropped (a flood of valid cookies from many addresses costs at most
that many half-open connections).

Addresses are whatever the caller's socket gives (hashable; for UDP ``(host, port)``); a
session is named by a :class:`SessionKey` that stays the same when its address changes.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Hashable
from dataclasses import dataclass, replace
from typing import Final

from lwm2m.errors import DtlsError, SessionClosed
from lwm2m.tls.connection import (
    ConnectionClosed,
    ConnectionConfig,
    CookieChecker,
    DtlsConnection,
    DtlsEvent,
    DtlsRole,
)
from lwm2m.tls.messages import HandshakeType
from lwm2m.tls.record import HANDSHAKE, TLS12_CID

__all__ = [
    "AddressChanged",
    "DtlsServerSessions",
    "DtlsSessionEvent",
    "SessionKey",
]

DEFAULT_MAX_SESSIONS: Final = 10_000
DEFAULT_MAX_HANDSHAKES: Final = 100
# Offsets in a DTLS record header (RFC 6347 §4.1): type, version, epoch, sequence_number; the
# handshake message type is the first byte of the fragment of a plain record.
_EPOCH: Final = slice(3, 5)
_CID_AT: Final = 11
_PLAIN_HANDSHAKE_TYPE_AT: Final = 13

Address = Hashable


@dataclass(frozen=True, slots=True)
class SessionKey:
    """Names one connection of the table for its whole life, across address changes."""

    number: int


@dataclass(frozen=True, slots=True)
class DtlsSessionEvent:
    """An event of one connection: ``event`` is what :class:`DtlsConnection` reported."""

    session: SessionKey
    address: Address
    event: DtlsEvent


@dataclass(frozen=True, slots=True)
class AddressChanged:
    """A CID connection took a new peer address (RFC 9146 §6): its records now go to ``new``."""

    session: SessionKey
    old: Address
    new: Address


ServerEvent = DtlsSessionEvent | AddressChanged


class _Session:
    __slots__ = ("address", "cid", "connection", "key")

    def __init__(self, key: SessionKey, address: Address, connection: DtlsConnection) -> None:
        self.key = key
        self.address = address
        self.connection = connection
        self.cid = connection.own_cid


def _address_bytes(address: Address) -> bytes:
    # The cookie binds the address (RFC 6347 §4.2.1); its repr is stable for the tuples,
    # strings and bytes a socket gives.
    return repr(address).encode()


def _is_client_hello(data: bytes) -> bool:
    # A plain handshake record of epoch 0 whose message is a ClientHello.
    return (
        len(data) > _PLAIN_HANDSHAKE_TYPE_AT
        and data[0] == HANDSHAKE
        and data[_EPOCH] == b"\x00\x00"
        and data[_PLAIN_HANDSHAKE_TYPE_AT] == HandshakeType.CLIENT_HELLO
    )


class DtlsServerSessions:
    """Every DTLS connection of a server socket: routing, cookies, CID address changes, bounds.

    ``config`` is the server configuration of every connection (its ``cookie_checker`` is not
    used: ``cookie_checker`` here is). Feed datagrams with :meth:`receive_datagram`, send what
    :meth:`datagrams_to_send` gives, call :meth:`handle_timer` at :meth:`get_timer`, take
    events from :meth:`next_event`.
    """

    def __init__(
        self,
        config: ConnectionConfig,
        cookie_checker: CookieChecker,
        *,
        max_sessions: int = DEFAULT_MAX_SESSIONS,
        max_handshakes: int = DEFAULT_MAX_HANDSHAKES,
    ) -> None:
        if config.psk_lookup is None and config.certificate is None:
            raise DtlsError("a DTLS server needs psk_lookup or a certificate")
        if max_sessions < 1 or not 1 <= max_handshakes <= max_sessions:
            raise DtlsError("max_sessions and max_handshakes must be positive, handshakes <= sessions")
        # The table checks cookies before a connection exists; the connection needs none.
        self._config = replace(config, cookie_checker=None)
        self._checker = cookie_checker
        self._stateless = replace(config, cookie_checker=cookie_checker)
        self.max_sessions = max_sessions
        self.max_handshakes = max_handshakes
        self._sessions: dict[SessionKey, _Session] = {}
        self._by_address: dict[Address, SessionKey] = {}
        self._by_cid: dict[bytes, SessionKey] = {}
        # Handshakes in progress, oldest first.
        self._handshakes: OrderedDict[SessionKey, None] = OrderedDict()
        self._next_key = 0
        self._events: deque[ServerEvent] = deque()
        self._outbox: list[tuple[bytes, Address]] = []
        # Sessions that may have something to send: only those are asked, so that sending
        # costs nothing per idle session.
        self._dirty: dict[SessionKey, None] = {}

    # --- public surface ----------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._sessions)

    @property
    def handshakes_in_progress(self) -> int:
        """How many connections have not completed their handshake."""
        return len(self._handshakes)

    def address_of(self, session: SessionKey) -> Address | None:
        """The current peer address of a session, or None when it is gone."""
        found = self._sessions.get(session)
        return found.address if found is not None else None

    def session_at(self, address: Address) -> SessionKey | None:
        """The session whose peer is at ``address``, if any."""
        return self._by_address.get(address)

    def connection(self, session: SessionKey) -> DtlsConnection | None:
        """The connection of a session (to read its identity or CID), or None when it is gone."""
        found = self._sessions.get(session)
        return found.connection if found is not None else None

    def next_event(self) -> ServerEvent | None:
        """The next event, or None when there is none."""
        return self._events.popleft() if self._events else None

    def send(self, target: SessionKey | Address, data: bytes) -> None:
        """Send application data on the established session ``target`` (a key or an address)."""
        key = target if isinstance(target, SessionKey) else self._by_address.get(target)
        session = self._sessions.get(key) if key is not None else None
        if session is None:
            raise SessionClosed(f"no DTLS session for {target!r}")
        session.connection.send_application_data(data)
        self._dirty[session.key] = None

    def close(self, target: SessionKey | Address) -> None:
        """Close a session with close_notify; its alert is still sent by :meth:`datagrams_to_send`."""
        key = target if isinstance(target, SessionKey) else self._by_address.get(target)
        session = self._sessions.get(key) if key is not None else None
        if session is None:
            return
        session.connection.close()
        self._collect(session)

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Address]]:
        """Every datagram to send now, with its destination (a session's current address)."""
        out, self._outbox = self._outbox, []
        dirty, self._dirty = self._dirty, {}
        for key in dirty:
            session = self._sessions.get(key)
            if session is not None:
                out.extend((d, session.address) for d in session.connection.datagrams_to_send(now))
        return out

    def get_timer(self) -> float | None:
        """The earliest retransmission timer of any connection, or None."""
        timers = [t for s in self._sessions.values() if (t := s.connection.get_timer()) is not None]
        return min(timers) if timers else None

    def handle_timer(self, now: float) -> None:
        """Fire the timers that expired."""
        for session in list(self._sessions.values()):
            timer = session.connection.get_timer()
            if timer is not None and timer <= now:
                session.connection.handle_timer(now)
                self._collect(session)

    def receive_datagram(self, data: bytes, address: Address, now: float) -> None:
        """Route one datagram from ``address``; anything unroutable or malformed is dropped."""
        if not data:
            return
        if data[0] == TLS12_CID:
            self._receive_cid(data, address, now)
            return
        key = self._by_address.get(address)
        if key is not None:
            session = self._sessions[key]
            if not (session.connection.established and _is_client_hello(data)):
                session.connection.receive_datagram(data, now)
                self._collect(session)
                return
            # RFC 6347 §4.2.8: the client restarted; the old connection stays until the new
            # one gets past the cookie exchange.
        self._new_client(data, address, now)

    # --- routing ------------------------------------------------------------------------------

    def _receive_cid(self, data: bytes, address: Address, now: float) -> None:
        length = self._config.cid_length if self._config.connection_id else 0
        if length == 0 or len(data) < _CID_AT + length:
            return
        key = self._by_cid.get(bytes(data[_CID_AT : _CID_AT + length]))
        if key is None:
            return  # an unknown CID: there is no connection to try it on (RFC 9146 §6)
        session = self._sessions[key]
        newer = session.connection.receive_datagram(data, now)
        if newer and address != session.address and session.connection.established:
            # RFC 9146 §6: authenticated and newer than anything before, so the peer moved
            # (a NAT rebinding); a replay or an older record does not get here.
            old = session.address
            if self._by_address.get(old) == key:
                del self._by_address[old]
            displaced = self._by_address.get(address)
            if displaced is not None and displaced != key:
                # Another connection was at that address: its peer is gone from there (the
                # NAT gave its port to this client).
                self._drop(self._sessions[displaced], "its address was taken by another session")
            self._by_address[address] = key
            session.address = address
            self._events.append(AddressChanged(key, old, address))
        self._collect(session)

    def _new_client(self, data: bytes, address: Address, now: float) -> None:
        # A throw-away connection with the cookie checker answers a hello without a valid
        # cookie and keeps nothing (RFC 6347 §4.2.1); it is kept only once the cookie checks out.
        if not _is_client_hello(data):
            return  # not for any connection, and not the start of one
        probe = DtlsConnection(DtlsRole.SERVER, self._stateless, now, address=_address_bytes(address))
        probe.receive_datagram(data, now)
        if probe.awaiting_hello:
            self._outbox.extend((datagram, address) for datagram in probe.datagrams_to_send(now))
            return
        if probe.closed:
            # Refused (no common cipher suite): its alert goes out, nothing is kept.
            self._outbox.extend((datagram, address) for datagram in probe.datagrams_to_send(now))
            return
        if probe.own_cid and probe.own_cid in self._by_cid:
            return  # a random CID that is taken: the client's retransmission gets another one
        replaced = self._by_address.get(address)
        if replaced is not None:
            self._drop(self._sessions[replaced], "the client started a new handshake")
        if len(self._sessions) >= self.max_sessions:
            return  # full: the hello is dropped, the client tries again later
        key = SessionKey(self._next_key)
        self._next_key += 1
        session = _Session(key, address, probe)
        self._sessions[key] = session
        self._by_address[address] = key
        if session.cid:
            self._by_cid[session.cid] = key
        self._handshakes[key] = None
        while len(self._handshakes) > self.max_handshakes:
            oldest = next(iter(self._handshakes))
            self._drop(self._sessions[oldest])
        self._collect(session)

    def _collect(self, session: _Session) -> None:
        # Move the connection's events out, note a completed handshake, and forget a closed
        # connection once what it has to send (its alert) is taken.
        connection = session.connection
        self._dirty[session.key] = None
        while (event := connection.next_event()) is not None:
            self._events.append(DtlsSessionEvent(session.key, session.address, event))
        if connection.established or connection.closed:
            self._handshakes.pop(session.key, None)
        if connection.closed:
            self._outbox.extend((datagram, session.address) for datagram in connection.datagrams_to_send(0.0))
            self._drop(session)

    def _drop(self, session: _Session, reason: str | None = None) -> None:
        # An established session that ends without its peer saying so is reported as closed;
        # a handshake that never completed was never announced, so it ends quietly.
        if reason is not None and session.connection.established:
            self._events.append(DtlsSessionEvent(session.key, session.address, ConnectionClosed(reason)))
        self._sessions.pop(session.key, None)
        self._handshakes.pop(session.key, None)
        if self._by_address.get(session.address) == session.key:
            del self._by_address[session.address]
        if session.cid and self._by_cid.get(session.cid) == session.key:
            del self._by_cid[session.cid]
