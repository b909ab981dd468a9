"""The cluster's link key (:mod:`lwm2m.cluster.link`): made once in Redis by the first node that
asks, read by the others."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from lwm2m.cluster.link import LINK_KEY, link_key
from lwm2m.storage.redisconn import RedisClient


async def test_the_first_node_makes_the_key_and_the_others_read_it(
    clients: Callable[[], RedisClient],
) -> None:
    keys = await asyncio.gather(*(link_key(clients()) for _ in range(5)))
    assert len(set(keys)) == 1 and len(keys[0]) == 32
    assert await clients().get(LINK_KEY) == keys[0]
