"""The radio of a simulated LoRaWAN end device behind a gateway: sparse uplinks, class A downlinks.

A class A end device speaks when it has something to say (an uplink every ``period`` seconds
here) and listens only in the two short receive windows right after each uplink (LoRaWAN 1.0.3
§3.3): what the network has for it waits until its next uplink. So a request the server sends
it through the gateway is held by the gateway and answered when the device next speaks;
``downlink()`` is that wait (``lwm2m.client.gateway.Gateway.add(..., downlink=...)``).

Sans-IO as the rest of the simulator: ``uplink_due(now)`` is asked at each step of the device,
on the fleet's clock.
"""

from __future__ import annotations

import asyncio


class ClassARadio:
    """When an end device next speaks, and the downlinks waiting for it."""

    __slots__ = ("_waiting", "next_uplink", "period", "uplinks")

    def __init__(self, period: float, first_uplink: float) -> None:
        self.period = period
        self.next_uplink = first_uplink
        self.uplinks = 0
        self._waiting: list[asyncio.Future[None]] = []

    def uplink_due(self, now: float) -> bool:
        """True (once) when the device speaks at ``now``: its values move, and what waited for
        its receive windows is delivered."""
        if now < self.next_uplink:
            return False
        # The next one a period on; after a long pause (the fleet fell behind), a period from now.
        self.next_uplink = max(self.next_uplink + self.period, now)
        self.uplinks += 1
        waiting, self._waiting = self._waiting, []
        for future in waiting:
            if not future.done():
                future.set_result(None)
        return True

    async def downlink(self) -> None:
        """Return at the device's next uplink."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append(future)
        try:
            await future
        finally:
            if future in self._waiting:
                self._waiting.remove(future)

    @property
    def waiting(self) -> int:
        """Downlinks held for the next uplink."""
        return len(self._waiting)
