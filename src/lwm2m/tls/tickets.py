"""What a server keeps, or does not keep, to resume sessions: the session cache of RFC 5246
§7.3 and the stateless session tickets of RFC 5077.

- :class:`NewSessionTicket` is the handshake message of RFC 5077 §3.3 (lifetime hint and the
  opaque ticket); the ``SessionTicket`` extension that carries a ticket back is
  :class:`~lwm2m.tls.messages.SessionTicketExtension` (§3.2).
- :class:`TicketKeys` seals a :class:`~lwm2m.tls.state.ResumableSession` into a ticket under
  the server's own key, in the shape RFC 5077 §4 recommends (a key name, then the encrypted
  state) with AES-256-GCM as the authenticated encryption, so the server keeps nothing per
  ticket. The key rotates; tickets under the previous key still open until the next rotation.
- :class:`SessionCache` is the bounded table session id -> session for resumption by id
  (RFC 5246 §7.4.1.2 lets a server forget a session at any time: the oldest go first).

A ticket that does not open, is too old or names no key of ours is not an error: the
server then makes a full handshake (RFC 5077 §3.4).
"""

from __future__ import annotations

import hashlib
import hmac
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Final, Self

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from lwm2m.errors import DtlsError, HandshakeFormatError, SessionStateError
from lwm2m.tls.messages import HandshakeType
from lwm2m.tls.state import ResumableSession

__all__ = ["NewSessionTicket", "SessionCache", "TicketKeys"]

KEY_NAME_LENGTH: Final = 16  # RFC 5077 §4: opaque key_name[16]
NONCE_LENGTH: Final = 12
TAG_LENGTH: Final = 16
MIN_TICKET_SECRET: Final = 32
DEFAULT_LIFETIME: Final = 24 * 3600.0  # seconds
MAX_TICKET_LENGTH: Final = 0xFFFF  # RFC 5077 §3.3: opaque ticket<0..2^16-1>


@dataclass(frozen=True, slots=True)
class NewSessionTicket:
    """NewSessionTicket (RFC 5077 §3.3): uint32 ticket_lifetime_hint (seconds, 0: unspecified)
    and opaque ticket<0..2^16-1>."""

    lifetime_hint: int
    ticket: bytes
    msg_type: ClassVar[int] = HandshakeType.NEW_SESSION_TICKET

    @classmethod
    def parse(cls, body: bytes) -> Self:
        if len(body) < 6:
            raise HandshakeFormatError(f"NewSessionTicket needs at least 6 bytes, not {len(body)}")
        length = int.from_bytes(body[4:6], "big")
        if len(body) != 6 + length:
            raise HandshakeFormatError(f"NewSessionTicket: a ticket of {length} bytes in {len(body) - 6}")
        return cls(int.from_bytes(body[:4], "big"), bytes(body[6:]))

    def to_bytes(self) -> bytes:
        if not 0 <= self.lifetime_hint <= 0xFFFFFFFF:
            raise HandshakeFormatError(f"ticket lifetime {self.lifetime_hint} does not fit in 32 bits")
        if len(self.ticket) > MAX_TICKET_LENGTH:
            raise HandshakeFormatError(f"a ticket of {len(self.ticket)} bytes is too long")
        return self.lifetime_hint.to_bytes(4, "big") + len(self.ticket).to_bytes(2, "big") + self.ticket


class _TicketKey:
    """One ticket key: its public name and its AEAD, both derived from one secret."""

    __slots__ = ("aead", "name")

    def __init__(self, secret: bytes) -> None:
        if len(secret) < MIN_TICKET_SECRET:
            raise DtlsError(f"a ticket secret needs at least {MIN_TICKET_SECRET} bytes")
        # Two independent values from one secret, so a caller handles a single secret.
        self.name = hmac.digest(secret, b"lwm2m ticket key name", hashlib.sha256)[:KEY_NAME_LENGTH]
        self.aead = AESGCM(hmac.digest(secret, b"lwm2m ticket encryption key", hashlib.sha256))


class TicketKeys:
    """The server's ticket keys (RFC 5077 §4, §5.5): tickets are sealed under the current key;
    :meth:`rotate` makes a new one current and keeps the one before it for opening, so tickets
    already issued go on working until the next rotation. A ticket opens only within
    ``lifetime`` seconds of its session's full handshake."""

    __slots__ = ("_current", "_previous", "lifetime")

    def __init__(
        self, secret: bytes, previous: bytes | None = None, *, lifetime: float = DEFAULT_LIFETIME
    ) -> None:
        if not 0 < lifetime <= 0xFFFFFFFF:
            raise DtlsError(f"a ticket lifetime of {lifetime} s is not 0 < lifetime < 2^32")
        self._current = _TicketKey(secret)
        self._previous = _TicketKey(previous) if previous is not None else None
        self.lifetime = lifetime

    def rotate(self, secret: bytes) -> None:
        """Seal under ``secret`` from now on; the current key is kept for opening only."""
        self._previous, self._current = self._current, _TicketKey(secret)

    def seal(self, session: ResumableSession, random: Callable[[int], bytes]) -> bytes:
        """The ticket for ``session``: key_name ‖ nonce ‖ AES-GCM(state), with the key name as
        additional data. Its session id and any ticket it holds are left out: a resuming
        client sends its own session id (RFC 5077 §3.4)."""
        key = self._current
        nonce = random(NONCE_LENGTH)
        state = session.ticket_state()
        return key.name + nonce + key.aead.encrypt(nonce, state, key.name)

    def open(self, ticket: bytes, now: float) -> ResumableSession | None:
        """The session inside ``ticket``, or None if it is not one of ours (unknown key name,
        does not authenticate, malformed) or its lifetime is over."""
        if len(ticket) < KEY_NAME_LENGTH + NONCE_LENGTH + TAG_LENGTH:
            return None
        name = bytes(ticket[:KEY_NAME_LENGTH])
        # Both names compared every time, in constant time: the time taken says nothing about
        # which key, if any, the name matched.
        current = hmac.compare_digest(name, self._current.name)
        previous = self._previous is not None and hmac.compare_digest(name, self._previous.name)
        if current:
            key = self._current
        elif previous and self._previous is not None:
            key = self._previous
        else:
            return None
        nonce = bytes(ticket[KEY_NAME_LENGTH : KEY_NAME_LENGTH + NONCE_LENGTH])
        try:
            state = key.aead.decrypt(nonce, bytes(ticket[KEY_NAME_LENGTH + NONCE_LENGTH :]), name)
            session = ResumableSession.from_bytes(state)
        except (InvalidTag, SessionStateError):
            return None
        if not session.created <= now <= session.created + self.lifetime:
            return None
        return session

    @property
    def lifetime_hint(self) -> int:
        """The ticket_lifetime_hint to send (RFC 5077 §3.3), whole seconds."""
        return int(self.lifetime)


class SessionCache:
    """Sessions by id for resumption by session id (RFC 5246 §7.3), at most ``max_sessions``
    of them, each for ``lifetime`` seconds after its full handshake; when full, the session
    least recently stored or resumed is forgotten."""

    __slots__ = ("_sessions", "lifetime", "max_sessions")

    def __init__(self, max_sessions: int = 10_000, lifetime: float = DEFAULT_LIFETIME) -> None:
        if max_sessions < 1 or lifetime <= 0:
            raise DtlsError("a session cache holds at least one session for a positive lifetime")
        self.max_sessions = max_sessions
        self.lifetime = lifetime
        self._sessions: OrderedDict[bytes, ResumableSession] = OrderedDict()

    def __len__(self) -> int:
        return len(self._sessions)

    def store(self, session: ResumableSession) -> None:
        """Keep ``session`` under its id (an empty id is not kept)."""
        if not session.session_id:
            return
        self._sessions[session.session_id] = session
        self._sessions.move_to_end(session.session_id)
        while len(self._sessions) > self.max_sessions:
            self._sessions.popitem(last=False)

    def get(self, session_id: bytes, now: float) -> ResumableSession | None:
        """The session with that id, unless unknown or expired (an expired one is dropped)."""
        session = self._sessions.get(bytes(session_id)) if session_id else None
        if session is None:
            return None
        if not session.created <= now <= session.created + self.lifetime:
            del self._sessions[session.session_id]
            return None
        self._sessions.move_to_end(session.session_id)
        return session

    def remove(self, session_id: bytes) -> None:
        """Forget a session (its credentials were revoked, or it ended with a fatal alert)."""
        self._sessions.pop(bytes(session_id), None)
