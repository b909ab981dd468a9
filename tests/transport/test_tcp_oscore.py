"""OSCORE (RFC 8613) on a CoAP over TCP endpoint (RFC 8323): a protected request is verified
before the handler sees it and answered protected; an unknown freshness is settled with Echo
(RFC 9175 §2.4); a request that does not verify is answered unprotected (§8.2) and fails on our
side; a context the layer lacks is looked up by its directory, then the request tried again."""

from __future__ import annotations

import asyncio

import pytest

from lwm2m.coap.events import RequestReceived
from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, Type
from lwm2m.coap.oscore import OscoreConfig, OscoreContext, OscoreLayer, OscoreRequestReceived
from lwm2m.coap.oscore.context import OscoreReplayWindow
from lwm2m.errors import OscoreRequestFailed
from lwm2m.transport.tcp import open_tcp_endpoint

pytestmark = pytest.mark.timeout(30)

DEVICE = OscoreConfig(b"0123456789abcdef", sender_id=b"\x01", recipient_id=b"\x02")


def get(path: str = "/3/0/0") -> Message:
    return Message.build(Type.CON, Code.GET, uri_path=path)


class Served:
    """A handler that records the requests it sees and answers each with 2.05 "lwm2m"."""

    def __init__(self) -> None:
        self.seen: list[RequestReceived] = []

    def __call__(self, event: RequestReceived) -> Message:
        self.seen.append(event)
        return Message(Type.ACK, Code.CONTENT, payload=b"lwm2m")


async def test_a_request_goes_protected_and_an_unknown_window_asks_for_echo_once() -> None:
    server_layer = OscoreLayer()
    # As after a restart: the replay window unknown, the first request is challenged (B.1.2).
    server_layer.add(OscoreContext(DEVICE.peer(), window=OscoreReplayWindow(initialized=False)))
    served = Served()
    async with open_tcp_endpoint(handler=served, oscore=server_layer) as server:
        client_layer = OscoreLayer()
        async with open_tcp_endpoint(None, oscore=client_layer) as client:
            addr = ("127.0.0.1", server.port)
            client_layer.add(OscoreContext(DEVICE), peer=addr)
            answer = await client.request(get(), addr, timeout=5)
            assert answer.code == Code.CONTENT and answer.payload == b"lwm2m"
            assert len(served.seen) == 1  # the challenged request never reached the handler
            seen = served.seen[0]
            assert isinstance(seen, OscoreRequestReceived) and seen.message.uri_path == ("3", "0", "0")
            again = await client.request(get("/1/0/1"), addr, timeout=5)
            assert again.payload == b"lwm2m" and len(served.seen) == 2
            assert not client_layer.pending


async def test_a_request_that_does_not_verify_fails_with_the_servers_reason() -> None:
    server_layer = OscoreLayer()
    server_layer.add(OscoreContext(DEVICE.peer()))
    served = Served()
    async with open_tcp_endpoint(handler=served, oscore=server_layer) as server:
        client_layer = OscoreLayer()
        async with open_tcp_endpoint(None, oscore=client_layer) as client:
            addr = ("127.0.0.1", server.port)
            wrong = OscoreConfig(b"not the secret", sender_id=b"\x01", recipient_id=b"\x02")
            client_layer.add(OscoreContext(wrong), peer=addr)
            with pytest.raises(OscoreRequestFailed, match=r"answered unprotected with 4\.00 Bad Request"):
                await client.request(get(), addr, timeout=5)
            assert served.seen == [] and not client_layer.pending


async def test_a_plain_request_is_served_plain_next_to_protected_ones() -> None:
    served = Served()
    async with (
        open_tcp_endpoint(handler=served, oscore=OscoreLayer()) as server,
        open_tcp_endpoint(None) as client,
    ):
        answer = await client.request(get(), ("127.0.0.1", server.port), timeout=5)
    assert answer.payload == b"lwm2m" and not isinstance(served.seen[0], OscoreRequestReceived)


class Directory:
    """Knows the device's context: adds it to the layer when asked, after a little while."""

    def __init__(self, layer: OscoreLayer) -> None:
        self.layer = layer
        self.asked: list[bytes] = []

    def lookup(self, kid: bytes, kid_context: bytes | None, now: float) -> asyncio.Future[None]:
        self.asked.append(kid)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def found() -> None:
            self.layer.add(OscoreContext(DEVICE.peer()))
            done.set_result(None)

        asyncio.get_running_loop().call_later(0.05, found)
        return done

    def verified(self, context: OscoreContext, now: float) -> None:
        pass


async def test_a_context_the_layer_lacks_is_looked_up_then_the_request_served() -> None:
    server_layer = OscoreLayer()
    directory = Directory(server_layer)
    server_layer.directory = directory
    served = Served()
    async with open_tcp_endpoint(handler=served, oscore=server_layer) as server:
        client_layer = OscoreLayer()
        async with open_tcp_endpoint(None, oscore=client_layer) as client:
            addr = ("127.0.0.1", server.port)
            client_layer.add(OscoreContext(DEVICE), peer=addr)
            answer = await client.request(get(), addr, timeout=5)
    assert answer.payload == b"lwm2m" and directory.asked == [b"\x01"]
    assert len(served.seen) == 1 and isinstance(served.seen[0], OscoreRequestReceived)
