"""Observations held by the server (LwM2M-TS-Core 1.2 §6.4): each notification is
decoded, kept in the history store, sent out as an event, and handed to whoever
iterates the observation."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

from lwm2m.model.registry import ObjectRegistry
from lwm2m.protocol.management import (
    ObserveRequest,
    ReadCompositeRequest,
    Response,
    ResponseError,
    decode_response,
)
from lwm2m.server.events import NotificationReceived, ObservationEnded, ServerEvent
from lwm2m.storage.base import HistoryStore, Observation, ObservationStore
from lwm2m.transport.udp import Observation as CoapObservation

_END = object()
BACKLOG = 256  # unread notifications kept per observation


class ServerObservation:
    """``response`` is the first answer (the current value); iterate for later notifications.

    An observation resumed after a restart has no first answer (``response`` is None).
    Iteration ends when the client ends the relation or the observation is cancelled.
    """

    def __init__(
        self,
        record: Observation,
        request: ObserveRequest | ReadCompositeRequest,
        response: Response | None,
        relation: CoapObservation,
        *,
        models: ObjectRegistry,
        observations: ObservationStore,
        history: HistoryStore,
        emit: Callable[[ServerEvent], None],
        cancel_actively: Callable[[ServerObservation], Any],
        address: Any = None,
    ) -> None:
        self.record = record
        self.address = address  # where the client sends its notifications from, as last known
        self.request = request
        self.response = response
        self._relation = relation
        self._models = models
        self._observations = observations
        self._history = history
        self._emit = emit
        self._cancel_actively = cancel_actively
        # Only the newest notifications wait for a reader: every one also goes to the
        # history and the event stream, so a caller that never iterates costs bounded memory.
        self._queue: asyncio.Queue[Any] = asyncio.Queue(BACKLOG)
        self._keep_record = False  # closed by a stopping server: a restart resumes it
        self._end_reason: str | None = None  # why the server ended it, when it did
        self._pump = asyncio.create_task(self._run())

    @property
    def endpoint(self) -> str:
        return self.record.endpoint

    @property
    def token(self) -> bytes:
        return self.record.token

    async def _run(self) -> None:
        reason = "ended by the client"
        try:
            async for message in self._relation:
                try:
                    response = decode_response(self.request, message, self._models)
                except ResponseError as exc:
                    reason = f"undecodable notification: {exc}"
                    break
                if not response.success:
                    reason = f"error {message.code >> 5}.{message.code & 31:02d}"
                    break
                if response.records:
                    await self._history.append(self.endpoint, response.records, received_at=time.time())
                self._emit(
                    NotificationReceived(self.endpoint, self.token, self.record.paths, response.records)
                )
                self._offer(response)
        except (TimeoutError, ConnectionError) as exc:
            reason = str(exc) or type(exc).__name__
        except asyncio.CancelledError:
            reason = "cancelled"
            raise
        finally:
            if self._end_reason is not None:
                reason = self._end_reason
            if self._keep_record:
                reason = "server stopped"
            else:
                with contextlib.suppress(Exception):
                    await self._observations.remove(self.token)
            self._emit(ObservationEnded(self.endpoint, self.token, reason))
            self._offer(_END)

    def _offer(self, item: Any) -> None:
        if self._queue.full():
            self._queue.get_nowait()  # drop the oldest unread notification
        self._queue.put_nowait(item)

    def __aiter__(self) -> ServerObservation:
        return self

    async def __anext__(self) -> Response:
        item = await self._queue.get()
        if item is _END:
            self._offer(_END)
            raise StopAsyncIteration
        return item

    async def next(self, timeout: float | None = None) -> Response:
        async with asyncio.timeout(timeout):
            return await self.__anext__()

    async def cancel(self, *, active: bool = False) -> None:
        """Passive cancel forgets the relation (the next notification gets RST, RFC 7641 §3.6);
        active cancel also sends a GET with Observe=1."""
        self._relation.cancel()
        self._pump.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._pump
        if active:
            await self._cancel_actively(self)

    def end(self, reason: str) -> None:
        """End it here because the client no longer holds it: it registered anew, de-registered
        or expired (LwM2M-TS-Core 1.2 §6.4: the relations end with the registration). Nothing
        is sent; iteration stops and ObservationEnded carries ``reason`` once the end is done."""
        self._end_reason = reason
        self._relation.cancel()
        self._pump.cancel()

    async def close(self) -> None:
        """Stop delivering here but keep the stored record, so that the server, started again,
        resumes the observation: the client still holds it (RFC 7641 §3.6 needs a cancel)."""
        self._keep_record = True
        await self.cancel()
