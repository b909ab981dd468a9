"""Redis clients from store URLs (``lwm2m.storage.redisconn``): a burst beyond the pool waits
for a connection instead of failing, on a real redis-server; a Redis Cluster URL names one node
or several, and each is checked."""

from __future__ import annotations

import asyncio
import re

import pytest

from lwm2m.errors import ConfigError
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


@pytest.mark.parametrize(
    ("url", "plain", "nodes"),
    [
        ("redis+cluster://10.0.0.1:7000", "redis://10.0.0.1:7000", [("10.0.0.1", 7000)]),
        (
            "redis+cluster://10.0.0.1:7000,10.0.0.2:7001,[::1]:7002",
            "redis://10.0.0.1:7000",
            [("10.0.0.1", 7000), ("10.0.0.2", 7001), ("::1", 7002)],
        ),
        (
            "rediss+cluster://user:secret@a.example:7000,b.example:7000/0?ssl_cert_reqs=none",
            "rediss://user:secret@a.example:7000/0?ssl_cert_reqs=none",
            [("a.example", 7000), ("b.example", 7000)],
        ),
        ("redis+cluster://a:1,b:2?socket_timeout=3", "redis://a:1?socket_timeout=3", [("a", 1), ("b", 2)]),
    ],
)
def test_a_cluster_url_names_one_or_more_nodes(url: str, plain: str, nodes: list[tuple[str, int]]) -> None:
    assert redisconn.cluster_nodes(url) == (plain, nodes)


@pytest.mark.parametrize(
    ("url", "named"),
    [
        ("redis+cluster://a:1,b", "'b': give HOST:PORT"),
        ("redis+cluster://a:1,,b:2", "'': give HOST:PORT"),
        ("redis+cluster://a:1,b:port", "'b:port'"),
        ("redis+cluster://a:1,b:2/3", "database 0 only"),
    ],
)
def test_a_bad_node_of_a_cluster_url_is_named(url: str, named: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(named)):
        connect(url)
