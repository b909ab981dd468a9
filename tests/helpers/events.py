"""Waiting for an event of one kind on a server's or a client's event stream."""

from __future__ import annotations

import asyncio
from typing import Any


async def next_event(events: Any, kind: type, timeout: float = 5.0) -> Any:
    async with asyncio.timeout(timeout):
        async for event in events:
            if isinstance(event, kind):
                return event
    raise AssertionError("event stream ended")
