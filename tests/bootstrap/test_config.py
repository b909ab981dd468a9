"""BootstrapServerConfig: defaults, and a ConfigError naming each bad value on construction."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import pytest

from lwm2m.bootstrap import BootstrapServer, BootstrapServerConfig
from lwm2m.bootstrap.config import DEFAULT_PORT, HISTORY, REQUEST_TIMEOUT, SESSION_TIMEOUT
from lwm2m.errors import ConfigError
from lwm2m.protocol.bootstrap_config import BootstrapConfig
from lwm2m.storage.memory import MemoryStore


def test_the_defaults() -> None:
    config = BootstrapServerConfig()
    assert (config.host, config.port, config.coaps_port, config.certificate) == (
        "127.0.0.1",
        5685,
        None,
        None,
    )
    assert DEFAULT_PORT == 5685  # LwM2M-TS-Transport 1.2 §6
    assert (config.request_timeout, config.session_timeout, config.history) == (
        REQUEST_TIMEOUT,
        SESSION_TIMEOUT,
        HISTORY,
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.port = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"host": ""}, "host"),
        ({"port": 65536}, "port"),
        ({"coaps_port": -1}, "coaps_port"),
        ({"request_timeout": 0}, "request_timeout"),
        ({"session_timeout": float("inf")}, "session_timeout"),
        ({"history": -1}, "history"),
        ({"history": 2.5}, "history"),
        ({"certificate": b"pem", "coaps_port": 0}, "certificate"),
    ],
)
def test_a_bad_value_is_a_config_error_naming_it(fields: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(named)):
        BootstrapServerConfig(**fields)


async def test_the_server_takes_its_settings_and_the_store_s_configurations() -> None:
    store = MemoryStore.create()
    config = BootstrapServerConfig(port=0, request_timeout=2.0, session_timeout=9.0, history=3)
    bs = BootstrapServer(config, store)
    assert bs.config is config and (bs.request_timeout, bs.session_timeout) == (2.0, 9.0)
    assert bs.configs is store.bootstrap_configs
    await bs.set_config("dev-1", _config())
    assert await store.bootstrap_configs.get("dev-1") == _config()
    async with bs:
        assert bs.port != 0 and bs.uri.endswith(f":{bs.port}")


def _config() -> BootstrapConfig:
    return BootstrapConfig.from_json(
        {"servers": [{"uri": "coap://127.0.0.1:5683", "shortServerId": 1, "lifetime": 60}]}
    )
