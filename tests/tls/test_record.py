"""DTLS record framing (RFC 6347 §4.1), Connection ID records (RFC 9146 §4) and the
DTLSInnerPlaintext, against hand-written bytes, round trips, hostile input, fuzzing, and the
first flight of a DTLS client we did not write (Mbed TLS through python-mbedtls)."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.helpers.mbedtls import drive, mbedtls_tls, psk_client, psk_server

from lwm2m.errors import ProtocolError, RecordError, RecordOverflow
from lwm2m.tls.record import (
    ALERT,
    APPLICATION_DATA,
    CHANGE_CIPHER_SPEC,
    DTLS_1_0,
    DTLS_1_2,
    HANDSHAKE,
    MAX_CIPHERTEXT,
    MAX_PLAINTEXT,
    TLS12_CID,
    DtlsRecord,
    encode_datagram,
    encode_inner_plaintext,
    encode_record,
    parse_datagram,
    parse_inner_plaintext,
    parse_record,
)

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- known bytes --------------------------------------------------------------------------------


def test_a_record_header_is_type_version_epoch_sequence_length() -> None:
    record = DtlsRecord(HANDSHAKE, DTLS_1_2, 1, 0x0102030405, b"\xaa\xbb\xcc")
    wire = bytes.fromhex("16 fefd 0001 000102030405 0003 aabbcc")
    assert record.encode() == wire
    assert parse_datagram(wire) == [record]
    assert record.seq_num == 0x0001_000102030405


def test_a_cid_record_puts_the_cid_after_the_sequence_number() -> None:
    record = DtlsRecord(TLS12_CID, DTLS_1_2, 1, 7, b"\x01\x02", cid=b"\xc1\xc2\xc3")
    wire = bytes.fromhex("19 fefd 0001 000000000007 c1c2c3 0002 0102")
    assert record.encode() == wire
    assert parse_datagram(wire, cid_length=3) == [record]


def test_a_record_with_a_cid_is_sent_as_tls12_cid_whatever_its_inner_type() -> None:
    record = DtlsRecord(APPLICATION_DATA, DTLS_1_2, 2, 0, b"x", cid=b"\x09")
    assert record.encode()[0] == TLS12_CID


def test_a_datagram_carries_several_records() -> None:
    records = [
        DtlsRecord(HANDSHAKE, DTLS_1_2, 0, 5, b"finished-ish"),
        DtlsRecord(CHANGE_CIPHER_SPEC, DTLS_1_2, 0, 6, b"\x01"),
        DtlsRecord(TLS12_CID, DTLS_1_2, 1, 0, b"\x00" * 40, cid=b"\x10\x20"),
        DtlsRecord(ALERT, DTLS_1_0, 1, 1, b""),
    ]
    wire = encode_datagram(records)
    assert parse_datagram(wire, cid_length=2) == records


def test_parse_record_gives_the_offset_after_the_record() -> None:
    first = DtlsRecord(HANDSHAKE, DTLS_1_2, 0, 0, b"abc")
    wire = first.encode() + b"\x17"
    record, end = parse_record(wire)
    assert record == first
    assert end == len(first.encode())


# --- DTLSInnerPlaintext -------------------------------------------------------------------------


def test_inner_plaintext_is_content_type_and_zero_padding() -> None:
    assert encode_inner_plaintext(b"hi", APPLICATION_DATA, 3) == b"hi\x17\x00\x00\x00"
    assert parse_inner_plaintext(b"hi\x17\x00\x00\x00") == (APPLICATION_DATA, b"hi")
    # Zero bytes inside the content stay: only those after the type are padding.
    assert parse_inner_plaintext(b"\x00a\x00\x16") == (HANDSHAKE, b"\x00a\x00")
    assert parse_inner_plaintext(b"\x15") == (ALERT, b"")


@pytest.mark.parametrize("inner", [b"", b"\x00", b"\x00\x00\x00", b"ab\x63\x00", b"ab\x19"])
def test_inner_plaintext_without_a_known_type_is_refused(inner: bytes) -> None:
    with pytest.raises(RecordError):
        parse_inner_plaintext(inner)


def test_inner_plaintext_longer_than_2_14_is_an_overflow() -> None:
    with pytest.raises(RecordOverflow):
        encode_inner_plaintext(b"a" * MAX_PLAINTEXT, APPLICATION_DATA)
    with pytest.raises(RecordOverflow):
        parse_inner_plaintext(b"a" * MAX_PLAINTEXT + b"\x17")
    with pytest.raises(RecordError):
        encode_inner_plaintext(b"a", 0)


# --- hostile input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "wire",
    [
        b"",
        bytes.fromhex("16 fefd 0000 000000000000 00"),  # 12 bytes: no length
        bytes.fromhex("16 fefd 0000 000000000000 0005 aabb"),  # length past the end
        bytes.fromhex("16 fefd 0000 000000000000 0000 16"),  # a truncated second record
        bytes.fromhex("18 fefd 0000 000000000000 0000"),  # heartbeat: not a type we take
        bytes.fromhex("40 fefd 0000 000000000000 0000"),  # not DTLS at all
        bytes.fromhex("16 0303 0000 000000000000 0000"),  # a TLS version in a DTLS record
    ],
)
def test_malformed_datagrams_are_refused(wire: bytes) -> None:
    with pytest.raises(RecordError):
        parse_datagram(wire)


def test_a_record_longer_than_2_14_plus_2048_is_an_overflow() -> None:
    length = MAX_CIPHERTEXT + 1
    wire = bytes.fromhex("17 fefd 0001 000000000000") + length.to_bytes(2, "big") + b"\x00" * length
    with pytest.raises(RecordOverflow):
        parse_datagram(wire)
    # The longest allowed one is framed.
    wire = bytes.fromhex("17 fefd 0001 000000000000") + MAX_CIPHERTEXT.to_bytes(2, "big")
    assert len(parse_datagram(wire + b"\x00" * MAX_CIPHERTEXT)[0].fragment) == MAX_CIPHERTEXT
    with pytest.raises(RecordOverflow):
        DtlsRecord(APPLICATION_DATA, DTLS_1_2, 1, 0, b"\x00" * length)


def test_a_cid_record_needs_a_negotiated_cid_and_room_for_it() -> None:
    wire = DtlsRecord(TLS12_CID, DTLS_1_2, 1, 0, b"ab", cid=b"\x01\x02\x03\x04").encode()
    with pytest.raises(RecordError, match="no connection ID"):
        parse_datagram(wire)
    with pytest.raises(RecordError):
        parse_datagram(wire[:16], cid_length=4)
    # A longer CID than ours swallows the length field: the framing no longer adds up.
    with pytest.raises(RecordError):
        parse_datagram(wire, cid_length=6)
    with pytest.raises(RecordError):
        parse_datagram(wire, cid_length=256)


@pytest.mark.parametrize(
    "fields",
    [
        {"content_type": 256},
        {"version": 0x10000},
        {"epoch": 0x10000},
        {"sequence": 2**48},
        {"sequence": -1},
        {"cid": b"\x00" * 256},
    ],
)
def test_fields_that_do_not_fit_the_header_are_refused(fields: dict[str, object]) -> None:
    base: dict[str, object] = {
        "content_type": HANDSHAKE,
        "version": DTLS_1_2,
        "epoch": 0,
        "sequence": 0,
        "fragment": b"",
    }
    with pytest.raises(RecordError):
        DtlsRecord(**{**base, **fields})  # type: ignore[arg-type]
    with pytest.raises(RecordError):
        encode_record(**{**base, **fields})  # type: ignore[arg-type]


def test_encode_record_refuses_an_oversize_fragment() -> None:
    with pytest.raises(RecordOverflow):
        encode_record(APPLICATION_DATA, DTLS_1_2, 1, 0, bytes(MAX_CIPHERTEXT + 1))


# --- round trips and fuzzing --------------------------------------------------------------------

_records = st.builds(
    DtlsRecord,
    content_type=st.sampled_from([CHANGE_CIPHER_SPEC, ALERT, HANDSHAKE, APPLICATION_DATA]),
    version=st.sampled_from([DTLS_1_2, DTLS_1_0]),
    epoch=st.integers(0, 0xFFFF),
    sequence=st.integers(0, 2**48 - 1),
    fragment=st.binary(max_size=300),
)


@FUZZ
@given(_records, st.binary(max_size=8))
def test_encode_record_frames_as_the_record_does(record: DtlsRecord, cid: bytes) -> None:
    # The sender's form without a record object gives the same bytes, CID record or not.
    fields = (record.content_type, record.version, record.epoch, record.sequence, record.fragment)
    assert encode_record(*fields, cid) == DtlsRecord(*fields, cid).encode()
    [parsed] = parse_datagram(encode_record(*fields, cid), cid_length=len(cid))
    assert (parsed.epoch, parsed.sequence, parsed.fragment, parsed.cid) == (*fields[2:], cid)


@FUZZ
@given(st.lists(_records, min_size=1, max_size=5))
def test_round_trip_of_plain_records(records: list[DtlsRecord]) -> None:
    assert parse_datagram(encode_datagram(records)) == records


@FUZZ
@given(
    st.integers(1, 20),
    st.lists(
        st.tuples(st.integers(1, 0xFFFF), st.integers(0, 2**48 - 1), st.binary(max_size=100)), min_size=1
    ),
    st.data(),
)
def test_round_trip_of_cid_records(
    cid_length: int, fields: list[tuple[int, int, bytes]], data: st.DataObject
) -> None:
    cid = data.draw(st.binary(min_size=cid_length, max_size=cid_length))
    records = [DtlsRecord(TLS12_CID, DTLS_1_2, e, s, f, cid) for e, s, f in fields]
    assert parse_datagram(encode_datagram(records), cid_length) == records


@FUZZ
@given(st.binary(max_size=200), st.integers(0, 8))
def test_any_bytes_are_parsed_or_refused_as_protocol_error(wire: bytes, cid_length: int) -> None:
    try:
        records = parse_datagram(wire, cid_length)
    except ProtocolError:
        return
    assert encode_datagram(records) == wire


@FUZZ
@given(st.binary(max_size=64), st.integers(0, 255))
def test_any_bytes_as_inner_plaintext_are_parsed_or_refused(inner: bytes, padding: int) -> None:
    try:
        content_type, content = parse_inner_plaintext(inner)
    except ProtocolError:
        return
    assert encode_inner_plaintext(content, content_type, padding).rstrip(b"\x00") == inner.rstrip(b"\x00")


@FUZZ
@given(st.lists(_records, min_size=1, max_size=3), st.data())
def test_mutated_datagrams_are_parsed_or_refused(records: list[DtlsRecord], data: st.DataObject) -> None:
    wire = bytearray(encode_datagram(records))
    for _ in range(data.draw(st.integers(1, 4))):
        wire[data.draw(st.integers(0, len(wire) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(wire)))
    cid_length = data.draw(st.integers(0, 4))
    try:
        records = parse_datagram(bytes(wire[:cut]), cid_length)
    except ProtocolError:
        return
    assert encode_datagram(records) == bytes(wire[:cut])


# --- a peer we did not write --------------------------------------------------------------------


def test_the_first_flight_of_an_mbedtls_client_parses() -> None:
    buffer = psk_client("device-1", b"0123456789abcdef")
    # Step the client's handshake until it waits for the server: its ClientHello is then out.
    wire = drive(buffer)
    assert wire

    records = parse_datagram(wire)
    assert encode_datagram(records) == wire
    first = records[0]
    assert first.content_type == HANDSHAKE
    assert first.version in (DTLS_1_2, DTLS_1_0)
    assert first.epoch == 0
    assert first.sequence == 0
    assert not first.cid
    # The fragment is a handshake message: msg_type client_hello (1), then a 24-bit length
    # that, with the 12-byte DTLS handshake header, fills the record (RFC 6347 §4.2.2).
    assert first.fragment[0] == 1
    assert int.from_bytes(first.fragment[1:4], "big") + 12 == len(first.fragment)
    # client_version inside the ClientHello is DTLS 1.2.
    assert int.from_bytes(first.fragment[12:14], "big") == DTLS_1_2


def test_the_hello_verify_request_of_an_mbedtls_server_parses() -> None:
    tls = mbedtls_tls()
    client_buffer = psk_client("device-1", b"k" * 16)
    with pytest.raises(tls.WantReadError):
        for _ in range(10):
            with contextlib.suppress(tls.WantWriteError):
                client_buffer.do_handshake()
    hello = client_buffer.peek_outgoing(65536)
    server_buffer = psk_server({"device-1": b"k" * 16})
    server_buffer.setcookieparam(b"client")
    server_buffer.receive_from_network(hello)
    with pytest.raises(tls.HelloVerifyRequest):
        for _ in range(10):
            with contextlib.suppress(tls.WantWriteError, tls.WantReadError):
                server_buffer.do_handshake()
    wire = server_buffer.peek_outgoing(65536)

    (record,) = parse_datagram(wire)
    assert encode_datagram([record]) == wire
    assert (record.content_type, record.epoch, record.sequence) == (HANDSHAKE, 0, 0)
    # hello_verify_request (3): server_version, then a cookie of cookie_length bytes (RFC 6347 §4.2.1).
    body = record.fragment[12:]
    assert record.fragment[0] == 3
    assert int.from_bytes(body[:2], "big") in (DTLS_1_2, DTLS_1_0)
    assert 0 < body[2] == len(body) - 3
