"""Fuzzing the message decoder together with every typed option accessor.

A datagram that decodes may still carry option values that break their option's
format (a Block option of 4 bytes, SZX 7): reading them raises MessageError,
the decoder's own class, and nothing else (RFC 7252 §3, RFC 7959 §2.2).
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, OptionNumber, Type
from lwm2m.errors import MessageError

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

ACCESSORS = (
    "uri_path",
    "uri_query",
    "location_path",
    "content_format",
    "accept",
    "observe",
    "size1",
    "size2",
    "block1",
    "block2",
    "uri_path_str",
    "is_request",
    "is_response",
    "is_empty",
)
# Options read through an accessor, and a few unknown ones (critical and elective).
NUMBERS = [
    OptionNumber.URI_PATH,
    OptionNumber.URI_QUERY,
    OptionNumber.LOCATION_PATH,
    OptionNumber.CONTENT_FORMAT,
    OptionNumber.ACCEPT,
    OptionNumber.OBSERVE,
    OptionNumber.SIZE1,
    OptionNumber.SIZE2,
    OptionNumber.BLOCK1,
    OptionNumber.BLOCK2,
    9,
    2048,
]


def read_everything(data: bytes) -> None:
    """Decode ``data`` and read every accessor; only MessageError may escape."""
    try:
        msg = Message.decode(data)
    except MessageError:
        return
    for name in ACCESSORS:
        try:
            getattr(msg, name)
        except MessageError:
            continue
    str(msg)
    msg.option_values(OptionNumber.URI_PATH)


@pytest.mark.parametrize(
    "hexdata", ["40010001d40e00000000", "40010001d10e07", "40010001d10a07", "40010001d40a00000000"]
)
def test_malformed_block_options_are_message_errors(hexdata: str) -> None:
    # Block1 (27) of 4 bytes, Block1 with SZX 7, Block2 (23) with SZX 7, Block2 of 4 bytes.
    msg = Message.decode(bytes.fromhex(hexdata))
    name = "block1" if msg.has_option(OptionNumber.BLOCK1) else "block2"
    with pytest.raises(MessageError) as caught:
        getattr(msg, name)
    assert caught.value.mid == 1 and caught.value.type is Type.CON
    assert name.upper() in str(caught.value)


def test_uint_and_string_accessors_never_raise() -> None:
    msg = Message(
        Type.CON,
        Code.GET,
        1,
        options=(
            (OptionNumber.OBSERVE, b"\xff" * 9),
            (OptionNumber.URI_PATH, b"\xff\xfe"),
            (OptionNumber.CONTENT_FORMAT, b"\x01\x02\x03\x04\x05"),
        ),
    )
    assert msg.observe == int.from_bytes(b"\xff" * 9, "big")
    assert msg.uri_path == ("\ufffd\ufffd",)
    assert msg.content_format == 0x0102030405


@FUZZ
@given(st.binary(max_size=80))
def test_random_bytes(data: bytes) -> None:
    read_everything(data)


@st.composite
def near_valid(draw: st.DrawFn) -> bytes:
    """A well-formed request whose known options carry arbitrary values."""
    options = draw(
        st.lists(
            st.tuples(st.sampled_from(NUMBERS), st.binary(max_size=6)),
            max_size=6,
        )
    )
    msg = Message(
        draw(st.sampled_from(list(Type))),
        draw(st.sampled_from([Code.GET, Code.POST, Code.PUT, Code.CONTENT, Code.CHANGED, 0x1F])),
        draw(st.integers(0, 0xFFFF)),
        draw(st.binary(max_size=8)),
        tuple(sorted(options, key=lambda o: o[0])),
        draw(st.binary(max_size=8)),
    )
    return msg.encode()


@FUZZ
@given(near_valid())
def test_valid_messages_with_arbitrary_option_values(data: bytes) -> None:
    read_everything(data)


@FUZZ
@given(near_valid(), st.data())
def test_mutated_near_valid_messages(data: bytes, draw: st.DataObject) -> None:
    raw = bytearray(data)
    for _ in range(draw.draw(st.integers(1, 3))):
        pos = draw.draw(st.integers(0, max(0, len(raw) - 1)))
        if raw:
            raw[pos] = draw.draw(st.integers(0, 255))
    read_everything(bytes(raw))
