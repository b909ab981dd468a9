"""ClientConfig: defaults, and every bad value refused on construction with its name."""

from __future__ import annotations

import dataclasses

import pytest

from lwm2m.client.config import DEFAULT_AWAKE_TIME, ClientConfig
from lwm2m.client.role import Client
from lwm2m.errors import ConfigError
from lwm2m.transport.dtls.config import PskCredentials, X509Credentials


def test_defaults() -> None:
    config = ClientConfig()
    assert (config.lifetime, config.binding, config.queue_mode, config.lwm2m_version) == (
        86400,
        "U",
        False,
        "1.2",
    )
    assert config.awake_time == DEFAULT_AWAKE_TIME
    assert (config.retry_initial, config.retry_max, config.bootstrap_after_failures) == (1.0, 60.0, 3)
    assert config.psk is None and config.certificate is None


def test_frozen_and_replace_checks_again() -> None:
    config = ClientConfig(lifetime=300)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.lifetime = 5  # type: ignore[misc]
    assert config.replace(queue_mode=True) == ClientConfig(lifetime=300, queue_mode=True)
    with pytest.raises(ConfigError, match="lifetime 0"):
        config.replace(lifetime=0)


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"lwm2m_version": "2.0"}, "lwm2m_version '2.0'"),
        ({"lifetime": 0}, "lifetime 0"),
        ({"lifetime": 1.5}, "lifetime 1.5"),
        ({"binding": ""}, "binding ''"),
        ({"binding": "UX"}, "binding 'UX'"),
        ({"awake_time": 0}, "awake_time 0"),
        ({"local_port": 70000}, "local_port 70000"),
        ({"retry_initial": 0}, "retry_initial 0"),
        ({"retry_initial": 5.0, "retry_max": 1.0}, "retry_max 1.0"),
        ({"request_timeout": -1.0}, "request_timeout -1.0"),
        ({"bootstrap_timeout": 0}, "bootstrap_timeout 0"),
        ({"bootstrap_after_failures": 0}, "bootstrap_after_failures 0"),
    ],
)
def test_bad_values_are_named(changes: dict[str, object], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        ClientConfig(**changes)  # type: ignore[arg-type]


def test_psk_and_certificate_together_are_refused() -> None:
    psk = PskCredentials("id", b"\x01" * 16)
    certificate = X509Credentials(b"cert", b"key", b"ca")
    with pytest.raises(ConfigError, match="psk and certificate"):
        ClientConfig(psk=psk, certificate=certificate)


def test_config_errors_are_value_errors_and_the_client_takes_the_config() -> None:
    with pytest.raises(ValueError, match="lwm2m_version"):
        ClientConfig(lwm2m_version="0.9")
    client = Client("ep", "coap://127.0.0.1:5683", config=ClientConfig(lifetime=120, binding="UQ"))
    assert client.config.lifetime == 120 and client.lifetime == 120 and client.binding == "UQ"
    with pytest.raises(ConfigError, match="endpoint name"):
        Client("", "coap://127.0.0.1:5683")
