"""DTLS sessions shared by the nodes of a cluster (docs/cluster.md, "DTLS session takeover").

A node publishes each server session it makes into the shared store (``DtlsSessionStore.
publish``), found by its Connection ID (RFC 9146) or, without one, by its peer's address, and
refreshes the state of the sessions its peers used since (the replay window, the TTL); a
session that ends here (close_notify, a fatal alert, a new handshake, the client's
de-registration or expiry) leaves the store. Its DTLS layer holds the records of sessions it
does not know (``DtlsLayer.hold_unknown``) and announces them (``SessionSought``): this part
reads the session from the store, tries the held records on it (``DtlsLayer.authenticates``),
and only when one authenticates claims it (``take_over``: the takeover counted atomically), in
its own write sequence range (``lwm2m.transport.dtls.takeover``), and hands it to the layer,
which feeds the held records again; the device goes on without a handshake, and the server's
adoption moves its registration here. A session another node took over is ended here without close_notify
(that alert, under the shared keys, would end the device's session at the new node too).

Store writes go in the order their events came, one at a time (a session replaced by a
handshake from the same address is forgotten before the new one is published); look-ups run
concurrently, at most as many as the layer holds keys for.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Coroutine
from typing import Any, Final, NamedTuple

from lwm2m.errors import DtlsError, SessionStateError
from lwm2m.storage.base import DtlsSessionStore
from lwm2m.transport.address import format_addr
from lwm2m.transport.dtls.config import SessionLimits
from lwm2m.transport.dtls.endpoint import CoapDtlsEndpoint
from lwm2m.transport.dtls.events import (
    SessionEnded,
    SessionEstablished,
    SessionEvent,
    SessionMoved,
    SessionSought,
)
from lwm2m.transport.dtls.hold import HoldConfig

__all__ = ["REFRESH_INTERVAL", "SharedDtlsSessions", "session_key"]

log = logging.getLogger(__name__)

REFRESH_INTERVAL: Final = 30.0  # seconds between refreshes of the sessions used since (at most)
MAX_WRITES: Final = 10_000  # store writes waiting; beyond, a write is dropped (logged)
CLOSE_WAIT: Final = 2.0  # seconds a stop waits for the writes still queued
# Ends after which no other node is to take the session over; "idle" and "evicted" sessions
# stay parked here and in the store (until their TTL), so that either node can go on with them.
_ENDED: Final = frozenset(("closed", "error", "local", "replaced"))


class _Held(NamedTuple):
    """A session this node published or took over: its store key, and the end of this node's
    write sequence range in it (``taker_range``)."""

    key: str
    end: int


def session_key(cid: bytes, addr: Any) -> str:
    """The store key of a session: its Connection ID, or its peer's address without one."""
    return "c:" + cid.hex() if cid else "a:" + format_addr(addr)


class SharedDtlsSessions:
    """One node's side of the shared DTLS sessions (see the module docstring)."""

    def __init__(
        self,
        endpoint: CoapDtlsEndpoint,
        store: DtlsSessionStore,
        limits: SessionLimits,
        *,
        hold: HoldConfig | None = None,
        refresh_interval: float | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.store = store
        self.hold = hold or HoldConfig()
        # A token of this node's life: a restarted node is another holder.
        self.holder = f"{limits.node_id}:{os.urandom(6).hex()}"
        self.interval = refresh_interval or min(REFRESH_INTERVAL, limits.idle_timeout / 3)
        self.ttl = limits.idle_timeout + self.interval
        self.keys: dict[Any, _Held] = {}  # the sessions published or taken over here, by address
        self.counters: dict[str, int] = {
            "published": 0,
            "taken_over": 0,
            "not_found": 0,
            "forged": 0,
            "lost": 0,
            "unshared": 0,
            "range_used": 0,
        }
        self._writes: asyncio.Queue[Coroutine[Any, Any, None]] = asyncio.Queue(MAX_WRITES)
        self._lookups: set[asyncio.Task[None]] = set()
        endpoint.dtls.hold_unknown(self.hold)
        self._writer = asyncio.create_task(self._write_loop())
        self._refresher = asyncio.create_task(self._refresh_loop())

    async def close(self) -> None:
        """Stop, after the writes waiting (``CLOSE_WAIT`` seconds at most); what was written
        stays (the other nodes take the sessions over)."""
        for task in (self._refresher, *self._lookups):
            task.cancel()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._writes.join(), CLOSE_WAIT)
        self._writer.cancel()
        for task in (self._writer, self._refresher, *list(self._lookups)):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        while not self._writes.empty():
            self._writes.get_nowait().close()

    # --- events of the DTLS layer ------------------------------------------------------------

    def on_event(self, event: SessionEvent) -> None:
        kind = type(event)
        if kind is SessionEstablished:
            self._publish(event.addr)
        elif kind is SessionSought:
            assert isinstance(event, SessionSought)
            task = asyncio.create_task(self._take_over(event.cid, event.addr))
            self._lookups.add(task)
            task.add_done_callback(self._lookups.discard)
        elif kind is SessionMoved:
            assert isinstance(event, SessionMoved)
            held = self.keys.pop(event.old, None)
            if held is not None:
                self.keys[event.addr] = held
        elif kind is SessionEnded:
            assert isinstance(event, SessionEnded)
            held = self.keys.pop(event.addr, None)
            if held is not None and event.reason in _ENDED:
                self._write(self.store.forget(held.key, self.holder))

    def registered(self, addr: Any) -> None:
        """A client registered from ``addr``: its session is published if it is not (a client
        that de-registered and registers again over the same session)."""
        addr = (addr[0], addr[1])
        if addr not in self.keys:
            self._publish(addr)

    def forget(self, addr: Any) -> None:
        """The client at ``addr`` left (de-registered, expired): its session leaves the store."""
        held = self.keys.pop((addr[0], addr[1]), None)
        if held is not None:
            self._write(self.store.forget(held.key, self.holder))

    # --- publishing ----------------------------------------------------------------------------

    def _publish(self, addr: Any) -> None:
        from lwm2m.transport.dtls.takeover import taker_range, write_base

        state = self.endpoint.dtls.session_state(addr)
        if state is None:
            return
        cid, saved = state
        try:
            base = write_base(saved)
        except (SessionStateError, DtlsError):
            return  # a backend whose state this node cannot rebase: not shared
        key = session_key(cid, addr)
        self.keys[addr] = _Held(key, taker_range(base, 0).stop)
        self.counters["published"] += 1
        self._write(self.store.publish(key, saved, base, self.holder, self.ttl))

    def _write(self, write: Coroutine[Any, Any, None]) -> None:
        try:
            self._writes.put_nowait(write)
        except asyncio.QueueFull:
            write.close()
            log.warning("DTLS: %d shared-session writes wait: one dropped", MAX_WRITES)

    async def _write_loop(self) -> None:
        while True:
            write = await self._writes.get()
            try:
                await write
            except Exception:
                log.exception("DTLS: could not write a shared session")
            finally:
                self._writes.task_done()

    async def _refresh_loop(self) -> None:
        loop = asyncio.get_running_loop()
        since = loop.time()
        while True:
            await asyncio.sleep(self.interval)
            now = loop.time()
            try:
                await self.refresh(since)
                await self.sync_tickets()
            except Exception:
                log.exception("DTLS: could not refresh the shared sessions")
            since = now

    async def sync_tickets(self) -> bool:
        """Share the ticket keys (RFC 5077): each node rotates its own once a day, so the keys
        rotated last win: written if they are this node's, else taken up. Answers whether this
        node's keys changed. A ticket made in the short while two nodes disagree costs a full
        handshake at the other node, nothing more."""
        from lwm2m.transport.dtls.engine_backend import ticket_rotated

        layer = self.endpoint.dtls
        mine = layer.ticket_state()
        if mine is None:
            return False
        stored = await self.store.ticket_keys()
        if stored == mine:
            return False
        try:
            newer = stored is not None and ticket_rotated(stored) > ticket_rotated(mine)
        except DtlsError:
            newer = False  # bytes of another format in the store: ours replace them
        if newer:
            assert stored is not None
            return layer.load_ticket_state(stored)
        await self.store.put_ticket_keys(mine)
        return False

    async def refresh(self, since: float) -> int:
        """Write the state of the sessions heard from since ``since`` (the loop's time) anew;
        end, without close_notify, those another node took over, and with it those whose write
        sequence numbers near the end of this node's range (each park and take-up moves them on
        by the engine's export margin). Answers how many were kept."""
        from lwm2m.transport.dtls.takeover import write_base

        layer = self.endpoint.dtls
        entries: list[tuple[str, bytes]] = []
        addrs = []
        for addr, held in list(self.keys.items()):
            info = layer.session(addr)
            if info is None or info.last_seen < since:
                continue
            state = layer.session_state(addr)
            if state is None:
                continue
            if write_base(state[1]) >= held.end:  # the next export would leave the range
                self.counters["range_used"] += 1
                self.endpoint.close_session(addr)  # ours to end: its SessionEnded forgets it
                continue
            entries.append((held.key, state[1]))
            addrs.append(addr)
        if not entries:
            return 0
        kept = await self.store.refresh(entries, self.holder, self.ttl)
        for addr, ours in zip(addrs, kept, strict=True):
            if ours is None and self.keys.get(addr) is not None:
                # Gone (its entry expired while the session idled here): it goes on here,
                # unshared; published anew, its base could fall in a range a taker held.
                del self.keys[addr]
                self.counters["unshared"] += 1
            elif ours is False and self.keys.get(addr) is not None:
                del self.keys[addr]
                self.counters["lost"] += 1
                self.endpoint.close_session(addr, notify=False)
        return sum(1 for ours in kept if ours)

    # --- taking over ---------------------------------------------------------------------------

    def _authenticates(self, cid: bytes, addr: Any, saved: bytes) -> bool:
        return self.endpoint.dtls.authenticates(cid, addr, saved, asyncio.get_running_loop().time())

    async def _take_over(self, cid: bytes, addr: Any) -> None:
        from lwm2m.transport.dtls.takeover import rebase, taker_range

        key = session_key(cid, addr)
        saved: bytes | None = None
        taken = None
        try:
            # Claimed only for a record that authenticates under it: a forged one moves nothing.
            found = await self.store.peek(key)
            if found is not None and not self._authenticates(cid, addr, found.saved):
                self.counters["forged"] += 1
            elif found is not None:
                taken = await self.store.take_over(key, self.holder, self.ttl)
            if taken is not None:
                saved = rebase(taken.saved, taker_range(taken.base, taken.takeover).start)
        except DtlsError as exc:
            log.warning("DTLS: session %s not taken over: %s", key, exc)
        except Exception:
            log.exception("DTLS: could not look up the shared session %s", key)
        where = self.endpoint.take_over(cid, addr, saved)
        if where is None:
            self.counters["not_found"] += 1
            return
        assert taken is not None
        self.keys[where] = _Held(key, taker_range(taken.base, taken.takeover).stop)
        self.counters["taken_over"] += 1
        log.info(
            "DTLS: took over session %s at %s (takeover %d)",
            key,
            format_addr(where),
            taken.takeover,
        )
