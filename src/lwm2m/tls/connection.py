"""A sans-IO DTLS 1.2 connection for TLS_PSK_WITH_AES_128_CCM_8 (0xC0A8), client and server.

It follows RFC 6347 (DTLS 1.2) over RFC 5246 (TLS 1.2) and RFC 4279 (PSK), with:

- the stateless cookie exchange of RFC 6347 §4.2.1 (:class:`CookieChecker`: an HMAC of the
  client's hello parameters and address under a secret the caller gives, with one previous
  secret still accepted so that the secret can rotate);
- the handshake of RFC 5246 §7.3 with the PSK messages of RFC 4279 §2: ServerHello, an
  optional ServerKeyExchange carrying the PSK identity hint, ServerHelloDone;
  ClientKeyExchange, ChangeCipherSpec, Finished; then the server's ChangeCipherSpec, Finished;
- the extended master secret of RFC 7627 §4 whenever the client offers it (and our client
  always offers it);
- epochs 0 and 1 (RFC 6347 §4.1), a replay window per read epoch (RFC 6347 §4.1.2.6); records
  that do not authenticate are dropped silently (RFC 6347 §4.1.2.7);
- flight retransmission on a timer that doubles from 1 s up to 60 s, and the last flight sent
  again when the peer's previous flight is seen again (RFC 6347 §4.2.4);
- renegotiation refused with a no_renegotiation warning (RFC 5246 §7.2.2, §7.4.1.1);
- alerts and close_notify (RFC 5246 §7.2);
- the Connection ID of RFC 9146: the client offers the ``connection_id`` extension (§3) with
  the CID it wants to receive, the server answers with its own when offered; once keys are in
  use (epoch 1) the records to a peer that gave a non-empty CID are ``tls12_cid`` records
  (§4, the additional data of §5), and the records from the peer must carry our CID.

Like the CoAP endpoint it does no I/O and reads no clock: the caller feeds datagrams with
:meth:`DtlsConnection.receive_datagram`, sends what :meth:`DtlsConnection.datagrams_to_send`
gives, calls :meth:`DtlsConnection.handle_timer` at :meth:`DtlsConnection.get_timer`, and takes
events from :meth:`DtlsConnection.next_event`.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import os
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Final

from lwm2m.errors import (
    BadRecordMac,
    DtlsError,
    HandshakeAborted,
    HandshakeError,
    ProtocolError,
    SecurityError,
    SessionClosed,
)
from lwm2m.tls.messages import (
    MAX_PSK_IDENTITY_LENGTH,
    ClientHello,
    ClientKeyExchange,
    ConnectionIdExtension,
    ExtendedMasterSecretExtension,
    Extension,
    ExtensionType,
    Finished,
    HandshakeHeader,
    HandshakeType,
    HelloVerifyRequest,
    ServerHello,
    ServerHelloDone,
    ServerKeyExchange,
    UnknownExtension,
    encode_handshake,
    parse_handshake_body,
    split_handshake_fragments,
)
from lwm2m.tls.prf import (
    MAX_PSK_LENGTH,
    check_finished,
    extended_master_secret,
    key_block,
    master_secret,
    psk_premaster_secret,
    verify_data,
)
from lwm2m.tls.protection import AES_128_CCM_8, AeadProtection, NullProtection
from lwm2m.tls.reassembly import HandshakeReassembler, ReassembledMessage, fragment_handshake
from lwm2m.tls.record import (
    ALERT,
    APPLICATION_DATA,
    CHANGE_CIPHER_SPEC,
    DTLS_1_0,
    DTLS_1_2,
    HANDSHAKE,
    MAX_PLAINTEXT,
    TLS12_CID,
    DtlsRecord,
    parse_datagram,
)
from lwm2m.tls.replay import ReplayWindow

__all__ = [
    "ApplicationData",
    "ConnectionClosed",
    "ConnectionConfig",
    "CookieChecker",
    "DtlsConnection",
    "DtlsEvent",
    "DtlsRole",
    "HandshakeComplete",
    "HandshakeFailure",
]

TLS_PSK_WITH_AES_128_CCM_8: Final = 0xC0A8
# RFC 5746 §3.3: a client says it knows secure renegotiation with this pseudo cipher suite; the
# server answers with an empty renegotiation_info (its data: a zero-length vector). We never
# renegotiate (§4.2.8 of RFC 6347 aside), but OpenSSL and others refuse servers that do not say so.
TLS_EMPTY_RENEGOTIATION_INFO_SCSV: Final = 0x00FF
EMPTY_RENEGOTIATION_INFO: Final = UnknownExtension(ExtensionType.RENEGOTIATION_INFO, b"\x00")

# AlertLevel and AlertDescription (RFC 5246 §7.2, RFC 4279 §2 for unknown_psk_identity).
WARNING: Final = 1
FATAL: Final = 2
CLOSE_NOTIFY: Final = 0
UNEXPECTED_MESSAGE: Final = 10
BAD_RECORD_MAC: Final = 20
HANDSHAKE_FAILURE: Final = 40
ILLEGAL_PARAMETER: Final = 47
DECODE_ERROR: Final = 50
DECRYPT_ERROR: Final = 51
INTERNAL_ERROR: Final = 80
NO_RENEGOTIATION: Final = 100
UNSUPPORTED_EXTENSION: Final = 110
UNKNOWN_PSK_IDENTITY: Final = 115

RECORD_OVERHEAD: Final = 13 + 8 + 8  # header, explicit nonce, CCM_8 tag
DEFAULT_CID_LENGTH: Final = 6
MAX_CID_LENGTH: Final = 32  # ours; RFC 9146 §3 allows 255, but every byte is in every record
MIN_COOKIE_SECRET: Final = 16
COOKIE_LENGTH: Final = 32
# Records of epoch 1 that arrive before the keys to read them (reordering, RFC 6347 §4.1 lets
# a receiver buffer them); bounded so that a flood costs nothing.
MAX_EARLY_RECORDS: Final = 8


class DtlsRole(enum.StrEnum):
    """Which side of the handshake a connection plays."""

    CLIENT = "client"
    SERVER = "server"


class CookieChecker:
    """Stateless cookies for HelloVerifyRequest (RFC 6347 §4.2.1).

    The cookie is HMAC-SHA256(secret, client address ‖ ClientHello without its cookie): the
    server keeps no state for a client until it proves it receives at its address, so a
    spoofed source address gets one small HelloVerifyRequest and nothing else. One checker
    serves every connection of a server. :meth:`rotate` installs a new secret; cookies made
    under the previous one stay valid until the next rotation, so a client in the middle of
    its exchange is not turned away.
    """

    __slots__ = ("_previous", "_secret")

    def __init__(self, secret: bytes, previous: bytes | None = None) -> None:
        for value in (secret, previous):
            if value is not None and len(value) < MIN_COOKIE_SECRET:
                raise DtlsError(f"a cookie secret needs at least {MIN_COOKIE_SECRET} bytes")
        self._secret = bytes(secret)
        self._previous = bytes(previous) if previous is not None else None

    def rotate(self, secret: bytes) -> None:
        """Make ``secret`` the current secret; the current one becomes the previous one."""
        if len(secret) < MIN_COOKIE_SECRET:
            raise DtlsError(f"a cookie secret needs at least {MIN_COOKIE_SECRET} bytes")
        self._previous, self._secret = self._secret, bytes(secret)

    @staticmethod
    def _mac(secret: bytes, address: bytes, hello: ClientHello) -> bytes:
        # The cookie field is left out: the second hello repeats the first apart from it.
        parameters = replace(hello, cookie=b"").to_bytes()
        message = len(address).to_bytes(2, "big") + address + parameters
        return hmac.digest(secret, message, hashlib.sha256)[:COOKIE_LENGTH]

    def cookie(self, address: bytes, hello: ClientHello) -> bytes:
        """The cookie for this client address and hello, under the current secret."""
        return self._mac(self._secret, address, hello)

    def check(self, address: bytes, hello: ClientHello) -> bool:
        """True if the hello carries a cookie made for this address and these parameters."""
        if len(hello.cookie) != COOKIE_LENGTH:
            return False
        ok = hmac.compare_digest(self._mac(self._secret, address, hello), hello.cookie)
        if self._previous is not None:
            # Both compared every time, so the time taken does not say which secret matched.
            ok |= hmac.compare_digest(self._mac(self._previous, address, hello), hello.cookie)
        return ok


@dataclass(frozen=True, slots=True)
class ConnectionConfig:
    """What a connection needs; one server config may serve many connections.

    Client: ``psk_identity`` and ``psk``. Server: ``psk_lookup`` (identity -> PSK, or None
    for an identity it does not know), optionally ``psk_identity_hint`` (sent in a
    ServerKeyExchange when not None) and ``cookie_checker`` (None: no cookie exchange, for a
    caller that checked the cookie before making the connection).

    Connection ID (RFC 9146): with ``connection_id`` (the default) the client offers the
    extension and the server answers it. The CID a side asks to receive has ``cid_length``
    bytes (0: it sends CIDs but wants none); a server CID starts with the byte ``node_id``, so
    that a cluster can route a record to the node that holds its session, the rest is random.
    """

    psk_identity: bytes = b""
    psk: bytes = b""
    psk_lookup: Callable[[bytes], bytes | None] | None = None
    psk_identity_hint: bytes | None = None
    cookie_checker: CookieChecker | None = None
    max_datagram_size: int = 1152
    initial_timeout: float = 1.0  # RFC 6347 §4.2.4.1
    max_timeout: float = 60.0
    random: Callable[[int], bytes] = field(default=os.urandom)
    connection_id: bool = True
    cid_length: int = DEFAULT_CID_LENGTH
    node_id: int = 0


@dataclass(frozen=True, slots=True)
class HandshakeComplete:
    """The handshake finished; ``psk_identity`` is the identity it used (the client's)."""

    psk_identity: bytes


@dataclass(frozen=True, slots=True)
class ApplicationData:
    """Authenticated application data from the peer."""

    data: bytes


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """The peer closed the connection (close_notify) or ended it with a fatal alert."""

    reason: str


@dataclass(frozen=True, slots=True)
class HandshakeFailure:
    """The handshake failed; ``reason`` says why. No application data passes afterwards."""

    reason: str


DtlsEvent = HandshakeComplete | ApplicationData | ConnectionClosed | HandshakeFailure


class _State(enum.Enum):
    WAIT_CLIENT_HELLO = enum.auto()  # server, stateless until a valid cookie
    WAIT_SERVER_HELLO = enum.auto()  # client
    WAIT_SERVER_HELLO_DONE = enum.auto()  # client
    WAIT_CLIENT_KEY_EXCHANGE = enum.auto()  # server
    WAIT_FINISHED = enum.auto()  # both
    ESTABLISHED = enum.auto()
    CLOSED = enum.auto()
    FAILED = enum.auto()


# A message of a flight: the epoch it is sent in, its content type and its plaintext. A flight
# is kept as plaintext so that every retransmission gets fresh record sequence numbers.
_FlightPart = tuple[int, int, bytes]


class DtlsConnection:
    """One DTLS 1.2 PSK connection with one peer, client or server, without I/O."""

    def __init__(self, role: DtlsRole, config: ConnectionConfig, now: float, *, address: bytes = b"") -> None:
        self.role = DtlsRole(role)
        self.config = config
        self.address = address
        if self.role is DtlsRole.CLIENT:
            # Checked here so that a bad configuration fails at once, not inside a datagram.
            if not 1 <= len(config.psk_identity) <= MAX_PSK_IDENTITY_LENGTH:
                raise DtlsError(f"a PSK identity has 1..{MAX_PSK_IDENTITY_LENGTH} bytes")
            if not 1 <= len(config.psk) <= MAX_PSK_LENGTH:
                raise DtlsError(f"a PSK has 1..{MAX_PSK_LENGTH} bytes")
        elif config.psk_lookup is None:
            raise DtlsError("a DTLS PSK server needs psk_lookup")
        if not 0 <= config.cid_length <= MAX_CID_LENGTH:
            raise DtlsError(f"a connection ID has 0..{MAX_CID_LENGTH} bytes, not {config.cid_length}")
        if not 0 <= config.node_id <= 0xFF:
            raise DtlsError(f"node_id {config.node_id} does not fit in the first byte of a connection ID")
        if config.max_datagram_size < RECORD_OVERHEAD + 64:
            raise DtlsError(f"max_datagram_size {config.max_datagram_size} is too small for a handshake")
        self._events: deque[DtlsEvent] = deque()
        self._outbox: list[bytes] = []
        self._write_seq = [0, 0]  # per epoch
        self._write_epoch = 0
        self._write_protection: AeadProtection | None = None
        self._read_protection: AeadProtection | None = None
        self._windows = [ReplayWindow(0), ReplayWindow(1)]
        self._early: list[DtlsRecord] = []
        self._early_data: list[bytes] = []
        self._reassembler = HandshakeReassembler()
        self._transcript: list[bytes] = []
        self._send_message_seq = 0
        self._flight: list[_FlightPart] = []
        # The peer's messages before this message_seq are those our last flight answered: seeing
        # one again means that flight was lost. Messages at or after it are the peer's current
        # flight, and a repeat of those asks for nothing (it would start a ping-pong).
        self._peer_flight_end = 0
        self._peer_repeated = False
        self._timer: float | None = None
        self._timeout = config.initial_timeout
        self._client_random = b""
        self._server_random = b""
        self._cookie = b""
        self._use_ems = False
        self._master = b""
        self._identity = b""
        self._peer_hint = b""
        # RFC 9146: the CID we receive (records from the peer carry it) and the one we send;
        # only meaningful once ``_cid_negotiated``.
        self._cid_negotiated = False
        self._own_cid = b""
        self._peer_cid = b""
        # Set while a datagram is processed: a record of epoch 1 authenticated with a sequence
        # number above the highest accepted before (RFC 9146 §6).
        self._advanced = False
        if self.role is DtlsRole.CLIENT:
            self._state = _State.WAIT_SERVER_HELLO
            self._client_random = config.random(32)
            self._identity = config.psk_identity
            if config.connection_id:
                self._own_cid = config.random(config.cid_length) if config.cid_length else b""
            self._send_client_hello(now)
        else:
            self._state = _State.WAIT_CLIENT_HELLO

    # --- public surface ----------------------------------------------------------------------

    @property
    def established(self) -> bool:
        """True once the handshake completed and until the connection closes."""
        return self._state is _State.ESTABLISHED

    @property
    def psk_identity_hint(self) -> bytes:
        """The PSK identity hint the server sent in its ServerKeyExchange (client side; empty
        when it sent none, RFC 4279 §2)."""
        return self._peer_hint

    @property
    def peer_identity(self) -> bytes | None:
        """The PSK identity of the established session (the client's), else None."""
        return self._identity if self._state is _State.ESTABLISHED else None

    @property
    def cid_negotiated(self) -> bool:
        """True once both sides agreed to use the connection_id extension (RFC 9146 §3)."""
        return self._cid_negotiated

    @property
    def own_cid(self) -> bytes:
        """The CID the peer puts in its records to us (empty: none, or not negotiated)."""
        return self._own_cid if self._cid_negotiated else b""

    @property
    def peer_cid(self) -> bytes:
        """The CID we put in our records to the peer (empty: plain records)."""
        return self._peer_cid if self._cid_negotiated else b""

    @property
    def awaiting_hello(self) -> bool:
        """True for a server that has not yet taken a ClientHello (with a valid cookie): it
        keeps no state for the peer yet (RFC 6347 §4.2.1)."""
        return self._state is _State.WAIT_CLIENT_HELLO

    @property
    def closed(self) -> bool:
        """True once the connection closed or its handshake failed: it takes nothing more."""
        return self._state in (_State.CLOSED, _State.FAILED)

    def next_event(self) -> DtlsEvent | None:
        """The next event, or None when there is none."""
        return self._events.popleft() if self._events else None

    def datagrams_to_send(self, now: float) -> list[bytes]:
        """The datagrams to send now, each one whole."""
        out, self._outbox = self._outbox, []
        return out

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` should be called next (retransmission), or None."""
        return self._timer

    def handle_timer(self, now: float) -> None:
        """Retransmit the last flight when its timer expired (RFC 6347 §4.2.4), doubling the
        timeout; give up once a retransmission at the longest timeout went unanswered."""
        if self._timer is None or now < self._timer:
            return
        if self._timeout >= self.config.max_timeout:
            self._fail(
                HandshakeAborted(HANDSHAKE_FAILURE, "the handshake timed out: no answer from the peer")
            )
            return
        self._timeout = min(self._timeout * 2, self.config.max_timeout)
        self._send_flight()
        self._timer = now + self._timeout

    def send_application_data(self, data: bytes) -> None:
        """Send ``data`` in one protected record (epoch 1)."""
        if self._state is not _State.ESTABLISHED:
            if self._state in (_State.CLOSED, _State.FAILED):
                raise SessionClosed("the DTLS connection is closed")
            raise DtlsError("the DTLS handshake has not completed")
        if len(data) > MAX_PLAINTEXT:
            raise DtlsError(f"application data of {len(data)} bytes does not fit a record")
        self._outbox.append(self._record(1, APPLICATION_DATA, bytes(data)))

    def close(self) -> None:
        """Send close_notify (RFC 5246 §7.2.1) and stop; nothing is received afterwards."""
        if self._state in (_State.CLOSED, _State.FAILED):
            return
        self._send_alert(WARNING, CLOSE_NOTIFY)
        self._state = _State.CLOSED
        self._timer = None

    def receive_datagram(self, data: bytes, now: float) -> bool:
        """Process one datagram from the peer. Malformed or unauthenticated input is dropped
        (RFC 6347 §4.1.2.7): a datagram alone never raises.

        Returns True when a record of it authenticated under the connection's keys with a
        sequence number above every one accepted before: the test of RFC 9146 §6 for taking a
        new peer address of a CID connection (a replay or an older record gives False).
        """
        self._advanced = False
        if self._state in (_State.CLOSED, _State.FAILED):
            return False
        try:
            records = parse_datagram(data, len(self.own_cid))
        except ProtocolError:
            return False  # not DTLS, or truncated: nothing in it can be trusted
        self._peer_repeated = False
        self._receive_records(records, now)
        return self._advanced

    def _receive_records(self, records: list[DtlsRecord], now: float) -> None:
        try:
            for record in records:
                self._receive_record(record, now)
                if self._state in (_State.CLOSED, _State.FAILED):
                    return
            if self._peer_repeated and self._flight:
                # The peer sent its previous flight again: ours was lost (RFC 6347 §4.2.4).
                self._send_flight()
        except HandshakeAborted as failure:
            self._fail(failure)

    # --- records ---------------------------------------------------------------------------

    def _receive_record(self, record: DtlsRecord, now: float) -> None:
        if record.content_type == TLS12_CID:
            # Only with keys, and only with our own CID (RFC 9146 §4); the parser took as
            # many bytes as our CID has, so a different CID of that length ends here.
            if record.epoch == 0 or not hmac.compare_digest(record.cid, self.own_cid):
                return
        elif record.epoch != 0 and self.own_cid:
            return  # RFC 9146 §3: once keys are in use, records to us carry our CID
        if record.epoch == 0:
            protection: AeadProtection | NullProtection = NullProtection()
        elif record.epoch == 1:
            if self._read_protection is None:
                if len(self._early) < MAX_EARLY_RECORDS:
                    self._early.append(record)
                return
            protection = self._read_protection
        else:
            return
        window = self._windows[record.epoch]
        if not window.check(record.sequence):
            return  # a replay, or too old
        try:
            plain = protection.decrypt(record)
        except BadRecordMac:
            # A CID record hides its real type (RFC 9146 §4): it may be the Finished too.
            if record.content_type in (HANDSHAKE, TLS12_CID) and self._state is _State.WAIT_FINISHED:
                # The peer's Finished record does not open under our keys: the only way for
                # a peer that completed its side is a different PSK. Failing now, rather than
                # timing out, tells the caller why.
                raise HandshakeAborted(
                    BAD_RECORD_MAC, "the peer's Finished does not authenticate: a wrong PSK"
                ) from None
            return
        except (ProtocolError, SecurityError):
            return
        if record.epoch == 1 and (window.highest is None or record.sequence > window.highest):
            self._advanced = True
        window.accept(record.sequence)
        if plain.content_type == HANDSHAKE:
            self._receive_handshake(record, plain.fragment, now)
        elif plain.content_type == CHANGE_CIPHER_SPEC:
            pass  # epoch 1 records say the peer switched; the CCS itself carries nothing more
        elif plain.content_type == ALERT:
            self._receive_alert(record.epoch, plain.fragment)
        elif plain.content_type == APPLICATION_DATA and record.epoch == 1:
            if self._state is _State.ESTABLISHED:
                self._events.append(ApplicationData(plain.fragment))
            elif self._state is _State.WAIT_FINISHED and len(self._early_data) < MAX_EARLY_RECORDS:
                # The server sends data right after its Finished; reordered, the data comes
                # first. It authenticated under the new keys, so it is kept until Finished
                # checks out, and dropped if it never does.
                self._early_data.append(plain.fragment)

    def _record(self, epoch: int, content_type: int, payload: bytes) -> bytes:
        sequence = self._write_seq[epoch]
        self._write_seq[epoch] += 1
        record = DtlsRecord(content_type, DTLS_1_2, epoch, sequence, payload)
        if epoch == 1:
            # RFC 9146 §3: once encryption is on, a peer that gave a CID gets tls12_cid records.
            record = replace(record, cid=self.peer_cid)
            assert self._write_protection is not None
            record = self._write_protection.encrypt(record)
        return record.encode()

    def _pack(self, records: list[bytes]) -> None:
        # Several records share a datagram as long as it stays within the size limit
        # (RFC 6347 §4.1.1).
        current = b""
        for record in records:
            if current and len(current) + len(record) > self.config.max_datagram_size:
                self._outbox.append(current)
                current = b""
            current += record
        if current:
            self._outbox.append(current)

    def _send_flight(self) -> None:
        self._pack(
            [self._record(epoch, content_type, payload) for epoch, content_type, payload in self._flight]
        )

    def _start_flight(self, parts: list[_FlightPart], now: float, *, timer: bool) -> None:
        self._flight = parts
        self._peer_flight_end = self._reassembler.next_seq
        self._timeout = self.config.initial_timeout
        self._send_flight()
        self._timer = now + self._timeout if timer else None

    def _handshake_parts(self, epoch: int, message: bytes, msg_type: int) -> list[_FlightPart]:
        # The transcript holds the message unfragmented (RFC 6347 §4.2.6); the wire gets it in
        # fragments that fit a datagram.
        seq = self._send_message_seq
        self._send_message_seq += 1
        self._transcript.append(encode_handshake(msg_type, seq, message))
        room = self.config.max_datagram_size - RECORD_OVERHEAD
        if epoch == 1 and self.peer_cid:
            room -= len(self.peer_cid) + 1  # the CID in the header, the real type inside (RFC 9146 §4)
        return [(epoch, HANDSHAKE, fragment) for fragment in fragment_handshake(msg_type, seq, message, room)]

    def _send_alert(self, level: int, description: int) -> None:
        self._outbox.append(self._record(self._write_epoch, ALERT, bytes((level, description))))

    def _fail(self, failure: HandshakeAborted) -> None:
        self._send_alert(FATAL, failure.alert)
        self._state = _State.FAILED
        self._timer = None
        self._events.append(HandshakeFailure(failure.reason))

    # --- alerts ----------------------------------------------------------------------------

    def _receive_alert(self, epoch: int, payload: bytes) -> None:
        if len(payload) != 2:
            return
        level, description = payload
        if self._state is _State.ESTABLISHED:
            if epoch != 1:
                return  # an unprotected alert could come from anyone once keys are in use
            if description == CLOSE_NOTIFY:
                self._send_alert(WARNING, CLOSE_NOTIFY)  # RFC 5246 §7.2.1: answer it
                self._state = _State.CLOSED
                self._events.append(ConnectionClosed("close_notify"))
            elif level == FATAL:
                self._state = _State.CLOSED
                self._events.append(ConnectionClosed(f"fatal alert {description} from the peer"))
            return
        # During the handshake alerts come unprotected (epoch 0), so one could be forged; but so
        # could any handshake message of epoch 0, and a peer that really gave up must not be
        # waited for through a minute of retransmissions. The caller may start a new handshake.
        if level == FATAL or description == CLOSE_NOTIFY:
            self._state = _State.FAILED
            self._timer = None
            self._events.append(HandshakeFailure(f"the peer ended the handshake with alert {description}"))

    # --- handshake -------------------------------------------------------------------------

    def _receive_handshake(self, record: DtlsRecord, payload: bytes, now: float) -> None:
        try:
            fragments = split_handshake_fragments(payload)
        except ProtocolError:
            return
        for header, body in fragments:
            if self._state is _State.WAIT_CLIENT_HELLO:
                self._stateless_client_hello(record, header, body, now)
                continue
            if (
                self._state is _State.ESTABLISHED
                and record.epoch == 1
                and header.msg_type in (HandshakeType.CLIENT_HELLO, HandshakeType.HELLO_REQUEST)
            ):
                # Renegotiation is refused (RFC 5246 §7.4.1.1, §7.2.2).
                self._send_alert(WARNING, NO_RENEGOTIATION)
                continue
            # Finished is the only handshake message of epoch 1 in this handshake.
            if (header.msg_type == HandshakeType.FINISHED) != (record.epoch == 1):
                continue
            if header.message_seq < self._peer_flight_end:
                self._peer_repeated = True
            try:
                messages = self._reassembler.add(header, body)
            except ProtocolError:
                return
            for message in messages:
                self._handle_message(message, now)
                if self._state in (_State.CLOSED, _State.FAILED):
                    return

    def _parse(self, message: ReassembledMessage) -> object:
        try:
            return parse_handshake_body(message.msg_type, message.body)
        except ProtocolError as error:
            raise HandshakeAborted(DECODE_ERROR, f"a malformed handshake message: {error}") from None

    def _handle_message(self, message: ReassembledMessage, now: float) -> None:
        state = self._state
        msg_type = message.msg_type
        if self.role is DtlsRole.CLIENT:
            if state is _State.WAIT_SERVER_HELLO and msg_type == HandshakeType.HELLO_VERIFY_REQUEST:
                verify = self._parse(message)
                assert isinstance(verify, HelloVerifyRequest)
                self._cookie = verify.cookie
                self._send_client_hello(now)
            elif state is _State.WAIT_SERVER_HELLO and msg_type == HandshakeType.SERVER_HELLO:
                self._server_hello(message)
            elif state is _State.WAIT_SERVER_HELLO_DONE and msg_type == HandshakeType.SERVER_KEY_EXCHANGE:
                key_exchange = self._parse(message)
                assert isinstance(key_exchange, ServerKeyExchange)
                self._peer_hint = key_exchange.psk_identity_hint
                self._transcript.append(message.to_bytes())
            elif state is _State.WAIT_SERVER_HELLO_DONE and msg_type == HandshakeType.SERVER_HELLO_DONE:
                self._parse(message)
                self._transcript.append(message.to_bytes())
                self._client_key_exchange(now)
            elif state is _State.WAIT_FINISHED and msg_type == HandshakeType.FINISHED:
                self._peer_finished(message, b"server finished", now)
            elif state is _State.ESTABLISHED:
                return  # nothing more is expected
            else:
                raise HandshakeAborted(
                    UNEXPECTED_MESSAGE, f"unexpected handshake message {msg_type} in {state.name}"
                )
            return
        if state is _State.WAIT_CLIENT_KEY_EXCHANGE and msg_type == HandshakeType.CLIENT_KEY_EXCHANGE:
            self._server_key_schedule(message, now)
        elif state is _State.WAIT_FINISHED and msg_type == HandshakeType.FINISHED:
            self._peer_finished(message, b"client finished", now)
        elif state is _State.ESTABLISHED:
            return
        else:
            raise HandshakeAborted(
                UNEXPECTED_MESSAGE, f"unexpected handshake message {msg_type} in {state.name}"
            )

    # --- client ----------------------------------------------------------------------------

    def _send_client_hello(self, now: float) -> None:
        hello = ClientHello(
            random=self._client_random,
            cipher_suites=(TLS_PSK_WITH_AES_128_CCM_8, TLS_EMPTY_RENEGOTIATION_INFO_SCSV),
            cookie=self._cookie,
            extensions=self._client_extensions(),
        )
        # RFC 6347 §4.2.6: the transcript starts at the hello that the server answers with
        # its ServerHello, so the hello that carries the cookie starts it afresh.
        self._transcript = []
        self._start_flight(
            self._handshake_parts(0, hello.to_bytes(), HandshakeType.CLIENT_HELLO), now, timer=True
        )

    def _client_extensions(self) -> tuple[Extension, ...]:
        if not self.config.connection_id:
            return (ExtendedMasterSecretExtension(),)
        return (ExtendedMasterSecretExtension(), ConnectionIdExtension(self._own_cid))

    def _server_hello(self, message: ReassembledMessage) -> None:
        hello = self._parse(message)
        assert isinstance(hello, ServerHello)
        if hello.cipher_suite != TLS_PSK_WITH_AES_128_CCM_8 or hello.compression_method != 0:
            raise HandshakeAborted(
                ILLEGAL_PARAMETER, f"the server chose cipher suite {hello.cipher_suite:#06x}"
            )
        if hello.server_version != DTLS_1_2:
            raise HandshakeAborted(HANDSHAKE_FAILURE, f"the server chose version {hello.server_version:#06x}")
        renegotiation = hello.extension(ExtensionType.RENEGOTIATION_INFO)
        if renegotiation is not None and renegotiation.data() != EMPTY_RENEGOTIATION_INFO.raw:
            # RFC 5746 §3.4: on an initial handshake the server's renegotiated_connection is empty.
            raise HandshakeAborted(HANDSHAKE_FAILURE, "a renegotiation_info that is not empty")
        self._server_random = hello.random
        self._use_ems = hello.extension(ExtensionType.EXTENDED_MASTER_SECRET) is not None
        answer = hello.extension(ExtensionType.CONNECTION_ID)
        if answer is not None:
            if not self.config.connection_id:
                # RFC 5246 §7.4.1.4: a server must not answer an extension that was not offered.
                raise HandshakeAborted(UNSUPPORTED_EXTENSION, "the server answered connection_id unasked")
            if not isinstance(answer, ConnectionIdExtension):
                raise HandshakeAborted(DECODE_ERROR, "a malformed connection_id extension")
            self._peer_cid = answer.cid
            self._cid_negotiated = True
        self._transcript.append(message.to_bytes())
        self._state = _State.WAIT_SERVER_HELLO_DONE

    def _client_key_exchange(self, now: float) -> None:
        parts = self._handshake_parts(
            0, ClientKeyExchange(self.config.psk_identity).to_bytes(), HandshakeType.CLIENT_KEY_EXCHANGE
        )
        self._install_keys(self.config.psk)
        parts.append((0, CHANGE_CIPHER_SPEC, b"\x01"))
        parts += self._finished_parts(b"client finished")
        self._state = _State.WAIT_FINISHED
        self._start_flight(parts, now, timer=True)
        self._drain_early(now)

    # --- server ----------------------------------------------------------------------------

    def _stateless_client_hello(
        self, record: DtlsRecord, header: HandshakeHeader, body: bytes, now: float
    ) -> None:
        # Until the cookie checks out nothing is kept (RFC 6347 §4.2.1); a fragmented first
        # hello is ignored, as the cookie exchange needs the whole of it.
        if header.msg_type != HandshakeType.CLIENT_HELLO or header.fragment_length != header.length:
            return
        try:
            hello = ClientHello.parse(body)
        except ProtocolError:
            return
        checker = self.config.cookie_checker
        if checker is not None and not checker.check(self.address, hello):
            verify = HelloVerifyRequest(checker.cookie(self.address, hello), server_version=DTLS_1_0)
            message = encode_handshake(
                HandshakeType.HELLO_VERIFY_REQUEST, header.message_seq, verify.to_bytes()
            )
            # RFC 6347 §4.2.1: the HelloVerifyRequest takes the record sequence number of the
            # ClientHello, so that the server keeps no counter either.
            self._outbox.append(DtlsRecord(HANDSHAKE, DTLS_1_2, 0, record.sequence, message).encode())
            return
        if TLS_PSK_WITH_AES_128_CCM_8 not in hello.cipher_suites or 0 not in hello.compression_methods:
            raise HandshakeAborted(
                HANDSHAKE_FAILURE, "the client offers no cipher suite in common (0xC0A8 is needed)"
            )
        if hello.client_version > DTLS_1_2:
            # DTLS versions count down (0xFEFF is 1.0, 0xFEFD 1.2): a larger number is a client
            # whose best version is older than 1.2.
            raise HandshakeAborted(
                HANDSHAKE_FAILURE, f"the client offers version {hello.client_version:#06x}"
            )
        self._client_random = hello.random
        self._use_ems = hello.extension(ExtensionType.EXTENDED_MASTER_SECRET) is not None
        self._transcript = [encode_handshake(HandshakeType.CLIENT_HELLO, header.message_seq, body)]
        self._reassembler = HandshakeReassembler(next_seq=header.message_seq + 1)
        # The server's message_seq follows the client's (RFC 6347 §4.2.2), and its record
        # sequence numbers continue from the hello's, as after a HelloVerifyRequest.
        self._send_message_seq = header.message_seq
        self._write_seq[0] = max(self._write_seq[0], record.sequence)
        self._server_random = self.config.random(32)
        extensions: tuple[Extension, ...] = (ExtendedMasterSecretExtension(),) if self._use_ems else ()
        renegotiation = hello.extension(ExtensionType.RENEGOTIATION_INFO)
        if renegotiation is not None and renegotiation.data() != EMPTY_RENEGOTIATION_INFO.raw:
            raise HandshakeAborted(
                HANDSHAKE_FAILURE, "a renegotiation_info that is not empty"
            )  # RFC 5746 §3.6
        if renegotiation is not None or TLS_EMPTY_RENEGOTIATION_INFO_SCSV in hello.cipher_suites:
            extensions += (EMPTY_RENEGOTIATION_INFO,)
        offer = hello.extension(ExtensionType.CONNECTION_ID)
        if self.config.connection_id and isinstance(offer, ConnectionIdExtension):
            # RFC 9146 §3: answered only when offered; our CID leads with the node id.
            length = self.config.cid_length
            self._own_cid = bytes((self.config.node_id,)) + self.config.random(length - 1) if length else b""
            self._peer_cid = offer.cid
            self._cid_negotiated = True
            extensions += (ConnectionIdExtension(self._own_cid),)
        server_hello = ServerHello(self._server_random, TLS_PSK_WITH_AES_128_CCM_8, extensions=extensions)
        parts = self._handshake_parts(0, server_hello.to_bytes(), HandshakeType.SERVER_HELLO)
        if self.config.psk_identity_hint is not None:
            hint = ServerKeyExchange(self.config.psk_identity_hint).to_bytes()
            parts += self._handshake_parts(0, hint, HandshakeType.SERVER_KEY_EXCHANGE)
        parts += self._handshake_parts(0, ServerHelloDone().to_bytes(), HandshakeType.SERVER_HELLO_DONE)
        self._state = _State.WAIT_CLIENT_KEY_EXCHANGE
        self._start_flight(parts, now, timer=True)

    def _server_key_schedule(self, message: ReassembledMessage, now: float) -> None:
        key_exchange = self._parse(message)
        assert isinstance(key_exchange, ClientKeyExchange)
        assert self.config.psk_lookup is not None
        psk = self.config.psk_lookup(key_exchange.psk_identity)
        if psk is None:
            raise HandshakeAborted(
                UNKNOWN_PSK_IDENTITY, f"unknown PSK identity {key_exchange.psk_identity!r}"
            )
        self._identity = key_exchange.psk_identity
        self._transcript.append(message.to_bytes())
        self._install_keys(psk)
        self._state = _State.WAIT_FINISHED
        # The server's flight is answered: no more retransmissions until its last flight.
        self._timer = None
        self._drain_early(now)

    # --- both ------------------------------------------------------------------------------

    def _handshake_hash(self) -> bytes:
        return hashlib.sha256(b"".join(self._transcript)).digest()

    def _install_keys(self, psk: bytes) -> None:
        try:
            premaster = psk_premaster_secret(psk)
        except SecurityError as error:
            raise HandshakeAborted(INTERNAL_ERROR, f"unusable PSK: {error}") from None
        if self._use_ems:
            # RFC 7627 §4: the session hash covers the messages up to the ClientKeyExchange.
            self._master = extended_master_secret(premaster, self._handshake_hash())
        else:
            self._master = master_secret(premaster, self._client_random, self._server_random)
        keys = key_block(self._master, self._client_random, self._server_random)
        client = AeadProtection(AES_128_CCM_8, keys.client_write_key, keys.client_write_iv)
        server = AeadProtection(AES_128_CCM_8, keys.server_write_key, keys.server_write_iv)
        if self.role is DtlsRole.CLIENT:
            self._write_protection, self._read_protection = client, server
        else:
            self._write_protection, self._read_protection = server, client

    def _finished_parts(self, label: bytes) -> list[_FlightPart]:
        finished = Finished(verify_data(self._master, label, self._handshake_hash()))
        self._write_epoch = 1
        return self._handshake_parts(1, finished.to_bytes(), HandshakeType.FINISHED)

    def _peer_finished(self, message: ReassembledMessage, label: bytes, now: float) -> None:
        finished = self._parse(message)
        assert isinstance(finished, Finished)
        try:
            check_finished(self._master, label, self._handshake_hash(), finished.verify_data)
        except HandshakeError as error:
            raise HandshakeAborted(DECRYPT_ERROR, str(error)) from None
        self._transcript.append(message.to_bytes())
        if self.role is DtlsRole.SERVER:
            parts: list[_FlightPart] = [(0, CHANGE_CIPHER_SPEC, b"\x01")]
            parts += self._finished_parts(b"server finished")
            # The last flight has no timer: it is sent again only when the client's
            # Finished flight is seen again (RFC 6347 §4.2.4).
            self._start_flight(parts, now, timer=False)
        else:
            # The server's Finished shows it has all of ours: nothing will be sent again.
            self._timer = None
            self._flight = []
        self._state = _State.ESTABLISHED
        self._events.append(HandshakeComplete(self._identity))
        self._events.extend(ApplicationData(data) for data in self._early_data)
        self._early_data = []

    def _drain_early(self, now: float) -> None:
        early, self._early = self._early, []
        for record in early:
            self._receive_record(record, now)
            if self._state in (_State.CLOSED, _State.FAILED):
                return
