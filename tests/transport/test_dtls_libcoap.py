"""Interop with libcoap's ``coap-client-openssl`` (OpenSSL's DTLS) registering with our server over DTLS-PSK.

coap-client exits 0 even when the request failed, so every test reads its output.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator

import pytest
from tests.helpers.libcoap import run_process

from lwm2m.server.config import ServerConfig
from lwm2m.server.role import Server
from lwm2m.storage.base import SecurityInfo

COAP_CLIENT_DTLS = "coap-client-openssl"
KEY = b"libcoap-secret-1"  # coap-client takes the key as text
KEY_2 = b"another-secret-2"


@pytest.fixture(scope="session")
def coap_client_dtls() -> str:
    path = shutil.which(COAP_CLIENT_DTLS)
    if path is None:
        pytest.fail(
            f"{COAP_CLIENT_DTLS} is not installed: install Debian's libcoap3-bin (`make debs`)", pytrace=False
        )
    return path


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    async with Server(ServerConfig(port=0, coaps_port=0)) as s:
        await s.security.put(SecurityInfo("dev-1", "dev-1-id", KEY))
        await s.security.put(SecurityInfo("dev-2", "dev-2-id", KEY_2))
        yield s


async def register(binary: str, server: Server, identity: str, key: bytes, ep: str) -> str:
    uri = f"coaps://127.0.0.1:{server.coaps_port}/rd?ep={ep}&lt=300&lwm2m=1.1&b=U"
    result = await run_process(
        binary, "-m", "post", "-u", identity, "-k", key.decode(), "-t", "40", "-e", "</3/0>", "-B", "5", uri
    )
    assert result.returncode == 0
    return result.stdout + result.stderr


async def test_libcoap_registers_with_the_right_key(coap_client_dtls: str, server: Server) -> None:
    output = await register(coap_client_dtls, server, "dev-1-id", KEY, "dev-1")
    assert output.strip() == "", output  # 2.01 Created has no payload: nothing printed
    (registration,) = await server.registrations()
    assert registration.endpoint == "dev-1"
    assert server.dtls is not None
    assert server.dtls.dtls.counters["handshakes_done"] == 1


async def test_libcoap_handshake_fails_with_a_wrong_key(coap_client_dtls: str, server: Server) -> None:
    output = await register(coap_client_dtls, server, "dev-1-id", b"wrong-secret-123", "dev-1")
    assert "alert" in output and "bad record mac" in output, output
    assert await server.registrations() == []
    assert server.dtls is not None and server.dtls.sessions() == []


async def test_libcoap_gets_403_with_another_endpoints_identity(
    coap_client_dtls: str, server: Server
) -> None:
    output = await register(coap_client_dtls, server, "dev-2-id", KEY_2, "dev-1")
    assert "4.03" in output, output
    assert await server.registrations() == []
