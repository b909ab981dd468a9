"""Endpoints that share one UDP socket, each at an IPv4 address of its own (lwm2m.transport.shared)."""

from __future__ import annotations

import asyncio
import socket

import pytest

from lwm2m.coap.events import RequestReceived
from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, Type
from lwm2m.transport.shared import SharedUdp
from lwm2m.transport.udp import CoapUdpEndpoint, open_udp_endpoint


def get(path: str) -> Message:
    return Message.build(Type.CON, Code.GET, uri_path=path)


def answering(name: bytes) -> object:
    def handler(event: RequestReceived) -> Message:
        return Message.build(Type.ACK, Code.CONTENT, content_format=0, payload=name)

    return handler


@pytest.mark.both_loops
async def test_each_endpoint_answers_at_its_own_address() -> None:
    shared = await SharedUdp.create("127.79.0.0/24")
    endpoints = [
        CoapUdpEndpoint.on_route(shared.route(), handler=answering(b"ep-%d" % i))  # type: ignore[arg-type]
        for i in range(3)
    ]
    try:
        addresses = [ep.addresses[0] for ep in endpoints]
        assert addresses == [(f"127.79.0.{i}", shared.port) for i in (1, 2, 3)]
        async with open_udp_endpoint() as peer:
            answers = await asyncio.gather(*(peer.request(get("/x"), a, timeout=5) for a in addresses * 2))
            # Every answer comes from the address asked, from the one endpoint there.
            assert [a.payload for a in answers] == [b"ep-0", b"ep-1", b"ep-2"] * 2
            # The endpoints' own requests leave from their addresses: the peer answers there.
            server = await CoapUdpEndpoint.create("127.0.0.1", 0, handler=answering(b"server"))  # type: ignore[arg-type]
            async with server:
                reply = await endpoints[1].request(get("/y"), server.addresses[0], timeout=5)
                assert reply.payload == b"server"
        assert len(shared) == 3
    finally:
        for ep in endpoints:
            await ep.close()
    assert len(shared) == 0
    shared.close()


async def test_a_datagram_to_an_address_no_endpoint_holds_is_dropped() -> None:
    shared = await SharedUdp.create("127.79.1.0/24")
    ep = CoapUdpEndpoint.on_route(shared.route(), handler=answering(b"here"))  # type: ignore[arg-type]
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(get("/x").encode(), ("127.79.1.200", shared.port))
            async with asyncio.timeout(3):
                while shared.dropped == 0:
                    await asyncio.sleep(0.01)
        async with open_udp_endpoint() as peer:
            assert (await peer.request(get("/x"), ep.addresses[0], timeout=5)).payload == b"here"
    finally:
        await ep.close()
        shared.close()


async def test_the_addresses_run_out_and_a_bad_network_is_named() -> None:
    shared = await SharedUdp.create("127.79.2.0/30")  # two host addresses
    try:
        assert [shared.route().address[0] for _ in range(2)] == ["127.79.2.1", "127.79.2.2"]
        with pytest.raises(OSError, match=r"no address of 127\.79\.2\.0/30 left"):
            shared.route()
    finally:
        shared.close()
    with pytest.raises(ValueError, match=r"network .10\.0\.0\.0/33."):
        await SharedUdp.create("10.0.0.0/33")


@pytest.mark.both_loops
async def test_an_endpoint_on_a_shared_socket_waits_on_the_heap_of_alarms() -> None:
    # Tens of thousands of simulated devices: a deadline each on one heap of the loop, not a
    # timer handle each (some 400 bytes with uvloop).
    from lwm2m.coap.config import EndpointConfig

    shared = await SharedUdp.create("127.79.3.0/24")
    config = EndpointConfig(exchange_lifetime=0.3, non_lifetime=0.3)
    ep = CoapUdpEndpoint.on_route(shared.route(), handler=answering(b"here"), config=config)  # type: ignore[arg-type]
    driver = ep._driver
    try:
        async with open_udp_endpoint() as peer:
            assert (await peer.request(get("/x"), ep.addresses[0], timeout=5)).payload == b"here"
        # The request is remembered for duplicates until its exchange lifetime is over.
        assert ep.endpoint.state_sizes()["dedup"] == 1
        assert driver._timer is None and driver._alarm != 0
        async with asyncio.timeout(5):
            while ep.endpoint.state_sizes()["dedup"]:
                await asyncio.sleep(0.05)
        assert driver._alarm == 0 and ep.endpoint.get_timer() is None
    finally:
        await ep.close()
        shared.close()
