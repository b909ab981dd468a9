"""A server node's part in a cluster: which endpoints it owns, for how long, and who owns the others.

Several ``lwm2m server`` processes share one Redis store behind a UDP balancer (DESIGN.md,
"Where its users outgrow one machine"). The balancer decides where a device lands; the node
that receives its Register or Update claims it (:class:`~lwm2m.cluster.ownership.Ownership`:
a new fencing epoch, a lease), as does a node that gets a notification or a Send of a device
it does not own (its node is gone: the failover). The device's traffic renews the lease, in
one pipelined round trip per renewal period for every endpoint heard from. A renewal that
fails means another node claimed the endpoint since: this node lets it go. Deregistration and
expiry release it.

:meth:`ClusterMember.owner_elsewhere` is what the REST API asks before serving a device: the
node to hand the request to, or None to serve it here (this node holds it, or nobody does, or
its node is gone and the device has not spoken since).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from lwm2m.cluster.bus import BusConfig, Handler, RequestBus
from lwm2m.cluster.encoding import Payload
from lwm2m.cluster.events import EventsConfig, FleetEvents
from lwm2m.cluster.link import link_key
from lwm2m.cluster.node import ClusterConfig, NodeEntry, NodeIdentity
from lwm2m.cluster.ownership import Ownership, OwnershipConfig
from lwm2m.server.events import (
    ClientAwake,
    ClientDeregistered,
    ClientRegistered,
    ClientUpdated,
    EventStream,
    NotificationReceived,
    RegistrationExpired,
    SendReceived,
)
from lwm2m.server.role import Server
from lwm2m.storage.redisconn import RedisClient
from lwm2m.transport.dtls.link import format_link, parse_link

log = logging.getLogger(__name__)

OWNER_POLL = 0.25  # seconds between looks at an endpoint whose node is gone, for its new owner


@dataclass(frozen=True)
class MembershipConfig:
    """The node (``cluster``), its leases (``ownership``), the bus and the fleet's event stream.
    ``alive_cache``: seconds the list of live nodes is reused before it is read again."""

    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    ownership: OwnershipConfig = field(default_factory=OwnershipConfig)
    bus: BusConfig = field(default_factory=BusConfig)
    events: EventsConfig = field(default_factory=EventsConfig)
    alive_cache: float = 1.0


class ClusterMember:
    """One server node of a cluster: its identity, the endpoints it owns, its end of the bus."""

    def __init__(self, redis: RedisClient, config: MembershipConfig | None = None) -> None:
        self.config = config or MembershipConfig()
        self.identity = NodeIdentity(redis, self.config.cluster)
        self.node_id = self.identity.node_id
        self.ownership = Ownership(redis, self.node_id, self.config.ownership)
        self.bus = RequestBus(redis, self.node_id, self.config.bus)
        self.fleet = FleetEvents(redis, self.config.events)
        self._epochs: dict[str, int] = {}  # endpoints this node owns, with their epochs
        self._heard: set[str] = set()  # owned endpoints heard from since the last renewal
        self._redis = redis
        # The live nodes as last read (when, node id -> byte and link address).
        self._alive: tuple[float, dict[str, NodeEntry]] = (-math.inf, {})
        self._tasks: list[asyncio.Task[None]] = []
        self._claims: set[asyncio.Task[None]] = set()
        self._claiming: set[str] = set()  # endpoints whose claim is under way
        self._server: Server | None = None
        self._joined = False

    @property
    def owned(self) -> frozenset[str]:
        """The endpoints this node holds a claim on (as far as it knows: a claim by another
        node shows at the next renewal)."""
        return frozenset(self._epochs)

    async def join(self) -> int:
        """Join the cluster: a node byte (returned) and heartbeats. Before the server starts,
        so that its DTLS Connection IDs can begin with the byte; ``start`` joins if not yet."""
        if not self._joined:
            await self.identity.join()
            self._joined = True
        return self.identity.byte

    async def start(self, server: Server, handler: Handler) -> None:
        """Join the cluster if not yet, serve the bus with ``handler`` and follow ``server``'s
        events for claims, renewals and releases."""
        await self.join()
        await self.bus.start(handler)
        self._server = server
        events = server.events()
        self._tasks.append(asyncio.create_task(self._follow(events)))
        self._tasks.append(asyncio.create_task(self._renewals()))

    async def close(self) -> None:
        tasks, self._tasks = self._tasks, []
        tasks += self._claims
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.bus.close()
        await self.identity.stop()

    # --- what the REST API asks -------------------------------------------------------------

    async def owner_elsewhere(self, endpoint: str, *, wait: float = 0.0) -> str | None:
        """The live node that holds ``endpoint`` if it is not this one; None to serve it here.

        Redis says who holds it (``Ownership.holder``: the last claim, its lease lapsed or not,
        since a quiet device is reached only through its node's session at the balancer); an
        endpoint this node believed its own but another node claimed since is let go here.
        When its holder has stopped beating (killed), only the node that gets the device's next
        datagram can reach it (through the balancer's session): up to ``wait`` seconds go by
        for that, and the node that claims it then is the answer (None when it is this one).
        If the device stays silent, None: it is served from here, as best it can be."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while True:
            # Always Redis's word, not only this node's belief: another node may have claimed
            # the device since (a balancer change), which this node learns only here or at a
            # renewal.
            # The holder, lease run out or not: a device that stayed quiet longer than a lease
            # is still reached only through its node's session at the balancer.
            owner = await self.ownership.holder(endpoint)
            if owner is None or owner.node == self.node_id:
                return None
            if endpoint in self._epochs and self._epochs[endpoint] < owner.epoch:
                del self._epochs[endpoint]  # fenced: it is the other node's now
                self._heard.discard(endpoint)
            if owner.node in await self._alive_nodes():
                return owner.node
            left = deadline - loop.time()
            if left <= 0:
                return None  # its node is gone and the device has not spoken since
            await asyncio.sleep(min(OWNER_POLL, left))

    async def ask(self, node: str, payload: Payload, timeout: float) -> Payload:
        """``payload`` to ``node``'s handler, its answer back (BusTimeout when none comes)."""
        return await self.bus.request(node, payload, timeout)

    async def alive(self, node: str) -> bool:
        """Whether ``node`` beats (as of at most ``alive_cache`` seconds ago)."""
        return node in await self._alive_nodes()

    async def _alive_nodes(self) -> dict[str, NodeEntry]:
        at, nodes = self._alive
        now = time.monotonic()
        if now - at > self.config.alive_cache:
            nodes = await self.identity.alive_entries()
            self._alive = (now, nodes)
        return nodes

    # --- the link between nodes (DTLS Connection ID forwarding, lwm2m.transport.dtls.link) ---------------

    async def publish_link(self, address: Any) -> None:
        """Publish this node's link address (a socket address) with its heartbeat, so that the
        other nodes send it the DTLS records of its Connection IDs."""
        await self.identity.publish_link(format_link(address))

    async def link_addresses(self) -> dict[int, Any]:
        """The link addresses of the other live nodes that publish one, by node byte; read
        with the live-node list (cached ``alive_cache`` seconds)."""
        own = self.identity.byte
        links: dict[int, Any] = {}
        for entry in (await self._alive_nodes()).values():
            addr = parse_link(entry.link) if entry.link else None
            if addr is not None and entry.byte != own:
                links[entry.byte] = addr
        return links

    async def link_key(self) -> bytes:
        """The cluster's key for link messages (made in Redis by the first node that asks)."""
        return await link_key(self._redis)

    # --- following the server ---------------------------------------------------------------

    async def _follow(self, events: EventStream) -> None:
        async for event in events:
            if isinstance(event, (ClientRegistered, ClientUpdated)):
                self._claim(event.registration.endpoint)
            elif isinstance(event, (NotificationReceived, SendReceived, ClientAwake)):
                if event.endpoint in self._epochs:
                    self._heard.add(event.endpoint)
                elif event.endpoint not in self._claiming:
                    # Its traffic comes here now (its node is gone, the balancer sent it on):
                    # this node serves it, so it claims it, as on an Update.
                    self._claim(event.endpoint)
            elif isinstance(event, (ClientDeregistered, RegistrationExpired)):
                self._release(event.registration.endpoint, event.registration.registration_id)

    def _claim(self, endpoint: str) -> None:
        self._claiming.add(endpoint)

        async def claim() -> None:
            try:
                self._epochs[endpoint] = await self.ownership.claim(endpoint)
                self._heard.discard(endpoint)
            except Exception as exc:  # Redis away or overloaded: the next Update claims again
                log.warning("cluster: claiming %s failed: %s", endpoint, exc)
            finally:
                self._claiming.discard(endpoint)

        self._spawn(claim())

    def _release(self, endpoint: str, registration_id: str) -> None:
        epoch = self._epochs.pop(endpoint, None)
        self._heard.discard(endpoint)
        if epoch is None:
            return

        async def release() -> None:
            try:
                # An expiry sweep that took the old registration may report it after the
                # device registered again (here, in the meantime): the claim of the new
                # registration, whose epoch this may be, stays.
                if self._server is not None:
                    current = await self._server.store.registrations.get(endpoint)
                    if current is not None and current.registration_id != registration_id:
                        if endpoint not in self._epochs:
                            self._epochs[endpoint] = epoch
                        return
                await self.ownership.release(endpoint, epoch)
            except Exception as exc:  # the lease runs out by itself
                log.warning("cluster: releasing %s failed: %s", endpoint, exc)

        self._spawn(release())

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._claims.add(task)
        task.add_done_callback(self._claims.discard)

    async def _renewals(self) -> None:
        """Every third of a lease, renew the leases of the owned endpoints heard from."""
        period = self.config.ownership.lease / 3
        while True:
            await asyncio.sleep(period)
            await self.renew()

    async def renew(self) -> int:
        """Renew the leases of the owned endpoints heard from since the last renewal; an
        endpoint another node claimed since is let go. Returns how many were renewed."""
        heard, self._heard = self._heard, set()
        leases = [(ep, self._epochs[ep]) for ep in heard if ep in self._epochs]
        if not leases:
            return 0
        try:
            results = await self.ownership.renew_many(leases)
        except Exception as exc:  # Redis away: tried again at the next renewal
            log.warning("cluster: renewing %d leases failed: %s", len(leases), exc)
            self._heard |= heard
            return 0
        for (endpoint, epoch), renewed in zip(leases, results, strict=True):
            if not renewed and self._epochs.get(endpoint) == epoch:
                del self._epochs[endpoint]  # fenced: another node claimed it
        return sum(results)
