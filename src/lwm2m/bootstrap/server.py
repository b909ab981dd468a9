"""``BootstrapServer``: the LwM2M bootstrap server role as an asyncio object.

::

    async with BootstrapServer(BootstrapServerConfig(port=0), MemoryStore.create()) as bs:
        await bs.set_config("dev-1", BootstrapConfig.from_json({...}))
        async for event in bs.events():
            if isinstance(event, BootstrapFinished):
                ...

On a Bootstrap-Request (LwM2M-TS-Core 1.2 §6.1.7.1) it answers 2.04 and runs
the session of the endpoint's configuration (or of the default one,
:data:`~lwm2m.protocol.bootstrap_config.DEFAULT_ENDPOINT`): a Bootstrap-Discover
(§6.1.7.3; unless the configuration turns it off) to find the device's bootstrap
server account and the instances it holds, the Bootstrap-Deletes, a Bootstrap-Write
per Security, Server and Access Control instance and per extra resource, then
Bootstrap-Finish. The bootstrap server account is never written nor deleted
(§6.1.7.6); a configuration that would do it ends the session with the reason.
An error code from the client, no answer, or a session that runs too long ends
it with :class:`~lwm2m.bootstrap.events.BootstrapFailed` and no Bootstrap-Finish:
the client then drops what it was given and asks again (§6.1.4). A
Bootstrap-Pack-Request (§6.1.7.7) is answered with every value at once, placed on
the layout the last session's Discover found for that endpoint (a pack comes
without one), else on the configuration's ``bootstrapAccountId``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Iterable
from typing import Any

from lwm2m.bootstrap.config import BootstrapServerConfig
from lwm2m.bootstrap.events import (
    BootstrapEvent,
    BootstrapEventStream,
    BootstrapFailed,
    BootstrapFinished,
    BootstrapSession,
    BootstrapStarted,
)
from lwm2m.coap.events import RequestReceived
from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, Type, as_code, code_text
from lwm2m.codec.base import ContentFormat
from lwm2m.codec.formats import get_codec
from lwm2m.errors import (
    BootstrapError,
    BootstrapSessionError,
    CodecError,
    ConfigError,
    RequestAborted,
    RequestReset,
    RequestTimeout,
    ResponseError,
)
from lwm2m.model.catalogue import load_catalogue
from lwm2m.model.path import ROOT
from lwm2m.model.registry import ObjectRegistry
from lwm2m.protocol.bootstrap import (
    BS,
    BSPACK,
    WRITE_FORMATS,
    BootstrapDeleteRequest,
    BootstrapDiscoverRequest,
    BootstrapFinishRequest,
    BootstrapPackRequest,
    BootstrapRequest,
    BootstrapWriteRequest,
    Discovery,
    DownlinkRequest,
    decode_bootstrap_response,
)
from lwm2m.protocol.bootstrap_config import DEFAULT_ENDPOINT, BootstrapConfig, DeviceLayout
from lwm2m.protocol.management import Response
from lwm2m.storage.base import BootstrapConfigStore, SecurityStore, Store
from lwm2m.storage.memory import MemoryStore
from lwm2m.transport.address import format_addr
from lwm2m.transport.tcp import CoapTcpEndpoint, open_tcp_endpoint, tls_server_context
from lwm2m.transport.udp import CoapUdpEndpoint, open_udp_endpoint

log = logging.getLogger(__name__)

LAYOUTS = 10_000  # device layouts remembered for Bootstrap-Packs, the least recently used dropped


def security_info(endpoint: str, config: BootstrapConfig) -> Any:
    """What an LwM2M server must hold to accept the device ``config`` sets up over DTLS: a
    ``SecurityInfo`` with the PSK (raw public key, or X.509) of its first secured server account. None for an
    all-NoSec configuration, and for the default one (no endpoint name to file it under)."""
    from lwm2m.storage.base import SecurityInfo

    if endpoint == DEFAULT_ENDPOINT:
        return None
    for server in config.servers:
        security = server.security
        if security.mode == "psk":
            return SecurityInfo(endpoint, security.identity, security.key)
        if security.mode == "x509":
            return SecurityInfo(endpoint, x509=True)
        if security.mode == "rpk":  # the client's public key (/0/x/3) is its identity (RFC 7250)
            return SecurityInfo(endpoint, rpk=security.public_key)
        if security.mode == "oscore":  # RFC 8613: the parameters as the device holds them
            from lwm2m.storage.base import OscoreSecrets

            oscore = OscoreSecrets(
                security.key, security.sender_id, security.recipient_id, security.salt, security.id_context
            )
            return SecurityInfo(endpoint, oscore=oscore)
    return None


def _reply(code: int, diagnostic: str = "") -> Message:
    return Message.build(Type.ACK, as_code(code), payload=diagnostic.encode())


def _refuse(operation: str, addr: Any, code: int, diagnostic: str) -> Message:
    """A refusal that starts no session, logged as the LwM2M server logs its own."""
    log.info("%s refused from %s: %s: %s", operation, format_addr(addr), code_text(code), diagnostic)
    return _reply(code, diagnostic)  # type: ignore[arg-type]


_code = code_text  # "2.04 Changed", for the session's steps


PSK_REFRESH = 10.0  # seconds a loaded key is trusted without looking at the store again


class BootstrapServer:
    """The bootstrap server on one UDP port, and on a DTLS one with ``coaps_port``.

    ``config`` sets it up (:class:`~lwm2m.bootstrap.config.BootstrapServerConfig`); the
    configurations live in ``store``'s ``bootstrap_configs`` (a :class:`~lwm2m.storage.base.Store`;
    by default in memory).

    ``security`` is the bootstrap server's own security store (a
    :class:`~lwm2m.storage.base.SecurityStore`): the PSK each endpoint bootstraps with
    over DTLS (or ``x509``: a certificate whose CN is the endpoint, when ``certificate``
    is given; or ``rpk``: its raw public key, when ``config.rpk`` is given). An endpoint
    found there may bootstrap over DTLS only, and only as itself: its Bootstrap-Request over
    plain CoAP, or naming another endpoint, gets 4.03 (the configuration holds the keys of
    its server accounts).
    """

    def __init__(
        self,
        config: BootstrapServerConfig | None = None,
        store: Store | None = None,
        *,
        security: SecurityStore | None = None,
        models: ObjectRegistry | None = None,
    ) -> None:
        config = config if config is not None else BootstrapServerConfig()
        self.config = config
        self.host = config.host
        self.port = config.port  # the bound one once started
        self.coaps_port = config.coaps_port
        self.tcp_port = config.tcp_port  # the bound ones once started
        self.tls_port = config.tls_port
        self._tcp: CoapTcpEndpoint | None = None
        self._tls: CoapTcpEndpoint | None = None
        self.security = security
        self._psk: dict[str, tuple[bytes, str]] = {}  # PSK identity -> (key, endpoint), for handshakes
        self._rpk: dict[str, str] = {}  # raw public key (hex of its DER SPKI) -> endpoint
        self._psk_loaded = 0.0
        self._psk_loading: asyncio.Task[None] | None = None
        self._coaps: Any = None
        if store is None:
            store = MemoryStore.create()
        self.configs: BootstrapConfigStore = store.bootstrap_configs
        self.models = models if models is not None else load_catalogue()
        self.request_timeout = config.request_timeout
        self.session_timeout = config.session_timeout
        self._subscribers: set[asyncio.Queue[BootstrapEvent]] = set()
        self._running: dict[str, tuple[BootstrapSession, asyncio.Task[None]]] = {}
        self._ended: deque[BootstrapSession] = deque(maxlen=config.history)
        self._layouts: OrderedDict[str, DeviceLayout] = OrderedDict()
        self._endpoint: CoapUdpEndpoint | None = None
        self._stack = contextlib.AsyncExitStack()
        self._stopping = False

    # --- life cycle -------------------------------------------------------------------------

    async def start(self) -> None:
        self._stopping = False
        self._endpoint = await self._stack.enter_async_context(
            open_udp_endpoint(self.host, self.port, handler=self._on_request)
        )
        self.port = self._endpoint.port
        if self.coaps_port is not None:
            await self._start_dtls(self.coaps_port)
        await self._start_tcp()

    async def _start_tcp(self) -> None:
        """Listen for CoAP over TCP and over TLS, as configured (RFC 8323): the session runs over
        the connection the Bootstrap-Request came on (LwM2M-TS-Transport 1.2 §6)."""
        config = self.config
        if config.tcp_port is not None:
            self._tcp = await self._stack.enter_async_context(
                open_tcp_endpoint(
                    self.host,
                    config.tcp_port,
                    handler=self._on_tcp_request,
                    config=config.tcp,
                    limits=config.tcp_limits,
                    dial=False,
                )
            )
            self.tcp_port = self._tcp.port
        if config.tls_port is not None:
            assert config.certificate is not None  # BootstrapServerConfig checks it
            self._tls = await self._stack.enter_async_context(
                open_tcp_endpoint(
                    self.host,
                    config.tls_port,
                    handler=self._on_tls_request,
                    config=config.tcp,
                    limits=config.tcp_limits,
                    server_ssl=tls_server_context(config.certificate),
                    dial=False,
                )
            )
            self.tls_port = self._tls.port

    async def _start_dtls(self, port: int) -> None:
        from lwm2m.transport.dtls.config import DtlsServerConfig
        from lwm2m.transport.dtls.endpoint import open_dtls_endpoint

        if self.security is None and self.config.certificate is None:
            raise ConfigError("coaps_port needs security= (the bootstrap PSKs) or certificate=")
        if self.security is None and self.config.rpk is not None:
            raise ConfigError("rpk needs security= (the endpoints' raw public keys)")
        await self._load_psks()
        config = DtlsServerConfig(
            psk_lookup=self._psk_for if self.security is not None else None,
            certificate=self.config.certificate,
            rpk=self.config.rpk,
        )
        self._coaps = await self._stack.enter_async_context(
            open_dtls_endpoint(self.host, port, server=config, handler=self._on_secure_request)
        )
        self.coaps_port = self._coaps.port

    async def _load_psks(self) -> None:
        if self.security is None:
            return
        infos = await self.security.all()
        self._psk = {i.psk_identity: (i.psk_key, i.endpoint) for i in infos if i.psk_identity and i.psk_key}
        self._rpk = {i.rpk.hex(): i.endpoint for i in infos if i.rpk}
        self._psk_loaded = time.monotonic()

    def _psk_for(self, identity: str) -> bytes | None:
        """The key of a PSK identity, answered at once (the handshake waits on it). An identity not
        known here, or keys older than PSK_REFRESH seconds, make a reload from the store for the
        client's next handshake (another process may have changed them)."""
        found = self._psk.get(identity)
        self._reload_if_stale(known=found is not None)
        return found[0] if found is not None else None

    def _reload_if_stale(self, *, known: bool) -> None:
        age = time.monotonic() - self._psk_loaded
        if self._psk_loading is None and (age > PSK_REFRESH or (not known and age > 1.0)):
            self._psk_loading = asyncio.get_running_loop().create_task(self._load_psks())
            self._psk_loading.add_done_callback(lambda _: setattr(self, "_psk_loading", None))

    async def stop(self) -> None:
        self._stopping = True
        for _, task in list(self._running.values()):
            task.cancel()
        for _, task in list(self._running.values()):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._stack.aclose()
        self._endpoint = None
        self._coaps = None
        self._tcp = self._tls = None
        if self._psk_loading is not None:
            self._psk_loading.cancel()

    async def __aenter__(self) -> BootstrapServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def uri(self) -> str:
        assert self._endpoint is not None, "the bootstrap server is not started"
        return self._endpoint.uri()

    @property
    def coaps_uri(self) -> str | None:
        return None if self._coaps is None else self._coaps.uri()

    @property
    def tcp_uri(self) -> str | None:
        """The ``coap+tcp://`` URI, when it serves CoAP over TCP."""
        return None if self._tcp is None else self._tcp.uri()

    @property
    def tls_uri(self) -> str | None:
        """The ``coaps+tcp://`` URI, when it serves CoAP over TLS."""
        return None if self._tls is None else self._tls.uri()

    # --- configurations ---------------------------------------------------------------------

    async def set_config(self, endpoint: str, config: BootstrapConfig) -> BootstrapConfig | None:
        """Store ``config`` for ``endpoint`` (``"*"``: the default); answer the one it replaced."""
        if not endpoint:
            raise ConfigError("the endpoint name is empty")
        return await self.configs.put(endpoint, config)

    async def config_for(self, endpoint: str) -> BootstrapConfig | None:
        """The configuration a Bootstrap-Request of ``endpoint`` gets: its own, else the default."""
        found = await self.configs.get(endpoint)
        if found is None and endpoint != DEFAULT_ENDPOINT:
            found = await self.configs.get(DEFAULT_ENDPOINT)
        return found

    def layout_of(self, endpoint: str) -> DeviceLayout | None:
        """What the last session's Bootstrap-Discover (and its writes) left on ``endpoint``."""
        return self._layouts.get(endpoint)

    def _remember(self, endpoint: str, layout: DeviceLayout) -> None:
        if not layout.known:
            return
        self._layouts[endpoint] = layout
        self._layouts.move_to_end(endpoint)
        while len(self._layouts) > LAYOUTS:
            self._layouts.popitem(last=False)

    # --- events and sessions ----------------------------------------------------------------

    def events(self) -> BootstrapEventStream:
        """Every event from now on (subscribed at this call), until the stream is closed."""
        return BootstrapEventStream(self._subscribers)

    def _publish(self, event: BootstrapEvent) -> None:
        for queue in self._subscribers:
            queue.put_nowait(event)

    def sessions(self) -> list[BootstrapSession]:
        """Running sessions, then the recently ended ones, newest first."""
        running = sorted((s for s, _ in self._running.values()), key=lambda s: -s.started_at)
        return running + list(reversed(self._ended))

    def _end(
        self, session: BootstrapSession, status: str, reason: str = "", code: int | None = None
    ) -> BootstrapSession:
        """End ``session``; ``code`` is the answer that refused its request, for the log line."""
        ended = dataclasses.replace(session, status=status, reason=reason, ended_at=time.time())  # type: ignore[arg-type]
        self._ended.append(ended)
        current = self._running.get(session.endpoint)
        if current is not None and current[0].session_id == session.session_id:
            del self._running[session.endpoint]
        self._publish(BootstrapFinished(ended) if status == "finished" else BootstrapFailed(ended))
        log.info(
            "bootstrap %s of %r from %s %s%s",
            "session" if session.kind == "session" else "pack",
            session.endpoint,
            session.address,
            status,
            f": {code_text(code)}: {reason}" if code is not None else f": {reason}" if reason else "",
        )
        return ended

    def _refused(
        self, endpoint: str, addr: Any, reason: str, kind: str = "session", code: int = Code.BAD_REQUEST
    ) -> None:
        """A request that starts no session (no configuration): kept and told as a failure."""
        session = BootstrapSession(
            secrets.token_hex(6),
            endpoint,
            format_addr(addr),
            time.time(),
            kind=kind,  # type: ignore[arg-type]
        )
        self._end(session, "failed", reason, code)

    # --- CoAP requests from clients -----------------------------------------------------------

    def _on_request(self, event: RequestReceived) -> Any:
        return self._serve(event, self._endpoint, None)

    def _on_secure_request(self, event: RequestReceived) -> Any:
        identity = self._coaps.peer_identity(event.addr) if self._coaps is not None else None
        if identity is None:
            return _refuse("Bootstrap request", event.addr, Code.FORBIDDEN, "no authenticated DTLS session")
        if identity.kind == "psk":
            found = self._psk.get(identity.name)
            endpoint = found[1] if found is not None else None
            diagnostic = f"PSK identity {identity.name!r} belongs to no endpoint"
        elif identity.kind == "rpk":
            # The handshake took any key its holder proved; the store says whose it is. A key not
            # known yet makes a reload, for the client's next request (another process may have
            # added it), as an unknown PSK identity does.
            endpoint = self._rpk.get(identity.name)
            self._reload_if_stale(known=endpoint is not None)
            diagnostic = f"raw public key {identity} belongs to no endpoint"
        else:
            endpoint = identity.name  # an X.509 client's certificate CN is its endpoint name
            diagnostic = "the certificate names no endpoint"
        if endpoint is None:
            return _refuse("Bootstrap request", event.addr, Code.FORBIDDEN, diagnostic)
        return self._serve(event, self._coaps, endpoint)

    def _on_tcp_request(self, event: RequestReceived) -> Any:
        return self._serve(event, self._tcp, None)

    def _on_tls_request(self, event: RequestReceived) -> Any:
        """Over TLS the client certificate's CN is the endpoint, as for X.509 over DTLS."""
        identity = self._tls.peer_identity(event.addr) if self._tls is not None else None
        if identity is None or not identity.name:
            return _refuse(
                "Bootstrap request", event.addr, Code.FORBIDDEN, "the certificate names no endpoint"
            )
        return self._serve(event, self._tls, identity.name)

    def _serve(self, event: RequestReceived, transport: Any, secured_as: str | None) -> Any:
        path = event.message.uri_path
        if path == (BS,):
            return self._on_bootstrap_request(event, transport, secured_as)
        if path == (BSPACK,):
            return self._on_pack_request(event, secured_as)
        diagnostic = f"no resource {event.message.uri_path_str}: this is a bootstrap server"
        return _refuse("request", event.addr, Code.NOT_FOUND, diagnostic)

    async def _refusal(self, endpoint: str, secured_as: str | None) -> str | None:
        """Why ``endpoint`` may not bootstrap on this channel, or None: the credentials' endpoint
        only over DTLS, and an endpoint with bootstrap credentials only over DTLS."""
        if secured_as is not None:
            if endpoint != secured_as:
                return f"these DTLS credentials are {secured_as!r}'s, not {endpoint!r}'s"
            return None
        if self.security is not None and await self.security.get(endpoint) is not None:
            return f"{endpoint!r} has bootstrap credentials: it bootstraps over DTLS (coaps://)"
        return None

    async def _on_bootstrap_request(
        self, event: RequestReceived, transport: Any, secured_as: str | None
    ) -> Message:
        try:
            request = BootstrapRequest.from_message(event.message, endpoint=secured_as)
        except BootstrapError as exc:
            return _refuse("Bootstrap-Request", event.addr, exc.code, str(exc))
        refusal = await self._refusal(request.ep, secured_as)
        if refusal is not None:
            self._refused(request.ep, event.addr, refusal, code=Code.FORBIDDEN)
            return _reply(Code.FORBIDDEN, refusal)
        config = await self.config_for(request.ep)
        if config is None:
            # §6.1.7.1: 4.00 Bad Request for an endpoint the server has nothing for.
            reason = f"no bootstrap configuration for {request.ep!r} and no default one"
            self._refused(request.ep, event.addr, reason)
            return _reply(Code.BAD_REQUEST, reason)
        fmt = ContentFormat(request.pct) if request.pct in WRITE_FORMATS else None
        session = BootstrapSession(secrets.token_hex(6), request.ep, format_addr(event.addr), time.time())
        if request.pct is not None and fmt is None:
            session = dataclasses.replace(
                session, steps=(f"pct={request.pct} is not a write format here: SenML-CBOR instead",)
            )
            fmt = ContentFormat.SENML_CBOR  # pct exists from 1.1 on, where SenML-CBOR is the norm
        # The session starts once the 2.04 has left (this coroutine's answer is sent first).
        loop = asyncio.get_running_loop()
        loop.call_soon(self._start_session, session, config, event.addr, fmt, transport)
        return _reply(Code.CHANGED)

    def _start_session(
        self,
        session: BootstrapSession,
        config: BootstrapConfig,
        addr: Any,
        fmt: ContentFormat | None,
        transport: Any,
    ) -> None:
        if self._endpoint is None or self._stopping:
            return
        previous = self._running.pop(session.endpoint, None)
        if previous is not None:
            # A client that asks again gave up on the running session (§6.1.4: it retries).
            previous[1].cancel()
        task = asyncio.get_running_loop().create_task(
            self._session(_SessionRunner(self, session, addr, fmt, transport), config),
            name=f"bootstrap-{session.endpoint}",
        )
        self._running[session.endpoint] = (session, task)
        log.info("bootstrap session of %r from %s started", session.endpoint, session.address)
        self._publish(BootstrapStarted(session))

    async def _session(self, runner: _SessionRunner, config: BootstrapConfig) -> None:
        session = runner.session
        try:
            async with asyncio.timeout(self.session_timeout):
                await runner.run(config)
        except BootstrapSessionError as exc:
            self._end(runner.session, "failed", str(exc))
        except TimeoutError:
            self._end(runner.session, "failed", f"the session took longer than {self.session_timeout:g} s")
        except asyncio.CancelledError:
            reason = "the server stopped" if self._stopping else "a new Bootstrap-Request came"
            self._end(runner.session, "failed", reason)
            raise
        except Exception as exc:  # a bug must end the session, not leave it running
            log.exception("bootstrap session of %s", session.endpoint)
            self._end(runner.session, "failed", f"internal error: {type(exc).__name__}: {exc}")
        else:
            self._end(runner.session, "finished")

    async def _on_pack_request(self, event: RequestReceived, secured_as: str | None) -> Message:
        try:
            request = BootstrapPackRequest.from_message(event.message, endpoint=secured_as)
        except BootstrapError as exc:
            return _refuse("Bootstrap-Pack-Request", event.addr, exc.code, str(exc))
        refusal = await self._refusal(request.ep, secured_as)
        if refusal is not None:
            self._refused(request.ep, event.addr, refusal, kind="pack", code=Code.FORBIDDEN)
            return _reply(Code.FORBIDDEN, refusal)
        config = await self.config_for(request.ep)
        if config is None:
            reason = f"no bootstrap configuration for {request.ep!r} and no default one"
            self._refused(request.ep, event.addr, reason, kind="pack")
            return _reply(Code.BAD_REQUEST, reason)
        # §6.1.7.7: a pack comes without a Discover; it is placed on what is known of the device.
        layout = self.layout_of(request.ep) or config.assumed_layout()
        try:
            plan = config.plan(layout)
        except ConfigError as exc:
            self._refused(request.ep, event.addr, str(exc), kind="pack")
            return _reply(Code.BAD_REQUEST, str(exc))
        pack = [r for w in plan.writes for r in w.records]
        try:
            payload = get_codec(request.format).encode(pack, ROOT, self.models)
        except CodecError as exc:
            self._refused(
                request.ep,
                event.addr,
                f"cannot encode the pack: {exc}",
                kind="pack",
                code=Code.INTERNAL_SERVER_ERROR,
            )
            return _reply(Code.INTERNAL_SERVER_ERROR, f"cannot encode the pack: {exc}")
        session = BootstrapSession(
            secrets.token_hex(6),
            request.ep,
            format_addr(event.addr),
            time.time(),
            steps=(f"Bootstrap-Pack ({len(pack)} values) -> 2.05",),
            kind="pack",
        )
        self._publish(BootstrapStarted(session))
        self._end(session, "finished")
        self._remember(request.ep, plan.after)  # the next pack puts each account where this one did
        return Message.build(Type.ACK, Code.CONTENT, content_format=request.format, payload=payload)


class _SessionRunner:
    """The operations of one session, sent one after the other to the client at ``addr``."""

    def __init__(
        self,
        server: BootstrapServer,
        session: BootstrapSession,
        addr: Any,
        fmt: ContentFormat | None,
        transport: CoapUdpEndpoint | CoapTcpEndpoint,
    ) -> None:
        self.server = server
        self.session = session
        self.addr = addr
        self.format = fmt
        self.transport = transport  # plain CoAP, DTLS, or the TCP/TLS endpoint of the client's connection

    def _step(self, text: str) -> None:
        self.session = dataclasses.replace(self.session, steps=(*self.session.steps, text))
        running = self.server._running.get(self.session.endpoint)
        if running is not None and running[0].session_id == self.session.session_id:
            self.server._running[self.session.endpoint] = (self.session, running[1])

    async def send(self, request: DownlinkRequest, *, accept: Iterable[int] = ()) -> Response:
        """Send one operation; BootstrapSessionError unless the client answers with success (or a code in
        ``accept``)."""
        endpoint = self.transport
        if self.server._endpoint is None:
            raise BootstrapSessionError("the server stopped")
        what = request.describe()
        try:
            message = request.to_message(self.server.models)
        except BootstrapError as exc:
            raise BootstrapSessionError(f"{what}: {exc}") from None
        try:
            answer = await endpoint.request(message, self.addr, timeout=self.server.request_timeout)
        except RequestTimeout:
            self._step(f"{what} -> no answer")
            raise BootstrapSessionError(
                f"{what}: no answer from {format_addr(self.addr)} within {self.server.request_timeout:g} s"
            ) from None
        except RequestReset:
            self._step(f"{what} -> RST")
            raise BootstrapSessionError(f"{what}: the client answered with RST") from None
        except RequestAborted as exc:
            raise BootstrapSessionError(f"{what}: {exc}") from None
        try:
            response = decode_bootstrap_response(request, answer, self.server.models)
        except ResponseError as exc:
            self._step(f"{what} -> {_code(answer.code)} (unreadable)")
            raise BootstrapSessionError(f"{what}: {exc}") from None
        self._step(f"{what} -> {_code(response.code)}")
        if not response.success and response.code not in set(accept):
            detail = f": {response.diagnostic}" if response.diagnostic else ""
            if isinstance(request, BootstrapFinishRequest) and response.code == Code.NOT_ACCEPTABLE:
                raise BootstrapSessionError(
                    f"{what}: {_code(response.code)}: the client found the configuration inconsistent{detail}"
                )
            raise BootstrapSessionError(f"{what}: {_code(response.code)}{detail}")
        return response

    async def run(self, config: BootstrapConfig) -> None:
        layout = config.assumed_layout()
        if config.bootstrap_discover:
            # §6.1.7.3 (Bootstrap-Discover, since LwM2M 1.0): which Security instance is the
            # bootstrap server account, and which instances exist, before anything is written.
            try:
                response = await self.send(BootstrapDiscoverRequest(ROOT))
            except BootstrapSessionError as exc:
                raise BootstrapSessionError(
                    f"{exc} (without a Discover the device's bootstrap account is unknown; "
                    "set bootstrapDiscover false to assume it at /0/0)"
                ) from None
            discovery = Discovery.from_links(response.links)
            layout = discovery.layout()
            kept = ", ".join(f"/0/{i}" for i in sorted(layout.bootstrap_accounts)) or "none listed"
            self._step(f"bootstrap server account: {kept} (kept)")
            if self.format is None and discovery.version not in (None, "1.0"):
                self.format = ContentFormat.SENML_CBOR
        try:
            plan = config.plan(layout)
        except ConfigError as exc:
            raise BootstrapSessionError(str(exc)) from None
        fmt = self.format or ContentFormat.TLV  # without pct or Discover: a 1.0 client reads TLV
        for path in plan.deletes:
            # 4.04: nothing there to delete, which is what was wanted.
            await self.send(BootstrapDeleteRequest(path), accept=(Code.NOT_FOUND,))
        for write in plan.writes:
            await self.send(BootstrapWriteRequest(write.path, write.records, fmt))
        await self.send(BootstrapFinishRequest())
        self.server._remember(self.session.endpoint, plan.after)
