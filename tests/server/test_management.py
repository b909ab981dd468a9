"""DeviceManagement alone: requests built for the registration, sent through a fake channel
(no sockets), answers decoded; a sleeping queue-mode client is waited for."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, Type
from lwm2m.codec.base import ContentFormat as CF
from lwm2m.errors import QueueTimeout
from lwm2m.model.catalogue import load_catalogue
from lwm2m.model.path import Path
from lwm2m.model.record import Record
from lwm2m.protocol.management import ReadRequest
from lwm2m.protocol.registration import Registration
from lwm2m.server.events import ServerEvent
from lwm2m.server.management import DeviceManagement, rooted
from lwm2m.server.presence import Presence

MODELS = load_catalogue()


class Channel:
    """Answers each request with ``answer`` and keeps what was sent, and where."""

    def __init__(self, answer: Message) -> None:
        self.answer = answer
        self.sent: list[tuple[Message, Any, float | None]] = []

    async def request(self, message: Message, addr: Any, *, timeout: float | None = None) -> Message:
        self.sent.append((message, addr, timeout))
        return self.answer


def _registration(**fields: Any) -> Registration:
    return Registration(
        **{"endpoint": "dev-1", "registration_id": "r1", "address": ("10.0.0.1", 5683), **fields}
    )


def _management(
    registration: Registration,
    channel: Channel,
    *,
    peers: dict[str, Any] | None = None,
    timeout: float | None = 5.0,
    lookups: list[str] | None = None,
) -> tuple[DeviceManagement, Presence, list[ServerEvent]]:
    events: list[ServerEvent] = []
    presence = Presence(events.append, awake_time=60.0)
    registrations = {registration.endpoint: registration}

    async def lookup(endpoint: str) -> Registration:
        if lookups is not None:
            lookups.append(endpoint)
        return registrations[endpoint]

    management = DeviceManagement(
        lookup,
        models=MODELS,
        presence=presence,
        peers=peers if peers is not None else {},
        channel=lambda endpoint: channel,
        queue_timeout=timeout,
    )
    return management, presence, events


CONTENT = Message.build(Type.ACK, Code.CONTENT, content_format=CF.TEXT, payload=b"Acme")


async def test_read_asks_an_lwm2m_1_1_client_for_senml_cbor_and_decodes_the_answer() -> None:
    channel = Channel(CONTENT)
    management, _, _ = _management(_registration(lwm2m_version="1.1"), channel)
    response = await management.read("dev-1", "/3/0/0", timeout=3.0)
    assert response.code == Code.CONTENT and [r.value for r in response.records] == ["Acme"]
    ((message, addr, timeout),) = channel.sent
    assert message.code == Code.GET and message.uri_path == ("3", "0", "0")
    assert message.accept == CF.SENML_CBOR and addr == ("10.0.0.1", 5683) and timeout == 3.0


async def test_an_lwm2m_1_0_client_gets_no_accept_and_tlv_bodies() -> None:
    channel = Channel(Message.build(Type.ACK, Code.CHANGED))
    management, _, _ = _management(_registration(lwm2m_version="1.0"), channel)
    await management.read("dev-1", "/3/0/0")
    await management.write("dev-1", "/1/0", [Record(Path.parse("/1/0/1"), 300)])
    (read, _, _), (write, _, _) = channel.sent
    assert read.accept is None
    assert write.code == Code.PUT and write.content_format == CF.TLV


async def test_requests_go_to_the_address_of_the_last_update_under_the_root_path() -> None:
    channel = Channel(Message.build(Type.ACK, Code.CHANGED))
    peers = {"dev-1": ("10.0.0.9", 40000)}
    management, _, _ = _management(_registration(root_path="/lwm2m"), channel, peers=peers)
    await management.execute("dev-1", "/3/0/4")
    ((message, addr, _),) = channel.sent
    assert message.uri_path == ("lwm2m", "3", "0", "4") and message.code == Code.POST
    assert addr == ("10.0.0.9", 40000)


async def test_send_may_carry_a_token() -> None:
    channel = Channel(CONTENT)
    management, _, _ = _management(_registration(), channel)
    await management.send("dev-1", ReadRequest(Path.parse("/3/0/0"), CF.TEXT), token=b"\x07\x08")
    assert channel.sent[0][0].token == b"\x07\x08"


def test_rooted_leaves_a_plain_root_alone() -> None:
    message = ReadRequest(Path.parse("/3/0")).to_message()
    assert rooted(_registration(root_path="/"), message) is message


async def test_a_sleeping_queue_mode_client_is_waited_for() -> None:
    channel = Channel(CONTENT)
    management, presence, _ = _management(_registration(queue_mode=True), channel)
    read = asyncio.ensure_future(management.read("dev-1", "/3/0/0"))
    await asyncio.sleep(0)
    assert not read.done() and channel.sent == []
    presence.seen("dev-1")  # the client sent something: it is awake
    assert (await read).code == Code.CONTENT and len(channel.sent) == 1
    presence.close()


async def test_a_client_that_never_wakes_times_the_request_out() -> None:
    channel = Channel(CONTENT)
    management, _, _ = _management(_registration(queue_mode=True), channel, timeout=0.01)
    with pytest.raises(QueueTimeout):
        await management.read("dev-1", "/3/0/0")
    assert channel.sent == []


async def test_an_operation_looks_its_client_up_once_and_again_only_after_it_slept() -> None:
    lookups: list[str] = []
    channel = Channel(CONTENT)
    management, _, _ = _management(_registration(lwm2m_version="1.1"), channel, lookups=lookups)
    record = [Record(Path.parse("/1/0/1"), 300)]
    operations: list[tuple[Callable[[], Awaitable[object]], int]] = [
        (lambda: management.read("dev-1", "/3/0/0"), Code.CONTENT),
        (lambda: management.write("dev-1", "/1/0", record), Code.CHANGED),
        (lambda: management.create("dev-1", "/1", record), Code.CREATED),
        (lambda: management.read_composite("dev-1", ["/3/0/0"]), Code.BAD_REQUEST),
        (lambda: management.execute("dev-1", "/3/0/4"), Code.CHANGED),
    ]
    for operation, code in operations:
        channel.answer = CONTENT if code == Code.CONTENT else Message.build(Type.ACK, code)
        lookups.clear()
        await operation()
        assert lookups == ["dev-1"]  # a store read each: a shared store's is a round trip
    channel.answer = CONTENT
    sleeper, presence, _ = _management(_registration(queue_mode=True), channel, lookups=lookups)
    lookups.clear()
    read = asyncio.ensure_future(sleeper.read("dev-1", "/3/0/0"))
    await asyncio.sleep(0)
    presence.seen("dev-1")
    await read
    assert lookups == ["dev-1", "dev-1"]  # again once awake: it may have moved meanwhile
    presence.close()


async def test_an_operation_given_the_registration_does_not_look_it_up() -> None:
    lookups: list[str] = []
    registration = _registration(lwm2m_version="1.1")
    channel = Channel(CONTENT)
    management, _, _ = _management(registration, channel, lookups=lookups)
    await management.read("dev-1", "/3/0/0", known=registration)
    channel.answer = Message.build(Type.ACK, Code.CHANGED)
    await management.execute("dev-1", "/3/0/4", known=registration)
    channel.answer = Message.build(Type.ACK, Code.DELETED)
    await management.delete("dev-1", "/1/1", known=registration)
    assert lookups == [] and len(channel.sent) == 3
    with pytest.raises(ValueError, match="dev-2"):
        await management.read("dev-1", "/3/0/0", known=_registration(endpoint="dev-2"))
    assert len(channel.sent) == 3
