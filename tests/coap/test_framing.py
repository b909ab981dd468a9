"""RFC 8323 §3.2 framing: lengths in the nibble and in 1, 2 or 4 extended bytes, the stream
decoder fed in chunks of any size, and the Max-Message-Size bound."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lwm2m.coap.framing import FrameDecoder, SignalCode, decode_frame, encode_frame, encode_message, signal
from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, OptionNumber, Type
from lwm2m.errors import FrameTooLarge, FramingError

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def test_a_get_with_a_short_body_keeps_its_length_in_the_nibble() -> None:
    # GET /rd, token 0xAB: options "B3 72 64" (Uri-Path "rd"), 3 bytes -> Len 3, TKL 1.
    msg = Message.build(Type.CON, Code.GET, token=b"\xab", uri_path="/rd")
    assert encode_message(msg) == bytes.fromhex("31 01 ab b2 72 64".replace(" ", ""))


def test_an_empty_csm_is_two_bytes() -> None:
    # RFC 8323 §5.3: a CSM without options: Len 0, TKL 0, code 7.01 (0xE1).
    assert encode_message(signal(SignalCode.CSM)) == b"\x00\xe1"


@pytest.mark.parametrize(
    ("length", "head"),
    [
        (12, bytes([0xC0])),
        (13, bytes([0xD0, 0x00])),
        (268, bytes([0xD0, 0xFF])),
        (269, bytes([0xE0, 0x00, 0x00])),
        (65804, bytes([0xE0, 0xFF, 0xFF])),
        (65805, bytes([0xF0, 0, 0, 0, 0])),
    ],
)
def test_extended_lengths_at_their_boundaries(length: int, head: bytes) -> None:
    # §3.2: 13 -> 1 byte of length - 13, 14 -> 2 bytes of length - 269, 15 -> 4 bytes of length - 65805.
    body = b"\xff" + b"x" * (length - 1)
    frame = encode_frame(Code.CONTENT, b"", body)
    assert frame[: len(head)] == head
    assert frame[len(head)] == Code.CONTENT
    decoded = decode_frame(frame)
    assert decoded.code == Code.CONTENT and decoded.payload == b"x" * (length - 1)


def test_the_stream_decoder_takes_a_byte_at_a_time() -> None:
    msgs = [
        signal(SignalCode.CSM, ((2, b"\x04\x00"),)),
        Message.build(Type.CON, Code.POST, token=b"12345678", uri_path="/rd", payload=b"<" * 300),
        Message.build(Type.CON, Code.CONTENT, token=b"t", payload=b"y" * 70000),
    ]
    stream = b"".join(encode_message(m) for m in msgs)
    decoder = FrameDecoder(100_000)
    got: list[Message] = []
    for i in range(len(stream)):
        got += decoder.feed(stream[i : i + 1])
    assert [(m.code, m.token, m.options, m.payload) for m in got] == [
        (m.code, m.token, m.options, m.payload) for m in msgs
    ]
    assert decoder.buffered == 0


def test_a_message_over_the_limit_is_refused_from_its_header_alone() -> None:
    decoder = FrameDecoder(1152)
    frame = encode_frame(Code.POST, b"", b"\xff" + b"z" * 2000)
    with pytest.raises(FrameTooLarge) as caught:
        decoder.feed(frame[:4])  # the header: the body never needs to arrive
    assert caught.value.size == len(frame)
    with pytest.raises(FramingError):
        decoder.feed(b"more")  # spent: the stream cannot be resynchronised


def test_a_token_length_over_8_is_a_framing_error() -> None:
    with pytest.raises(FramingError, match="token length 9"):
        FrameDecoder().feed(bytes([0x09, 0x01]) + b"123456789")


def test_an_empty_message_with_a_payload_is_a_framing_error() -> None:
    with pytest.raises(FramingError):
        decode_frame(bytes([0x20, 0x00, 0xFF, 0x61]))


def test_an_empty_message_decodes() -> None:
    assert decode_frame(b"\x00\x00").code == 0


@FUZZ
@given(st.binary(max_size=300), st.lists(st.integers(1, 50), max_size=20))
def test_fuzz_the_decoder_raises_only_framing_errors(data: bytes, cuts: list[int]) -> None:
    decoder = FrameDecoder(256)
    pos = 0
    try:
        for cut in [*cuts, len(data)]:
            for message in decoder.feed(data[pos : pos + cut]):
                _ = (message.uri_path, message.observe, message.content_format, message.payload)
            pos += cut
    except FramingError:
        pass
    assert decoder.buffered <= 256


@FUZZ
@given(
    st.integers(0, 255),
    st.binary(max_size=8),
    st.lists(
        st.tuples(st.sampled_from([1, 4, 6, 11, 12, 15, 23, 60, 2049]), st.binary(max_size=300)), max_size=5
    ),
    st.binary(max_size=2000),
)
def test_fuzz_what_is_encoded_decodes_the_same(
    code: int, token: bytes, options: list[tuple[int, bytes]], payload: bytes
) -> None:
    msg = Message(Type.CON, code, 0, token, tuple(sorted(options, key=lambda o: o[0])), payload)
    if code == 0 and (options or payload):
        return
    decoded = decode_frame(encode_message(msg))
    assert (decoded.code, decoded.token, decoded.options, decoded.payload) == (
        code,
        token,
        msg.options,
        payload,
    )
    assert OptionNumber.URI_PATH == 11
