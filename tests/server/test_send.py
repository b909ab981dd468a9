"""Send (LwM2M-TS-Core 1.2 §6.4.6): timestamped values pushed to /dp land in history and events."""

from __future__ import annotations

from tests.helpers.server import next_event, register

from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, Type
from lwm2m.codec.base import ContentFormat as CF
from lwm2m.codec.formats import get_codec
from lwm2m.model.catalogue import load_catalogue
from lwm2m.model.path import ROOT, Path
from lwm2m.model.record import Record
from lwm2m.server.config import ServerConfig
from lwm2m.server.events import SendReceived
from lwm2m.server.role import Server
from lwm2m.transport.udp import open_udp_endpoint

P = Path.parse
MODELS = load_catalogue()
VALUES = [
    Record(P("/3303/0/5700"), 21.0, time=1_700_000_000),
    Record(P("/3303/0/5700"), 21.5, time=1_700_000_060),
    Record(P("/3/0/9"), 80, time=1_700_000_060),
]


def send(payload: bytes, fmt: int) -> Message:
    return Message.build(Type.CON, Code.POST, uri_path="/dp", content_format=fmt, payload=payload)


async def test_send_from_a_registered_client() -> None:
    async with Server(ServerConfig(port=0)) as server, open_udp_endpoint("127.0.0.1", 0) as client:
        events = server.events()
        peer = ("127.0.0.1", server.port)
        await client.request(register("sender"), peer)
        payload = get_codec(CF.SENML_CBOR).encode(VALUES, ROOT, MODELS)
        answer = await client.request(send(payload, CF.SENML_CBOR), peer)
        assert answer.code == Code.CHANGED
        event = await next_event(events, SendReceived)
        assert event.endpoint == "sender" and set(event.records) == set(VALUES)
        history = await server.history("sender", "/3303/0/5700")
        assert [(e.record.value, e.time) for e in history] == [(21.5, 1_700_000_060), (21.0, 1_700_000_000)]


async def test_send_refusals() -> None:
    async with Server(ServerConfig(port=0)) as server, open_udp_endpoint("127.0.0.1", 0) as client:
        peer = ("127.0.0.1", server.port)
        payload = get_codec(CF.SENML_JSON).encode(VALUES, ROOT, MODELS)
        assert (await client.request(send(payload, CF.SENML_JSON), peer)).code == Code.FORBIDDEN
        await client.request(register("sender-2"), peer)
        assert (await client.request(send(b"21.5", CF.TEXT), peer)).code == Code.UNSUPPORTED_CONTENT_FORMAT
        bad = await client.request(send(b"[{", CF.SENML_JSON), peer)
        assert bad.code == Code.BAD_REQUEST and b"cannot decode" in bad.payload
        assert (await client.request(send(payload, CF.SENML_JSON), peer)).code == Code.CHANGED


async def test_send_in_lwm2m_cbor_with_a_repeated_key_keeps_every_value() -> None:
    # A client's Send with the top-level key 3 twice, around 3303: four values, one tree.
    payload = bytes.fromhex(
        "bf03bf00bf0065616e6a61790d1a6b15b279ffff190ce7bf00bf191644fa41100000ffff03bf00bf07bf00197eebffffffff"
    )
    async with Server(ServerConfig(port=0)) as server, open_udp_endpoint("127.0.0.1", 0) as client:
        events = server.events()
        peer = ("127.0.0.1", server.port)
        await client.request(register("repeater"), peer)
        assert (await client.request(send(payload, CF.LWM2M_CBOR), peer)).code == Code.CHANGED
        event = await next_event(events, SendReceived)
        assert {str(r.path): r.value for r in event.records} == {
            "/3/0/0": "anjay",
            "/3/0/13": 1796584057,
            "/3303/0/5700": 9.0,
            "/3/0/7/0": 32491,
        }
        # The same path twice with different values cannot be read whole: 4.00 with the reason.
        conflict = bytes.fromhex("bf03a100a1006161" + "03a100a1006162" + "ff")  # /3/0/0 "a", then "b"
        bad = await client.request(send(conflict, CF.LWM2M_CBOR), peer)
        assert bad.code == Code.BAD_REQUEST
        assert b"/3/0/0 is given twice with different values" in bad.payload
