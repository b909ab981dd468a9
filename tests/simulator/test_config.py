"""FleetConfig on its own: defaults, every value checked on construction, and how a Fleet takes it."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from lwm2m.errors import ConfigError
from lwm2m.simulator import Fleet, FleetConfig
from lwm2m.simulator.geography import CITIES


def test_defaults_are_valid_and_frozen() -> None:
    config = FleetConfig()
    assert (config.count, config.profile, config.prefix, config.rate) == (1, "mixed", "sim", 100.0)
    assert (config.security, config.server_uri, config.bootstrap) == ("nosec", None, None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.count = 2  # type: ignore[misc]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"count": 0}, "count 0"),
        ({"count": 2.0}, "count 2.0"),
        ({"profile": "ucifi-toaster"}, "unknown profile 'ucifi-toaster'"),
        ({"prefix": "a b"}, "prefix 'a b'"),
        ({"rate": -1.0}, "rate -1.0"),
        ({"lifetime": 0}, "lifetime 0"),
        ({"lwm2m_version": "2.0"}, "lwm2m_version '2.0'"),
        ({"tick": 0.0}, "tick 0.0"),
        ({"tick": 1.0, "update_interval": 0.5}, "update_interval 0.5"),
        ({"time_scale": 0.0}, "time_scale 0.0"),
        ({"reboot_seconds": -1.0}, "reboot_seconds -1.0"),
        ({"install_seconds": float("nan")}, "install_seconds nan"),
        ({"dedup_entries": 0}, "dedup_entries 0"),
        ({"security": "x509"}, "security 'x509'"),
        ({"keys": {"sim-00000": b""}}, "the key of 'sim-00000'"),
        ({"bootstrap_keys": {"sim-00000": "00"}}, "the key of 'sim-00000'"),
        ({"city": "Atlantis"}, "city 'Atlantis'"),
        ({"server_uri": "http://x"}, "server URI 'http://x'"),
        ({"bootstrap": "coap://"}, "server URI 'coap://' has no host"),
        ({"server_uri": "coaps://x"}, "server coaps://x: coaps:// needs security 'psk'"),
        ({"server_uri": "coap://x", "security": "psk"}, "the server coap://x is plain CoAP"),
        ({"server_uri": "coaps+tcp://x"}, "server coaps\\+tcp://x: coaps\\+tcp:// needs security 'psk'"),
        ({"server_uri": "coap+tcp://x", "security": "psk"}, "the server coap\\+tcp://x is plain CoAP"),
        (
            {"bootstrap": "coaps+tcp://b", "security": "psk"},
            "bootstrap coaps\\+tcp://b: a fleet that bootstraps over coaps\\+tcp:// is not simulated",
        ),
    ],
)
def test_a_bad_value_is_named(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        FleetConfig(**options)


def test_psk_without_any_server_yet_is_accepted_until_the_fleet_gets_one() -> None:
    config = FleetConfig(security="psk", count=2)
    with pytest.raises(ConfigError, match="plain CoAP"):
        Fleet("coap://127.0.0.1:5683", config)
    fleet = Fleet("coaps://127.0.0.1:5684", config)
    assert fleet.server_psk and len(fleet.server_keys()) == 2
    assert fleet.config.server_uri == "coaps://127.0.0.1:5684" and config.server_uri is None


def test_a_fleet_takes_a_config_with_or_without_a_server() -> None:
    config = FleetConfig(server_uri="coap://127.0.0.1:5683", count=3, city=CITIES[0].name.upper())
    fleet = Fleet(config)
    assert (fleet.count, fleet.server_uri, fleet.city) == (3, "coap://127.0.0.1:5683", CITIES[0])
    assert Fleet(None, config).server_uri == config.server_uri  # None: the config's server
    assert Fleet("coap://10.0.0.1", config).server_uri == "coap://10.0.0.1"
    assert Fleet("coap://10.0.0.1").count == 1
    with pytest.raises(ConfigError, match="server_uri None"):
        Fleet(FleetConfig())
    with pytest.raises(ConfigError, match="neither the server nor the bootstrap server is coaps://"):
        Fleet(None, FleetConfig(bootstrap="coap://b", security="psk"))
    with pytest.raises(TypeError):
        Fleet(config, config)  # type: ignore[arg-type]
