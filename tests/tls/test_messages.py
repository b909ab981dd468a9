"""DTLS handshake messages and extensions (RFC 6347 §4.2.1-§4.2.2, RFC 5246 §7.4, RFC 4279
§2, RFC 9146 §3, ...): bytes written out by hand from the RFCs' structures, round trips, and
hostile input; any bytes give a message or a ProtocolError, never another exception."""

from __future__ import annotations

import contextlib
import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lwm2m.errors import HandshakeFormatError, ProtocolError
from lwm2m.tls.messages import (
    DTLS_1_2,
    ClientHello,
    ClientKeyExchange,
    ConnectionIdExtension,
    EcPointFormatsExtension,
    ExtendedMasterSecretExtension,
    Extension,
    ExtensionType,
    Finished,
    HandshakeHeader,
    HandshakeMessage,
    HandshakeType,
    HelloVerifyRequest,
    MaxFragmentLengthExtension,
    RecordSizeLimitExtension,
    ServerHello,
    ServerHelloDone,
    ServerKeyExchange,
    ServerNameExtension,
    SessionTicketExtension,
    SignatureAlgorithmsExtension,
    SupportedGroupsExtension,
    UnknownExtension,
    encode_handshake,
    handshake_header_bytes,
    parse_extensions,
    parse_handshake_body,
    serialize_extensions,
    split_handshake_fragments,
)

PSK_CCM_8 = 0xC0A8
RANDOM = bytes(range(32))

# --- strategies ----------------------------------------------------------------------------

u16 = st.integers(0, 0xFFFF)
_known = {int(t) for t in ExtensionType}
extensions_strategy = st.lists(
    st.one_of(
        st.builds(ServerNameExtension, st.none() | st.binary(min_size=1, max_size=40)),
        st.builds(SupportedGroupsExtension, st.lists(u16, min_size=1, max_size=8).map(tuple)),
        st.builds(EcPointFormatsExtension, st.lists(st.integers(0, 255), min_size=1, max_size=4).map(tuple)),
        st.builds(SignatureAlgorithmsExtension, st.lists(u16, min_size=1, max_size=8).map(tuple)),
        st.builds(ExtendedMasterSecretExtension),
        st.builds(RecordSizeLimitExtension, st.integers(0, 0xFFFF)),
        st.builds(MaxFragmentLengthExtension, st.integers(0, 0xFF)),
        st.builds(SessionTicketExtension, st.binary(max_size=64)),
        st.builds(ConnectionIdExtension, st.binary(max_size=255)),
        st.builds(UnknownExtension, u16.filter(lambda t: t not in _known), st.binary(max_size=20)),
    ),
    max_size=6,
    unique_by=lambda e: e.extension_type,
).map(tuple)

client_hellos = st.builds(
    ClientHello,
    random=st.binary(min_size=32, max_size=32),
    cipher_suites=st.lists(u16, min_size=1, max_size=10).map(tuple),
    session_id=st.binary(max_size=32),
    cookie=st.binary(max_size=255),
    compression_methods=st.binary(min_size=1, max_size=3),
    extensions=extensions_strategy,
    client_version=u16,
).map(
    # A TLS ClientHello ({3, x}) has no cookie field (RFC 5246 §7.4.1.2): its cookie stays empty.
    lambda hello: dataclasses.replace(hello, cookie=b"") if hello.client_version >> 8 == 3 else hello
)
server_hellos = st.builds(
    ServerHello,
    random=st.binary(min_size=32, max_size=32),
    cipher_suite=u16,
    session_id=st.binary(max_size=32),
    compression_method=st.integers(0, 255),
    extensions=extensions_strategy,
    server_version=u16,
)
messages_strategy: st.SearchStrategy[HandshakeMessage] = st.one_of(
    client_hellos,
    server_hellos,
    st.builds(HelloVerifyRequest, st.binary(max_size=255), u16),
    st.builds(ServerKeyExchange, st.binary(max_size=300), st.binary(max_size=100)),
    st.builds(ServerHelloDone),
    st.builds(ClientKeyExchange, st.binary(max_size=128), st.binary(max_size=70)),
    st.builds(Finished, st.binary(min_size=12, max_size=12)),
)


# --- known bytes ---------------------------------------------------------------------------


def test_client_hello_bytes_written_from_the_rfc() -> None:
    body = (
        bytes.fromhex("fefd")  # client_version DTLS 1.2
        + RANDOM
        + bytes.fromhex("00")  # session_id<0..32>: empty
        + bytes.fromhex("04 c0ffee00")  # cookie<0..2^8-1>
        + bytes.fromhex("0004 c0a8 00ff")  # cipher_suites: PSK_WITH_AES_128_CCM_8, SCSV
        + bytes.fromhex("01 00")  # compression_methods: null
        + bytes.fromhex("000f")  # extensions<0..2^16-1>: 15 bytes
        + bytes.fromhex("0017 0000")  # extended_master_secret, empty
        + bytes.fromhex("0036 0001 00")  # connection_id: cid<0..2^8-1> empty
        + bytes.fromhex("001c 0002 0200")  # record_size_limit 512
    )
    hello = ClientHello.parse(body)
    assert hello.client_version == DTLS_1_2
    assert hello.random == RANDOM
    assert hello.cookie == bytes.fromhex("c0ffee00")
    assert hello.cipher_suites == (PSK_CCM_8, 0x00FF)
    assert hello.extensions == (
        ExtendedMasterSecretExtension(),
        ConnectionIdExtension(b""),
        RecordSizeLimitExtension(512),
    )
    assert hello.extension(ExtensionType.CONNECTION_ID) == ConnectionIdExtension(b"")
    assert hello.extension(ExtensionType.SERVER_NAME) is None
    assert hello.to_bytes() == body


def test_the_handshake_header_bytes() -> None:
    # RFC 6347 §4.2.2: type, uint24 length, uint16 message_seq, uint24 offset, uint24 fragment length
    raw = bytes.fromhex("01 000100 0002 000010 000020")
    header = HandshakeHeader.parse(raw)
    assert header == HandshakeHeader(HandshakeType.CLIENT_HELLO, 256, 2, 16, 32)
    assert header.to_bytes() == raw


@given(
    st.integers(0, 255),
    st.integers(0, 0xFFFFFF),
    st.integers(0, 0xFFFF),
    st.integers(0, 0xFFFFFF),
    st.integers(0, 0xFFFFFF),
)
def test_any_handshake_header_round_trips_or_is_refused(
    msg_type: int, length: int, seq: int, offset: int, fragment_length: int
) -> None:
    raw = (
        bytes((msg_type,))
        + length.to_bytes(3, "big")
        + seq.to_bytes(2, "big")
        + offset.to_bytes(3, "big")
        + fragment_length.to_bytes(3, "big")
    )
    if offset + fragment_length > length:
        with pytest.raises(HandshakeFormatError):
            HandshakeHeader.parse(raw)
        with pytest.raises(HandshakeFormatError):
            handshake_header_bytes(msg_type, length, seq, offset, fragment_length)
        return
    assert handshake_header_bytes(msg_type, length, seq, offset, fragment_length) == raw
    header = HandshakeHeader.parse(raw + b"after")
    assert (header.msg_type, header.length, header.message_seq) == (msg_type, length, seq)
    assert (header.fragment_offset, header.fragment_length) == (offset, fragment_length)
    assert header.to_bytes() == raw


@pytest.mark.parametrize(
    "fields",
    [(256, 0, 0, 0, 0), (1, 2**24, 0, 0, 0), (1, 0, 2**16, 0, 0), (1, 0, 0, -1, 0), (1, 0, 0, 0, -1)],
)
def test_handshake_header_fields_that_do_not_fit_are_refused(fields: tuple[int, int, int, int, int]) -> None:
    with pytest.raises(HandshakeFormatError):
        HandshakeHeader(*fields)
    with pytest.raises(HandshakeFormatError):
        handshake_header_bytes(*fields)


def test_a_handshake_header_shorter_than_12_bytes_is_refused() -> None:
    with pytest.raises(HandshakeFormatError):
        HandshakeHeader.parse(bytes(11))


def test_extension_bytes_written_from_the_rfcs() -> None:
    data = (
        bytes.fromhex("0000 000e 000c 00 0009") + b"localhost"  # server_name (RFC 6066 §3)
        + bytes.fromhex("000a 0004 0002 0017")  # supported_groups: secp256r1
        + bytes.fromhex("000b 0002 01 00")  # ec_point_formats: uncompressed
        + bytes.fromhex("000d 0004 0002 0403")  # signature_algorithms: ecdsa_secp256r1_sha256
        + bytes.fromhex("0023 0003 616263")  # session_ticket: the ticket, no inner length
        + bytes.fromhex("0036 0004 03 010203")  # connection_id: cid 010203
        + bytes.fromhex("fe00 0002 abcd")  # unknown, kept
    )  # fmt: skip
    parsed = parse_extensions(data)
    assert parsed == (
        ServerNameExtension(b"localhost"),
        SupportedGroupsExtension((23,)),
        EcPointFormatsExtension((0,)),
        SignatureAlgorithmsExtension((0x0403,)),
        SessionTicketExtension(b"abc"),
        ConnectionIdExtension(b"\x01\x02\x03"),
        UnknownExtension(0xFE00, b"\xab\xcd"),
    )
    assert serialize_extensions(parsed) == len(data).to_bytes(2, "big") + data


def test_hello_verify_request_and_the_psk_messages() -> None:
    assert HelloVerifyRequest.parse(bytes.fromhex("fefd 02 abcd")) == HelloVerifyRequest(b"\xab\xcd")
    assert ServerKeyExchange.parse(bytes.fromhex("0002 6869")) == ServerKeyExchange(b"hi")
    assert ClientKeyExchange.parse(bytes.fromhex("0003 646576")) == ClientKeyExchange(b"dev")
    assert ServerHelloDone.parse(b"") == ServerHelloDone()
    assert Finished.parse(bytes(12)) == Finished(bytes(12))


def test_a_server_hello_may_end_without_extensions() -> None:
    body = bytes.fromhex("fefd") + RANDOM + bytes.fromhex("00 c0a8 00")
    hello = ServerHello.parse(body)
    assert (hello.cipher_suite, hello.extensions) == (PSK_CCM_8, ())
    assert hello.to_bytes() == body


def test_encode_and_split_several_messages_in_one_record() -> None:
    payload = encode_handshake(HandshakeType.SERVER_HELLO_DONE, 3, b"") + encode_handshake(
        HandshakeType.FINISHED, 4, bytes(12)
    )
    parts = split_handshake_fragments(payload)
    assert [(h.msg_type, h.message_seq, body) for h, body in parts] == [(14, 3, b""), (20, 4, bytes(12))]


# --- round trips ---------------------------------------------------------------------------


@given(messages_strategy)
def test_every_message_round_trips(message: HandshakeMessage) -> None:
    body = message.to_bytes()
    assert parse_handshake_body(message.msg_type, body) == message
    [(header, fragment)] = split_handshake_fragments(encode_handshake(message.msg_type, 7, body))
    assert (header.message_seq, header.length, fragment) == (7, len(body), body)


@given(extensions_strategy)
def test_every_extension_round_trips(extensions: tuple[Extension, ...]) -> None:
    block = serialize_extensions(extensions)
    assert parse_extensions(block[2:]) == extensions


# --- hostile input -------------------------------------------------------------------------


@given(client_hellos | server_hellos, st.data())
def test_every_truncation_of_a_hello_is_refused(
    hello: ClientHello | ServerHello, data: st.DataObject
) -> None:
    body = hello.to_bytes()
    # Cutting a hello exactly before its extensions block gives a valid hello without them.
    cut = data.draw(st.integers(0, len(body) - 1))
    try:
        shorter = parse_handshake_body(hello.msg_type, body[:cut])
    except HandshakeFormatError:
        return
    assert not shorter.extensions and hello.extensions  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("msg_type", "body", "what"),
    [
        (1, bytes.fromhex("fefd") + RANDOM + bytes.fromhex("21") + bytes(33), "session_id"),
        (1, bytes.fromhex("fefd") + RANDOM + bytes.fromhex("00 00 0003 c0a800 0100"), "odd length"),
        (1, bytes.fromhex("fefd") + RANDOM + bytes.fromhex("00 00 0000 0100"), "cipher_suites"),
        (1, bytes.fromhex("fefd") + RANDOM + bytes.fromhex("00 00 0002 c0a8 00"), "compression_methods"),
        (
            1,
            bytes.fromhex("fefd") + RANDOM + bytes.fromhex("00 00 0002 c0a8 0100 0004 0017 0000 00"),
            "after",
        ),
        (
            1,
            bytes.fromhex("fefd") + RANDOM + bytes.fromhex("00 00 0002 c0a8 0100 0008 0017 0000 0017 0000"),
            "twice",
        ),
        (
            2,
            bytes.fromhex("fefd") + RANDOM + bytes.fromhex("00 c0a8 00 0007 001c 0003 004000"),
            "record_size_limit",
        ),
        (
            2,
            bytes.fromhex("fefd") + RANDOM + bytes.fromhex("00 c0a8 00 0005 0017 0001 00"),
            "extended_master",
        ),
        (2, bytes.fromhex("fefd") + RANDOM + bytes.fromhex("00 c0a8 00 0006 0036 0002 0500"), "cid"),
        (3, bytes.fromhex("fefd 03 0102"), "cookie"),
        (3, bytes.fromhex("fefd 01 01 ff"), "after"),
        (12, bytes.fromhex("0005 0102"), "psk_identity_hint"),
        (14, b"\x00", "ServerHelloDone"),
        (16, bytes.fromhex("0081") + bytes(129), "psk_identity"),
        (20, bytes(11), "verify_data"),
        (20, bytes(13), "verify_data"),
        (11, b"", "type 11"),
    ],
)
def test_malformed_bodies_are_refused_naming_the_field(msg_type: int, body: bytes, what: str) -> None:
    with pytest.raises(HandshakeFormatError, match=what):
        parse_handshake_body(msg_type, body)


@pytest.mark.parametrize(
    "data",
    [
        bytes.fromhex("0000 0003 0001 00"),  # server_name: a name_type with no name
        bytes.fromhex("0000 0006 0004 01 0001 61"),  # server_name: an unknown name_type
        bytes.fromhex("0000 000a 0008 00 0001 61 00 0001 62"),  # two host names
        bytes.fromhex("000a 0002 0000"),  # supported_groups: empty list
        bytes.fromhex("000a 0005 0003 001700"),  # supported_groups: odd
        bytes.fromhex("000b 0001 00"),  # ec_point_formats: empty list
        bytes.fromhex("000d 0004 0003 0403"),  # signature_algorithms: inner length past the data
        bytes.fromhex("001c 0001 40"),  # record_size_limit: one byte
        bytes.fromhex("0036 0000"),  # connection_id: no length byte
        bytes.fromhex("0017 0005 00"),  # extension_data longer than what remains
        bytes.fromhex("00"),  # a truncated extension type
    ],
)
def test_malformed_extensions_are_refused(data: bytes) -> None:
    with pytest.raises(HandshakeFormatError):
        parse_extensions(data)


@pytest.mark.parametrize(
    "message",
    [
        ClientHello(bytes(31), (PSK_CCM_8,)),
        ClientHello(RANDOM, ()),
        ClientHello(RANDOM, (PSK_CCM_8,), session_id=bytes(33)),
        ClientHello(RANDOM, (PSK_CCM_8,), cookie=bytes(256)),
        ClientHello(RANDOM, (0x10000,)),
        ClientHello(RANDOM, (PSK_CCM_8,), extensions=(ExtendedMasterSecretExtension(),) * 2),
        ServerHello(RANDOM, PSK_CCM_8, compression_method=256),
        HelloVerifyRequest(bytes(256)),
        ClientKeyExchange(bytes(129)),
        Finished(bytes(11)),
        ServerHello(RANDOM, PSK_CCM_8, extensions=(ConnectionIdExtension(bytes(256)),)),
    ],
)
def test_values_that_do_not_fit_are_refused_when_serialized(message: HandshakeMessage) -> None:
    with pytest.raises(HandshakeFormatError):
        message.to_bytes()


def test_impossible_headers_and_extension_values_are_refused() -> None:
    with pytest.raises(HandshakeFormatError, match="runs past"):
        HandshakeHeader.parse(bytes.fromhex("01 000010 0000 000008 000009"))
    with pytest.raises(HandshakeFormatError):
        HandshakeHeader.parse(bytes(11))
    with pytest.raises(HandshakeFormatError):
        RecordSizeLimitExtension(0x10000)
    with pytest.raises(HandshakeFormatError, match="announces"):
        split_handshake_fragments(bytes.fromhex("14 00000c 0000 000000 00000c") + bytes(11))


# --- fuzzing: any bytes give a result or a ProtocolError -----------------------------------


@given(st.sampled_from([int(t) for t in HandshakeType]), st.binary(max_size=300))
def test_fuzz_bodies(msg_type: int, body: bytes) -> None:
    try:
        message = parse_handshake_body(msg_type, body)
    except ProtocolError:
        return
    assert parse_handshake_body(msg_type, message.to_bytes()) == message


@given(st.binary(max_size=200))
def test_fuzz_extensions(data: bytes) -> None:
    try:
        parsed = parse_extensions(data)
    except ProtocolError:
        return
    assert parse_extensions(serialize_extensions(parsed)[2:]) == parsed


@given(st.binary(max_size=200))
def test_fuzz_fragments(data: bytes) -> None:
    try:
        parts = split_handshake_fragments(data)
    except ProtocolError:
        return
    assert b"".join(h.to_bytes() + body for h, body in parts) == data


@given(client_hellos, st.binary(min_size=1, max_size=4), st.integers(0, 10_000))
def test_fuzz_mutated_client_hellos(hello: ClientHello, noise: bytes, where: int) -> None:
    body = bytearray(hello.to_bytes())
    at = where % len(body)
    body[at : at + len(noise)] = noise
    with contextlib.suppress(ProtocolError):
        ClientHello.parse(bytes(body))
