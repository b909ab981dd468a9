"""Waiting for a state reached over the network (a Redis key, another process's answer): poll
an async check until it holds, instead of sleeping a time meant to be long enough."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def eventually(
    check: Callable[[], Awaitable[T]],
    accept: Callable[[T], bool] = bool,
    *,
    timeout: float = 5.0,
    every: float = 0.02,
) -> T:
    """The first result of ``check()`` that ``accept`` takes (by default: a true one); after
    ``timeout`` seconds, AssertionError naming the last result."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = await check()
        if accept(result):
            return result
        if loop.time() >= deadline:
            raise AssertionError(f"still {result!r} after {timeout} s")
        await asyncio.sleep(every)
