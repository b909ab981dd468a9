"""Redis clients from store URLs (``lwm2m.storage.redisconn``): a burst beyond the pool waits
for a connection instead of failing, on a real redis-server."""

from __future__ import annotations

import asyncio

import pytest

from lwm2m.storage import redisconn
from lwm2m.storage.redisconn import connect


async def test_a_burst_beyond_the_pool_waits_for_a_connection(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redisconn, "POOL_CONNECTIONS", 4)
    client = connect(redis_url)
    try:
        # Fifty blocking reads of 50 ms at once over four connections: a plain pool of four fails
        # the fifth at once ("Too many connections"); this one queues them.
        answers = await asyncio.gather(*(client.blpop([f"absent-{i}"], timeout=0.05) for i in range(50)))
        assert answers == [None] * 50
        info = await client.info("clients")
        assert int(info["connected_clients"]) <= 4 + 1  # this pool's, and redis-cli's of the fixture at most
    finally:
        await client.aclose()
