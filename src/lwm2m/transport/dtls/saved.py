"""A parked DTLS session as bytes: what the session layer keeps for an idle session, and what a
server saves at a clean stop and takes up after its start (RFC 6347 §4.1 state, RFC 9146 CIDs).

The backend's own state (``Connection.save``: for our engine ``DtlsConnection.export_state``)
goes inside, with what the layer knows beside it: the role, the peer's identity, the cipher
suite and the Connection ID the peer's records carry. Layout, big endian: version (1), role
(1: 0 server, 1 client), identity kind<0..255> (empty: none), name<0..2^16-1>,
subject<0..2^16-1>, cipher suite<0..255>, cid<0..255>, state<0..2^32-1>. Lengths are checked
against the bytes left; anything else raises :class:`~lwm2m.errors.SessionStateError`.
The bytes hold the session's keys: keep them as keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from lwm2m.errors import SessionStateError
from lwm2m.transport.dtls.config import PeerIdentity

__all__ = ["SAVED_VERSION", "SavedState", "decode_saved", "encode_saved"]

SAVED_VERSION: Final = 1
_KINDS: Final = ("psk", "rpk", "x509")
_ROLES: Final[tuple[Literal["server"], Literal["client"]]] = ("server", "client")


@dataclass(frozen=True, slots=True)
class SavedState:
    role: Literal["server", "client"]
    identity: PeerIdentity | None
    cipher: str | None
    cid: bytes
    state: bytes


def _vector(size: int, value: bytes) -> bytes:
    if len(value) >= 1 << (8 * size):
        raise SessionStateError(f"a saved session field of {len(value)} bytes does not fit")
    return len(value).to_bytes(size, "big") + value


def encode_saved(saved: SavedState) -> bytes:
    identity = saved.identity
    parts = [bytes((SAVED_VERSION, _ROLES.index(saved.role)))]
    if identity is None:
        parts += [_vector(1, b""), _vector(2, b""), _vector(2, b"")]
    else:
        parts += [
            _vector(1, identity.kind.encode()),
            _vector(2, identity.name.encode()),
            _vector(2, identity.subject.encode()),
        ]
    parts += [
        _vector(1, (saved.cipher or "").encode()),
        _vector(1, saved.cid),
        _vector(4, saved.state),
    ]
    return b"".join(parts)


def decode_saved(data: bytes) -> SavedState:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise SessionStateError(f"a saved session is bytes, not {type(data).__name__}")
    data = bytes(data)
    at = 0

    def take(size: int, what: str) -> bytes:
        nonlocal at
        if len(data) - at < size:
            raise SessionStateError(f"saved session: {what} is cut short")
        out = data[at : at + size]
        at += size
        return out

    def vector(size: int, what: str) -> bytes:
        return take(int.from_bytes(take(size, f"the length of {what}"), "big"), what)

    def text(size: int, what: str) -> str:
        try:
            return vector(size, what).decode()
        except UnicodeDecodeError:
            raise SessionStateError(f"saved session: {what} is not UTF-8") from None

    version, role = take(2, "the header")
    if version != SAVED_VERSION:
        raise SessionStateError(f"saved session: format version {version}, this code reads {SAVED_VERSION}")
    if role >= len(_ROLES):
        raise SessionStateError(f"saved session: role {role}")
    kind = text(1, "the identity kind")
    name = text(2, "the identity name")
    subject = text(2, "the identity subject")
    identity: PeerIdentity | None = None
    if kind:
        if kind not in _KINDS:
            raise SessionStateError(f"saved session: identity kind {kind!r}")
        identity = PeerIdentity(kind, name, subject)  # type: ignore[arg-type]
    elif name or subject:
        raise SessionStateError("saved session: an identity name without a kind")
    cipher = text(1, "the cipher suite") or None
    cid = vector(1, "the connection ID")
    state = vector(4, "the state")
    if at != len(data):
        raise SessionStateError(f"saved session: {len(data) - at} bytes after the end")
    if not state:
        raise SessionStateError("saved session: no state")
    return SavedState(_ROLES[role], identity, cipher, cid, state)
