"""A first-in first-out buffer that asyncio readers wait on: what the server keeps for whoever
reads its events or an observation's notifications.

Lighter than ``asyncio.Queue`` on the path every notification takes: a ``put`` with
nobody waiting is a deque append, and a bounded backlog drops its oldest item
instead of blocking the writer (the server must never wait for a slow reader).
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class Backlog(Generic[T]):
    """Items in arrival order; ``maxlen`` keeps only the newest that many (None: no bound)."""

    __slots__ = ("_items", "_waiters", "dropped")

    def __init__(self, maxlen: int | None = None) -> None:
        self._items: deque[T] = deque(maxlen=maxlen)
        self._waiters: list[asyncio.Future[None]] = []
        self.dropped = 0  # oldest items pushed out by newer ones, as maxlen says

    def __len__(self) -> int:
        return len(self._items)

    @property
    def waited_on(self) -> bool:
        """Whether a reader waits now: what is put goes to it at the next turn of the loop."""
        return bool(self._waiters)

    def put(self, item: T) -> None:
        items = self._items
        if len(items) == items.maxlen:  # full: the append pushes the oldest out
            self.dropped += 1
        items.append(item)
        if self._waiters:
            # Every waiter looks again; those that find nothing wait anew. Waking all of
            # them also covers a waiter cancelled after it was woken.
            waiters, self._waiters = self._waiters, []
            for w in waiters:
                if not w.done():
                    w.set_result(None)

    def peek(self) -> T:
        """The oldest item, left in place (IndexError when empty)."""
        return self._items[0]

    def pop(self) -> T:
        """The oldest item, taken out (IndexError when empty)."""
        return self._items.popleft()

    def take_all(self) -> deque[T]:
        """Every item, oldest first, taken out at once (the backlog starts anew, same bound)."""
        items = self._items
        self._items = deque(maxlen=items.maxlen)
        return items

    async def wait(self) -> None:
        """Return once there is an item (at once if there is one already)."""
        while not self._items:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._waiters:  # cancelled before any put: do not keep it
                    self._waiters.remove(waiter)

    async def get(self) -> T:
        """The oldest item, waiting for one if there is none."""
        if not self._items:
            await self.wait()
        return self._items.popleft()
