"""DTLS Connection ID forwarding between the nodes of a cluster: a plain, non-sticky balancer works.

A cluster node's Connection IDs begin with its node byte (RFC 9146 §3 leaves a CID's content to
its issuer; ``SessionLimits.node_id``). When a device's NAT rebinds, the balancer may send its
records to another node, which has no session for them. That node sends each such record over
the node-to-node link (:mod:`lwm2m.transport.dtls.link`) to the node its CID names, unchanged, with the
device's address as it saw it. The owner feeds it to its DTLS layer under that address: the
layer's CID rule (RFC 9146 §6: a record with a new highest sequence number from a new address
moves the session there) moves the session, and ``SessionMoved`` moves the registration. The
owner remembers that the address is reached through that node; what it sends there (answers,
its own requests, notifications' ACKs) goes back over the link, and the forwarding node sends it
from its public socket, the one the balancer knows for that flow.

- :class:`DtlsRouter` stands between the UDP driver and the DTLS layer (the driver's side of a
  sans-IO endpoint, like the layer itself): a datagram whose first byte is 25 (``tls12_cid``)
  and whose CID's first byte (offset 11: type 1, version 2, epoch 2, sequence number 6) names
  another node that is alive, whose link address is known and that was heard over the link in
  the last ``silent_after`` seconds (every node pings the others) goes over the link; everything
  else goes to the layer as before (a dead or unknown node's CID too). It is installed only on
  a cluster node: a lone server's datagrams meet nothing of this.
- Routes back (device address -> forwarding node) are kept for addresses whose record
  authenticated (a session is there after it), at most ``max_routes``, the least recently
  used going first, and each for ``route_idle`` seconds after the device's last record. A
  datagram that comes straight from the address ends its route.
- :class:`DtlsForwarding` owns the link socket, the codec and the table of live nodes' link
  addresses (read from the node registry every ``refresh`` seconds); a link datagram that
  does not authenticate is dropped and counted, never answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from lwm2m.errors import ConfigError, LinkMessageError
from lwm2m.transport.dtls.layer import DtlsLayer
from lwm2m.transport.dtls.link import NO_PEER, PING, TO_DEVICE, TO_OWNER, LinkMessage, LinkMessageCodec
from lwm2m.transport.reader import DatagramReader, DatagramSender, bind_udp

__all__ = ["DtlsForwarding", "DtlsRouter", "ForwardingConfig", "NodeDirectory"]

log = logging.getLogger(__name__)

Addr = Any  # (host, port) or (host, port, flowinfo, scope_id)

_TLS12_CID = 25  # RFC 9146 §4
_NODE_AT = 11  # the CID's first byte: after type (1), version (2), epoch (2), sequence number (6)


@dataclass(frozen=True, slots=True)
class ForwardingConfig:
    """``max_routes`` device addresses reached through another node, each kept ``route_idle``
    seconds after the device's last record (default: 25 h, above the longest registration
    lifetime a node accepts, as the balancer's ``proxy_timeout``); the live nodes' link
    addresses are read every ``refresh`` seconds; a link message older than ``max_age``
    seconds is refused (the nodes' clocks must agree within it). Every node pings the others
    over the link every ``ping_interval`` seconds; a node not heard from (a ping or any other
    link message) for ``silent_after`` seconds gets no more records until it is heard again:
    killed, it stops receiving them in about two seconds rather than when its heartbeat in
    Redis lapses (``ClusterConfig.node_ttl``), and its devices' records go to this node's
    layer, which takes their sessions over."""

    max_routes: int = 100_000
    route_idle: float = 90_000.0
    refresh: float = 1.0
    max_age: float = 60.0
    ping_interval: float = 0.5
    silent_after: float = 2.0

    def __post_init__(self) -> None:
        if self.max_routes < 1:
            raise ConfigError(f"max_routes {self.max_routes!r}: give at least 1")
        for name, value in (
            ("route_idle", self.route_idle),
            ("refresh", self.refresh),
            ("max_age", self.max_age),
            ("ping_interval", self.ping_interval),
            ("silent_after", self.silent_after),
        ):
            if not value > 0:
                raise ConfigError(f"{name} {value!r}: give a positive number of seconds")


class NodeDirectory(Protocol):
    """Where the live nodes' link addresses come from (``ClusterMember``)."""

    async def link_addresses(self) -> dict[int, Addr]: ...


class _Counters(dict[str, int]):
    """Forwarding counters by name, 0 when never counted: ``forwarded`` (device records sent to
    their owner), ``forwarded_in`` (records from other nodes given to this node's layer),
    ``sent_via`` (datagrams to devices sent through another node), ``relayed`` (datagrams sent
    to devices for another node), ``link_dropped`` (link datagrams that did not authenticate or
    read), ``link_errors`` (messages that could not be made)."""

    __slots__ = ()

    def __missing__(self, key: str) -> int:
        return 0


class DtlsRouter:
    """The driver's side of a :class:`DtlsLayer` on a cluster node (see the module docstring).

    ``send_link(datagram, link_address)`` sends a link message; ``codec`` makes them, ``node``
    is this node's byte. The application's calls are the layer's own, bound here.
    """

    def __init__(
        self,
        layer: DtlsLayer,
        codec: LinkMessageCodec,
        node: int,
        send_link: Callable[[bytes, Addr], None],
        config: ForwardingConfig | None = None,
    ) -> None:
        self.layer = layer
        self.config = config or ForwardingConfig()
        self._codec = codec
        self._node = node
        self._send_link = send_link
        self.nodes: dict[int, Addr] = {}  # live other nodes' link addresses by byte
        # Those of them heard from over the link lately (``silent_after``): records go to these.
        self.reachable: dict[int, Addr] = {}
        self._heard: dict[int, float] = {}  # when each node was last heard from (or listed)
        self._via: OrderedDict[Addr, tuple[Addr, float]] = OrderedDict()  # least recently heard first
        self._relay: list[tuple[bytes, Addr]] = []  # datagrams other nodes asked us to send
        self.counters: dict[str, int] = _Counters()
        self._receive = layer.receive_datagram
        self._to_send = layer.datagrams_to_send
        # The driver's side the layer answers as it is; the events queue is the layer's.
        self.events = layer.events
        self.get_timer = layer.get_timer
        self.handle_timer = layer.handle_timer
        self.next_event = layer.next_event
        # The application's side, the layer's own (CoapUdpEndpoint calls them on the driver's endpoint).
        self.respond = layer.respond
        self.request = layer.request
        self.notify = layer.notify
        self.cancel = layer.cancel
        self.resume_observation = layer.resume_observation
        self.move_observation = layer.move_observation
        self.observations = layer.observations
        self.handles = layer.handles

    # --- the driver's side ---------------------------------------------------------------------

    def receive_datagram(self, data: bytes, addr: Addr, now: float) -> None:
        if len(data) > _NODE_AT and data[0] == _TLS12_CID:
            link = self.reachable.get(data[_NODE_AT])
            if link is not None:
                self._forward(data, addr, link)
                return
        if self._via:
            self._via.pop(addr, None)  # the device reaches this node directly again
        self._receive(data, addr, now)

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Addr]]:
        out = self._to_send(now)
        via = self._via
        if via and out:
            kept: list[tuple[bytes, Addr]] = []
            idle = self.config.route_idle
            for data, addr in out:
                route = via.get(addr)
                if route is None:
                    kept.append((data, addr))
                elif now - route[1] > idle:
                    del via[addr]
                    kept.append((data, addr))
                else:
                    self._send(TO_DEVICE, data, addr, route[0], "sent_via")
            out = kept
        if self._relay:
            out = out + self._relay
            self._relay = []
        return out

    @property
    def inner(self) -> Any:
        """The CoAP endpoint inside the layer (``wire.traced`` puts its trace there)."""
        return self.layer.inner

    @inner.setter
    def inner(self, value: Any) -> None:
        self.layer.inner = value

    @property
    def released(self) -> int:
        return self.layer.released

    def state_sizes(self) -> dict[str, int]:
        sizes = self.layer.state_sizes()
        sizes.update(forwarding_routes=len(self._via), forwarding_nodes=len(self.nodes))
        return sizes

    # --- the link's side -----------------------------------------------------------------------

    def from_link(self, message: LinkMessage, source: Addr, now: float) -> None:
        """A link message that authenticated, from the link address ``source``; the caller
        flushes the driver after the batch (answers and relayed datagrams go out then)."""
        self._hear(message.node, now)
        if message.kind == PING:
            return
        if message.kind == TO_DEVICE:
            self.counters["relayed"] += 1
            self._relay.append((message.data, message.peer))
            return
        peer = message.peer
        self.counters["forwarded_in"] += 1
        self._receive(message.data, peer, now)
        if self.layer.established(peer):
            # Authenticated (a session is at that address now): answers go back the way it came,
            # to the sender's published link address (its source only while not yet known here).
            link = self.nodes.get(message.node, source)
            self._route(peer, link, now)

    def set_nodes(self, nodes: dict[int, Addr], now: float = 0.0) -> None:
        """The live other nodes' link addresses, by byte; routes through a node that is gone end.
        A node listed for the first time counts as heard from ``now``."""
        nodes = {b: a for b, a in nodes.items() if b != self._node}
        gone = set(self.nodes.values()) - set(nodes.values())
        self.nodes = nodes
        heard = self._heard
        for byte in list(heard):
            if byte not in nodes:
                del heard[byte]
        for byte in nodes:
            heard.setdefault(byte, now)
        self.tick(now)
        if gone and self._via:
            for addr in [a for a, (link, _) in self._via.items() if link in gone]:
                del self._via[addr]

    def tick(self, now: float) -> None:
        """Which listed nodes were heard from within ``silent_after`` seconds of ``now``."""
        horizon = now - self.config.silent_after
        heard = self._heard
        self.reachable = {b: a for b, a in self.nodes.items() if heard.get(b, horizon) >= horizon}

    def _hear(self, node: int, now: float) -> None:
        if node in self.nodes:
            self._heard[node] = now
            if node not in self.reachable:
                self.reachable[node] = self.nodes[node]

    def pings(self) -> list[tuple[bytes, Addr]]:
        """A PING for every listed node (the link messages to send now), with their addresses."""
        message = self._codec.encode(LinkMessage(PING, self._node, NO_PEER, b""))
        return [(message, link) for link in self.nodes.values()]

    def route(self, addr: Addr) -> Addr | None:
        """The link address of the node ``addr`` is reached through, or None (directly)."""
        route = self._via.get(addr)
        return None if route is None else route[0]

    def _route(self, peer: Addr, link: Addr, now: float) -> None:
        via = self._via
        via[peer] = (link, now)
        via.move_to_end(peer)
        idle = self.config.route_idle
        while via:
            oldest, (_, heard) = next(iter(via.items()))
            if len(via) <= self.config.max_routes and now - heard <= idle:
                break
            del via[oldest]

    def _forward(self, data: bytes, addr: Addr, link: Addr) -> None:
        self._send(TO_OWNER, data, addr, link, "forwarded")

    def _send(self, kind: int, data: bytes, peer: Addr, link: Addr, counter: str) -> None:
        try:
            message = self._codec.encode(LinkMessage(kind, self._node, peer, data))
        except ValueError:  # an address the link cannot carry
            self.counters["link_errors"] += 1
            return
        self.counters[counter] += 1
        self._send_link(message, link)


class DtlsForwarding:
    """One node's forwarding: its link socket, the codec, the router it wraps the DTLS layer in,
    and the refresh of the live nodes' link addresses from ``directory``.

    ``await DtlsForwarding.open(host, port, key=…, node=…, directory=…)`` binds the link socket
    (``address`` is then where the other nodes reach it); the DTLS endpoint calls ``wrap`` with
    its layer and ``attach`` with its driver's flush; ``close`` stops it all.
    """

    def __init__(
        self,
        sock: socket.socket,
        codec: LinkMessageCodec,
        node: int,
        directory: NodeDirectory,
        config: ForwardingConfig | None = None,
    ) -> None:
        self.config = config or ForwardingConfig()
        self._sock = sock
        self._codec = codec
        self.node = node
        self._directory = directory
        self._loop = asyncio.get_running_loop()
        self._sender = DatagramSender(self._loop, sock)
        self._reader = DatagramReader(self._loop, sock, self._on_datagram, self._on_batch)
        self.router: DtlsRouter | None = None
        self._flush: Callable[[float], None] | None = None
        self._refresher: asyncio.Task[None] | None = None
        self._pinger: asyncio.Task[None] | None = None
        self._dropped = 0  # link datagrams dropped before a router was there to count them

    @classmethod
    async def open(
        cls,
        host: str,
        port: int = 0,
        *,
        key: bytes,
        node: int,
        directory: NodeDirectory,
        config: ForwardingConfig | None = None,
    ) -> DtlsForwarding:
        config = config or ForwardingConfig()
        sock = bind_udp(host, port)
        try:
            forwarding = cls(sock, LinkMessageCodec(key, max_age=config.max_age), node, directory, config)
        except BaseException:
            sock.close()
            raise
        forwarding._reader.start()
        return forwarding

    @property
    def address(self) -> Addr:
        """Where the other nodes send this node's link messages."""
        return self._sock.getsockname()

    @property
    def counters(self) -> dict[str, int]:
        """The router's counters (see ``_Counters``), empty before ``wrap``."""
        if self.router is None:
            return {"link_dropped": self._dropped} if self._dropped else {}
        return self.router.counters

    def wrap(self, layer: DtlsLayer) -> DtlsRouter:
        """The router around ``layer``: what the UDP driver drives instead of the layer. A
        server started again wraps its new layer: the new router takes the counters and the
        live nodes over (routes back to devices went with the old layer's sessions)."""
        old = self.router
        self.router = DtlsRouter(layer, self._codec, self.node, self._sender.send, self.config)
        if old is None:
            self.router.counters["link_dropped"] += self._dropped
        else:
            self.router.counters.update(old.counters)
            self.router.set_nodes(old.nodes, self._loop.time())
        return self.router

    def attach(self, flush: Callable[[float], None]) -> None:
        """``flush(now)`` delivers the layer's events and sends what it queued (the driver's);
        from now on the live nodes' link addresses are kept fresh."""
        self._flush = flush
        if self._refresher is None:
            self._refresher = self._loop.create_task(self._refresh_loop(), name="lwm2m-dtls-forwarding")
        if self._pinger is None:
            self._pinger = self._loop.create_task(self._ping_loop(), name="lwm2m-dtls-link-ping")

    async def refresh(self) -> None:
        """Read the live nodes' link addresses now."""
        nodes = await self._directory.link_addresses()
        if self.router is not None:
            self.router.set_nodes(nodes, self._loop.time())

    async def _refresh_loop(self) -> None:
        while True:
            try:
                await self.refresh()
            except Exception as exc:  # Redis away for a moment: the table stays as it was
                log.warning("DTLS forwarding: reading the nodes' link addresses failed: %s", exc)
            await asyncio.sleep(self.config.refresh)

    async def _ping_loop(self) -> None:
        while True:
            router = self.router
            if router is not None:
                router.tick(self._loop.time())
                for message, link in router.pings():
                    self._sender.send(message, link)
            await asyncio.sleep(self.config.ping_interval)

    def _on_datagram(self, data: bytes, addr: Addr, now: float) -> None:
        router = self.router
        try:
            message = self._codec.decode(data)
        except LinkMessageError:
            if router is None:
                self._dropped += 1
            else:
                router.counters["link_dropped"] += 1
            return
        if router is None or self._flush is None:
            return
        router.from_link(message, addr, now)

    def _on_batch(self, now: float) -> None:
        if self._flush is not None:
            self._flush(now)

    async def close(self) -> None:
        for task in (self._refresher, self._pinger):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._refresher = self._pinger = None
        self._reader.close()
        self._sender.close()
        self._flush = None
        self._sock.close()
