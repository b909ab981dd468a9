"""The client's notifications (LwM2M-TS-Core 1.2 §6.4, Information Reporting): the observe
relations and when they notify (an :class:`~lwm2m.client.observer.Observer`), kept while the
client sleeps in queue mode (§6.5: the latest per relation, and the client wakes by sending
an Update) and sent once it is awake again.

Sans-IO like the observer: the client's loop calls ``handle_timer(now)`` at ``get_timer()``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from lwm2m.client.observer import Emit, Observer, RelationKey
from lwm2m.coap.message import Message
from lwm2m.protocol.attributes import Attributes

if TYPE_CHECKING:
    from lwm2m.client.handler import RequestHandler


class Reporter:
    """Notifications of one client.

    ``send(relation, message, confirmable)`` puts a notification on the wire and says whether
    the relation still exists; ``asleep()`` says whether the client sleeps (then notifications
    are held and ``wake_up()`` is called); ``flush()`` sends what was held. ``defaults``,
    ``server_of`` and ``on_timer`` are the observer's (see :class:`Observer`).
    """

    __slots__ = ("_asleep", "_send", "_wake_up", "held", "observer")

    def __init__(
        self,
        handler: RequestHandler,
        send: Emit,
        *,
        asleep: Callable[[], bool],
        wake_up: Callable[[], None],
        defaults: Callable[..., Attributes] = Attributes,
        server_of: Callable[[RelationKey], int | None] | None = None,
        on_timer: Callable[[], None] | None = None,
    ) -> None:
        self._send = send
        self._asleep = asleep
        self._wake_up = wake_up
        # Notifications kept while asleep (queue mode); made when the first is kept.
        self.held: dict[RelationKey, tuple[Message, bool]] | None = None
        self.observer = Observer(
            handler, self._emit, defaults=defaults, server_of=server_of, on_timer=on_timer
        )

    def _emit(self, key: RelationKey, message: Message, confirmable: bool) -> bool:
        if self._asleep():
            # §6.5: keep the notification (the latest of its relation) and wake up by an Update.
            if self.held is None:
                self.held = {}
            self.held[key] = (message, confirmable)
            self._wake_up()
            return True
        return self._send(key, message, confirmable)

    def emit(self, key: RelationKey, message: Message, confirmable: bool) -> bool:
        """A notification of another observer of the same client (an end device's, behind a
        gateway): held while asleep as this one's are."""
        return self._emit(key, message, confirmable)

    def flush(self) -> None:
        """The client is awake again: send what was held, each to its relation."""
        held = self.held
        if not held:
            return  # None until a notification was kept: every Update flushes
        self.held = {}
        for key, (message, con) in held.items():
            self._send(key, message, con)

    def get_timer(self) -> float | None:
        return self.observer.get_timer()

    def handle_timer(self, now: float) -> None:
        self.observer.handle_timer(now)

    def close(self) -> None:
        self.observer.close()
