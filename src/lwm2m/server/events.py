"""What the server tells its users, as typed events (past tense, frozen).

The events are frozen msgspec structs, not frozen dataclasses: a notification makes one for
every subscriber to share, and a frozen dataclass's ``__init__`` (``object.__setattr__`` per
field) cost ten times as much (7,200 instructions for NotificationReceived, against 600)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Protocol

import msgspec

from lwm2m.errors import ConfigError
from lwm2m.model.path import Path
from lwm2m.model.record import Record
from lwm2m.protocol.registration import Registration
from lwm2m.server.backlog import Backlog


class ClientRegistered(msgspec.Struct, frozen=True):
    registration: Registration
    replaced: Registration | None = None  # a new Register for a known endpoint replaces it


class ClientUpdated(msgspec.Struct, frozen=True):
    registration: Registration
    previous: Registration
    # The Update carried an object list (LwM2M-TS-Core 1.2 §6.2.2: sent when the client's
    # objects or instances changed, or as it likes), whether or not it differs from the last.
    objects_listed: bool = False


class ClientDeregistered(msgspec.Struct, frozen=True):
    registration: Registration


class RegistrationExpired(msgspec.Struct, frozen=True):
    registration: Registration


class ClientAwake(msgspec.Struct, frozen=True):
    """A queue-mode client can be reached now (it sent something)."""

    endpoint: str


class ClientSleeping(msgspec.Struct, frozen=True):
    """A queue-mode client's awake time ran out; requests for it wait."""

    endpoint: str


class NotificationReceived(msgspec.Struct, frozen=True):
    """A notification of an observation, decoded (LwM2M-TS-Core 1.2 §6.4.2)."""

    endpoint: str
    token: bytes
    paths: tuple[Path, ...]
    records: tuple[Record, ...]


class SendReceived(msgspec.Struct, frozen=True):
    """Values a client pushed with Send to ``/dp`` (LwM2M-TS-Core 1.2 §6.4.6)."""

    endpoint: str
    records: tuple[Record, ...]


class ObservationEnded(msgspec.Struct, frozen=True):
    endpoint: str
    token: bytes
    reason: str  # "cancelled", "error <code>", "timeout", …


ServerEvent = (
    ClientRegistered
    | ClientUpdated
    | ClientDeregistered
    | RegistrationExpired
    | ClientAwake
    | ClientSleeping
    | NotificationReceived
    | SendReceived
    | ObservationEnded
)


# Events kept for a subscriber that reads slower than they come: with 1,000 devices
# notifying once a second, about ten seconds' worth.
EVENT_BACKLOG = 10_000


class EventSink(Protocol):
    """What the server's event fan-out calls for each subscriber: ``put(event)``."""

    @property
    def put(self) -> Callable[[ServerEvent], None]: ...


class EventTap:
    """Every event from now on, for a reader on a timer that takes them all at each look (the
    export's handoff), until ``close()``.

    The server's fan-out appends to a list: one C call per event, where an
    :class:`EventStream` runs a bound check and a wake-up in Python. At most ``limit`` events
    are kept from one look to the next: ``take_all`` drops the oldest beyond it and counts
    them in ``dropped``. Between two looks the list holds what the loop emitted meanwhile;
    the reader's timer runs on the same loop, so that is one interval's worth.
    """

    __slots__ = ("_items", "_subscribers", "dropped", "limit", "put")

    def __init__(self, subscribers: set[EventSink], limit: int = EVENT_BACKLOG) -> None:
        if limit < 1:
            raise ConfigError(f"limit must be at least 1, got {limit}")
        self._items: list[ServerEvent] = []
        self.put: Callable[[ServerEvent], None] = self._items.append
        self.limit = limit
        self.dropped = 0
        self._subscribers = subscribers
        subscribers.add(self)

    @property
    def pending(self) -> int:
        """Events received and not taken yet."""
        return len(self._items)

    def take_all(self) -> list[ServerEvent]:
        """The events since the last look, oldest first (at most ``limit``, the newest)."""
        items = self._items
        if not items:
            return []
        self._items = []
        self.put = self._items.append
        beyond = len(items) - self.limit
        if beyond > 0:
            self.dropped += beyond
            del items[:beyond]
        return items

    def close(self) -> None:
        self._subscribers.discard(self)


class EventStream:
    """An async iterator over server events; ``close()`` (or ``async with``) unsubscribes.

    Events wait here until read, up to ``backlog`` of them: beyond, the oldest unread event
    is dropped (and counted in ``dropped``), so that a subscriber that stops reading without
    closing its stream (a stalled SSE client) costs the server bounded memory.
    """

    def __init__(self, subscribers: set[EventSink], backlog: int = EVENT_BACKLOG) -> None:
        if backlog < 1:
            raise ConfigError(f"backlog must be at least 1, got {backlog}")
        self._backlog: Backlog[ServerEvent] = Backlog(backlog)
        self._subscribers = subscribers
        subscribers.add(self._backlog)

    @property
    def pending(self) -> int:
        """Events received and not read yet."""
        return len(self._backlog)

    @property
    def dropped(self) -> int:
        """Events lost so far because ``backlog`` unread ones were waiting already."""
        return self._backlog.dropped

    def take_all(self) -> deque[ServerEvent]:
        """The events received and not read yet, oldest first, taken without waiting: a reader
        that looks now and then (a timer) instead of awaiting each event."""
        return self._backlog.take_all()

    async def wait(self) -> None:
        """Return once an event waits (at once if one does): for a reader that then takes
        them all (``take_all``) instead of awaiting each."""
        await self._backlog.wait()

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> ServerEvent:
        return await self._backlog.get()

    def close(self) -> None:
        self._subscribers.discard(self._backlog)

    async def __aenter__(self) -> EventStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


class EventHook:
    """Every event from now on handed to ``call`` by the server's fan-out, in the step that
    emits it, until ``close()``: for a reader that keeps each event at once (the REST API's
    ring of recent events), with no queue, task or wake-up between. ``call`` runs inside the
    code that emits the event (a CoAP handler, the expiry timer), so it must be cheap and must
    not raise."""

    __slots__ = ("_subscribers", "put")

    def __init__(self, subscribers: set[EventSink], call: Callable[[ServerEvent], None]) -> None:
        self.put = call
        self._subscribers = subscribers
        subscribers.add(self)

    def close(self) -> None:
        self._subscribers.discard(self)
