"""The server's OSCORE contexts (RFC 8613): one per endpoint whose security entry has mode
``oscore``, kept in the OSCORE layer of the server's CoAP endpoint.

The entry holds the parameters as the device holds them (its Sender ID is our Recipient ID);
the context is built the other way round. Its sender sequence numbers are stored in ranges in
the security entry (``OscoreSecrets.sequence``, Appendix B.1.1), each range reserved in one
atomic step of the store (``reserve_oscore_sequence``: no REST update at the same moment loses
or lowers it, and nodes holding the same context get ranges of their own), so a restart of
the server, which starts each context at the stored limit, never reuses a nonce; its replay window is
not stored: after a restart the first request of each device gets the 4.01 Echo challenge
(Appendix B.1.2) and the window starts at the request that answers it.

Entries written elsewhere (another node of a shared store, ``lwm2m security add`` on the
database) are found on demand, as PSK identities are: a request whose kid (and ID Context) names
no context here, or that does not verify with the one here, is held while the entry is read by
its OSCORE identity (``SecurityStore.get_by_oscore``), then tried again. Identities not found
are remembered for ``ttl`` seconds (at most ``MAX_MISSES`` of them), so a flood of unknown kids
costs one look-up each per ``ttl``; at most ``MAX_LOOKUPS`` run at once. A context in use is
checked against its entry at most every ``ttl`` seconds: an entry removed or changed elsewhere
drops it (or replaces it) within that time.

A protected request names its peer as a DTLS handshake does: ``identity(event)`` is the
``PeerIdentity`` of kind ``oscore`` of the context it verified with, which the Registration
Interface checks against the endpoint's entry (``server/security.py``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any

from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, Type
from lwm2m.coap.oscore import (
    OscoreConfig,
    OscoreContext,
    OscoreLayer,
    OscoreReplayWindow,
    OscoreRequestReceived,
    PendingRequest,
    RequestBinding,
    SenderSequence,
)
from lwm2m.storage.base import MAX_OSCORE_SEQUENCE, Observation, OscoreSecrets, SecurityInfo, SecurityStore
from lwm2m.transport.dtls.config import PeerIdentity

log = logging.getLogger(__name__)

__all__ = ["SEQUENCE_STEP", "ServerOscore"]

SEQUENCE_STEP = 1024  # sender sequence numbers per stored range (Appendix B.1.1's K)
LOOKUP_TTL = 10.0  # seconds a miss is remembered and a context trusted without a look at its entry
MAX_MISSES = 10_000
MAX_LOOKUPS = 256  # store look-ups in flight at once


def _identity(kid: bytes, kid_context: bytes | None) -> str:
    """``OscoreSecrets.identity`` of a device whose requests carry ``kid`` and ``kid_context``."""
    return kid.hex() if kid_context is None else f"{kid_context.hex()}:{kid.hex()}"


class ServerOscore:
    """The OSCORE layer of the server's endpoint and its contexts, by endpoint name."""

    def __init__(self, store: SecurityStore, *, step: int = SEQUENCE_STEP, ttl: float = LOOKUP_TTL) -> None:
        self.store = store
        self.layer = OscoreLayer()
        self.layer.directory = self
        self.ttl = ttl
        self._step = step
        self._contexts: dict[str, OscoreContext] = {}
        self._endpoints: dict[int, str] = {}  # id(context) -> endpoint
        self._checked: dict[int, float] = {}  # id(context) -> when its entry was last read
        self._lookups: dict[str, asyncio.Task[None]] = {}  # by OSCORE identity
        self._refreshing: set[str] = set()  # endpoints whose entries are being read again
        self._misses: dict[str, float] = {}  # OSCORE identity -> when it was not found, oldest first
        self._tasks: set[asyncio.Task[None]] = set()
        self.lookups = 0  # store look-ups made for requests so far

    def load(self, infos: list[SecurityInfo]) -> None:
        """The entries of the store at start: their contexts, replay windows unknown (B.1.2)."""
        for info in infos:
            if info.oscore is not None:
                self._add(info, restored=True)

    def put(self, info: SecurityInfo, old: SecurityInfo | None) -> None:
        """An entry set: its context made afresh when its parameters changed."""
        if old is not None and old.oscore is not None:
            if (
                info.oscore is not None
                and info.oscore.same_context(old.oscore)
                and info.endpoint in self._contexts
            ):
                return
            self.remove(old.endpoint)
        if info.oscore is not None:
            self._add(info, restored=False)

    def remove(self, endpoint: str) -> None:
        ctx = self._contexts.pop(endpoint, None)
        if ctx is not None:
            self._endpoints.pop(id(ctx), None)
            self._checked.pop(id(ctx), None)
            self.layer.remove(ctx)

    # --- the layer's directory: entries written elsewhere -----------------------------------------

    def lookup(self, kid: bytes, kid_context: bytes | None, now: float) -> Awaitable[object] | None:
        """The look-up of an identity the layer holds no context for (or whose context did not
        verify the request); None when it was missed lately or too many run."""
        identity = _identity(kid, kid_context)
        running = self._lookups.get(identity)
        if running is not None:
            return asyncio.shield(running)
        missed = self._misses.get(identity)
        if missed is not None:
            if now - missed < self.ttl:
                return None
            del self._misses[identity]
        if len(self._lookups) >= MAX_LOOKUPS:
            return None
        try:
            task = asyncio.get_running_loop().create_task(self._look_up(identity, kid, kid_context, now))
        except RuntimeError:
            return None
        self._lookups[identity] = task
        task.add_done_callback(lambda _: self._lookups.pop(identity, None))
        return asyncio.shield(task)

    async def _look_up(self, identity: str, kid: bytes, kid_context: bytes | None, now: float) -> None:
        self.lookups += 1
        try:
            info = await self.store.get_by_oscore(identity)
        except Exception:
            log.exception("looking up OSCORE identity %s failed", identity)
            self._missed(identity, now)  # not asked again at once; what is held stays
            return
        found = self.layer.find(kid, kid_context)
        # Only the context of that very identity: one found by its kid alone (a request may leave
        # out the ID Context, RFC 8613 §6.1) has another, which this look-up says nothing of.
        held = None
        if found is not None and _identity(found.recipient_id, found.id_context) == identity:
            held = self._endpoints.get(id(found))
        if info is None or info.oscore is None:
            if held is not None:
                self.remove(held)  # the entry went elsewhere
            self._missed(identity, now)
            return
        ctx = self._contexts.get(info.endpoint)
        if ctx is not None and held == info.endpoint and _same(ctx, info):
            # The request did not verify with the entry as it stands: a bad one, not a new entry.
            self._checked[id(ctx)] = now
            self._missed(identity, now)
            return
        if held is not None and held != info.endpoint:
            self.remove(held)
        log.info("OSCORE context of %r read from the store (identity %s)", info.endpoint, identity)
        self._add(info, restored=True, now=now)

    def _missed(self, identity: str, now: float) -> None:
        misses = self._misses
        misses.pop(identity, None)
        misses[identity] = now
        while len(misses) > MAX_MISSES:
            del misses[next(iter(misses))]

    def verified(self, context: OscoreContext, now: float) -> None:
        """A request verified with ``context``: its entry read again when last read ``ttl`` ago."""
        checked = self._checked.get(id(context))
        if checked is None or now - checked < self.ttl:
            return
        endpoint = self._endpoints.get(id(context))
        if endpoint is None or endpoint in self._refreshing or len(self._refreshing) >= MAX_LOOKUPS:
            return
        self._checked[id(context)] = now
        self._refreshing.add(endpoint)
        self._spawn(self._refresh(endpoint, context, now))

    async def _refresh(self, endpoint: str, context: OscoreContext, now: float) -> None:
        try:
            info = await self.store.get(endpoint)
        except Exception:
            log.exception("reading the security entry of %r failed", endpoint)
            return
        finally:
            self._refreshing.discard(endpoint)
        if self._contexts.get(endpoint) is not context:
            return  # replaced meanwhile
        if info is None or info.oscore is None:
            log.info("OSCORE context of %r dropped: its entry is gone", endpoint)
            self.remove(endpoint)
        elif not _same(context, info):
            log.info("OSCORE context of %r replaced: its entry changed", endpoint)
            self._add(info, restored=True, now=now)

    def endpoint_of(self, context: OscoreContext) -> str | None:
        return self._endpoints.get(id(context))

    def context(self, endpoint: str) -> OscoreContext | None:
        return self._contexts.get(endpoint)

    async def resume(self, record: Observation) -> None:
        """A stored observation made over OSCORE, taken up after a restart (or by another node):
        its notifications verified against its request's binding again (RFC 8613 §8.4), with
        the endpoint's context (read from the store if this server holds none yet). Their
        order starts afresh: the Partial IV of the latest one accepted is not stored (§7.4.1)."""
        stored = record.oscore
        if stored is None:
            return
        endpoint = record.endpoint
        if endpoint not in self._contexts:
            try:
                info = await self.store.get(endpoint)
            except Exception:
                log.exception("reading the security entry of %r failed", endpoint)
                info = None
            if info is not None and info.oscore is not None and endpoint not in self._contexts:
                self._add(info, restored=True)
        ctx = self._contexts.get(endpoint)
        if ctx is None or ctx.sender_id != stored.kid:
            log.info("observation %s of %r not verifiable: no OSCORE context", record.token.hex(), endpoint)
            return
        binding = RequestBinding(stored.kid, stored.piv, Code.FETCH, True, stored.kid_context)
        self.layer.track(record.token, PendingRequest(ctx, binding, Message(Type.CON, Code.FETCH)))

    @staticmethod
    def identity(event: Any) -> PeerIdentity | None:
        """The OSCORE identity of a request that arrived protected; None for a plain one."""
        if not isinstance(event, OscoreRequestReceived) or event.context is None:
            return None
        ctx = event.context
        kid = ctx.recipient_id.hex()
        return PeerIdentity("oscore", kid if ctx.id_context is None else f"{ctx.id_context.hex()}:{kid}")

    def close(self) -> None:
        for task in [*self._tasks, *self._lookups.values()]:
            task.cancel()
        self.layer.close()

    # --- contexts and their stored sequence numbers ---------------------------------------------

    def _add(self, info: SecurityInfo, *, restored: bool, now: float | None = None) -> None:
        secrets = info.oscore
        assert secrets is not None
        config = OscoreConfig(
            secrets.master_secret,
            sender_id=secrets.recipient_id,
            recipient_id=secrets.sender_id,
            master_salt=secrets.master_salt,
            id_context=secrets.id_context,
        )
        endpoint = info.endpoint
        made: list[OscoreContext] = []

        def reserve(limit: int) -> bool:
            self._spawn(self._reserve(endpoint, made[0]))
            return False

        sequence = SenderSequence(secrets.sequence, reserve=reserve, step=self._step)
        window = OscoreReplayWindow(config.replay_window, initialized=not restored)
        ctx = OscoreContext(config, sequence=sequence, window=window)
        made.append(ctx)
        self.remove(endpoint)
        self._contexts[endpoint] = ctx
        self._endpoints[id(ctx)] = endpoint
        self._checked[id(ctx)] = _now() if now is None else now
        self.layer.add(ctx)
        sequence.prepare()  # the first range is stored before the first number is needed

    async def _reserve(self, endpoint: str, ctx: OscoreContext) -> None:
        """The next range of sender sequence numbers, reserved in the store in one atomic step
        (``SecurityStore.reserve_oscore_sequence``): a REST update at the same moment neither
        loses it nor lowers it, and another node holding the same context gets other numbers."""
        sequence = ctx.sequence
        above = max(sequence.limit, sequence.next)
        try:
            start = await self.store.reserve_oscore_sequence(endpoint, _secrets_of(ctx), above, self._step)
        except Exception:
            log.exception("storing the OSCORE sequence numbers of %r failed", endpoint)
            sequence.reserved(None)
            return
        if start is None:
            # The entry went, or derives another context now: this one is not to be used.
            log.info("OSCORE context of %r dropped: its entry is gone or changed", endpoint)
            if self._contexts.get(endpoint) is ctx:
                self.remove(endpoint)
            sequence.reserved(None)
            return
        sequence.reserved(min(start + self._step, MAX_OSCORE_SEQUENCE), start=start)

    def _spawn(self, coro: Any) -> None:
        try:
            task = asyncio.get_running_loop().create_task(coro)
        except RuntimeError:
            coro.close()
            return
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _same(context: OscoreContext, info: SecurityInfo) -> bool:
    """Whether ``context`` is the one the entry ``info`` derives (the device's IDs swapped)."""
    secrets = info.oscore
    c = context.config
    return secrets is not None and (
        c.master_secret,
        c.master_salt,
        c.recipient_id,
        c.sender_id,
        c.id_context,
    ) == (
        secrets.master_secret,
        secrets.master_salt,
        secrets.sender_id,
        secrets.recipient_id,
        secrets.id_context,
    )


def _secrets_of(context: OscoreContext) -> OscoreSecrets:
    """The entry's parameters of ``context`` (the device's IDs: ours swapped)."""
    c = context.config
    return OscoreSecrets(c.master_secret, c.recipient_id, c.sender_id, c.master_salt, c.id_context)


def _now() -> float:
    """The CoAP endpoint's clock (the event loop's), or 0 outside a loop."""
    try:
        return asyncio.get_running_loop().time()
    except RuntimeError:
        return 0.0
