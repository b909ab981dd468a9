"""Client over DTLS (``coaps://``) against Server: PSK and certificates, the server reaching the
client over its session, a wrong key that never registers, and ``lwm2m client`` with PSK options."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest
from tests.helpers.cli import lwm2m_process
from tests.helpers.client import temperature
from tests.helpers.events import next_event
from tests.helpers.pki import KEY, OTHER_KEY, make_pki

from lwm2m.client import Client
from lwm2m.client.config import ClientConfig
from lwm2m.client.core.security import SecurityMode
from lwm2m.coap.numbers import Code
from lwm2m.server.config import ServerConfig
from lwm2m.server.events import ClientDeregistered, ClientRegistered
from lwm2m.server.role import Server
from lwm2m.storage.base import SecurityInfo
from lwm2m.transport.dtls import PskCredentials


async def test_psk_client_registers_is_read_and_deregisters() -> None:
    async with Server(ServerConfig(port=0, coaps_port=0)) as server:
        await server.security.put(SecurityInfo("dtls-1", "dtls-1-id", KEY))
        events = server.events()
        assert server.coaps_uri is not None
        psk = PskCredentials("dtls-1-id", KEY)
        client = Client("dtls-1", server.coaps_uri, [temperature()], config=ClientConfig(psk=psk))
        async with client:
            registration = (await next_event(events, ClientRegistered)).registration
            assert registration.endpoint == "dtls-1"
            answer = await server.read("dtls-1", "/3303/0/5700", timeout=5)
            assert answer.code == Code.CONTENT and answer.records[0].value == 21.5
            security = client.tree.instances(0)[0]
            assert security.get(2) == SecurityMode.PSK and security.get(3) == b"dtls-1-id"
        await next_event(events, ClientDeregistered)
        assert await server.registrations() == []


async def test_certificate_client_registers() -> None:
    pki = make_pki()
    async with Server(ServerConfig(port=0, coaps_port=0, certificate=pki.issue("lwm2m-server"))) as server:
        await server.security.put(SecurityInfo("cert-1", x509=True))
        events = server.events()
        assert server.coaps_uri is not None
        async with Client("cert-1", server.coaps_uri, config=ClientConfig(certificate=pki.issue("cert-1"))):
            await next_event(events, ClientRegistered)
            answer = await server.read("cert-1", "/3/0/0", timeout=5)
            assert answer.code == Code.CONTENT


async def test_a_wrong_key_never_registers_and_the_client_keeps_trying() -> None:
    async with Server(ServerConfig(port=0, coaps_port=0)) as server:
        await server.security.put(SecurityInfo("dtls-2", "dtls-2-id", KEY))
        assert server.dtls is not None and server.coaps_uri is not None
        client = Client(
            "dtls-2",
            server.coaps_uri,
            config=ClientConfig(psk=PskCredentials("dtls-2-id", OTHER_KEY), retry_initial=0.05),
        )
        async with client:
            await asyncio.sleep(0.5)
            assert not client.registered and client.errors >= 2
        assert server.dtls.dtls.counters["handshakes_failed"] >= 2
        assert await server.registrations() == []


def test_coaps_needs_credentials_and_coap_takes_none() -> None:
    with pytest.raises(ValueError, match="coaps"):
        Client("x", "coaps://127.0.0.1:5684")
    with pytest.raises(ValueError, match="coaps"):
        Client("x", "coap://127.0.0.1:5683", config=ClientConfig(psk=PskCredentials("x", KEY)))


async def test_lwm2m_client_command_over_dtls(tmp_path: Path) -> None:
    async with Server(ServerConfig(port=0, coaps_port=0)) as server:
        await server.security.put(SecurityInfo("cli-dtls", "cli-dtls-id", KEY))
        events = server.events()
        proc = await lwm2m_process(
            "client",
            "--server",
            str(server.coaps_uri),
            "--endpoint",
            "cli-dtls",
            "--psk-identity",
            "cli-dtls-id",
            "--psk-key",
            KEY.hex(),
        )
        try:
            await next_event(events, ClientRegistered, timeout=15)
            assert (await server.read("cli-dtls", "/3303/0/5700", timeout=5)).code == Code.CONTENT
            proc.send_signal(signal.SIGINT)
            await next_event(events, ClientDeregistered)
            async with asyncio.timeout(10):
                out, err = await proc.communicate()
            assert proc.returncode == 0, err.decode()
            assert KEY.hex() not in out.decode() + err.decode()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
