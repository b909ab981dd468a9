"""The server over CoAP over TCP and TLS (RFC 8323): a device registers with binding T over its
connection and is reached over that same connection (LwM2M-TS-Transport 1.2 §6)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from tests.helpers.pki import make_pki
from tests.helpers.server import Device
from tests.helpers.web import client_for

from lwm2m.coap.events import RequestReceived
from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, Type
from lwm2m.codec.base import ContentFormat as CF
from lwm2m.errors import ConfigError, ConnectionAborted
from lwm2m.server.config import ServerConfig
from lwm2m.server.role import Server
from lwm2m.storage.base import SecurityInfo
from lwm2m.transport.dtls import DtlsClientConfig, PskCredentials
from lwm2m.transport.tcp import open_tcp_endpoint, tls_client_context
from lwm2m.transport.tls_engine import engine_tls_client


def register(ep: str, *, queue: bool = False) -> Message:
    query = [f"ep={ep}", "lt=300", "lwm2m=1.1", "b=T"] + (["Q"] if queue else [])
    return Message.build(
        Type.CON, Code.POST, uri_path="/rd", uri_query=query, content_format=CF.LINK, payload=b"</1/0>,</3/0>"
    )


async def gone(server: Server) -> None:
    """Until the server has no connection left."""
    async with asyncio.timeout(5):
        while server.tcp_connections():
            await asyncio.sleep(0.01)


def value(response: Any) -> Any:
    (record,) = response.records
    return record.value


class ObservedDevice(Device):
    def __init__(self) -> None:
        super().__init__()
        self.relations: list[Any] = []

    def __call__(self, event: RequestReceived) -> Message:
        answer = super().__call__(event)
        if event.is_observe_registration:
            self.relations.append(event.relation)
            return answer.with_option(6, 0)
        return answer


async def test_register_read_execute_observe_over_the_devices_connection() -> None:
    config = ServerConfig(port=0, tcp_port=0)
    device = ObservedDevice()
    async with Server(config) as server, open_tcp_endpoint(None, handler=device) as ep:
        assert server.tcp_uri is not None and server.tcp_uri.startswith("coap+tcp://127.0.0.1:")
        answer = await ep.request(register("tcp-1"), ("127.0.0.1", server.tcp_port))
        assert answer.code == Code.CREATED
        registration = await server.registration("tcp-1")
        assert registration.binding == "T"
        assert server.transport_of("tcp-1") == "tcp"

        read = await server.read("tcp-1", "/3/0/0", timeout=5)
        assert value(read) == "Open Mobile Alliance"
        assert (await server.execute("tcp-1", "/3/0/4", timeout=5)).code == Code.CHANGED
        observation = await server.observe("tcp-1", "/3/0/9", timeout=5)
        assert observation.response is not None and value(observation.response) == 85
        (relation,) = device.relations
        payload = b"77"
        ep.notify(relation, Message.build(Type.CON, Code.CONTENT, content_format=CF.TEXT, payload=payload))
        note = await observation.next(5)
        assert value(note) == 77

        async with client_for(server) as http:
            body = (await http.get("/api/clients/tcp-1")).json()
            assert body["transport"] == "tcp" and body["binding"] == "T"
            listed = (await http.get("/api/clients")).json()["clients"]
            assert [c["transport"] for c in listed] == ["tcp"]


async def test_a_closed_connection_fails_requests_and_a_new_one_carries_them() -> None:
    config = ServerConfig(port=0, tcp_port=0)
    async with Server(config) as server:
        async with open_tcp_endpoint(None, handler=Device()) as ep:
            await ep.request(register("tcp-2"), ("127.0.0.1", server.tcp_port))
        await gone(server)
        # The connection is gone and a server never connects to a client: a clear error.
        with pytest.raises(ConnectionAborted, match="no connection"):
            await server.read("tcp-2", "/3/0/0", timeout=5)
        async with open_tcp_endpoint(None, handler=Device()) as ep:
            await ep.request(register("tcp-2"), ("127.0.0.1", server.tcp_port))
            assert value(await server.read("tcp-2", "/3/0/0", timeout=5)) == "Open Mobile Alliance"


async def test_queue_mode_a_request_waits_for_the_device_to_reconnect() -> None:
    config = ServerConfig(port=0, tcp_port=0, queue_timeout=5)
    async with Server(config) as server:
        async with open_tcp_endpoint(None, handler=Device()) as ep:
            created = await ep.request(register("tcp-q", queue=True), ("127.0.0.1", server.tcp_port))
            location = created.location_path
        await gone(server)  # the server saw the connection close: the device sleeps
        read = asyncio.create_task(server.read("tcp-q", "/3/0/0", timeout=5))
        await asyncio.sleep(0.2)
        assert not read.done()
        async with open_tcp_endpoint(None, handler=Device()) as ep:
            update = Message.build(Type.CON, Code.POST, uri_path=list(location))
            assert (await ep.request(update, ("127.0.0.1", server.tcp_port))).code == Code.CHANGED
            response = await asyncio.wait_for(read, 5)
            assert value(response) == "Open Mobile Alliance"


async def test_tls_binds_the_certificate_cn_to_the_endpoint() -> None:
    pki = make_pki()
    config = ServerConfig(port=0, tls_port=0, certificate=pki.issue("lwm2m-server"))
    async with Server(config) as server:
        await server.security.put(SecurityInfo("tls-dev", x509=True))
        client_ssl = tls_client_context(pki.issue("tls-dev"))
        async with open_tcp_endpoint(None, handler=Device(), client_ssl=client_ssl) as ep:
            assert (
                await ep.request(register("tls-dev"), ("127.0.0.1", server.tls_port))
            ).code == Code.CREATED
            assert server.transport_of("tls-dev") == "tls"
            assert value(await server.read("tls-dev", "/3/0/0", timeout=5)) == "Open Mobile Alliance"
        # Another device's certificate does not register as tls-dev (4.03, as over DTLS).
        other = tls_client_context(pki.issue("someone-else"))
        async with open_tcp_endpoint(None, handler=Device(), client_ssl=other) as ep:
            refused = await ep.request(register("tls-dev"), ("127.0.0.1", server.tls_port))
            assert refused.code == Code.FORBIDDEN


async def test_tls_binds_the_psk_identity_to_the_endpoint() -> None:
    key = bytes(range(16))
    async with Server(ServerConfig(port=0, tls_port=0)) as server:
        await server.security.put(SecurityInfo("psk-dev", psk_identity="psk-dev-id", psk_key=key))
        await server.security.put(SecurityInfo("other-dev", psk_identity="other-id", psk_key=bytes(16)))
        tls = engine_tls_client(DtlsClientConfig(psk=PskCredentials("psk-dev-id", key)))
        async with open_tcp_endpoint(None, handler=Device(), client_tls=tls) as ep:
            created = await ep.request(register("psk-dev"), ("127.0.0.1", server.tls_port))
            assert created.code == Code.CREATED
            assert server.transport_of("psk-dev") == "tls"
            assert value(await server.read("psk-dev", "/3/0/0", timeout=5)) == "Open Mobile Alliance"
        # The PSK of psk-dev does not register as another endpoint (4.03, as over DTLS).
        async with open_tcp_endpoint(None, handler=Device(), client_tls=tls) as ep:
            refused = await ep.request(register("other-dev"), ("127.0.0.1", server.tls_port))
            assert refused.code == Code.FORBIDDEN
        # A PSK the store does not hold: no handshake.
        stranger = engine_tls_client(DtlsClientConfig(psk=PskCredentials("stranger", key)))
        async with open_tcp_endpoint(None, handler=Device(), client_tls=stranger) as ep:
            with pytest.raises(ConnectionAborted, match="TLS handshake"):
                await ep.request(register("psk-dev"), ("127.0.0.1", server.tls_port))


def test_tls_port_takes_psk_clients_without_a_certificate() -> None:
    # The security store's PSKs serve over TLS through our engine (no certificate needed).
    assert ServerConfig(tls_port=0).certificate is None
    with pytest.raises(ConfigError, match="tls_port"):
        ServerConfig(tls_port=-1)
