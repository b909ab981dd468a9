"""Queue mode (LwM2M-TS-Core 1.2 §6.5): awake for ``awake_time`` seconds after the last
exchange, then asleep, hearing nothing, until the client wakes by sending an Update.

Sans-IO (DESIGN.md): it takes ``now`` and never reads a clock; the client's loop calls
``handle_timer(now)`` at ``get_timer()``.
"""

from __future__ import annotations

from collections.abc import Callable


class QueueMode:
    """Awake or asleep, and when the awake window ends.

    ``touch(now)`` restarts the window (an exchange happened); when it ends, ``fall_asleep()``
    is asked and says whether the client went to sleep (it does not while unregistered).
    ``wake()`` ends the sleep: the Update that wakes the client succeeded.
    """

    __slots__ = ("_deadline", "_fall_asleep", "asleep", "awake_time", "enabled")

    def __init__(self, awake_time: float, *, enabled: bool, fall_asleep: Callable[[], bool]) -> None:
        self.enabled = enabled
        self.awake_time = awake_time
        self._fall_asleep = fall_asleep
        self._deadline: float | None = None
        self.asleep = False

    def touch(self, now: float) -> None:
        """An exchange happened at ``now``: stay awake ``awake_time`` more seconds."""
        if self.enabled:
            self._deadline = now + self.awake_time

    def get_timer(self) -> float | None:
        return self._deadline

    def handle_timer(self, now: float) -> None:
        deadline = self._deadline
        if deadline is None or now < deadline:
            return
        self._deadline = None
        if self._fall_asleep():
            self.asleep = True

    def wake(self) -> None:
        self.asleep = False

    def stop(self) -> None:
        self._deadline = None
        self.asleep = False
