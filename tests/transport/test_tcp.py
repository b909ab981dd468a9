"""CoAP over TCP and TLS on real loopback sockets: our endpoint as server and as client."""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

import pytest
from tests.helpers.pki import make_pki

from lwm2m.coap.connection import TcpConfig
from lwm2m.coap.events import RequestReceived
from lwm2m.coap.framing import FrameDecoder, SignalCode, encode_frame, encode_message, signal
from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, Type
from lwm2m.errors import ConfigError, ConnectionAborted
from lwm2m.transport.tcp import TcpLimits, open_tcp_endpoint, tls_client_context, tls_server_context

pytestmark = pytest.mark.both_loops  # uvloop's transports are not asyncio's classes


def get(path: str, **kw: Any) -> Message:
    return Message.build(Type.CON, Code.GET, uri_path=path, **kw)


def echo(event: RequestReceived) -> Message:
    return Message.build(Type.ACK, Code.CONTENT, payload=b"at " + event.message.uri_path_str.encode())


async def test_request_and_the_server_asks_back_over_the_clients_connection() -> None:
    asked: list[Any] = []

    def on_server(event: RequestReceived) -> Message:
        asked.append(event.addr)
        return Message.build(Type.ACK, Code.CREATED, payload=b"ok")

    async with (
        open_tcp_endpoint("127.0.0.1", 0, handler=on_server) as server,
        open_tcp_endpoint(None, handler=echo) as client,
    ):
        answer = await client.request(Message.build(Type.CON, Code.POST, uri_path="/rd"), server.addresses[0])
        assert answer.code == Code.CREATED and answer.payload == b"ok"
        # LwM2M's role reversal: the server reaches the client over the connection it opened.
        (device,) = asked
        assert server.connected(device)
        back = await server.request(get("/3/0/0"), device, timeout=5)
        assert back.payload == b"at /3/0/0"
        assert server.connections() == 1  # no second connection was opened


async def test_observe_over_the_devices_connection() -> None:
    relations: list[Any] = []

    def device(event: RequestReceived) -> Message:
        if event.is_observe_registration:
            relations.append(event.relation)
        return Message.build(Type.ACK, Code.CONTENT, observe=0, payload=b"0")

    def on_server(event: RequestReceived) -> Message:
        return Message.build(Type.ACK, Code.CREATED)

    async with (
        open_tcp_endpoint("127.0.0.1", 0, handler=on_server) as server,
        open_tcp_endpoint(None, handler=device) as client,
    ):
        await client.request(Message.build(Type.CON, Code.POST, uri_path="/rd"), server.addresses[0])
        (addr,) = list(server._links)
        obs = server.observe(get("/3/0/9"), addr)
        first = await obs.next(5)
        assert first.payload == b"0"
        for n in (1, 2):
            assert client.notify(relations[0], Message.build(Type.CON, Code.CONTENT, payload=str(n).encode()))
        assert (await obs.next(5)).payload == b"1"
        assert (await obs.next(5)).payload == b"2"
        client.close_connection(server.addresses[0])
        with pytest.raises(ConnectionAborted):
            await obs.next(5)


async def test_a_large_body_goes_block_wise() -> None:
    body = bytes(range(256)) * 300

    def big(event: RequestReceived) -> Message:
        return Message.build(Type.ACK, Code.CONTENT, payload=body)

    async with (
        open_tcp_endpoint("127.0.0.1", 0, handler=big) as server,
        open_tcp_endpoint(None, config=TcpConfig(max_message_size=1152, block_wise=False)) as client,
    ):
        answer = await client.request(get("/big"), server.addresses[0], timeout=5)
        assert answer.payload == body


async def _raw(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(encode_message(signal(SignalCode.CSM)))
    return reader, writer


async def _messages(reader: asyncio.StreamReader, until: int) -> list[Message]:
    decoder = FrameDecoder(1 << 16)
    got: list[Message] = []
    async with asyncio.timeout(5):
        while not any(m.code == until for m in got):
            data = await reader.read(4096)
            if not data:
                break
            got += decoder.feed(data)
    return got


async def test_an_oversized_sender_gets_abort_and_the_server_goes_on() -> None:
    async with open_tcp_endpoint(
        "127.0.0.1", 0, handler=echo, config=TcpConfig(max_message_size=1024)
    ) as server:
        reader, writer = await _raw(server.port)
        writer.write(encode_frame(Code.POST, b"", b"\xff" + b"x" * 5000)[:6])  # only the header
        got = await _messages(reader, SignalCode.ABORT)
        assert got[0].code == SignalCode.CSM
        assert got[-1].code == SignalCode.ABORT and b"Max-Message-Size" in got[-1].payload
        assert await reader.read() == b""  # and closed
        writer.close()
        async with open_tcp_endpoint(None) as client:
            assert (await client.request(get("/x"), server.addresses[0], timeout=5)).payload == b"at /x"


async def test_connections_beyond_the_limit_are_closed() -> None:
    async with open_tcp_endpoint("127.0.0.1", 0, handler=echo, limits=TcpLimits(max_connections=1)) as server:
        r1, w1 = await _raw(server.port)
        await _messages(r1, SignalCode.CSM)
        r2, w2 = await _raw(server.port)
        async with asyncio.timeout(5):
            assert await r2.read() == b""
        assert server.connections() == 1
        w1.close()
        w2.close()


async def test_an_idle_or_slow_connection_is_released() -> None:
    limits = TcpLimits(idle_timeout=0.3)
    async with open_tcp_endpoint("127.0.0.1", 0, handler=echo, limits=limits) as server:
        reader, writer = await _raw(server.port)
        # A slow sender: one message trickled in a byte every 50 ms (1.5 s in all) is released
        # once no whole message came for the idle timeout, not when the bytes stop.
        frame = encode_message(get("/" + "s" * 30, token=b"1"))

        async def trickle() -> None:
            for b in frame:
                writer.write(bytes([b]))
                await asyncio.sleep(0.05)

        task = asyncio.create_task(trickle())
        loop = asyncio.get_running_loop()
        start = loop.time()
        got: list[Message] = []
        decoder = FrameDecoder(4096)
        async with asyncio.timeout(5):
            while True:
                data = await reader.read(4096)
                if not data:
                    break
                got += decoder.feed(data)
        assert loop.time() - start < 1.0
        assert [m.code for m in got] == [SignalCode.CSM, SignalCode.RELEASE]
        task.cancel()
        writer.close()


async def test_tls_with_certificates_and_the_clients_identity() -> None:
    pki = make_pki()
    server_cred, client_cred = pki.issue("lwm2m-server"), pki.issue("sensor-7")
    seen: list[Any] = []

    async with open_tcp_endpoint(
        "127.0.0.1",
        0,
        handler=lambda e: seen.append(e.addr) or echo(e),
        server_ssl=tls_server_context(server_cred),
    ) as server:
        assert server.uri().startswith("coaps+tcp://127.0.0.1:")
        async with open_tcp_endpoint(None, client_ssl=tls_client_context(client_cred)) as client:
            answer = await client.request(get("/rd"), server.addresses[0], timeout=5)
            assert answer.payload == b"at /rd"
            identity = server.peer_identity(seen[0])
            assert identity is not None and (identity.kind, identity.name) == ("x509", "sensor-7")
        # A client whose certificate no trusted CA signed is refused in the handshake.
        stranger = make_pki("Other CA").issue("sensor-8")
        async with open_tcp_endpoint(None, client_ssl=tls_client_context(stranger, pki.ca_pem)) as client:
            with pytest.raises((ConnectionAborted, ConnectionError)):
                await client.request(get("/rd"), server.addresses[0], timeout=5)


def test_a_tls_server_without_trusted_cas_is_refused() -> None:
    cred = make_pki().issue("s")
    from dataclasses import replace

    with pytest.raises(ConfigError, match="trusted"):
        tls_server_context(replace(cred, trusted=b""))


async def test_nothing_listens_gives_a_clear_error() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    async with open_tcp_endpoint(None) as client:
        with pytest.raises(ConnectionAborted, match="cannot connect"):
            await client.request(get("/x"), ("127.0.0.1", port), timeout=5)


async def test_a_tls_handshake_that_never_comes_is_closed_and_counts_as_a_connection() -> None:
    pki = make_pki()
    limits = TcpLimits(max_connections=1, connect_timeout=0.3)
    context = tls_server_context(pki.issue("server"))
    async with open_tcp_endpoint("127.0.0.1", 0, handler=echo, limits=limits, server_ssl=context) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)  # no ClientHello
        second_reader, second_writer = await asyncio.open_connection("127.0.0.1", server.port)
        loop = asyncio.get_running_loop()
        start = loop.time()
        async with asyncio.timeout(5):
            assert await second_reader.read() == b""  # beyond max_connections: closed at once
            assert loop.time() - start < 0.25
            assert await reader.read() == b""  # then the silent one, after connect_timeout
        assert loop.time() - start >= 0.25
        writer.close()
        second_writer.close()


async def test_a_flood_of_bad_connections_is_a_bounded_number_of_log_lines(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="lwm2m.transport.tcp")
    async with open_tcp_endpoint("127.0.0.1", 0, handler=echo) as server:
        for _ in range(30):
            reader, writer = await _raw(server.port)
            writer.write(bytes([0x09, 0x01]))  # token length 9: not CoAP over TCP
            got = await _messages(reader, SignalCode.ABORT)
            assert got[-1].code == SignalCode.ABORT
            writer.close()
    ended = [r for r in caplog.records if "ended" in r.getMessage()]
    assert 1 <= len(ended) <= 20  # LogBudget's burst: the rest are counted, not written
