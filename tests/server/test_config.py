"""ServerConfig: defaults, and a ConfigError naming each bad value on construction."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import pytest
from tests.helpers.pki import make_pki

from lwm2m.coap.config import EndpointConfig
from lwm2m.errors import ConfigError
from lwm2m.server.config import ServerConfig
from lwm2m.server.presence import MAX_TRANSMIT_WAIT
from lwm2m.server.registrar import RegistrationLimits
from lwm2m.server.role import Server
from lwm2m.storage.memory import MemoryStore


def test_the_defaults() -> None:
    config = ServerConfig()
    assert (config.host, config.port, config.coaps_port) == ("127.0.0.1", 5683, None)
    assert config.registration_limits == RegistrationLimits() and config.nosec_endpoints == "allow"
    assert config.awake_time == MAX_TRANSMIT_WAIT and config.queue_timeout == 300.0
    assert config.expiry_interval == 1.0 and config.coap is None and config.dtls_limits is None
    assert config.shared_store is False  # a lone server: every stored observation resumed at start


def test_it_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        ServerConfig().port = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"host": ""}, "host"),
        ({"port": 70000}, "port"),
        ({"port": -1}, "port"),
        ({"port": "5683"}, "port"),
        ({"port": True}, "port"),
        ({"coaps_port": 65536}, "coaps_port"),
        ({"nosec_endpoints": "Deny"}, "nosec_endpoints"),
        ({"awake_time": 0}, "awake_time"),
        ({"awake_time": float("nan")}, "awake_time"),
        ({"queue_timeout": -1.0}, "queue_timeout"),
        ({"queue_timeout": float("inf")}, "queue_timeout"),
        ({"expiry_interval": 0.0}, "expiry_interval"),
        ({"registration_limits": {"max_lifetime": 60}}, "registration_limits"),
        ({"coap": {"exchange_lifetime": 30}}, "coap"),
        ({"dtls_limits": 5}, "dtls_limits"),
        ({"certificate": "server.pem", "coaps_port": 0}, "certificate"),
        ({"shared_store": "yes"}, "shared_store"),
    ],
)
def test_a_bad_value_is_a_config_error_naming_it(fields: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(named)):
        ServerConfig(**fields)


def test_a_certificate_needs_the_dtls_port() -> None:
    with pytest.raises(ConfigError, match="coaps_port"):
        ServerConfig(certificate=make_pki().issue("lwm2m-server"))


def test_a_queue_timeout_may_be_zero_or_none() -> None:
    assert ServerConfig(queue_timeout=0).queue_timeout == 0
    assert ServerConfig(queue_timeout=None).queue_timeout is None


async def test_the_server_takes_its_settings_from_the_config() -> None:
    store = MemoryStore.create()
    config = ServerConfig(
        port=0,
        awake_time=5.0,
        queue_timeout=7.0,
        nosec_endpoints="deny",
        registration_limits=RegistrationLimits(rate=None),
        coap=EndpointConfig(exchange_lifetime=30.0, non_lifetime=30.0),
    )
    server = Server(config, store)
    assert server.config is config and server.store is store
    assert server.presence.awake_time == 5.0 and server.queue_timeout == 7.0
    assert server.security.nosec_endpoints == "deny" and server.registrar.rate is None
    async with server:
        assert server.port != 0 and server.uri.endswith(f":{server.port}")
