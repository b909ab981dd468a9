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


async def test_the_servers_own_observations_are_not_the_apis_but_those_it_took_up_are() -> None:
    # A firmware campaign's observation, made in the process, is neither cancelled nor replaced
    # through the API; one the server took up after a restart (no first answer) is.
    keeper, device = ObservationKeeper(), Composite()
    async with (
        Server(ServerConfig(port=0)) as server,
        open_udp_endpoint("127.0.0.1", 0, handler=device) as client,
    ):
        keeper.serve(server.observation_manager.of, server.resumed)
        await client.request(register("own-1"), ("127.0.0.1", server.port))
        key = composite_key([BATTERY])
        own = await server.observe_composite("own-1", [BATTERY])
        assert ("own-1", key) not in keeper and not await keeper.cancel("own-1", key)
        api = await server.observe_composite("own-1", [BATTERY])
        await keeper.keep("own-1", key, api)
        assert own.running and keeper.get("own-1", key) is api

        (record,) = [o.record for o in server.observations() if o is own]
        await own.close()  # as a stop does: the record stays, and is taken up as after a restart
        registration = await server.store.registrations.get("own-1")
        assert registration is not None
        await server.observation_manager.resume_endpoint(registration, server.registrar.peers["own-1"])
        (again,) = [o for o in server.observations() if o.token == record.token]
        assert again.response is None
        await keeper.cancel("own-1", key)  # the API's
        assert keeper.get("own-1", key) is again
        assert await keeper.cancel("own-1", key) and not again.running
