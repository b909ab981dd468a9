"""Our client against our server over real loopback sockets (IPv4 and IPv6)."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import pytest

from lwm2m.coap.endpoint import EndpointConfig
from lwm2m.coap.events import RequestReceived
from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, OptionNumber, Type
from lwm2m.errors import EndpointClosed, RequestTimeout
from lwm2m.transport.separate import SEPARATE_RESPONSE
from lwm2m.transport.udp import CoapUdpEndpoint, open_udp_endpoint

FAST = EndpointConfig(ack_timeout=0.05, ack_random_factor=1.0, max_retransmit=2, empty_ack_delay=0.05)


def get(path: str, **kw: Any) -> Message:
    return Message.build(Type.CON, Code.GET, uri_path=path, **kw)


def put(path: str, payload: bytes) -> Message:
    return Message.build(Type.CON, Code.PUT, uri_path=path, content_format=0, payload=payload)


async def serve(resources: Any, host: str | tuple[str, ...] = "127.0.0.1", **kw: Any) -> CoapUdpEndpoint:
    ep = await CoapUdpEndpoint.create(host, 0, handler=resources, **kw)
    resources.attach(ep)
    return ep


@pytest.mark.both_loops
async def test_get_and_put(resources: Any) -> None:
    async with await serve(resources) as server, open_udp_endpoint() as client:
        peer = server.addresses[0]
        response = await client.request(get("/small"), peer, timeout=5)
        assert response.code == Code.CONTENT and response.payload == b"hello"
        assert response.type == Type.ACK  # piggybacked
        assert (await client.request(get("/missing"), peer, timeout=5)).code == Code.NOT_FOUND
        assert (await client.request(put("/new", b"v1"), peer, timeout=5)).code == Code.CREATED
        assert (await client.request(put("/new", b"v2"), peer, timeout=5)).code == Code.CHANGED
        assert (await client.request(get("/new"), peer, timeout=5)).payload == b"v2"


@pytest.mark.both_loops
async def test_many_concurrent_requests(resources: Any) -> None:
    config = EndpointConfig(nstart=64)
    async with await serve(resources) as server, open_udp_endpoint(config=config) as client:
        peer = server.addresses[0]
        responses = await asyncio.gather(
            *(client.request(get("/small"), peer, timeout=10) for _ in range(500))
        )
        assert {r.payload for r in responses} == {b"hello"}
        assert len(resources.requests) == 500


async def test_block1_put_is_reassembled(resources: Any) -> None:
    body = bytes(range(256)) * 20  # 5 KiB: five 1 KiB blocks
    async with await serve(resources) as server, open_udp_endpoint() as client:
        response = await client.request(put("/upload", body), server.addresses[0], timeout=5)
        assert response.code == Code.CREATED
        assert resources.values["/upload"] == body
        assert len(resources.requests) == 1  # the handler saw one request, whole


async def test_block2_get_is_reassembled(resources: Any) -> None:
    async with await serve(resources) as server, open_udp_endpoint() as client:
        response = await client.request(get("/large"), server.addresses[0], timeout=5)
        assert response.code == Code.CONTENT
        assert response.payload == resources.values["/large"]


async def test_small_blocks_both_ways(resources: Any) -> None:
    small = EndpointConfig(block_szx=2)  # 64-byte blocks
    body = b"0123456789" * 50
    async with await serve(resources, config=small) as server, open_udp_endpoint(config=small) as client:
        peer = server.addresses[0]
        assert (await client.request(put("/body", body), peer, timeout=5)).code == Code.CREATED
        assert (await client.request(get("/body"), peer, timeout=5)).payload == body


@pytest.mark.both_loops
async def test_observe(resources: Any) -> None:
    async with await serve(resources) as server, open_udp_endpoint() as client:
        async with client.observe(get("/counter"), server.addresses[0]) as obs:
            first = await obs.next(timeout=5)
            assert first.payload == b"0" and first.observe is not None
            for i in range(1, 4):
                resources.set("/counter", b"%d" % i)
                note = await obs.next(timeout=5)
                assert note.payload == b"%d" % i
        # Cancelled: the next notification is rejected with RST and the relation ends.
        assert server.endpoint.observations()
        resources.set("/counter", b"9")
        for _ in range(100):
            await asyncio.sleep(0.01)
            if not server.endpoint.observations():
                break
        assert server.endpoint.observations() == []


async def test_observation_resumed_by_a_new_endpoint_on_the_same_port(resources: Any) -> None:
    async with await serve(resources) as server:
        async with open_udp_endpoint() as before:
            port = before.port
            obs = before.observe(get("/large"), server.addresses[0])
            await obs.next(timeout=5)
            token = obs.token
        # The observer is gone (as after kill -9); a new one on its port takes the token up.
        async with open_udp_endpoint("127.0.0.1", port) as after:
            resumed = after.resume_observation(server.addresses[0], token, get("/large", observe=0))
            resources.set("/large", b"y" * 2500)  # CON, Block2: acknowledged and fetched whole
            assert (await resumed.next(timeout=5)).payload == b"y" * 2500
            resources.set("/large", b"z")
            assert (await resumed.next(timeout=5)).payload == b"z"
            resumed.cancel()
            resources.set("/large", b"gone")
            for _ in range(100):
                await asyncio.sleep(0.01)
                if not server.endpoint.observations():
                    break
            assert server.endpoint.observations() == []


async def test_observe_of_a_large_resource_fetches_the_rest(resources: Any) -> None:
    async with (
        await serve(resources) as server,
        open_udp_endpoint() as client,
        client.observe(get("/large"), server.addresses[0]) as obs,
    ):
        assert (await obs.next(timeout=5)).payload == resources.values["/large"]
        resources.set("/large", b"x" * 2500)
        assert (await obs.next(timeout=5)).payload == b"x" * 2500


async def test_observe_declined_ends_the_iteration(resources: Any) -> None:
    def no_observe(event: RequestReceived) -> Message:
        return Message(Type.ACK, Code.CONTENT, payload=b"plain")

    async with open_udp_endpoint(handler=no_observe) as server, open_udp_endpoint() as client:
        obs = client.observe(get("/x"), server.addresses[0])
        got = [m.payload async for m in obs]
        assert got == [b"plain"]


class Sink:
    """Takes what a relation hands over, as ``CoapObservation.deliver_to`` does it."""

    def __init__(self) -> None:
        self.items: list[tuple[Message | BaseException | None, bool]] = []
        self.came = asyncio.Event()

    def deliver(self, item: Message | BaseException | None, last: bool) -> None:
        self.items.append((item, last))
        self.came.set()

    async def wait(self, count: int) -> None:
        while len(self.items) < count:
            self.came.clear()
            await asyncio.wait_for(self.came.wait(), 5)


async def test_a_relation_hands_its_notifications_to_a_sink_as_they_come(resources: Any) -> None:
    async with await serve(resources) as server, open_udp_endpoint() as client:
        obs = client.observe(get("/counter"), server.addresses[0])
        first = await obs.next(timeout=5)  # read as an iterator first
        assert first.payload == b"0"
        resources.set("/counter", b"1")
        while obs._extra is None or not obs._extra.items:  # came and not read: handed over first
            await asyncio.sleep(0.01)
        sink = Sink()
        obs.deliver_to(sink)
        assert [(m.payload, last) for m, last in sink.items] == [(b"1", False)]  # type: ignore[union-attr]
        resources.set("/counter", b"2")
        await sink.wait(2)
        assert [(m.payload, last) for m, last in sink.items] == [(b"1", False), (b"2", False)]  # type: ignore[union-attr]
        assert obs._extra is None  # what the reader that came first needed went with it
        obs.cancel()  # the sink's own doing: nothing handed over
        assert len(sink.items) == 2


async def test_a_relation_handing_over_to_a_sink_holds_nothing_for_a_reader(resources: Any) -> None:
    """A server's relations go straight to a sink: no queue, waiter or binding is made."""
    async with await serve(resources) as server, open_udp_endpoint() as client:
        obs = client.observe(get("/counter"), server.addresses[0])
        sink = Sink()
        obs.deliver_to(sink)
        await sink.wait(1)
        resources.set("/counter", b"1")
        await sink.wait(2)
        assert [m.payload for m, _ in sink.items] == [b"0", b"1"]  # type: ignore[union-attr]
        assert obs._extra is None and obs.oscore is None
        obs.cancel()


async def test_a_relation_that_ended_tells_its_sink_once(resources: Any) -> None:
    async with open_udp_endpoint() as server, open_udp_endpoint() as client:
        # Ended by an exception: handed over as the last item, once.
        obs = client.observe(get("/x"), server.addresses[0])
        sink = Sink()
        obs.deliver_to(sink)
        client._fail(obs.token, RequestTimeout("gone"), obs)
        ((err, last),) = sink.items
        assert isinstance(err, RequestTimeout) and last
        client._fail(obs.token, RequestTimeout("again"), obs)
        assert len(sink.items) == 1
        # Ended before the sink came, with nothing left to read: the sink hears of the end.
        ended = client.observe(get("/y"), server.addresses[0])
        ended._push(Message(Type.ACK, Code.NOT_FOUND), last=True)
        assert (await ended.next(timeout=1)).code == Code.NOT_FOUND
        late = Sink()
        ended.deliver_to(late)
        assert late.items == [(None, True)]
        # Ended with an item not read yet: that item comes as the last.
        queued = client.observe(get("/z"), server.addresses[0])
        queued._push(Message(Type.ACK, Code.CONTENT, payload=b"a"))
        queued._push(Message(Type.ACK, Code.CONTENT, payload=b"b"), last=True)
        last_sink = Sink()
        queued.deliver_to(last_sink)
        assert [(m.payload, last) for m, last in last_sink.items] == [(b"a", False), (b"b", True)]  # type: ignore[union-attr]


class SilentPeer:
    """A UDP socket that never answers; records when each datagram came."""

    def __init__(self, family: int = socket.AF_INET, host: str = "127.0.0.1") -> None:
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.sock.setblocking(False)
        self.arrivals: list[tuple[float, bytes]] = []
        asyncio.get_running_loop().add_reader(self.sock.fileno(), self._read)

    def _read(self) -> None:
        while True:
            try:
                data = self.sock.recv(2048)
            except BlockingIOError:
                return
            self.arrivals.append((time.monotonic(), data))

    @property
    def addr(self) -> tuple:
        return self.sock.getsockname()

    def close(self) -> None:
        asyncio.get_running_loop().remove_reader(self.sock.fileno())
        self.sock.close()


@pytest.mark.both_loops
async def test_retransmission_then_timeout() -> None:
    peer = SilentPeer()
    try:
        async with open_udp_endpoint(config=FAST) as client:
            start = time.monotonic()
            with pytest.raises(RequestTimeout):
                await client.request(get("/x"), peer.addr, timeout=10)
            # 1 + max_retransmit copies of the same message, at 0, 0.05, 0.15 s; the
            # endpoint gives up after another 0.2 s (RFC 7252 §4.2 back-off).
            assert len(peer.arrivals) == 3
            assert len({data for _, data in peer.arrivals}) == 1
            gaps = [b - a for (a, _), (b, _) in zip(peer.arrivals, peer.arrivals[1:], strict=False)]
            # Timers never fire early, so the doubling shows as lower bounds (a busy host adds delay).
            assert gaps[0] >= 0.045 and gaps[1] >= 0.095
            assert time.monotonic() - start >= 0.3
    finally:
        peer.close()


async def test_caller_timeout_stops_retransmission() -> None:
    peer = SilentPeer()
    try:
        config = EndpointConfig(ack_timeout=0.1, ack_random_factor=1.0, max_retransmit=4)
        async with open_udp_endpoint(config=config) as client:
            with pytest.raises(RequestTimeout):
                await client.request(get("/x"), peer.addr, timeout=0.15)
            sent = len(peer.arrivals)
            assert 1 <= sent <= 2  # the first copy, and the retransmission at 0.1 s unless the host lagged
            await asyncio.sleep(0.4)
            assert len(peer.arrivals) == sent
            assert client.endpoint.state_sizes()["requests"] == 0
    finally:
        peer.close()


async def test_lost_response_is_retransmitted_and_deduplicated(resources: Any) -> None:
    """A server whose first answer is dropped: the client's retransmission gets the cached reply."""
    async with await serve(resources) as server, open_udp_endpoint(config=FAST) as client:
        real_send_all = server._driver._send_all  # type: ignore[attr-defined]
        dropped: list[bytes] = []

        def lossy(datagrams: list[tuple[bytes, tuple]]) -> None:
            if not dropped:
                dropped.append(datagrams[0][0])
                datagrams = datagrams[1:]
            if datagrams:
                real_send_all(datagrams)

        server._driver._send_all = lossy  # type: ignore[attr-defined]
        response = await client.request(get("/small"), server.addresses[0], timeout=5)
        assert response.payload == b"hello"
        assert len(dropped) == 1
        assert len(resources.requests) == 1  # the duplicate never reached the handler


async def test_ipv6_loopback(resources: Any) -> None:
    async with await serve(resources, host="::1") as server, open_udp_endpoint("::1") as client:
        peer = server.addresses[0]
        assert len(peer) == 4 and peer[0] == "::1"
        assert (await client.request(get("/small"), ("::1", peer[1]), timeout=5)).payload == b"hello"
        async with client.observe(get("/counter"), ("::1", peer[1])) as obs:
            assert (await obs.next(timeout=5)).payload == b"0"
            resources.set("/counter", b"1")
            assert (await obs.next(timeout=5)).payload == b"1"


async def test_one_endpoint_on_ipv4_and_ipv6(resources: Any) -> None:
    async with (
        await serve(resources, host=("127.0.0.1", "::1")) as server,
        open_udp_endpoint(("127.0.0.1", "::1")) as client,
    ):
        port = server.port
        assert {a[1] for a in server.addresses} == {port}
        assert (await client.request(get("/small"), ("127.0.0.1", port), timeout=5)).payload == b"hello"
        assert (await client.request(get("/small"), ("::1", port), timeout=5)).payload == b"hello"
        assert (await client.request(get("/small"), ("localhost", port), timeout=5)).payload == b"hello"


@pytest.mark.both_loops
async def test_coroutine_handler_and_separate_response() -> None:
    async def slow(event: RequestReceived) -> Message:
        await asyncio.sleep(0.2 if event.message.uri_path == ("slow",) else 0)
        return Message(Type.ACK, Code.CONTENT, payload=b"/".join(p.encode() for p in event.message.uri_path))

    async with open_udp_endpoint(handler=slow, config=FAST) as server, open_udp_endpoint() as client:
        peer = server.addresses[0]
        fast = await client.request(get("/quick"), peer, timeout=5)
        assert fast.payload == b"quick" and fast.type == Type.ACK
        late = await client.request(get("/slow"), peer, timeout=5)
        # The empty ACK left after 50 ms; the answer came as a CON of its own (RFC 7252 §5.2.2).
        assert late.payload == b"slow" and late.type == Type.CON


async def test_an_observation_registered_under_separate_response_keeps_nothing_once_answered(
    resources: Any,
) -> None:
    """A server registers its observations under SEPARATE_RESPONSE: what it holds for the
    registration's empty ACK goes with the first answer, and the relation keeps no side object."""
    async with await serve(resources) as server, open_udp_endpoint() as client:
        context = SEPARATE_RESPONSE.set(lambda: None)
        try:
            obs = client.observe(get("/counter"), server.addresses[0])
        finally:
            SEPARATE_RESPONSE.reset(context)
        assert obs._extra is not None and obs._extra.held is not None  # held until answered
        first = await obs.next(timeout=5)  # as a server reads the first answer
        assert first.payload == b"0"
        sink = Sink()
        obs.deliver_to(sink)
        assert obs._extra is None and not client.endpoint._acks_wanted
        resources.set("/counter", b"1")
        await sink.wait(1)
        assert [m.payload for m, _ in sink.items] == [b"1"]  # type: ignore[union-attr]
        obs.cancel()


async def test_a_separate_response_awaited_past_the_callers_timeout() -> None:
    """Under SEPARATE_RESPONSE, the peer's empty ACK is heard and lifts the caller's timeout: the
    separate response is awaited within the endpoint's response_timeout (RFC 7252 §5.2.2)."""
    release = asyncio.Event()

    async def held(event: RequestReceived) -> Message:
        await release.wait()
        return Message(Type.ACK, Code.CONTENT, payload=b"at last")

    heard: list[str] = []
    async with (
        open_udp_endpoint(handler=held, config=FAST) as server,
        open_udp_endpoint(config=EndpointConfig(response_timeout=0.6)) as client,
    ):
        peer = server.addresses[0]
        context = SEPARATE_RESPONSE.set(lambda: heard.append("acknowledged"))
        try:
            task = asyncio.ensure_future(client.request(get("/held"), peer, timeout=0.2))
        finally:
            SEPARATE_RESPONSE.reset(context)
        await asyncio.sleep(0.35)  # past the caller's timeout, after the empty ACK
        assert heard == ["acknowledged"] and not task.done()
        release.set()
        answer = await asyncio.wait_for(task, 5)
        assert answer.payload == b"at last" and answer.type == Type.CON
        # Without it, the caller's timeout holds; a separate response that never comes fails
        # within response_timeout.
        release.clear()
        with pytest.raises(RequestTimeout):
            await client.request(get("/held"), peer, timeout=0.2)
        context = SEPARATE_RESPONSE.set(lambda: heard.append("again"))
        try:
            started = time.monotonic()
            with pytest.raises(RequestTimeout):
                await client.request(get("/held"), peer, timeout=0.2)
            assert time.monotonic() - started > 0.5
        finally:
            SEPARATE_RESPONSE.reset(context)
        assert heard == ["acknowledged", "again"]
        release.set()


async def test_an_observation_registered_under_separate_response() -> None:
    """The registration's empty ACK lifts the first answer's timeout as a request's does; one
    answered at once leaves nothing behind."""
    release = asyncio.Event()

    async def held(event: RequestReceived) -> Message:
        if event.message.uri_path == ("held",):
            await release.wait()
        return Message(Type.ACK, Code.CONTENT, payload=b"v", options=[(OptionNumber.OBSERVE, b"")])

    heard: list[bool] = []
    async with open_udp_endpoint(handler=held, config=FAST) as server, open_udp_endpoint() as client:
        peer = server.addresses[0]
        context = SEPARATE_RESPONSE.set(lambda: heard.append(True))
        try:
            quick = client.observe(get("/quick"), peer)
            late = client.observe(get("/held"), peer)
        finally:
            SEPARATE_RESPONSE.reset(context)
        assert (await quick.next(5)).payload == b"v"
        first = asyncio.ensure_future(late.next(0.2))
        await asyncio.sleep(0.4)  # past its timeout, after the empty ACK
        assert heard == [True] and not first.done()
        release.set()
        assert (await asyncio.wait_for(first, 5)).observe is not None
        assert client._acknowledged == {}
        quick.cancel()
        late.cancel()


async def test_handler_answering_later_through_respond() -> None:
    held: list[RequestReceived] = []

    async with open_udp_endpoint(handler=held.append) as server, open_udp_endpoint() as client:
        task = asyncio.create_task(client.request(get("/later"), server.addresses[0], timeout=5))
        while not held:
            await asyncio.sleep(0.005)
        server.respond(held[0], Message(Type.ACK, Code.CHANGED))
        assert (await task).code == Code.CHANGED


async def test_failing_handler_answers_500() -> None:
    def broken(event: RequestReceived) -> Message:
        raise RuntimeError("bug")

    async def broken_async(event: RequestReceived) -> Message:
        raise RuntimeError("bug")

    for handler in (broken, broken_async):
        async with open_udp_endpoint(handler=handler) as server, open_udp_endpoint() as client:
            response = await client.request(get("/x"), server.addresses[0], timeout=5)
            assert response.code == Code.INTERNAL_SERVER_ERROR


async def test_close_fails_what_is_pending() -> None:
    peer = SilentPeer()
    try:
        client = await CoapUdpEndpoint.create()
        task = asyncio.create_task(client.request(get("/x"), peer.addr))
        obs = client.observe(get("/y"), peer.addr)
        await asyncio.sleep(0.05)
        await client.close()
        with pytest.raises(EndpointClosed):
            await task
        with pytest.raises(EndpointClosed):
            await obs.next(timeout=1)
        with pytest.raises(EndpointClosed):
            await client.request(get("/x"), peer.addr)
        await client.close()  # twice is fine
    finally:
        peer.close()


async def test_plain_handler_path_makes_no_future_or_task(resources: Any) -> None:
    """The per-datagram server path of DESIGN.md: no coroutine, no future per request."""
    loop = asyncio.get_running_loop()
    counts = {"future": 0, "task": 0}
    real_future, real_task = loop.create_future, loop.create_task

    def counting_future() -> asyncio.Future[Any]:
        counts["future"] += 1
        return real_future()

    def counting_task(*args: Any, **kwargs: Any) -> asyncio.Task[Any]:
        counts["task"] += 1
        return real_task(*args, **kwargs)

    async with await serve(resources) as server:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
            raw.setblocking(False)
            loop.create_future = counting_future  # type: ignore[method-assign]
            loop.create_task = counting_task  # type: ignore[method-assign]
            try:
                for mid in range(200):
                    raw.sendto(get("/small", mid=mid, token=b"t").encode(), server.addresses[0])
                answers = sleeps = 0
                deadline = time.monotonic() + 5
                while answers < 200 and time.monotonic() < deadline:
                    sleeps += 1
                    await asyncio.sleep(0.005)
                    while True:
                        try:
                            raw.recv(2048)
                        except BlockingIOError:
                            break
                        answers += 1
            finally:
                del loop.create_future, loop.create_task  # type: ignore[misc]
    assert answers == 200
    assert len(resources.requests) == 200
    # Each asyncio.sleep above makes one future; the server made none.
    assert counts == {"future": sleeps, "task": 0}


async def test_unreachable_family_is_refused_at_once() -> None:
    async with open_udp_endpoint("127.0.0.1") as client:
        with pytest.raises(ValueError, match="no IPv6 socket"):
            await client.request(get("/x"), ("::1", 9), timeout=1)
        with pytest.raises(ValueError, match="no IPv6 socket"):
            client.observe(get("/x"), ("::1", 9))
