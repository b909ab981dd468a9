"""The client SDK over OSCORE (RFC 8613): ``ClientConfig(oscore=...)`` becomes object 21 linked
from the server's Security instance (/0/x/17, LwM2M-TS-Core 1.2 §E.5); the client registers,
is read and written, updates and de-registers, every exchange protected both ways."""

from __future__ import annotations

import json
from pathlib import Path as FsPath

import pytest
from tests.helpers.oscore import CLIENT
from tests.helpers.server import next_event

from lwm2m.client import Client, ClientConfig, ObjectInstance
from lwm2m.client.core import Oscore, Security
from lwm2m.coap.oscore import OscoreConfig
from lwm2m.errors import ConfigError
from lwm2m.model.path import Path
from lwm2m.model.record import Record
from lwm2m.model.value import ObjLink
from lwm2m.server.config import ServerConfig
from lwm2m.server.events import ClientDeregistered, ClientRegistered
from lwm2m.server.role import Server
from lwm2m.storage.base import OscoreSecrets, SecurityInfo
from lwm2m.transport.dtls.config import PskCredentials

pytestmark = pytest.mark.timeout(60)


def entry(endpoint: str, config: OscoreConfig = CLIENT) -> SecurityInfo:
    return SecurityInfo(
        endpoint,
        oscore=OscoreSecrets(config.master_secret, config.sender_id, config.recipient_id, config.master_salt),
    )


async def test_the_client_registers_and_is_served_over_oscore() -> None:
    async with Server(ServerConfig(port=0)) as server:
        await server.security.put(entry("valve-9"))
        events = server.events()
        client = Client("valve-9", f"coap://127.0.0.1:{server.port}", config=ClientConfig(oscore=CLIENT))
        security = client.tree.instance(0, 0)
        assert security is not None and security.get(Security.OSCORE) == ObjLink(21, 0)
        assert isinstance(client.tree.instance(21, 0), Oscore)
        async with client:
            await client.wait_registered(10)
            assert (await next_event(events, ClientRegistered)).registration.endpoint == "valve-9"
            read = await server.read("valve-9", "/3/0/0", timeout=5)
            assert read.records == (Record(Path.parse("/3/0/0"), "lwm2m"),)
            written = await server.write("valve-9", "/1/0/1", [Record(Path.parse("/1/0/1"), 120)], timeout=5)
            assert written.code >> 5 == 2
            # The server's requests went protected: the client's layer holds the context.
            coap = client.registration.coap
            assert coap is not None and coap.oscore is not None
            context = coap.oscore.context_for(client.registration.addr)
            assert context is not None and context.window.seen(0)  # the server's first request
        assert (await next_event(events, ClientDeregistered)).registration.endpoint == "valve-9"


async def test_the_server_observes_over_oscore() -> None:
    # RFC 8613 §4.1.3.5: the registration goes as FETCH, each notification under a Partial IV of its own.
    async with Server(ServerConfig(port=0)) as server:
        await server.security.put(entry("thermo-9"))
        sensor = ObjectInstance(0, {5700: 21.5, 5701: "Cel"}, object_id=3303)
        client = Client(
            "thermo-9", f"coap://127.0.0.1:{server.port}", [sensor], config=ClientConfig(oscore=CLIENT)
        )
        async with client:
            await client.wait_registered(10)
            observation = await server.observe("thermo-9", "/3303/0/5700", timeout=5)
            assert observation.response.records == (Record(Path.parse("/3303/0/5700"), 21.5),)
            for value in (22.0, 22.5, 23.0):
                sensor.set(5700, value)
                got = await observation.next(timeout=5)
                assert got.records == (Record(Path.parse("/3303/0/5700"), value),)
            # The observation's request binding is held by the server's OSCORE layer: its
            # notifications are verified against it (and ordered by their Partial IVs).
            coap = server._endpoint
            assert coap is not None and coap.oscore is not None and len(coap.oscore.pending) == 1


async def test_a_client_with_other_parameters_is_not_registered() -> None:
    wrong = OscoreConfig(b"not the secret", sender_id=CLIENT.sender_id, recipient_id=CLIENT.recipient_id)
    async with Server(ServerConfig(port=0)) as server:
        await server.security.put(entry("valve-9"))
        config = ClientConfig(oscore=wrong, retry_initial=0.05, retry_max=0.1, request_timeout=2)
        async with Client("valve-9", f"coap://127.0.0.1:{server.port}", config=config) as client:
            with pytest.raises(TimeoutError):
                await client.wait_registered(1.5)
            assert client.registration.errors >= 1
            error = str(client.registration.last_error)
            assert "answered unprotected with 4.00 Bad Request: Decryption failed" in error, error
        assert await server.registrations() == []


def test_oscore_and_dtls_credentials_exclude_each_other() -> None:
    with pytest.raises(ConfigError, match="oscore and psk"):
        ClientConfig(oscore=CLIENT, psk=PskCredentials("id", b"k" * 16))


async def test_sequence_numbers_survive_a_client_restart(tmp_path: FsPath) -> None:
    # RFC 8613 Appendix B.1.1: a restarted client starts above every number it may have used.
    path = str(tmp_path / "oscore-seq.json")
    async with Server(ServerConfig(port=0)) as server:
        await server.security.put(entry("valve-9"))
        config = ClientConfig(oscore=CLIENT, oscore_sequence_file=path)
        used = []
        for _ in range(2):
            async with Client("valve-9", f"coap://127.0.0.1:{server.port}", config=config) as client:
                await client.wait_registered(10)
                context = client.registration._oscore
                assert context is not None
                used.append((context.sequence.next, context.sequence.limit))
        (first_next, first_limit), (second_next, _) = used
        assert second_next > first_limit >= first_next  # the restart began past the stored range
        assert json.loads(FsPath(path).read_text()) == {"/21/0": context.sequence.limit}


async def test_an_unwritable_sequence_file_is_a_retried_error(tmp_path: FsPath) -> None:
    async with Server(ServerConfig(port=0)) as server:
        await server.security.put(entry("valve-9"))
        config = ClientConfig(
            oscore=CLIENT,
            oscore_sequence_file=str(tmp_path / "missing" / "seq.json"),
            retry_initial=0.05,
            retry_max=0.1,
        )
        async with Client("valve-9", f"coap://127.0.0.1:{server.port}", config=config) as client:
            with pytest.raises(TimeoutError):
                await client.wait_registered(0.5)
            assert "storing the next OSCORE sequence numbers failed" in str(client.registration.last_error)
            (tmp_path / "missing").mkdir()
            await client.wait_registered(10)  # the next try stores the range and registers


def test_an_oscore_instance_with_another_algorithm_is_refused() -> None:
    from lwm2m.client.connection import oscore_for

    client = Client("valve-9", "coap://127.0.0.1:1", config=ClientConfig(oscore=CLIENT))
    security = client.tree.instance(0, 0)
    oscore = client.tree.instance(21, 0)
    assert security is not None and oscore is not None
    assert oscore_for(security, client.tree) is not None
    oscore.set(Oscore.AEAD, 1)  # A128GCM (COSE 1): not supported here
    with pytest.raises(ValueError, match="only AES-CCM-16-64-128"):
        oscore_for(security, client.tree)
