"""A registration storm on a slow store (``RegistrationLimits.in_flight``): beyond so many
Registration Interface requests being handled at once, one more is answered 5.03 Service
Unavailable with Max-Age (RFC 7252 §5.9.3.4) at once, instead of waiting for the store; the
clients come back after it, and are registered then."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from pathlib import Path as FsPath

import pytest
from tests.helpers.server import register

from lwm2m.coap.numbers import Code
from lwm2m.errors import StoreError
from lwm2m.protocol.registration import Registration
from lwm2m.server.config import ServerConfig
from lwm2m.server.registrar import BUSY_RETRY, RegistrationLimits
from lwm2m.server.role import Server
from lwm2m.storage.memory import MemoryStore
from lwm2m.storage.sqlite import SqliteStore
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


async def test_a_store_that_fails_gets_5_03_and_the_client_comes_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A store call that fails during a Register (the Redis pool exhausted, a restart) is a 5.03
    with Max-Age and a warning, not a 5.00 with a traceback: the client registers again."""
    store = MemoryStore.create()
    add = store.registrations.add
    failures = 1

    async def flaky_add(registration: Registration) -> None:
        nonlocal failures
        if failures:
            failures -= 1
            raise StoreError("the Redis store redis://10.0.0.9:6379/0: No connection available.")
        await add(registration)

    store.registrations.add = flaky_add  # type: ignore[method-assign]
    with caplog.at_level(logging.WARNING, logger="lwm2m"):
        async with Server(ServerConfig(port=0), store) as server, open_udp_endpoint() as client:
            peer = ("127.0.0.1", server.port)
            first = await client.request(register("dev-s"), peer, timeout=5)
            assert first.code == Code.SERVICE_UNAVAILABLE and first.max_age == BUSY_RETRY
            assert b"store" in first.payload
            assert await server.registrations() == []
            again = await client.request(register("dev-s"), peer, timeout=5)
            assert again.code == Code.CREATED
    said = [r for r in caplog.records if "store failed" in r.getMessage()]
    assert len(said) == 1 and "No connection available" in said[0].getMessage()
    assert said[0].levelno == logging.WARNING and said[0].exc_info is None
    assert not any(r.levelno >= logging.ERROR for r in caplog.records)


async def test_a_sqlite_file_locked_by_another_process_gets_5_03_not_5_00(tmp_path: FsPath) -> None:
    """Another writer holding the SQLite file's lock past the busy timeout (an export worker
    stopped inside its write, say): the Register is answered 5.03 with Max-Age, not 5.00, and
    goes through once the lock is let go."""
    path = tmp_path / "lwm2m.db"
    with SqliteStore(path, busy_timeout=0.05) as store:
        async with Server(ServerConfig(port=0), store) as server, open_udp_endpoint() as client:
            peer = ("127.0.0.1", server.port)
            blocker = sqlite3.connect(path, timeout=0, isolation_level=None)
            try:
                blocker.execute("BEGIN IMMEDIATE")
                first = await client.request(register("dev-l"), peer, timeout=5)
                assert first.code == Code.SERVICE_UNAVAILABLE and first.max_age == BUSY_RETRY
                blocker.execute("ROLLBACK")
            finally:
                blocker.close()
            again = await client.request(register("dev-l"), peer, timeout=5)
            assert again.code == Code.CREATED
