"""Fuzzing the RFC 8323 connection: any stream a peer sends (whole messages of any code, token
and options, Block1/Block2 of any value, signaling, or raw bytes) never raises, keeps its state
within its bounds, and gives every block-wise byte back to the budget when it ends."""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lwm2m.coap.connection import BlockBudget, TcpConfig, TcpConnection
from lwm2m.coap.events import RequestReceived
from lwm2m.coap.framing import SignalCode, encode_message, signal
from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, OptionNumber, Type

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CONFIG = TcpConfig(max_message_size=2048, max_block_bodies=3, max_body_size=8192, max_observations=4)

options = st.lists(
    st.tuples(
        st.sampled_from(
            [
                OptionNumber.URI_PATH,
                OptionNumber.OBSERVE,
                OptionNumber.BLOCK1,
                OptionNumber.BLOCK2,
                2,
                4,
                9,
                2049,
            ]
        ),
        st.binary(max_size=4),
    ),
    max_size=4,
)
messages = st.builds(
    lambda code, token, opts, payload: Message(Type.CON, code, 0, token, tuple(sorted(opts)), payload),
    st.sampled_from([0, 1, 2, 3, 5, 69, 95, 132, 0xE1, 0xE2, 0xE3, 0xE4, 0xE5, 0xE9]),
    st.binary(max_size=2),
    options,
    st.binary(max_size=1500),
)


@FUZZ
@given(
    st.lists(st.one_of(messages.map(encode_message), st.binary(max_size=40)), max_size=25),
    st.integers(0, 6000),
)
def test_fuzz_any_stream(chunks: list[bytes], answer_size: int) -> None:
    budget = BlockBudget(6000)
    conn = TcpConnection(("peer", 1), CONFIG, random.Random(0), budget=budget)
    conn.receive_data(encode_message(signal(SignalCode.CSM)), 0.0)
    now = 0.0
    for chunk in chunks:
        now += 1.0
        conn.receive_data(chunk, now)
        for event in conn.events:
            if type(event) is RequestReceived:
                conn.respond(event, Message.build(Type.ACK, Code.CONTENT, payload=b"v" * answer_size), now)
        conn.events.clear()
        conn.data_to_send()
        assert budget.used <= budget.limit
        sizes = conn.state_sizes()
        assert sizes["block_bodies"] <= CONFIG.max_block_bodies
        assert sizes["observations"] <= CONFIG.max_observations
        assert sizes["buffered"] < CONFIG.max_message_size
        timer = conn.get_timer()
        if timer is not None and timer <= now:
            conn.handle_timer(now)
    conn.connection_lost("closed", now)
    assert budget.used == 0


@FUZZ
@given(st.binary(max_size=8), st.sampled_from([65, 68, 69, 132, 160]), st.binary(max_size=3000))
def test_fuzz_the_short_answer_is_framed_as_any_message(token: bytes, code: int, payload: bytes) -> None:
    conn = TcpConnection(("peer", 1), TcpConfig(), random.Random(0))
    conn.receive_data(encode_message(signal(SignalCode.CSM, ((2, (65535).to_bytes(2, "big")),))), 0.0)
    conn.receive_data(encode_message(Message(Type.CON, Code.GET, 0, token, ((11, b"t"),))), 0.0)
    (request,) = [e for e in conn.events if type(e) is RequestReceived]
    conn.data_to_send()
    conn.respond(request, Message(Type.ACK, code, 0, b"", (), payload), 0.0)
    assert conn.data_to_send() == encode_message(Message(Type.CON, code, 0, token, (), payload))
