"""The DTLS backend on our own sans-IO engine, ``lwm2m.tls`` (RFC 6347, RFC 4279, RFC 9146).

The engine's ``DtlsConnection`` already speaks in datagrams, takes the time as ``now`` and
says when it wants its timer (RFC 6347 §4.2.4); this module only fits it to the session
layer's ``Connection`` protocol (``backend.py``) and maps our configuration onto the
engine's ``ConnectionConfig``:

- TLS_PSK_WITH_AES_128_CCM_8 only (RFC 7925 §4.2, LwM2M's mandatory suite), with the
  extended master secret of RFC 7627 and PSKs of up to 64 bytes;
- the stateless cookie of RFC 6347 §4.2.1 under a secret that rotates every
  ``COOKIE_ROTATION`` seconds (time from the caller: a cookie made under the previous secret
  still counts, so a client in the middle of its exchange is not turned away). It is made
  and checked here on the hello's bytes, without parsing its extensions: a flood of
  ClientHellos costs a few slices and one HMAC each, and only a hello with a valid cookie
  reaches a ``DtlsConnection`` (made without a cookie checker of its own);
- Connection IDs (RFC 9146): a server gives ``limits.cid_length`` bytes whose first is
  ``limits.node_id``; a client offers the extension with an empty CID of its own (the server
  reaches it at whatever address its records come from) and then sends the server's CID in
  every record, so that a NAT rebinding costs no handshake.

Certificates are not in the engine yet: ``endpoint.default_backend`` keeps Mbed TLS for them.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from typing import Final

from lwm2m.errors import DtlsError, HandshakeError, SessionClosed
from lwm2m.tls.connection import (
    ApplicationData,
    ConnectionClosed,
    ConnectionConfig,
    DtlsConnection,
    DtlsRole,
    HandshakeComplete,
    HandshakeFailure,
)
from lwm2m.tls.messages import HandshakeType, HelloVerifyRequest, encode_handshake
from lwm2m.tls.record import DTLS_1_0, DTLS_1_2, HANDSHAKE, DtlsRecord
from lwm2m.transport.dtls.config import (
    CipherSuite,
    DtlsClientConfig,
    DtlsServerConfig,
    PeerIdentity,
    PskLookup,
    SessionLimits,
)

__all__ = ["ENGINE_SUITES", "HANDSHAKE_COST", "EngineBackend", "supports"]

# The suites the engine negotiates.
ENGINE_SUITES: Final = (CipherSuite.PSK_WITH_AES_128_CCM_8,)
# Bytes one server handshake in progress holds in the layer (the connection with its flight,
# transcript and reassembly state, the layer's entry; measured with tracemalloc over 2,000
# handshakes stalled after the ServerHello flight: 5.9 KiB each), rounded up. Mbed TLS's is
# 90 KiB: a 64 MiB budget holds 8,192 of ours against its 728.
HANDSHAKE_COST: Final = 8 << 10
COOKIE_ROTATION: Final = 300.0  # seconds between cookie secrets (RFC 6347 §4.2.1)
_COOKIE_SECRET: Final = 32
_COOKIE_LENGTH: Final = 32
# A ClientHello record (RFC 6347 §4.1, §4.2.2, §4.2.1): record header (13 bytes, the sequence
# number at 5..11), handshake header (12: type, length, message_seq at 4..6, fragment_offset,
# fragment_length), then client_version(2) random(32) session_id<0..32> cookie<0..255> ...
_RECORD_HEADER: Final = 13
_HANDSHAKE_HEADER: Final = 12
_SESSION_ID_AT: Final = _RECORD_HEADER + _HANDSHAKE_HEADER + 2 + 32


class _Cookies:
    """Stateless cookies (RFC 6347 §4.2.1) over the raw bytes of a ClientHello.

    The cookie is HMAC-SHA256(secret, client address ‖ the hello's body without its cookie
    field): the second hello repeats the first apart from the cookie, so it checks out only
    from the address the first came from. The previous secret stays valid for one rotation."""

    __slots__ = ("_previous", "_rotated", "_secret")

    def __init__(self) -> None:
        self._secret = os.urandom(_COOKIE_SECRET)
        self._previous: bytes | None = None
        self._rotated: float | None = None

    def rotate_if_due(self, now: float) -> None:
        if self._rotated is None:
            self._rotated = now
        elif now - self._rotated >= COOKIE_ROTATION:
            self._previous, self._secret = self._secret, os.urandom(_COOKIE_SECRET)
            self._rotated = now

    @staticmethod
    def _mac(secret: bytes, address: bytes, parameters: bytes) -> bytes:
        message = len(address).to_bytes(2, "big") + address + parameters
        return hmac.digest(secret, message, hashlib.sha256)[:_COOKIE_LENGTH]

    def answer(self, datagram: bytes, address: bytes) -> bytes | None:
        """None when ``datagram`` is one whole ClientHello with a valid cookie; else the
        HelloVerifyRequest to send (b"" for anything that is no whole ClientHello)."""
        n = len(datagram)
        if n <= _SESSION_ID_AT or datagram[_RECORD_HEADER] != HandshakeType.CLIENT_HELLO:
            return b""
        length = int.from_bytes(datagram[14:17], "big")
        end = _RECORD_HEADER + _HANDSHAKE_HEADER + length
        # Unfragmented (offset 0, fragment length = length), and within the datagram; the
        # cookie exchange needs the whole hello (RFC 6347 §4.2.1).
        if (
            datagram[19:22] != b"\0\0\0"
            or int.from_bytes(datagram[22:25], "big") != length
            or end > min(n, _RECORD_HEADER + int.from_bytes(datagram[11:13], "big"))
        ):
            return b""
        cookie_at = _SESSION_ID_AT + 1 + datagram[_SESSION_ID_AT]
        if cookie_at >= end or cookie_at + 1 + datagram[cookie_at] > end:
            return b""
        cookie_end = cookie_at + 1 + datagram[cookie_at]
        body = _RECORD_HEADER + _HANDSHAKE_HEADER
        parameters = datagram[body:cookie_at] + datagram[cookie_end:end]
        cookie = datagram[cookie_at + 1 : cookie_end]
        if len(cookie) == _COOKIE_LENGTH:
            ok = hmac.compare_digest(self._mac(self._secret, address, parameters), cookie)
            if self._previous is not None:
                # Both compared every time, so the time taken does not say which secret matched.
                ok |= hmac.compare_digest(self._mac(self._previous, address, parameters), cookie)
            if ok:
                return None
        verify = HelloVerifyRequest(self._mac(self._secret, address, parameters), server_version=DTLS_1_0)
        message_seq = int.from_bytes(datagram[17:19], "big")
        message = encode_handshake(HandshakeType.HELLO_VERIFY_REQUEST, message_seq, verify.to_bytes())
        # The HelloVerifyRequest takes the hello's record sequence number, so that the server
        # keeps no counter either (RFC 6347 §4.2.1).
        sequence = int.from_bytes(datagram[5:11], "big")
        return DtlsRecord(HANDSHAKE, DTLS_1_2, 0, sequence, message).encode()


_TIMED_OUT = "timed out"


def supports(suites: tuple[CipherSuite, ...], *, certificate: bool) -> bool:
    """True when the engine can serve a configuration with these suites: PSK, CCM_8 offered."""
    return not certificate and CipherSuite.PSK_WITH_AES_128_CCM_8 in suites


def _engine_config(limits: SessionLimits, **kw: object) -> ConnectionConfig:
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


class _Connection:
    """One engine connection behind the layer's ``Connection`` protocol."""

    __slots__ = ("_closed", "_conn", "_data", "_failure", "_identity", "established")

    def __init__(self, conn: DtlsConnection) -> None:
        self._conn = conn
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

    def _collect(self) -> None:
        conn = self._conn
        while (event := conn.next_event()) is not None:
            kind = type(event)
            if kind is ApplicationData:
                self._data.append(event.data)  # type: ignore[union-attr]
            elif kind is HandshakeComplete:
                self.established = True
                name = event.psk_identity.decode("utf-8", "replace")  # type: ignore[union-attr]
                self._identity = PeerIdentity("psk", name)
            elif kind is ConnectionClosed:
                self._closed = event.reason  # type: ignore[union-attr]
            elif kind is HandshakeFailure:
                reason = event.reason  # type: ignore[union-attr]
                # One name for a handshake that ran out of time, whichever timer ended it.
                self._failure = "handshake timed out" if _TIMED_OUT in reason else reason

    def feed(self, datagram: bytes, now: float) -> bool:
        newer = self._conn.receive_datagram(datagram, now)
        self._collect()
        return newer

    def feed_read(self, datagram: bytes, now: float) -> bytes | None:
        """``feed`` and then ``read`` in one call, for an established session's datagram of one
        application record: its plaintext, with no event object in between. None when it held
        anything else or nothing that authenticated; ``read()`` then gives what it held."""
        conn = self._conn
        if not self._data:
            plain = conn.receive_application_data(datagram, now)
            if plain is not None:
                return plain
        else:  # plaintext already waiting goes first
            conn.receive_datagram(datagram, now)
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
        return self._conn.get_timer()

    def handle_timer(self, now: float) -> None:
        self._conn.handle_timer(now)
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
        except DtlsError as exc:  # SessionClosed is one
            raise SessionClosed(str(exc)) from None

    def identity(self) -> PeerIdentity | None:
        return self._identity

    def cipher_suite(self) -> str | None:
        return CipherSuite.PSK_WITH_AES_128_CCM_8 if self.established else None

    def close(self) -> bytes:
        self._conn.close()
        return b"".join(self._conn.datagrams_to_send(0.0))

    def save(self) -> bytes | None:
        return None  # session export is not in the engine yet: an idle session ends


class _ServerFactory:
    handshake_cost = HANDSHAKE_COST

    def __init__(self, config: DtlsServerConfig) -> None:
        if config.psk_lookup is None or not supports(config.cipher_suites, certificate=False):
            raise ValueError("our DTLS engine serves PSK with TLS-PSK-WITH-AES-128-CCM-8 only")
        limits = config.limits
        self.cid_length = limits.cid_length
        self._cookies = _Cookies()
        self._config = _engine_config(
            limits,
            psk_lookup=_lookup(config.psk_lookup),
            cid_length=limits.cid_length,
            node_id=limits.node_id,
        )

    def accept(self, datagram: bytes, client_id: bytes, now: float) -> tuple[_Connection | None, bytes]:
        self._cookies.rotate_if_due(now)
        # Nothing is kept until the cookie checks out (RFC 6347 §4.2.1).
        verify = self._cookies.answer(datagram, client_id)
        if verify is not None:
            return None, verify
        conn = DtlsConnection(DtlsRole.SERVER, self._config, now, address=client_id)
        conn.receive_datagram(datagram, now)
        if conn.awaiting_hello or conn.closed:
            # A hello the engine could not parse (nothing to send), or one it refused (its alert).
            return None, b"".join(conn.datagrams_to_send(now))
        return _Connection(conn), b""

    def restore(self, state: bytes) -> _Connection:
        raise DtlsError("our DTLS engine cannot restore a saved session yet")


class _ClientFactory:
    handshake_cost = HANDSHAKE_COST

    def __init__(self, config: DtlsClientConfig) -> None:
        if config.psk is None or not supports(config.cipher_suites, certificate=False):
            raise ValueError("our DTLS engine connects with PSK and TLS-PSK-WITH-AES-128-CCM-8 only")
        self._config = _engine_config(
            config.limits,
            psk_identity=config.psk.identity.encode("utf-8"),
            psk=config.psk.key,
            cid_length=0,
        )

    def connect(self, now: float) -> _Connection:
        return _Connection(DtlsConnection(DtlsRole.CLIENT, self._config, now))

    def restore(self, state: bytes) -> _Connection:
        raise DtlsError("our DTLS engine cannot restore a saved session yet")


class EngineBackend:
    name = "engine"

    def server(self, config: DtlsServerConfig) -> _ServerFactory:
        return _ServerFactory(config)

    def client(self, config: DtlsClientConfig) -> _ClientFactory:
        return _ClientFactory(config)
