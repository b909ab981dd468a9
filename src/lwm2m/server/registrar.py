"""The Registration Interface on the server side (LwM2M-TS-Core 1.2 §6.2).

Turns Register, Update and De-register requests into store changes and
events, and answers them: 2.01 Created with the location ``/rd/{id}``, 2.04
Changed, 2.02 Deleted; 4.00 with a diagnostic for bad parameters or payload,
4.04 for an unknown location.

It also holds the server to its :class:`RegistrationLimits`: a name, a
payload or an object list too large gets 4.00 or 4.13, a lifetime beyond the
maximum is shortened, and a source address that registers too fast, or a
server that holds as many registrations as it may, gets 4.29 Too Many
Requests (RFC 8516) with a Max-Age saying when to try again. Each refusal is
logged with its code and reason, and each registration, update, de-registration
and expiry with the endpoint and its address (logger ``lwm2m.server.registrar``,
INFO). Refusals and shortened lifetimes, which any sender can cause as fast as it
sends, are logged within a :class:`~lwm2m.coap.logbudget.LogBudget`: under a flood,
a few lines and then a count.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from lwm2m.coap.logbudget import LogBudget
from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, OptionNumber, Type, as_code, code_text
from lwm2m.coap.option import encode_uint
from lwm2m.errors import ConfigError, RegistrationError
from lwm2m.protocol.registration import (
    MAX_ENDPOINT_LENGTH,
    RD,
    DeregisterRequest,
    RegisterRequest,
    Registration,
    UpdateRequest,
    rd_segments,
)
from lwm2m.server.clock import SharedStamps
from lwm2m.server.events import (
    ClientDeregistered,
    ClientRegistered,
    ClientUpdated,
    RegistrationExpired,
    ServerEvent,
)
from lwm2m.storage.base import ObservationStore, RegistrationStore
from lwm2m.transport.address import interned

log = logging.getLogger(__name__)

__all__ = ["Registrar", "RegistrationLimits", "RegistrationRate"]

# 4.29 Too Many Requests (RFC 8516 §3): Max-Age tells the client when to try again.
TOO_MANY_REQUESTS = Code.TOO_MANY_REQUESTS
BUSY_RETRY = 2  # seconds a client told 5.03 waits before it tries again (Max-Age)
# When the server holds all the registrations it may, room comes back as registrations expire
# or leave: a client is told to wait this long (seconds) before it tries again.
FULL_RETRY_AFTER = 60
# The expiry sweep takes this many expired registrations from the store at a time (SQLite
# removes and decodes 16 in ~0.5 ms), works for at most EXPIRY_SLICE seconds, then pauses for
# EXPIRY_PAUSE so that the event loop serves what waits: a datagram that arrives during a
# slice waits for the rest of it, ~1 ms. A backlog (100,000 expired at once) takes twice its
# CPU time in wall time, a few seconds, and the loop never notices it.
EXPIRY_BATCH = 16
EXPIRY_SLICE = 0.001
EXPIRY_PAUSE = 0.001
_SHOWN_NAME = 64  # characters of an endpoint name that a log line shows
# The transports whose clients are told apart by (transport, address): each of their
# connections has an address of its own (RFC 8323), which a UDP client may have too.
CONNECTIONS = ("tcp", "tls")


@dataclass(frozen=True, slots=True)
class RegistrationLimits:
    """What the server takes from clients on the Registration Interface (LwM2M-TS-Core 1.2 §6.2).

    ``max_endpoint_length``: bytes (UTF-8) of an Endpoint Client Name, at most 255 (a CoAP
    Uri-Query option holds 255 bytes, RFC 7252 §5.10). ``max_lifetime``: seconds; a larger
    ``lt`` is shortened to it. ``max_payload``: bytes of a Register or Update payload (the
    object list). ``max_links``: links in that payload; a device with many objects and
    instances sends tens to a few hundred. ``max_registrations``: registrations the server
    holds; a new endpoint beyond them gets 4.29. ``rate``/``burst``: new registrations
    (Register requests) per second from one source address, and how many may come at once
    (a token bucket per IPv4 address or IPv6 /64; None: no limit). ``max_sources``: source
    addresses the rate table remembers (the least recently seen go first); an address idle
    for ``burst / rate`` seconds leaves it. ``in_flight``: Register, Update and De-register
    requests handled at once (each waits on the store); one more gets 5.03 Service Unavailable
    with Max-Age (``BUSY_RETRY`` seconds), so that a registration storm on a slow store (Redis
    on a busy machine) is paced by the clients' retries instead of piling up in the store's
    connection pool until its calls time out.
    """

    max_endpoint_length: int = MAX_ENDPOINT_LENGTH
    max_lifetime: int = 604_800  # one week
    max_payload: int = 65_536
    max_links: int = 1_024
    max_registrations: int = 1_000_000
    # A NAT with a fleet behind it, or ``lwm2m simulate`` at its default 100/s, stays under
    # this; one host hammering the server is slowed down. UDP sources can be forged, so this
    # is a brake, not a defence: max_registrations is what bounds memory.
    rate: float | None = 100.0
    burst: int = 1_000
    max_sources: int = 10_000
    # Registration Interface requests handled at once; beyond, 5.03 with Max-Age (RFC 7252
    # §5.9.3.4): a storm waits at the clients, not in the store's connection pool.
    in_flight: int = 256

    def __post_init__(self) -> None:
        length = self.max_endpoint_length
        if type(length) is not int or not 1 <= length <= MAX_ENDPOINT_LENGTH:
            raise ConfigError(
                f"max_endpoint_length must be 1..{MAX_ENDPOINT_LENGTH}, got {self.max_endpoint_length!r}"
            )
        names = ("max_lifetime", "max_payload", "max_links", "max_registrations", "burst", "max_sources")
        for name in (*names, "in_flight"):
            value = getattr(self, name)
            if type(value) is not int or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        rate = self.rate
        if rate is not None and (type(rate) not in (int, float) or not 0 < rate < math.inf):
            raise ConfigError(
                f"rate must be a positive number of registrations per second, got {self.rate!r}"
            )


def _source(host: str) -> str:
    """The rate table's key for a source address: the IPv4 address, or the /64 of an IPv6 one
    (a single subscriber typically holds a whole /64)."""
    if ":" not in host:
        return host
    try:
        address = ipaddress.IPv6Address(host.partition("%")[0])
    except ValueError:
        return host
    if address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(ipaddress.IPv6Network((int(address) >> 64 << 64, 64)))


class RegistrationRate:
    """A token bucket per source address: ``burst`` registrations at once, then ``rate`` a second.

    The table is bounded twice: at ``max_sources`` entries (the least recently seen address
    goes first) and in time, as ``sweep`` (run from a timer) drops every address idle for
    ``burst / rate`` seconds, whose bucket is full again and so no different from a new one.
    Entries stay ordered by last use, so a sweep stops at the first address still in use.
    """

    def __init__(self, rate: float, burst: int, max_sources: int) -> None:
        self.rate = rate
        self.burst = burst
        self.max_sources = max_sources
        self._idle = burst / rate  # seconds after which a bucket is full again
        self._buckets: dict[str, tuple[float, float]] = {}  # source -> (tokens, when)
        self._limited: set[str] = set()  # sources refused since their last accepted Register

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, host: str, now: float) -> float:
        """Take a token for a registration from ``host``: 0.0 when there was one, else the
        seconds until there is."""
        key = _source(host)
        entry = self._buckets.pop(key, None)
        if entry is None:
            tokens = float(self.burst)
            if len(self._buckets) >= self.max_sources:
                self.sweep(now)
                if len(self._buckets) >= self.max_sources:
                    oldest = next(iter(self._buckets))
                    del self._buckets[oldest]
                    self._limited.discard(oldest)
        else:
            tokens = min(float(self.burst), entry[0] + (now - entry[1]) * self.rate)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            self._limited.discard(key)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (1.0 - tokens) / self.rate

    def first_refusal(self, host: str) -> bool:
        """Whether this is the first refusal of ``host`` since it was last let through (its
        later ones are logged at DEBUG only, so that a flood does not flood the log)."""
        key = _source(host)
        if key in self._limited:
            return False
        self._limited.add(key)
        return True

    def sweep(self, now: float) -> int:
        """Drop the addresses idle for ``burst / rate`` seconds; answer how many went."""
        buckets = self._buckets
        gone = 0
        while buckets:
            key = next(iter(buckets))
            if now - buckets[key][1] < self._idle:
                break
            del buckets[key]
            self._limited.discard(key)
            gone += 1
        return gone


def _answer(code: int, diagnostic: str = "", location: tuple[str, ...] = ()) -> Message:
    return Message.build(Type.ACK, as_code(code), location_path=location, payload=diagnostic.encode())


_RD_OPTION = (OptionNumber.LOCATION_PATH, RD.encode())


def _created(registration_id: str) -> Message:
    """2.01 Created with the Location-Path ``/rd/{id}`` (LwM2M-TS-Core 1.2 §6.2.1), made at once:
    a storm answers thousands a second."""
    location = (_RD_OPTION, (OptionNumber.LOCATION_PATH, registration_id.encode()))
    return Message(Type.ACK, Code.CREATED, 0, b"", location, b"")


def _retry_later(diagnostic: str, seconds: float) -> Message:
    """4.29 with Max-Age: the seconds to wait before trying again (RFC 8516 §3)."""
    max_age = encode_uint(max(1, math.ceil(seconds)))
    return Message.build(
        Type.ACK, TOO_MANY_REQUESTS, options=[(OptionNumber.MAX_AGE, max_age)], payload=diagnostic.encode()
    )


def _shown(name: str | None) -> str:
    """An endpoint name for a log line: quoted, and cut short when it is long."""
    if name is None:
        return "?"
    return repr(name if len(name) <= _SHOWN_NAME else name[:_SHOWN_NAME] + "…")


def _subject(message: Message) -> str:
    """What a refused request concerns, for its log line: the ep it names or the registration."""
    path = message.uri_path
    if len(path) == 2:
        return f"at /{RD}/{path[1][:_SHOWN_NAME]}"
    return f"ep {_shown(_ep_of(message))}"


def _ep_of(message: Message) -> str | None:
    for item in message.uri_query:
        if item.startswith("ep="):
            return item[3:]
    return None


class Registrar:
    """Keeps the registrations of one server; ``emit`` receives each event."""

    def __init__(
        self,
        registrations: RegistrationStore,
        observations: ObservationStore,
        emit: Callable[[ServerEvent], None],
        *,
        clock: Callable[[], float] = time.time,
        limits: RegistrationLimits | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        adopt: Callable[[Registration, Any], Awaitable[None]] | None = None,
    ) -> None:
        """``adopt``, given when the store is shared with other nodes, takes over a client that
        sends an Update here while this registrar holds nothing of it (its node is gone): it is
        awaited with the updated registration and the Update's address before ClientUpdated."""
        self.registrations = registrations
        self.observations = observations
        self._emit = emit
        self._clock = SharedStamps(clock)  # a float object per millisecond, not per client
        self.limits = limits if limits is not None else RegistrationLimits()
        self._monotonic = monotonic
        self._adopt = adopt
        self.rate: RegistrationRate | None = None
        if self.limits.rate is not None:
            self.rate = RegistrationRate(self.limits.rate, self.limits.burst, self.limits.max_sources)
        # endpoint -> the socket address its last Register/Update came from, exactly as the
        # transport reports it (requests go back there: NAT-friendly, §6.2.2).
        self.peers: dict[str, Any] = {}
        self._by_addr: dict[Any, str] = {}  # of those over UDP and DTLS (datagrams)
        # Of those over TCP and TLS, by (transport, address): a connection's address may be a
        # UDP client's too (one host and port, two protocols), and another of the other listener.
        self._by_connection: dict[tuple[str, Any], str] = {}
        self._log = LogBudget(log)  # refusals and shortened lifetimes: bounded under a flood
        self._handling = 0  # Registration Interface requests being handled (limits.in_flight)
        # While an expiry sweep takes a batch: the endpoints that registered here meanwhile
        # (an Update finds the registration the sweep took gone), whose new registration's
        # address the sweep must not forget.
        self._seen_in_sweep: set[str] | None = None

    def busy(self, message: Message, addr: Any) -> Message | None:
        """5.03 with Max-Age when ``limits.in_flight`` requests are being handled already (see
        :class:`RegistrationLimits`), else None: then the caller wraps the handling in
        :meth:`begin` and :meth:`end`."""
        if self._handling < self.limits.in_flight:
            return None
        self._log.log(
            "registration requests refused: too many at once",
            self._monotonic(),
            logging.WARNING,
            "%s refused from %s (ep %s): 5.03: %d registration requests are being handled",
            "Register" if len(message.uri_path) == 1 else "request",
            _host_port(addr),
            _shown(_ep_of(message)),
            self._handling,
        )
        max_age = encode_uint(BUSY_RETRY)
        return Message.build(
            Type.ACK,
            Code.SERVICE_UNAVAILABLE,
            options=[(OptionNumber.MAX_AGE, max_age)],
            payload=b"the server handles as many registration requests as it can: try again",
        )

    def store_away(self, message: Message, addr: Any, exc: Exception) -> Message:
        """5.03 with Max-Age for a Registration Interface request whose store call failed (the
        store unreachable or out of connections for a moment): the client registers again
        after Max-Age (RFC 7252 §5.9.3.4), nothing was written for it; logged, rate-limited."""
        self._log.log(
            "registration requests refused: the store failed",
            self._monotonic(),
            logging.WARNING,
            "%s from %s (ep %s) answered 5.03: the store failed: %s",
            "Register" if len(message.uri_path) == 1 else "request",
            _host_port(addr),
            _shown(_ep_of(message)),
            exc,
        )
        return Message.build(
            Type.ACK,
            Code.SERVICE_UNAVAILABLE,
            options=[(OptionNumber.MAX_AGE, encode_uint(BUSY_RETRY))],
            payload=b"the server's store is unavailable: try again",
        )

    def begin(self) -> None:
        """A Registration Interface request is being handled (after :meth:`busy` said None)."""
        self._handling += 1

    def end(self) -> None:
        self._handling -= 1

    def endpoint_at(self, addr: Any, transport: str | None = None) -> str | None:
        """The registered endpoint whose last Register/Update came from ``addr``: over UDP or
        DTLS, or over a connection of ``transport`` ("tcp", "tls") when given."""
        if transport is None:
            return self._by_addr.get(addr)
        return self._by_connection.get((transport, addr))

    def remember(self, endpoint: str, addr: Any, transport: str = "udp") -> None:
        """Take ``addr`` (over ``transport``) as the endpoint's address: a restarted server learns
        it from storage."""
        self._remember(endpoint, addr, transport)

    def moved(self, old: Any, new: Any) -> str | None:
        """The client at ``old`` is now at ``new`` (its DTLS session moved, RFC 9146 §6): requests
        go there. Answers the endpoint, or None when none registered from ``old``."""
        endpoint = self._by_addr.get(old)
        if endpoint is None:
            return None
        self._remember(endpoint, new)
        log.info("%s moved from %s to %s", _shown(endpoint), _host_port(old), _host_port(new))
        return endpoint

    def name(self, endpoint: str) -> str:
        """The registrar's own copy of the name ``endpoint`` (the string its tables hold), else
        ``endpoint``: for what keeps the name of a client as long as it is registered (an
        observation), where a name read back from a store would be one more copy."""
        addr = self.peers.get(endpoint)
        if addr is None:
            return endpoint
        try:
            held = self._by_addr.get(addr)
            if held is None and self._by_connection:
                for transport in CONNECTIONS:
                    held = self._by_connection.get((transport, addr))
                    if held is not None:
                        break
        except TypeError:  # an address that is no key
            return endpoint
        return held if held is not None and held == endpoint else endpoint

    def _remember(self, endpoint: str, addr: Any, transport: str = "udp") -> None:
        self._forget(endpoint)
        self.peers[endpoint] = addr
        if transport in CONNECTIONS:
            self._by_connection[(transport, addr)] = endpoint
        else:
            self._by_addr[addr] = endpoint

    def _forget(self, endpoint: str) -> None:
        old = self.peers.pop(endpoint, None)
        if old is None:
            return
        if self._by_addr.get(old) == endpoint:
            del self._by_addr[old]
        if self._by_connection:
            for transport in CONNECTIONS:
                if self._by_connection.get((transport, old)) == endpoint:
                    del self._by_connection[(transport, old)]

    def handles(self, message: Message) -> bool:
        return rd_segments(message) > 0

    def admit(self, message: Message, addr: Any) -> Message | None:
        """The checks that come before any look-up: the rate of Register requests from the
        sender's address and the payload size. A refusal to answer with, or None."""
        segments = _segments(message)
        register = segments == 1 and message.code == Code.POST
        if register and self.rate is not None:
            wait = self.rate.take(addr[0], self._monotonic())
            if wait:
                level = logging.WARNING if self.rate.first_refusal(addr[0]) else logging.DEBUG
                self._log.log(
                    "Registers refused for their rate",
                    self._monotonic(),
                    level,
                    "Register refused from %s (ep %s): %s: over %g registrations/s (burst %d) from there",
                    _host_port(addr),
                    _shown(_ep_of(message)),
                    code_text(TOO_MANY_REQUESTS),
                    self.limits.rate,
                    self.limits.burst,
                )
                return _retry_later(
                    f"too many registrations from this address: at most {self.limits.rate:g}/s", wait
                )
        size = len(message.payload)
        if size > self.limits.max_payload and segments in (1, 2) and message.code == Code.POST:
            operation = "Register" if register else "Update"
            self._log.log(
                f"{operation}s refused for their size",
                self._monotonic(),
                logging.INFO,
                "%s refused from %s (%s): %s: payload of %d bytes, more than %d",
                operation,
                _host_port(addr),
                _subject(message),
                code_text(Code.REQUEST_ENTITY_TOO_LARGE),
                size,
                self.limits.max_payload,
            )
            # RFC 7959 §2.9.3: Size1 in a 4.13 gives the largest body the server takes.
            return Message.build(
                Type.ACK,
                Code.REQUEST_ENTITY_TOO_LARGE,
                size1=self.limits.max_payload,
                payload=f"{operation} payload of {size} bytes: at most {self.limits.max_payload}".encode(),
            )
        return None

    async def handle(self, message: Message, addr: Any, transport: str = "udp") -> Message:
        """A Registration Interface request from ``addr``, come over ``transport`` ("udp",
        "dtls", "tcp" or "tls": kept with the registration)."""
        addr = interned(addr)  # kept while the client is registered: one port object of each
        segments = _segments(message)
        try:
            if segments == 1:
                return await self._register(message, addr, transport)
            if segments == 2:
                if message.code == Code.DELETE:
                    return await self._deregister(message, addr)
                return await self._update(message, addr, transport)
        except RegistrationError as exc:
            if segments == 1:
                operation = "Register"
            else:
                operation = "De-register" if message.code == Code.DELETE else "Update"
            self._refused(operation, addr, message, exc.code, str(exc))
            return _answer(exc.code, str(exc))
        self._refused("request", addr, message, Code.NOT_FOUND, f"no registration at {message.uri_path_str}")
        return _answer(Code.NOT_FOUND, f"no registration at {message.uri_path_str}")

    def _lifetime(self, asked: int, endpoint: str, addr: Any) -> int:
        """The lifetime kept: at most ``max_lifetime``. LwM2M gives the server no way to answer
        another lifetime (the 2.01 of Register, LwM2M-TS-Core 1.2 §6.2.1, and the 2.04 of
        Update, §6.2.2, carry none), so the shorter one is kept silently: a client that waits
        longer to update finds its registration gone (4.04) and registers again."""
        limit = self.limits.max_lifetime
        if asked <= limit:
            return asked
        self._log.log(
            "lifetimes shortened",
            self._monotonic(),
            logging.INFO,
            "lifetime of %s from %s shortened from %d s to %d s (the maximum)",
            _shown(endpoint),
            _host_port(addr),
            asked,
            limit,
        )
        return limit

    async def _register(self, message: Message, addr: Any, transport: str = "udp") -> Message:
        limits = self.limits
        request = RegisterRequest.from_message(
            message, max_links=limits.max_links, max_endpoint_length=limits.max_endpoint_length
        )
        if request.ep not in self.peers and len(self.peers) >= limits.max_registrations:
            self._log.log(
                "Registers refused by a full server",
                self._monotonic(),
                logging.WARNING,
                "Register refused from %s (ep %s): %s: the server holds %d registrations, its maximum",
                _host_port(addr),
                _shown(request.ep),
                code_text(TOO_MANY_REQUESTS),
                len(self.peers),
            )
            return _retry_later(
                f"this server holds its maximum of {limits.max_registrations} registrations", FULL_RETRY_AFTER
            )
        lifetime = self._lifetime(request.lt, request.ep, addr)
        if lifetime != request.lt:
            request = dataclasses.replace(request, lt=lifetime)
        registration = Registration.from_request(request, addr, self._clock(), transport=transport)
        replaced = await self.registrations.add(registration)
        if replaced is not None:
            await self.observations.remove_endpoint(replaced.endpoint)
        self._remember(registration.endpoint, addr, transport)
        if self._seen_in_sweep is not None:
            self._seen_in_sweep.add(registration.endpoint)
        if log.isEnabledFor(logging.INFO):  # the arguments cost more than the check: storms matter
            log.info(
                "registered %s from %s at /%s/%s (lifetime %d s, LwM2M %s, binding %s%s)",
                _shown(registration.endpoint),
                _host_port(addr),
                RD,
                registration.registration_id,
                registration.lifetime,
                registration.lwm2m_version,
                registration.binding,
                ", replacing its previous registration" if replaced is not None else "",
            )
        self._emit(ClientRegistered(registration, replaced))
        return _created(registration.registration_id)

    async def _update(self, message: Message, addr: Any, transport: str = "udp") -> Message:
        registration = await self.registrations.get_by_id(message.uri_path[1])
        if registration is None:
            return self._unknown("Update", addr, message)
        request = UpdateRequest.from_message(
            message, lwm2m_version=registration.lwm2m_version, max_links=self.limits.max_links
        )
        if request.lt is not None:
            lifetime = self._lifetime(request.lt, registration.endpoint, addr)
            if lifetime != request.lt:
                request = dataclasses.replace(request, lt=lifetime)
        updated = registration.updated(request, addr, self._clock(), transport)
        if await self.registrations.update(updated) is None:
            return self._unknown("Update", addr, message)
        arrived = updated.endpoint not in self.peers  # registered at another node of the store
        self._remember(updated.endpoint, addr, transport)
        if arrived and self._adopt is not None:
            await self._adopt(updated, addr)
        if log.isEnabledFor(logging.INFO):
            moved = tuple(updated.address) != tuple(registration.address)
            log.info(
                "updated %s from %s%s",
                _shown(updated.endpoint),
                _host_port(addr),
                f" (it was at {_host_port(registration.address)})" if moved else "",
            )
        self._emit(ClientUpdated(updated, registration, request.objects is not None))
        return _answer(Code.CHANGED)

    async def _deregister(self, message: Message, addr: Any) -> Message:
        request = DeregisterRequest.from_message(message)
        registration = await self.registrations.get_by_id(request.location)
        if registration is None:
            return self._unknown("De-register", addr, message)
        removed = await self.registrations.remove(
            registration.endpoint, registration_id=registration.registration_id
        )
        if removed is None:
            return self._unknown("De-register", addr, message)
        await self.observations.remove_endpoint(removed.endpoint)
        self._forget(removed.endpoint)
        log.info("de-registered %s from %s", _shown(removed.endpoint), _host_port(addr))
        self._emit(ClientDeregistered(removed))
        return _answer(Code.DELETED)

    def _unknown(self, operation: str, addr: Any, message: Message) -> Message:
        """4.04 for an Update or De-register at a location that holds no registration (§6.2.2)."""
        diagnostic = f"no registration {message.uri_path[1]!r}"
        self._refused(operation, addr, message, Code.NOT_FOUND, diagnostic)
        return _answer(Code.NOT_FOUND, diagnostic)

    def _refused(self, operation: str, addr: Any, message: Message, code: int, reason: str) -> None:
        """The log line of a refused request: what, from where, about whom, the code and why."""
        self._log.log(
            f"Registration Interface requests refused with {code_text(code)}",
            self._monotonic(),
            logging.INFO,
            "%s refused from %s (%s): %s: %s",
            operation,
            _host_port(addr),
            _subject(message),
            code_text(code),
            reason,
        )

    async def expire(self) -> list[str]:
        """Remove every registration past its lifetime, with its observations (§6.2.1); forget
        the source addresses that stopped registering. Answers the endpoints, soonest expired
        first: the registrations themselves go out in RegistrationExpired events and are not
        kept for the whole sweep (a store that decodes them, as SQLite does, would otherwise
        hand the garbage collector thousands of live objects to walk at each collection).

        The store takes the expired registrations from its expiry index, ``EXPIRY_BATCH`` at a
        time; after ``EXPIRY_SLICE`` seconds of work the sweep lets the event loop run before
        it takes the next batch, so even 100,000 registrations expiring at once (a restart on
        an old database) hold CoAP traffic up for a couple of milliseconds at a time, never
        for the whole sweep."""
        self._log.tick(self._monotonic())  # the count of a flood of refusals, once its window ended
        if self.rate is not None:
            self.rate.sweep(self._monotonic())
        now = self._clock()
        gone: list[str] = []
        started = time.perf_counter()
        while True:
            # Taken from the store in one step: an Update racing the sweep is either seen (the
            # registration is no longer expired) or finds it gone (4.04: register again).
            seen: set[str] = set()
            self._seen_in_sweep = seen
            try:
                batch = await self.registrations.remove_expired(now, limit=EXPIRY_BATCH)
                for removed in batch:
                    # Only what the expired registration held: the client may have registered
                    # again since the batch was taken, here or at another node of the store.
                    await self.observations.remove_endpoint(
                        removed.endpoint, registration_id=removed.registration_id
                    )
                    if removed.endpoint not in seen:  # not registered again here meanwhile
                        self._forget(removed.endpoint)
                    log.info(
                        "registration of %s (last from %s) expired after %d s without an update",
                        _shown(removed.endpoint),
                        _host_port(removed.address),
                        removed.lifetime,
                    )
                    self._emit(RegistrationExpired(removed))
                    gone.append(removed.endpoint)
            finally:
                self._seen_in_sweep = None
            if len(batch) < EXPIRY_BATCH:
                return gone
            if time.perf_counter() - started > EXPIRY_SLICE:
                # A timer, not sleep(0): the loop first serves what arrived and what is due.
                await asyncio.sleep(EXPIRY_PAUSE)
                started = time.perf_counter()


def _segments(message: Message) -> int:
    """``len(message.uri_path)``, read without decoding the path when it starts with ``rd``."""
    return rd_segments(message) or len(message.uri_path)


def _host_port(addr: Any) -> str:
    host, port = addr[0], addr[1]
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
