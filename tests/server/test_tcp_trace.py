"""The message trace of a device on CoAP over TCP (RFC 8323): its connection's requests, answers
and notifications in both directions, summarized without type nor Message ID; nothing kept once
the trace is off."""

from __future__ import annotations

from tests.helpers.client import until
from tests.server.test_tcp import ObservedDevice, register, value

from lwm2m.coap.framing import encode_message
from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, Type
from lwm2m.codec.base import ContentFormat as CF
from lwm2m.server.config import ServerConfig
from lwm2m.server.role import Server
from lwm2m.server.trace import summarize_frame
from lwm2m.transport.tcp import open_tcp_endpoint


def test_a_frame_reads_as_a_summary_without_type_or_mid() -> None:
    message = Message.build(Type.CON, Code.GET, token=b"\x01\x02", uri_path=["3", "0", "9"], observe=0)
    got = summarize_frame(message, False, 5.0)
    assert got == {
        "at": 5.0,
        "direction": "out",
        "transport": "tcp",
        "size": len(encode_message(message)),
        "code": "GET",
        "token": "0102",
        "options": ["Observe: 0", "Uri-Path: 3", "Uri-Path: 0", "Uri-Path: 9"],
        "payloadSize": 0,
    }
    answer = summarize_frame(
        Message.build(Type.ACK, Code.CONTENT, content_format=CF.TEXT, payload=b"85"), True, 6
    )
    assert (answer["code"], answer["preview"], answer["direction"]) == ("2.05 Content", "85", "in")


async def test_the_trace_of_a_tcp_device_shows_its_connection() -> None:
    async with Server(ServerConfig(port=0, tcp_port=0)) as server:
        device = ObservedDevice()
        async with open_tcp_endpoint(None, handler=device) as ep:
            created = await ep.request(register("tcp-t"), ("127.0.0.1", server.tcp_port))
            server.trace.start("tcp-t", ttl=60)
            assert value(await server.read("tcp-t", "/3/0/0", timeout=5)) == "Open Mobile Alliance"
            observation = await server.observe("tcp-t", "/3/0/9", timeout=5)
            (relation,) = device.relations
            ep.notify(relation, Message.build(Type.CON, Code.CONTENT, content_format=CF.TEXT, payload=b"77"))
            assert value(await observation.next(5)) == 77
            update = Message.build(Type.CON, Code.POST, uri_path=list(created.location_path))
            assert (await ep.request(update, ("127.0.0.1", server.tcp_port))).code == Code.CHANGED
            await until(lambda: len(server.trace.entries("tcp-t")) == 7)
            entries = server.trace.entries("tcp-t")
            seen = [(e["direction"], e["code"], e["transport"]) for e in entries]
            assert seen == [
                ("out", "GET", "tcp"),
                ("in", "2.05 Content", "tcp"),
                ("out", "GET", "tcp"),  # the Observe
                ("in", "2.05 Content", "tcp"),
                ("in", "2.05 Content", "tcp"),  # the notification
                ("in", "POST", "tcp"),  # the Update
                ("out", "2.04 Changed", "tcp"),
            ]
            assert "Uri-Path: 0" in entries[0]["options"] and "mid" not in entries[0]
            assert entries[4]["preview"] == "77" and entries[4]["token"] == observation.token.hex()
            assert entries[1]["token"] == entries[0]["token"]
            server.trace.stop("tcp-t")
            await server.read("tcp-t", "/3/0/0", timeout=5)
            assert server.trace.entries("tcp-t") == []
