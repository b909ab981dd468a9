"""The RFC 8323 connection state machine, two of them wired back to back (no sockets)."""

from __future__ import annotations

import random

from lwm2m.coap.connection import (
    BlockBudget,
    ConnectionEnded,
    CsmReceived,
    PongReceived,
    TcpConfig,
    TcpConnection,
)
from lwm2m.coap.events import (
    CoapNotificationReceived,
    Event,
    ObservationCancelled,
    RequestFailed,
    RequestReceived,
    RequestTimedOut,
    ResponseReceived,
)
from lwm2m.coap.framing import FrameDecoder, SignalCode, SignalOption, encode_frame, encode_message, signal
from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, OptionNumber, Type
from lwm2m.coap.option import decode_uint, encode_uint


def pair(a: TcpConfig | None = None, b: TcpConfig | None = None) -> tuple[TcpConnection, TcpConnection]:
    client = TcpConnection(("server", 1), a or TcpConfig(), random.Random(1))
    server = TcpConnection(("client", 2), b or TcpConfig(), random.Random(2))
    pump(client, server)
    client.events.clear()
    server.events.clear()
    return client, server


def pump(x: TcpConnection, y: TcpConnection, now: float = 0.0) -> None:
    while True:
        dx, dy = x.data_to_send(), y.data_to_send()
        if not dx and not dy:
            return
        if dx:
            y.receive_data(dx, now)
        if dy:
            x.receive_data(dy, now)


def take(conn: TcpConnection, kind: type[Event]) -> list[Event]:
    found = [e for e in conn.events if type(e) is kind]
    conn.events[:] = [e for e in conn.events if type(e) is not kind]
    return found


def get(path: str, **kw: object) -> Message:
    return Message.build(Type.CON, Code.GET, uri_path=path, **kw)  # type: ignore[arg-type]


def test_both_sides_send_a_csm_first_and_learn_the_other() -> None:
    client = TcpConnection("s", TcpConfig(max_message_size=4096))
    server = TcpConnection("c", TcpConfig(max_message_size=2048, block_wise=False))
    first = client.data_to_send()
    assert first[1] == SignalCode.CSM
    server.receive_data(first, 0.0)
    client.receive_data(server.data_to_send(), 0.0)
    (seen,) = take(client, CsmReceived)
    assert seen == CsmReceived("s", 2048, False)
    (seen,) = take(server, CsmReceived)
    assert seen == CsmReceived("c", 4096, True)


def test_a_first_message_other_than_a_csm_aborts() -> None:
    server = TcpConnection("c", TcpConfig())
    server.data_to_send()
    server.receive_data(encode_message(get("/rd", token=b"t")), 0.0)
    assert server.closed is not None and "CSM" in server.closed
    out = FrameDecoder(4096).feed(server.data_to_send())
    assert out[-1].code == SignalCode.ABORT and b"CSM" in out[-1].payload
    assert any(type(e) is ConnectionEnded and e.aborted for e in server.events)


def test_no_csm_in_time_aborts() -> None:
    conn = TcpConnection("c", TcpConfig(csm_timeout=5.0), now=100.0)
    assert conn.get_timer() == 105.0
    conn.handle_timer(104.9)
    assert conn.closed is None
    conn.handle_timer(105.0)
    assert conn.closed is not None


def test_an_unknown_critical_csm_option_aborts_naming_it() -> None:
    conn = TcpConnection("c", TcpConfig())
    conn.data_to_send()
    conn.receive_data(encode_message(signal(SignalCode.CSM, ((9, b"\x01"),))), 0.0)
    abort = FrameDecoder(4096).feed(conn.data_to_send())[-1]
    assert abort.code == SignalCode.ABORT
    assert decode_uint(abort.option(SignalOption.BAD_CSM_OPTION) or b"") == 9


def test_a_message_over_our_max_message_size_aborts() -> None:
    client, server = pair(b=TcpConfig(max_message_size=512))
    server.receive_data(encode_frame(Code.POST, b"t", b"\xff" + b"x" * 600)[:5], 0.0)
    assert server.closed is not None and "Max-Message-Size" in server.closed
    client.receive_data(server.data_to_send(), 0.0)
    (ended,) = take(client, ConnectionEnded)
    assert ended.aborted and "Max-Message-Size" in ended.reason


def test_requests_are_matched_by_token() -> None:
    client, server = pair()
    t1 = client.request(get("/3/0/0"), 0.0)
    t2 = client.request(get("/3/0/1"), 0.0)
    pump(client, server)
    first, second = take(server, RequestReceived)
    # Answered out of order: the tokens match them (no Message IDs over TCP).
    server.respond(second, Message.build(Type.ACK, Code.CONTENT, payload=b"b"), 0.0)  # type: ignore[arg-type]
    server.respond(first, Message.build(Type.ACK, Code.CONTENT, payload=b"a"), 0.0)  # type: ignore[arg-type]
    pump(client, server)
    answers = {e.token: e.response.payload for e in take(client, ResponseReceived)}  # type: ignore[attr-defined]
    assert answers == {t1: b"a", t2: b"b"}
    assert client.get_timer() is None


def test_an_unanswered_request_times_out() -> None:
    client, _server = pair(a=TcpConfig(response_timeout=10.0))
    token = client.request(get("/x"), 5.0)
    assert client.get_timer() == 15.0
    client.handle_timer(15.0)
    (timed_out,) = take(client, RequestTimedOut)
    assert timed_out.token == token  # type: ignore[attr-defined]


def test_unknown_critical_request_option_gets_4_02() -> None:
    client, server = pair()
    client.request(get("/x").with_option(2049, b"1"), 0.0)
    pump(client, server)
    assert take(server, RequestReceived) == []
    (answer,) = take(client, ResponseReceived)
    assert answer.response.code == Code.BAD_OPTION  # type: ignore[attr-defined]


def test_ping_gets_pong() -> None:
    client, server = pair()
    token = client.ping(0.0)
    pump(client, server)
    assert take(client, PongReceived) == [PongReceived(("server", 1), token)]


def test_observe_notifications_are_all_fresh_and_a_4xx_ends_them() -> None:
    client, server = pair()
    token = client.request(get("/3/0/9", observe=0), 0.0)
    pump(client, server)
    (req,) = take(server, RequestReceived)
    assert req.is_observe_registration  # type: ignore[attr-defined]
    server.respond(req, Message.build(Type.ACK, Code.CONTENT, observe=0, payload=b"50"), 0.0)  # type: ignore[arg-type]
    pump(client, server)
    (first,) = take(client, ResponseReceived)
    assert first.response.payload == b"50"  # type: ignore[attr-defined]
    assert client.get_timer() is None  # an observation waits without a deadline
    for value in (b"49", b"48"):
        assert server.notify(req.relation, Message.build(Type.CON, Code.CONTENT, payload=value), 0.0)  # type: ignore[attr-defined]
    pump(client, server)
    notes = take(client, CoapNotificationReceived)
    assert [(n.token, n.response.payload, n.sequence) for n in notes] == [
        (token, b"49", 1),
        (token, b"48", 2),
    ]  # type: ignore[attr-defined]
    assert server.notify(req.relation, Message.build(Type.CON, Code.NOT_FOUND), 0.0)  # type: ignore[attr-defined]
    pump(client, server)
    (last,) = take(client, CoapNotificationReceived)
    assert last.final  # type: ignore[attr-defined]
    assert not server.notify(req.relation, Message.build(Type.CON, Code.CONTENT), 0.0)  # type: ignore[attr-defined]


def test_a_get_with_observe_1_ends_the_observation() -> None:
    client, server = pair()
    token = client.request(get("/1", observe=0), 0.0)
    pump(client, server)
    (req,) = take(server, RequestReceived)
    server.respond(req, Message.build(Type.ACK, Code.CONTENT, observe=0), 0.0)  # type: ignore[arg-type]
    pump(client, server)
    client.request(get("/1", observe=1, token=token), 0.0)
    pump(client, server)
    assert server.observations() == []


def test_block2_without_bert_when_the_peer_does_not_announce_it() -> None:
    client, server = pair(a=TcpConfig(max_message_size=1152, block_wise=False))
    body = bytes(range(256)) * 20  # 5120 bytes: over the client's 1152
    sent: list[bytes] = []
    client.request(get("/5/0/0"), 0.0)
    while True:
        data = client.data_to_send()
        if not data:
            break
        server.receive_data(data, 0.0)
        for req in take(server, RequestReceived):
            server.respond(req, Message.build(Type.ACK, Code.CONTENT, payload=body), 0.0)  # type: ignore[arg-type]
        out = server.data_to_send()
        sent += [out]
        client.receive_data(out, 0.0)
    assert all(len(s) <= 1152 for s in sent) and len(sent) == 5  # 1024-byte blocks
    (answer,) = take(client, ResponseReceived)
    assert answer.response.payload == body  # type: ignore[attr-defined]
    assert answer.response.option(OptionNumber.BLOCK2) is None  # type: ignore[attr-defined]


def test_bert_when_both_announce_block_wise_transfer() -> None:
    client, server = pair(a=TcpConfig(max_message_size=4096 + 128), b=TcpConfig())
    body = b"q" * 20000
    client.request(get("/5/0/0"), 0.0)
    frames: list[Message] = []
    decoder = FrameDecoder(1 << 20)
    while True:
        data = client.data_to_send()
        if not data:
            break
        server.receive_data(data, 0.0)
        for req in take(server, RequestReceived):
            server.respond(req, Message.build(Type.ACK, Code.CONTENT, payload=body), 0.0)  # type: ignore[arg-type]
        out = server.data_to_send()
        frames += decoder.feed(out)
        client.receive_data(out, 0.0)
    (answer,) = take(client, ResponseReceived)
    assert answer.response.payload == body  # type: ignore[attr-defined]
    # SZX 7 (RFC 8323 §6), 4 units of 1024 bytes per block: 5 messages for 20000 bytes.
    assert [decode_uint(f.option(OptionNumber.BLOCK2) or b"") & 7 for f in frames] == [7] * 5
    assert len(frames[0].payload) == 4096


def test_block1_both_ways() -> None:
    client, server = pair(b=TcpConfig(max_message_size=1152, block_wise=False))
    body = b"<" * 5000
    token = client.request(Message.build(Type.CON, Code.POST, uri_path="/rd", payload=body), 0.0)
    pump(client, server)
    (req,) = take(server, RequestReceived)
    assert req.message.payload == body  # type: ignore[attr-defined]
    assert req.message.option(OptionNumber.BLOCK1) is None  # type: ignore[attr-defined]
    server.respond(req, Message.build(Type.ACK, Code.CREATED), 0.0)  # type: ignore[arg-type]
    pump(client, server)
    (answer,) = take(client, ResponseReceived)
    assert answer.token == token and answer.response.code == Code.CREATED  # type: ignore[attr-defined]


def test_a_block1_body_over_the_limit_gets_4_13() -> None:
    client, server = pair(b=TcpConfig(max_message_size=1152, max_body_size=2000, block_wise=False))
    client.request(Message.build(Type.CON, Code.POST, uri_path="/rd", payload=b"x" * 5000), 0.0)
    pump(client, server)
    assert take(server, RequestReceived) == []
    (answer,) = take(client, ResponseReceived)
    assert answer.response.code == Code.REQUEST_ENTITY_TOO_LARGE  # type: ignore[attr-defined]


def test_release_and_a_lost_connection_fail_what_is_outstanding() -> None:
    client, server = pair()
    token = client.request(get("/x"), 0.0)
    obs = client.request(get("/y", observe=0), 0.0)
    pump(client, server)
    reqs = take(server, RequestReceived)
    server.respond(reqs[1], Message.build(Type.ACK, Code.CONTENT, observe=0), 0.0)  # type: ignore[arg-type]
    server.release(0.0)
    pump(client, server)
    failed = {e.token for e in take(client, RequestFailed)}  # type: ignore[attr-defined]
    assert failed == {token, obs}
    assert take(server, ObservationCancelled) == [ObservationCancelled(("client", 2), obs, "closed")]
    assert client.closed == "released by the peer"


def test_a_request_after_the_end_raises() -> None:
    client, _server = pair()
    client.connection_lost("closed by the peer", 0.0)
    try:
        client.request(get("/x"), 0.0)
    except ConnectionError as exc:
        assert "closed by the peer" in str(exc)
    else:
        raise AssertionError("no error")


def test_an_empty_message_is_ignored() -> None:
    _client, server = pair()
    server.receive_data(b"\x00\x00", 0.0)
    assert server.events == [] and server.closed is None


def _block1(token: bytes, num: int, more: bool, payload: bytes) -> Message:
    value = encode_uint((num << 4) | (8 if more else 0) | 6)  # 1024-byte blocks
    return Message.build(
        Type.CON,
        Code.PUT,
        token=token,
        uri_path="/5/0/0",
        options=[(OptionNumber.BLOCK1, value)],
        payload=payload,
    )


def test_one_budget_bounds_the_block_wise_bytes_of_all_connections() -> None:
    budget = BlockBudget(3500)
    config = TcpConfig(max_message_size=1152, block_wise=False)
    peers = [TcpConnection(("c", n), config, random.Random(n), budget=budget) for n in range(2)]
    for peer in peers:
        peer.receive_data(encode_message(signal(SignalCode.CSM)), 0.0)
        peer.data_to_send()
    # Three blocks of 1024 bytes fit in all; the second block of the second connection does not.
    for n in range(2):
        for peer in peers:
            peer.receive_data(encode_message(_block1(b"t", n, True, b"x" * 1024)), 0.0)
    answers = FrameDecoder(4096).feed(peers[1].data_to_send())
    assert [a.code for a in answers] == [Code.CONTINUE, Code.SERVICE_UNAVAILABLE]
    assert budget.used == 2048  # the refused transfer gave its first block back
    peers[0].receive_data(encode_message(_block1(b"t", 2, False, b"end")), 0.0)
    (request,) = take(peers[0], RequestReceived)
    assert request.message.payload == b"x" * 2048 + b"end"  # type: ignore[attr-defined]
    assert budget.used == 0  # the whole body is the application's now


def test_block_bodies_go_back_to_the_budget_on_expiry_and_at_the_end() -> None:
    budget = BlockBudget(1 << 20)
    server = TcpConnection(("client", 2), TcpConfig(block_lifetime=5.0), random.Random(2), budget=budget)
    server.receive_data(encode_message(signal(SignalCode.CSM, ((2, encode_uint(1152)),))), 0.0)
    server.data_to_send()
    server.receive_data(encode_message(_block1(b"a", 0, True, b"x" * 1024)), 0.0)
    server.receive_data(encode_message(get("/big", token=b"b")), 0.0)
    (req,) = take(server, RequestReceived)
    server.respond(req, Message.build(Type.ACK, Code.CONTENT, payload=b"y" * 5000), 0.0)  # type: ignore[arg-type]
    assert budget.used == 1024 + 5000  # a Block1 body joining, a Block2 body served
    server.handle_timer(5.0)
    assert budget.used == 0
    server.receive_data(encode_message(_block1(b"a", 0, True, b"x" * 1024)), 6.0)
    server.connection_lost("closed by the peer", 6.0)
    assert budget.used == 0


def test_a_body_to_serve_with_every_slot_joining_is_sent_without_being_held() -> None:
    server = TcpConnection(("client", 2), TcpConfig(max_block_bodies=1), random.Random(2))
    server.receive_data(encode_message(signal(SignalCode.CSM, ((2, encode_uint(1152)),))), 0.0)
    server.data_to_send()
    server.receive_data(encode_message(_block1(b"a", 0, True, b"x" * 1024)), 0.0)
    server.receive_data(encode_message(get("/big", token=b"b")), 0.0)
    (req,) = take(server, RequestReceived)
    server.respond(req, Message.build(Type.ACK, Code.CONTENT, payload=b"y" * 5000), 0.0)  # type: ignore[arg-type]
    first = FrameDecoder(4096).feed(server.data_to_send())[-1]
    assert first.code == Code.CONTENT and len(first.payload) == 1024


def test_an_observation_in_blocks_is_delivered_whole() -> None:
    # RFC 7959 §2.6: the registration's answer and each notification carry their first block;
    # the client fetches the rest and delivers them whole, as the observation's own.
    client, server = pair(a=TcpConfig(max_message_size=1152, block_wise=False))
    token = client.request(get("/3/0", observe=0), 0.0)
    for _ in range(6):
        pump(client, server)
        for req in take(server, RequestReceived):
            if req.is_observe_registration:  # type: ignore[attr-defined]
                relation = req.relation  # type: ignore[attr-defined]
                answer = Message.build(Type.ACK, Code.CONTENT, observe=0, payload=b"a" * 3000)
            else:
                answer = Message.build(Type.ACK, Code.CONTENT, payload=b"never asked")
            server.respond(req, answer, 0.0)  # type: ignore[arg-type]
    (first,) = take(client, ResponseReceived)
    assert first.token == token and first.response.payload == b"a" * 3000  # type: ignore[attr-defined]
    assert first.response.observe == 0 and first.response.option(OptionNumber.BLOCK2) is None  # type: ignore[attr-defined]
    assert server.notify(relation, Message.build(Type.CON, Code.CONTENT, payload=b"b" * 4000), 0.0)
    for _ in range(6):
        pump(client, server)
    (note,) = take(client, CoapNotificationReceived)
    assert (note.token, note.response.payload, note.sequence) == (token, b"b" * 4000, 1)  # type: ignore[attr-defined]
    assert client.get_timer() is None  # no fetch left outstanding
