"""Shared fixtures: where the OMA registry snapshot lies, free loopback ports."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.helpers.ports import free_udp_port
from tests.helpers.redis import RedisServer

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
REGISTRY_DIR = SHARED / "lwm2m-registry"


@pytest.fixture(scope="session")
def registry_dir() -> Path:
    """The OMA registry snapshot (test data), kept beside the repository."""
    if not (REGISTRY_DIR / "index.csv").is_file():
        pytest.fail(f"the OMA registry snapshot is missing: expected it at {REGISTRY_DIR}")
    return REGISTRY_DIR


@pytest.fixture
def udp_port() -> int:
    return free_udp_port()


@pytest.fixture(scope="session")
def redis_server_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One Debian ``redis-server`` for the whole run, on a free port."""
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server_session: RedisServer) -> str:
    """The URL of the shared test Redis, emptied before the test."""
    redis_server_session.cli("flushall")
    return redis_server_session.url
