"""CoAP over DTLS (``coaps://``, RFC 7252 §9.1) on asyncio: ``CoapUdpEndpoint``'s API, secured.

::

    server = DtlsServerConfig(psk_lookup={"sensor-1": key}.get)
    async with open_dtls_endpoint("127.0.0.1", 5684, server=server, handler=handler) as ep:
        ...  # in the handler: ep.peer_identity(event.addr) -> PeerIdentity("psk", "sensor-1")

    client = DtlsClientConfig(psk=PskCredentials("sensor-1", key))
    async with open_dtls_endpoint("127.0.0.1", 0, client=client) as ep:
        response = await ep.request(Message.build(Type.CON, Code.GET, uri_path="/3/0"), peer)

A client endpoint shakes hands with a peer before its first request goes out
(``connect`` does it explicitly); a server endpoint sends requests to its
clients over the sessions they opened (LwM2M's role reversal), and an
endpoint with both configurations does both. Requests to a peer without a
session, when no client credentials are configured, fail at once with
``NoDtlsSession``; a failed handshake raises ``DtlsHandshakeError``. Both are
``RequestAborted``, so callers that retry on transport errors need no change.

After a request to a peer it made a session with times out, a client forgets
that session, so that its next request shakes hands anew: the server may have
lost it (a restart, an eviction) and would silently drop its records.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, Protocol

from lwm2m.coap.endpoint import Endpoint, EndpointConfig
from lwm2m.coap.events import Event
from lwm2m.coap.message import Message
from lwm2m.errors import (
    DtlsError,
    DtlsHandshakeError,
    DtlsUnavailable,
    NoDtlsSession,
    RequestTimeout,
)
from lwm2m.transport.address import Addr, format_addr, normalize, resolve
from lwm2m.transport.dtls.backend import Backend, ClientFactory, ServerFactory
from lwm2m.transport.dtls.config import DtlsClientConfig, DtlsServerConfig, PeerIdentity, SessionLimits
from lwm2m.transport.dtls.diagnostics import SessionLog
from lwm2m.transport.dtls.events import (
    HandshakeFailed,
    SessionEnded,
    SessionEstablished,
    SessionEvent,
    SessionMoved,
    SessionSought,
)
from lwm2m.transport.dtls.layer import DtlsLayer, SessionInfo
from lwm2m.transport.tap import MessageSink
from lwm2m.transport.udp import CoapObservation, CoapUdpEndpoint, EventCallback, Handler, bind_sockets

__all__ = ["CoapDtlsEndpoint", "DtlsHandshakeError", "NoDtlsSession", "open_dtls_endpoint"]

SessionCallback = Callable[[SessionEvent], None]


class Forwarding(Protocol):
    """A cluster node's DTLS forwarding (``lwm2m.transport.dtls.forwarding.DtlsForwarding``):
    it wraps the layer in what the UDP driver drives, and flushes the driver after link traffic."""

    def wrap(self, layer: DtlsLayer) -> Any: ...

    def attach(self, flush: Callable[[float], None]) -> None: ...


_SESSION_EVENTS = frozenset((SessionEstablished, SessionEnded, HandshakeFailed, SessionMoved, SessionSought))
# One generator of Message IDs and tokens (RFC 7252 §4.4, §5.3.1) for the endpoints made here,
# instead of one each: a Mersenne Twister holds 2.5 KB of state, and a simulator runs one
# endpoint per device. It is seeded from the OS, as each endpoint's own would be.
_RNG = random.Random()
# The failure log of client-only endpoints, one for the process: a fleet of devices that all
# lose their server is then one bounded flood of lines, not one per device (and a device does
# not carry a log of its own). A server endpoint keeps its own.
_CLIENT_LOG = SessionLog()


def default_backend(
    server: DtlsServerConfig | None = None, client: DtlsClientConfig | None = None
) -> Backend:
    """The backend for these configurations: our own engine (``lwm2m.tls``), for PSK,
    certificates and raw public keys alike. It needs ``cryptography`` (the ``dtls`` extra)."""
    try:
        from lwm2m.transport.dtls.engine_backend import EngineBackend
    except ImportError as exc:
        raise DtlsUnavailable(
            "DTLS needs the cryptography package: install the dtls extra (pip install 'lwm2m[dtls]')"
        ) from exc
    return EngineBackend()


class CoapDtlsEndpoint(CoapUdpEndpoint):
    """A CoAP endpoint whose datagrams travel in DTLS 1.2 sessions, one per peer address."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        endpoint: Endpoint,
        socks: Sequence[socket.socket],
        *,
        server: ServerFactory | None = None,
        client: ClientFactory | None = None,
        limits: SessionLimits | None = None,
        handler: Handler | None = None,
        on_event: EventCallback | None = None,
        on_session: SessionCallback | None = None,
        forwarding: Forwarding | None = None,
    ) -> None:
        self.dtls = DtlsLayer(endpoint, server=server, client=client, limits=limits)
        self._on_session = on_session
        # Failures and alerts, logged with a bound.
        self._session_log = SessionLog() if server is not None else _CLIENT_LOG
        self._connecting: dict[Addr, list[asyncio.Future[PeerIdentity | None]]] = {}
        # The DTLS layer stands in for the CoAP endpoint it wraps (the same sans-IO calls); on a
        # cluster node the forwarding's router stands around it (only there: nothing per datagram
        # on a lone server).
        driven = self.dtls if forwarding is None else forwarding.wrap(self.dtls)
        super().__init__(loop, driven, socks, handler=handler, on_event=on_event)  # type: ignore[arg-type]
        self.endpoint = endpoint  # the CoAP endpoint; ``dtls`` is the layer around it
        if forwarding is not None:
            forwarding.attach(self._driver.flush)

    @classmethod
    async def create(  # type: ignore[override]
        cls,
        host: str | Sequence[str] = "127.0.0.1",
        port: int = 0,
        *,
        server: DtlsServerConfig | None = None,
        client: DtlsClientConfig | None = None,
        handler: Handler | None = None,
        on_event: EventCallback | None = None,
        on_session: SessionCallback | None = None,
        config: EndpointConfig | None = None,
        backend: Backend | None = None,
        forwarding: Forwarding | None = None,
    ) -> CoapDtlsEndpoint:
        """Bind ``port`` on each of ``host``; ``server`` accepts sessions, ``client`` opens them;
        ``forwarding``: a cluster node's DTLS forwarding (``lwm2m.transport.dtls.forwarding``)."""
        if server is None and client is None:
            raise ValueError("a DTLS endpoint needs a server configuration, a client one, or both")
        backend = backend or default_backend(server, client)
        server_factory = backend.server(server) if server is not None else None
        client_factory = backend.client(client) if client is not None else None
        limits = server.limits if server is not None else client.limits  # type: ignore[union-attr]
        socks = bind_sockets(host, port)
        endpoint = Endpoint(config, rng=_RNG) if config is not None else Endpoint(rng=_RNG)
        return cls(
            asyncio.get_running_loop(),
            endpoint,
            socks,
            server=server_factory,
            client=client_factory,
            limits=limits,
            handler=handler,
            on_event=on_event,
            on_session=on_session,
            forwarding=forwarding,
        )

    def uri(self, path: str = "") -> str:
        return f"coaps://{format_addr(self.addresses[0])}{path}"

    def tap(self, sink: MessageSink | None) -> None:
        """As :meth:`CoapUdpEndpoint.tap`, inside the DTLS layer: the plaintext CoAP messages."""
        self.dtls.tap(sink)

    # --- sessions ---------------------------------------------------------------------------

    def peer_identity(self, addr: Addr) -> PeerIdentity | None:
        """Who the peer at ``addr`` authenticated as; None when it has no session."""
        return self.dtls.peer_identity(normalize(addr) or addr)

    def session(self, addr: Addr) -> SessionInfo | None:
        return self.dtls.session(normalize(addr) or addr)

    def sessions(self) -> list[SessionInfo]:
        return list(self.dtls.sessions())

    async def connect(self, addr: Addr, *, timeout: float | None = None) -> PeerIdentity | None:
        """Shake hands with ``addr`` unless a session exists; answer the peer's identity."""
        self._check_open()
        addr = self._reachable(await resolve(addr, self._family))
        if self.dtls.established(addr):
            return self.dtls.peer_identity(addr)
        now = self._driver.now()
        try:
            up = self.dtls.connect(addr, now)
        except DtlsError as exc:
            raise NoDtlsSession(str(exc)) from None
        if up:
            self._driver.flush(now)
            return self.dtls.peer_identity(addr)
        fut: asyncio.Future[PeerIdentity | None] = self._loop.create_future()
        waiting = self._connecting.setdefault(addr, [])
        waiting.append(fut)
        self._driver.flush(now)
        try:
            async with asyncio.timeout(timeout):
                return await fut
        except TimeoutError:
            raise DtlsHandshakeError(
                f"no DTLS handshake with {format_addr(addr)} within {timeout:g} s"
            ) from None
        finally:
            with contextlib.suppress(ValueError):
                waiting.remove(fut)
            if not waiting and self._connecting.get(addr) is waiting:
                del self._connecting[addr]
                if not self._connecting:
                    self._connecting = {}  # not the table the key grew (as the layer's handshakes)

    def close_session(self, addr: Addr, *, notify: bool = True) -> bool:
        """End the session with ``addr`` (close_notify unless ``notify`` is False); the next
        request shakes hands again."""
        self._check_open()
        closed = self.dtls.close(normalize(addr) or addr, notify=notify)
        self._driver.flush()
        return closed

    def take_over(self, cid: bytes, addr: Addr, saved: bytes | None) -> Addr | None:
        """Answer a ``SessionSought``: take ``saved`` up (``DtlsLayer.take_over``; None lets the
        held records go) and send what that gave; the address the session is at, or None."""
        now = self._driver.now()
        where = None if saved is None else self.dtls.take_over(cid, addr, saved, now)
        if where is None:
            self.dtls.let_go(cid, addr, now)
        self._driver.flush(now)
        return where

    def _own_event(self, event: Event) -> bool:
        if type(event) in _SESSION_EVENTS:
            self._session_event(event)  # type: ignore[arg-type]
            return True
        return False

    def _session_event(self, event: SessionEvent) -> None:
        self._session_log.event(event, self._driver.now())
        waiting = self._connecting.pop(event.addr, None)
        if waiting:
            for fut in waiting:
                if fut.done():
                    continue
                if type(event) is SessionEstablished:
                    fut.set_result(event.identity)
                elif type(event) is HandshakeFailed:
                    fut.set_exception(
                        DtlsHandshakeError(f"DTLS handshake with {format_addr(event.addr)}: {event.reason}")
                    )
                else:
                    self._connecting.setdefault(event.addr, []).append(fut)
        if waiting is not None and not self._connecting:
            self._connecting = {}  # not the table the key grew (as the layer's handshakes)
        if self._on_session is not None:
            self._on_session(event)

    # --- requests ---------------------------------------------------------------------------

    async def request(self, message: Message, addr: Addr, *, timeout: float | None = None) -> Message:
        self._check_open()
        addr = self._reachable(await resolve(addr, self._family))
        if not self.dtls.established(addr):
            if not self.dtls.can_connect:
                raise NoDtlsSession(f"no DTLS session with {format_addr(addr)}")
            await self.connect(addr, timeout=timeout)
        try:
            return await super().request(message, addr, timeout=timeout)
        except RequestTimeout:
            info = self.dtls.session(addr)
            if info is not None and info.role == "client" and not self._closed:
                self.dtls.close(addr, notify=False)
            raise

    def observe(self, message: Message, addr: Addr) -> CoapObservation:
        literal = normalize(addr)
        if literal is not None and not self.dtls.established(literal) and not self.dtls.can_connect:
            raise NoDtlsSession(f"no DTLS session with {format_addr(literal)}")
        return super().observe(message, addr)

    async def close(self) -> None:
        if not self._closed:
            with contextlib.suppress(Exception):
                self.dtls.close_all("client")  # let servers free our sessions now
        for waiting in self._connecting.values():
            for fut in waiting:
                if not fut.done():
                    fut.set_exception(DtlsHandshakeError("the endpoint was closed"))
        self._connecting.clear()
        self._session_log.flush()
        await super().close()

    async def __aenter__(self) -> CoapDtlsEndpoint:
        return self


@contextlib.asynccontextmanager
async def open_dtls_endpoint(
    host: str | Sequence[str] = "127.0.0.1",
    port: int = 0,
    *,
    server: DtlsServerConfig | None = None,
    client: DtlsClientConfig | None = None,
    handler: Handler | None = None,
    on_event: EventCallback | None = None,
    on_session: SessionCallback | None = None,
    config: EndpointConfig | None = None,
    backend: Backend | None = None,
    forwarding: Forwarding | None = None,
) -> AsyncIterator[CoapDtlsEndpoint]:
    """``async with open_dtls_endpoint(...) as ep``: a ``CoapDtlsEndpoint`` closed on exit."""
    ep = await CoapDtlsEndpoint.create(
        host,
        port,
        server=server,
        client=client,
        handler=handler,
        on_event=on_event,
        on_session=on_session,
        config=config,
        backend=backend,
        forwarding=forwarding,
    )
    try:
        yield ep
    finally:
        await ep.close()
