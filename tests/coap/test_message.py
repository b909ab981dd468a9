"""The RFC 7252 §3 message codec: header, token, options, payload, and every malformed case."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lwm2m.coap.message import Message, decode_message, encode_parts
from lwm2m.coap.numbers import Code, OptionNumber, Type
from lwm2m.coap.option import BlockOption, decode_uint, encode_uint
from lwm2m.errors import MessageError

# --- header ------------------------------------------------------------------------------------


@pytest.mark.parametrize("mtype", list(Type))
@pytest.mark.parametrize("code", [Code.GET, Code.CONTENT, Code.NOT_FOUND, Code.CONTINUE, 0x3F, 0xFF])
@pytest.mark.parametrize("mid", [0, 1, 0x1234, 0xFFFF])
def test_header_fields_round_trip(mtype: Type, code: int, mid: int) -> None:
    msg = Message(mtype, code, mid, b"t")
    data = msg.encode()
    assert data[0] == 0x40 | (int(mtype) << 4) | 1
    assert data[1] == int(code)
    assert data[2:4] == mid.to_bytes(2, "big")
    back = Message.decode(data)
    assert (back.type, back.code, back.mid, back.token) == (mtype, code, mid, b"t")
    assert back.type is mtype


def test_known_codes_decode_to_enum_members_and_unknown_stay_int() -> None:
    assert Message.decode(bytes((0x40, 0x45, 0, 1))).code is Code.CONTENT
    raw = Message.decode(bytes((0x40, 0x3F, 0, 1))).code
    assert raw == 0x3F and not isinstance(raw, Code)


@pytest.mark.parametrize("length", range(9))
def test_token_lengths_0_to_8(length: int) -> None:
    token = bytes(range(1, length + 1))
    data = Message(Type.CON, Code.GET, 7, token).encode()
    assert data[0] & 0x0F == length
    assert Message.decode(data).token == token


def test_token_longer_than_8_cannot_be_encoded() -> None:
    with pytest.raises(ValueError):
        Message(Type.CON, Code.GET, 1, bytes(9)).encode()


def test_mid_out_of_range_cannot_be_encoded() -> None:
    with pytest.raises(ValueError):
        Message(Type.CON, Code.GET, 0x10000).encode()


def test_empty_message_is_four_bytes() -> None:
    assert Message(Type.ACK, Code.EMPTY, 0xABCD).encode() == bytes((0x60, 0, 0xAB, 0xCD))
    msg = Message.decode(bytes((0x70, 0, 0, 5)))
    assert msg.type is Type.RST and msg.is_empty and msg.mid == 5


# --- options -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("number", "first_byte_high", "ext"),
    [
        (1, 1, b""),
        (12, 12, b""),
        (13, 13, b"\x00"),
        (14, 13, b"\x01"),
        (268, 13, b"\xff"),
        (269, 14, b"\x00\x00"),
        (270, 14, b"\x00\x01"),
        (65804, 14, b"\xff\xff"),
    ],
)
def test_option_delta_extended_forms(number: int, first_byte_high: int, ext: bytes) -> None:
    data = Message(Type.CON, Code.GET, 1, b"", ((number, b"v"),)).encode()
    assert data[4] >> 4 == first_byte_high
    assert data[5 : 5 + len(ext)] == ext
    assert Message.decode(data).options == ((number, b"v"),)


@pytest.mark.parametrize(
    ("length", "nibble", "ext"),
    [
        (0, 0, b""),
        (12, 12, b""),
        (13, 13, b"\x00"),
        (268, 13, b"\xff"),
        (269, 14, b"\x00\x00"),
        (1034, 14, b"\x02\xfd"),
    ],
)
def test_option_length_extended_forms(length: int, nibble: int, ext: bytes) -> None:
    value = bytes(i & 0xFF for i in range(length))
    data = Message(Type.CON, Code.GET, 1, b"", ((OptionNumber.IF_MATCH, value),)).encode()
    assert data[4] & 0x0F == nibble
    assert data[5 : 5 + len(ext)] == ext
    assert Message.decode(data).options == ((OptionNumber.IF_MATCH, value),)


def test_delta_and_length_both_extended() -> None:
    opts = ((300, bytes(300)),)
    data = Message(Type.NON, Code.POST, 9, b"ab", opts).encode()
    assert data[6] == 0xEE
    assert Message.decode(data).options == opts


def test_repeatable_options_keep_their_order() -> None:
    msg = Message.build(Type.CON, Code.GET, 1, uri_path="/a/b/c", uri_query=["x=1", "y=2"])
    back = Message.decode(msg.encode())
    assert back.uri_path == ("a", "b", "c")
    assert back.uri_query == ("x=1", "y=2")
    assert back.uri_path_str == "/a/b/c"
    # repeats are encoded with delta 0
    data = msg.encode()
    assert data[4] == 0xB1 and data[6] == 0x01


def test_options_out_of_order_are_sorted_on_encode_stably() -> None:
    msg = Message(Type.CON, Code.GET, 1, b"", ((15, b"q"), (11, b"a"), (11, b"b")))
    assert Message.decode(msg.encode()).options == ((11, b"a"), (11, b"b"), (15, b"q"))


@pytest.mark.parametrize("value", [0, 1, 255, 256, 65535, 65536, 0xFFFFFF, 0xFFFFFFFF])
def test_uint_option_values(value: int) -> None:
    raw = encode_uint(value)
    assert len(raw) == (value.bit_length() + 7) // 8
    assert decode_uint(raw) == value
    msg = Message.build(Type.CON, Code.GET, 1, content_format=value if value < 65536 else 0, size1=value)
    back = Message.decode(msg.encode())
    assert back.size1 == value


def test_uint_zero_is_empty_and_negative_rejected() -> None:
    assert encode_uint(0) == b""
    with pytest.raises(ValueError):
        encode_uint(-1)


def test_string_opaque_and_empty_values() -> None:
    msg = Message.build(
        Type.CON,
        Code.PUT,
        1,
        b"\x01",
        uri_path=["über", "x"],
        options=[(OptionNumber.ETAG, b"\x00\xff"), (OptionNumber.IF_NONE_MATCH, b"")],
    )
    back = Message.decode(msg.encode())
    assert back.uri_path == ("über", "x")
    assert back.option(OptionNumber.ETAG) == b"\x00\xff"
    assert back.option(OptionNumber.IF_NONE_MATCH) == b""
    assert back.has_option(OptionNumber.IF_NONE_MATCH)
    assert back.option(OptionNumber.ACCEPT) is None


def test_typed_accessors() -> None:
    msg = Message.build(
        Type.CON,
        Code.GET,
        1,
        uri_path="/3/0",
        location_path=["rd", "x"],
        content_format=60,
        accept=110,
        observe=0,
        block1=BlockOption(2, True, 3),
        block2=BlockOption(1, False, 6),
        size1=100,
        size2=2000,
    )
    back = Message.decode(msg.encode())
    assert back.content_format == 60 and back.accept == 110 and back.observe == 0
    assert back.block1 == BlockOption(2, True, 3) and back.block2 == BlockOption(1, False, 6)
    assert back.size1 == 100 and back.size2 == 2000
    assert back.location_path == ("rd", "x")
    assert back.is_request and not back.is_response and not back.is_empty


def test_with_and_without_option() -> None:
    msg = Message.build(Type.CON, Code.GET, 1, uri_path="/a")
    msg2 = msg.with_option(OptionNumber.OBSERVE, 5).with_option(OptionNumber.OBSERVE, 6)
    assert msg2.option_values(OptionNumber.OBSERVE) == [b"\x06"]
    assert msg2.without_option(OptionNumber.OBSERVE).options == msg.options


# --- payload -----------------------------------------------------------------------------------


def test_payload_after_marker() -> None:
    msg = Message(Type.ACK, Code.CONTENT, 3, b"tk", ((12, b""),), b"\xff\x00payload")
    data = msg.encode()
    assert data.index(b"\xff") == 7
    assert Message.decode(data).payload == b"\xff\x00payload"


def test_no_marker_without_payload() -> None:
    assert b"\xff" not in Message(Type.ACK, Code.CONTENT, 3).encode()


# --- malformed datagrams -----------------------------------------------------------------------


@pytest.mark.parametrize("data", [b"", b"\x40", b"\x40\x01", b"\x40\x01\x00"])
def test_truncated_header(data: bytes) -> None:
    with pytest.raises(MessageError) as err:
        Message.decode(data)
    assert err.value.mid is None


@pytest.mark.parametrize("version", [0, 2, 3])
def test_bad_version(version: int) -> None:
    with pytest.raises(MessageError) as err:
        Message.decode(bytes(((version << 6) | 0x00, 1, 0x12, 0x34)))
    assert err.value.version_ok is False
    assert err.value.mid == 0x1234


@pytest.mark.parametrize("tkl", range(9, 16))
def test_token_length_9_to_15_is_a_format_error(tkl: int) -> None:
    with pytest.raises(MessageError) as err:
        Message.decode(bytes((0x40 | tkl, 1, 0, 7)) + bytes(16))
    assert err.value.mid == 7 and err.value.type is Type.CON and err.value.version_ok


def test_token_past_end() -> None:
    with pytest.raises(MessageError):
        Message.decode(bytes((0x58, 1, 0, 7)) + b"abc")


@pytest.mark.parametrize("byte", [0xF0, 0xF5, 0x1F, 0xDF])
def test_reserved_nibble_15(byte: int) -> None:
    # 0xFF itself is the payload marker; 15 in either nibble otherwise is reserved.
    with pytest.raises(MessageError):
        Message.decode(bytes((0x50, 1, 0, 7, byte)) + bytes(20))


def test_payload_marker_with_empty_payload() -> None:
    with pytest.raises(MessageError) as err:
        Message.decode(bytes((0x50, 0x45, 0, 9, 0xFF)))
    assert err.value.type is Type.NON and err.value.mid == 9


@pytest.mark.parametrize(
    "tail",
    [
        b"\xd1",  # delta 13 without its extension byte
        b"\xe1\x00",  # delta 14 with one of two bytes
        b"\x1d",  # length 13 without its extension byte
        b"\x1e\x00",  # length 14 with one of two bytes
        b"\x13ab",  # value of 3 with 2 bytes left
        b"\x1d\x05" + bytes(17),  # extended length 18 with 17 bytes left
    ],
)
def test_option_past_end(tail: bytes) -> None:
    with pytest.raises(MessageError):
        Message.decode(bytes((0x40, 1, 0, 1)) + tail)


def test_empty_code_with_content_is_a_format_error() -> None:
    with pytest.raises(MessageError):
        Message.decode(bytes((0x41, 0, 0, 1, 0xAA)))


def test_message_error_is_a_value_error() -> None:
    assert issubclass(MessageError, ValueError)


@pytest.mark.parametrize(
    ("data", "reason", "mid", "version_ok"),
    [
        (b"", "truncated header", None, True),
        (bytes((0x40, 1, 0)), "truncated header", None, True),
        (bytes((0x80, 1, 0, 7)), "unknown CoAP version 2", 7, False),
        (bytes((0x49, 1, 0, 7)) + bytes(9), "reserved token length 9", 7, True),
        (bytes((0x44, 1, 0, 7, 1, 2)), "token runs past the end", 7, True),
    ],
)
def test_header_errors_keep_what_the_endpoint_needs(
    data: bytes, reason: str, mid: int | None, version_ok: bool
) -> None:
    with pytest.raises(MessageError, match=reason) as info:
        Message.decode(data)
    assert info.value.mid == mid and info.value.version_ok is version_ok
    if mid is not None:
        assert info.value.type is Type.CON


def test_decoded_messages_are_plain_messages_from_any_buffer() -> None:
    msg = Message.build(Type.CON, Code.GET, 9, b"tk", uri_path="/3/0", payload=b"p")
    for data in (msg.encode(), bytearray(msg.encode()), memoryview(msg.encode())):
        back = Message.decode(data)
        assert type(back) is Message and back == msg and hash(back) == hash(msg)
        assert type(back.token) is bytes and type(back.payload) is bytes
        assert all(type(v) is bytes for _, v in back.options)


def test_decode_summary_marks_option_numbers_and_non_requests() -> None:
    req = Message.build(Type.CON, Code.GET, 1, uri_path="/a/b", accept=60, observe=0)
    _, summary = decode_message(req.encode())
    assert summary == (1 << 6) | (1 << 11) | (1 << 17)
    assert decode_message(Message(Type.NON, Code.POST, 1).encode())[1] == 0
    for other in (
        Message(Type.ACK, Code.CONTENT, 1),
        Message(Type.RST, Code.EMPTY, 1),
        Message(Type.CON, Code.EMPTY, 1),
        Message(Type.CON, Code.CONTENT, 1),
    ):
        assert decode_message(other.encode())[1] & 1, other
    high = Message(Type.CON, Code.GET, 1, options=((11, b"x"), (2048, b"y")))
    assert decode_message(high.encode())[1] == (1 << 11) | (1 << 63)


# --- property tests ----------------------------------------------------------------------------

option_numbers = st.integers(min_value=1, max_value=2000)
options_st = st.lists(st.tuples(option_numbers, st.binary(max_size=300)), max_size=8).map(
    lambda opts: tuple(sorted(opts, key=lambda o: o[0]))
)


@st.composite
def messages(draw: st.DrawFn) -> Message:
    code = draw(st.integers(min_value=1, max_value=255))
    return Message(
        draw(st.sampled_from(list(Type))),
        code,
        draw(st.integers(min_value=0, max_value=0xFFFF)),
        draw(st.binary(max_size=8)),
        draw(options_st),
        draw(st.binary(max_size=200)),
    )


@given(messages())
@settings(max_examples=300)
def test_round_trip(msg: Message) -> None:
    back = Message.decode(msg.encode())
    assert back == msg
    assert back.encode() == msg.encode()


@given(st.binary(max_size=120))
@settings(max_examples=1000)
def test_random_bytes_raise_only_message_error(data: bytes) -> None:
    try:
        msg = Message.decode(data)
    except MessageError:
        return
    # Whatever decodes encodes back to the same bytes.
    assert Message.decode(msg.encode()) == msg


@given(messages(), st.data())
@settings(max_examples=500)
def test_mutated_messages_raise_only_message_error(msg: Message, data: st.DataObject) -> None:
    raw = bytearray(msg.encode())
    for _ in range(data.draw(st.integers(min_value=1, max_value=4))):
        op = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        pos = data.draw(st.integers(min_value=0, max_value=max(0, len(raw) - 1)))
        if op == "flip" and raw:
            raw[pos] ^= 1 << data.draw(st.integers(min_value=0, max_value=7))
        elif op == "cut":
            del raw[pos:]
        else:
            raw.insert(pos, data.draw(st.integers(min_value=0, max_value=255)))
    with contextlib.suppress(MessageError):
        Message.decode(bytes(raw))


@given(messages(), st.booleans())
@settings(max_examples=300)
def test_encode_parts_matches_encode(msg: Message, shuffle: bool) -> None:
    options = tuple(reversed(msg.options)) if shuffle else msg.options
    parts = encode_parts(msg.type, msg.code, msg.mid, msg.token, options, msg.payload)
    assert parts == msg.replace(options=options).encode()


def test_encode_parts_rejects_what_encode_rejects() -> None:
    with pytest.raises(ValueError):
        encode_parts(Type.CON, Code.GET, 1, bytes(9), (), b"")
    with pytest.raises(ValueError):
        encode_parts(Type.CON, Code.GET, 0x10000, b"", (), b"")


@given(messages())
@settings(max_examples=300)
def test_decode_summary_matches_the_options(msg: Message) -> None:
    decoded, summary = decode_message(msg.encode())
    assert decoded == msg
    expected = 0 if msg.type in (Type.CON, Type.NON) and 1 <= msg.code <= 31 else 1
    for number, _ in msg.options:
        expected |= 1 << number if number < 63 else 1 << 63
    assert summary == expected
