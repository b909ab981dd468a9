"""Fixtures of the store tests: a three-master Redis Cluster for the whole run, and Redis stores
(one server, or the cluster) emptied before each test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.helpers.redis import RedisCluster


@pytest.fixture(scope="session")
def redis_cluster_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    cluster = RedisCluster(tmp_path_factory.mktemp("redis-cluster"))
    try:
        yield cluster.start()
    finally:
        cluster.stop()


@pytest.fixture
def redis_cluster_url(redis_cluster_session: RedisCluster) -> str:
    """The URL of the test Redis Cluster (``redis+cluster://``), every master emptied."""
    for node in redis_cluster_session.nodes:
        node.cli("flushall")
    return redis_cluster_session.url
