"""The REST API's keeper of observations: one per endpoint and paths, no task or queue each,
ended ones no longer kept."""

from __future__ import annotations

import asyncio

import pytest
from tests.helpers.composite import BATTERY, TEMPERATURE, Composite
from tests.helpers.server import next_event, register

from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, Type
from lwm2m.server.config import ServerConfig
from lwm2m.server.events import NotificationReceived, ObservationEnded
from lwm2m.server.role import Server
from lwm2m.transport.udp import open_udp_endpoint
from lwm2m.web import observations as observations_module
from lwm2m.web.observations import ObservationKeeper, composite_key


async def test_a_kept_observation_costs_no_task_and_an_ended_one_is_no_longer_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(observations_module, "SWEEP_AT_LEAST", 2)
    keeper, device = ObservationKeeper(), Composite()
    async with (
        Server(ServerConfig(port=0)) as server,
        open_udp_endpoint("127.0.0.1", 0, handler=device) as client,
    ):
        events = server.events()
        for ep in ("keep-1", "keep-2"):
            await client.request(register(ep), ("127.0.0.1", server.port))
        tasks = len(asyncio.all_tasks())
        kept = {}
        for ep, paths in (("keep-1", [BATTERY]), ("keep-1", [BATTERY, TEMPERATURE]), ("keep-2", [BATTERY])):
            key = composite_key(paths)
            kept[ep, key] = await server.observe_composite(ep, paths)
            await keeper.keep(ep, key, kept[ep, key])
        assert len(asyncio.all_tasks()) == tasks  # (the API's keeper drained each with a task)
        assert all(key in keeper for key in kept) and len(keeper) == 3

        # Notifications still reach the events and the history, and are not kept for a reader.
        first = device.relations[0]
        for value in (50, 51, 52):
            device.values[BATTERY] = value
            assert client.notify(first.relation, device.notification(first))
            await next_event(events, NotificationReceived)
        (newest, *_) = await server.history("keep-1", str(BATTERY))
        assert newest.record.value == 52

        # Ended by the client (an error code ends it): no longer kept, a cancel finds nothing.
        ended = ("keep-2", composite_key([BATTERY]))
        gone = device.relations[2]
        assert client.notify(gone.relation, Message.build(Type.NON, Code.NOT_FOUND))
        assert (await next_event(events, ObservationEnded)).token == kept[ended].token
        assert ended not in keeper and keeper.get(*ended) is None

        # The table sweeps the ended entries whenever it has doubled (here: at 4).
        assert len(keeper) == 3
        again = composite_key([TEMPERATURE])
        await keeper.keep("keep-2", again, await server.observe_composite("keep-2", [TEMPERATURE]))
        assert len(keeper) == 3  # the ended one swept, three running
        assert not await keeper.cancel(*ended)
        assert not device.cancels
        assert await keeper.cancel("keep-2", again, active=True) and len(device.cancels) == 1
        await keeper.close()
