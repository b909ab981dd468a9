"""The server's OSCORE contexts (RFC 8613): one per endpoint whose security entry has mode
``oscore``, kept in the OSCORE layer of the server's CoAP endpoint.

The entry holds the parameters as the device holds them (its Sender ID is our Recipient ID);
the context is built the other way round. Its sender sequence numbers are stored in ranges in
the security entry (``OscoreSecrets.sequence``, Appendix B.1.1), so a restart of the server,
which starts each context at the stored limit, never reuses a nonce; its replay window is
not stored: after a restart the first request of each device gets the 4.01 Echo challenge
(Appendix B.1.2) and the window starts at the request that answers it.

A protected request names its peer as a DTLS handshake does: ``identity(event)`` is the
``PeerIdentity`` of kind ``oscore`` of the context it verified with, which the Registration
Interface checks against the endpoint's entry (``server/security.py``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Any

from lwm2m.coap.oscore import (
    OscoreConfig,
    OscoreContext,
    OscoreLayer,
    OscoreReplayWindow,
    OscoreRequestReceived,
    SenderSequence,
)
from lwm2m.errors import IdentityInUse
from lwm2m.storage.base import SecurityInfo, SecurityStore
from lwm2m.transport.dtls.config import PeerIdentity

log = logging.getLogger(__name__)

__all__ = ["SEQUENCE_STEP", "ServerOscore"]

SEQUENCE_STEP = 1024  # sender sequence numbers per stored range (Appendix B.1.1's K)


class ServerOscore:
    """The OSCORE layer of the server's endpoint and its contexts, by endpoint name."""

    def __init__(self, store: SecurityStore, *, step: int = SEQUENCE_STEP) -> None:
        self.store = store
        self.layer = OscoreLayer()
        self._step = step
        self._contexts: dict[str, OscoreContext] = {}
        self._endpoints: dict[int, str] = {}  # id(context) -> endpoint
        self._tasks: set[asyncio.Task[None]] = set()

    def load(self, infos: list[SecurityInfo]) -> None:
        """The entries of the store at start: their contexts, replay windows unknown (B.1.2)."""
        for info in infos:
            if info.oscore is not None:
                self._add(info, restored=True)

    def check(self, info: SecurityInfo) -> None:
        """IdentityInUse when another endpoint's entry has the same OSCORE identity."""
        if info.oscore is None:
            return
        for endpoint, ctx in self._contexts.items():
            if (
                endpoint != info.endpoint
                and ctx.recipient_id == info.oscore.sender_id
                and ctx.id_context == info.oscore.id_context
            ):
                raise IdentityInUse(f"OSCORE identity {info.oscore.identity} is endpoint {endpoint!r}'s")

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
            self.layer.remove(ctx)

    def endpoint_of(self, context: OscoreContext) -> str | None:
        return self._endpoints.get(id(context))

    def context(self, endpoint: str) -> OscoreContext | None:
        return self._contexts.get(endpoint)

    @staticmethod
    def identity(event: Any) -> PeerIdentity | None:
        """The OSCORE identity of a request that arrived protected; None for a plain one."""
        if not isinstance(event, OscoreRequestReceived) or event.context is None:
            return None
        ctx = event.context
        kid = ctx.recipient_id.hex()
        return PeerIdentity("oscore", kid if ctx.id_context is None else f"{ctx.id_context.hex()}:{kid}")

    def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        self.layer.close()

    # --- contexts and their stored sequence numbers ---------------------------------------------

    def _add(self, info: SecurityInfo, *, restored: bool) -> None:
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

        def reserve(limit: int) -> bool:
            self._spawn(self._store_limit(endpoint, limit))
            return False

        sequence = SenderSequence(secrets.sequence, reserve=reserve, step=self._step)
        window = OscoreReplayWindow(config.replay_window, initialized=not restored)
        ctx = OscoreContext(config, sequence=sequence, window=window)
        self.remove(endpoint)
        self._contexts[endpoint] = ctx
        self._endpoints[id(ctx)] = endpoint
        self.layer.add(ctx)
        sequence.prepare()  # the first range is stored before the first number is needed

    async def _store_limit(self, endpoint: str, limit: int) -> None:
        ctx = self._contexts.get(endpoint)
        try:
            info = await self.store.get(endpoint)
            if info is not None and info.oscore is not None and ctx is self._contexts.get(endpoint):
                oscore = dataclasses.replace(info.oscore, sequence=max(limit, info.oscore.sequence))
                await self.store.put(dataclasses.replace(info, oscore=oscore))
        except Exception:
            log.exception("storing the OSCORE sequence numbers of %r failed", endpoint)
            if ctx is not None:
                ctx.sequence.reserved(None)
            return
        if ctx is not None:
            ctx.sequence.reserved(limit)

    def _spawn(self, coro: Any) -> None:
        try:
            task = asyncio.get_running_loop().create_task(coro)
        except RuntimeError:
            coro.close()
            return
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
