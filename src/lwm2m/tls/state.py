"""Session and connection state as bytes: what resumption keeps, and what an established DTLS
connection needs to go on sending and receiving after a restart or on another node.

- :class:`ResumableSession` is the session state of RFC 5246 §7.3 that an abbreviated handshake
  resumes from: session id, cipher suite, master secret, the peer's identity, and whether the
  master secret is an extended one (RFC 7627 §5.3 forbids resuming across that line); plus,
  on the client, the ticket of RFC 5077 §3.3 and its lifetime hint. It is what the server's
  session cache holds, what a ticket carries inside its encryption, and what a client keeps to
  offer next time. Its ``binding`` ties it to the credential of its full handshake, so that a
  session of a PSK since replaced is not resumed. It also keeps the server name of RFC 6066 §3
  (a server resumes a session only under the name it was made with) and the record limits of
  RFC 6066 §4 and RFC 8449 §4 negotiated in the handshake it comes from.
- :class:`ConnectionState` adds what the record layer of an established connection holds
  (RFC 6347 §4.1): the randoms the key block is expanded from (RFC 5246 §6.3), the epoch, the
  next write sequence number, the read epoch's replay window (RFC 6347 §4.1.2.6) and the
  Connection IDs of RFC 9146.

The encoding is a version byte, a kind byte and fixed fields or length-prefixed vectors, big
endian; no pickle, so reading bytes from a store runs no code. Anything that does not read back
raises :class:`~lwm2m.errors.SessionStateError` naming the field. The bytes hold the master
secret: a caller keeps them as it keeps keys. Version 2 appends the server name and the record
limits to the session fields; version 1 bytes (stored before) still read, with no name and the
default limits, so that sessions and parked connections survive an upgrade. Version 3 appends
who the peer of the session proved to be, for ECDHE_ECDSA sessions (RFC 8422, RFC 7250): the
kind of its credentials (PSK, X.509 or raw public key), its SubjectPublicKeyInfo DER, its name
(X.509: CN) and its certificate's subject (RFC 4514 text), so that a resumed or restored
certificate session knows its peer as the full handshake did (RFC 5246 §7.3: a session's state
holds the peer certificate); versions 1 and 2 read as PSK sessions.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import struct
from dataclasses import dataclass
from typing import Final, Self

from lwm2m.errors import SessionStateError

__all__ = ["PEER_PSK", "PEER_RPK", "PEER_X509", "ConnectionState", "ResumableSession", "credential_binding"]

FORMAT_VERSION: Final = 3
_READABLE_VERSIONS: Final = (1, 2, 3)
# The kinds of peer credentials a session was made with (``ResumableSession.peer_kind``).
PEER_PSK: Final = 0
PEER_X509: Final = 1
PEER_RPK: Final = 2
_PEER_KINDS: Final = (PEER_PSK, PEER_X509, PEER_RPK)
_KIND_SESSION: Final = 1
_KIND_CONNECTION: Final = 2
MASTER_SECRET_LENGTH: Final = 48  # RFC 5246 §8.1
RANDOM_LENGTH: Final = 32
MAX_SESSION_ID_LENGTH: Final = 32  # RFC 5246 §7.4.1.2
MAX_SEQUENCE: Final = 2**48 - 1  # RFC 6347 §4.1: a 48-bit sequence_number
WINDOW_BITS: Final = 64  # the replay window the connection keeps (RFC 6347 §4.1.2.6)
_FLAG_EMS: Final = 1
_FLAG_SERVER: Final = 2
_FLAG_CID: Final = 4
_FLAG_READ: Final = 8  # the read epoch has accepted a record: highest and bitmap follow
BINDING_LENGTH: Final = 16
MAX_BINDING_LENGTH: Final = 32
MAX_SERVER_NAME_LENGTH: Final = 255  # RFC 1035 §2.3.4: a DNS name has at most 255 octets
# RFC 8449 §4: the smallest limit a peer may send, and the default one (2^14 + 1); a record
# limit of the state is a plaintext bound, as SizeLimits keeps it.
MIN_RECORD_LIMIT: Final = 64
DEFAULT_RECORD_LIMIT: Final = 2**14 + 1


def credential_binding(master_secret: bytes, credential: bytes) -> bytes:
    """HMAC-SHA256(master secret, credential), truncated: what ties a session to the PSK (or
    other credential) of its full handshake. Keyed by the session's own secret, so the bytes
    say nothing about the credential to anyone who does not hold the session already."""
    return hmac.digest(master_secret, credential, hashlib.sha256)[:BINDING_LENGTH]


class _Reader:
    """Reads fields front to back; every read checks that the bytes are there."""

    __slots__ = ("_at", "_data", "_what")

    def __init__(self, data: bytes, what: str) -> None:
        if not isinstance(data, bytes | bytearray | memoryview):
            raise SessionStateError(f"{what} must be bytes, not {type(data).__name__}")
        self._data = bytes(data)
        self._at = 0
        self._what = what

    @property
    def what(self) -> str:
        return self._what

    def take(self, n: int, field_name: str) -> bytes:
        if n > len(self._data) - self._at:
            raise SessionStateError(
                f"{self._what}: {field_name} needs {n} bytes, {len(self._data) - self._at} remain"
            )
        out = self._data[self._at : self._at + n]
        self._at += n
        return out

    def uint(self, size: int, field_name: str) -> int:
        return int.from_bytes(self.take(size, field_name), "big")

    def vector(self, length_size: int, field_name: str, high: int) -> bytes:
        n = self.uint(length_size, f"the length of {field_name}")
        if n > high:
            raise SessionStateError(f"{self._what}: {field_name} is {n} bytes, more than {high}")
        return self.take(n, field_name)

    def text(self, field_name: str) -> str:
        """A UTF-8 string<0..2^16-1>."""
        try:
            return self.vector(2, field_name, 0xFFFF).decode()
        except UnicodeDecodeError:
            raise SessionStateError(f"{self._what}: {field_name} is not UTF-8") from None

    def time(self, field_name: str) -> float:
        (value,) = struct.unpack(">d", self.take(8, field_name))
        if not math.isfinite(value):
            raise SessionStateError(f"{self._what}: {field_name} is not a finite time")
        return float(value)

    def header(self, kind: int) -> int:
        """Check the version and kind bytes; the version, for fields that came later."""
        version = self.uint(1, "the format version")
        if version not in _READABLE_VERSIONS:
            raise SessionStateError(
                f"{self._what}: format version {version}, this code reads {_READABLE_VERSIONS}"
            )
        found = self.uint(1, "the kind")
        if found != kind:
            raise SessionStateError(f"{self._what}: kind {found}, not {kind}")
        return version

    def done(self) -> None:
        if self._at != len(self._data):
            raise SessionStateError(f"{self._what}: {len(self._data) - self._at} bytes after the end")


def _vector(length_size: int, value: bytes, field_name: str, high: int) -> bytes:
    if len(value) > high:
        raise SessionStateError(f"{field_name} is {len(value)} bytes, more than {high}")
    return len(value).to_bytes(length_size, "big") + value


def _time(value: float, field_name: str) -> bytes:
    if not math.isfinite(value):
        raise SessionStateError(f"{field_name} is not a finite time")
    return struct.pack(">d", value)


@dataclass(frozen=True, slots=True)
class ResumableSession:
    """What an abbreviated handshake resumes (RFC 5246 §7.3, RFC 5077 §3.4, RFC 7627 §5.3).

    ``created`` is the ``now`` of the full handshake that made the session (the caller's clock:
    one that survives a restart, such as wall-clock seconds, if sessions are to survive one);
    lifetimes count from it, and resuming does not renew it. ``ticket`` and ``ticket_lifetime``
    are the client's copy of the server's NewSessionTicket (empty and 0 elsewhere).
    ``binding`` is :func:`credential_binding` of the credential the session was made with
    (empty: not bound). ``server_name`` is the DNS name of RFC 6066 §3 of that handshake (empty:
    none); ``send_limit`` and ``receive_limit`` are the record plaintext bounds it negotiated
    (RFC 8449 §4, RFC 6066 §4; ``receive_limit`` None: no bound beyond DTLS 1.2's own).
    ``peer_kind`` says what the peer authenticated with (:data:`PEER_PSK`, :data:`PEER_X509`,
    :data:`PEER_RPK`); for the last two ``peer_key`` is its SubjectPublicKeyInfo DER,
    ``peer_name`` its name (X.509: subject CN; empty: none) and ``peer_subject`` the subject
    of its certificate (RFC 4514 text, X.509 only). With a PSK they are empty.
    """

    session_id: bytes
    cipher_suite: int
    master_secret: bytes
    identity: bytes
    extended_master_secret: bool
    created: float
    ticket: bytes = b""
    ticket_lifetime: int = 0
    binding: bytes = b""
    server_name: str = ""
    send_limit: int = DEFAULT_RECORD_LIMIT
    receive_limit: int | None = None
    peer_kind: int = PEER_PSK
    peer_key: bytes = b""
    peer_name: str = ""
    peer_subject: str = ""

    def __post_init__(self) -> None:
        if len(self.session_id) > MAX_SESSION_ID_LENGTH:
            raise SessionStateError(f"a session id has at most 32 bytes, not {len(self.session_id)}")
        if not 0 <= self.cipher_suite <= 0xFFFF:
            raise SessionStateError(f"cipher suite {self.cipher_suite} does not fit in 16 bits")
        if len(self.master_secret) != MASTER_SECRET_LENGTH:
            raise SessionStateError(f"a master secret has 48 bytes, not {len(self.master_secret)}")
        if len(self.identity) > 0xFFFF or len(self.ticket) > 0xFFFF:
            raise SessionStateError("an identity or a ticket has at most 65535 bytes")
        if not 0 <= self.ticket_lifetime <= 0xFFFFFFFF:
            raise SessionStateError(f"ticket lifetime {self.ticket_lifetime} does not fit in 32 bits")
        if not math.isfinite(self.created):
            raise SessionStateError("the creation time is not finite")
        if len(self.binding) > MAX_BINDING_LENGTH:
            raise SessionStateError(f"a credential binding has at most 32 bytes, not {len(self.binding)}")
        if not self.server_name.isascii() or len(self.server_name) > MAX_SERVER_NAME_LENGTH:
            # RFC 6066 §3: a host_name is ASCII (A-labels), and a DNS name fits in 255 octets.
            raise SessionStateError("a server name is ASCII of at most 255 characters")
        for limit in (self.send_limit, self.receive_limit):
            if limit is not None and not MIN_RECORD_LIMIT <= limit <= DEFAULT_RECORD_LIMIT:
                raise SessionStateError(
                    f"record limit {limit} is not {MIN_RECORD_LIMIT}..{DEFAULT_RECORD_LIMIT}"
                )
        if self.peer_kind not in _PEER_KINDS:
            raise SessionStateError(f"unknown peer credential kind {self.peer_kind}")
        if self.peer_kind == PEER_PSK and (self.peer_key or self.peer_name or self.peer_subject):
            raise SessionStateError("a PSK session has no peer key, name or subject")
        if self.peer_kind != PEER_PSK and not self.peer_key:
            raise SessionStateError("a certificate or raw public key session needs the peer's key")
        if max(len(self.peer_key), len(self.peer_name.encode()), len(self.peer_subject.encode())) > 0xFFFF:
            raise SessionStateError("a peer key, name or subject has at most 65535 bytes")

    def bound_to(self, credential: bytes) -> bool:
        """True if the session was made with ``credential`` (or is not bound to one)."""
        if not self.binding:
            return True
        return hmac.compare_digest(credential_binding(self.master_secret, credential), self.binding)

    @property
    def resumable(self) -> bool:
        """True if a client can offer it: it has an id or a ticket, and an extended master
        secret (RFC 7627 §5.3: a client should not offer to resume a session without one)."""
        return self.extended_master_secret and bool(self.session_id or self.ticket)

    def to_bytes(self) -> bytes:
        return bytes((FORMAT_VERSION, _KIND_SESSION)) + self._fields()

    def ticket_state(self) -> bytes:
        """What a ticket seals of this session (RFC 5077 §4): :meth:`to_bytes` of it without
        its session id, ticket and ticket lifetime (a resuming client sends its own id, §3.4),
        with no copy of the session made for it."""
        return bytes((FORMAT_VERSION, _KIND_SESSION)) + self._fields(bare=True)

    def _fields(self, *, bare: bool = False) -> bytes:
        session_id, ticket, lifetime = (
            (b"", b"", 0) if bare else (self.session_id, self.ticket, self.ticket_lifetime)
        )
        return b"".join(
            (
                bytes((_FLAG_EMS if self.extended_master_secret else 0,)),
                self.cipher_suite.to_bytes(2, "big"),
                self.master_secret,
                _time(self.created, "created"),
                _vector(1, session_id, "session_id", MAX_SESSION_ID_LENGTH),
                _vector(2, self.identity, "identity", 0xFFFF),
                _vector(2, ticket, "ticket", 0xFFFF),
                lifetime.to_bytes(4, "big"),
                _vector(1, self.binding, "binding", MAX_BINDING_LENGTH),
                # Version 2 from here.
                _vector(1, self.server_name.encode("ascii"), "server_name", MAX_SERVER_NAME_LENGTH),
                self.send_limit.to_bytes(2, "big"),
                # 0 for None: a limit is never below 64.
                (self.receive_limit or 0).to_bytes(2, "big"),
                # Version 3 from here.
                bytes((self.peer_kind,)),
                _vector(2, self.peer_key, "peer_key", 0xFFFF),
                _vector(2, self.peer_name.encode(), "peer_name", 0xFFFF),
                _vector(2, self.peer_subject.encode(), "peer_subject", 0xFFFF),
            )
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        """The session of :meth:`to_bytes`; :class:`SessionStateError` for anything else."""
        reader = _Reader(data, "session state")
        version = reader.header(_KIND_SESSION)
        session = cls._read(reader, version)
        reader.done()
        return session

    @classmethod
    def _read(cls, reader: _Reader, version: int) -> Self:
        flags = reader.uint(1, "flags")
        if flags & ~_FLAG_EMS:
            raise SessionStateError(f"session state: unknown flags {flags:#04x}")
        suite = reader.uint(2, "cipher_suite")
        master = reader.take(MASTER_SECRET_LENGTH, "master_secret")
        created = reader.time("created")
        session_id = reader.vector(1, "session_id", MAX_SESSION_ID_LENGTH)
        identity = reader.vector(2, "identity", 0xFFFF)
        ticket = reader.vector(2, "ticket", 0xFFFF)
        lifetime = reader.uint(4, "ticket_lifetime")
        binding = reader.vector(1, "binding", MAX_BINDING_LENGTH)
        ems = bool(flags & _FLAG_EMS)
        if version == 1:
            # Stored before names and limits were kept: none, and the defaults.
            return cls(session_id, suite, master, identity, ems, created, ticket, lifetime, binding)
        name = reader.vector(1, "server_name", MAX_SERVER_NAME_LENGTH)
        if not name.isascii():
            raise SessionStateError(f"{reader.what}: server_name is not ASCII")
        send_limit = reader.uint(2, "send_limit")
        receive_limit = reader.uint(2, "receive_limit") or None
        peer: tuple[int, bytes, str, str] = (PEER_PSK, b"", "", "")
        if version >= 3:
            # Stored before certificate sessions were kept: a PSK session.
            kind = reader.uint(1, "peer_kind")
            key = reader.vector(2, "peer_key", 0xFFFF)
            peer = (kind, key, reader.text("peer_name"), reader.text("peer_subject"))
        return cls(
            session_id,
            suite,
            master,
            identity,
            ems,
            created,
            ticket,
            lifetime,
            binding,
            name.decode("ascii"),
            send_limit,
            receive_limit,
            *peer,
        )


@dataclass(frozen=True, slots=True)
class ConnectionState:
    """An established connection as the record layer holds it (RFC 6347 §4.1).

    ``write_sequence`` is the next sequence number to send in ``epoch``; the exporter has
    already moved it past every number the live connection may still use (see
    :meth:`lwm2m.tls.connection.DtlsConnection.export_state`), so that the restored connection
    never sends a nonce twice under its key (RFC 5246 §6.2.3.3). ``read_highest`` (None before
    the first record) and ``read_bitmap`` (bit ``i`` = ``read_highest - i`` was received) are
    the replay window of the read epoch.
    """

    server: bool
    session: ResumableSession
    client_random: bytes
    server_random: bytes
    epoch: int
    write_sequence: int
    read_highest: int | None
    read_bitmap: int
    cid_negotiated: bool
    own_cid: bytes
    peer_cid: bytes

    def __post_init__(self) -> None:
        if len(self.client_random) != RANDOM_LENGTH or len(self.server_random) != RANDOM_LENGTH:
            raise SessionStateError("the client and server randoms have 32 bytes each")
        if not 0 <= self.epoch <= 0xFFFF:
            raise SessionStateError(f"epoch {self.epoch} does not fit in 16 bits")
        if not 0 <= self.write_sequence <= MAX_SEQUENCE:
            raise SessionStateError(f"write sequence number {self.write_sequence} does not fit in 48 bits")
        if self.read_highest is not None and not 0 <= self.read_highest <= MAX_SEQUENCE:
            raise SessionStateError(f"read sequence number {self.read_highest} does not fit in 48 bits")
        if not 0 <= self.read_bitmap < 1 << WINDOW_BITS:
            raise SessionStateError("the replay bitmap has 64 bits")
        if len(self.own_cid) > 0xFF or len(self.peer_cid) > 0xFF:
            raise SessionStateError("a connection ID has at most 255 bytes (RFC 9146 §3)")

    def to_bytes(self) -> bytes:
        flags = (_FLAG_SERVER if self.server else 0) | (_FLAG_CID if self.cid_negotiated else 0)
        read = b""
        if self.read_highest is not None:
            flags |= _FLAG_READ
            read = self.read_highest.to_bytes(6, "big") + self.read_bitmap.to_bytes(8, "big")
        return b"".join(
            (
                bytes((FORMAT_VERSION, _KIND_CONNECTION, flags)),
                self.session._fields(),
                self.client_random,
                self.server_random,
                self.epoch.to_bytes(2, "big"),
                self.write_sequence.to_bytes(6, "big"),
                read,
                _vector(1, self.own_cid, "own_cid", 0xFF),
                _vector(1, self.peer_cid, "peer_cid", 0xFF),
            )
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        """The state of :meth:`to_bytes`; :class:`SessionStateError` for anything else."""
        reader = _Reader(data, "connection state")
        version = reader.header(_KIND_CONNECTION)
        flags = reader.uint(1, "flags")
        if flags & ~(_FLAG_SERVER | _FLAG_CID | _FLAG_READ):
            raise SessionStateError(f"connection state: unknown flags {flags:#04x}")
        session = ResumableSession._read(reader, version)
        client_random = reader.take(RANDOM_LENGTH, "client_random")
        server_random = reader.take(RANDOM_LENGTH, "server_random")
        epoch = reader.uint(2, "epoch")
        write_sequence = reader.uint(6, "write_sequence")
        highest: int | None = None
        bitmap = 0
        if flags & _FLAG_READ:
            highest = reader.uint(6, "read_highest")
            bitmap = reader.uint(8, "read_bitmap")
        own_cid = reader.vector(1, "own_cid", 0xFF)
        peer_cid = reader.vector(1, "peer_cid", 0xFF)
        reader.done()
        return cls(
            server=bool(flags & _FLAG_SERVER),
            session=session,
            client_random=client_random,
            server_random=server_random,
            epoch=epoch,
            write_sequence=write_sequence,
            read_highest=highest,
            read_bitmap=bitmap,
            cid_negotiated=bool(flags & _FLAG_CID),
            own_cid=own_cid,
            peer_cid=peer_cid,
        )
