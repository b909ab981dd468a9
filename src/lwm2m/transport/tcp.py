"""CoAP over TCP and TLS (``coap+tcp://``, ``coaps+tcp://``, RFC 8323) on asyncio.

``CoapTcpEndpoint`` has the application API of ``CoapUdpEndpoint`` (``request``, ``observe``,
``respond``, ``notify``, a ``handler`` for requests) over connections, each driven by a sans-IO
``lwm2m.coap.connection.TcpConnection``::

    async with open_tcp_endpoint("127.0.0.1", 5683, handler=handler) as ep:      # a server
        ...
    async with open_tcp_endpoint(None, handler=handler) as ep:                   # a client only
        response = await ep.request(Message.build(Type.CON, Code.POST, uri_path="/rd"), peer)

A request to a peer without a connection opens one (TLS with ``client_ssl``); a request to a
peer that connected to us goes over its connection: a server reaches a device over the
connection the device opened (LwM2M's role reversal, LwM2M-TS-Transport 1.2 §6). Addresses are
the peers' ``(host, port)`` as the socket reports them.

Bounds (``TcpLimits``): at most ``max_connections`` accepted connections (a new one beyond is
closed at once); a connection with no whole message for ``idle_timeout`` seconds is closed
(a slow sender that trickles one message in never completes one); a peer that does not read
what we send and lets ``max_write_buffer`` bytes pile up is aborted; a message over the
Max-Message-Size we announced aborts the connection (the sans-IO connection does that).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import ssl
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from lwm2m.coap.connection import BlockBudget, ConnectionEnded, TcpConfig, TcpConnection
from lwm2m.coap.events import (
    CoapNotificationReceived,
    Event,
    ObservationCancelled,
    RequestFailed,
    RequestReceived,
    RequestTimedOut,
    ResponseReceived,
)
from lwm2m.coap.logbudget import LogBudget
from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, OptionNumber, Type
from lwm2m.errors import ConfigError, ConnectionAborted, EndpointClosed, OscoreError, RequestTimeout
from lwm2m.transport.address import Addr, format_addr, normalize
from lwm2m.transport.dtls.config import DtlsClientConfig, PeerIdentity, X509Credentials
from lwm2m.transport.tap import ConnectionSink
from lwm2m.transport.udp import CoapObservation, oscore_failure

if TYPE_CHECKING:  # lwm2m.coap.oscore and our TLS engine need cryptography: plain CoAP does without
    from lwm2m.coap.oscore import OscoreLayer
    from lwm2m.transport.tls_engine import EngineTls, StreamTlsFactory

log = logging.getLogger(__name__)

Handler = Callable[[RequestReceived], "Message | Awaitable[Message | None] | None"]
EventCallback = Callable[[Event], None]

__all__ = [
    "CoapTcpEndpoint",
    "TcpLimits",
    "open_tcp_endpoint",
    "own_tcp_endpoint",
    "peer_identity_of",
    "tls_client_context",
    "tls_server_context",
]

_INTERNAL_ERROR = Message(Type.ACK, Code.INTERNAL_SERVER_ERROR)
_OSCORE = 9  # the OSCORE option (RFC 8613 §2)


@dataclass(frozen=True, slots=True)
class TcpLimits:
    """Bounds on what one endpoint's connections may hold (see the module's docstring)."""

    max_connections: int = 10_000
    idle_timeout: float = 3600.0
    max_write_buffer: int = 1 << 20
    connect_timeout: float = 10.0

    def __post_init__(self) -> None:
        if self.max_connections < 1:
            raise ConfigError(f"max_connections {self.max_connections}: at least 1")
        if not self.idle_timeout > 0 or not self.connect_timeout > 0:
            raise ConfigError("idle_timeout and connect_timeout: more than 0 seconds")
        if self.max_write_buffer < 1024:
            raise ConfigError(f"max_write_buffer {self.max_write_buffer}: at least 1024 bytes")


# RFC 8323 §8.2: the ALPN protocol ID of CoAP over TLS.
ALPN = "coap"


def _pem_certificates(data: bytes) -> str:
    """PEM text of one certificate or more given as PEM or DER."""
    if b"-----BEGIN" in data:
        return data.decode("ascii")
    return ssl.DER_cert_to_PEM_cert(data)


def _load_chain(context: ssl.SSLContext, credentials: X509Credentials) -> None:
    """The own chain and key into ``context``: the ssl module reads them from files only, so they
    pass through a private temporary directory, removed at once."""
    if b"-----BEGIN" not in credentials.private_key:
        raise ConfigError("TLS over TCP takes the private key in PEM (PKCS#8 or SEC 1)")
    with tempfile.TemporaryDirectory() as folder:
        cert = os.path.join(folder, "cert.pem")
        key = os.path.join(folder, "key.pem")
        with open(cert, "w", encoding="ascii") as f:
            f.write(_pem_certificates(credentials.certificate))
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(credentials.private_key)
        try:
            context.load_cert_chain(cert, key)
        except ssl.SSLError as exc:
            raise ConfigError(f"the TLS certificate and key do not load: {exc}") from None


def tls_server_context(credentials: X509Credentials) -> ssl.SSLContext:
    """The TLS side of ``coaps+tcp`` for a server: our chain, and a certificate asked of every
    client, chaining to ``credentials.trusted`` (a client without one is refused in the
    handshake: its certificate's CN is what binds it to an endpoint, as over DTLS)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    _load_chain(context, credentials)
    if not credentials.trusted:
        raise ConfigError("a TLS server needs trusted CA certificates to check its clients' certificates")
    context.load_verify_locations(cadata=_pem_certificates(credentials.trusted))
    context.verify_mode = ssl.CERT_REQUIRED
    context.set_alpn_protocols([ALPN])
    return context


def tls_client_context(credentials: X509Credentials | None, trusted: bytes = b"") -> ssl.SSLContext:
    """The TLS side of ``coaps+tcp`` for a client: our chain when given, and the server's
    certificate checked against ``trusted`` (or ``credentials.trusted``). The server's name is
    not checked against its certificate: LwM2M binds a server by its certificate (Security
    object, LwM2M-TS-Core 1.2 §E.1), not by the host name in its URI."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = False
    if credentials is not None:
        _load_chain(context, credentials)
        trusted = trusted or credentials.trusted
    if not trusted:
        raise ConfigError("a TLS client needs the CA certificate (or the server's own) to check the server")
    context.load_verify_locations(cadata=_pem_certificates(trusted))
    context.verify_mode = ssl.CERT_REQUIRED
    context.set_alpn_protocols([ALPN])
    return context


def peer_identity_of(ssl_object: ssl.SSLObject | None) -> PeerIdentity | None:
    """The identity a TLS peer proved with its certificate: the subject's CN, as for DTLS X.509
    (``PeerIdentity("x509", cn, subject)``); None over plain TCP or without a certificate."""
    if ssl_object is None:
        return None
    cert = ssl_object.getpeercert()
    if not cert:
        return None
    subject: Any = cert.get("subject", ())
    parts = [f"{k}={v}" for rdn in subject for k, v in rdn]
    cn = next((v for rdn in subject for k, v in rdn if k == "commonName"), "")
    if not cn:
        # No CN: the first DNS or URI name of the subjectAltName stands for it.
        alt: Any = cert.get("subjectAltName", ())
        cn = next((v for k, v in alt if k in ("DNS", "URI")), "")
    return PeerIdentity("x509", cn, ",".join(reversed(parts)))


class _Link(asyncio.Protocol):
    """One connection: the socket side around its ``TcpConnection``.

    TLS runs here over memory BIOs (``ssl.SSLContext.wrap_bio``) rather than in the event loop's
    SSL transport, whose read buffer is 256 KiB per connection: an idle TLS connection then
    costs what OpenSSL holds for it and little more. CoAP starts once the handshake is done;
    until then the connection counts against ``max_connections`` and has ``connect_timeout``
    to finish it."""

    def __init__(
        self,
        owner: CoapTcpEndpoint,
        accepted: bool,
        context: ssl.SSLContext | None,
        hostname: str | None,
        engine: StreamTlsFactory | None = None,
    ) -> None:
        self._owner = owner
        self._factory = engine  # TLS through our engine (PSK, RPK, X.509) rather than ssl
        self._engine: EngineTls | None = None
        self.accepted = accepted
        self.conn: TcpConnection | None = None
        self.transport: asyncio.Transport | None = None
        self.addr: Addr = ()
        self.identity: PeerIdentity | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._idle: asyncio.TimerHandle | None = None
        self.ready: asyncio.Future[None] = owner._loop.create_future()
        self._context = context
        self._hostname = hostname
        self._tls: ssl.SSLObject | None = None
        self._tls_in: ssl.MemoryBIO | None = None  # the TLS records, once TLS starts
        self._tls_out: ssl.MemoryBIO | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses: the same methods, no base class.
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.addr = normalize(tuple(peer)) or tuple(peer)
        owner = self._owner
        if self.accepted:
            if len(owner._accepted) >= owner.limits.max_connections:
                owner.note(
                    "connections refused (max_connections)",
                    logging.WARNING,
                    "CoAP over TCP: connection from %s refused: %d open",
                    format_addr(self.addr),
                    len(owner._accepted),
                )
                self.transport.abort()
                return
            owner._accepted.add(self)
        if self._factory is not None:
            from lwm2m.transport.tls_engine import EngineTls  # only with TLS: needs cryptography

            self._engine = EngineTls(self._factory.stream_connection(owner._loop.time()))
            self._idle = owner._loop.call_later(owner.limits.connect_timeout, self._on_idle)
            self._send_engine()  # a client's ClientHello
            return
        if self._context is None:
            self._start()
            return
        self._tls_in, self._tls_out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self._tls = self._context.wrap_bio(
            self._tls_in, self._tls_out, server_side=self.accepted, server_hostname=self._hostname
        )
        self._idle = owner._loop.call_later(owner.limits.connect_timeout, self._on_idle)
        self._shake()

    def _start(self) -> None:
        """CoAP begins: the CSM goes out first (RFC 8323 §5.3)."""
        owner = self._owner
        self.identity = self._engine.identity if self._engine is not None else peer_identity_of(self._tls)
        self.conn = TcpConnection(self.addr, owner.config, now=owner._loop.time(), budget=owner.budget)
        owner._attach(self)
        self._touch()
        self.flush()
        if not self.ready.done():
            self.ready.set_result(None)

    def _shake(self) -> None:
        """A step of the TLS handshake; CoAP starts when it is done."""
        assert self._tls is not None
        try:
            self._tls.do_handshake()
        except ssl.SSLWantReadError:
            self._send_tls()
            return
        except (ssl.SSLError, OSError) as exc:
            self._owner.note(
                "TLS handshakes failed",
                logging.INFO,
                "CoAP over TLS: handshake with %s failed: %s",
                format_addr(self.addr),
                exc,
            )
            self._send_tls()  # the alert
            if not self.ready.done():
                self._fail_ready(ConnectionAborted(f"TLS handshake with {format_addr(self.addr)}: {exc}"))
            if self.transport is not None:
                self.transport.close()
            return
        self._send_tls()
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        self._start()

    def _fail_ready(self, exc: BaseException) -> None:
        self.ready.set_exception(exc)
        if self.accepted:
            self.ready.exception()  # nobody awaits an accepted connection's set-up

    def _send_tls(self) -> None:
        assert self._tls_out is not None
        data = self._tls_out.read()
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def _plaintext(self, data: bytes) -> bytes | None:
        """What TLS records in ``data`` carry; None when the connection ends (close_notify, an
        error: then it is closed)."""
        assert self._tls is not None and self._tls_in is not None
        self._tls_in.write(data)
        if self.conn is None:
            self._shake()
            if self.conn is None:
                return b""
        out = bytearray()
        try:
            while True:
                chunk = self._tls.read(16384)
                if not chunk:
                    break
                out += chunk
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLZeroReturnError:
            self._end_tls("closed by the peer (close_notify)", bytes(out))
            return None
        except (ssl.SSLError, OSError) as exc:
            self._end_tls(f"TLS failed: {exc}", bytes(out))
            return None
        self._send_tls()  # what reading produced (a key update, an alert)
        return bytes(out)

    def _send_engine(self) -> None:
        assert self._engine is not None
        data = self._engine.outgoing()
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def _engine_plaintext(self, data: bytes) -> bytes | None:
        """:meth:`_plaintext` through our engine: what the records in ``data`` carry; None when
        the connection ends (then it is closed)."""
        tls = self._engine
        assert tls is not None
        plain = tls.feed(data, self._owner._loop.time())
        self._send_engine()  # the handshake's answer, or an alert
        if tls.failure is not None:
            self._owner.note(
                "TLS handshakes failed",
                logging.INFO,
                "CoAP over TLS: handshake with %s failed: %s",
                format_addr(self.addr),
                tls.failure,
            )
            if not self.ready.done():
                self._fail_ready(
                    ConnectionAborted(f"TLS handshake with {format_addr(self.addr)}: {tls.failure}")
                )
            if self.transport is not None:
                self.transport.close()
            return None
        if self.conn is None:
            if not tls.established:
                return b""
            if self._idle is not None:
                self._idle.cancel()
                self._idle = None
            self._start()
        if tls.closed is not None:
            self._end_tls(f"TLS closed: {tls.closed}", plain)
            return None
        return plain

    def _end_tls(self, reason: str, last: bytes) -> None:
        conn = self.conn
        if conn is not None and conn.closed is None:
            if last:
                conn.receive_data(last, self._owner._loop.time())
            conn.connection_lost(reason, self._owner._loop.time())
            self._owner._drain(self)
        if self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self._engine is not None:
            plain = self._engine_plaintext(data)
            if not plain:
                return
            data = plain
        elif self._tls is not None:
            plain = self._plaintext(data)
            if not plain:
                return
            data = plain
        conn = self.conn
        if conn is None:
            return
        before = len(conn.events)
        conn.receive_data(data, self._owner._loop.time())
        if len(conn.events) > before or conn.closed is not None:
            self._touch()
        self._owner._drain(self)
        self.flush()

    def eof_received(self) -> bool | None:
        return False  # close our side too: CoAP over TCP has no half-closed use

    def connection_lost(self, exc: Exception | None) -> None:
        if self.conn is not None and self.conn.closed is None:
            self.conn.connection_lost(
                "closed by the peer" if exc is None else f"lost: {exc}", self._owner._loop.time()
            )
            self._owner._drain(self)
        self._cancel_timers()
        self._owner._detach(self)
        if not self.ready.done():
            self._fail_ready(ConnectionAborted("the connection closed before it was set up"))

    def _write(self, transport: asyncio.Transport, data: bytes) -> None:
        if self._engine is not None:
            self._engine.write(data)
            self._send_engine()
            return
        if self._tls is not None:
            try:
                self._tls.write(data)
            except (ssl.SSLError, OSError) as exc:
                self._owner.note(
                    "TLS write failures",
                    logging.INFO,
                    "CoAP over TLS: cannot write to %s: %s",
                    format_addr(self.addr),
                    exc,
                )
                transport.abort()
                return
            self._send_tls()
            return
        transport.write(data)

    def flush(self) -> None:
        """Send what the connection has; re-arm its timer; close the socket once it ended."""
        conn, transport = self.conn, self.transport
        if conn is None or transport is None or transport.is_closing():
            return
        data = conn.data_to_send()
        if data:
            self._write(transport, data)
            if transport.get_write_buffer_size() > self._owner.limits.max_write_buffer:
                self._owner.note(
                    "connections aborted (peer does not read)",
                    logging.WARNING,
                    "CoAP over TCP: %s does not read what it is sent: aborted",
                    format_addr(self.addr),
                )
                conn.connection_lost("aborted: the peer does not read", self._owner._loop.time())
                self._owner._drain(self)
                transport.abort()
                return
        if conn.closed is not None:
            self._close_transport()  # after what is written (an Abort, a Release) leaves
            return
        self._arm()

    def _close_transport(self) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if self._engine is not None and self.conn is not None:
            self._engine.close()  # close_notify (RFC 5246 §7.2.1); the peer's is not waited for
            self._send_engine()
        if self._tls is not None and self.conn is not None:
            with contextlib.suppress(ssl.SSLError, OSError):
                self._tls.unwrap()  # close_notify (RFC 8446 §6.1); the peer's is not waited for
            self._send_tls()
        transport.close()

    def _arm(self) -> None:
        assert self.conn is not None
        at = self.conn.get_timer()
        if self._timer is not None:
            if at is not None and self._timer.when() == at:
                return
            self._timer.cancel()
            self._timer = None
        if at is not None:
            self._timer = self._owner._loop.call_at(at, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if self.conn is None:
            return
        self.conn.handle_timer(self._owner._loop.time())
        self._owner._drain(self)
        self.flush()

    def _touch(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
        self._idle = self._owner._loop.call_later(self._owner.limits.idle_timeout, self._on_idle)

    def _on_idle(self) -> None:
        self._idle = None
        if self.transport is None:
            return
        if self.conn is None:
            # The TLS handshake did not finish in time.
            self._owner.note(
                "TLS handshakes timed out",
                logging.INFO,
                "CoAP over TLS: no handshake from %s in time: closed",
                format_addr(self.addr),
            )
            if not self.ready.done():
                self._fail_ready(ConnectionAborted(f"no TLS handshake with {format_addr(self.addr)} in time"))
            self.transport.abort()
            return
        self._owner.note(
            "idle connections released",
            logging.INFO,
            "CoAP over TCP: %s idle for %g s: released",
            format_addr(self.addr),
            self._owner.limits.idle_timeout,
        )
        self.conn.release(self._owner._loop.time())
        self._owner._drain(self)
        self.flush()

    def _cancel_timers(self) -> None:
        for handle in (self._timer, self._idle):
            if handle is not None:
                handle.cancel()
        self._timer = self._idle = None

    def close(self) -> None:
        if self.conn is not None and self.conn.closed is None:
            self.conn.release(self._owner._loop.time())
            self._owner._drain(self)
            self.flush()
        self._close_transport()
        self._cancel_timers()


class CoapTcpEndpoint:
    """CoAP over TCP or TLS: serves requests through ``handler`` and sends requests (see the
    module's docstring). ``server_ssl`` makes the listening side TLS (``coaps+tcp``),
    ``client_ssl`` the connections it opens."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        handler: Handler | None = None,
        on_event: EventCallback | None = None,
        config: TcpConfig | None = None,
        limits: TcpLimits | None = None,
        server_ssl: ssl.SSLContext | None = None,
        client_ssl: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        dial: bool = True,
        server_tls: StreamTlsFactory | None = None,
        client_tls: StreamTlsFactory | None = None,
        oscore: OscoreLayer | None = None,
    ) -> None:
        self._loop = loop
        # RFC 8613 over RFC 8323 as over UDP (the OSCORE option is the same; there is no type or
        # MID to protect): requests with an OSCORE option verified before the handler sees them,
        # their answers and notifications protected, our requests to a peer it binds protected.
        self.oscore = oscore
        if oscore is not None:
            config = config if config is not None else TcpConfig()
            config = dataclasses.replace(
                config, extra_critical_options=config.extra_critical_options | {_OSCORE}
            )
        # TLS through our engine (``lwm2m.transport.tls_engine``), instead of ``server_ssl`` /
        # ``client_ssl``: PSK, raw public keys and X.509 alike.
        self._server_tls = server_tls
        self._client_tls = client_tls
        self._dial = dial
        self._handler = handler
        self._extra = on_event
        self.config = config if config is not None else TcpConfig()
        self.limits = limits if limits is not None else TcpLimits()
        # What peers can cause is logged within a budget (a flood of bad connections is counted).
        self._log = LogBudget(log)
        # The block-wise bodies of all connections together (TcpConfig.max_block_bytes).
        self.budget = BlockBudget(self.config.max_block_bytes)
        self._server_ssl = server_ssl
        self._client_ssl = client_ssl
        self._server_hostname = server_hostname
        self._links: dict[Addr, _Link] = {}
        self._accepted: set[_Link] = set()
        self._connecting: dict[Addr, asyncio.Future[_Link]] = {}
        self._pending: dict[tuple[Addr, bytes], asyncio.Future[Message]] = {}
        self._observations: dict[bytes, CoapObservation] = {}
        self._observed_at: dict[bytes, Addr] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._server: asyncio.Server | None = None
        self._closed = False
        self._receiving = True
        self.on_connection: Callable[[Addr, bool], None] | None = None  # (addr, open) per connection
        self._sink: ConnectionSink | None = None  # the message trace's, while one is on

    async def listen(self, host: str, port: int) -> None:
        self._server = await self._loop.create_server(
            lambda: _Link(self, True, self._server_ssl, None, self._server_tls),
            host,
            port,
            reuse_address=True,
        )

    def note(self, category: str, level: int, fmt: str, *args: Any) -> None:
        """A log line a peer can cause, within the endpoint's budget per category."""
        self._log.log(category, self._loop.time(), level, fmt, *args)

    # --- addresses ---------------------------------------------------------------------------

    @property
    def addresses(self) -> list[Addr]:
        if self._server is None:
            return []
        return [tuple(s.getsockname()) for s in self._server.sockets]

    @property
    def port(self) -> int:
        """The listening port; for an endpoint that only connects, the local port of its first
        connection (0 while it has none)."""
        if self._server is not None:
            return self.addresses[0][1]
        for link in self._links.values():
            if link.transport is not None:
                return int(link.transport.get_extra_info("sockname")[1])
        return 0

    @property
    def receiving(self) -> bool:
        return self._receiving

    @receiving.setter
    def receiving(self, on: bool) -> None:
        """False: a sleeping client closes its connections (queue mode over TCP, LwM2M-TS-Transport
        1.2 §6.5); its next request connects again."""
        self._receiving = on
        if not on:
            for link in list(self._links.values()):
                link.close()

    def uri(self, path: str = "") -> str:
        secure = self._server_ssl is not None or self._server_tls is not None
        scheme = "coaps+tcp" if secure else "coap+tcp"
        return f"{scheme}://{format_addr(self.addresses[0])}{path}"

    def connected(self, addr: Addr) -> bool:
        """Whether a connection with ``addr`` is open."""
        link = self._links.get(normalize(addr) or addr)
        return link is not None and link.conn is not None and link.conn.closed is None

    def peer_identity(self, addr: Addr) -> PeerIdentity | None:
        """What the TLS peer at ``addr`` proved with its certificate (None over plain TCP)."""
        link = self._links.get(normalize(addr) or addr)
        return None if link is None else link.identity

    def connections(self) -> int:
        return len(self._links)

    def tap(self, sink: ConnectionSink | None) -> None:
        """Copy the messages to and from the peers ``sink`` names to it (requests, responses and
        notifications; not signaling); None takes the tap out: then a message costs one check."""
        self._sink = sink

    def _trace(self, incoming: bool, message: Message, addr: Addr) -> None:
        sink = self._sink
        if sink is not None and addr in sink.addresses:
            sink.seen_message(incoming, message, addr)

    # --- connections ---------------------------------------------------------------------------

    def _attach(self, link: _Link) -> None:
        old = self._links.get(link.addr)
        if old is not None and old is not link:
            old.close()
        self._links[link.addr] = link
        if self.on_connection is not None:
            self.on_connection(link.addr, True)

    def _detach(self, link: _Link) -> None:
        if self._links.get(link.addr) is link:
            del self._links[link.addr]
        self._accepted.discard(link)
        if self.on_connection is not None and link.conn is not None:
            self.on_connection(link.addr, False)

    async def _link_to(self, addr: Addr) -> _Link:
        link = self._links.get(addr)
        if link is not None and link.conn is not None and link.conn.closed is None:
            return link
        if not self._dial:
            # A server does not connect to its clients: it waits for them to connect.
            raise ConnectionAborted(f"no connection with {format_addr(addr)}: it closed")
        waiting = self._connecting.get(addr)
        if waiting is None:
            waiting = self._loop.create_future()
            self._connecting[addr] = waiting
            try:
                link = await self._connect(addr)
            except BaseException as exc:
                err = exc if isinstance(exc, Exception) else ConnectionAborted("cancelled")
                waiting.set_exception(err)
                waiting.exception()  # retrieved: nobody else may wait
                raise
            finally:
                self._connecting.pop(addr, None)
            waiting.set_result(link)
            return link
        return await asyncio.shield(waiting)

    async def _connect(self, addr: Addr) -> _Link:
        host, port = addr[0], addr[1]
        hostname = self._server_hostname if self._server_hostname is not None else host
        try:
            async with asyncio.timeout(self.limits.connect_timeout):
                _, link = await self._loop.create_connection(
                    lambda: _Link(
                        self,
                        False,
                        self._client_ssl,
                        hostname if self._client_ssl else None,
                        self._client_tls,
                    ),
                    host,
                    port,
                )
                await link.ready
        except TimeoutError:
            raise RequestTimeout(
                f"no connection to {format_addr(addr)} within {self.limits.connect_timeout:g} s"
            ) from None
        except (OSError, ssl.SSLError) as exc:
            raise ConnectionAborted(f"cannot connect to {format_addr(addr)}: {exc}") from exc
        return link

    # --- events ---------------------------------------------------------------------------------

    def _drain(self, link: _Link) -> None:
        conn = link.conn
        if conn is None:
            return
        events = conn.events
        while events:
            # A batch at a time (a handler may cause more events, taken in the next round).
            batch = events[:]
            events.clear()
            for event in batch:
                try:
                    self._dispatch(link, event)
                except Exception:
                    log.exception("CoAP over TCP: event %s failed", type(event).__name__)

    def _dispatch(self, link: _Link, event: Event) -> None:
        kind = type(event)
        if kind is RequestReceived:
            assert isinstance(event, RequestReceived)
            if self._sink is not None:
                self._trace(True, event.message, link.addr)
            if self.oscore is not None and event.message.has_option(_OSCORE):
                self._protected_request(link, event)
                return
            self._serve(link, event)
            return
        if self.oscore is not None and self._oscore_event(link, event):
            return
        if kind is ResponseReceived:
            assert isinstance(event, ResponseReceived)
            if self._sink is not None:
                self._trace(True, event.response, link.addr)
            fut = self._pending.pop((link.addr, event.token), None)
            if fut is not None:
                if not fut.done():
                    fut.set_result(event.response)
                return
            obs = self._observations.get(event.token)
            if obs is not None:
                response = event.response
                obs._push(response, last=response.observe is None or response.code >> 5 != 2)
                return
        elif kind is CoapNotificationReceived:
            assert isinstance(event, CoapNotificationReceived)
            if self._sink is not None:
                self._trace(True, event.response, link.addr)
            obs = self._observations.get(event.token)
            if obs is not None:
                obs._push(event.response, last=event.final)
                return
        elif kind is RequestTimedOut:
            assert isinstance(event, RequestTimedOut)
            if self._fail(
                link.addr, event.token, RequestTimeout(f"no response from {format_addr(link.addr)}")
            ):
                return
        elif kind is RequestFailed:
            assert isinstance(event, RequestFailed)
            if self._fail(link.addr, event.token, ConnectionAborted(event.reason)):
                return
        elif kind is ConnectionEnded:
            assert isinstance(event, ConnectionEnded)
            self.note(
                "connections aborted" if event.aborted else "connections ended",
                logging.WARNING if event.aborted else logging.DEBUG,
                "CoAP over TCP: connection with %s ended: %s",
                format_addr(link.addr),
                event.reason,
            )
        if self._extra is not None:
            self._extra(event)

    def _protected_request(self, link: _Link, event: RequestReceived, *, lookup: bool = True) -> None:
        """An OSCORE request: verified and served, or answered in its place (RFC 8613 §8.2), or
        tried again once the layer's directory has looked its context up."""
        assert self.oscore is not None
        inner = self.oscore.unprotect_request(event, self._loop.time(), lookup=lookup)
        if isinstance(inner, Message):
            self._answer(link, event, inner)
        elif isinstance(inner, RequestReceived):
            self._serve(link, inner)  # its answer is protected on the way out (_answer)
        else:
            task = asyncio.ensure_future(self._after_lookup(link, event, inner.done))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _after_lookup(self, link: _Link, event: RequestReceived, done: Awaitable[object]) -> None:
        try:
            await done
        except Exception:
            log.exception(
                "looking up the OSCORE context of a request from %s failed", format_addr(event.addr)
            )
        if not self._closed and link.conn is not None:
            self._protected_request(link, event, lookup=False)

    def _oscore_event(self, link: _Link, event: Event) -> bool:
        """Verify the answers to our OSCORE requests before they are delivered (RFC 8613 §8.4);
        True when the event was taken here (delivered, repeated with Echo, or discarded)."""
        layer = self.oscore
        assert layer is not None
        if type(event) is ResponseReceived or type(event) is CoapNotificationReceived:
            token = event.token
            if token not in layer.pending:
                return False
        else:
            if type(event) is RequestTimedOut or type(event) is RequestFailed:
                layer.pending.pop(event.token, None)
            elif type(event) is ObservationCancelled:
                layer.forget_relation((event.addr, event.token))
            return False
        if self._sink is not None:
            self._trace(True, event.response, link.addr)
        try:
            inner = layer.unprotect_response(token, event.response, final=False)
        except OscoreError as exc:
            log.info("OSCORE response from %s discarded: %s", format_addr(link.addr), exc)
            if type(event) is ResponseReceived:
                layer.pending.pop(token, None)
                self._fail(link.addr, token, oscore_failure(event.response, exc))
            return True  # a notification that does not verify is dropped (§8.4)
        key = (link.addr, token)
        obs = self._observations.get(token)
        if type(event) is ResponseReceived:
            retry = layer.echo_retry(token, inner)
            if retry is not None and key in self._pending and link.conn is not None:
                # RFC 9175 §2.4: the same request again with the Echo, protected anew.
                protected = layer.protect_request(retry, link.addr)
                if protected is not None:
                    outer, pending = protected
                    link.conn.request(outer.replace(token=token), self._loop.time())
                    layer.track(token, pending)
                    link.flush()
                    return True
            if obs is None or inner.observe is None or inner.code >> 5 != 2:
                layer.pending.pop(token, None)
            fut = self._pending.pop(key, None)
            if fut is not None:
                if not fut.done():
                    fut.set_result(inner)
            elif obs is not None:
                obs._push(inner, last=inner.observe is None or inner.code >> 5 != 2)
            return True
        assert isinstance(event, CoapNotificationReceived)
        if event.final:
            layer.pending.pop(token, None)
        if obs is not None:
            obs._push(inner, last=event.final)
        return True

    def _serve(self, link: _Link, event: RequestReceived) -> None:
        handler = self._handler
        if handler is None:
            if self._extra is not None:
                self._extra(event)
            return
        try:
            result = handler(event)
        except Exception:
            log.exception("request handler failed for %s", event.message)
            result = _INTERNAL_ERROR
        if result is None:
            return
        if isinstance(result, Message):
            self._answer(link, event, result)
            return
        task = asyncio.ensure_future(self._answer_later(link, event, result))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer_later(
        self, link: _Link, event: RequestReceived, result: Awaitable[Message | None]
    ) -> None:
        try:
            message = await result
        except Exception:
            log.exception("request handler failed for %s", event.message)
            message = _INTERNAL_ERROR
        if message is not None and not self._closed:
            self._answer(link, event, message)

    def _answer(self, link: _Link, event: RequestReceived, message: Message) -> None:
        if link.conn is None:
            return
        if self.oscore is not None:
            event, message = self.oscore.protect_response(event, message)
        if self._sink is not None:
            self._trace(False, message.replace(token=event.message.token), link.addr)
        link.conn.respond(event, message, self._loop.time())
        link.flush()

    def _fail(self, addr: Addr, token: bytes, exc: BaseException) -> bool:
        fut = self._pending.pop((addr, token), None)
        if fut is not None:
            if not fut.done():
                fut.set_exception(exc)
            return True
        obs = self._observations.get(token)
        if obs is not None and self._observed_at.get(token) == addr:
            obs._push(exc, last=True)
            return True
        return False

    # --- application API ---------------------------------------------------------------------

    def respond(self, event: RequestReceived, message: Message) -> None:
        """Answer a request outside of the handler call."""
        self._check_open()
        link = self._links.get(event.addr)
        if link is not None:
            self._answer(link, event, message)

    def notify(self, relation: tuple[Addr, bytes], message: Message, *, confirmable: bool = False) -> bool:
        """Send a notification on ``RequestReceived.relation``; False if the relation has ended
        (over TCP every message is reliable: ``confirmable`` changes nothing)."""
        self._check_open()
        link = self._links.get(relation[0])
        if link is None or link.conn is None:
            return False
        if self.oscore is not None:
            # RFC 8613 §4.1.3.5.2: each notification protected with a Partial IV of its own.
            message = self.oscore.protect_notification(relation, message) or message
        if self._sink is not None:
            self._trace(False, message.replace(token=relation[1]), link.addr)
        alive = link.conn.notify(relation, message, self._loop.time())
        link.flush()
        return alive

    async def request(self, message: Message, addr: Addr, *, timeout: float | None = None) -> Message:
        """Send ``message`` to ``addr`` (over its connection, opened if need be) and return the
        response (block-wise transfers joined)."""
        self._check_open()
        addr = normalize(addr) or addr
        link = await self._link_to(addr)
        assert link.conn is not None
        token = self._send_request(link, message)
        if self._sink is not None:
            self._trace(False, message.replace(token=token), link.addr)
        fut: asyncio.Future[Message] = self._loop.create_future()
        key = (link.addr, token)
        self._pending[key] = fut
        link.flush()
        try:
            if timeout is None:
                return await fut
            try:
                async with asyncio.timeout(timeout):
                    return await fut
            except TimeoutError:
                raise RequestTimeout(f"no response from {format_addr(addr)} within {timeout:g} s") from None
        finally:
            if self._pending.pop(key, None) is not None and link.conn is not None:
                link.conn.cancel(token)

    def observe(self, message: Message, addr: Addr) -> CoapObservation:
        """Register an observation over the peer's connection (which must be open: a server
        observes the devices that connected to it); iterate for notifications."""
        self._check_open()
        if message.observe is None:
            message = message.with_option(OptionNumber.OBSERVE, 0)
        addr = normalize(addr) or addr
        link = self._links.get(addr)
        if link is None or link.conn is None or link.conn.closed is not None:
            obs = CoapObservation(self, b"")
            obs._push(ConnectionAborted(f"no connection with {format_addr(addr)}"), last=True)
            return obs
        token = self._send_request(link, message)
        if self._sink is not None:
            self._trace(False, message.replace(token=token), link.addr)
        obs = CoapObservation(self, token)
        if self.oscore is not None:
            pending = self.oscore.pending.get(token)
            obs.oscore = None if pending is None else pending.binding
        self._observations[token] = obs
        self._observed_at[token] = link.addr
        link.flush()
        return obs

    def _send_request(self, link: _Link, message: Message) -> bytes:
        """Hand ``message`` to the connection, protected first when OSCORE binds its peer."""
        assert link.conn is not None
        now = self._loop.time()
        if self.oscore is None:
            return link.conn.request(message, now)
        protected = self.oscore.protect_request(message, link.addr)
        if protected is None:
            return link.conn.request(message, now)
        outer, pending = protected
        token = link.conn.request(outer, now)
        self.oscore.track(token, pending)
        return token

    def resume_observation(self, addr: Addr, token: bytes, request: Message | None = None) -> CoapObservation:
        """An observation made over a connection that is gone cannot go on (RFC 8323 §7: it
        lives and dies with its connection): the iterator ends at once with ``ConnectionAborted``."""
        obs = CoapObservation(self, token)
        obs._push(ConnectionAborted("an observation over TCP ends with its connection"), last=True)
        return obs

    def move_observation(self, token: bytes, addr: Addr, new_addr: Addr) -> bool:
        """A connection does not move: False (the device observed again over its new one)."""
        return False

    def _relation_ended(self, relation: CoapObservation) -> None:
        if self._observations.get(relation.token) is relation:
            del self._observations[relation.token]

    def _cancel(self, token: bytes, near: Addr | None = None) -> None:
        self._observations.pop(token, None)
        addr = self._observed_at.pop(token, None)  # kept per token: no need of ``near``
        link = None if addr is None else self._links.get(addr)
        if link is not None and link.conn is not None:
            link.conn.cancel(token)

    def close_connection(self, addr: Addr) -> bool:
        """Release the connection with ``addr`` (7.04) and close it; False when there is none."""
        link = self._links.get(normalize(addr) or addr)
        if link is None:
            return False
        link.close()
        return True

    def _check_open(self) -> None:
        if self._closed:
            raise EndpointClosed("the endpoint is closed")

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._server is not None:
            self._server.close()
        for link in list(self._links.values()):
            link.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
        err = EndpointClosed("the endpoint was closed")
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(err)
        self._pending.clear()
        for obs in list(self._observations.values()):
            obs._push(err, last=True)
        self._observations.clear()

    async def __aenter__(self) -> CoapTcpEndpoint:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


@contextlib.asynccontextmanager
async def open_tcp_endpoint(
    host: str | None = "127.0.0.1",
    port: int = 0,
    *,
    handler: Handler | None = None,
    on_event: EventCallback | None = None,
    config: TcpConfig | None = None,
    limits: TcpLimits | None = None,
    server_ssl: ssl.SSLContext | None = None,
    client_ssl: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
    dial: bool = True,
    server_tls: StreamTlsFactory | None = None,
    client_tls: StreamTlsFactory | None = None,
    oscore: OscoreLayer | None = None,
) -> AsyncIterator[CoapTcpEndpoint]:
    """``async with open_tcp_endpoint(...) as ep``: listening on ``host``:``port`` unless
    ``host`` is None (a client that only opens connections); closed on exit. ``dial`` False:
    requests go only over connections the peers opened (a server's)."""
    ep = CoapTcpEndpoint(
        asyncio.get_running_loop(),
        handler=handler,
        on_event=on_event,
        config=config,
        limits=limits,
        server_ssl=server_ssl,
        client_ssl=client_ssl,
        server_hostname=server_hostname,
        dial=dial,
        server_tls=server_tls,
        client_tls=client_tls,
        oscore=oscore,
    )
    try:
        if host is not None:
            await ep.listen(host, port)
        yield ep
    finally:
        await ep.close()


def own_tcp_endpoint(
    dtls: DtlsClientConfig | None,
    handler: Handler,
    on_event: EventCallback | None,
    config: TcpConfig | None,
    oscore: OscoreLayer | None = None,
) -> CoapTcpEndpoint:
    """A client's endpoint for a ``coap+tcp://`` server, or a ``coaps+tcp://`` one with the
    credentials of ``dtls`` (a PSK, a raw public key or a certificate) through our TLS engine
    (``lwm2m.transport.tls_engine``), checked as DTLS checks them. Requests from the server come
    over the connection it opens; ``oscore``, a layer binding the server's address to the
    account's context, protects them end to end (RFC 8613)."""
    client_tls = None
    if dtls is not None:
        from lwm2m.transport.tls_engine import engine_tls_client  # only with TLS: needs cryptography

        try:
            client_tls = engine_tls_client(dtls)
        except ValueError as exc:
            raise ConfigError(f"coaps+tcp://: {exc}") from None
    return CoapTcpEndpoint(
        asyncio.get_running_loop(),
        handler=handler,
        on_event=on_event,
        config=config,
        client_tls=client_tls,
        oscore=oscore,
    )
