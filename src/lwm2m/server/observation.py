"""Observations held by the server (LwM2M-TS-Core 1.2 §6.4): each notification is
decoded, kept in the history store, sent out as an event, and handed to whoever
iterates the observation."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Collection
from typing import Any

from lwm2m.coap.numbers import as_code
from lwm2m.errors import ResponseError
from lwm2m.model.registry import ObjectRegistry
from lwm2m.protocol.management import ObserveRequest, ReadCompositeRequest, Response, ResponseDecoder
from lwm2m.server.backlog import Backlog
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
        listeners: Collection[object] | None = None,
        history_added: Callable[[], None] | None = None,
    ) -> None:
        """``listeners``, when given, is the server's live collection of event subscribers: no
        NotificationReceived is built while it is empty. ``history_added`` is called after each
        ``history.add``, for the server to flush the history soon after."""
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
        self._listeners = listeners
        self._history_added = history_added
        self._decode = ResponseDecoder(request, models)
        # Only the newest notifications wait for a reader: every one also goes to the
        # history and the event stream, so a caller that never iterates costs bounded memory.
        self._backlog: Backlog[Any] = Backlog(BACKLOG)
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
        endpoint, token, paths = self.endpoint, self.token, self.record.paths
        decode = self._decode
        history = self._history
        add = getattr(history, "add", None)  # a store without it gets append(), awaited
        added = self._history_added
        listeners = self._listeners
        emit = self._emit
        backlog = self._backlog
        offer = backlog.put
        try:
            async for message in self._relation:
                code = int(message.code)
                if code >> 5 != 2:
                    reason = f"error {code >> 5}.{code & 31:02d}"
                    break
                try:
                    fmt, records = decode.content(message)
                except ResponseError as exc:
                    reason = f"undecodable notification: {exc}"
                    break
                if records:
                    if add is not None:
                        add(endpoint, records, received_at=time.time())
                        if added is not None:
                            added()
                    else:
                        await history.append(endpoint, records, received_at=time.time())
                if listeners is None or listeners:
                    emit(NotificationReceived(endpoint, token, paths, records))
                if backlog.waited_on:
                    offer(Response(as_code(code), records, fmt, payload=message.payload))
                else:
                    # Kept for a reader to come, maybe for long: as a tuple of bytes and
                    # numbers, which the garbage collector stops tracking, instead of a
                    # Response with its records, which would end in the oldest generation
                    # and make full collections come more often. Decoded again if read.
                    offer((code, fmt, message.payload))
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
            self._backlog.put(_END)

    def __aiter__(self) -> ServerObservation:
        return self

    async def __anext__(self) -> Response:
        backlog = self._backlog
        if not backlog:
            await backlog.wait()
        if backlog.peek() is _END:
            raise StopAsyncIteration  # left in place: the next call ends too
        item = backlog.pop()
        if type(item) is tuple:
            code, fmt, payload = item
            code = as_code(code)
            try:
                records = self._decode.records(fmt, payload) if payload else ()
            except ResponseError as exc:  # the object definitions changed since
                return Response(code, (), fmt, diagnostic=str(exc), payload=payload)
            return Response(code, records, fmt, payload=payload)
        return item  # type: ignore[no-any-return]

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
