"""Stores for the store tests: a Redis store on the test Redis or the test Redis Cluster."""

from __future__ import annotations

import pytest

from lwm2m.storage.base import HistoryRetention
from lwm2m.storage.redis import RedisStore


def redis_store(
    request: pytest.FixtureRequest, backend: str, retention: HistoryRetention | None = None
) -> RedisStore:
    """An empty Redis store: ``backend`` "redis" (one server, the ``redis_url`` fixture) or
    "redis-cluster" (three masters, the ``redis_cluster_url`` fixture of tests/storage)."""
    url = request.getfixturevalue("redis_url" if backend == "redis" else "redis_cluster_url")
    return RedisStore(url, history_retention=retention)
