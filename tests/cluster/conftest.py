"""Fixtures of the cluster tests: a real Redis (the shared ``redis_url``) and a real
three-master Redis Cluster for the whole run; ``any_redis_url`` gives a test both in turn;
``clients`` opens one client per simulated node and closes them after the test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator

import pytest
from tests.cluster.fakes import FakeClock
from tests.helpers.redis import RedisCluster, redis_cluster

from lwm2m.storage.redisconn import RedisClient, connect


@pytest.fixture(scope="session")
def redis_cluster_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    with redis_cluster(tmp_path_factory.mktemp("redis-cluster")) as cluster:
        yield cluster


@pytest.fixture
def cluster_url(redis_cluster_session: RedisCluster) -> str:
    """The URL of the test Redis Cluster, emptied (every master) before the test."""
    for node in redis_cluster_session.nodes:
        node.cli("flushall")
    return redis_cluster_session.url


@pytest.fixture(params=["redis", "cluster"])
def any_redis_url(request: pytest.FixtureRequest) -> str:
    """A single Redis, then a Redis Cluster."""
    name = "redis_url" if request.param == "redis" else "cluster_url"
    url: str = request.getfixturevalue(name)
    return url


@pytest.fixture
async def clients(any_redis_url: str) -> AsyncIterator[Callable[[], RedisClient]]:
    """Makes a new client (one per simulated node) of ``any_redis_url``."""
    made: list[RedisClient] = []

    def make() -> RedisClient:
        client = connect(any_redis_url)
        made.append(client)
        return client

    yield make
    for client in made:
        await client.aclose()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
