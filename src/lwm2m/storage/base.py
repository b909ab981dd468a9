"""What a server keeps: registrations, observations, the history of reported values, security
info, and the DTLS sessions and ticket keys it saved at its last clean stop.

Each role is a Protocol with async methods, so that a Redis implementation
(several server nodes sharing one store) fits the same interface as the
in-process memory and SQLite ones; :class:`Store` groups the role stores of one
backend (``lwm2m.storage.open_store`` opens one from a URL). Every write is durable when the method
returns, for the backends that are durable at all; the one exception is
``HistoryStore.add``, durable at the next ``flush()``.
"""

from __future__ import annotations

import asyncio
import fnmatch
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

import msgspec

from lwm2m.errors import ConfigError
from lwm2m.model.jsonform import record_from_json, record_to_json, value_from_json
from lwm2m.model.path import ROOT, Path
from lwm2m.model.record import Record
from lwm2m.model.value import ResourceType, UntypedBytes, infer_type
from lwm2m.protocol.attributes import AttributeChange, Attributes
from lwm2m.protocol.bootstrap_config import BootstrapConfig
from lwm2m.protocol.keys import public_key_der
from lwm2m.protocol.registration import Registration
from lwm2m.storage.campaigns import CampaignStore
from lwm2m.storage.firmware import PackageStore
from lwm2m.storage.labels import LabelStore
from lwm2m.storage.requests import RequestState, StoredRequest
from lwm2m.storage.webhooks import WebhookStore

Source = Literal["notify", "send"]

SOURCES: tuple[Source, ...] = ("notify", "send")


# --- observations ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ObservationBinding:
    """What the notifications of an observation made over OSCORE are verified against (RFC 8613
    §8.4, §4.1.3.5): the kid, Partial IV and kid context of its request (the server's own), kept
    with the observation so that a restarted server verifies them still."""

    kid: bytes
    piv: bytes
    kid_context: bytes | None = None

    def to_list(self) -> list[str | None]:
        ctx = None if self.kid_context is None else self.kid_context.hex()
        return [self.kid.hex(), self.piv.hex(), ctx]

    @classmethod
    def from_list(cls, data: Any) -> ObservationBinding | None:
        if data is None:
            return None
        kid, piv, ctx = data
        return cls(bytes.fromhex(kid), bytes.fromhex(piv), None if ctx is None else bytes.fromhex(ctx))


@dataclass(frozen=True, slots=True)
class Observation:
    """An Observe (or Observe-Composite) the server holds with a client, keyed by its CoAP token."""

    token: bytes
    endpoint: str
    registration_id: str  # the registration it was made under; a new Register ends it
    paths: tuple[Path, ...]
    composite: bool = False  # Observe-Composite (LwM2M-TS-Core 1.2 §6.4.4), even with one path
    content_format: int | None = None
    attributes: Attributes | None = None  # given with the Observe (LwM2M 1.2 §6.4.1), if any
    created_at: float = 0.0
    oscore: ObservationBinding | None = None  # made over OSCORE: its request's binding

    def __post_init__(self) -> None:
        if not self.paths:
            raise ValueError("an observation needs at least one path")
        if not self.composite and len(self.paths) != 1:
            raise ValueError("a single-path observation has exactly one path; set composite=True")

    @property
    def path(self) -> Path:
        return self.paths[0]

    def to_dict(self) -> dict[str, Any]:
        return {
            "token": self.token.hex(),
            "endpoint": self.endpoint,
            "registration_id": self.registration_id,
            "paths": [str(p) for p in self.paths],
            "composite": self.composite,
            "content_format": self.content_format,
            "attributes": None if self.attributes is None else self.attributes.to_query(),
            "created_at": self.created_at,
            "oscore": None if self.oscore is None else self.oscore.to_list(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Observation:
        attrs = data.get("attributes")
        return cls(
            token=bytes.fromhex(data["token"]),
            endpoint=data["endpoint"],
            registration_id=data["registration_id"],
            paths=tuple(Path.parse(p, prefixed=True) for p in data["paths"]),  # end devices too
            composite=bool(data.get("composite", False)),
            content_format=data.get("content_format"),
            attributes=None if attrs is None else AttributeChange.parse_query(attrs).set,
            created_at=float(data.get("created_at", 0.0)),
            oscore=ObservationBinding.from_list(data.get("oscore")),
        )


# --- history -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One reported value.

    ``time`` is when the value was measured: the record's own timestamp when
    the client gave one (timestamped values of Send or Notify, LwM2M-TS-Core
    1.2 §6.4.2), else ``received_at``. Queries order and filter on ``time``.
    """

    endpoint: str
    record: Record
    source: Source
    received_at: float

    @property
    def time(self) -> float:
        return self.received_at if self.record.time is None else self.record.time


@dataclass(frozen=True, slots=True)
class HistoryRetention:
    """How much history to keep per endpoint; None means no limit of that kind.

    Retention is by arrival: ``max_records`` keeps the newest records received
    (a record is one resource value, so a notification of an instance counts
    one per resource), ``max_age`` drops what was received longer ago than
    that many seconds. A device with a wrong clock cannot make the server drop
    or keep data by lying about ``time``.
    """

    max_records: int | None = 10_000
    max_age: float | None = None

    def __post_init__(self) -> None:
        if self.max_records is not None and self.max_records < 1:
            raise ConfigError(f"max_records must be at least 1, got {self.max_records}")
        if self.max_age is not None and not self.max_age > 0:
            raise ConfigError(f"max_age must be positive, got {self.max_age}")


# Types whose Python value the JSON record form alone cannot restore: Opaque is base64
# text, Objlnk is "3:0", Float may be "nan" or an integral number.
_TYPED = {ResourceType.OPAQUE.name, ResourceType.OBJLNK.name, ResourceType.FLOAT.name}


# Bytes of unknown type (TLV without a model): restored as such, so their readings show again.
_UNTYPED = "UNTYPED"


def record_row(record: Record) -> tuple[bytes, str]:
    """(JSON record form, value type name) of a record, as serialising backends store it."""
    value = record.value
    if type(value) is UntypedBytes:
        return msgspec.json.encode(record_to_json(record, untyped=False)), _UNTYPED
    kind = "" if value is None else infer_type(value).name
    return msgspec.json.encode(record_to_json(record)), kind if kind in _TYPED else ""


def record_from_row(text: str | bytes, kind: str) -> Record:
    """The record :func:`record_row` stored, with its value's Python type."""
    data = msgspec.json.decode(text)
    if (kind not in _TYPED and kind != _UNTYPED) or "value" not in data:
        return record_from_json(data, prefixed=True)
    value = data.pop("value")
    record = record_from_json(data, prefixed=True)
    if kind == _UNTYPED:
        raw = value_from_json(value, ResourceType.OPAQUE, str(record.path))
        return Record(record.path, UntypedBytes(raw), record.time)  # type: ignore[arg-type]
    return Record(record.path, value_from_json(value, ResourceType[kind], str(record.path)), record.time)


# --- security information ------------------------------------------------------------------

MAX_STORED_PSK = 64  # bytes; a TLS library may take less (Mbed TLS 2.28: 32)


MAX_OSCORE_ID = 7  # bytes: an OSCORE Sender or Recipient ID with AES-CCM-16-64-128 (RFC 8613 §3.3)


def _hex_field(data: Mapping[str, Any], name: str, *, required: bool = False) -> bytes | None:
    value = data.get(name)
    if value is None:
        if required:
            raise ConfigError(f"oscore.{name}: missing")
        return None
    try:
        return bytes.fromhex(value)
    except (TypeError, ValueError):
        raise ConfigError(f"oscore.{name}: not a string of hexadecimal digits") from None


MAX_OSCORE_SEQUENCE = (1 << 40) - 1  # the highest stored limit (a Partial IV has 5 bytes)


def reserve_range(stored: int, above: int, count: int) -> tuple[int, int]:
    """The numbers a reservation hands out (``SecurityStore.reserve_oscore_sequence``): from
    ``max(stored, above)``, ``count`` of them, the limit capped; (start, new stored limit)."""
    start = max(stored, above)
    return start, min(max(start + count, stored), MAX_OSCORE_SEQUENCE)


@dataclass(frozen=True, slots=True)
class OscoreSecrets:
    """An endpoint's OSCORE input parameters (RFC 8613 §3.2) as the device holds them (object
    21, LwM2M-TS-Core 1.2 §E.5): its Sender ID, its Recipient ID (the server's Sender ID), the
    Master Secret and Salt, an optional ID Context. ``sequence`` is the server's stored limit of
    its sender sequence numbers for this endpoint (RFC 8613 Appendix B.1.1). ``repr`` never shows
    the secret or the salt."""

    master_secret: bytes = field(repr=False)
    sender_id: bytes
    recipient_id: bytes
    master_salt: bytes = field(default=b"", repr=False)
    id_context: bytes | None = None
    sequence: int = 0

    def __post_init__(self) -> None:
        if not self.master_secret:
            raise ConfigError("the OSCORE master secret is empty")
        if len(self.master_secret) > MAX_STORED_PSK or len(self.master_salt) > MAX_STORED_PSK:
            raise ConfigError(f"an OSCORE master secret or salt has at most {MAX_STORED_PSK} bytes")
        if len(self.sender_id) > MAX_OSCORE_ID or len(self.recipient_id) > MAX_OSCORE_ID:
            raise ConfigError(f"an OSCORE sender or recipient ID has at most {MAX_OSCORE_ID} bytes")
        if self.sender_id == self.recipient_id:
            raise ConfigError("the OSCORE sender and recipient IDs must differ")
        if self.id_context is not None and len(self.id_context) > 0xFF:
            raise ConfigError("an OSCORE ID context has at most 255 bytes")
        if not 0 <= self.sequence < 1 << 40:
            raise ConfigError("an OSCORE sequence number lies below 2^40")

    def same_context(self, other: OscoreSecrets) -> bool:
        """Whether ``other`` derives the same security context (all but the stored sequence)."""
        return (self.master_secret, self.master_salt, self.sender_id, self.recipient_id, self.id_context) == (
            other.master_secret,
            other.master_salt,
            other.sender_id,
            other.recipient_id,
            other.id_context,
        )

    def keeping(self, old: OscoreSecrets | None) -> OscoreSecrets:
        """These parameters to store over ``old``: the same context keeps the higher stored
        sequence limit (a lower one would reuse nonces after a restart, RFC 8613 Appendix B.1.1)."""
        if old is None or not self.same_context(old) or old.sequence <= self.sequence:
            return self
        return OscoreSecrets(
            self.master_secret,
            self.sender_id,
            self.recipient_id,
            self.master_salt,
            self.id_context,
            old.sequence,
        )

    @property
    def fingerprint(self) -> str:
        """The parameters that derive the context, as one string (a store compares it with the
        stored entry's in one step): hex fields joined by ``|``, ``-`` for no ID Context."""
        ctx = "-" if self.id_context is None else self.id_context.hex()
        return "|".join(
            (
                self.master_secret.hex(),
                self.master_salt.hex(),
                self.sender_id.hex(),
                self.recipient_id.hex(),
                ctx,
            )
        )

    @property
    def identity(self) -> str:
        """What names the device among OSCORE peers: its Sender ID (the kid of its requests), in
        hex, after its ID Context and a colon when it has one."""
        kid = self.sender_id.hex()
        return kid if self.id_context is None else f"{self.id_context.hex()}:{kid}"

    def to_dict(self, *, with_key: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {"senderId": self.sender_id.hex(), "recipientId": self.recipient_id.hex()}
        if self.id_context is not None:
            out["idContext"] = self.id_context.hex()
        if with_key:
            out["masterSecret"] = self.master_secret.hex()
            out["masterSalt"] = self.master_salt.hex()
            out["sequence"] = self.sequence
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OscoreSecrets:
        if not isinstance(data, Mapping):
            raise ConfigError("oscore: must be an object")
        unknown = set(data) - {
            "masterSecret",
            "masterSalt",
            "senderId",
            "recipientId",
            "idContext",
            "sequence",
        }
        if unknown:
            raise ConfigError(f"oscore: unknown field(s) {', '.join(sorted(unknown))}")
        sequence = data.get("sequence", 0)
        if not isinstance(sequence, int) or isinstance(sequence, bool):
            raise ConfigError("oscore.sequence: not an integer")
        return cls(
            _hex_field(data, "masterSecret", required=True) or b"",
            _hex_field(data, "senderId", required=True) or b"",
            _hex_field(data, "recipientId", required=True) or b"",
            _hex_field(data, "masterSalt") or b"",
            _hex_field(data, "idContext"),
            sequence,
        )


@dataclass(frozen=True, slots=True)
class SecurityInfo:
    """How one endpoint must authenticate (LwM2M-TS-Core 1.2 §7.1): over DTLS with a PSK identity
    and key, with a raw public key (``rpk``: its DER SubjectPublicKeyInfo, RFC 7250), or
    (``x509``) a certificate whose subject CN is the endpoint name, signed by an authority the
    server trusts; or (``nosec``) not at all, over plain CoAP, which a server that denies plain
    CoAP to unlisted endpoints then takes from it. ``repr`` never shows the PSK."""

    endpoint: str
    psk_identity: str | None = None
    psk_key: bytes | None = field(default=None, repr=False)
    x509: bool = False
    nosec: bool = False
    rpk: bytes | None = None
    oscore: OscoreSecrets | None = None  # OSCORE (RFC 8613) instead of DTLS

    def __post_init__(self) -> None:
        if not self.endpoint:
            raise ConfigError("the endpoint name is empty")
        givens = (("x509", self.x509), ("nosec", self.nosec), ("rpk", self.rpk), ("oscore", self.oscore))
        others = [name for name, given in givens if given]
        if len(others) > 1:
            raise ConfigError(f"give one of {', '.join(others)}, not several")
        if others:
            if self.psk_identity is not None or self.psk_key is not None:
                raise ConfigError(f"give a PSK or {others[0]}, not both")
            if self.rpk is not None:
                public_key_der(self.rpk)  # ConfigError names what is wrong with it
            return
        if not self.psk_identity or not self.psk_key:
            raise ConfigError("a PSK needs an identity and a key")
        if len(self.psk_key) > MAX_STORED_PSK:
            raise ConfigError(f"a PSK has at most {MAX_STORED_PSK} bytes")

    @property
    def mode(self) -> Literal["psk", "rpk", "x509", "nosec", "oscore"]:
        if self.oscore is not None:
            return "oscore"
        if self.rpk is not None:
            return "rpk"
        return "x509" if self.x509 else "nosec" if self.nosec else "psk"

    @property
    def key_hint(self) -> str | None:
        """Enough of the key to tell two apart, never the key: its first byte and its length."""
        if self.psk_key is None:
            return None
        return f"{self.psk_key[:1].hex()}… ({len(self.psk_key)} bytes)"

    def to_dict(self, *, with_key: bool = False) -> dict[str, Any]:
        """The JSON form; the PSK itself only with ``with_key`` (for the stores, never for display).
        A raw public key is no secret: it is always shown."""
        out: dict[str, Any] = {"endpoint": self.endpoint, "mode": self.mode, "x509": self.x509}
        if self.mode == "psk":
            out["pskIdentity"] = self.psk_identity
            if with_key:
                out["pskKey"] = self.psk_key.hex() if self.psk_key is not None else None
            else:
                out["pskKeyHint"] = self.key_hint
        elif self.rpk is not None:
            out["rpk"] = self.rpk.hex()
        elif self.oscore is not None:
            out["oscore"] = self.oscore.to_dict(with_key=with_key)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SecurityInfo:
        """The entry of a JSON form (``to_dict(with_key=True)``); ValueError names what is wrong."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"security information must be an object, got {type(data).__name__}")
        endpoint, identity = data.get("endpoint"), data.get("pskIdentity")
        key, x509, mode = data.get("pskKey"), data.get("x509", False), data.get("mode")
        rpk = data.get("rpk")
        if not isinstance(endpoint, str):
            raise ConfigError(f"endpoint: {endpoint!r:.40} is not a string")
        if identity is not None and not isinstance(identity, str):
            raise ConfigError(f"pskIdentity: {identity!r:.40} is not a string")
        if not isinstance(x509, bool):
            raise ConfigError(f"x509: {x509!r:.40} is not true or false")
        if mode is not None and not isinstance(mode, str):
            raise ConfigError(f"mode: {mode!r:.40} is not psk, rpk, x509 or nosec")
        if key is not None:
            try:
                key = bytes.fromhex(key)  # never echoed: it is a secret
            except (TypeError, ValueError):
                raise ConfigError("pskKey: not a string of hexadecimal digits") from None
        if rpk is not None:
            try:
                rpk = bytes.fromhex(rpk)
            except (TypeError, ValueError):
                raise ConfigError(f"rpk: {rpk!r:.40} is not a string of hexadecimal digits") from None
        oscore = data.get("oscore")
        return cls(
            endpoint=endpoint,
            psk_identity=identity,
            psk_key=key,
            x509=x509,
            nosec=mode == "nosec",
            rpk=rpk,
            oscore=None if oscore is None else OscoreSecrets.from_dict(oscore),
        )


# --- pages of registrations ------------------------------------------------------------------

PAGE_SCAN = 20_000  # registrations a filtered page examines at most before it answers short


@dataclass(frozen=True, slots=True)
class RegistrationPage:
    """Registrations in endpoint order, and the endpoint to go on after (None: no more)."""

    registrations: list[Registration]
    next: str | None


def prefix_upper(prefix: str) -> str | None:
    """The least string above every string that starts with ``prefix`` (None: no such bound)."""
    stripped = prefix.rstrip(chr(0x10FFFF))
    if not stripped:
        return None
    return stripped[:-1] + chr(ord(stripped[-1]) + 1)


def glob_head(glob: str) -> str:
    """The literal start of an ``fnmatch`` glob: every name it matches starts with it."""
    cut = min((glob.index(c) for c in "*?[" if c in glob), default=len(glob))
    return glob[:cut]


def name_range(prefix: str, glob: str | None) -> str | None:
    """The one prefix that every name starting with ``prefix`` and matching ``glob`` has (the
    range of the index to walk); None when no name can do both."""
    head = "" if glob is None else glob_head(glob)
    start = max(prefix, head)
    return start if start.startswith(prefix) and start.startswith(head) else None


def glob_matcher(glob: str) -> Callable[[str], bool]:
    """``fnmatch.fnmatchcase`` semantics (case-sensitive ``*``, ``?``, ``[seq]``, ``[!seq]``)."""
    match = re.compile(fnmatch.translate(glob)).match
    return lambda name: match(name) is not None


# A page's rows: each examined endpoint, with its registration, or None when the store's own
# test of the name (the glob) already turned it down without reading the rest.
Row = tuple[str, Registration | None]


async def collect_page(
    fetch: Callable[[str | None, int], list[Row]],
    after: str | None,
    limit: int,
    match: Callable[[Registration], bool] | None,
    *,
    chunk: int,
    filtered: bool,
    scan: int = PAGE_SCAN,
) -> RegistrationPage:
    """A page built from ``fetch(after, n)`` (the next ``n`` rows after ``after`` in endpoint
    order), ``chunk`` at a time, yielding to the event loop between chunks.

    A filter that matches little (``filtered``: the rows' own or ``match``) makes the page
    stop after ``scan`` rows and answer short, with ``next`` where it stopped: one call
    never walks the whole index.
    """

    async def fetch_now(cursor: str | None, n: int) -> list[Row]:
        return fetch(cursor, n)

    return await collect_page_async(fetch_now, after, limit, match, chunk=chunk, filtered=filtered, scan=scan)


async def collect_page_async(
    fetch: Callable[[str | None, int], Awaitable[list[Row]]],
    after: str | None,
    limit: int,
    match: Callable[[Registration], bool] | None,
    *,
    chunk: int,
    filtered: bool,
    scan: int = PAGE_SCAN,
) -> RegistrationPage:
    """:func:`collect_page` for a backend whose ``fetch`` awaits its rows (Redis)."""
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    found: list[Registration] = []
    examined = 0
    cursor = after
    while True:
        n = min(chunk, max(scan - examined, 1))
        if not filtered:
            n = min(n, limit - len(found))
        rows = await fetch(cursor, n + 1)  # one more than used: tells whether the index goes on
        more = len(rows) > n
        del rows[n:]
        for index, (endpoint, registration) in enumerate(rows):
            examined += 1
            cursor = endpoint
            if registration is not None and (match is None or match(registration)):
                found.append(registration)
                if len(found) == limit:
                    rest = more or index < len(rows) - 1
                    return RegistrationPage(found, cursor if rest else None)
        if not more:
            return RegistrationPage(found, None)
        if examined >= scan:
            return RegistrationPage(found, cursor)
        await asyncio.sleep(0)  # let CoAP traffic through between chunks


class Reachable(msgspec.Struct, frozen=True):
    """What a starting server needs of each stored registration to know who sends from where
    and how to reach it: not the whole ``Registration`` (a million of them would hold up the
    start and its memory). Its fields are named as in a stored registration's JSON, so a store
    may decode them straight from it."""

    endpoint: str
    address: tuple[str, int]
    transport: str = "udp"
    queue_mode: bool = False
    # What taking up its stored observations needs beside (``ObservationManager.resume``): a
    # restart on a million reads no registration whole for them. Empty: not given.
    registration_id: str = ""
    root_path: str = "/"


def reachable_of(registration: Registration) -> Reachable:
    return Reachable(
        registration.endpoint,
        registration.address,
        registration.transport,
        registration.queue_mode,
        registration.registration_id,
        registration.root_path,
    )


# --- the protocols -----------------------------------------------------------------------


@runtime_checkable
class AddressIndex(Protocol):
    """What a store that nodes share offers beside :class:`RegistrationStore`: the registration
    made from an address (its last Register or Update), for a Send that reaches a node before
    anything naming its endpoint (docs/cluster.md)."""

    async def registration_at(self, address: tuple[str, int]) -> Registration | None: ...


class RegistrationStore(Protocol):
    """Registrations by endpoint name and by registration ID; one per endpoint."""

    async def add(self, registration: Registration) -> Registration | None:
        """Store a new registration; answer the one it replaced for that endpoint, if any."""
        ...

    async def get(self, endpoint: str) -> Registration | None: ...

    async def get_by_id(self, registration_id: str) -> Registration | None: ...

    async def update(self, registration: Registration) -> Registration | None:
        """Replace the stored registration with the same endpoint and ID; answer the old one.

        None, and nothing stored, when that registration is gone (expired,
        de-registered or replaced by a new Register): the Update then gets 4.04.
        """
        ...

    async def remove(self, endpoint: str, *, registration_id: str | None = None) -> Registration | None:
        """Remove the endpoint's registration (only if its ID is ``registration_id``, when given)."""
        ...

    async def all(self) -> list[Registration]: ...

    async def reachable(self) -> list[Reachable]:
        """Every registration's endpoint, address, transport and queue mode (``Reachable``)."""
        ...

    async def page(
        self,
        after: str | None = None,
        limit: int = 100,
        *,
        prefix: str = "",
        glob: str | None = None,
        match: Callable[[Registration], bool] | None = None,
        scan: int = PAGE_SCAN,
    ) -> RegistrationPage:
        """Up to ``limit`` registrations whose endpoint is above ``after``, starts with
        ``prefix`` and matches ``glob`` (``fnmatch`` syntax, case-sensitive), that ``match``
        accepts, in endpoint order, from an index (never a sort of every registration).
        Walks the index in chunks, yielding to the event loop between them, and answers
        short after examining ``scan`` registrations; ``next`` is the endpoint to continue
        after, None when the index has no more."""
        ...

    async def expired(
        self, now: float, grace: float = 0.0, *, limit: int | None = None
    ) -> list[Registration]:
        """Registrations whose lifetime (plus ``grace``) ran out by ``now`` (``expires_at <= now -
        grace``), soonest expired first (equal expiry times in no set order); at most ``limit``.

        Read from an index on the expiry time: the cost grows with what expired, not with the
        registrations held, so a sweep can run every second beside a million live ones."""
        ...

    async def remove_expired(self, now: float, grace: float = 0.0, *, limit: int) -> list[Registration]:
        """Remove the registrations ``expired(now, grace, limit=limit)`` would answer, in one
        atomic step, and answer them, soonest expired first: an Update racing the expiry
        sweep lands either before (the registration is not expired and stays) or after (it
        finds no registration: 4.04, and the client registers again, §6.2.2)."""
        ...


class ObservationStore(Protocol):
    """Observations by token; a token is unique across the server."""

    async def add(self, observation: Observation) -> Observation | None:
        """Store it; answer the observation it replaced with the same token, if any."""
        ...

    async def get(self, token: bytes) -> Observation | None: ...

    async def for_endpoint(self, endpoint: str) -> list[Observation]:
        """The endpoint's observations, oldest first."""
        ...

    async def all(self) -> list[Observation]:
        """Every observation, oldest first."""
        ...

    def chunks(self, size: int) -> AsyncIterator[list[Observation]]:
        """Every observation, oldest first, in lists of at most ``size``, each read when asked
        for: a restarted server takes up a million this way and serves between two."""
        ...

    async def remove(self, token: bytes) -> Observation | None: ...

    async def remove_endpoint(self, endpoint: str, registration_id: str | None = None) -> list[Observation]:
        """Forget every observation of the endpoint (it re-registered or left), or with
        ``registration_id`` only those made under that registration (it expired, and the
        client may have registered again meanwhile, here or at another node); answer them."""
        ...


class HistoryStore(Protocol):
    """Values clients reported by Notify or Send, bounded by a :class:`HistoryRetention`."""

    retention: HistoryRetention

    async def append(
        self, endpoint: str, records: Iterable[Record], *, source: Source = "notify", received_at: float
    ) -> None:
        """Keep ``records`` (records without a value are skipped); enforces ``max_records``."""
        ...

    def add(
        self, endpoint: str, records: Iterable[Record], *, source: Source = "notify", received_at: float
    ) -> None:
        """``append`` without waiting: what the server does with each notification.

        ``query`` sees the records at once, but a backend that writes in batches may
        hold them until the next ``flush()`` (or until its batch is full), so a crash
        can lose what was added since. The server flushes a tenth of a second after
        the first notification of a batch, and when it stops.
        """
        ...

    async def flush(self) -> None:
        """Make durable what ``add`` kept back."""
        ...

    async def query(
        self,
        endpoint: str,
        path: Path = ROOT,
        *,
        since: float | None = None,
        until: float | None = None,
        limit: int | None = None,
        newest_first: bool = True,
    ) -> list[HistoryEntry]:
        """Entries at or below ``path`` with ``since <= time < until``.

        Newest first by default (the latest ``limit`` values); ``newest_first=False``
        answers oldest first (the first ``limit`` values after ``since``). Equal
        times keep arrival order.
        """
        ...

    async def prune(self, now: float) -> int:
        """Apply the retention limits now (``max_age`` needs this call); answer how many went."""
        ...

    async def clear(self, endpoint: str) -> int:
        """Forget the endpoint's history; answer how many entries went."""
        ...


class BootstrapConfigStore(Protocol):
    """Bootstrap configurations by endpoint name; ``DEFAULT_ENDPOINT`` ("*") holds the one for
    endpoints that have none of their own (LwM2M-TS-Core 1.2 §6.1.2)."""

    async def get(self, endpoint: str) -> BootstrapConfig | None: ...

    async def put(self, endpoint: str, config: BootstrapConfig) -> BootstrapConfig | None:
        """Store ``config`` for ``endpoint``; answer the one it replaced, if any."""
        ...

    async def remove(self, endpoint: str) -> BootstrapConfig | None: ...

    async def all(self) -> dict[str, BootstrapConfig]:
        """Every configuration by endpoint name, in name order."""
        ...


@dataclass(frozen=True, slots=True)
class SavedDtlsSession:
    """A DTLS session the server saved at a clean stop, to take up after its start without a
    handshake: ``address`` is the peer's socket address, ``cid`` the Connection ID its records
    carry (RFC 9146; empty without), ``state`` the transport's versioned bytes. Those hold the
    session's keys: keep them as keys."""

    address: tuple[Any, ...]
    cid: bytes
    state: bytes


@dataclass(frozen=True, slots=True)
class TakenDtlsSession:
    """A session a node took over from the shared store (``DtlsSessionStore.take_over``):
    ``saved`` as its last holder published it, ``base`` the write sequence number it was first
    published with, ``takeover`` this taker's count (1 for the first): together they give the
    taker's own write sequence range (``lwm2m.transport.dtls.takeover.taker_range``)."""

    saved: bytes
    base: int
    takeover: int


class DtlsSessionStore(Protocol):
    """The DTLS sessions and ticket keys (RFC 5077) a server keeps over a restart.

    Sessions are taken once: :meth:`take` removes what it returns, because a session taken up
    twice (after a crash, say) would send records under sequence numbers used before, and
    so repeat an AEAD nonce (RFC 5246 §6.2.3.3)."""

    async def save(self, sessions: Iterable[SavedDtlsSession]) -> None:
        """Keep ``sessions`` (one per address, and per CID), replacing those kept before."""
        ...

    async def take(self) -> list[SavedDtlsSession]:
        """The sessions kept, removed from the store."""
        ...

    async def put_ticket_keys(self, keys: bytes) -> None:
        """Keep the server's ticket keys (the transport's bytes), replacing those kept before."""
        ...

    async def ticket_keys(self) -> bytes | None: ...

    # Sessions shared by the nodes of a cluster while they run (docs/cluster.md, "DTLS session
    # takeover"): one entry per session under ``key`` (its CID, or its peer's address without
    # one), gone after ``ttl`` seconds without a publish or refresh.

    async def publish(self, key: str, saved: bytes, base: int, holder: str, ttl: float) -> None:
        """A session ``holder`` made: kept under ``key``, replacing any entry there (a new
        handshake made new keys), with no takeover counted yet."""
        ...

    async def refresh(
        self, entries: Sequence[tuple[str, bytes]], holder: str, ttl: float
    ) -> list[bool | None]:
        """Newer state of sessions ``holder`` holds, each kept ``ttl`` seconds more: True for
        each written, False for one another node took over since (``holder`` lost it: the
        entry stays as the taker left it), None for one that is gone (expired, forgotten)."""
        ...

    async def peek(self, key: str) -> TakenDtlsSession | None:
        """The session under ``key`` as it is (``takeover``: the takeovers counted so far),
        nothing claimed; None when there is none."""
        ...

    async def take_over(self, key: str, holder: str, ttl: float) -> TakenDtlsSession | None:
        """Count one more takeover of the session under ``key`` and make ``holder`` its holder, in
        one atomic step (no two takers ever get the same count); None when there is none."""
        ...

    async def forget(self, key: str, holder: str) -> None:
        """The session under ``key`` ended at ``holder``: removed, unless another node holds it."""
        ...


class SecurityStore(Protocol):
    """Security information by endpoint name, by PSK identity, by raw public key and by OSCORE
    identity (each unique across endpoints)."""

    async def put(self, info: SecurityInfo) -> SecurityInfo | None:
        """Store ``info`` for its endpoint; answer what it replaced. IdentityInUse when its PSK
        identity, public key or OSCORE identity belongs to another endpoint. An OSCORE entry that
        derives the context the stored one derives keeps the higher stored sequence limit, in the
        same atomic step (a lower one would reuse nonces, RFC 8613 Appendix B.1.1)."""
        ...

    async def get(self, endpoint: str) -> SecurityInfo | None: ...

    async def get_by_identity(self, psk_identity: str) -> SecurityInfo | None: ...

    async def get_by_public_key(self, rpk: bytes) -> SecurityInfo | None:
        """The entry whose raw public key (DER SubjectPublicKeyInfo) is ``rpk``."""
        ...

    async def get_by_oscore(self, identity: str) -> SecurityInfo | None:
        """The OSCORE entry whose identity (``OscoreSecrets.identity``: the device's Sender ID in
        hex, after its ID Context and a colon when it has one) is ``identity``."""
        ...

    async def reserve_oscore_sequence(
        self, endpoint: str, oscore: OscoreSecrets, above: int, count: int
    ) -> int | None:
        """Reserve ``count`` sender sequence numbers of the endpoint's OSCORE context (RFC 8613
        Appendix B.1.1) in one atomic step: when its entry derives the context of ``oscore``
        (``same_context``), ``start = max(stored limit, above)``, the stored limit raised to
        ``start + count`` (at most ``MAX_OSCORE_SEQUENCE``), and ``start`` answered; None when the
        entry is gone or derives another context now. Holders of one context (the nodes of a
        cluster) never get the same numbers; nothing else of the entry changes."""
        ...

    async def remove(self, endpoint: str) -> SecurityInfo | None: ...

    async def all(self) -> list[SecurityInfo]:
        """Every entry, by endpoint name."""
        ...


class QueuedRequestStore(Protocol):
    """Requests queued for sleeping queue-mode clients (LwM2M-TS-Core 1.2 §6.5), by request ID and
    by endpoint in queueing order, bounded per endpoint and in all
    (:mod:`lwm2m.storage.requests`). A request is run by one node only: :meth:`take` is atomic."""

    async def add(self, request: StoredRequest) -> None:
        """Queue ``request`` (its state is "queued"); RequestQueueFull beyond the bounds."""
        ...

    async def get(self, request_id: str) -> StoredRequest | None:
        """The request, queued, running or finished (until its outcome expires)."""
        ...

    async def pending(self, endpoint: str) -> list[StoredRequest]:
        """The endpoint's requests nobody took yet, oldest first."""
        ...

    async def take(self, request_id: str, runner: str) -> StoredRequest | None:
        """Mark a queued request running on ``runner`` and answer it; None when it is not queued
        (another caller took it, or it is gone): of callers racing, exactly one gets it."""
        ...

    async def finish(
        self,
        request_id: str,
        state: RequestState,
        result: Mapping[str, Any],
        finished_at: float,
        *,
        keep: float | None = None,
    ) -> bool:
        """Keep the outcome ("done" or "failed") for ``keep`` seconds (None: the store's own
        ``RequestQueueLimits.keep``); False for an unknown ID."""
        ...

    async def waiting(self) -> int:
        """How many requests nobody took yet."""
        ...

    async def abandon(self, runner: str, result: Mapping[str, Any], finished_at: float) -> list[str]:
        """Fail, with ``result``, every request still running on ``runner`` (a node that stopped
        or died while it ran them: they may have reached the device, so none runs again);
        answer their IDs."""
        ...


def check_query(limit: int | None, source: str | None = None) -> None:
    if limit is not None and limit < 0:
        raise ValueError(f"limit must not be negative, got {limit}")
    if source is not None and source not in SOURCES:
        raise ValueError(f"source must be one of {', '.join(SOURCES)}, got {source!r}")


class Store(Protocol):
    """The role stores of one backend, opened together and closed together: what the server,
    the bootstrap server and the web API share (``MemoryStore``, ``SqliteStore``, ``RedisStore``)."""

    @property
    def registrations(self) -> RegistrationStore: ...

    @property
    def observations(self) -> ObservationStore: ...

    @property
    def history(self) -> HistoryStore: ...

    @property
    def security(self) -> SecurityStore: ...

    @property
    def bootstrap_configs(self) -> BootstrapConfigStore: ...

    @property
    def dtls_sessions(self) -> DtlsSessionStore: ...

    @property
    def queued_requests(self) -> QueuedRequestStore: ...

    @property
    def firmware(self) -> PackageStore:
        """Firmware packages and their bytes (:mod:`lwm2m.storage.firmware`)."""
        ...

    @property
    def labels(self) -> LabelStore:
        """Device labels by endpoint name (:mod:`lwm2m.storage.labels`)."""
        ...

    @property
    def webhooks(self) -> WebhookStore:
        """Webhooks and the outbox of their events (:mod:`lwm2m.storage.webhooks`)."""
        ...

    @property
    def campaigns(self) -> CampaignStore:
        """Firmware update campaigns and their devices' progress (:mod:`lwm2m.storage.campaigns`)."""
        ...

    def close(self) -> None:
        """Make durable what is kept back and release the backend; the store is unusable after."""
        ...
