"""The node-to-node link's messages (:mod:`lwm2m.transport.dtls.link`): what is encoded decodes,
with the device's IPv4 or IPv6 address; a flipped bit, another key, a stale message or a
truncated one is refused with LinkMessageError and nothing else."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lwm2m.errors import ConfigError, LinkMessageError
from lwm2m.transport.dtls.link import (
    PING,
    TAG_LEN,
    TO_DEVICE,
    TO_OWNER,
    LinkMessage,
    LinkMessageCodec,
    format_link,
    parse_link,
)

KEY = bytes(range(32))
RECORD = bytes([25, 0xFE, 0xFD, 0, 1]) + bytes(6) + bytes([7, 1, 2, 3, 4, 5, 6, 7]) + b"\x00\x05hello"
CODEC = LinkMessageCodec(KEY)


@pytest.mark.parametrize(
    "peer",
    [("192.0.2.7", 40123), ("2001:db8::5", 5684, 0, 0), ("fe80::1", 1, 0x12345, 3)],
)
@pytest.mark.parametrize("kind", [TO_OWNER, TO_DEVICE, PING])
def test_a_message_decodes_as_it_was_made(peer: tuple[object, ...], kind: int) -> None:
    message = LinkMessage(kind, 7, peer, RECORD)
    wire = CODEC.encode(message)
    assert len(wire) == len(RECORD) + TAG_LEN + 12 + (6 if len(peer) == 2 else 26)
    assert CODEC.decode(wire) == message


def test_a_flipped_bit_anywhere_is_refused() -> None:
    wire = CODEC.encode(LinkMessage(TO_OWNER, 1, ("192.0.2.7", 40123), RECORD))
    for i in range(len(wire)):
        for bit in (0, 7):
            flipped = bytearray(wire)
            flipped[i] ^= 1 << bit
            with pytest.raises(LinkMessageError):
                CODEC.decode(bytes(flipped))


def test_another_clusters_key_is_refused() -> None:
    other = LinkMessageCodec(bytes(32))
    wire = other.encode(LinkMessage(TO_OWNER, 1, ("192.0.2.7", 40123), RECORD))
    with pytest.raises(LinkMessageError, match="authenticate"):
        CODEC.decode(wire)


def test_a_stale_message_is_refused() -> None:
    now = [1_700_000_000.0]
    codec = LinkMessageCodec(KEY, max_age=30, clock=lambda: now[0])
    wire = codec.encode(LinkMessage(TO_DEVICE, 3, ("192.0.2.7", 1), b"x"))
    now[0] += 29
    assert codec.decode(wire).data == b"x"
    now[0] += 2
    with pytest.raises(LinkMessageError, match="fresh"):
        codec.decode(wire)


def test_short_and_unknown_messages_are_refused() -> None:
    for wire in (b"", b"\x01" * 10, bytes(21 + TAG_LEN)):
        with pytest.raises(LinkMessageError):
            CODEC.decode(wire)
    with pytest.raises(ValueError):
        CODEC.encode(LinkMessage(9, 1, ("192.0.2.7", 1), b""))
    with pytest.raises(ValueError):
        CODEC.encode(LinkMessage(TO_OWNER, 1, ("a-name", 1), b""))
    with pytest.raises(ConfigError):
        LinkMessageCodec(b"short")


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=200))
def test_the_decoder_raises_only_its_error_on_any_bytes(data: bytes) -> None:
    with pytest.raises(LinkMessageError):
        CODEC.decode(data)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_the_decoder_refuses_every_change_of_a_real_message(data: st.DataObject) -> None:
    wire = bytearray(CODEC.encode(LinkMessage(TO_OWNER, 2, ("2001:db8::1", 9, 0, 0), RECORD)))
    at = data.draw(st.integers(0, len(wire) - 1))
    cut = data.draw(st.booleans())
    if cut:
        changed = bytes(wire[:at])
    else:
        wire[at] ^= data.draw(st.integers(1, 255))
        changed = bytes(wire)
    with pytest.raises(LinkMessageError):
        CODEC.decode(changed)


def test_link_addresses_read_back() -> None:
    assert parse_link(format_link(("10.0.0.5", 5690))) == ("10.0.0.5", 5690)
    assert parse_link(format_link(("fd00::5", 5690, 0, 0))) == ("fd00::5", 5690, 0, 0)
    for text in ("", "10.0.0.5", "10.0.0.5:x", "host:5690", "[10.0.0.5]:1", "10.0.0.5:0", "1.2.3.4:70000"):
        assert parse_link(text) is None
