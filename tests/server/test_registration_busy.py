"""A registration storm on a slow store (``RegistrationLimits.in_flight``): beyond so many
Registration Interface requests being handled at once, one more is answered 5.03 Service
Unavailable with Max-Age (RFC 7252 §5.9.3.4) at once, instead of waiting for the store; the
clients come back after it, and are registered then."""

from __future__ import annotations

import asyncio

from tests.helpers.server import register

from lwm2m.coap.numbers import Code
from lwm2m.protocol.registration import Registration
from lwm2m.server.config import ServerConfig
from lwm2m.server.registrar import BUSY_RETRY, RegistrationLimits
from lwm2m.server.role import Server
from lwm2m.storage.memory import MemoryStore
from lwm2m.transport.udp import open_udp_endpoint


async def test_requests_beyond_those_in_flight_are_told_to_come_back() -> None:
    store = MemoryStore.create()
    add = store.registrations.add
    release = asyncio.Event()
    entered: list[str] = []

    async def slow_add(registration: Registration) -> None:
        entered.append(registration.endpoint)
        await release.wait()  # the store is slow: the first two wait here
        await add(registration)

    store.registrations.add = slow_add  # type: ignore[method-assign]
    config = ServerConfig(port=0, registration_limits=RegistrationLimits(in_flight=2))
    async with Server(config, store) as server, open_udp_endpoint() as client:
        peer = ("127.0.0.1", server.port)
        waiting = [
            asyncio.ensure_future(client.request(register(f"dev-{i}"), peer, timeout=10)) for i in (0, 1)
        ]
        while len(entered) < 2:
            await asyncio.sleep(0.01)  # both are being handled, waiting for the store
        refused = await asyncio.gather(
            *(client.request(register(f"dev-{i}"), peer, timeout=5) for i in (2, 3))
        )
        assert [r.code for r in refused] == [Code.SERVICE_UNAVAILABLE] * 2
        assert all(r.max_age == BUSY_RETRY for r in refused) and b"try again" in refused[0].payload
        release.set()
        assert [r.code for r in await asyncio.gather(*waiting)] == [Code.CREATED] * 2
        # Once those are done, the refused ones come back and are registered.
        again = await asyncio.gather(*(client.request(register(f"dev-{i}"), peer, timeout=5) for i in (2, 3)))
        assert [r.code for r in again] == [Code.CREATED] * 2
        assert {r.endpoint for r in await server.registrations()} == {f"dev-{i}" for i in range(4)}
