"""The registration expiry sweep outlives an outage of the store (LwM2M-TS-Core 1.2 §6.2.1: a
registration past its lifetime is removed): a sweep that fails (Redis restarting, a locked
disk) is logged and tried again, and the registrations that expired meanwhile go then."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from tests.storage.test_stores import reg

from lwm2m.errors import StoreError
from lwm2m.protocol.registration import Registration
from lwm2m.server.config import ServerConfig
from lwm2m.server.role import Server
from lwm2m.storage.memory import MemoryStore


async def test_a_failed_sweep_is_tried_again(caplog: pytest.LogCaptureFixture) -> None:
    store = MemoryStore.create()
    await store.registrations.add(reg("gone", at=time.time() - 120, lifetime=60))  # expired a minute ago
    remove_expired = store.registrations.remove_expired
    failures = 3

    async def flaky(now: float, *, limit: int) -> list[Registration]:
        nonlocal failures
        if failures:
            failures -= 1
            raise StoreError("the store is out of reach")
        return await remove_expired(now, limit=limit)

    store.registrations.remove_expired = flaky  # type: ignore[method-assign]
    with caplog.at_level(logging.WARNING, logger="lwm2m.server.role"):
        async with Server(ServerConfig(port=0, expiry_interval=0.01), store):
            for _ in range(500):
                if await store.registrations.get("gone") is None:
                    break
                await asyncio.sleep(0.01)
            assert await store.registrations.get("gone") is None
    assert failures == 0
    postponed = [r for r in caplog.records if "registration expiry postponed" in r.getMessage()]
    assert len(postponed) == 3 and "out of reach" in postponed[0].getMessage()
