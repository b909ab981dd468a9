"""RFC 7959 block-wise transfers between two in-memory endpoints, both directions."""

from __future__ import annotations

from typing import Any

from lwm2m.coap.endpoint import EndpointConfig
from lwm2m.coap.events import RequestFailed, RequestReceived, ResponseReceived
from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, OptionNumber, Type
from lwm2m.coap.option import BlockOption

C, S = ("10.0.0.1", 5683), ("10.0.0.2", 5683)
BODY = bytes(range(256)) * 10 + b"tail"  # 2564 bytes: three 1 KiB blocks


def serve_one(net: Any, response: Message) -> RequestReceived:
    """Deliver, answer the one request the server got with ``response``, deliver again."""
    net.deliver()
    evs = net.events(net.s)
    assert len(evs) == 1, evs
    net.s.respond(evs[0], response, net.now)
    net.deliver()
    return evs[0]


def only_response(net: Any) -> ResponseReceived:
    (ev,) = net.events(net.c)
    assert isinstance(ev, ResponseReceived), ev
    return ev


def raw_request(net: Any, msg: Message) -> Message:
    net.s.receive_datagram(msg.encode(), C, net.now)
    ((data, _),) = net.s.datagrams_to_send(net.now)
    return Message.decode(data)


# --- Block2: large responses ---------------------------------------------------------------------


def test_block2_response_is_fetched_and_delivered_whole(net: Any) -> None:
    token = net.c.request(Message.build(Type.CON, Code.GET, uri_path="/5/0/0"), S, 0.0)
    serve_one(net, Message.build(Type.ACK, Code.CONTENT, content_format=42, payload=BODY))
    resp = only_response(net)
    assert resp.token == token and resp.response.payload == BODY
    assert resp.response.content_format == 42
    assert not resp.response.has_option(OptionNumber.BLOCK2)
    answers = net.sent_by(S)
    assert [m.block2 for m in answers] == [
        BlockOption(0, True, 6),
        BlockOption(1, True, 6),
        BlockOption(2, False, 6),
    ]
    assert answers[0].size2 == len(BODY)
    assert all(m.content_format == 42 for m in answers)
    follow_ups = net.sent_by(C)[1:]
    assert [m.block2 for m in follow_ups] == [BlockOption(1, False, 6), BlockOption(2, False, 6)]
    assert all(m.uri_path == ("5", "0", "0") and m.token == token for m in follow_ups)
    assert net.events(net.s) == []  # later blocks come from the kept representation


def test_block2_early_negotiation_by_the_client(net: Any) -> None:
    req = Message.build(Type.CON, Code.GET, uri_path="/x", block2=BlockOption(0, False, 2))
    net.c.request(req, S, 0.0)
    serve_one(net, Message.build(Type.ACK, Code.CONTENT, payload=bytes(200)))
    assert only_response(net).response.payload == bytes(200)
    assert [m.block2.szx for m in net.sent_by(S)] == [2, 2, 2, 2]  # type: ignore[union-attr]


def test_block2_server_prefers_smaller_blocks(make_net: Any) -> None:
    net = make_net(server=EndpointConfig(block_szx=4))
    net.c.request(Message.build(Type.CON, Code.GET, uri_path="/x"), S, 0.0)
    serve_one(net, Message.build(Type.ACK, Code.CONTENT, payload=BODY))
    assert only_response(net).response.payload == BODY
    assert len(net.sent_by(S)) == 11  # 2564 bytes in 256-byte blocks
    assert {m.block2.szx for m in net.sent_by(S)} == {4}  # type: ignore[union-attr]


def test_block2_later_block_at_a_larger_size_is_converted(make_net: Any) -> None:
    net = make_net(server=EndpointConfig(block_szx=4))
    net.c.request(Message.build(Type.CON, Code.GET, uri_path="/x"), S, 0.0)
    net.deliver()
    (ev,) = net.events(net.s)
    net.drop = lambda sender, msg: True
    net.s.respond(ev, Message.build(Type.ACK, Code.CONTENT, payload=BODY), 0.0)
    net.deliver()
    # Block 1 of 1024 bytes is blocks 4..7 of 256: the server answers block 4 at its size (§2.4).
    ask = Message.build(Type.CON, Code.GET, 900, b"q", uri_path="/x", block2=BlockOption(1, False, 6))
    resp = raw_request(net, ask)
    assert resp.block2 == BlockOption(4, True, 4)
    assert resp.payload == BODY[1024:1280]


def test_block2_past_the_end_is_bad_option(net: Any) -> None:
    net.c.request(Message.build(Type.CON, Code.GET, uri_path="/x"), S, 0.0)
    net.deliver()
    (ev,) = net.events(net.s)
    net.s.respond(ev, Message.build(Type.ACK, Code.CONTENT, payload=BODY), 0.0)
    net.s.datagrams_to_send(0.0)
    ask = Message.build(Type.CON, Code.GET, 900, b"q", uri_path="/x", block2=BlockOption(9, False, 6))
    assert raw_request(net, ask).code == Code.BAD_OPTION


def test_block2_without_kept_representation_goes_to_the_application(net: Any) -> None:
    ask = Message.build(Type.CON, Code.GET, 900, b"q", uri_path="/x", block2=BlockOption(1, False, 6))
    net.s.receive_datagram(ask.encode(), C, 0.0)
    (ev,) = net.events(net.s)
    assert ev.block2 == BlockOption(1, False, 6)
    net.s.respond(ev, Message.build(Type.ACK, Code.CONTENT, payload=BODY), 0.0)
    ((data, _),) = net.s.datagrams_to_send(0.0)
    resp = Message.decode(data)
    assert resp.block2 == BlockOption(1, True, 6) and resp.payload == BODY[1024:2048]


def test_block2_representation_change_fails_the_request(net: Any) -> None:
    token = net.c.request(Message.build(Type.CON, Code.GET, uri_path="/x"), S, 0.0)
    net.deliver()
    (ev,) = net.events(net.s)
    net.drop = lambda sender, msg: sender == C and msg.block2 is not None
    etag1 = [(OptionNumber.ETAG, b"1")]
    net.s.respond(ev, Message.build(Type.ACK, Code.CONTENT, payload=BODY, options=etag1), 0.0)
    net.deliver()
    follow = [m for s, m, _ in net.log if s == C and m.block2 is not None][-1]
    # The server's representation changed: block 1 comes with another ETag.
    changed = Message.build(
        Type.ACK,
        Code.CONTENT,
        follow.mid,
        follow.token,
        block2=BlockOption(1, True, 6),
        options=[(OptionNumber.ETAG, b"2")],
        payload=bytes(1024),
    )
    net.c.receive_datagram(changed.encode(), S, 0.1)
    (failed,) = net.events(net.c)
    assert isinstance(failed, RequestFailed) and failed.token == token


def test_block2_body_over_the_limit_fails(make_net: Any) -> None:
    net = make_net(client=EndpointConfig(max_body_size=2000))
    net.c.request(Message.build(Type.CON, Code.GET, uri_path="/x"), S, 0.0)
    serve_one(net, Message.build(Type.ACK, Code.CONTENT, payload=BODY))
    (failed,) = net.events(net.c)
    assert isinstance(failed, RequestFailed)


def test_block2_with_fetch_repeats_the_body(net: Any) -> None:
    net.c.request(Message.build(Type.CON, Code.FETCH, uri_path="/x", payload=b"query"), S, 0.0)
    serve_one(net, Message.build(Type.ACK, Code.CONTENT, payload=BODY))
    assert only_response(net).response.payload == BODY
    assert all(m.payload == b"query" for m in net.sent_by(C))


# --- Block1: large requests -----------------------------------------------------------------------


def test_block1_request_is_sent_in_blocks_and_reassembled(net: Any) -> None:
    token = net.c.request(Message.build(Type.CON, Code.PUT, uri_path="/5/0/0", payload=BODY), S, 0.0)
    ev = serve_one(net, Message(Type.ACK, Code.CHANGED))
    assert ev.message.payload == BODY and ev.message.uri_path == ("5", "0", "0")
    assert not ev.message.has_option(OptionNumber.BLOCK1) and ev.message.size1 is None
    assert ev.block1 == BlockOption(2, False, 6)
    sent = net.sent_by(C)
    assert [m.block1 for m in sent] == [
        BlockOption(0, True, 6),
        BlockOption(1, True, 6),
        BlockOption(2, False, 6),
    ]
    assert sent[0].size1 == len(BODY) and sent[1].size1 is None
    assert [len(m.payload) for m in sent] == [1024, 1024, len(BODY) - 2048]
    answers = net.sent_by(S)
    assert [m.code for m in answers] == [Code.CONTINUE, Code.CONTINUE, Code.CHANGED]
    assert answers[0].block1 == BlockOption(0, True, 6)
    assert answers[-1].block1 == BlockOption(2, False, 6)  # the final response echoes it (§2.3)
    resp = only_response(net)
    assert resp.token == token and resp.response.code == Code.CHANGED and resp.request.payload == BODY


def test_block1_server_asks_for_smaller_blocks(make_net: Any) -> None:
    net = make_net(server=EndpointConfig(block_szx=4))
    net.c.request(Message.build(Type.CON, Code.POST, uri_path="/x", payload=BODY), S, 0.0)
    ev = serve_one(net, Message(Type.ACK, Code.CHANGED))
    assert ev.message.payload == BODY
    sent = net.sent_by(C)
    # 1024 bytes in block 0, then 256-byte blocks numbered from offset 1024 (§2.5).
    assert sent[0].block1 == BlockOption(0, True, 6)
    assert sent[1].block1 == BlockOption(4, True, 4)
    assert len(sent) == 1 + 7  # 1540 bytes left: six blocks of 256 and one of 4
    assert net.sent_by(S)[0].block1 == BlockOption(0, True, 4)
    assert only_response(net).response.code == Code.CHANGED


def test_block1_client_with_small_blocks(make_net: Any) -> None:
    net = make_net(client=EndpointConfig(block_szx=0))
    net.c.request(Message.build(Type.CON, Code.PUT, uri_path="/x", payload=bytes(100)), S, 0.0)
    ev = serve_one(net, Message(Type.ACK, Code.CHANGED))
    assert ev.message.payload == bytes(100) and len(net.sent_by(C)) == 7


def test_block1_and_block2_combined(net: Any) -> None:
    net.c.request(Message.build(Type.CON, Code.POST, uri_path="/x", payload=BODY), S, 0.0)
    ev = serve_one(net, Message.build(Type.ACK, Code.CHANGED, payload=BODY[::-1]))
    assert ev.message.payload == BODY
    resp = only_response(net)
    assert resp.response.payload == BODY[::-1]


def test_block1_lost_continue_is_replayed(net: Any) -> None:
    drops = [0]

    def drop_first_continue(sender: Any, msg: Message) -> bool:
        if sender == S and msg.code == Code.CONTINUE and drops[0] == 0:
            drops[0] += 1
            return True
        return False

    net.drop = drop_first_continue
    net.c.request(Message.build(Type.CON, Code.PUT, uri_path="/x", payload=BODY), S, 0.0)
    net.advance(5.0)
    (ev,) = net.events(net.s)
    assert ev.message.payload == BODY


def test_block1_out_of_sequence_is_4_08(net: Any) -> None:
    msg = Message.build(
        Type.CON, Code.PUT, 1, b"a", uri_path="/x", block1=BlockOption(2, True, 6), payload=bytes(1024)
    )
    resp = raw_request(net, msg)
    assert resp.code == Code.REQUEST_ENTITY_INCOMPLETE and resp.mid == 1
    # Block 0, then block 2 (block 1 missing)
    first = Message.build(
        Type.CON, Code.PUT, 2, b"a", uri_path="/x", block1=BlockOption(0, True, 6), payload=bytes(1024)
    )
    assert raw_request(net, first).code == Code.CONTINUE
    gap = Message.build(
        Type.CON, Code.PUT, 3, b"a", uri_path="/x", block1=BlockOption(2, False, 6), payload=b"z"
    )
    assert raw_request(net, gap).code == Code.REQUEST_ENTITY_INCOMPLETE
    assert net.events(net.s) == []


def test_block1_transfers_are_kept_apart_by_resource(net: Any) -> None:
    def block(mid: int, path: str, num: int, more: bool, fill: int) -> Message:
        return Message.build(
            Type.CON,
            Code.PUT,
            mid,
            b"t",
            uri_path=path,
            block1=BlockOption(num, more, 0),
            payload=bytes([fill]) * 16,
        )

    assert raw_request(net, block(1, "/a", 0, True, 1)).code == Code.CONTINUE
    assert raw_request(net, block(2, "/b", 0, True, 2)).code == Code.CONTINUE
    net.s.receive_datagram(block(3, "/a", 1, False, 3).encode(), C, 0.0)
    (ev,) = net.events(net.s)
    assert ev.message.uri_path == ("a",) and ev.message.payload == bytes([1]) * 16 + bytes([3]) * 16


def test_block1_too_large_by_size1_is_4_13(make_net: Any) -> None:
    net = make_net(server=EndpointConfig(max_body_size=2048))
    msg = Message.build(
        Type.CON,
        Code.PUT,
        1,
        b"a",
        uri_path="/x",
        block1=BlockOption(0, True, 6),
        size1=5000,
        payload=bytes(1024),
    )
    resp = raw_request(net, msg)
    assert resp.code == Code.REQUEST_ENTITY_TOO_LARGE and resp.size1 == 2048


def test_block1_too_large_while_receiving_is_4_13(make_net: Any) -> None:
    net = make_net(server=EndpointConfig(max_body_size=2048))
    token = net.c.request(Message.build(Type.CON, Code.PUT, uri_path="/x", payload=BODY * 2), S, 0.0)
    net.deliver()
    assert net.events(net.s) == []
    last = net.sent_by(S)[-1]
    assert last.code == Code.REQUEST_ENTITY_TOO_LARGE and last.size1 == 2048
    (resp,) = net.events(net.c)
    assert isinstance(resp, ResponseReceived) and resp.token == token
    assert resp.response.code == Code.REQUEST_ENTITY_TOO_LARGE


def test_block1_wrong_block_size_is_bad_request(net: Any) -> None:
    msg = Message.build(
        Type.CON, Code.PUT, 1, b"a", uri_path="/x", block1=BlockOption(0, True, 6), payload=bytes(10)
    )
    assert raw_request(net, msg).code == Code.BAD_REQUEST


def test_block1_reassembly_buffers_per_peer_are_limited(make_net: Any) -> None:
    net = make_net(server=EndpointConfig(max_reassembly_per_peer=2))
    codes = []
    for i in range(3):
        msg = Message.build(
            Type.CON, Code.PUT, i, b"a", uri_path=f"/{i}", block1=BlockOption(0, True, 0), payload=bytes(16)
        )
        codes.append(raw_request(net, msg).code)
    assert codes == [Code.CONTINUE, Code.CONTINUE, Code.SERVICE_UNAVAILABLE]


def test_block1_reassembly_expires(net: Any) -> None:
    first = Message.build(
        Type.CON, Code.PUT, 1, b"a", uri_path="/x", block1=BlockOption(0, True, 0), payload=bytes(16)
    )
    assert raw_request(net, first).code == Code.CONTINUE
    net.now = 300.0
    net.s.handle_timer(net.now)
    assert net.s.state_sizes()["reassembly"] == 0
    nxt = Message.build(
        Type.CON, Code.PUT, 2, b"a", uri_path="/x", block1=BlockOption(1, False, 0), payload=b"z"
    )
    assert raw_request(net, nxt).code == Code.REQUEST_ENTITY_INCOMPLETE


def test_non_block1_transfer(net: Any) -> None:
    net.c.request(Message.build(Type.NON, Code.PUT, uri_path="/x", payload=BODY), S, 0.0)
    ev = serve_one(net, Message(Type.ACK, Code.CHANGED))
    assert ev.message.payload == BODY
    assert {m.type for m in net.sent_by(C)} == {Type.NON}
    assert {m.type for m in net.sent_by(S)} == {Type.NON}
    assert only_response(net).response.code == Code.CHANGED


def test_non_block2_transfer(net: Any) -> None:
    net.c.request(Message.build(Type.NON, Code.GET, uri_path="/x"), S, 0.0)
    serve_one(net, Message.build(Type.ACK, Code.CONTENT, payload=BODY))
    assert only_response(net).response.payload == BODY
    assert {m.type for m in net.sent_by(C)} == {Type.NON}
    assert net.c.get_timer() is None or net.c.state_sizes()["requests"] == 0


# --- bounded memory: expiry by the timer and the byte budget --------------------------------------


def block1(mid: int, num: int, more: bool, path: str = "/x", szx: int = 0, **kw: Any) -> Message:
    payload = bytes(16 << szx) if more else b"end"
    option = BlockOption(num, more, szx)
    return Message.build(Type.CON, Code.PUT, mid, b"t", uri_path=path, block1=option, payload=payload, **kw)


def test_abandoned_block1_transfer_is_forgotten_by_the_timer(make_net: Any) -> None:
    net = make_net(server=EndpointConfig(reassembly_lifetime=30.0))
    assert raw_request(net, block1(1, 0, True)).code == Code.CONTINUE
    net.now = 10.0
    assert raw_request(net, block1(2, 1, True)).code == Code.CONTINUE
    sizes = net.s.state_sizes()
    assert sizes["reassembly"] == 1 and sizes["block_bytes"] == 32
    # No datagram comes again: the timer alone forgets the transfer, 30 s after its last block.
    # The sweep armed for the first block's expiry finds the transfer touched since, and
    # waits for its new expiry.
    net.now = net.s.get_timer()
    assert net.now <= 30.0
    net.s.handle_timer(net.now)
    assert net.s.state_sizes()["reassembly"] == 1
    assert net.s.get_timer() == 40.0
    net.now = net.s.get_timer()
    net.s.handle_timer(net.now)
    sizes = net.s.state_sizes()
    assert sizes["reassembly"] == 0 and sizes["block_bytes"] == 0
    # Duplicate detection goes too, one EXCHANGE_LIFETIME after the last datagram; then the
    # endpoint holds nothing and asks for no timer.
    while (timer := net.s.get_timer()) is not None:
        assert timer <= 10.0 + net.s.config.exchange_lifetime
        net.now = timer
        net.s.handle_timer(net.now)
    assert net.s.state_sizes()["dedup"] == 0
    assert net.s.datagrams_to_send(net.now) == [] and net.s.next_event() is None


def test_reassembly_lifetime_defaults_to_the_exchange_lifetime() -> None:
    config = EndpointConfig(exchange_lifetime=50.0)
    assert config.reassembly_lifetime == 50.0
    assert EndpointConfig().max_block_bytes == 32 << 20


def test_byte_budget_refuses_new_block1_transfers_with_5_03(make_net: Any) -> None:
    net = make_net(server=EndpointConfig(max_block_bytes=64))
    assert raw_request(net, block1(1, 0, True, "/a", szx=1)).code == Code.CONTINUE  # 32 bytes
    assert raw_request(net, block1(2, 0, True, "/b", szx=1)).code == Code.CONTINUE  # 64: full
    refused = raw_request(net, block1(3, 0, True, "/c", szx=1))
    assert refused.code == Code.SERVICE_UNAVAILABLE
    assert net.s.state_sizes()["reassembly"] == 2
    # A block that would take the total over the budget ends its own transfer; the other stays.
    assert raw_request(net, block1(4, 1, True, "/a", szx=1)).code == Code.SERVICE_UNAVAILABLE
    assert net.s.state_sizes()["block_bytes"] == 32
    net.s.receive_datagram(block1(5, 1, False, "/b", szx=1).encode(), C, net.now)
    (ev,) = net.events(net.s)  # delivered whole to the application
    assert ev.message.payload == bytes(32) + b"end"
    assert net.s.state_sizes()["block_bytes"] == 0
    # Room again: a new transfer is taken.
    assert raw_request(net, block1(6, 0, True, "/c", szx=1)).code == Code.CONTINUE


def test_byte_budget_refuses_a_transfer_announced_larger_than_the_room_left(make_net: Any) -> None:
    net = make_net(server=EndpointConfig(max_block_bytes=1000))
    assert raw_request(net, block1(1, 0, True, size1=1001)).code == Code.SERVICE_UNAVAILABLE
    assert raw_request(net, block1(2, 0, True, size1=1000)).code == Code.CONTINUE


def test_served_block2_bodies_stay_under_the_budget_and_expire(make_net: Any) -> None:
    net = make_net(server=EndpointConfig(max_block_bytes=6000))
    for i in range(3):  # three 2564-byte bodies: only two fit
        net.c.request(Message.build(Type.CON, Code.GET, uri_path=f"/{i}"), S, net.now)
        net.deliver()
        (ev,) = net.events(net.s)
        # Keep the client from fetching the rest: the server holds the body for later blocks.
        net.c.cancel(ev.message.token)
        net.s.respond(ev, Message.build(Type.ACK, Code.CONTENT, payload=BODY), net.now)
        net.s.datagrams_to_send(net.now)
        net.c.datagrams_to_send(net.now)
    sizes = net.s.state_sizes()
    assert sizes["served"] == 2 and sizes["block_bytes"] == 2 * len(BODY)
    # The timer forgets them one EXCHANGE_LIFETIME later, with no request coming.
    net.now = net.s.config.exchange_lifetime + 1
    net.s.handle_timer(net.now)
    assert net.s.state_sizes()["served"] == 0 and net.s.state_sizes()["block_bytes"] == 0


def test_served_body_larger_than_the_budget_is_not_kept(make_net: Any) -> None:
    net = make_net(server=EndpointConfig(max_block_bytes=1000))
    net.c.request(Message.build(Type.CON, Code.GET, uri_path="/5/0/0"), S, 0.0)
    net.deliver()
    (ev,) = net.events(net.s)
    net.s.respond(ev, Message.build(Type.ACK, Code.CONTENT, payload=BODY), 0.0)
    net.deliver()
    assert net.s.state_sizes()["served"] == 0
    # Each later block is asked of the application again, and the client gets the body whole.
    for _ in range(2):
        (again,) = net.events(net.s)
        assert again.block2 is not None and again.block2.num > 0
        net.s.respond(again, Message.build(Type.ACK, Code.CONTENT, payload=BODY), net.now)
        net.deliver()
    assert only_response(net).response.payload == BODY
    assert net.s.state_sizes()["block_bytes"] == 0


def test_fetched_block2_body_over_the_budget_fails_the_request(make_net: Any) -> None:
    net = make_net(client=EndpointConfig(max_block_bytes=2000))
    net.c.request(Message.build(Type.CON, Code.GET, uri_path="/x"), S, 0.0)
    serve_one(net, Message.build(Type.ACK, Code.CONTENT, payload=BODY))
    (ev,) = net.events(net.c)
    assert isinstance(ev, RequestFailed) and "max_block_bytes" in ev.reason
    assert net.c.state_sizes()["block_bytes"] == 0 and net.c.state_sizes()["requests"] == 0


def test_fetched_block2_bytes_are_given_back(net: Any) -> None:
    net.c.request(Message.build(Type.CON, Code.GET, uri_path="/x"), S, 0.0)
    serve_one(net, Message.build(Type.ACK, Code.CONTENT, payload=BODY))
    assert only_response(net).response.payload == BODY
    assert net.c.state_sizes()["block_bytes"] == 0


def test_block1_bytes_are_given_back_whatever_ends_the_transfer(net: Any) -> None:
    net.c.request(Message.build(Type.CON, Code.PUT, uri_path="/x", payload=BODY), S, 0.0)
    serve_one(net, Message(Type.ACK, Code.CHANGED))
    assert net.s.state_sizes()["block_bytes"] == 0
    assert raw_request(net, block1(1, 0, True, "/y")).code == Code.CONTINUE
    assert raw_request(net, block1(2, 5, True, "/y")).code == Code.REQUEST_ENTITY_INCOMPLETE
    assert net.s.state_sizes()["block_bytes"] == 0


def test_duplicate_detection_is_forgotten_by_the_timer(net: Any) -> None:
    for _ in range(5):
        net.c.request(Message.build(Type.CON, Code.GET, uri_path="/x"), S, net.now)
        serve_one(net, Message(Type.ACK, Code.CONTENT))
        net.events(net.c)
        net.now += 1.0
    assert net.s.state_sizes()["dedup"] == 5
    last = 4.0  # the time of the latest request
    net.advance(last + net.s.config.exchange_lifetime)
    assert net.s.state_sizes()["dedup"] == 0 and net.s.get_timer() is None
    # A message ID seen long ago is new again, and detection works as before.
    net.c.request(Message.build(Type.CON, Code.GET, uri_path="/x"), S, net.now)
    serve_one(net, Message(Type.ACK, Code.CONTENT))
    assert net.s.state_sizes()["dedup"] == 1 and net.s.get_timer() is not None


def test_duplicate_is_still_detected_until_its_lifetime_ends(net: Any) -> None:
    msg = Message.build(Type.CON, Code.GET, 7, b"t", uri_path="/x")
    net.s.receive_datagram(msg.encode(), C, 0.0)
    (ev,) = net.events(net.s)
    net.s.respond(ev, Message(Type.ACK, Code.CONTENT, payload=b"1"), 0.0)
    first = net.s.datagrams_to_send(0.0)
    net.now = net.s.config.exchange_lifetime - 1
    net.s.handle_timer(net.now)  # a sweep before the entry's end keeps it
    net.s.receive_datagram(msg.encode(), C, net.now)
    assert net.s.datagrams_to_send(net.now) == first and net.events(net.s) == []


# --- Block1 with Content-Format on a later block (some clients send it so) -------------------------


def test_block1_content_format_first_on_a_later_block_is_accepted(net: Any) -> None:
    assert raw_request(net, block1(1, 0, True)).code == Code.CONTINUE
    assert raw_request(net, block1(2, 1, True, content_format=11542)).code == Code.CONTINUE
    net.s.receive_datagram(block1(3, 2, False).encode(), C, net.now)
    (ev,) = net.events(net.s)
    assert ev.message.payload == bytes(32) + b"end"
    assert ev.message.content_format == 11542  # the format travels with the body


def test_block1_content_format_on_the_last_block_only(net: Any) -> None:
    assert raw_request(net, block1(1, 0, True)).code == Code.CONTINUE
    net.s.receive_datagram(block1(2, 1, False, content_format=40).encode(), C, net.now)
    (ev,) = net.events(net.s)
    assert ev.message.content_format == 40 and ev.message.payload == bytes(16) + b"end"


def test_block1_same_content_format_on_every_block(net: Any) -> None:
    assert raw_request(net, block1(1, 0, True, content_format=40)).code == Code.CONTINUE
    net.s.receive_datagram(block1(2, 1, False, content_format=40).encode(), C, net.now)
    (ev,) = net.events(net.s)
    assert ev.message.content_format == 40


def test_block1_with_two_different_content_formats_is_4_08(net: Any) -> None:
    assert raw_request(net, block1(1, 0, True, content_format=40)).code == Code.CONTINUE
    assert raw_request(net, block1(2, 1, True)).code == Code.CONTINUE
    refused = raw_request(net, block1(3, 2, False, content_format=11542))
    assert refused.code == Code.REQUEST_ENTITY_INCOMPLETE
    assert net.events(net.s) == [] and net.s.state_sizes()["reassembly"] == 0


# --- the block-wise state alone (BlockTransfers), on a virtual clock ------------------------------------


def _block1(num: int, more: bool, payload: bytes, szx: int = 0, **opts: Any) -> Message:
    msg = Message(Type.CON, Code.PUT, num, b"t", ((11, b"x"),), payload)
    msg = msg.with_option(OptionNumber.BLOCK1, BlockOption(num, more, szx).encode())
    for number, value in opts.get("extra", ()):
        msg = msg.with_option(number, value)
    return msg


def _transfers(**kw: Any) -> Any:
    from lwm2m.coap.blockwise import BlockTransfers

    defaults: dict[str, Any] = {"szx": 0, "reassembly_lifetime": 10.0, "served_lifetime": 20.0}
    defaults.update(kw)
    return BlockTransfers(**defaults)


def test_transfers_reassemble_block1_and_answer_continue() -> None:
    bt = _transfers()
    first = _block1(0, True, b"a" * 16)
    assert bt.receive_block1(first, C, first.block1, 0.0) == (
        Code.CONTINUE,
        ((OptionNumber.BLOCK1, BlockOption(0, True, 0).encode()),),
        b"",
    )
    assert bt.bytes == 16 and bt.next_expiry() == 10.0
    last = _block1(1, False, b"b" * 5)
    whole = bt.receive_block1(last, C, last.block1, 5.0)
    assert isinstance(whole, Message) and whole.payload == b"a" * 16 + b"b" * 5
    assert whole.block1 is None and bt.bytes == 0 and not bt.reassembly


def test_transfers_refuse_out_of_order_oversize_and_over_budget_blocks() -> None:
    bt = _transfers(max_body_size=40, max_bytes=32)
    stray = _block1(2, True, b"x" * 16)
    assert bt.receive_block1(stray, C, stray.block1, 0.0)[0] == Code.REQUEST_ENTITY_INCOMPLETE
    big = _block1(0, True, b"x" * 16).with_option(OptionNumber.SIZE1, 41)
    code, options, _ = bt.receive_block1(big, C, big.block1, 0.0)
    assert code == Code.REQUEST_ENTITY_TOO_LARGE and options == ((OptionNumber.SIZE1, bytes([40])),)
    one = _block1(0, True, b"x" * 16)
    bt.receive_block1(one, C, one.block1, 0.0)
    other = Message(Type.CON, Code.PUT, 0, b"u", ((11, b"y"),), b"y" * 16).with_option(
        OptionNumber.BLOCK1, BlockOption(0, True, 0).encode()
    )
    bt.receive_block1(other, C, other.block1, 0.0)
    assert bt.bytes == 32
    third = Message(Type.CON, Code.PUT, 0, b"v", ((11, b"z"),), b"z" * 16).with_option(
        OptionNumber.BLOCK1, BlockOption(0, True, 0).encode()
    )
    assert bt.receive_block1(third, C, third.block1, 0.0)[0] == Code.SERVICE_UNAVAILABLE
    nxt = _block1(1, True, b"x" * 16)
    assert bt.receive_block1(nxt, C, nxt.block1, 0.0)[0] == Code.SERVICE_UNAVAILABLE  # over the budget
    assert bt.bytes == 16  # that transfer ended; the other keeps its bytes


def test_transfers_expire_on_the_timer() -> None:
    bt = _transfers()
    first = _block1(0, True, b"a" * 16)
    bt.receive_block1(first, C, first.block1, 0.0)
    bt.keep_served((C, 1, ()), Code.CONTENT, [], b"p" * 100, 1.0)
    assert bt.bytes == 116 and bt.next_expiry() == 10.0
    bt.expire(10.0)
    assert not bt.reassembly and bt.bytes == 100 and bt.next_expiry() == 21.0
    bt.expire(21.0)
    assert not bt.served and bt.bytes == 0 and bt.next_expiry() == float("inf")


def test_transfers_serve_later_block2_blocks_from_the_kept_body() -> None:
    bt = _transfers()
    get = Message(Type.CON, Code.GET, 1, b"t", ((11, b"x"),))
    sliced = bt.slice_response(C, get, None, Code.CONTENT, (), b"0123456789abcdefXYZ", 0.0)
    assert sliced is not None
    options, chunk = sliced
    assert chunk == b"0123456789abcdef" and (OptionNumber.SIZE2, bytes([19])) in options
    later = get.with_option(OptionNumber.BLOCK2, BlockOption(1, False, 0).encode())
    code, options, chunk = bt.serve_block2(later, C, later.block2, 1.0)
    assert code == Code.CONTENT and chunk == b"XYZ"
    past = get.with_option(OptionNumber.BLOCK2, BlockOption(5, False, 0).encode())
    assert bt.serve_block2(past, C, past.block2, 1.0)[0] == Code.BAD_OPTION
    assert bt.serve_block2(later, C, later.block2, 20.0) is None  # its lifetime is over


def test_transfers_share_one_budget_with_bodies_being_fetched() -> None:
    bt = _transfers(max_bytes=100)
    bt.keep_served((C, 1, ()), Code.CONTENT, [], b"p" * 60, 0.0)
    assert not bt.reserve(50)
    bt.keep_served((C, 2, ()), Code.CONTENT, [], b"q" * 60, 0.0)  # the oldest body gives way
    assert len(bt.served) == 1 and bt.bytes == 60
    assert bt.reserve(40) and bt.bytes == 100
    bt.release(40)
    assert bt.bytes == 60
