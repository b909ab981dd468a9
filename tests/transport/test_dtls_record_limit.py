"""record_size_limit (RFC 8449) from the transport's settings to the wire: ``SessionLimits``
reaches the engine on both sides, and a CoAP server cuts its blocks (RFC 7959) to what one
record to the peer may carry, so that a client with a small limit reads a large resource over
real sockets without ever getting a larger record; GnuTLS as that client too."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from tests.helpers.dtls_peers import GNUTLS_PSK_CCM_8, process, program
from tests.helpers.pki import get, psk_client, psk_server

from lwm2m.coap.blockwise import BLOCK_MESSAGE_RESERVE, szx_within
from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, Type
from lwm2m.errors import RequestTimeout
from lwm2m.tls.record import APPLICATION_DATA, parse_datagram
from lwm2m.transport.dtls import SessionLimits, open_dtls_endpoint
from lwm2m.transport.dtls.engine_backend import EngineBackend

KEY = bytes(range(16))
CCM_8_OVERHEAD = 8 + 8  # explicit nonce and tag (RFC 6655 §3)
RESOURCE = bytes(i & 0xFF for i in range(3000))  # e.g. a firmware package URI list, or a large TLV


class Relay(asyncio.DatagramProtocol):
    """Forwards datagrams between one client and a server, keeping those towards the client."""

    def __init__(self, server: tuple[str, int]) -> None:
        self.server = server
        self.client: tuple[str, int] | None = None
        self.to_client: list[bytes] = []
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        if addr == self.server:
            self.to_client.append(data)
            if self.client is not None:
                self.transport.sendto(data, self.client)
        else:
            self.client = addr
            self.transport.sendto(data, self.server)


def test_the_limit_must_be_one_rfc_8449_allows() -> None:
    assert SessionLimits().record_size_limit is None  # the engine's default is sent
    assert SessionLimits(record_size_limit=64).record_size_limit == 64
    for bad in (63, 2**14 + 2):
        with pytest.raises(ValueError, match="record_size_limit"):
            SessionLimits(record_size_limit=bad)


def test_the_limit_reaches_the_engine_on_both_sides() -> None:
    limits = SessionLimits(record_size_limit=256)
    server = EngineBackend().server(psk_server({"dev": KEY}, limits))
    client = EngineBackend().client(psk_client("dev", KEY, limits=limits))
    assert server._config.record_size_limit == 256  # type: ignore[attr-defined]
    assert client._config.record_size_limit == 256  # type: ignore[attr-defined]
    default = EngineBackend().client(psk_client("dev", KEY))
    assert default._config.record_size_limit == 2**14 + 1  # type: ignore[attr-defined]


def test_the_block_size_follows_the_largest_message() -> None:
    assert szx_within(2**14, 6) == 6  # 1024-byte blocks where records are not limited
    assert szx_within(1024 + BLOCK_MESSAGE_RESERVE, 6) == 6
    assert szx_within(1024 + BLOCK_MESSAGE_RESERVE - 1, 6) == 5
    assert szx_within(255, 6) == 3  # 128-byte blocks in a 256-byte record
    assert szx_within(255, 2) == 2  # never above the endpoint's own
    assert szx_within(40, 6) == 0


@pytest.mark.parametrize("limit", [256, 512])
async def test_a_client_with_a_small_record_limit_gets_no_larger_record(limit: int) -> None:
    def handler(event: Any) -> Message:
        return Message.build(Type.ACK, Code.CONTENT, payload=RESOURCE)

    loop = asyncio.get_running_loop()
    client_config = psk_client("dev", KEY, limits=SessionLimits(record_size_limit=limit))
    async with open_dtls_endpoint(server=psk_server({"dev": KEY}), handler=handler) as server:
        relay = Relay(server.addresses[0][:2])
        transport, _ = await loop.create_datagram_endpoint(lambda: relay, local_addr=("127.0.0.1", 0))
        try:
            async with open_dtls_endpoint(client=client_config) as client:
                relay_addr = transport.get_extra_info("sockname")
                response = await client.request(get("/5/0/1"), relay_addr, timeout=10)
                assert response.payload == RESOURCE  # every block fetched and put together
                (info,) = server.sessions()
                assert server.dtls._sessions[info.addr].conn.max_application_data == limit  # no CID here
        finally:
            transport.close()
    plaintexts = [
        len(record.fragment) - CCM_8_OVERHEAD
        for datagram in relay.to_client
        for record in parse_datagram(datagram, 0)
        if record.content_type == APPLICATION_DATA
    ]
    # One record per block of the resource at least; none over the client's limit.
    assert len(plaintexts) >= len(RESOURCE) // limit
    assert max(plaintexts) <= limit


async def test_gnutls_cli_with_a_512_byte_limit_gets_a_first_block_that_fits() -> None:
    # A client we did not write: GnuTLS 3.7 sends record_size_limit 512 (it takes none lower)
    # and sends each line of its input as one record. The line is a CoAP GET ending in the
    # payload marker, so that the newline GnuTLS keeps is its payload (RFC 7252 §3).
    request = Message(Type.NON, Code.GET, 0x1234, b"\x01\x02", ((11, b"big"),)).encode() + b"\xff"
    assert b"\n" not in request
    got: list[Message] = []

    def handler(event: Any) -> Message:
        got.append(event.message)
        return Message.build(Type.NON, Code.CONTENT, payload=RESOURCE)

    loop = asyncio.get_running_loop()
    async with open_dtls_endpoint(server=psk_server({"Client_identity": KEY}), handler=handler) as server:
        relay = Relay(server.addresses[0][:2])
        transport, _ = await loop.create_datagram_endpoint(lambda: relay, local_addr=("127.0.0.1", 0))
        port = transport.get_extra_info("sockname")[1]
        argv = [program("gnutls-cli"), "--udp", "-p", str(port), "127.0.0.1", "--priority", GNUTLS_PSK_CCM_8]
        argv += ["--pskusername", "Client_identity", "--pskkey", KEY.hex(), "--recordsize", "512"]
        try:
            with process(argv) as cli:
                for _ in range(100):
                    if server.sessions():
                        break
                    await asyncio.sleep(0.05)
                (info,) = server.sessions()
                assert server.dtls._sessions[info.addr].conn.max_application_data == 512
                assert cli.stdin is not None
                cli.stdin.write(request + b"\n")
                cli.stdin.flush()
                for _ in range(100):
                    if got and any(_application(d) for d in relay.to_client):
                        break
                    await asyncio.sleep(0.05)
                await asyncio.sleep(0.1)
                assert got and got[0].uri_path == ("big",) and cli.poll() is None
        finally:
            transport.close()
    sizes = [size for datagram in relay.to_client for size in _application(datagram)]
    # The first block only (GnuTLS asks for no more): 256 bytes and the CoAP header and options
    # around it, in one record within GnuTLS's limit.
    assert sizes and max(sizes) <= 512
    assert max(sizes) > 256


def _application(datagram: bytes) -> list[int]:
    return [
        len(r.fragment) - CCM_8_OVERHEAD
        for r in parse_datagram(datagram, 0)
        if r.content_type == APPLICATION_DATA
    ]


async def test_a_message_too_large_for_the_peers_records_is_dropped_and_the_session_stays() -> None:
    """Options alone over a 64-byte record limit: no block size helps, so that response is
    dropped and counted (its request times out), and the session is not ended for it."""
    big = [True]

    def handler(event: Any) -> Message:
        location = ("x" * 30, "y" * 30) if big[0] else ()
        return Message.build(Type.ACK, Code.CONTENT, payload=b"22.5", location_path=location)

    client_config = psk_client("dev", KEY, limits=SessionLimits(record_size_limit=64))
    async with (
        open_dtls_endpoint(server=psk_server({"dev": KEY}), handler=handler) as server,
        open_dtls_endpoint(client=client_config) as client,
    ):
        address = server.addresses[0][:2]
        with pytest.raises(RequestTimeout, match="no response"):
            await client.request(get("/3303/0/5700"), address, timeout=1.5)
        assert server.dtls.counters["dropped_too_large"] >= 1
        big[0] = False
        response = await client.request(get("/3303/0/5700"), address, timeout=5)
        assert response.payload == b"22.5"
        # The server kept the session; the client, after its timeout, may resume it (abbreviated).
        counters = server.dtls.counters
        assert counters["errors"] == 0 and len(server.sessions()) == 1
        assert counters["handshakes_done"] - counters["handshakes_resumed"] == 1
