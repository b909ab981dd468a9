"""A sans-IO DTLS 1.2 connection for TLS_PSK_WITH_AES_128_CCM_8 (0xC0A8), client and server.

It follows RFC 6347 (DTLS 1.2) over RFC 5246 (TLS 1.2) and RFC 4279 (PSK), with:

- the stateless cookie exchange of RFC 6347 §4.2.1 with a
  :class:`~lwm2m.tls.cookies.CookieChecker` (an HMAC of the client's hello parameters and
  address, with one previous secret still accepted so that the secret can rotate);
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
  (§4, the additional data of §5), and the records from the peer must carry our CID;
- resumption (RFC 5246 §7.3, RFC 5077 §3.1): the abbreviated handshake ClientHello with a
  session id or a ticket; ServerHello, [NewSessionTicket], ChangeCipherSpec, Finished; then the
  client's ChangeCipherSpec, Finished, which is the last flight there (RFC 6347 §4.2.4); the
  server resumes from its :class:`~lwm2m.tls.tickets.SessionCache` or a ticket sealed by its
  :class:`~lwm2m.tls.tickets.TicketKeys`, only sessions with an extended master secret, and
  never one across that line (RFC 7627 §5.3); it issues tickets to clients that ask (RFC 5077
  §3.3); PSK and ECDHE_ECDSA sessions alike, each only within its suite family and with the
  credentials it was made with (an ECDHE_ECDSA session keeps who its peer proved to be);
- an established connection exported as bytes and imported elsewhere
  (:meth:`DtlsConnection.export_state`, :class:`~lwm2m.tls.state.ConnectionState`).
- TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8 (RFC 7251) and TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
  (RFC 5289) with ``ConnectionConfig.certificate``: Certificate, the signed ServerKeyExchange
  (RFC 8422 §5.4), a CertificateRequest always (mutual authentication), ClientKeyExchange and
  CertificateVerify (RFC 5246 §7.4.2-§7.4.8), X.509 or raw public keys (RFC 7250); the
  messages and checks live in :mod:`lwm2m.tls.keyexchange` and :mod:`lwm2m.tls.certificates`;
- renegotiation_info answered empty (RFC 5746 §3.6) when the client signals it;
- the CBC suites of LwM2M 1.1, only with ``ConnectionConfig.cbc_suites``:
  TLS_PSK_WITH_AES_128_CBC_SHA256 (RFC 5487) with the PSK handshake above,
  TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA256 (RFC 5489 §2: an ephemeral P-256 exchange in the PSK
  messages, the premaster secret of both) and TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256 (RFC 5289)
  with the ECDHE_ECDSA handshake; records by :class:`~lwm2m.tls.cbc.CbcProtection` with the key
  block of RFC 5246 §6.3 (32-byte MAC keys, no fixed IV). No encrypt_then_mac (RFC 7366): it is
  never offered nor answered, so peers fall back to the MAC-then-encrypt of RFC 5246 §6.2.3.2.
- server_name (RFC 6066 §3), record_size_limit (RFC 8449) and max_fragment_length (RFC 6066
  §4), negotiated by :mod:`lwm2m.tls.negotiation`: the client names the server, the server
  exposes the name (:attr:`DtlsConnection.server_name`); each side keeps the records it
  protects, handshake fragments included, within the peer's limit once known, and ends the
  connection with record_overflow when a protected record over its own limit arrives.

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
import struct
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Final, TypeVar

from cryptography.exceptions import InvalidTag

from lwm2m.errors import (
    BadRecordMac,
    BadSignature,
    CertificateRejected,
    CertificateTypeMismatch,
    DtlsError,
    HandshakeAborted,
    HandshakeError,
    InvalidPeerKey,
    ProtocolError,
    RecordDropped,
    RecordError,
    RecordOverflow,
    RecordTooLarge,
    SecurityError,
    SessionClosed,
    SessionStateError,
    UnknownCertificateAuthority,
)
from lwm2m.tls.cbc import CBC_SUITES, CbcProtection
from lwm2m.tls.certificates import (
    ECDSA_SIGN,
    CertificateCredentials,
    CertificateMessage,
    CertificateRequest,
    CertificateType,
    PeerCredentials,
    answered_types,
    choose_types,
    offered_types,
    peer_public_key,
)
from lwm2m.tls.cookies import CookieChecker
from lwm2m.tls.keyexchange import (
    ECDSA_SECP256R1_SHA256,
    SECP256R1,
    DigitallySigned,
    EcdhClientKeyExchange,
    EcdheKeyPair,
    EcdheServerKeyExchange,
    ServerEcdhParams,
    ecdsa_sign,
    ecdsa_verify,
    load_point,
    server_params_content,
)
from lwm2m.tls.messages import (
    MAX_PSK_IDENTITY_LENGTH,
    ClientCertificateTypeExtension,
    ClientHello,
    ClientKeyExchange,
    ConnectionIdExtension,
    EcPointFormatsExtension,
    ExtendedMasterSecretExtension,
    Extension,
    ExtensionType,
    Finished,
    HandshakeHeader,
    HandshakeType,
    HelloVerifyRequest,
    ServerCertificateTypeExtension,
    ServerHello,
    ServerHelloDone,
    ServerKeyExchange,
    ServerNameExtension,
    SessionTicketExtension,
    SignatureAlgorithmsExtension,
    SupportedGroupsExtension,
    UnknownExtension,
    encode_handshake,
    parse_handshake_body,
    split_handshake_fragments,
)
from lwm2m.tls.negotiation import (
    DEFAULT_RECORD_SIZE_LIMIT,
    RECORD_OVERFLOW,
    SizeLimits,
    check_limits,
    client_extensions,
    client_limits,
    parse_host_name,
    server_extensions,
    sni_host_name,
)
from lwm2m.tls.prf import (
    MAX_PSK_LENGTH,
    check_finished,
    ecdhe_psk_premaster_secret,
    extended_master_secret,
    key_block,
    master_secret,
    psk_premaster_secret,
    verify_data,
)
from lwm2m.tls.protection import CID_AAD_HEADS, SUITE_ALGORITHMS, AeadProtection, NullProtection
from lwm2m.tls.reassembly import HandshakeReassembler, ReassembledMessage, fragment_handshake
from lwm2m.tls.record import (
    ALERT,
    APPLICATION_DATA,
    CHANGE_CIPHER_SPEC,
    DTLS_1_0,
    DTLS_1_2,
    HANDSHAKE,
    HEADER_LENGTH,
    MAX_PLAINTEXT,
    TLS12_CID,
    DtlsRecord,
    encode_record,
    parse_datagram,
    parse_inner_plaintext,
    single_protected_record,
)
from lwm2m.tls.replay import MAX_SEQUENCE, ReplayWindow
from lwm2m.tls.state import (
    PEER_PSK,
    PEER_RPK,
    PEER_X509,
    ConnectionState,
    ResumableSession,
    credential_binding,
)
from lwm2m.tls.stream import (
    TLS_1_2,
    StreamState,
    encode_stream_record,
    tls_handshake_bytes,
    tls_transcript,
)
from lwm2m.tls.tickets import NewSessionTicket, SessionCache, TicketKeys

__all__ = [
    "LWM2M_CBC_SUITES",
    "ApplicationData",
    "ConnectionClosed",
    "ConnectionConfig",
    "DtlsConnection",
    "DtlsEvent",
    "DtlsRole",
    "HandshakeComplete",
    "HandshakeFailure",
]

TLS_PSK_WITH_AES_128_CCM_8: Final = 0xC0A8
TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8: Final = 0xC0AE  # RFC 7251
TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256: Final = 0xC02B  # RFC 5289
ECDSA_SUITES: Final = (TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8, TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256)
# The CBC suites of LwM2M 1.1 (LwM2M-TS-Transport 1.1 §5.2.8), offered and taken only when a
# configuration lists them in ``cbc_suites``.
TLS_PSK_WITH_AES_128_CBC_SHA256: Final = 0x00AE  # RFC 5487
TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA256: Final = 0xC037  # RFC 5489
TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256: Final = 0xC023  # RFC 5289
LWM2M_CBC_SUITES: Final = (
    TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256,
    TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA256,
    TLS_PSK_WITH_AES_128_CBC_SHA256,
)
# The suites with the certificate handshake, and those with a PSK: a session resumes only
# within its family (RFC 5246 §7.4.1.3 keeps the suite; our rule keeps its credentials' kind).
_ECDSA_FAMILY: Final = (*ECDSA_SUITES, TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256)
_PSK_FAMILY: Final = (
    TLS_PSK_WITH_AES_128_CCM_8,
    TLS_PSK_WITH_AES_128_CBC_SHA256,
    TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA256,
)
# A session's kind of peer credentials (state.py) and the certificate type of RFC 7250 §3.
_PEER_KIND: Final = {CertificateType.X509: PEER_X509, CertificateType.RAW_PUBLIC_KEY: PEER_RPK}
_PEER_TYPE: Final = {kind: certificate_type for certificate_type, kind in _PEER_KIND.items()}
# RFC 7366 §2: encrypt_then_mac, which we never offer; a server must not answer it unasked.
ENCRYPT_THEN_MAC: Final = 22
# RFC 5746 §3.3: the signalling cipher suite value that says a client knows secure renegotiation.
TLS_EMPTY_RENEGOTIATION_INFO_SCSV: Final = 0x00FF

# AlertLevel and AlertDescription (RFC 5246 §7.2, RFC 4279 §2 for unknown_psk_identity).
WARNING: Final = 1
FATAL: Final = 2
CLOSE_NOTIFY: Final = 0
UNEXPECTED_MESSAGE: Final = 10
BAD_RECORD_MAC: Final = 20
HANDSHAKE_FAILURE: Final = 40
BAD_CERTIFICATE: Final = 42
UNSUPPORTED_CERTIFICATE: Final = 43
ILLEGAL_PARAMETER: Final = 47
UNKNOWN_CA: Final = 48
DECODE_ERROR: Final = 50
DECRYPT_ERROR: Final = 51
INTERNAL_ERROR: Final = 80
NO_RENEGOTIATION: Final = 100
UNSUPPORTED_EXTENSION: Final = 110
UNKNOWN_PSK_IDENTITY: Final = 115
PROTOCOL_VERSION: Final = 70

RECORD_OVERHEAD: Final = 13 + 8 + 8  # header, explicit nonce, CCM_8 tag
# What a CBC record takes beyond that: a 16-byte IV, a 32-byte MAC and up to 16 bytes of
# padding (RFC 5246 §6.2.3.2) against the 16 of the explicit nonce and tag.
CBC_EXTRA_OVERHEAD: Final = 16 + 32 + 16 - 16
DEFAULT_CID_LENGTH: Final = 6
MAX_CID_LENGTH: Final = 32  # ours; RFC 9146 §3 allows 255, but every byte is in every record
# Records of epoch 1 that arrive before the keys to read them (reordering, RFC 6347 §4.1 lets
# a receiver buffer them); bounded so that a flood costs nothing.
MAX_EARLY_RECORDS: Final = 8
SESSION_ID_LENGTH: Final = 32  # RFC 5246 §7.4.1.2: at most 32; a random one of full length
# How far an exported connection's write sequence number is moved ahead: the live connection
# may send that many more records after the export and the imported one still never reuses
# a nonce (RFC 5246 §6.2.3.3); 2^48 numbers leave room for 2^28 such exports.
EXPORT_SEQUENCE_MARGIN: Final = 1 << 20


class DtlsRole(enum.StrEnum):
    """Which side of the handshake a connection plays."""

    CLIENT = "client"
    SERVER = "server"


@dataclass(frozen=True, slots=True)
class ConnectionConfig:
    """What a connection needs; one server config may serve many connections.

    Client: ``psk_identity`` and ``psk``. Server: ``psk_lookup`` (identity -> PSK, or None
    for an identity it does not know), optionally ``psk_identity_hint`` (sent in a
    ServerKeyExchange when not None) and ``cookie_checker`` (None: no cookie exchange, for a
    caller that checked the cookie before making the connection).

    ECDHE_ECDSA (RFC 8422): ``certificate`` holds the key, the certificate chain or raw public
    key and how the peer is trusted; a client offers ``ecdsa_suites`` (in that order) before the
    PSK suite, which it offers only with a PSK; a server picks the first of its ``ecdsa_suites``
    the client offers, else PSK, and always asks for the client's certificate.

    Connection ID (RFC 9146): with ``connection_id`` (the default) the client offers the
    extension and the server answers it. The CID a side asks to receive has ``cid_length``
    bytes (0: it sends CIDs but wants none); a server CID starts with the byte ``node_id``, so
    that a cluster can route a record to the node that holds its session, the rest is random.

    Resumption: a server with a ``session_cache`` gives its sessions ids and resumes them by id
    (RFC 5246 §7.3); one with ``ticket_keys`` gives a ticket to a client that asks and resumes
    from it (RFC 5077). A client asks for tickets while ``session_tickets`` is on.

    CBC (LwM2M 1.1): ``cbc_suites`` lists the CBC suites to use, in order of preference, from
    :data:`LWM2M_CBC_SUITES`; empty (the default) leaves them off, as MAC-then-encrypt cannot be
    checked in constant time in Python (see :mod:`lwm2m.tls.cbc`). A client offers them after
    the AEAD suites, each only with the credentials it needs (a certificate for ECDHE_ECDSA, a
    PSK for the others); a server takes one only when the client offers no AEAD suite it takes.

    Names and sizes (RFC 6066, RFC 8449): a client with ``server_name`` (a DNS name, e.g. the
    host of the server URI; an IP address is not sent) sends it as server_name, and checks an
    X.509 server certificate against it when ``certificate.expected_name`` is None. Both sides
    send ``record_size_limit`` (None: the extension is neither sent nor answered), the largest
    record plaintext they take: the default changes nothing, a constrained device sets e.g.
    256. A client may also ask for ``max_fragment_length`` (512, 1024, 2048 or 4096) for
    servers without record_size_limit. GnuTLS takes no limit below 512: it ignores a client's
    and refuses a server's with illegal_parameter, so a server keeps 512 or more.
    ``psk_suites`` holds the PSK AEAD suite, TLS_PSK_WITH_AES_128_CCM_8, offered and taken with
    a PSK; empty, PSK runs only in the CBC suites of ``cbc_suites``, so that a configuration
    naming only those offers and takes only those.
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
    session_cache: SessionCache | None = None
    ticket_keys: TicketKeys | None = None
    session_tickets: bool = True
    certificate: CertificateCredentials | None = None
    ecdsa_suites: tuple[int, ...] = ECDSA_SUITES
    cbc_suites: tuple[int, ...] = ()
    server_name: str | None = None
    record_size_limit: int | None = DEFAULT_RECORD_SIZE_LIMIT
    max_fragment_length: int | None = None
    psk_suites: tuple[int, ...] = (TLS_PSK_WITH_AES_128_CCM_8,)


@dataclass(frozen=True, slots=True)
class HandshakeComplete:
    """The handshake finished; ``identity`` names the client as the handshake authenticated it:
    with a PSK suite its PSK identity (RFC 4279 §2, on both sides); with ECDHE_ECDSA, on the
    server, the client's certificate name or raw public key (its SubjectPublicKeyInfo, RFC 7250),
    on the client empty. ``resumed`` is True for an abbreviated handshake (RFC 5246 §7.3);
    ``peer`` holds the certificate or raw public key the peer proved it holds."""

    identity: bytes
    resumed: bool = False
    peer: PeerCredentials | None = None


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
    WAIT_CERTIFICATE_VERIFY = enum.auto()  # server, ECDHE_ECDSA
    WAIT_FINISHED = enum.auto()  # both
    ESTABLISHED = enum.auto()
    CLOSED = enum.auto()
    FAILED = enum.auto()


# The state of the direct path's test, as a module name: looking up an enum member through its
# class costs more than the rest of that test.
_ESTABLISHED: Final = _State.ESTABLISHED
_EPOCH_ONE: Final = 1 << 48  # the seq_num of epoch 1's record 0 (RFC 6347 §4.1.2.1)
# A RFC 9146 §4 header up to its CID, epoch and sequence number read as the one seq_num.
_CID_HEAD_SEQ_NUM: Final = struct.Struct("!BHQ")
_CID_AT: Final = 11  # a tls12_cid record's CID follows its sequence number (RFC 9146 §4)
# A record without a CID: its 8-byte explicit nonce follows the 13-byte header, its ciphertext
# the nonce (RFC 6655 §3); the additional data is seq_num, type, version, length (RFC 5246 §6.2.3.3).
_CIPHERTEXT_AT: Final = HEADER_LENGTH + 8
_AAD: Final = struct.Struct("!QBHH")
# A record header as small ints: type, the version's two bytes, epoch, the sequence number as 16 +
# 32 bits, length; the additional data from the same fields (epoch, sequence number, type, version,
# length of the plaintext).
_RECORD_FIELDS: Final = struct.Struct("!BBBHHIH")
_AAD_FIELDS: Final = struct.Struct("!HHIBBBH")
# The header of a record without a CID with epoch and sequence number as the one seq_num, then the
# explicit nonce, which is that seq_num too (RFC 6655 §3); and the whole nonce, salt first.
_HEADER_NONCE: Final = struct.Struct("!BHQHQ")
_NONCE: Final = struct.Struct("!4sQ")
_LENGTH: Final = struct.Struct("!H")
# What follows the CID in a sealed tls12_cid record: its length, then the explicit nonce (RFC 9146 §4).
_LENGTH_NONCE: Final = struct.Struct("!HQ")

# Epoch 0 (RFC 6347 §4.1): nothing to remove but the checks of a plaintext record; one serves all.
_UNPROTECTED: Final = NullProtection()
# No size negotiated (yet): DTLS 1.2's own bounds only; one serves all.
_NO_LIMITS: Final = SizeLimits()
_T = TypeVar("_T")

# A message of a flight: the epoch it is sent in, its content type and its plaintext. A flight
# is kept as plaintext so that every retransmission gets fresh record sequence numbers.
_FlightPart = tuple[int, int, bytes]


class DtlsConnection:
    """One DTLS 1.2 PSK connection with one peer, client or server, without I/O."""

    # A server holds one per session, so no per-instance dict (issue 14: ≤ 4 KB per
    # established session).
    __slots__ = (
        "_advanced",
        "_binding",
        "_certificate_requested",
        "_cid_negotiated",
        "_client_random",
        "_cookie",
        "_created",
        "_early",
        "_early_data",
        "_ecdhe",
        "_events",
        "_flight",
        "_identity",
        "_limits",
        "_master",
        "_offer",
        "_offered_id",
        "_outbox",
        "_own_cid",
        "_own_type",
        "_peer",
        "_peer_cid",
        "_peer_flight_end",
        "_peer_hint",
        "_peer_point",
        "_peer_repeated",
        "_peer_type",
        "_read_protection",
        "_reassembler",
        "_resumable",
        "_resumed",
        "_send_message_seq",
        "_server_name",
        "_server_random",
        "_session_id",
        "_state",
        "_stream",
        "_suite",
        "_ticket",
        "_ticket_lifetime",
        "_ticket_promised",
        "_timeout",
        "_timer",
        "_transcript",
        "_use_ems",
        "_windows",
        "_write_epoch",
        "_write_protection",
        "_write_seq",
        "address",
        "config",
        "role",
    )

    def __init__(
        self,
        role: DtlsRole,
        config: ConnectionConfig,
        now: float,
        *,
        address: bytes = b"",
        session: ResumableSession | None = None,
        stream: bool = False,
    ) -> None:
        """A client starts its handshake at once, offering to resume ``session`` (a
        :attr:`session` of an earlier connection) when it can; a server waits for a hello.

        ``stream``: TLS 1.2 over a byte stream (RFC 5246) rather than DTLS 1.2 over datagrams:
        the same handshake, key schedule and record protection, with TLS framing
        (:mod:`lwm2m.tls.stream`), no cookie exchange, no Connection ID, no retransmission.
        Bytes go in through :meth:`receive_data` and out through :meth:`data_to_send`."""
        self.role = DtlsRole(role)
        self._stream = StreamState() if stream else None
        if stream:
            # RFC 9146 and the cookie exchange of RFC 6347 §4.2.1 are DTLS's alone.
            config = replace(config, connection_id=False, cookie_checker=None)
        self.config = config
        self.address = address
        if self.role is DtlsRole.CLIENT and (config.certificate is None or config.psk):
            # Checked here so that a bad configuration fails at once, not inside a datagram.
            if not 1 <= len(config.psk_identity) <= MAX_PSK_IDENTITY_LENGTH:
                raise DtlsError(f"a PSK identity has 1..{MAX_PSK_IDENTITY_LENGTH} bytes")
            if not 1 <= len(config.psk) <= MAX_PSK_LENGTH:
                raise DtlsError(f"a PSK has 1..{MAX_PSK_LENGTH} bytes")
        elif self.role is DtlsRole.SERVER and config.psk_lookup is None and config.certificate is None:
            raise DtlsError("a DTLS server needs psk_lookup or a certificate")
        if any(suite not in ECDSA_SUITES for suite in config.ecdsa_suites):
            raise DtlsError(f"ecdsa_suites may hold only {[hex(s) for s in ECDSA_SUITES]}")
        if any(suite not in LWM2M_CBC_SUITES for suite in config.cbc_suites):
            raise DtlsError(f"cbc_suites may hold only {[hex(s) for s in LWM2M_CBC_SUITES]}")
        if any(suite != TLS_PSK_WITH_AES_128_CCM_8 for suite in config.psk_suites):
            raise DtlsError(f"psk_suites may hold only {TLS_PSK_WITH_AES_128_CCM_8:#06x}")
        if self.role is DtlsRole.CLIENT and not self._offered_suites():
            raise DtlsError("the configuration leaves the client no cipher suite to offer")
        if not 0 <= config.cid_length <= MAX_CID_LENGTH:
            raise DtlsError(f"a connection ID has 0..{MAX_CID_LENGTH} bytes, not {config.cid_length}")
        if not 0 <= config.node_id <= 0xFF:
            raise DtlsError(f"node_id {config.node_id} does not fit in the first byte of a connection ID")
        check_limits(config.record_size_limit, config.max_fragment_length)
        if config.max_datagram_size < RECORD_OVERHEAD + 64:
            raise DtlsError(f"max_datagram_size {config.max_datagram_size} is too small for a handshake")
        # A list, not a deque: it rarely holds more than one event, and an empty deque costs
        # ten times the memory of an empty list.
        self._events: list[DtlsEvent] = []
        self._outbox: list[bytes] = []
        self._write_seq = [0, 0]  # per epoch
        self._write_epoch = 0
        self._write_protection: AeadProtection | CbcProtection | None = None
        self._read_protection: AeadProtection | CbcProtection | None = None
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
        # The negotiated suite and, for ECDHE_ECDSA, the handshake's ephemeral key, the
        # certificate types (RFC 7250 §4), the peer's credentials and the server's point.
        self._suite = TLS_PSK_WITH_AES_128_CCM_8
        self._ecdhe: EcdheKeyPair | None = None
        self._own_type = CertificateType.X509
        self._peer_type = CertificateType.X509
        self._peer: PeerCredentials | None = None
        self._peer_point = b""
        self._certificate_requested = False
        # RFC 6066 §3: the name the client sends (the server: the one it received); RFC 8449,
        # RFC 6066 §4: the record sizes settled by the hellos.
        self._server_name: str | None = None
        self._limits = _NO_LIMITS
        # RFC 9146: the CID we receive (records from the peer carry it) and the one we send;
        # only meaningful once ``_cid_negotiated``.
        self._cid_negotiated = False
        self._own_cid = b""
        self._peer_cid = b""
        # Set while a datagram is processed: a record of epoch 1 authenticated with a sequence
        # number above the highest accepted before (RFC 9146 §6).
        self._advanced = False
        # Resumption (RFC 5246 §7.3, RFC 5077 §3.4): the session a client offers and the id it
        # offers it under; whether this handshake resumed; whether the server promised a
        # NewSessionTicket; and what the session to resume later will hold.
        self._offer: ResumableSession | None = None
        self._offered_id = b""
        self._resumed = False
        self._ticket_promised = False
        self._session_id = b""
        self._ticket = b""
        self._ticket_lifetime = 0
        self._created = now
        self._binding = b""  # ties the session to the PSK it was made with
        self._resumable = False  # set once a handshake completed; a fatal alert clears it
        if self.role is DtlsRole.CLIENT:
            self._state = _State.WAIT_SERVER_HELLO
            self._client_random = config.random(32)
            self._identity = config.psk_identity
            host = sni_host_name(config.server_name)
            self._server_name = host.decode("ascii") if host is not None else None
            if config.connection_id:
                self._own_cid = config.random(config.cid_length) if config.cid_length else b""
            credential = self._own_credential(session.cipher_suite) if session is not None else None
            if (
                session is not None
                and credential is not None
                and session.resumable
                and session.identity == config.psk_identity
                and session.bound_to(credential)
                and session.server_name.lower() == (self._server_name or "").lower()
            ):
                # Not a session of other credentials, nor of a PSK or key replaced since, nor
                # one made under another server name (RFC 6066 §3: the same name when resuming).
                self._offer = session
                # With a ticket alone the client makes up an id: the server echoes it when it
                # accepts the ticket, which is how the client knows (RFC 5077 §3.4).
                self._offered_id = session.session_id or config.random(SESSION_ID_LENGTH)
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
    def peer_credentials(self) -> PeerCredentials | None:
        """The peer's certificate or raw public key (ECDHE_ECDSA, once established), else None."""
        return self._peer if self._state is _State.ESTABLISHED else None

    @property
    def cipher_suite(self) -> int:
        """The cipher suite chosen (PSK with CCM_8 until a ServerHello says otherwise)."""
        return self._suite

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
    def server_name(self) -> str | None:
        """The DNS name of server_name (RFC 6066 §3): the one the client sends, or on a server
        the one the client sent (in lower case); None when there is none."""
        return self._server_name

    @property
    def max_application_data(self) -> int:
        """The most bytes one :meth:`send_application_data` may carry: the peer's record size
        limit or fragment length once negotiated (RFC 8449 §4, RFC 6066 §4), else 2^14."""
        return self._content_room(1)

    @property
    def resumed(self) -> bool:
        """True when the handshake was an abbreviated one (RFC 5246 §7.3)."""
        return self._resumed

    @property
    def session(self) -> ResumableSession | None:
        """The session to resume later: on a client, what to pass as ``session`` to the next
        connection (with the server's ticket, if it gave one). None before the handshake
        completed, and for a connection that ended with a fatal alert (RFC 5246 §7.2.2)."""
        return self._session_record() if self._resumable else None

    def export_state(self, margin: int = EXPORT_SEQUENCE_MARGIN) -> bytes:
        """The established connection as bytes (:class:`~lwm2m.tls.state.ConnectionState`), for
        :meth:`import_state` after a restart or on another node.

        The exported write sequence number is ``margin`` above the next one: this connection may
        send up to ``margin`` more records and the imported one still never repeats a nonce.
        Import one export once; export again for another copy.
        """
        if self._state is not _State.ESTABLISHED:
            raise DtlsError("only an established connection can be exported")
        sequence = self._write_seq[1] + margin
        if margin < 0 or sequence > MAX_SEQUENCE:
            raise DtlsError("the sequence numbers of this connection are used up: make a new handshake")
        window = self._windows[1]
        highest = window.highest
        bitmap = 0
        if highest is not None:
            # Read back through the window's own test: bit i is set when highest - i was seen.
            for i in range(min(window.size, 64, highest + 1)):
                if not window.check(highest - i):
                    bitmap |= 1 << i
        state = ConnectionState(
            server=self.role is DtlsRole.SERVER,
            session=self._session_record(),
            client_random=self._client_random,
            server_random=self._server_random,
            epoch=1,
            write_sequence=sequence,
            read_highest=highest,
            read_bitmap=bitmap,
            cid_negotiated=self._cid_negotiated,
            own_cid=self._own_cid,
            peer_cid=self._peer_cid,
        )
        return state.to_bytes()

    @classmethod
    def import_state(
        cls, data: bytes, config: ConnectionConfig, now: float, *, address: bytes = b""
    ) -> DtlsConnection:
        """An established connection from :meth:`export_state`'s bytes: it sends and receives
        records at once, without a handshake. ``config`` is the configuration such a connection
        is made with (the role comes from the bytes). Bytes that do not read back raise
        :class:`~lwm2m.errors.SessionStateError`."""
        state = ConnectionState.from_bytes(data)
        suite = state.session.cipher_suite
        if state.epoch != 1 or (suite not in _PSK_FAMILY and suite not in _ECDSA_FAMILY):
            raise SessionStateError(
                f"connection state of epoch {state.epoch} and cipher suite "
                f"{state.session.cipher_suite:#06x}, not one this connection runs"
            )
        if len(state.own_cid) > MAX_CID_LENGTH or len(state.peer_cid) > MAX_CID_LENGTH:
            raise SessionStateError(f"connection state with a connection ID over {MAX_CID_LENGTH} bytes")
        role = DtlsRole.SERVER if state.server else DtlsRole.CLIENT
        connection = cls(role, config, now, address=address)
        connection._restore(state)
        return connection

    def _restore(self, state: ConnectionState) -> None:
        # A client made its first hello on construction: that is dropped, nothing was sent.
        session = state.session
        self._outbox = []
        self._flight = []
        self._timer = None
        self._events.clear()
        self._client_random, self._server_random = state.client_random, state.server_random
        self._use_ems = session.extended_master_secret
        self._suite = session.cipher_suite
        self._take_up(session)
        self._write_epoch = 1
        self._write_seq = [0, state.write_sequence]
        window = ReplayWindow(1)
        if state.read_highest is not None:
            # Oldest first, so that every accept slides the window up to where it was.
            for i in reversed(range(min(64, state.read_highest + 1))):
                if state.read_bitmap >> i & 1:
                    window.accept(state.read_highest - i)
            window.accept(state.read_highest)
        self._windows = [ReplayWindow(0), window]
        self._cid_negotiated = state.cid_negotiated
        self._own_cid, self._peer_cid = state.own_cid, state.peer_cid
        # The name and the record limits of the handshake, not of this config (RFC 8449 §4).
        self._server_name = session.server_name or None
        self._limits = SizeLimits(session.send_limit, session.receive_limit)
        self._resumable = True
        self._state = _State.ESTABLISHED

    def _session_record(self) -> ResumableSession:
        peer = self._peer
        kind, key, name, subject = PEER_PSK, b"", "", ""
        if peer is not None:
            kind, key, name = _PEER_KIND[peer.certificate_type], peer.public_key, peer.name or ""
            subject = peer.subject_text
        return ResumableSession(
            session_id=self._session_id,
            cipher_suite=self._suite,
            master_secret=self._master,
            identity=self._identity,
            extended_master_secret=self._use_ems,
            created=self._created,
            ticket=self._ticket,
            ticket_lifetime=self._ticket_lifetime,
            binding=self._binding,
            server_name=self._server_name or "",
            send_limit=self._limits.send,
            receive_limit=self._limits.receive,
            peer_kind=kind,
            peer_key=key,
            peer_name=name,
            peer_subject=subject,
        )

    def _own_credential(self, suite: int) -> bytes | None:
        """What a session of ``suite`` is bound to on this side (``credential_binding``): the
        PSK, or for ECDHE_ECDSA our own key and how we trust the peer
        (``CertificateCredentials.session_credential``), so that a session is resumed only with
        the credentials it was made with; None when this configuration has no such credentials."""
        if suite in _ECDSA_FAMILY:
            credentials = self.config.certificate
            return None if credentials is None else credentials.session_credential()
        if self.role is DtlsRole.CLIENT:
            return self.config.psk or None
        return None  # a server's PSK depends on the identity: see _find_session

    @property
    def _version(self) -> int:
        """The protocol version of the hellos: TLS 1.2 over a stream, else DTLS 1.2."""
        return DTLS_1_2 if self._stream is None else TLS_1_2

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
        return self._events.pop(0) if self._events else None

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
        """Send ``data`` in one protected record (epoch 1); over a stream, in as many records
        as it needs."""
        if self._stream is not None and self._state is _State.ESTABLISHED:
            room = self._content_room(1)
            for at in range(0, len(data), room):
                self._outbox.append(self._record(1, APPLICATION_DATA, bytes(data[at : at + room])))
            return
        if self._state is not _State.ESTABLISHED:
            if self._state in (_State.CLOSED, _State.FAILED):
                raise SessionClosed("the DTLS connection is closed")
            raise DtlsError("the DTLS handshake has not completed")
        # Below the peer's limit less one byte it fits whatever the framing (the room is at
        # least that): the common case costs one comparison.
        if len(data) >= self._limits.send and len(data) > self._content_room(1):
            raise RecordTooLarge(
                f"application data of {len(data)} bytes does not fit a record "
                f"(at most {self._content_room(1)} to this peer)"
            )
        self._outbox.append(self._record(1, APPLICATION_DATA, bytes(data)))

    def protect_application_data(self, data: bytes) -> bytes:
        """``data`` as one protected record (epoch 1), returned rather than queued: the form
        for a caller that sends each record at once (no list and no record object per call)."""
        if self._state is not _ESTABLISHED:
            self.send_application_data(data)  # raises, as that says
        length = len(data)
        # Within the peer's limit, the content fits a record (the room is at most MAX_PLAINTEXT).
        if length >= self._limits.send and length > self._content_room(1):
            raise RecordTooLarge(
                f"application data of {length} bytes does not fit a record "
                f"(at most {self._content_room(1)} to this peer)"
            )
        protection = self._write_protection
        if type(protection) is not AeadProtection:  # a CBC suite: the general framing
            return self._record(1, APPLICATION_DATA, bytes(data))
        sequences = self._write_seq
        sequence = sequences[1]
        sequences[1] = sequence + 1
        if sequence > MAX_SEQUENCE:
            raise RecordError(f"epoch 1 or sequence number {sequence} does not fit the header")
        # Epoch 1 and the sequence number as the one seq_num of header and nonce (RFC 6347 §4.1.2.1).
        seq_num = _EPOCH_ONE | sequence
        peer_cid = self._peer_cid
        if self._cid_negotiated and peer_cid:
            # AeadProtection.seal_cid_application inline (RFC 9146 §4, §5): the content, its
            # type and the padding sealed under the CID additional data; the CID after the header.
            tail = protection.inner_tail
            size = length + len(tail)  # of the DTLSInnerPlaintext
            if size > MAX_PLAINTEXT:
                raise RecordOverflow(f"a DTLSInnerPlaintext of {size} bytes is longer than {MAX_PLAINTEXT}")
            head = _CID_HEAD_SEQ_NUM.pack(TLS12_CID, DTLS_1_2, seq_num)
            sealed = protection.aead.encrypt(
                _NONCE.pack(protection.fixed_iv, seq_num),
                data + tail,
                b"".join((CID_AAD_HEADS[len(peer_cid)], head, peer_cid, _LENGTH.pack(size))),
            )
            return b"".join((head, peer_cid, _LENGTH_NONCE.pack(size + protection.overhead, seq_num), sealed))
        # AeadProtection.seal_application inline: the header with the explicit nonce (the
        # seq_num, RFC 6655 §3), then the ciphertext under the salt and that nonce with the
        # additional data of RFC 5246 §6.2.3.3; this runs for every record sent.
        return _HEADER_NONCE.pack(
            APPLICATION_DATA, DTLS_1_2, seq_num, length + protection.overhead, seq_num
        ) + protection.aead.encrypt(
            _NONCE.pack(protection.fixed_iv, seq_num),
            data,
            _AAD.pack(seq_num, APPLICATION_DATA, DTLS_1_2, length),
        )

    def receive_application_data(self, data: bytes, now: float) -> bytes | None:
        """:meth:`receive_datagram` for what an established connection gets most: a datagram
        that is one epoch-1 record of application data. Returns its content, with no
        :class:`ApplicationData` event; None for any other datagram, which then went through
        :meth:`receive_datagram` (its events as ever), or for one that did not authenticate.
        The checks are the general path's: our CID (RFC 9146 §4), the replay window before
        the AEAD and moved only by a record that authenticated (RFC 6347 §4.1.2.6);
        :attr:`advanced` tells what :meth:`receive_datagram` would have returned."""
        if self._state is not _ESTABLISHED or (self._cid_negotiated and self._own_cid):
            return self._receive_cid_application_data(data, now)
        try:
            content = self.open_application_data(data)
        except (ProtocolError, SecurityError):  # dropped (RFC 6347 §4.1.2.6, §4.1.2.7)
            return None
        if content is None:
            self.receive_datagram(data, now)
        return content

    def open_application_data(self, data: bytes) -> bytes | None:
        """The content of ``data`` when it is what an established connection gets most, one
        epoch-1 record of application data (with a CID of its own: one ``tls12_cid`` record
        carrying that CID whose inner type is application data, RFC 9146 §4), and it
        authenticated as new: the replay window has taken it (RFC 6347 §4.1.2.6) and
        :attr:`advanced` says whether it was the newest. None for any other datagram, which is
        left untouched (it is for :meth:`receive_datagram`); :class:`~lwm2m.errors.RecordDropped`
        or another ``ProtocolError`` or ``SecurityError`` for one of that form that was dropped:
        a replay, a record too old for the window, one that does not authenticate (RFC 6347
        §4.1.2.7).

        The form for a caller that has a datagram to take and nothing else to do, at the least
        cost per record: no event, no ``now`` (nothing here starts a timer)."""
        if self._state is not _ESTABLISHED:
            return None  # a handshake, or a closed connection
        if self._cid_negotiated and self._own_cid:
            return self._open_cid_application_data(data)
        # :func:`single_protected_record`'s test, inline, with the header in one unpack, each
        # field a small int: the version as its two bytes, the sequence number as 16 + 32 bits.
        try:
            content_type, major, minor, epoch, high, low, length = _RECORD_FIELDS.unpack_from(data)
        except struct.error:  # shorter than a header
            return None
        if (
            content_type != APPLICATION_DATA
            or epoch != 1
            or length + HEADER_LENGTH != len(data)
            or major != 0xFE
        ):
            return None  # another type or epoch, several records, a length that does not match
        sequence = (high << 32) | low if high else low
        window = self._windows[1]
        newest = window.newest
        # Above the newest accepted, the window's check says True: the next record of a session
        # costs no call for it.
        if sequence <= newest and not window.check(sequence):
            self._advanced = False
            raise RecordDropped("a replayed record, or one too old for the replay window")
        protection = self._read_protection
        if type(protection) is not AeadProtection:  # a CBC suite
            return self._open_cbc_datagram(data, (major << 8) | minor, window, sequence)
        size = length - protection.overhead  # of the plaintext
        if not 0 <= size <= self._limits.room:
            # Too short for a nonce and a tag, longer than DTLS allows, or over the limit we gave.
            self._refuse_size(size)  # raises for a record that cannot be taken at all
            return None
        # AeadProtection.open_datagram inline (RFC 6655 §3: the salt, then the explicit nonce
        # after the header; RFC 5246 §6.2.3.3: the additional data is seq_num, type, version and
        # length of the plaintext), and below, the replay window's accept for the next record:
        # this runs for every record received.
        try:
            content = protection.aead.decrypt(
                protection.fixed_iv + data[HEADER_LENGTH:_CIPHERTEXT_AT],
                data[_CIPHERTEXT_AT:],
                _AAD_FIELDS.pack(1, high, low, APPLICATION_DATA, major, minor, size),
            )
        except InvalidTag:
            self._advanced = False
            raise BadRecordMac("the record does not authenticate") from None
        if sequence - newest == 1 and not window.missing:
            # ReplayWindow.accept for the next record with none missing (RFC 6347 §4.1.2.6).
            window.newest = sequence
            self._advanced = True
        else:
            self._advanced = window.accept(sequence)
        if self._flight:  # data under the new keys shows the peer has our Finished (RFC 6347 §4.2.4)
            self._flight = []
        return content

    def _open_cbc_datagram(
        self, data: bytes, version: int, window: ReplayWindow, sequence: int
    ) -> bytes | None:
        """:meth:`open_application_data` past the replay check for a CBC suite."""
        self._advanced = False
        protection = self._read_protection
        assert protection is not None
        content = protection.open_datagram(data, _EPOCH_ONE | sequence, version)
        limit = self._limits.receive
        if limit is not None and len(content) > limit:
            # Over the limit we gave (RFC 8449 §4): the general path ends the connection; the
            # window has not moved, so it takes the record as new.
            return None
        self._advanced = window.accept(sequence)
        if self._flight:
            self._flight = []
        return content

    def _refuse_size(self, size: int) -> None:
        """:meth:`open_application_data` for an AEAD record whose plaintext would be ``size``
        bytes, outside what it takes: too short to authenticate (RFC 5246 §6.2.3.3), longer than
        DTLS allows (RFC 5246 §6.2.3), or over the limit we gave (RFC 8449 §4: None, for the
        general path, which ends the connection; the window has not moved)."""
        self._advanced = False
        if size < 0:
            raise BadRecordMac("a protected record shorter than its nonce and tag")
        if size > MAX_PLAINTEXT:
            raise RecordOverflow(f"a plaintext of {size} bytes is longer than {MAX_PLAINTEXT}")

    def _open_cid_application_data(self, data: bytes) -> bytes | None:
        """:meth:`open_application_data` for an established connection whose peer's records
        carry our CID: the same checks as :meth:`_receive_cid_application_data`, with the header
        read in one unpack and no record object."""
        own_cid = self._own_cid
        start = HEADER_LENGTH + len(own_cid)  # the CID lies before the length (RFC 9146 §4)
        try:
            content_type, version, seq_num = _CID_HEAD_SEQ_NUM.unpack_from(data)
        except struct.error:  # shorter than a header
            return None
        sequence = seq_num - _EPOCH_ONE  # within 0..MAX_SEQUENCE exactly when the epoch is 1
        n = len(data)
        if (
            content_type != TLS12_CID
            or not 0 <= sequence <= MAX_SEQUENCE
            or version >> 8 != 0xFE
            or n < start
            or start + ((data[start - 2] << 8) | data[start - 1]) != n
            # Not our CID: the general path drops it. The CID is no secret (every record shows
            # it, and the layer found the session by it in a dict): a plain comparison.
            or not data.startswith(own_cid, _CID_AT)
        ):  # another type or epoch, several records, a length that does not match
            return None
        protection = self._read_protection
        if type(protection) is not AeadProtection:
            return None  # a CBC suite: the general path
        self._advanced = False
        window = self._windows[1]
        newest = window.newest
        if sequence <= newest and not window.check(sequence):
            raise RecordDropped("a replayed record, or one too old for the replay window")
        # AeadProtection.open_cid_datagram inline: the additional data of RFC 9146 §5 made of the
        # header's own bytes (type to CID) behind its first 10, the explicit nonce after the header.
        size = n - start - protection.overhead  # of the DTLSInnerPlaintext
        if size < 0:
            raise BadRecordMac("a protected record shorter than its nonce and tag")
        if size > MAX_PLAINTEXT:
            raise RecordOverflow(f"a DTLSInnerPlaintext of {size} bytes is longer than {MAX_PLAINTEXT}")
        explicit = start + 8
        try:
            inner = protection.aead.decrypt(
                protection.fixed_iv + data[start:explicit],
                data[explicit:],
                b"".join((CID_AAD_HEADS[start - HEADER_LENGTH], data[: start - 2], _LENGTH.pack(size))),
            )
        except InvalidTag:
            raise BadRecordMac("the record does not authenticate") from None
        if inner and inner[-1] == APPLICATION_DATA:  # no padding: the last byte is the type (RFC 9146 §4)
            content = inner[:-1]
        else:  # RecordError for an inner plaintext of zeros only: dropped, as the general path does
            inner_type, content = parse_inner_plaintext(inner)
            if inner_type != APPLICATION_DATA:
                return None  # an alert or handshake message behind the CID: the general path's
        limit = self._limits.receive
        if limit is not None and len(content) + 1 > limit:
            # Over the limit we gave (RFC 8449 §4): the general path ends the connection; the
            # window has not moved, so it takes the record as new.
            return None
        if sequence - newest == 1 and not window.missing:  # ReplayWindow.accept, as above
            window.newest = sequence
            self._advanced = True
        else:
            self._advanced = window.accept(sequence)
        if self._flight:  # data under the new keys shows the peer has our Finished (RFC 6347 §4.2.4)
            self._flight = []
        return content

    def _receive_cid_application_data(self, data: bytes, now: float) -> bytes | None:
        """:meth:`receive_application_data` for a connection whose peer's records carry our CID
        (``tls12_cid``, RFC 9146 §4), and for one not established (the general path)."""
        own_cid = self._own_cid if self._cid_negotiated else b""  # own_cid, without a property call
        single = single_protected_record(data, len(own_cid)) if self._state is _ESTABLISHED else None
        if single is None:
            self.receive_datagram(data, now)
            return None
        content_type, version, sequence, start, cid = single
        self._advanced = False
        if cid and not hmac.compare_digest(cid, own_cid):
            return None
        window = self._windows[1]
        if not window.check(sequence):
            return None  # a replay, or too old
        assert self._read_protection is not None
        try:
            inner, content = self._read_protection.open(
                (1 << 48) | sequence, content_type, version, data[start:], cid
            )
        except (ProtocolError, SecurityError):  # BadRecordMac is one: dropped (RFC 6347 §4.1.2.7)
            return None
        limit = self._limits.receive
        if inner != APPLICATION_DATA or (limit is not None and len(content) + bool(cid) > limit):
            # An alert or handshake message behind a CID (RFC 9146 §4), or a record over the
            # limit we gave (RFC 8449 §4): the general path, which ends or handles it; the window
            # has not moved, so it takes the record as new.
            self.receive_datagram(data, now)
            return None
        self._advanced = window.accept(sequence)
        if self._flight:  # data under the new keys shows the peer has our Finished (RFC 6347 §4.2.4)
            self._flight = []
        return content

    @property
    def advanced(self) -> bool:
        """Whether the last datagram received held a record of epoch 1 that authenticated with a
        sequence number above every one accepted before (RFC 9146 §6)."""
        return self._advanced

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
            # The length of the CID we asked for even before the peer agreed: in an abbreviated
            # handshake the ServerHello that agrees shares a datagram with CID records.
            records = parse_datagram(data, len(self._own_cid))
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

    # --- TLS 1.2 over a stream (RFC 5246) -----------------------------------------------------

    @property
    def stream(self) -> bool:
        """True for TLS 1.2 over a byte stream, False for DTLS 1.2 over datagrams."""
        return self._stream is not None

    @property
    def buffered_bytes(self) -> int:
        """Over a stream, the bytes received and held for a record or handshake message not
        yet whole (at most one record and one handshake message); 0 for DTLS."""
        return 0 if self._stream is None else self._stream.buffered

    def data_to_send(self) -> bytes:
        """Over a stream, the bytes to write to it now (empty when there are none)."""
        out, self._outbox = self._outbox, []
        return b"".join(out)

    def receive_data(self, data: bytes, now: float | None = None) -> None:
        """Take bytes of the stream from the peer, in any chunking (a connection made with
        ``stream=True``). Events come out of :meth:`next_event`, the answer out of
        :meth:`data_to_send`. Input that breaks the protocol ends the connection with a fatal
        alert (RFC 5246 §7.2.2) and an event, never an exception. ``now`` is only used for
        session lifetimes (default: the connection's creation)."""
        stream = self._stream
        if stream is None:
            raise DtlsError("receive_data is for a connection over a stream; DTLS takes datagrams")
        if self._state in (_State.CLOSED, _State.FAILED):
            return
        when = self._created if now is None else now
        try:
            try:
                records = stream.reader.feed(data)
            except RecordOverflow as error:
                raise HandshakeAborted(RECORD_OVERFLOW, str(error)) from None
            except RecordError as error:
                raise HandshakeAborted(DECODE_ERROR, str(error)) from None
            for content_type, version, fragment in records:
                self._receive_stream_record(stream, content_type, version, fragment, when)
                if self._state in (_State.CLOSED, _State.FAILED):
                    return
        except HandshakeAborted as failure:
            self._end_stream(failure)

    def _end_stream(self, failure: HandshakeAborted) -> None:
        # RFC 5246 §7.2.2: a fatal alert, and the connection is over; the caller closes it.
        if self._state is not _State.ESTABLISHED:
            self._fail(failure)
            return
        self._send_alert(FATAL, failure.alert)
        self._state = _State.CLOSED
        self._forget_session()
        self._events.append(ConnectionClosed(failure.reason))

    def _receive_stream_record(
        self, stream: StreamState, content_type: int, version: int, fragment: bytes, now: float
    ) -> None:
        epoch = stream.read_epoch
        try:
            sequence = stream.next_read()
        except RecordError as error:
            raise HandshakeAborted(INTERNAL_ERROR, str(error)) from None
        if epoch == 1:
            assert self._read_protection is not None
            try:
                # The implicit sequence number is the seq_num of the AEAD (RFC 5246 §6.2.3.3).
                content_type, content = self._read_protection.open(sequence, content_type, version, fragment)
            except BadRecordMac:
                raise HandshakeAborted(BAD_RECORD_MAC, "a record that does not authenticate") from None
            except (ProtocolError, SecurityError) as error:
                raise HandshakeAborted(DECODE_ERROR, f"a malformed protected record: {error}") from None
            limit = self._limits.receive
            if limit is not None and len(content) > limit:
                raise HandshakeAborted(
                    RECORD_OVERFLOW, f"a record of {len(content)} bytes from the peer, over {limit}"
                )
        else:
            content = fragment
            if len(content) > MAX_PLAINTEXT:
                raise HandshakeAborted(RECORD_OVERFLOW, f"a plaintext record of {len(content)} bytes")
        if content_type == CHANGE_CIPHER_SPEC:
            # RFC 5246 §7.1: once, with the keys settled and between whole handshake messages.
            if epoch == 1 or content != b"\x01" or self._read_protection is None or stream.handshake.buffered:
                raise HandshakeAborted(UNEXPECTED_MESSAGE, "an unexpected ChangeCipherSpec")
            stream.change_read_cipher_spec()
        elif content_type == ALERT:
            if len(content) != 2:
                raise HandshakeAborted(DECODE_ERROR, f"an alert of {len(content)} bytes")
            self._receive_alert(epoch, content)
        elif content_type == HANDSHAKE:
            try:
                messages = stream.handshake.feed(content)
            except ProtocolError as error:
                raise HandshakeAborted(DECODE_ERROR, str(error)) from None
            for msg_type, body in messages:
                self._receive_stream_message(stream, epoch, msg_type, body, now)
                if self._state in (_State.CLOSED, _State.FAILED):
                    return
        elif epoch != 1 or self._state is not _State.ESTABLISHED:
            # RFC 5246 §7.4: no application data before the handshake completes.
            raise HandshakeAborted(UNEXPECTED_MESSAGE, "application data before the handshake completed")
        elif content:
            self._events.append(ApplicationData(content))

    def _receive_stream_message(
        self, stream: StreamState, epoch: int, msg_type: int, body: bytes, now: float
    ) -> None:
        if self._state is _State.ESTABLISHED:
            if msg_type in (HandshakeType.CLIENT_HELLO, HandshakeType.HELLO_REQUEST):
                # Renegotiation is refused (RFC 5246 §7.4.1.1, §7.2.2).
                self._send_alert(WARNING, NO_RENEGOTIATION)
                return
            raise HandshakeAborted(UNEXPECTED_MESSAGE, f"handshake message {msg_type} after the handshake")
        if (msg_type == HandshakeType.FINISHED) != (epoch == 1):
            # Finished is the one message after ChangeCipherSpec (RFC 5246 §7.4.9).
            raise HandshakeAborted(UNEXPECTED_MESSAGE, f"handshake message {msg_type} in epoch {epoch}")
        awaiting = self._state is _State.WAIT_CLIENT_HELLO
        if awaiting and msg_type != HandshakeType.CLIENT_HELLO:
            raise HandshakeAborted(UNEXPECTED_MESSAGE, f"handshake message {msg_type} before ClientHello")
        # The engine reassembles DTLS messages in message_seq order (RFC 6347 §4.2.2): a stream
        # delivers them whole and in order, so they are numbered as they come.
        seq = stream.next_message_seq
        stream.next_message_seq = seq + 1
        header = HandshakeHeader(msg_type, len(body), seq, 0, len(body))
        self._receive_handshake(DtlsRecord(HANDSHAKE, DTLS_1_2, epoch, 0, b""), header.to_bytes() + body, now)
        if awaiting and self._state is _State.WAIT_CLIENT_HELLO:
            raise HandshakeAborted(DECODE_ERROR, "a malformed ClientHello")

    # --- records ---------------------------------------------------------------------------

    def _receive_record(self, record: DtlsRecord, now: float) -> None:
        if record.content_type == TLS12_CID:
            # Only with keys, and only with our own CID (RFC 9146 §4); the parser took as
            # many bytes as our CID has, so a different CID of that length ends here.
            if record.epoch == 0 or not hmac.compare_digest(record.cid, self.own_cid):
                return
        elif record.epoch != 0 and self.own_cid:
            return  # RFC 9146 §3: once keys are in use, records to us carry our CID
        if record.epoch == 1:
            if self._read_protection is None:
                if len(self._early) < MAX_EARLY_RECORDS:
                    self._early.append(record)
                return
        elif record.epoch != 0:
            return
        window = self._windows[record.epoch]
        if not window.check(record.sequence):
            return  # a replay, or too old
        try:
            if record.epoch == 0:
                content_type, content = _UNPROTECTED.decrypt(record).content_type, record.fragment
            else:
                # The framing-free form: no plaintext record object per record received.
                assert self._read_protection is not None
                content_type, content = self._read_protection.open(
                    record.seq_num, record.content_type, record.version, record.fragment, record.cid
                )
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
        # The content type byte inside a CID record counts too (RFC 9146 §4).
        limit = self._limits.receive
        if (
            limit is not None
            and record.epoch == 1
            and len(content) + (record.content_type == TLS12_CID) > limit
        ):
            self._record_overflow(len(content), limit)
            return
        if record.epoch == 1 and (window.highest is None or record.sequence > window.highest):
            self._advanced = True
        window.accept(record.sequence)
        if content_type == HANDSHAKE:
            self._receive_handshake(record, content, now)
        elif content_type == CHANGE_CIPHER_SPEC:
            pass  # epoch 1 records say the peer switched; the CCS itself carries nothing more
        elif content_type == ALERT:
            self._receive_alert(record.epoch, content)
        elif content_type == APPLICATION_DATA and record.epoch == 1:
            if self._state is _State.ESTABLISHED:
                self._events.append(ApplicationData(content))
                # Data under the new keys shows the peer has our Finished: our last flight will
                # not be asked for again (RFC 6347 §4.2.4), so it is let go.
                self._flight = []
            elif self._state is _State.WAIT_FINISHED and len(self._early_data) < MAX_EARLY_RECORDS:
                # The server sends data right after its Finished; reordered, the data comes
                # first. It authenticated under the new keys, so it is kept until Finished
                # checks out, and dropped if it never does.
                self._early_data.append(content)

    def _record(self, epoch: int, content_type: int, payload: bytes) -> bytes:
        sequence = self._write_seq[epoch]
        self._write_seq[epoch] += 1
        if self._stream is not None:
            return self._stream_record(epoch, sequence, content_type, payload)
        if epoch == 1:
            # RFC 9146 §3: once encryption is on, a peer that gave a CID gets tls12_cid records.
            # Sealed and framed straight from the fields: no record object per record sent.
            cid = self.peer_cid
            assert self._write_protection is not None
            fragment = self._write_protection.seal((1 << 48) | sequence, content_type, DTLS_1_2, payload, cid)
            return encode_record(content_type, DTLS_1_2, 1, sequence, fragment, cid)
        return DtlsRecord(content_type, DTLS_1_2, epoch, sequence, payload).encode()

    def _stream_record(self, epoch: int, sequence: int, content_type: int, payload: bytes) -> bytes:
        # RFC 5246 §6.2: a 5-byte header; under keys the sequence number is implicit, counted
        # from 0 at ChangeCipherSpec (§6.1), and is the AEAD's seq_num (§6.2.3.3).
        if epoch == 1:
            assert self._write_protection is not None
            payload = self._write_protection.seal(sequence, content_type, TLS_1_2, payload)
        return encode_stream_record(content_type, TLS_1_2, payload)

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
        # Over a stream nothing is lost, so nothing is sent again (RFC 5246 has no timers).
        self._timer = now + self._timeout if timer and self._stream is None else None

    def _handshake_parts(self, epoch: int, message: bytes, msg_type: int) -> list[_FlightPart]:
        # The transcript holds the message unfragmented (RFC 6347 §4.2.6); the wire gets it in
        # fragments that fit a datagram.
        seq = self._send_message_seq
        self._send_message_seq += 1
        self._transcript.append(encode_handshake(msg_type, seq, message))
        if self._stream is not None:
            # RFC 5246 §6.2.1: a message with its 4-byte header, split across records as needed.
            whole = tls_handshake_bytes(msg_type, message)
            room = self._content_room(epoch)
            return [(epoch, HANDSHAKE, whole[at : at + room]) for at in range(0, len(whole), room)]
        room = min(self.config.max_datagram_size - RECORD_OVERHEAD, self._content_room(epoch))
        if epoch == 1 and self._suite in CBC_SUITES:
            room -= CBC_EXTRA_OVERHEAD
        if epoch == 1 and self.peer_cid:
            room -= len(self.peer_cid) + 1  # the CID in the header, the real type inside (RFC 9146 §4)
        return [(epoch, HANDSHAKE, fragment) for fragment in fragment_handshake(msg_type, seq, message, room)]

    def _content_room(self, epoch: int) -> int:
        # The most content one record to the peer may carry: its limit bounds the plaintext,
        # which with a CID holds the content type too (RFC 8449 §4, RFC 9146 §4).
        room = self._limits.send
        if epoch == 1 and self.peer_cid:
            room -= 1
        return min(room, MAX_PLAINTEXT)

    def _record_overflow(self, size: int, limit: int) -> None:
        # RFC 8449 §4, RFC 6066 §4: a protected record over the limit we gave is fatal.
        reason = f"a record of {size} bytes from the peer, over the limit of {limit}"
        if self._state is not _State.ESTABLISHED:
            raise HandshakeAborted(RECORD_OVERFLOW, reason)
        self._send_alert(FATAL, RECORD_OVERFLOW)
        self._state = _State.CLOSED
        self._forget_session()
        self._events.append(ConnectionClosed(reason))

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
                self._forget_session()
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
            if self._early and self._read_protection is not None:
                # Keys came with a message of this batch (the ServerHello of an abbreviated
                # handshake): the records that waited for them come after the whole batch, as
                # a NewSessionTicket of the batch belongs in the transcript before Finished.
                self._drain_early(now)

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
            elif state is _State.WAIT_SERVER_HELLO_DONE and self._suite in _ECDSA_FAMILY:
                self._ecdsa_server_flight(message, now)
            elif state is _State.WAIT_SERVER_HELLO_DONE and msg_type == HandshakeType.SERVER_KEY_EXCHANGE:
                key_exchange = self._parse(message)
                assert isinstance(key_exchange, ServerKeyExchange)
                self._peer_hint = key_exchange.psk_identity_hint
                self._psk_server_params(key_exchange.params)
                self._transcript.append(message.to_bytes())
            elif state is _State.WAIT_SERVER_HELLO_DONE and msg_type == HandshakeType.SERVER_HELLO_DONE:
                if self._suite == TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA256 and not self._peer_point:
                    # RFC 5489 §2: the ServerKeyExchange is not optional with ECDHE_PSK.
                    raise HandshakeAborted(UNEXPECTED_MESSAGE, "ServerHelloDone without the ECDH params")
                self._parse(message)
                self._transcript.append(message.to_bytes())
                self._client_key_exchange(now)
            elif (
                state is _State.WAIT_FINISHED
                and msg_type == HandshakeType.NEW_SESSION_TICKET
                and self._ticket_promised
            ):
                self._new_session_ticket(message)
            elif state is _State.WAIT_FINISHED and msg_type == HandshakeType.FINISHED:
                self._peer_finished(message, b"server finished", now)
            elif state is _State.ESTABLISHED:
                return  # nothing more is expected
            else:
                raise HandshakeAborted(
                    UNEXPECTED_MESSAGE, f"unexpected handshake message {msg_type} in {state.name}"
                )
            return
        if state in (_State.WAIT_CLIENT_KEY_EXCHANGE, _State.WAIT_CERTIFICATE_VERIFY) and (
            self._suite in _ECDSA_FAMILY
        ):
            self._ecdsa_client_flight(message, now)
        elif state is _State.WAIT_CLIENT_KEY_EXCHANGE and msg_type == HandshakeType.CLIENT_KEY_EXCHANGE:
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
            # RFC 5746 §3.4: the signalling suite says we know secure renegotiation (we never do it).
            cipher_suites=(*self._offered_suites(), TLS_EMPTY_RENEGOTIATION_INFO_SCSV),
            session_id=self._offered_id,
            cookie=self._cookie,
            extensions=self._client_extensions(),
            client_version=self._version,
        )
        # RFC 6347 §4.2.6: the transcript starts at the hello that the server answers with
        # its ServerHello, so the hello that carries the cookie starts it afresh.
        self._transcript = []
        self._start_flight(
            self._handshake_parts(0, hello.to_bytes(), HandshakeType.CLIENT_HELLO), now, timer=True
        )

    def _client_extensions(self) -> tuple[Extension, ...]:
        extensions: tuple[Extension, ...] = (ExtendedMasterSecretExtension(),)
        if self.config.connection_id:
            extensions += (ConnectionIdExtension(self._own_cid),)
        if self.config.session_tickets:
            # Empty: "a ticket, please" (RFC 5077 §3.2); else the ticket to resume from.
            extensions += (SessionTicketExtension(self._offer.ticket if self._offer is not None else b""),)
        extensions += self._ecdsa_extensions()
        host = self._server_name.encode("ascii") if self._server_name is not None else None
        config = self.config
        extensions += client_extensions(host, config.record_size_limit, config.max_fragment_length)
        if self.config.certificate is None and (
            TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA256 in self._offered_suites()
        ):
            # RFC 5489 §2 with RFC 8422 §5.1: the curve and point format of the ECDH exchange.
            extensions += (SupportedGroupsExtension((SECP256R1,)), EcPointFormatsExtension((0,)))
        return extensions

    def _server_hello(self, message: ReassembledMessage) -> None:
        hello = self._parse(message)
        assert isinstance(hello, ServerHello)
        if hello.cipher_suite not in self._offered_suites() or hello.compression_method != 0:
            raise HandshakeAborted(
                ILLEGAL_PARAMETER, f"the server chose cipher suite {hello.cipher_suite:#06x}"
            )
        if hello.server_version != self._version:
            raise HandshakeAborted(HANDSHAKE_FAILURE, f"the server chose version {hello.server_version:#06x}")
        renegotiation = hello.extension(ExtensionType.RENEGOTIATION_INFO)
        if renegotiation is not None and renegotiation.data() != b"\x00":
            # RFC 5746 §3.4: on an initial handshake the server's renegotiated_connection is empty.
            raise HandshakeAborted(HANDSHAKE_FAILURE, "a renegotiation_info that is not empty")
        if hello.extension(ENCRYPT_THEN_MAC) is not None:
            # RFC 7366 §3 applies to CBC records only, and we offered it for none (RFC 5246
            # §7.4.1.4: an extension answered unasked ends the handshake).
            raise HandshakeAborted(UNSUPPORTED_EXTENSION, "the server answered encrypt_then_mac unasked")
        self._server_random = hello.random
        self._suite = hello.cipher_suite
        if self._suite in _ECDSA_FAMILY:
            self._ecdsa_server_hello(hello)
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
        if hello.extension(ExtensionType.SESSION_TICKET) is not None:
            if not self.config.session_tickets:
                raise HandshakeAborted(UNSUPPORTED_EXTENSION, "the server answered session_ticket unasked")
            self._ticket_promised = True  # a NewSessionTicket comes before its Finished
        name = hello.extension(ExtensionType.SERVER_NAME)
        if name is not None and self._server_name is None:
            raise HandshakeAborted(UNSUPPORTED_EXTENSION, "the server answered server_name unasked")
        if name is not None and name.data():
            raise HandshakeAborted(DECODE_ERROR, "a server_name answer that is not empty (RFC 6066 §3)")
        self._limits = client_limits(hello, self.config.record_size_limit, self.config.max_fragment_length)
        self._transcript.append(message.to_bytes())
        if self._offer is not None and hello.session_id == self._offered_id:
            self._resume_as_client(self._offer, hello)
            return
        # A full handshake: any session offered is gone (RFC 5246 §7.4.1.3).
        self._session_id = hello.session_id
        self._offer = None
        self._state = _State.WAIT_SERVER_HELLO_DONE

    def _resume_as_client(self, offer: ResumableSession, hello: ServerHello) -> None:
        # RFC 5246 §7.4.1.3: a resumed session keeps its cipher suite.
        if hello.cipher_suite != offer.cipher_suite:
            raise HandshakeAborted(ILLEGAL_PARAMETER, "the server resumed with another cipher suite")
        if not self._use_ems:
            # RFC 7627 §5.3: only sessions with an extended master secret are offered, and
            # resuming one without the extension must abort.
            raise HandshakeAborted(HANDSHAKE_FAILURE, "the server resumed without extended_master_secret")
        self._resumed = True
        self._take_up(offer)
        # The hello's timer keeps running: the server's flight may still be lost. Records that
        # waited for the keys are taken once the rest of this batch is (_receive_handshake).
        self._state = _State.WAIT_FINISHED

    def _new_session_ticket(self, message: ReassembledMessage) -> None:
        try:
            ticket = NewSessionTicket.parse(message.body)
        except ProtocolError as error:
            raise HandshakeAborted(DECODE_ERROR, f"a malformed NewSessionTicket: {error}") from None
        # An empty ticket takes back the promise (RFC 5077 §3.3); one ticket per handshake.
        self._ticket, self._ticket_lifetime = ticket.ticket, ticket.lifetime_hint
        self._ticket_promised = False
        self._transcript.append(message.to_bytes())

    def _client_key_exchange(self, now: float) -> None:
        premaster = None
        public = b""
        if self._suite == TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA256:
            # RFC 5489 §2: our ephemeral point after the identity; both secrets make the premaster.
            self._ecdhe = EcdheKeyPair()
            public = EcdhClientKeyExchange(self._ecdhe.point).to_bytes()
            premaster = self._ecdhe_psk_premaster(self._shared_secret(self._peer_point), self.config.psk)
        exchange = ClientKeyExchange(self.config.psk_identity, public)
        parts = self._handshake_parts(0, exchange.to_bytes(), HandshakeType.CLIENT_KEY_EXCHANGE)
        self._install_keys(self.config.psk, premaster)
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
        if checker is not None:
            checker.rotate_if_due(now)
        if checker is not None and not checker.check(self.address, hello, body):
            verify = HelloVerifyRequest(checker.cookie(self.address, hello, body), server_version=DTLS_1_0)
            message = encode_handshake(
                HandshakeType.HELLO_VERIFY_REQUEST, header.message_seq, verify.to_bytes()
            )
            # RFC 6347 §4.2.1: the HelloVerifyRequest takes the record sequence number of the
            # ClientHello, so that the server keeps no counter either.
            self._outbox.append(DtlsRecord(HANDSHAKE, DTLS_1_2, 0, record.sequence, message).encode())
            return
        # Our record sequence numbers continue from the hello's, as after a HelloVerifyRequest
        # (which took the first hello's): an alert refusing this hello must not look replayed.
        self._write_seq[0] = max(self._write_seq[0], record.sequence)
        self._suite = self._choose_suite(hello)
        if 0 not in hello.compression_methods:
            raise HandshakeAborted(HANDSHAKE_FAILURE, "the client offers no null compression")
        if self._stream is not None and (hello.client_version >> 8 != 3 or hello.client_version < TLS_1_2):
            # RFC 5246 Appendix E.1: a client whose best version is below TLS 1.2.
            raise HandshakeAborted(PROTOCOL_VERSION, f"the client offers version {hello.client_version:#06x}")
        if self._stream is None and hello.client_version > DTLS_1_2:
            # DTLS versions count down (0xFEFF is 1.0, 0xFEFD 1.2): a larger number is a client
            # whose best version is older than 1.2.
            raise HandshakeAborted(
                HANDSHAKE_FAILURE, f"the client offers version {hello.client_version:#06x}"
            )
        self._client_random = hello.random
        self._use_ems = hello.extension(ExtensionType.EXTENDED_MASTER_SECRET) is not None
        self._transcript = [encode_handshake(HandshakeType.CLIENT_HELLO, header.message_seq, body)]
        self._reassembler = HandshakeReassembler(next_seq=header.message_seq + 1)
        # The server's message_seq follows the client's (RFC 6347 §4.2.2).
        self._send_message_seq = header.message_seq
        self._server_random = self.config.random(32)
        extensions: tuple[Extension, ...] = (ExtendedMasterSecretExtension(),) if self._use_ems else ()
        offer = hello.extension(ExtensionType.CONNECTION_ID)
        if self.config.connection_id and isinstance(offer, ConnectionIdExtension):
            # RFC 9146 §3: answered only when offered; our CID leads with the node id.
            length = self.config.cid_length
            self._own_cid = bytes((self.config.node_id,)) + self.config.random(length - 1) if length else b""
            self._peer_cid = offer.cid
            self._cid_negotiated = True
            extensions += (ConnectionIdExtension(self._own_cid),)
        extensions += _renegotiation_info(hello)
        extensions += self._server_size_extensions(hello)
        if self._suite in _ECDSA_FAMILY:
            extensions += self._ecdsa_server_extensions(hello)
        elif self._suite == TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA256 and (
            hello.extension(ExtensionType.EC_POINT_FORMATS) is not None
        ):
            extensions += (EcPointFormatsExtension((0,)),)  # RFC 8422 §5.2
        # Sessions of every suite resume (an ECDHE_ECDSA one carries who its peer proved to be).
        resumable = self._use_ems
        # RFC 5077 §3.2: a ticket for a client that asks, for sessions that may be resumed.
        asks = isinstance(hello.extension(ExtensionType.SESSION_TICKET), SessionTicketExtension)
        if asks and resumable and self.config.ticket_keys is not None:
            self._ticket_promised = True
            extensions += (SessionTicketExtension(),)
        session = self._find_session(hello, now)
        if session is not None:
            self._suite = session.cipher_suite
            self._session_id = hello.session_id  # echoed (RFC 5246 §7.4.1.3, RFC 5077 §3.4)
        elif self.config.session_cache is not None and resumable:
            self._session_id = self.config.random(SESSION_ID_LENGTH)
        if session is None and self._server_name is not None:
            # RFC 6066 §3: an empty server_name says the name was used; never on resumption.
            extensions += (ServerNameExtension(),)
        server_hello = ServerHello(
            self._server_random,
            self._suite,
            self._session_id,
            extensions=extensions,
            server_version=self._version,
        )
        parts = self._handshake_parts(0, server_hello.to_bytes(), HandshakeType.SERVER_HELLO)
        if session is not None:
            self._resume_as_server(session, parts, now)
            return
        if self._suite in _ECDSA_FAMILY:
            parts += self._ecdsa_server_parts()
        elif self._suite == TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA256:
            # RFC 5489 §2: always sent, with an empty hint when there is none; the params are
            # not signed, the PSK authenticates them through the premaster secret.
            self._ecdhe = EcdheKeyPair()
            params = ServerEcdhParams(SECP256R1, self._ecdhe.point).to_bytes()
            hint = ServerKeyExchange(self.config.psk_identity_hint or b"", params).to_bytes()
            parts += self._handshake_parts(0, hint, HandshakeType.SERVER_KEY_EXCHANGE)
        elif self.config.psk_identity_hint is not None:
            hint = ServerKeyExchange(self.config.psk_identity_hint).to_bytes()
            parts += self._handshake_parts(0, hint, HandshakeType.SERVER_KEY_EXCHANGE)
        parts += self._handshake_parts(0, ServerHelloDone().to_bytes(), HandshakeType.SERVER_HELLO_DONE)
        self._state = _State.WAIT_CLIENT_KEY_EXCHANGE
        self._start_flight(parts, now, timer=True)

    def _server_size_extensions(self, hello: ClientHello) -> tuple[Extension, ...]:
        # RFC 6066 §3: the client's name, refused when malformed; then the record sizes.
        name = hello.extension(ExtensionType.SERVER_NAME)
        if name is not None:
            if not isinstance(name, ServerNameExtension) or name.host_name is None:
                raise HandshakeAborted(DECODE_ERROR, "a server_name without a host_name")
            try:
                self._server_name = parse_host_name(name.host_name)
            except ProtocolError as error:
                raise HandshakeAborted(DECODE_ERROR, str(error)) from None
        extensions, self._limits = server_extensions(hello, self.config.record_size_limit)
        return extensions

    def _find_session(self, hello: ClientHello, now: float) -> ResumableSession | None:
        # The session a hello asks to resume, from its ticket or by its id; None: a full handshake.
        if not hello.session_id:
            return None  # RFC 5077 §3.4: without an id the client could not tell it resumed
        session = None
        ticket = hello.extension(ExtensionType.SESSION_TICKET)
        keys = self.config.ticket_keys
        if keys is not None and isinstance(ticket, SessionTicketExtension) and ticket.ticket:
            session = keys.open(ticket.ticket, now)
        cache = self.config.session_cache
        if session is None and cache is not None:
            session = cache.get(hello.session_id, now)
        if session is None or session.cipher_suite not in hello.cipher_suites:
            return None
        if session.server_name != (self._server_name or ""):
            return None  # RFC 6066 §3: another name (or none) than its own: a full handshake
        ecdsa = session.cipher_suite in _ECDSA_FAMILY
        if ecdsa != (self._suite in _ECDSA_FAMILY) or session.cipher_suite not in (
            *self.config.psk_suites,
            *self.config.cbc_suites,
            *(self.config.ecdsa_suites if self.config.certificate is not None else ()),
        ):
            return None  # another family than this hello's, or a suite this server no longer takes
        if ecdsa and _PEER_TYPE.get(session.peer_kind) is not self._peer_type:
            return None  # the client now authenticates with another kind of credentials
        if not session.extended_master_secret or not self._use_ems:
            if session.extended_master_secret:
                # RFC 7627 §5.3: such a session resumed without the extension must abort.
                raise HandshakeAborted(
                    HANDSHAKE_FAILURE,
                    "a session with an extended master secret offered without the extension",
                )
            return None  # RFC 7627 §5.3: a legacy session is never resumed, a full handshake follows
        if ecdsa:
            # Bound to our own key: a server whose key (or certificate) was replaced makes a
            # full handshake. Whether the client may still register is for the application to
            # decide, as for a new session (its identity is the one the session was made with).
            own = self._own_credential(session.cipher_suite)
            return session if own is not None and session.bound_to(own) else None
        if self.config.psk_lookup is None:
            return None
        psk = self.config.psk_lookup(session.identity)
        if psk is None or not session.bound_to(psk):
            return None  # the identity was removed or its PSK replaced since: its sessions go
        return session

    def _take_up(self, session: ResumableSession, *, server: bool = False) -> None:
        """The session's identity, times, binding and master secret, and the keys they give with
        this handshake's randoms (RFC 5246 §7.3, §6.3). A server keeps the session id it echoed
        and issues a ticket of its own, so it takes neither from the session."""
        self._identity = session.identity
        if session.peer_kind != PEER_PSK:
            # RFC 5246 §7.3, RFC 5077 §3.4: the resumed session's peer is the one its full
            # handshake authenticated; the certificates themselves are not kept.
            self._peer = PeerCredentials(
                _PEER_TYPE[session.peer_kind],
                session.peer_key,
                session.peer_name or None,
                subject=session.peer_subject if session.peer_kind == PEER_X509 else None,
            )
        self._created = session.created
        self._binding = session.binding
        self._master = session.master_secret
        if not server:
            self._session_id = session.session_id
            self._ticket, self._ticket_lifetime = session.ticket, session.ticket_lifetime
        self._install_key_block()

    def _resume_as_server(self, session: ResumableSession, parts: list[_FlightPart], now: float) -> None:
        self._resumed = True
        self._take_up(session, server=True)
        if self._ticket_promised:
            parts += self._ticket_parts(self._session_record())
        parts.append((0, CHANGE_CIPHER_SPEC, b"\x01"))
        parts += self._finished_parts(b"server finished")
        self._state = _State.WAIT_FINISHED
        # Not the last flight in an abbreviated handshake: it has a timer (RFC 6347 §4.2.4).
        self._start_flight(parts, now, timer=True)

    def _ticket_parts(self, session: ResumableSession) -> list[_FlightPart]:
        keys = self.config.ticket_keys
        assert keys is not None
        sealed = keys.seal(session, self.config.random)
        body = NewSessionTicket(keys.lifetime_hint, sealed).to_bytes()
        self._ticket_promised = False
        return self._handshake_parts(0, body, HandshakeType.NEW_SESSION_TICKET)

    def _forget_session(self) -> None:
        self._resumable = False
        if self.role is DtlsRole.SERVER and self.config.session_cache is not None and self._session_id:
            self.config.session_cache.remove(self._session_id)

    def _server_key_schedule(self, message: ReassembledMessage, now: float) -> None:
        key_exchange = self._parse(message)
        assert isinstance(key_exchange, ClientKeyExchange)
        assert self.config.psk_lookup is not None
        psk = self.config.psk_lookup(key_exchange.psk_identity)
        if psk is None:
            raise HandshakeAborted(
                UNKNOWN_PSK_IDENTITY, f"unknown PSK identity {key_exchange.psk_identity!r}"
            )
        premaster = None
        if self._suite == TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA256:
            try:
                point = EcdhClientKeyExchange.parse(key_exchange.exchange_keys).point
            except ProtocolError as error:
                raise HandshakeAborted(DECODE_ERROR, f"a malformed ECDH point: {error}") from None
            premaster = self._ecdhe_psk_premaster(self._shared_secret(point), psk)
        elif key_exchange.exchange_keys:
            raise HandshakeAborted(DECODE_ERROR, "a PSK ClientKeyExchange with bytes after the identity")
        self._identity = key_exchange.psk_identity
        self._transcript.append(message.to_bytes())
        self._install_keys(psk, premaster)
        self._state = _State.WAIT_FINISHED
        # The server's flight is answered: no more retransmissions until its last flight.
        self._timer = None
        self._drain_early(now)

    # --- both ------------------------------------------------------------------------------

    def _handshake_hash(self) -> bytes:
        return hashlib.sha256(self._transcript_bytes()).digest()

    def _transcript_bytes(self) -> bytes:
        # The messages as the handshake hash covers them: DTLS headers (RFC 6347 §4.2.6) or,
        # over a stream, TLS ones (RFC 5246 §7.4.9).
        if self._stream is not None:
            return tls_transcript(self._transcript)
        return b"".join(self._transcript)

    def _install_keys(self, psk: bytes, premaster: bytes | None = None) -> None:
        if premaster is None:
            try:
                premaster = psk_premaster_secret(psk)
            except SecurityError as error:
                raise HandshakeAborted(INTERNAL_ERROR, f"unusable PSK: {error}") from None
        if self._use_ems:
            # RFC 7627 §4: the session hash covers the messages up to the ClientKeyExchange.
            self._master = extended_master_secret(premaster, self._handshake_hash())
        else:
            self._master = master_secret(premaster, self._client_random, self._server_random)
        self._binding = credential_binding(self._master, psk)
        self._install_key_block()

    def _install_key_block(self) -> None:
        # RFC 5246 §6.3: a resumed session has the same master secret and new randoms.
        client: AeadProtection | CbcProtection
        server: AeadProtection | CbcProtection
        if self._suite in CBC_SUITES:
            # RFC 5246 §6.3 for AES-128-CBC with HMAC-SHA256: 32-byte MAC keys first, 16-byte
            # keys, and no fixed IV (every record carries its own, §6.2.3.2).
            keys = key_block(
                self._master, self._client_random, self._server_random, iv_length=0, mac_key_length=32
            )
            random = self.config.random
            client = CbcProtection(keys.client_write_mac_key, keys.client_write_key, random=random)
            server = CbcProtection(keys.server_write_mac_key, keys.server_write_key, random=random)
        else:
            keys = key_block(self._master, self._client_random, self._server_random)
            algorithm = SUITE_ALGORITHMS[self._suite]
            client = AeadProtection(algorithm, keys.client_write_key, keys.client_write_iv)
            server = AeadProtection(algorithm, keys.server_write_key, keys.server_write_iv)
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
        if self._resumed and self.role is DtlsRole.CLIENT:
            # RFC 5246 §7.3: in an abbreviated handshake the client's Finished comes last, and
            # that flight has no timer: it is sent again when the server's is seen again.
            parts: list[_FlightPart] = [(0, CHANGE_CIPHER_SPEC, b"\x01")]
            parts += self._finished_parts(b"client finished")
            self._start_flight(parts, now, timer=False)
        elif self.role is DtlsRole.SERVER and not self._resumed:
            cache = self.config.session_cache if self._session_id else None
            # One record of the session for the ticket and the cache (a dataclass checked
            # field by field: made once per handshake).
            session = self._session_record() if self._ticket_promised or cache is not None else None
            parts = self._ticket_parts(session) if session is not None and self._ticket_promised else []
            parts.append((0, CHANGE_CIPHER_SPEC, b"\x01"))
            parts += self._finished_parts(b"server finished")
            # The last flight has no timer: it is sent again only when the client's
            # Finished flight is seen again (RFC 6347 §4.2.4).
            self._start_flight(parts, now, timer=False)
            if cache is not None and session is not None:
                cache.store(session)
        else:
            # The peer's Finished shows it has all of ours: nothing will be sent again.
            self._timer = None
            self._flight = []
        self._resumable = self._use_ems
        self._state = _State.ESTABLISHED
        # Both Finished values are computed: the transcript is no longer needed, nor the
        # ephemeral ECDH key (dropping it is what gives forward secrecy, RFC 8422 §2).
        self._transcript = []
        self._ecdhe = None
        self._events.append(HandshakeComplete(self._identity, resumed=self._resumed, peer=self._peer))
        self._events.extend(ApplicationData(data) for data in self._early_data)
        self._early_data = []

    def _drain_early(self, now: float) -> None:
        early, self._early = self._early, []
        for record in early:
            self._receive_record(record, now)
            if self._state in (_State.CLOSED, _State.FAILED):
                return

    # --- ECDHE_PSK (RFC 5489 §2) ----------------------------------------------------------------

    def _psk_server_params(self, params: bytes) -> None:
        # What follows the identity hint: nothing for plain PSK, the ECDH params for ECDHE_PSK.
        if self._suite != TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA256:
            if params:
                raise HandshakeAborted(DECODE_ERROR, "a PSK ServerKeyExchange with bytes after the hint")
            return
        if self._peer_point:
            raise HandshakeAborted(UNEXPECTED_MESSAGE, "a second ServerKeyExchange")
        try:
            parsed = ServerEcdhParams.parse(params)
        except ProtocolError as error:
            raise HandshakeAborted(DECODE_ERROR, f"malformed ECDH params: {error}") from None
        if parsed.named_curve != SECP256R1:
            raise HandshakeAborted(ILLEGAL_PARAMETER, f"curve {parsed.named_curve} was not offered")
        try:
            load_point(parsed.point)
        except InvalidPeerKey as error:
            raise HandshakeAborted(ILLEGAL_PARAMETER, str(error)) from None
        self._peer_point = parsed.point

    @staticmethod
    def _ecdhe_psk_premaster(shared: bytes, psk: bytes) -> bytes:
        try:
            return ecdhe_psk_premaster_secret(shared, psk)
        except SecurityError as error:
            raise HandshakeAborted(INTERNAL_ERROR, f"unusable PSK: {error}") from None

    # --- ECDHE_ECDSA (RFC 8422 §5, RFC 5246 §7.4.2-§7.4.8, RFC 7250) ---------------------------

    def _offered_suites(self) -> tuple[int, ...]:
        certificate = self.config.certificate is not None
        with_psk = not certificate or bool(self.config.psk)
        suites: tuple[int, ...] = self.config.ecdsa_suites if certificate else ()
        if with_psk:
            suites += self.config.psk_suites
        # The CBC suites last, each only with the credentials its handshake needs.
        for suite in self.config.cbc_suites:
            if certificate if suite == TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256 else with_psk:
                suites += (suite,)
        return suites

    def _ecdsa_extensions(self) -> tuple[Extension, ...]:
        credentials = self.config.certificate
        if credentials is None:
            return ()
        # RFC 8422 §5.1 and RFC 5246 §7.4.1.4.1: what we take, so that the server signs with
        # ECDSA-SHA256 on secp256r1; RFC 7250 §4.1: the certificate types.
        extensions: tuple[Extension, ...] = (
            SupportedGroupsExtension((SECP256R1,)),
            EcPointFormatsExtension((0,)),
            SignatureAlgorithmsExtension((ECDSA_SECP256R1_SHA256,)),
        )
        client, server = offered_types(credentials)
        if client is not None:
            extensions += (client,)
        if server is not None:
            extensions += (server,)
        return extensions

    def _choose_suite(self, hello: ClientHello) -> int:
        if self.config.certificate is not None and self._ecdsa_acceptable(hello):
            for suite in self.config.ecdsa_suites:
                if suite in hello.cipher_suites:
                    return suite
        if self.config.psk_lookup is not None:
            for suite in self.config.psk_suites:
                if suite in hello.cipher_suites:
                    return suite
        # The CBC suites only when enabled and no AEAD suite fits (MAC-then-encrypt leaks timing).
        for suite in self.config.cbc_suites:
            if suite not in hello.cipher_suites:
                continue
            if suite == TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256:
                if self.config.certificate is not None and self._ecdsa_acceptable(hello):
                    return suite
            elif self.config.psk_lookup is not None and (
                suite == TLS_PSK_WITH_AES_128_CBC_SHA256 or self._ecdhe_acceptable(hello)
            ):
                return suite
        raise HandshakeAborted(HANDSHAKE_FAILURE, "the client offers no cipher suite in common")

    @staticmethod
    def _ecdhe_acceptable(hello: ClientHello) -> bool:
        # RFC 8422 §5.1: without supported_groups or ec_point_formats any curve and the
        # uncompressed form will do; with them, ours must be listed.
        groups = hello.extension(ExtensionType.SUPPORTED_GROUPS)
        if isinstance(groups, SupportedGroupsExtension) and SECP256R1 not in groups.groups:
            return False
        formats = hello.extension(ExtensionType.EC_POINT_FORMATS)
        return not (isinstance(formats, EcPointFormatsExtension) and 0 not in formats.formats)

    @classmethod
    def _ecdsa_acceptable(cls, hello: ClientHello) -> bool:
        if not cls._ecdhe_acceptable(hello):
            return False
        # RFC 5246 §7.4.1.4.1: a client without signature_algorithms expects SHA-1, which we
        # do not sign with.
        algorithms = hello.extension(ExtensionType.SIGNATURE_ALGORITHMS)
        return isinstance(algorithms, SignatureAlgorithmsExtension) and (
            ECDSA_SECP256R1_SHA256 in algorithms.algorithms
        )

    def _ecdsa_server_extensions(self, hello: ClientHello) -> tuple[Extension, ...]:
        credentials = self.config.certificate
        assert credentials is not None
        client_offer = hello.extension(ExtensionType.CLIENT_CERTIFICATE_TYPE)
        server_offer = hello.extension(ExtensionType.SERVER_CERTIFICATE_TYPE)
        client_offer = client_offer if isinstance(client_offer, ClientCertificateTypeExtension) else None
        server_offer = server_offer if isinstance(server_offer, ServerCertificateTypeExtension) else None
        try:
            self._peer_type, self._own_type = choose_types(credentials, client_offer, server_offer)
        except CertificateTypeMismatch as error:
            raise HandshakeAborted(UNSUPPORTED_CERTIFICATE, str(error)) from None
        extensions: tuple[Extension, ...] = ()
        if hello.extension(ExtensionType.EC_POINT_FORMATS) is not None:
            extensions += (EcPointFormatsExtension((0,)),)  # RFC 8422 §5.2
        # RFC 7250 §4.2: each type answered only when the client offered the extension.
        if client_offer is not None:
            extensions += (ClientCertificateTypeExtension((self._peer_type,), answer=True),)
        if server_offer is not None:
            extensions += (ServerCertificateTypeExtension((self._own_type,), answer=True),)
        return extensions

    def _ecdsa_server_parts(self) -> list[_FlightPart]:
        # Certificate, ServerKeyExchange, CertificateRequest (RFC 5246 §7.3): done only after
        # the cookie checked out, as the key generation and signature cost the most.
        credentials = self.config.certificate
        assert credentials is not None
        self._ecdhe = EcdheKeyPair()
        params = ServerEcdhParams(SECP256R1, self._ecdhe.point)
        content = server_params_content(self._client_random, self._server_random, params)
        exchange = EcdheServerKeyExchange(params, ecdsa_sign(credentials.private_key, content))
        own = credentials.own_certificate(self._own_type).to_bytes()
        parts = self._handshake_parts(0, own, HandshakeType.CERTIFICATE)
        parts += self._handshake_parts(0, exchange.to_bytes(), HandshakeType.SERVER_KEY_EXCHANGE)
        # LwM2M authenticates both ends: the client's certificate or key is always asked for.
        request = CertificateRequest()
        parts += self._handshake_parts(0, request.to_bytes(), HandshakeType.CERTIFICATE_REQUEST)
        self._certificate_requested = True
        return parts

    def _ecdsa_server_hello(self, hello: ServerHello) -> None:
        credentials = self.config.certificate
        assert credentials is not None
        client_answer = hello.extension(ExtensionType.CLIENT_CERTIFICATE_TYPE)
        server_answer = hello.extension(ExtensionType.SERVER_CERTIFICATE_TYPE)
        try:
            self._own_type, self._peer_type = answered_types(
                credentials,
                client_answer if isinstance(client_answer, ClientCertificateTypeExtension) else None,
                server_answer if isinstance(server_answer, ServerCertificateTypeExtension) else None,
            )
        except CertificateTypeMismatch as error:
            raise HandshakeAborted(UNSUPPORTED_CERTIFICATE, str(error)) from None

    def _decode(self, parser: Callable[[bytes], _T], message: ReassembledMessage) -> _T:
        try:
            return parser(message.body)
        except ProtocolError as error:
            raise HandshakeAborted(DECODE_ERROR, f"a malformed handshake message: {error}") from None

    def _peer_certificate(self, message: ReassembledMessage, *, peer_is_server: bool) -> None:
        credentials = self.config.certificate
        assert credentials is not None
        if peer_is_server and credentials.expected_name is None and self._server_name is not None:
            # The server is checked against the name the client asked for (RFC 6066 §3).
            credentials = replace(credentials, expected_name=self._server_name)
        certificate = self._decode(lambda body: CertificateMessage.parse(body, self._peer_type), message)
        try:
            self._peer = credentials.check_peer(certificate, peer_is_server=peer_is_server)
        except UnknownCertificateAuthority as error:
            raise HandshakeAborted(UNKNOWN_CA, str(error)) from None
        except CertificateRejected as error:
            raise HandshakeAborted(BAD_CERTIFICATE, str(error)) from None
        self._transcript.append(message.to_bytes())

    def _verify_peer(self, content: bytes, signed: DigitallySigned) -> None:
        assert self._peer is not None
        try:
            ecdsa_verify(peer_public_key(self._peer), content, signed)
        except BadSignature as error:
            raise HandshakeAborted(DECRYPT_ERROR, str(error)) from None

    def _shared_secret(self, point: bytes) -> bytes:
        assert self._ecdhe is not None
        try:
            return self._ecdhe.shared_secret(point)
        except InvalidPeerKey as error:
            raise HandshakeAborted(ILLEGAL_PARAMETER, str(error)) from None

    def _ecdsa_server_flight(self, message: ReassembledMessage, now: float) -> None:
        # The client takes the server's flight in the order of RFC 5246 §7.3: Certificate,
        # ServerKeyExchange, an optional CertificateRequest, ServerHelloDone.
        msg_type = message.msg_type
        if msg_type == HandshakeType.CERTIFICATE and self._peer is None:
            self._peer_certificate(message, peer_is_server=True)
        elif msg_type == HandshakeType.SERVER_KEY_EXCHANGE and self._peer and not self._peer_point:
            exchange = self._decode(EcdheServerKeyExchange.parse, message)
            curve = exchange.params.named_curve
            if curve != SECP256R1:
                raise HandshakeAborted(ILLEGAL_PARAMETER, f"curve {curve} was not offered")
            content = server_params_content(self._client_random, self._server_random, exchange.params)
            self._verify_peer(content, exchange.signed)
            try:
                load_point(exchange.params.point)
            except InvalidPeerKey as error:
                raise HandshakeAborted(ILLEGAL_PARAMETER, str(error)) from None
            self._peer_point = exchange.params.point
            self._transcript.append(message.to_bytes())
        elif msg_type == HandshakeType.CERTIFICATE_REQUEST and self._peer_point:
            if self._certificate_requested:
                raise HandshakeAborted(UNEXPECTED_MESSAGE, "a second CertificateRequest")
            request = self._decode(CertificateRequest.parse, message)
            if ECDSA_SIGN not in request.certificate_types or (
                ECDSA_SECP256R1_SHA256 not in request.algorithms
            ):
                raise HandshakeAborted(HANDSHAKE_FAILURE, "the server asks for a signature we cannot make")
            self._certificate_requested = True
            self._transcript.append(message.to_bytes())
        elif msg_type == HandshakeType.SERVER_HELLO_DONE and self._peer_point:
            self._parse(message)
            self._transcript.append(message.to_bytes())
            self._ecdsa_client_key_exchange(now)
        else:
            raise HandshakeAborted(UNEXPECTED_MESSAGE, f"unexpected message {msg_type} from the server")

    def _ecdsa_client_key_exchange(self, now: float) -> None:
        credentials = self.config.certificate
        assert credentials is not None
        self._ecdhe = EcdheKeyPair()
        premaster = self._shared_secret(self._peer_point)
        parts: list[_FlightPart] = []
        if self._certificate_requested:
            own = credentials.own_certificate(self._own_type).to_bytes()
            parts += self._handshake_parts(0, own, HandshakeType.CERTIFICATE)
        exchange = EcdhClientKeyExchange(self._ecdhe.point)
        parts += self._handshake_parts(0, exchange.to_bytes(), HandshakeType.CLIENT_KEY_EXCHANGE)
        # The session hash of RFC 7627 §4 and the content CertificateVerify signs (RFC 5246
        # §7.4.8) are the same messages: everything up to this ClientKeyExchange.
        self._install_keys(self._own_credential(self._suite) or b"", premaster)
        if self._certificate_requested:
            signed = ecdsa_sign(credentials.private_key, self._transcript_bytes())
            parts += self._handshake_parts(0, signed.to_bytes(), HandshakeType.CERTIFICATE_VERIFY)
        parts.append((0, CHANGE_CIPHER_SPEC, b"\x01"))
        parts += self._finished_parts(b"client finished")
        self._state = _State.WAIT_FINISHED
        self._start_flight(parts, now, timer=True)
        self._drain_early(now)

    def _ecdsa_client_flight(self, message: ReassembledMessage, now: float) -> None:
        # The server takes Certificate, ClientKeyExchange, CertificateVerify (RFC 5246 §7.3).
        msg_type = message.msg_type
        state = self._state
        waiting_exchange = state is _State.WAIT_CLIENT_KEY_EXCHANGE
        if waiting_exchange and msg_type == HandshakeType.CERTIFICATE and not self._peer:
            self._peer_certificate(message, peer_is_server=False)
            assert self._peer is not None
            self._identity = self._peer.identity
        elif waiting_exchange and msg_type == HandshakeType.CLIENT_KEY_EXCHANGE:
            if self._peer is None:
                raise HandshakeAborted(HANDSHAKE_FAILURE, "the client sent no certificate")
            exchange = self._decode(EcdhClientKeyExchange.parse, message)
            premaster = self._shared_secret(exchange.point)
            self._transcript.append(message.to_bytes())
            self._install_keys(self._own_credential(self._suite) or b"", premaster)
            self._state = _State.WAIT_CERTIFICATE_VERIFY
            # The server's flight is answered: no more retransmissions until its last flight.
            # Records that waited for the keys (the Finished) are taken after the rest of this
            # batch (_receive_handshake): the CertificateVerify may be in it, and comes first.
            self._timer = None
        elif state is _State.WAIT_CERTIFICATE_VERIFY and msg_type == HandshakeType.CERTIFICATE_VERIFY:
            signed = self._decode(DigitallySigned.parse, message)
            self._verify_peer(self._transcript_bytes(), signed)
            self._transcript.append(message.to_bytes())
            self._state = _State.WAIT_FINISHED
        else:
            raise HandshakeAborted(UNEXPECTED_MESSAGE, f"unexpected message {msg_type} in {state.name}")


# RFC 5746: the signalling cipher suite value and the extension of secure renegotiation.
def _renegotiation_info(hello: ClientHello) -> tuple[Extension, ...]:
    """The server's renegotiation_info answer (RFC 5746 §3.6): empty, for a first handshake,
    whenever the client signals support; OpenSSL clients refuse a server without it. We never
    renegotiate, so this only tells the client that no renegotiation can be spliced in."""
    offered = hello.extension(ExtensionType.RENEGOTIATION_INFO)
    if offered is not None and offered.data() != b"\x00":
        # A non-empty renegotiated_connection on a first handshake (RFC 5746 §3.6).
        raise HandshakeAborted(HANDSHAKE_FAILURE, "renegotiation_info of a renegotiation")
    if offered is None and TLS_EMPTY_RENEGOTIATION_INFO_SCSV not in hello.cipher_suites:
        return ()
    return (UnknownExtension(ExtensionType.RENEGOTIATION_INFO, b"\x00"),)
