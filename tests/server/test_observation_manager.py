"""ObservationManager alone: observations started, indexed, resumed, ended with their
registration and followed to a new address, over fake observe relations (no sockets)."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest

from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, Type
from lwm2m.codec.base import ContentFormat as CF
from lwm2m.errors import ConnectionAborted, RequestTimeout
from lwm2m.model.catalogue import load_catalogue
from lwm2m.model.path import Path
from lwm2m.protocol.management import ObserveRequest, ReadCompositeRequest, Response
from lwm2m.protocol.registration import Registration
from lwm2m.server import observation as observation_module
from lwm2m.server.events import NotificationReceived, ObservationEnded, ServerEvent
from lwm2m.server.management import DeviceManagement
from lwm2m.server.observation import BACKLOG, ObservationManager, ServerObservation, stored_request
from lwm2m.server.presence import Presence
from lwm2m.storage.base import Observation
from lwm2m.storage.memory import MemoryStore
from lwm2m.transport.udp import RelationSink

MODELS = load_catalogue()
ADDR = ("10.0.0.1", 5683)


def _value(value: bytes, observe: int | None) -> Message:
    return Message.build(Type.ACK, Code.CONTENT, content_format=CF.TEXT, observe=observe, payload=value)


class Feed:
    """What the test feeds a relation: queued for ``next()`` until a sink takes them as they come."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Message | None] = asyncio.Queue()
        self.sink: RelationSink | None = None

    def put_nowait(self, item: Message | BaseException | None, last: bool = False) -> None:
        if self.sink is None:
            assert not isinstance(item, BaseException)
            self.queue.put_nowait(item)
        else:
            self.sink.deliver(item, last or item is None or isinstance(item, BaseException))

    async def get(self) -> Message | None:
        return await self.queue.get()


class Relation:
    """An observe relation fed by the test."""

    def __init__(self, token: bytes) -> None:
        self.token = token
        self.items = Feed()
        self.cancelled = False
        self.oscore = None  # not made over OSCORE (CoapObservation.oscore)

    async def next(self, timeout: float | None = None) -> Message:
        item = await self.items.get()
        assert item is not None
        return item

    def __aiter__(self) -> Relation:
        return self

    async def __anext__(self) -> Message:
        item = await self.items.get()
        if item is None:
            raise StopAsyncIteration
        return item

    def deliver_to(self, sink: RelationSink) -> None:
        self.items.sink = sink
        while not self.items.queue.empty():
            self.items.put_nowait(self.items.queue.get_nowait())

    def cancel(self, near: Any = None) -> None:
        self.cancelled = True
        self.near = near
        if self.items.sink is None:
            self.items.put_nowait(None)  # (a sink is not told: it cancelled)


class Socket:
    """The relations side of a socket, and the requests side for an active cancel."""

    def __init__(self) -> None:
        self.relations: list[tuple[Message, Any, Relation]] = []
        self.moved: list[tuple[bytes, Any, Any]] = []
        self.requests: list[Message] = []
        self.first: Message = _value(b"20", 0)

    def observe(self, message: Message, addr: Any) -> Relation:
        relation = Relation(bytes([len(self.relations) + 1]))
        relation.items.put_nowait(self.first)
        self.relations.append((message, addr, relation))
        return relation

    def resume_observation(self, addr: Any, token: bytes, request: Message | None = None) -> Relation:
        relation = Relation(token)
        assert request is not None
        self.relations.append((request, addr, relation))
        return relation

    def move_observation(self, token: bytes, addr: Any, new_addr: Any) -> bool:
        self.moved.append((token, addr, new_addr))
        return True

    async def request(self, message: Message, addr: Any, *, timeout: float | None = None) -> Message:
        self.requests.append(message)
        return _value(b"20", None)


class Parts:
    def __init__(self, registration: Registration, name: Any = None) -> None:
        self.registration = registration
        self.store = MemoryStore.create()
        self.socket = Socket()
        self.events: list[ServerEvent] = []
        self.presence = Presence(self.events.append)

        async def lookup(endpoint: str) -> Registration:
            return self.registration

        self.management = DeviceManagement(
            lookup,
            models=MODELS,
            presence=self.presence,
            peers={},
            channel=lambda endpoint: self.socket,
            queue_timeout=None,
        )
        self.manager = ObservationManager(
            self.management,
            models=MODELS,
            observations=self.store.observations,
            history=self.store.history,
            emit=self.events.append,
            relations=lambda endpoint: self.socket,  # type: ignore[arg-type,return-value]
            peers={},
            name=name,
        )


def _registration(registration_id: str = "r1") -> Registration:
    return Registration(endpoint="dev-1", registration_id=registration_id, address=ADDR, lwm2m_version="1.1")


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_an_observation_is_stored_indexed_and_its_notifications_kept() -> None:
    parts = Parts(_registration())
    started = await parts.manager.start("dev-1", ObserveRequest(Path.parse("/3303/0/5700"), CF.TEXT), 1.0)
    assert isinstance(started, ServerObservation) and started.response is not None
    assert parts.manager.running() == [started] and parts.manager.of("dev-1") == [started]
    stored = await parts.store.observations.all()
    assert [o.token for o in stored] == [started.token] and stored[0].registration_id == "r1"
    (_, _, relation) = parts.socket.relations[0]
    relation.items.put_nowait(_value(b"21.5", 1))
    notification = await started.next(1.0)
    assert [r.value for r in notification.records] == [21.5]
    assert [e.record.value for e in await parts.store.history.query("dev-1")] == [21.5]
    assert any(isinstance(e, NotificationReceived) for e in parts.events)
    await parts.manager.close()


async def test_an_answer_without_observe_starts_nothing() -> None:
    parts = Parts(_registration())
    parts.socket.first = _value(b"20", None)
    refused = await parts.manager.start("dev-1", ObserveRequest(Path.parse("/3303/0/5700"), CF.TEXT), 1.0)
    assert isinstance(refused, Response) and refused.code == Code.CONTENT
    assert parts.manager.running() == [] and await parts.store.observations.all() == []
    assert parts.socket.relations[0][2].cancelled


async def test_a_new_registration_ends_the_observations_of_the_old_one() -> None:
    parts = Parts(_registration())
    started = await parts.manager.start("dev-1", ObserveRequest(Path.parse("/3/0/9"), CF.TEXT), 1.0)
    assert isinstance(started, ServerObservation)
    parts.manager.end_registration(_registration("another"), "not this one")
    await _settle()
    assert parts.manager.running() == [started]
    parts.manager.end_registration(_registration("r1"), "registered again")
    await _settle()
    assert parts.manager.running() == [] and parts.manager._by_endpoint == {}
    (ended,) = [e for e in parts.events if isinstance(e, ObservationEnded)]
    assert ended.reason == "registered again"


async def test_a_client_that_moved_is_followed() -> None:
    parts = Parts(_registration())
    started = await parts.manager.start("dev-1", ObserveRequest(Path.parse("/3/0/9"), CF.TEXT), 1.0)
    assert isinstance(started, ServerObservation)
    parts.manager.follow("dev-1", ("10.0.0.7", 6000))
    assert parts.socket.moved == [(started.token, ADDR, ("10.0.0.7", 6000))]
    assert started.address == ("10.0.0.7", 6000)
    parts.manager.follow("dev-1", ("10.0.0.7", 6000))  # already there: nothing to move
    assert len(parts.socket.moved) == 1
    await parts.manager.close()


async def test_stored_observations_are_resumed_and_orphans_dropped() -> None:
    parts = Parts(_registration())
    paths = (Path.parse("/3/0/9"), Path.parse("/3303/0/5700"))
    await parts.store.observations.add(
        Observation(b"\x0a", "dev-1", "r1", paths, composite=True, content_format=112)
    )
    await parts.store.observations.add(Observation(b"\x0b", "gone", "r9", (Path.parse("/3/0/9"),)))
    asked: list[str] = []

    async def registration_of(endpoint: str) -> Registration | None:
        asked.append(endpoint)
        return {"dev-1": parts.registration}.get(endpoint)

    await parts.manager.resume(registration_of)
    assert sorted(asked) == ["dev-1", "gone"]  # the endpoints with stored observations, once each
    (resumed,) = parts.manager.running()
    assert resumed.token == b"\x0a" and resumed.response is None
    assert isinstance(resumed.request, ReadCompositeRequest) and resumed.request.paths == paths
    assert [o.token for o in await parts.store.observations.all()] == [b"\x0a"]
    await parts.manager.close()
    assert [o.token for o in await parts.store.observations.all()] == [b"\x0a"]  # kept for a restart


async def test_a_resume_reads_a_registration_once_for_the_records_of_one_endpoint_in_a_row() -> None:
    # Not once per endpoint for the whole resume: a million registrations kept until its end
    # would hold gigabytes.
    parts = Parts(_registration())
    path = (Path.parse("/3/0/9"),)
    for token, endpoint in ((b"\x01", "dev-1"), (b"\x02", "dev-1"), (b"\x03", "dev-2"), (b"\x04", "dev-1")):
        await parts.store.observations.add(Observation(token, endpoint, "r1", path))
    asked: list[str] = []

    async def registration_of(endpoint: str) -> Registration | None:
        asked.append(endpoint)
        return parts.registration if endpoint == "dev-1" else None

    await parts.manager.resume(registration_of)
    assert asked == ["dev-1", "dev-2", "dev-1"]
    assert sorted(o.token for o in parts.manager.running()) == [b"\x01", b"\x02", b"\x04"]
    await parts.manager.close()


async def _resuming(parts: Parts, count: int, monkeypatch: pytest.MonkeyPatch) -> asyncio.Task[None]:
    """``count`` stored observations of dev-1, a resume of them under way that takes up one
    record per turn of the loop; returned after its first turn."""
    monkeypatch.setattr(observation_module, "RESUME_SLICE", 1)
    path = (Path.parse("/3/0/9"),)
    for n in range(count):
        await parts.store.observations.add(Observation(bytes([n + 1]), "dev-1", "r1", path))

    async def registration_of(endpoint: str) -> Registration | None:
        return parts.registration

    task = asyncio.create_task(parts.manager.resume(registration_of))
    await asyncio.sleep(0)
    assert parts.manager.resuming and 0 < len(parts.manager.running()) < count
    return task


async def test_a_resume_lets_other_work_in_and_leaves_what_a_client_took_up_meanwhile(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A notification of an observation the resume has not reached yet: the server takes its
    # client's observations up at once (resume_endpoint); the resume then leaves them.
    parts = Parts(_registration())
    task = await _resuming(parts, 5, monkeypatch)
    await parts.manager.resume_endpoint(parts.registration, ("10.0.0.7", 6000))
    assert len(parts.manager.running()) == 5 and parts.manager.resuming
    await task
    assert not parts.manager.resuming
    assert sorted(o.token for o in parts.manager.running()) == [bytes([n + 1]) for n in range(5)]
    assert len(parts.socket.relations) == 5  # none taken up twice
    assert {o.address for o in parts.manager.running()} == {("10.0.0.7", 6000)}
    await parts.manager.close()


async def test_a_registration_that_ends_during_a_resume_takes_its_records_read_before(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The client registered again (or left) while the resume ran: the observations it held are
    # gone with the old registration (LwM2M-TS-Core 1.2 §6.4), whatever the records read before say.
    parts = Parts(_registration())
    task = await _resuming(parts, 4, monkeypatch)
    parts.manager.end_registration(_registration("r1"), "registered again")
    await task
    await _settle()
    assert parts.manager.running() == []
    assert len(parts.socket.relations) == 1  # the first turn's, ended
    await parts.manager.close()


async def test_a_record_holds_the_servers_own_copy_of_the_clients_name() -> None:
    # A registration read back from a file store, and a stored observation, carry copies of
    # the name: the records keep the one the server holds (Registrar.name), not one more each.
    held = "dev-1"
    copies = ["".join(["dev", "-1"]) for _ in range(3)]
    assert all(c == held and c is not held for c in copies)
    parts = Parts(dataclasses.replace(_registration(), endpoint=copies[0]), name=lambda ep: held)
    started = await parts.manager.start(copies[1], ObserveRequest(Path.parse("/3/0/9"), CF.TEXT), 1.0)
    assert isinstance(started, ServerObservation) and started.record.endpoint is held
    await parts.store.observations.add(Observation(b"\x0a", copies[2], "r1", (Path.parse("/3/0/13"),)))

    async def registration_of(endpoint: str) -> Registration | None:
        return parts.registration

    await parts.manager.resume(registration_of)
    (resumed,) = [o for o in parts.manager.running() if o.token == b"\x0a"]
    assert resumed.record.endpoint is held and resumed.endpoint is held
    await parts.manager.close()


async def test_an_observation_taken_up_keeps_no_notification_until_it_is_read() -> None:
    # Its reader went with the process that made it: a million taken up after a restart, each
    # keeping 256 unread notifications nobody reads, would grow without end.
    parts = Parts(_registration())
    await parts.store.observations.add(Observation(b"\x0a", "dev-1", "r1", (Path.parse("/3303/0/5700"),)))

    async def registration_of(endpoint: str) -> Registration | None:
        return parts.registration

    await parts.manager.resume(registration_of)
    (observation,) = parts.manager.running()
    (_, _, relation) = parts.socket.relations[0]
    for value in (b"21.0", b"21.5"):
        relation.items.put_nowait(_value(value, 1))
    assert observation.notifications == 2
    assert [e.record.value for e in await parts.store.history.query("dev-1")] == [21.5, 21.0]
    reading = asyncio.ensure_future(observation.next(1.0))
    await _settle()
    assert not reading.done()  # none of those came before the reader
    relation.items.put_nowait(_value(b"22.0", 2))
    assert [r.value for r in (await reading).records] == [22.0]
    await parts.manager.close()


async def test_observations_taken_up_with_equal_requests_share_their_paths() -> None:
    # Each record read back from a store holds paths of its own (~200 bytes): those taken up
    # hold the paths of the first equal request instead, as observations made here do.
    parts = Parts(_registration())
    for token in (b"\x0a", b"\x0b"):
        record = Observation(token, "dev-1", "r1", (Path.parse("/3303/0/5700"),), content_format=0)
        await parts.store.observations.add(Observation.from_dict(record.to_dict()))

    async def registration_of(endpoint: str) -> Registration | None:
        return parts.registration

    await parts.manager.resume(registration_of)
    first, second = parts.manager.running()
    assert first.record.paths is second.record.paths and first.record.paths == (Path.parse("/3303/0/5700"),)
    await parts.manager.close()


async def test_an_active_cancel_sends_observe_1_with_the_token() -> None:
    parts = Parts(_registration())
    started = await parts.manager.start("dev-1", ObserveRequest(Path.parse("/3/0/9"), CF.TEXT), 1.0)
    assert isinstance(started, ServerObservation)
    await _settle()  # the observation is delivering
    await started.cancel(active=True)
    (cancel,) = parts.socket.requests
    assert cancel.observe == 1 and cancel.token == started.token
    await _settle()
    assert parts.manager.running() == [] and await parts.store.observations.all() == []


async def test_a_cancel_before_the_first_notification_ends_it_all_the_same() -> None:
    # Cancelled at once, before any notification: the stored record goes, ObservationEnded comes.
    parts = Parts(_registration())
    started = await parts.manager.start("dev-1", ObserveRequest(Path.parse("/3/0/9"), CF.TEXT), 1.0)
    assert isinstance(started, ServerObservation)
    assert [o.token for o in await parts.store.observations.all()] == [started.token]
    await started.cancel()
    assert await parts.store.observations.all() == []
    (ended,) = [e for e in parts.events if isinstance(e, ObservationEnded)]
    assert ended.token == started.token and ended.reason == "cancelled"
    assert [r async for r in started] == []  # iteration ends


def test_stored_request_keeps_the_format() -> None:
    single = stored_request(Observation(b"\x01", "dev-1", "r1", (Path.parse("/3/0/9"),), content_format=0))
    assert isinstance(single, ObserveRequest) and single.format == CF.TEXT
    unknown = stored_request(
        Observation(b"\x01", "dev-1", "r1", (Path.parse("/3/0/9"),), content_format=9999)
    )
    assert isinstance(unknown, ObserveRequest) and unknown.format is None


async def _observed(parts: Parts, path: str = "/3303/0/5700") -> tuple[ServerObservation, Relation]:
    started = await parts.manager.start("dev-1", ObserveRequest(Path.parse(path), CF.TEXT), 1.0)
    assert isinstance(started, ServerObservation)
    return started, parts.socket.relations[-1][2]


async def _ended(parts: Parts, observation: ServerObservation) -> str:
    """The reason the observation ended with, once its end is done (record and index gone)."""
    await _settle()
    (ended,) = [e for e in parts.events if isinstance(e, ObservationEnded)]
    assert ended.token == observation.token
    assert await parts.store.observations.all() == [] and parts.manager.running() == []
    assert parts.manager._by_endpoint == {}
    return ended.reason


async def test_idle_observations_have_no_task_and_no_queue() -> None:
    parts = Parts(_registration())
    tasks = len(asyncio.all_tasks())
    started = [(await _observed(parts))[0] for _ in range(20)]
    await _settle()
    assert len(asyncio.all_tasks()) == tasks  # the notifications come to them, no task waits
    for observation in started:
        assert observation._unread is None  # nothing kept for a reader: no queue either
        assert observation._ending is None  # nor the state of an end, until one comes
        assert not hasattr(observation, "__dict__")
    assert len(parts.manager._shapes) == 1  # one request and decoder for them all
    assert all(o.request is started[0].request and o._decode is started[0]._decode for o in started)
    assert len({id(m) for m, _, _ in parts.socket.relations}) == 1  # one message, sent with a token each
    assert len(parts.manager.of("dev-1")) == 20
    await parts.manager.close()


async def test_observations_are_indexed_once_by_endpoint_then_token() -> None:
    parts = Parts(_registration())
    first, _ = await _observed(parts)
    second, _ = await _observed(parts, "/3/0/9")
    assert parts.manager.runs("dev-1", first.token) and parts.manager.runs("dev-1", second.token)
    assert not parts.manager.runs("dev-2", first.token) and not parts.manager.runs("dev-1", b"other")
    assert parts.manager.running() == [first, second] == parts.manager.of("dev-1")
    assert set(vars(parts.manager)) & {"_running", "_by_token"} == set()  # no second index
    await first.cancel()
    assert not parts.manager.runs("dev-1", first.token) and parts.manager.running() == [second]
    await second.cancel()
    assert not parts.manager.runs("dev-1", second.token) and parts.manager._by_endpoint == {}


async def test_an_observation_shares_its_endpoint_name_and_keeps_a_2_05_as_its_payload() -> None:
    parts = Parts(_registration())
    asked = "".join(["dev", "-1"])  # equal to the registration's name, another string
    assert asked is not parts.registration.endpoint
    started = await parts.manager.start(asked, ObserveRequest(Path.parse("/3303/0/5700"), CF.TEXT), 1.0)
    assert isinstance(started, ServerObservation)
    assert started.record.endpoint is parts.registration.endpoint  # one string per client
    assert started.address is parts.registration.address  # canonical already: not copied
    assert started.request is started._decode.request  # one slot for both
    assert started._first == b"20"  # no tuple kept beside it: its code and format are known
    first = started.response
    assert first is not None and first.code == Code.CONTENT and first.content_format == CF.TEXT
    assert [r.value for r in first.records] == [20]
    parts.socket.first = Message.build(Type.ACK, Code.VALID, content_format=CF.TEXT, observe=0, payload=b"30")
    other = await parts.manager.start("dev-1", ObserveRequest(Path.parse("/3303/0/5701"), CF.TEXT), 1.0)
    assert isinstance(other, ServerObservation)
    assert other._first == (int(Code.VALID), int(CF.TEXT), b"30")  # another code: kept with it
    valid = other.response
    assert valid is not None and valid.code == Code.VALID and [r.value for r in valid.records] == ["30"]
    await parts.manager.close()


@pytest.mark.parametrize(
    ("item", "reason"),
    [
        (Message.build(Type.CON, Code.NOT_FOUND), "error 4.04"),
        (_value(b"warm", 3), "undecodable notification: cannot decode the answer (0): "),
        (RequestTimeout("no response from 10.0.0.1:5683"), "no response from 10.0.0.1:5683"),
        (ConnectionAborted("the peer closed it"), "the peer closed it"),  # not over TCP: the end
        (None, "ended by the client"),
    ],
)
async def test_what_ends_an_observation(item: Message | BaseException | None, reason: str) -> None:
    parts = Parts(_registration())
    observation, relation = await _observed(parts)
    relation.items.put_nowait(_value(b"21.5", 2))
    relation.items.put_nowait(item, last=not isinstance(item, Message) or item.code != Code.CONTENT)
    relation.items.put_nowait(_value(b"22.5", 4))  # after the end: not taken
    assert (await _ended(parts, observation)).startswith(reason)
    assert [[r.value for r in n.records] async for n in observation] == [[21.5]]
    assert observation.notifications == (1 if not isinstance(item, Message) else 2)
    assert [e.record.value for e in await parts.store.history.query("dev-1")] == [21.5]
    assert relation.cancelled  # an undecodable one too: its next notification gets RST


async def test_a_last_notification_is_taken_then_the_observation_ends() -> None:
    parts = Parts(_registration())
    observation, relation = await _observed(parts)
    relation.items.put_nowait(_value(b"21.5", None), last=True)
    assert await _ended(parts, observation) == "ended by the client"
    assert [[r.value for r in n.records] async for n in observation] == [[21.5]]


async def test_a_reader_that_comes_late_gets_the_newest_notifications() -> None:
    parts = Parts(_registration())
    observation, relation = await _observed(parts)
    for i in range(BACKLOG + 10):
        relation.items.put_nowait(_value(b"%d" % i, i + 2))
    assert [e.reason for e in parts.events if isinstance(e, ObservationEnded)] == []
    assert len(observation._unread or ()) == BACKLOG  # bounded before any reader came
    first = await observation.next(1.0)  # the oldest kept
    assert [r.value for r in first.records] == [10.0]
    waiting = asyncio.ensure_future(observation.next(1.0))
    for _ in range(BACKLOG - 1):
        await observation.next(1.0)
    await _settle()
    assert not waiting.done()
    relation.items.put_nowait(_value(b"99", 999))  # to the waiting reader, decoded once
    assert [r.value for r in (await waiting).records] == [99.0]
    await observation.cancel()
    assert await _ended(parts, observation) == "cancelled"
    with pytest.raises(StopAsyncIteration):
        await observation.__anext__()


async def test_the_end_reasons_of_the_server() -> None:
    parts = Parts(_registration())
    ended, _ = await _observed(parts)
    ended.end("de-registered")
    ended.end("registration expired")  # a second end changes nothing... but the reason
    await ended.cancel()  # once ended, a cancel only waits for the end
    assert await _ended(parts, ended) == "registration expired"
    closed, relation = await _observed(parts)
    await closed.close()
    assert relation.cancelled
    assert [e.reason for e in parts.events if isinstance(e, ObservationEnded)][-1] == "server stopped"
    assert [o.token for o in await parts.store.observations.all()] == [closed.token]  # kept


async def test_a_dormant_observation_goes_on_over_its_client_s_next_connection() -> None:
    parts = Parts(dataclasses.replace(_registration(), transport="tcp"))
    await parts.store.observations.add(Observation(b"\x0c", "dev-1", "r1", (Path.parse("/3303/0/5700"),)))

    async def registration_of(endpoint: str) -> Registration | None:
        return parts.registration

    await parts.manager.resume(registration_of)
    (observation,) = parts.manager.running()
    assert observation.dormant  # its connection is gone: no relation until the client is back
    reading = asyncio.ensure_future(observation.next(1.0))  # (taken up: it keeps none unread)
    await _settle()
    first = Relation(b"\x0c")
    assert observation.rebind(first, ("10.0.0.9", 7000)) and not observation.dormant
    assert not observation.rebind(Relation(b"\x0c"), ("10.0.0.9", 7001))  # not dormant: refused
    assert observation.address == ("10.0.0.9", 7000)
    first.items.put_nowait(_value(b"21.5", 1))
    first.items.put_nowait(ConnectionAborted("the connection closed"))
    assert observation.dormant and parts.manager.running() == [observation]
    first.items.put_nowait(_value(b"0", 9))  # an old relation's: not taken
    second = Relation(b"\x0c")
    second.items.put_nowait(_value(b"23.5", 2))  # the answer to the Observe sent again
    assert observation.rebind(second, ("10.0.0.9", 7002))
    got = [await reading, await observation.next(1.0)]
    assert [[r.value for r in response.records] for response in got] == [[21.5], [23.5]]
    assert observation.notifications == 2
    observation.end("registered again")
    assert await _ended(parts, observation) == "registered again"
    assert second.cancelled


async def test_a_cancel_cancelled_while_it_waits_leaves_the_end_going_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    parts = Parts(_registration())
    observation, _ = await _observed(parts)
    release = asyncio.Event()
    remove = parts.store.observations.remove

    async def slow(token: bytes) -> Observation | None:
        await release.wait()
        return await remove(token)

    monkeypatch.setattr(parts.store.observations, "remove", slow)
    cancelling = asyncio.ensure_future(observation.cancel())
    await _settle()
    cancelling.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelling
    release.set()
    await observation.cancel()  # waits for the end, which went on
    assert await _ended(parts, observation) == "cancelled"


async def test_a_failure_taking_a_notification_ends_the_observation_not_the_reader(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    parts = Parts(_registration())
    observation, relation = await _observed(parts)

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("history gone")

    monkeypatch.setattr(parts.store.history, "add", broken)
    relation.items.put_nowait(_value(b"21.5", 2))  # handed over by the socket's reader: no raise
    assert await _ended(parts, observation) == "history gone"
    assert "notification of dev-1 not taken" in caplog.text
