"""The DTLS backend on our own sans-IO engine, ``lwm2m.tls`` (RFC 6347, RFC 4279, RFC 9146, RFC 8422).

The engine's ``DtlsConnection`` already speaks in datagrams, takes the time as ``now`` and
says when it wants its timer (RFC 6347 §4.2.4); this module only fits it to the session
layer's ``Connection`` protocol (``backend.py``) and maps our configuration onto the
engine's ``ConnectionConfig``:

- TLS_PSK_WITH_AES_128_CCM_8 (RFC 7925 §4.2, LwM2M's mandatory suite), with the extended
  master secret of RFC 7627 and PSKs of up to 64 bytes; the CBC suites of LwM2M 1.1
  (TLS_PSK_WITH_AES_128_CBC_SHA256, TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA256,
  TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256) only when the configuration's ``ciphers`` name them
  (they are off by default: MAC-then-encrypt is not constant-time in Python). ``ciphers`` given
  explicitly are honoured exactly: the engine offers and takes those suites and no other (the
  engine's ``psk_suites``, ``cbc_suites`` and ``ecdsa_suites``);
- the stateless cookie of RFC 6347 §4.2.1 by ``lwm2m.tls.cookies.CookieChecker.answer`` on the
  hello's bytes, under a secret that rotates every ``COOKIE_ROTATION`` seconds of the layer's
  time: only a hello with a valid cookie reaches a ``DtlsConnection`` (made without a cookie
  checker of its own);
- Connection IDs (RFC 9146): a server gives ``limits.cid_length`` bytes whose first is
  ``limits.node_id``; a client offers the extension with an empty CID of its own (the server
  reaches it at whatever address its records come from) and then sends the server's CID in
  every record, so that a NAT rebinding costs no handshake;
- parking (RFC 6347 §4.1 state as bytes): ``save`` exports an established connection with
  ``DtlsConnection.export_state`` and ``restore`` imports it, so that the layer keeps an idle
  session in a few hundred bytes and takes it up again without a handshake, PSK, X.509 and
  raw public key sessions alike (the state names the peer as the handshake authenticated it);
  a server takes up no PSK session whose PSK was removed or replaced since (its credential
  binding), and no certificate session once it has no certificate, or its own key or how it
  trusts its peers changed;
  whether the peer of a certificate session may still register is for the application to
  decide, as for a new session;
- resumption (RFC 5246 §7.3, RFC 5077): a server resumes from its session cache
  (``SESSION_CACHE_SIZE`` sessions) and from tickets sealed under a key that rotates every
  ``SESSION_LIFETIME`` seconds (the previous key still opens, so a ticket lives at least that
  long); the keys' secrets can be exported and imported (``ticket_state``), so that tickets
  survive a restart. Clients keep the last session of each credential (a PSK identity, or a
  digest of the own key and trust settings for a certificate or raw public key) and server
  address (``MAX_CLIENT_SESSIONS`` of them, in one table for the process: an endpoint made
  anew, on a new socket, finds it too) and offer it in their next handshake there, so that a
  client whose session went (evicted by the server, closed by us after a timeout, or left
  behind with its old socket) makes an abbreviated handshake. The engine offers it only with
  the PSK or key it was made with (its credential binding). A resumed ECDHE_ECDSA session
  names its peer as its full handshake did (RFC 5077 §3.4).

- TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8 and _GCM_SHA256 (RFC 7251, RFC 5289) with X.509
  certificates or raw public keys (RFC 7250), both roles, beside PSK on one server; the
  credentials are loaded by ``credentials.py``.

The engine is given wall-clock seconds as ``now``: the layer's clock is a monotonic one (it
starts anew with each process), but a parked session, a session's creation time (from which
the lifetimes of RFC 5077 §3.3 tickets and of cached sessions count) and ticket keys outlive a
restart. :class:`_WallClock` shifts the layer's times by one offset, fixed when first needed,
and shifts the engine's timers back, so that both clocks advance together.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import struct
import time
from collections import OrderedDict
from typing import Final, Protocol

from lwm2m.errors import DtlsError, HandshakeError, RecordTooLarge, SessionClosed, SessionStateError
from lwm2m.tls.connection import (
    TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256,
    TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA256,
    TLS_PSK_WITH_AES_128_CBC_SHA256,
    TLS_PSK_WITH_AES_128_CCM_8,
    ApplicationData,
    ConnectionClosed,
    ConnectionConfig,
    DtlsConnection,
    DtlsRole,
    HandshakeComplete,
    HandshakeFailure,
)
from lwm2m.tls.cookies import COOKIE_ROTATION, CookieChecker
from lwm2m.tls.state import PEER_PSK, ConnectionState, ResumableSession
from lwm2m.tls.tickets import SessionCache, TicketKeys
from lwm2m.transport.dtls.config import (
    CipherSuite,
    DtlsClientConfig,
    DtlsServerConfig,
    PeerIdentity,
    PskLookup,
    SessionLimits,
)
from lwm2m.transport.dtls.credentials import (
    ECDSA_SUITE_NUMBERS,
    client_credentials,
    peer_identity,
    server_credentials,
)

__all__ = ["ENGINE_SUITES", "HANDSHAKE_COST", "EngineBackend", "supports"]

# Our names of the suites and the engine's numbers: the CBC ones are enabled only from
# ``ciphers`` given explicitly, never from the defaults (which list PSK CBC for Mbed TLS).
_PSK_CBC: Final = {
    CipherSuite.PSK_WITH_AES_128_CBC_SHA256: TLS_PSK_WITH_AES_128_CBC_SHA256,
    CipherSuite.ECDHE_PSK_WITH_AES_128_CBC_SHA256: TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA256,
}
_ECDSA_CBC: Final = {CipherSuite.ECDHE_ECDSA_WITH_AES_128_CBC_SHA256: TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256}
_SUITE_NUMBERS: Final = (
    {CipherSuite.PSK_WITH_AES_128_CCM_8: TLS_PSK_WITH_AES_128_CCM_8}
    | _PSK_CBC
    | ECDSA_SUITE_NUMBERS
    | _ECDSA_CBC
)
# The suites the engine negotiates (the CBC ones only when asked for).
ENGINE_SUITES: Final = tuple(_SUITE_NUMBERS)
_SUITE_NAMES: Final = {number: name for name, number in _SUITE_NUMBERS.items()}
# Bytes one server handshake in progress holds in the layer (the connection with its flight,
# transcript and reassembly state, the layer's entry; measured with tracemalloc over 2,000
# handshakes stalled after the ServerHello flight: 5.9 KiB each), rounded up. Mbed TLS's is
# 90 KiB: a 64 MiB budget holds 8,192 of ours against its 728.
# An ECDHE-ECDSA one holds 1.1 KiB (raw public keys) to 1.5 KiB (X.509) more than a PSK one
# (the peer's key or chain, our ECDH share: tracemalloc over 300 connections), still within it.
HANDSHAKE_COST: Final = 8 << 10
# Resumption (RFC 5246 §7.3, RFC 5077 §5.6: a lifetime and a key rotation both bound the
# exposure of a master secret): a session resumes for a day after its full handshake.
SESSION_LIFETIME: Final = 24 * 3600.0
SESSION_CACHE_SIZE: Final = 10_000  # sessions by id (a few hundred bytes each)
MAX_CLIENT_SESSIONS: Final = 4096  # (credential, server address) pairs with a session to offer
_TICKET_SECRET: Final = 32
_TICKET_STATE_VERSION: Final = 1


_TIMED_OUT = "timed out"


class _Tickets:
    """The server's ticket keys (RFC 5077 §4, §5.5) with their secrets, so that they can be
    saved: a new key every ``SESSION_LIFETIME`` seconds of wall-clock time, the previous one
    kept for opening."""

    __slots__ = ("_current", "_previous", "_rotated", "keys")

    def __init__(self) -> None:
        self._current = os.urandom(_TICKET_SECRET)
        self._previous: bytes | None = None
        self._rotated: float | None = None
        self.keys = TicketKeys(self._current, lifetime=SESSION_LIFETIME)

    def rotate_if_due(self, wall: float) -> bool:
        """Rotate when due; True when ``keys`` is a new object (the configuration must take it)."""
        if self._rotated is None or wall < self._rotated:
            self._rotated = wall  # first use, or the wall clock was set back: count from now
        elif wall - self._rotated >= 2 * SESSION_LIFETIME:
            # Both keys are past use: a fresh one alone (a restart after a long stop, say).
            self._current, self._previous = os.urandom(_TICKET_SECRET), None
            self.keys = TicketKeys(self._current, lifetime=SESSION_LIFETIME)
            self._rotated = wall
            return True
        elif wall - self._rotated >= SESSION_LIFETIME:
            self._previous, self._current = self._current, os.urandom(_TICKET_SECRET)
            self.keys.rotate(self._current)
            self._rotated = wall
        return False

    def to_bytes(self) -> bytes:
        """Version, rotation time (IEEE double, 0: not yet used), current secret, previous
        secret (absent if none). These bytes open every ticket issued: keep them as keys."""
        rotated = struct.pack(">d", self._rotated or 0.0)
        return bytes((_TICKET_STATE_VERSION,)) + rotated + self._current + (self._previous or b"")

    def load(self, data: bytes) -> None:
        """Take up the keys of :meth:`to_bytes`; DtlsError for bytes that are not such keys."""
        data = bytes(data)
        if len(data) not in (9 + _TICKET_SECRET, 9 + 2 * _TICKET_SECRET) or data[0] != _TICKET_STATE_VERSION:
            raise DtlsError("saved ticket keys: not of this format")
        (rotated,) = struct.unpack(">d", data[1:9])
        if not math.isfinite(rotated):
            raise DtlsError("saved ticket keys: the rotation time is not finite")
        current = data[9 : 9 + _TICKET_SECRET]
        previous = data[9 + _TICKET_SECRET :] or None
        self._current, self._previous = current, previous
        self._rotated = rotated or None
        self.keys = TicketKeys(current, previous, lifetime=SESSION_LIFETIME)


def ticket_rotated(data: bytes) -> float:
    """When the ticket keys of ``ticket_state`` (``_Tickets.to_bytes``) were last rotated, Unix
    time (0: not yet used): of two nodes' keys the later rotated are the ones to share.
    DtlsError for bytes that are not such keys."""
    data = bytes(data)
    if len(data) < 9 or data[0] != _TICKET_STATE_VERSION:
        raise DtlsError("saved ticket keys: not of this format")
    (rotated,) = struct.unpack(">d", data[1:9])
    if not math.isfinite(rotated):
        raise DtlsError("saved ticket keys: the rotation time is not finite")
    return float(rotated)


class _WallClock:
    """The layer's (monotonic) times as wall-clock seconds for the engine, and back.

    The offset is taken once, at the first time seen: both clocks then advance together (a
    wall clock set back or forward later moves nothing here, which is what timers need)."""

    __slots__ = ("offset",)

    def __init__(self) -> None:
        self.offset: float | None = None  # wall minus layer time, once a time was seen

    def wall(self, now: float) -> float:
        if self.offset is None:
            self.offset = time.time() - now
        return now + self.offset

    def layer(self, at: float | None) -> float | None:
        if at is None or self.offset is None:
            return at
        return at - self.offset


def supports(suites: tuple[CipherSuite, ...], *, certificate: bool) -> bool:
    """True when the engine can serve a configuration with these suites: a PSK suite (CCM_8 or
    a CBC one), or for a certificate or raw public key an ECDHE_ECDSA one (CCM_8, GCM, CBC)."""
    if certificate:
        return any(suite in ECDSA_SUITE_NUMBERS or suite in _ECDSA_CBC for suite in suites)
    return any(suite == CipherSuite.PSK_WITH_AES_128_CCM_8 or suite in _PSK_CBC for suite in suites)


def _psk_suites(ciphers: tuple[CipherSuite, ...]) -> dict[str, tuple[int, ...]]:
    """The engine's PSK suites for ``ciphers`` as configured: CCM_8 alone by default; exactly
    the PSK suites named, when ``ciphers`` is given."""
    if not ciphers:
        return {"psk_suites": (TLS_PSK_WITH_AES_128_CCM_8,), "cbc_suites": ()}
    return {
        "psk_suites": (TLS_PSK_WITH_AES_128_CCM_8,) if CipherSuite.PSK_WITH_AES_128_CCM_8 in ciphers else (),
        "cbc_suites": tuple(_PSK_CBC[c] for c in ciphers if c in _PSK_CBC),
    }


def _ecdsa_cbc(ciphers: tuple[CipherSuite, ...]) -> tuple[int, ...]:
    return tuple(_ECDSA_CBC[c] for c in ciphers if c in _ECDSA_CBC)


def _engine_config(limits: SessionLimits, **kw: object) -> ConnectionConfig:
    if limits.record_size_limit is not None:
        # RFC 8449 §4: the largest record plaintext we take; else the engine's default.
        kw["record_size_limit"] = limits.record_size_limit
    return ConnectionConfig(
        max_datagram_size=limits.mtu,
        initial_timeout=limits.handshake_timeout_min,
        max_timeout=limits.handshake_timeout_max,
        **kw,  # type: ignore[arg-type]
    )


def _lookup(lookup: PskLookup) -> object:
    def psk_for(identity: bytes) -> bytes | None:
        # Our identities are text; one that is not UTF-8 is one we do not know.
        try:
            name = identity.decode("utf-8")
        except UnicodeDecodeError:
            return None
        key = lookup(name)
        return bytes(key) if key else None

    return psk_for


class _Remember(Protocol):
    def __call__(self, session: ResumableSession | None) -> None: ...


class _Connection:
    """One engine connection behind the layer's ``Connection`` protocol."""

    __slots__ = (
        "_clock",
        "_closed",
        "_conn",
        "_data",
        "_failure",
        "_identity",
        "_remember",
        "established",
        "resumed",
    )

    def __init__(self, conn: DtlsConnection, clock: _WallClock, remember: _Remember | None = None) -> None:
        self._conn = conn
        self._clock = clock
        # A client's: where the session goes once the handshake is over, to be offered next time.
        self._remember = remember
        self.resumed = False  # the handshake was an abbreviated one (RFC 5246 §7.3)
        # A list, not a deque: records wait here only between feed() and read(), and an empty
        # deque costs 700 bytes per connection.
        self._data: list[bytes] = []
        self._failure: str | None = None
        self._closed: str | None = None
        self._identity: PeerIdentity | None = None
        self.established = False

    @property
    def cid(self) -> bytes:
        """The CID the peer's records carry, known from our ServerHello on (RFC 9146 §3)."""
        return self._conn.own_cid

    @property
    def max_application_data(self) -> int:
        """The largest datagram :meth:`write` takes: one record of the peer's limit (RFC 8449 §4)."""
        return self._conn.max_application_data

    @property
    def records(self) -> DtlsConnection:
        """The engine's connection itself: its ``open_application_data`` and
        ``protect_application_data`` are the layer's way for an established session's records,
        with no call of this adapter in between. Its errors are the engine's (the layer ends the
        session on any but RecordTooLarge, as it does for :meth:`write`'s SessionClosed)."""
        return self._conn

    def _collect(self) -> None:
        conn = self._conn
        while (event := conn.next_event()) is not None:
            kind = type(event)
            if kind is ApplicationData:
                self._data.append(event.data)  # type: ignore[union-attr]
            elif kind is HandshakeComplete:
                self.established = True
                self.resumed = event.resumed  # type: ignore[union-attr]
                peer = event.peer  # type: ignore[union-attr]
                if peer is not None:  # ECDHE_ECDSA: the certificate or raw public key proved
                    self._identity = peer_identity(peer)
                else:
                    name = event.identity.decode("utf-8", "replace")  # type: ignore[union-attr]
                    self._identity = PeerIdentity("psk", name)
                if self._remember is not None:
                    self._remember(conn.session)
            elif kind is ConnectionClosed:
                self._closed = event.reason  # type: ignore[union-attr]
            elif kind is HandshakeFailure:
                reason = event.reason  # type: ignore[union-attr]
                # One name for a handshake that ran out of time, whichever timer ended it.
                self._failure = "handshake timed out" if _TIMED_OUT in reason else reason
                if self._remember is not None and _TIMED_OUT not in reason:
                    self._remember(None)  # refused: the session offered is not offered again

    def feed(self, datagram: bytes, now: float) -> bool:
        newer = self._conn.receive_datagram(datagram, self._clock.wall(now))
        self._collect()
        return newer

    def feed_read(self, datagram: bytes, now: float) -> bytes | None:
        """``feed`` and then ``read`` in one call, for an established session's datagram of one
        application record: its plaintext, with no event object in between. None when it held
        anything else or nothing that authenticated; ``read()`` then gives what it held."""
        conn = self._conn
        offset = self._clock.offset  # the engine's clock, as ``feed`` gives it (no call once set)
        wall = now + offset if offset is not None else self._clock.wall(now)
        if not self._data:
            plain = conn.receive_application_data(datagram, wall)
            if plain is not None:
                return plain
        else:  # plaintext already waiting goes first
            conn.receive_datagram(datagram, wall)
        self._collect()
        return None

    @property
    def advanced(self) -> bool:
        """What ``feed`` returns, for the datagram ``feed_read`` took last (RFC 9146 §6)."""
        return self._conn.advanced

    def handshake(self, now: float) -> bool:
        self._collect()
        if self._failure is not None:
            raise HandshakeError(self._failure)
        return self.established

    def get_timer(self) -> float | None:
        return self._clock.layer(self._conn.get_timer())

    def handle_timer(self, now: float) -> None:
        self._conn.handle_timer(self._clock.wall(now))
        self._collect()

    def outgoing(self) -> list[bytes]:
        return self._conn.datagrams_to_send(0.0)

    def read(self) -> bytes | None:
        if self._data:
            return self._data.pop(0)
        if self._closed is not None:
            raise SessionClosed(f"closed by the peer: {self._closed}")
        return None

    def write(self, data: bytes) -> bytes:
        try:
            return self._conn.protect_application_data(data)
        except RecordTooLarge:
            raise  # that message cannot go; the session stays
        except DtlsError as exc:  # SessionClosed is one
            raise SessionClosed(str(exc)) from None

    def identity(self) -> PeerIdentity | None:
        return self._identity

    def cipher_suite(self) -> str | None:
        return _SUITE_NAMES.get(self._conn.cipher_suite) if self.established else None

    def close(self) -> bytes:
        self._conn.close()
        return b"".join(self._conn.datagrams_to_send(0.0))

    def save(self) -> bytes | None:
        """The established connection's state (``DtlsConnection.export_state``): the layer lets
        this connection go at once, and the restored one sends above the exported sequence
        number, so no nonce is used twice (RFC 5246 §6.2.3.3)."""
        if not self.established or self._closed is not None or self._conn.closed:
            return None
        try:
            return self._conn.export_state()
        except DtlsError:  # the sequence numbers are used up: a new handshake is due
            return None


def _restore(state: bytes, config: ConnectionConfig, clock: _WallClock, role: DtlsRole) -> _Connection:
    """A connection from ``save()``'s bytes, established at once; DtlsError for bytes that do
    not read back or belong to the other role (a server never takes up a client's state), and
    on a server for a PSK session whose PSK was removed or replaced since it was saved, or for
    a certificate or raw public key session when it has no certificate credentials now, or
    another key of its own or other trust settings (the peer itself is for the registration
    check to judge, as for a new session)."""
    try:
        if role is DtlsRole.SERVER:
            session = ConnectionState.from_bytes(state).session
            if session.peer_kind == PEER_PSK:
                psk = None if config.psk_lookup is None else config.psk_lookup(session.identity)
                if psk is None or not session.bound_to(psk):
                    raise DtlsError("saved DTLS state of credentials that were removed or replaced since")
            elif config.certificate is None or not session.bound_to(config.certificate.session_credential()):
                raise DtlsError("saved DTLS state of a certificate session this server cannot take up")
        # The time only stamps the construction: the session's own times come from the bytes.
        conn = DtlsConnection.import_state(state, config, time.time())
    except SessionStateError as exc:
        raise DtlsError(f"saved DTLS state: {exc}") from None
    if conn.role is not role:
        raise DtlsError(f"saved DTLS state of a {conn.role.name.lower()}, not of a {role.name.lower()}")
    restored = _Connection(conn, clock)
    restored.established = True
    peer = conn.peer_credentials
    if peer is not None:  # the certificate or raw public key its full handshake proved
        restored._identity = peer_identity(peer)
    else:
        identity = conn.peer_identity or b""
        restored._identity = PeerIdentity("psk", identity.decode("utf-8", "replace"))
    return restored


class _ServerFactory:
    handshake_cost = HANDSHAKE_COST

    def __init__(self, config: DtlsServerConfig) -> None:
        psk = config.psk_lookup is not None and supports(config.cipher_suites, certificate=False)
        certificate, ecdsa_suites = server_credentials(config)
        if not psk and certificate is None:
            raise ValueError(
                "our DTLS engine serves PSK with TLS-PSK-WITH-AES-128-CCM-8 or a CBC suite and"
                " certificates or raw public keys with an ECDHE-ECDSA suite"
            )
        suites: dict[str, tuple[int, ...]] = {"psk_suites": (), "cbc_suites": ()}
        if psk:
            suites = _psk_suites(config.ciphers)
        if certificate is not None:
            suites["cbc_suites"] = tuple(
                _SUITE_NUMBERS[c] for c in config.ciphers if c in _ECDSA_CBC or (psk and c in _PSK_CBC)
            )
        limits = config.limits
        self.cid_length = limits.cid_length
        self._cookies = CookieChecker(rotation=COOKIE_ROTATION)
        self._clock = _WallClock()
        self._tickets = _Tickets()
        self._cache = SessionCache(SESSION_CACHE_SIZE, SESSION_LIFETIME)
        self._config = _engine_config(
            limits,
            psk_lookup=_lookup(config.psk_lookup) if psk and config.psk_lookup is not None else None,
            cid_length=limits.cid_length,
            node_id=limits.node_id,
            session_cache=self._cache,
            ticket_keys=self._tickets.keys,
            certificate=certificate,
            ecdsa_suites=ecdsa_suites,
            **suites,
        )

    def ticket_state(self) -> bytes:
        """The ticket keys' secrets as bytes (they open every ticket issued: keep them as keys)."""
        return self._tickets.to_bytes()

    def load_ticket_state(self, data: bytes) -> bool:
        """Open the tickets issued under saved keys (a restart, or another node of a cluster)."""
        self._tickets.load(data)
        self._config = dataclasses.replace(self._config, ticket_keys=self._tickets.keys)
        return True

    def accept(self, datagram: bytes, client_id: bytes, now: float) -> tuple[_Connection | None, bytes]:
        # Nothing is kept until the cookie checks out (RFC 6347 §4.2.1).
        verify = self._cookies.answer(datagram, client_id, now)
        if verify is not None:
            return None, verify
        wall = self._clock.wall(now)
        if self._tickets.rotate_if_due(wall):
            self._config = dataclasses.replace(self._config, ticket_keys=self._tickets.keys)
        conn = DtlsConnection(DtlsRole.SERVER, self._config, wall, address=client_id)
        conn.receive_datagram(datagram, wall)
        if conn.awaiting_hello or conn.closed:
            # A hello the engine could not parse (nothing to send), or one it refused (its alert).
            return None, b"".join(conn.datagrams_to_send(wall))
        return _Connection(conn, self._clock), b""

    def restore(self, state: bytes) -> _Connection:
        return _restore(state, self._config, self._clock, DtlsRole.SERVER)

    def stream_connection(self, now: float) -> DtlsConnection:
        """A server connection of this configuration for TLS 1.2 over TCP (RFC 5246): the same
        credentials and suites, the engine's stream mode."""
        return DtlsConnection(DtlsRole.SERVER, self._config, self._clock.wall(now), stream=True)


class _ClientSessions:
    """The last session per (credential, server address), least recently made first, for the
    client factories of this process (RFC 5246 §7.4.1.2: a client may offer any session it
    holds). An entry holds a master secret, in memory only."""

    __slots__ = ("_sessions", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._sessions: OrderedDict[tuple[bytes, bytes], ResumableSession] = OrderedDict()

    def __len__(self) -> int:
        return len(self._sessions)

    def get(self, key: tuple[bytes, bytes]) -> ResumableSession | None:
        return self._sessions.get(key)

    def put(self, key: tuple[bytes, bytes], session: ResumableSession | None) -> None:
        if session is None or not session.resumable:
            self._sessions.pop(key, None)
            return
        self._sessions[key] = session
        self._sessions.move_to_end(key)
        while len(self._sessions) > self.limit:
            self._sessions.popitem(last=False)

    def clear(self) -> None:
        self._sessions.clear()


CLIENT_SESSIONS: Final = _ClientSessions(MAX_CLIENT_SESSIONS)


class _ClientFactory:
    handshake_cost = HANDSHAKE_COST

    def __init__(self, config: DtlsClientConfig) -> None:
        self._clock = _WallClock()
        # What this client's sessions are kept under (with the server's address): its PSK
        # identity, or a digest of its own key and trust settings (session_credential).
        self._credential = b""
        if config.psk is not None:
            if not supports(config.cipher_suites, certificate=False):
                raise ValueError(
                    "our DTLS engine connects with PSK in TLS-PSK-WITH-AES-128-CCM-8 or a CBC suite"
                )
            self._config = _engine_config(
                config.limits,
                psk_identity=config.psk.identity.encode("utf-8"),
                psk=config.psk.key,
                cid_length=0,
                server_name=config.server_name,
                **_psk_suites(config.ciphers),
            )
            self._credential = b"psk:" + self._config.psk_identity
            return
        certificate, ecdsa_suites = client_credentials(config)
        if certificate is not None:
            own = certificate.session_credential()
            self._credential = b"certificate:" + hashlib.sha256(own).digest()
        self._config = _engine_config(
            config.limits,
            cid_length=0,
            certificate=certificate,
            ecdsa_suites=ecdsa_suites,
            server_name=config.server_name,
            cbc_suites=_ecdsa_cbc(config.ciphers),
        )

    def connect(self, now: float, peer: bytes = b"") -> _Connection:
        """A new connection to ``peer`` (the server's address as the layer names it), offering
        the last session made there, when there is one (RFC 5246 §7.4.1.2, RFC 5077 §3.4)."""
        resumable = bool(peer)
        key = (self._credential, peer)
        offer = CLIENT_SESSIONS.get(key) if resumable else None

        def remember(session: ResumableSession | None) -> None:
            if resumable:
                CLIENT_SESSIONS.put(key, session)

        conn = DtlsConnection(DtlsRole.CLIENT, self._config, self._clock.wall(now), session=offer)
        return _Connection(conn, self._clock, remember)

    def restore(self, state: bytes) -> _Connection:
        return _restore(state, self._config, self._clock, DtlsRole.CLIENT)

    def stream_connection(self, now: float) -> DtlsConnection:
        """A client connection of this configuration for TLS 1.2 over TCP (RFC 5246)."""
        return DtlsConnection(DtlsRole.CLIENT, self._config, self._clock.wall(now), stream=True)


class EngineBackend:
    name = "engine"

    def server(self, config: DtlsServerConfig) -> _ServerFactory:
        return _ServerFactory(config)

    def client(self, config: DtlsClientConfig) -> _ClientFactory:
        return _ClientFactory(config)
