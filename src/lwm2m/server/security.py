"""Who may register as which endpoint: the server's side of LwM2M security (LwM2M-TS-Core 1.2 §7.1).

The rules, checked on every request of the Registration Interface (§6.2):

- An endpoint with security information (a PSK, a raw public key or X.509) registers over DTLS
  only; over plain CoAP its Register, Update and De-register get 4.03.
- Plain CoAP (NoSec) authenticates nobody: anyone who knows an endpoint name
  can register under it, from any address, and so replace its registration.
  With ``nosec_endpoints="deny"`` plain CoAP is taken only from endpoints listed
  with mode ``nosec``; the others get 4.03. With ``"allow"`` (the default)
  every endpoint without security information may use it.
- Over DTLS the peer's authenticated identity must be the endpoint's: its PSK
  identity, its raw public key (RFC 7250: the handshake proved the peer holds
  the private key), or a certificate whose subject CN is the endpoint name (the
  certificate chain itself was checked in the handshake). Else 4.03; an Update
  or De-register therefore comes from the identity the registration was made
  with, whatever session carries it.
- A DTLS client that leaves ep out of its Register gets the endpoint name its
  credentials stand for (§6.2.1 allows it).
- An endpoint with mode ``oscore`` registers OSCORE-protected only (RFC 8613; over plain CoAP
  otherwise 4.03 "must use OSCORE"): the context its request verified with is its identity
  (``PeerIdentity`` "oscore", the device's Sender ID), checked as a DTLS identity is, and it
  must name its endpoint (ep). ``server/oscore.py`` keeps the contexts.

The TLS library asks for PSKs during the handshake and must be answered at
once, so keys are served from a cache loaded at start and kept current by
``put``/``remove``; an identity the cache does not know, or knows from longer
ago than ``cache_ttl``, is looked up in the store in the background, so that
an entry another process wrote (``lwm2m security add`` on the database) works
from the client's next handshake on. The authorization checks always read
the store.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from lwm2m.coap.logbudget import LogBudget
from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, OptionNumber, Type
from lwm2m.errors import ConfigError
from lwm2m.protocol.registration import rd_segments
from lwm2m.storage.base import SecurityInfo, SecurityStore
from lwm2m.transport.dtls.config import MAX_PSK_LENGTH, PeerIdentity

if TYPE_CHECKING:
    from lwm2m.server.oscore import ServerOscore

log = logging.getLogger(__name__)

__all__ = ["NOSEC_POLICIES", "NosecPolicy", "SecurityPolicy", "identity_matches"]

NosecPolicy = Literal["allow", "deny"]
NOSEC_POLICIES: tuple[NosecPolicy, ...] = ("allow", "deny")

_MAX_CACHED_MISSES = 10_000
_MAX_LOOKUPS = 256  # store look-ups in flight at once


def _forbidden(diagnostic: str) -> Message:
    return Message.build(Type.ACK, Code.FORBIDDEN, payload=diagnostic.encode())


def _query(message: Message, name: str) -> str | None:
    """The value of the first Uri-Query ``name=…``, decoded as ``Message.uri_query`` decodes it
    (only that option is: the name is ASCII, so its bytes start the same way)."""
    prefix = (name + "=").encode()
    for number, value in message.options:
        if number == OptionNumber.URI_QUERY and value.startswith(prefix):
            return value[len(prefix) :].decode("utf-8", "replace")
    return None


class SecurityPolicy:
    """The security store, a PSK cache for handshakes, and the registration checks."""

    def __init__(
        self, store: SecurityStore, *, cache_ttl: float = 10.0, nosec_endpoints: NosecPolicy = "allow"
    ) -> None:
        if nosec_endpoints not in NOSEC_POLICIES:
            raise ConfigError(f"nosec_endpoints must be 'allow' or 'deny', got {nosec_endpoints!r}")
        self.store = store
        self.nosec_endpoints = nosec_endpoints
        self.cache_ttl = cache_ttl
        # PSK identity -> (key or None for "not known", endpoint, when it was read)
        self._psk: dict[str, tuple[bytes | None, str | None, float]] = {}
        self._misses = 0
        self._lookups: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.on_revoked: Callable[[SecurityInfo], None] | None = None
        # The OSCORE contexts of entries with mode oscore (None without the cryptography package).
        self.oscore: ServerOscore | None = None
        self._log = LogBudget(log)  # 4.03 refusals: a flood of them gives a few lines and a count

    async def load(self) -> None:
        now = time.monotonic()
        infos = await self.store.all()
        for info in infos:
            if info.psk_identity is not None:
                self._psk[info.psk_identity] = (info.psk_key, info.endpoint, now)
        if self.oscore is not None:
            self.oscore.load(infos)

    def close(self) -> None:
        self._log.flush()
        for task in self._tasks:
            task.cancel()

    # --- entries -------------------------------------------------------------------------------

    async def put(self, info: SecurityInfo) -> SecurityInfo | None:
        if info.psk_key is not None and len(info.psk_key) > MAX_PSK_LENGTH:
            raise ConfigError(f"a PSK has at most {MAX_PSK_LENGTH} bytes here")
        old = await self.store.put(info)
        if self.oscore is not None:
            self.oscore.put(info, old)
        if old is not None and old.psk_identity is not None:
            self._psk.pop(old.psk_identity, None)
        if info.psk_identity is not None:
            self._psk[info.psk_identity] = (info.psk_key, info.endpoint, time.monotonic())
        if old is not None and (old.psk_identity, old.psk_key, old.x509, old.rpk) != (
            info.psk_identity,
            info.psk_key,
            info.x509,
            info.rpk,
        ):
            self._revoked(old)
        return old

    async def remove(self, endpoint: str) -> SecurityInfo | None:
        old = await self.store.remove(endpoint)
        if self.oscore is not None:
            self.oscore.remove(endpoint)
        if old is not None:
            if old.psk_identity is not None:
                self._psk.pop(old.psk_identity, None)
            self._revoked(old)
        return old

    async def get(self, endpoint: str) -> SecurityInfo | None:
        return await self.store.get(endpoint)

    async def all(self) -> list[SecurityInfo]:
        return await self.store.all()

    def _revoked(self, old: SecurityInfo) -> None:
        if self.on_revoked is not None:
            self.on_revoked(old)

    # --- the handshake's PSK callback ----------------------------------------------------------

    def psk_for(self, identity: str) -> bytes | None:
        """The key of a PSK identity, from the cache (a stale or missing entry is read again)."""
        entry = self._psk.get(identity)
        if entry is None or time.monotonic() - entry[2] > self.cache_ttl:
            self._refresh(identity)
        return None if entry is None else entry[0]

    def _refresh(self, identity: str) -> None:
        if identity in self._lookups or len(self._lookups) >= _MAX_LOOKUPS:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._lookups.add(identity)
        task = loop.create_task(self._read(identity))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _read(self, identity: str) -> None:
        try:
            info = await self.store.get_by_identity(identity)
        except Exception:
            log.exception("security store look-up failed")
            return
        finally:
            self._lookups.discard(identity)
        now = time.monotonic()
        if info is not None:
            self._psk[identity] = (info.psk_key, info.endpoint, now)
            return
        if identity in self._psk and self._psk[identity][0] is not None:
            del self._psk[identity]  # removed by another process
        if self._misses >= _MAX_CACHED_MISSES:
            self._psk = {k: v for k, v in self._psk.items() if v[0] is not None}
            self._misses = 0
        self._psk[identity] = (None, None, now)
        self._misses += 1

    # --- registration checks ------------------------------------------------------------------

    async def check(
        self,
        message: Message,
        identity: PeerIdentity | None,
        *,
        secure: bool,
        registrations: Any,
        addr: Any = None,
    ) -> tuple[Message | None, Message, str | None]:
        """Check a Registration Interface request from ``addr``: (a 4.03 refusal or None, the
        request to hand on, the endpoint name it concerns when known)."""
        if rd_segments(message) == 1:  # a Register (/rd): its path need not be decoded
            endpoint = _query(message, "ep")
            if endpoint is None and secure and identity is not None:
                endpoint = await self._endpoint_of(identity)
                if endpoint is not None:
                    options = [*message.options, (OptionNumber.URI_QUERY, f"ep={endpoint}".encode())]
                    message = dataclasses.replace(message, options=tuple(sorted(options, key=lambda o: o[0])))
        elif len(path := message.uri_path) == 2:
            registration = await registrations.get_by_id(path[1])
            endpoint = None if registration is None else registration.endpoint
        else:
            endpoint = None
        if not endpoint:
            return None, message, None  # the registrar answers 4.00 or 4.04
        info = await self.store.get(endpoint)
        if not secure:
            if info is None and self.nosec_endpoints == "deny":
                refusal = "is not listed for plain CoAP (mode nosec): it must use DTLS"
            elif info is not None and info.mode == "oscore":
                refusal = "must use OSCORE"
            elif info is not None and info.mode != "nosec":
                refusal = "must use DTLS"
            else:
                return None, message, endpoint
            self._log.log(
                "plain CoAP registration requests refused with 4.03 Forbidden",
                time.monotonic(),
                logging.INFO,
                "%s refused from %s over plain CoAP: 4.03 Forbidden: endpoint %s %s",
                _operation(message),
                _address(addr),
                _shown(endpoint),
                refusal,
            )
            return _forbidden(f"endpoint {endpoint!r} {refusal}"), message, endpoint
        if identity is None or info is None or not identity_matches(info, identity):
            what = "no identity" if identity is None else f"identity {identity}"
            self._log.log(
                "secured registration requests refused with 4.03 Forbidden",
                time.monotonic(),
                logging.INFO,
                # the identity says how it came: DTLS or TLS (psk:, rpk:, x509:) or OSCORE
                "%s refused from %s: 4.03 Forbidden: %s may not act as endpoint %s",
                _operation(message),
                _address(addr),
                what,
                _shown(endpoint),
            )
            return _forbidden(f"{what} may not act as endpoint {endpoint!r}"), message, endpoint
        return None, message, endpoint

    async def endpoint_of(self, identity: PeerIdentity) -> str | None:
        """The endpoint a DTLS identity stands for (a certificate's name, or the security
        entry of its PSK identity or raw public key); None when none does."""
        return await self._endpoint_of(identity)

    async def _endpoint_of(self, identity: PeerIdentity) -> str | None:
        if identity.kind == "x509":
            return identity.name
        if identity.kind == "oscore":
            return None  # a Register over OSCORE names its endpoint
        if identity.kind == "rpk":
            info = await self.store.get_by_public_key(bytes.fromhex(identity.name))
        else:
            info = await self.store.get_by_identity(identity.name)
        return None if info is None else info.endpoint


def identity_matches(info: SecurityInfo, identity: PeerIdentity) -> bool:
    """Whether the identity a DTLS peer proved (or an OSCORE request verified with) stands for the
    endpoint of ``info``."""
    if info.mode == "x509":
        return identity.kind == "x509" and identity.name == info.endpoint
    if info.mode == "psk":
        return identity.kind == "psk" and identity.name == info.psk_identity
    if info.mode == "rpk" and info.rpk is not None:
        return identity.kind == "rpk" and identity.name == info.rpk.hex()
    if info.oscore is not None:
        return identity.kind == "oscore" and identity.name == info.oscore.identity
    return False  # nosec: no DTLS identity stands for the endpoint


def _operation(message: Message) -> str:
    if len(message.uri_path) == 1:
        return "Register"
    return "De-register" if message.code == Code.DELETE else "Update"


def _address(addr: Any) -> str:
    if addr is None:
        return "?"
    host, port = addr[0], addr[1]
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


def _shown(name: str) -> str:
    return repr(name if len(name) <= 64 else name[:64] + "…")
