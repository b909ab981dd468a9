"""CoAP over TCP and TLS (RFC 8323) against implementations we did not write: libcoap 4.3
(``coap-client-notls`` over ``coap+tcp://``, ``coap-client-openssl`` over ``coaps+tcp://`` with
certificates, ``coap-server-notls`` as a server for our client) and aiocoap 0.4.17's TCP
transports (``tcpclient`` against our server, ``tcpserver`` for our client).

coap-client exits 0 even when a request failed, so every test reads its output."""

from __future__ import annotations

import asyncio
import shutil
import socket
from pathlib import Path
from typing import Any

import pytest
from tests.helpers.certificates import CertificateAuthority, pem_files
from tests.helpers.libcoap import run_process

from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, Type
from lwm2m.server.config import ServerConfig
from lwm2m.server.role import Server
from lwm2m.storage.base import SecurityInfo
from lwm2m.transport.dtls import X509Credentials
from lwm2m.transport.tcp import open_tcp_endpoint


def binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (Debian's libcoap3-bin)")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


REGISTER = "rd?ep={ep}&lt=60&lwm2m=1.1&b=T"


async def test_libcoap_registers_over_tcp() -> None:
    client = binary("coap-client-notls")
    async with Server(ServerConfig(port=0, tcp_port=0)) as server:
        uri = f"coap+tcp://127.0.0.1:{server.tcp_port}/" + REGISTER.format(ep="libcoap-tcp")
        result = await run_process(client, "-m", "post", "-t", "40", "-e", "</3/0>,</1/0>", "-v", "6", uri)
        assert "2.01" in result.stdout + result.stderr, result
        registration = await server.registration("libcoap-tcp")
        assert registration.binding == "T" and server.transport_of("libcoap-tcp") == "tcp"
        # A GET of /rd: refused with 4.05 and its diagnostic, over the same framing.
        result = await run_process(client, "-v", "6", f"coap+tcp://127.0.0.1:{server.tcp_port}/rd")
        assert "4.05 Register uses POST" in result.stderr, result


async def test_libcoap_openssl_registers_over_tls_with_a_certificate(tmp_path: Path) -> None:
    client = binary("coap-client-openssl")
    ca = CertificateAuthority("tcp test CA")
    server_cert, sensor = ca.issue("127.0.0.1", usage="server"), ca.issue("sensor-tls", usage="client")
    files = pem_files(tmp_path, ca, server_cert, sensor)
    credentials = X509Credentials(
        server_cert.cert_pem(), server_cert.key_pem(), Path(files["ca"]).read_bytes()
    )
    async with Server(ServerConfig(port=0, tls_port=0, certificate=credentials)) as server:
        await server.security.put(SecurityInfo("sensor-tls", x509=True))
        uri = f"coaps+tcp://127.0.0.1:{server.tls_port}/" + REGISTER.format(ep="sensor-tls")
        argv = ["-c", files["client"], "-j", files["client_key"], "-C", files["ca"], "-R", files["ca"]]
        result = await run_process(client, "-m", "post", "-t", "40", "-e", "</3/0>", *argv, "-v", "6", uri)
        assert "2.01" in result.stdout + result.stderr, result
        assert server.transport_of("sensor-tls") == "tls"
        # The certificate names sensor-tls: registering as another endpoint is refused (4.03).
        other = f"coaps+tcp://127.0.0.1:{server.tls_port}/" + REGISTER.format(ep="someone")
        await server.security.put(SecurityInfo("someone", x509=True))
        result = await run_process(client, "-m", "post", "-t", "40", "-e", "</3/0>", *argv, "-v", "6", other)
        assert "4.03" in result.stdout + result.stderr, result


async def test_libcoap_openssl_registers_over_tls_with_a_psk() -> None:
    client = binary("coap-client-openssl")
    async with Server(ServerConfig(port=0, tls_port=0)) as server:
        await server.security.put(
            SecurityInfo("sensor-psk", psk_identity="sensor-psk-id", psk_key=b"secretPSK")
        )
        uri = f"coaps+tcp://127.0.0.1:{server.tls_port}/" + REGISTER.format(ep="sensor-psk")
        argv = ["-u", "sensor-psk-id", "-k", "secretPSK", "-v", "6"]
        result = await run_process(client, "-m", "post", "-t", "40", "-e", "</3/0>", *argv, uri)
        assert "2.01" in result.stdout + result.stderr, result
        assert server.transport_of("sensor-psk") == "tls"
        # The PSK names sensor-psk: registering as another endpoint is refused (4.03).
        await server.security.put(SecurityInfo("someone", psk_identity="someone-id", psk_key=b"other"))
        other = f"coaps+tcp://127.0.0.1:{server.tls_port}/" + REGISTER.format(ep="someone")
        result = await run_process(client, "-m", "post", "-t", "40", "-e", "</3/0>", *argv, other)
        assert "4.03" in result.stdout + result.stderr, result


async def test_our_client_endpoint_against_libcoap_server() -> None:
    server_bin = binary("coap-server-notls")
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        server_bin,
        "-A",
        "127.0.0.1",
        "-p",
        str(port),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        async with open_tcp_endpoint(None) as ep:
            answer = None
            for _ in range(50):  # until it listens
                try:
                    answer = await ep.request(
                        Message.build(Type.CON, Code.GET, uri_path="/"), ("127.0.0.1", port), timeout=5
                    )
                    break
                except ConnectionError:
                    await asyncio.sleep(0.1)
            assert answer is not None and answer.code == Code.CONTENT
            assert b"libcoap" in answer.payload
            # Its /example_data takes a PUT and gives it back (a round trip both ways).
            put = Message.build(
                Type.CON, Code.PUT, uri_path="/example_data", content_format=0, payload=b"over tcp"
            )
            assert (await ep.request(put, ("127.0.0.1", port), timeout=5)).code in (
                Code.CHANGED,
                Code.CREATED,
            )
            back = await ep.request(
                Message.build(Type.CON, Code.GET, uri_path="/example_data"), ("127.0.0.1", port), timeout=5
            )
            assert back.payload == b"over tcp"
    finally:
        proc.terminate()
        await proc.wait()


async def test_aiocoap_tcp_client_registers_and_is_read_over_its_connection() -> None:
    aiocoap = pytest.importorskip("aiocoap")
    resource = pytest.importorskip("aiocoap.resource")

    class Firmware(resource.Resource):  # type: ignore[misc]
        async def render_get(self, request: Any) -> Any:
            return aiocoap.Message(code=aiocoap.CONTENT, payload=b"aiocoap over tcp", content_format=0)

    site = resource.Site()
    site.add_resource(["3", "0", "0"], Firmware())
    async with Server(ServerConfig(port=0, tcp_port=0)) as server:
        context = await aiocoap.Context.create_server_context(
            site, bind=("127.0.0.1", 0), transports=["tcpclient"]
        )
        try:
            request = aiocoap.Message(
                code=aiocoap.POST,
                uri=f"coap+tcp://127.0.0.1:{server.tcp_port}/" + REGISTER.format(ep="aiocoap-tcp"),
                payload=b"</3/0>",
                content_format=40,
            )
            response = await asyncio.wait_for(context.request(request).response, 10)
            assert response.code == aiocoap.CREATED
            # The server reaches it over the connection it opened (LwM2M's role reversal).
            read = await server.read("aiocoap-tcp", "/3/0/0", format="text", timeout=5)
            assert read.code == Code.CONTENT and read.records[0].value == "aiocoap over tcp"
        finally:
            await context.shutdown()


async def test_our_client_against_aiocoap_tcp_server() -> None:
    aiocoap = pytest.importorskip("aiocoap")
    resource = pytest.importorskip("aiocoap.resource")
    body = bytes(range(256)) * 40  # 10 KiB: block-wise or BERT, as the two sides agree

    class Big(resource.Resource):  # type: ignore[misc]
        async def render_get(self, request: Any) -> Any:
            return aiocoap.Message(code=aiocoap.CONTENT, payload=body)

        async def render_post(self, request: Any) -> Any:
            return aiocoap.Message(code=aiocoap.CHANGED, payload=request.payload[::-1])

    site = resource.Site()
    site.add_resource(["big"], Big())
    port = free_port()
    context = await aiocoap.Context.create_server_context(
        site, bind=("127.0.0.1", port), transports=["tcpserver"]
    )
    try:
        async with open_tcp_endpoint(None) as ep:
            got = await ep.request(
                Message.build(Type.CON, Code.GET, uri_path="/big"), ("127.0.0.1", port), timeout=10
            )
            assert got.payload == body
            post = Message.build(Type.CON, Code.POST, uri_path="/big", payload=b"abc")
            assert (await ep.request(post, ("127.0.0.1", port), timeout=10)).payload == b"cba"
    finally:
        await context.shutdown()
