"""tls/negotiation.py and its extensions in tls/messages.py: server_name host names (RFC 6066
§3), max_fragment_length (RFC 6066 §4), record_size_limit (RFC 8449 §4, §5), with the bytes of
the RFCs' presentation language written out, hostile values, and fuzzing of the parsers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lwm2m.errors import DtlsError, HandshakeAborted, HandshakeFormatError, ProtocolError
from lwm2m.tls.messages import (
    ClientHello,
    MaxFragmentLengthExtension,
    RecordSizeLimitExtension,
    ServerHello,
    ServerNameExtension,
    parse_extensions,
    serialize_extensions,
)
from lwm2m.tls.negotiation import (
    DEFAULT_RECORD_SIZE_LIMIT,
    SizeLimits,
    check_limits,
    client_extensions,
    client_limits,
    parse_host_name,
    server_extensions,
    sni_host_name,
)

RANDOM = bytes(32)


def _client_hello(*extensions: object) -> ClientHello:
    return ClientHello(RANDOM, (0xC0A8,), extensions=extensions)  # type: ignore[arg-type]


def _server_hello(*extensions: object) -> ServerHello:
    return ServerHello(RANDOM, 0xC0A8, extensions=extensions)  # type: ignore[arg-type]


# --- the extensions' bytes -------------------------------------------------------------------


def test_max_fragment_length_bytes() -> None:
    # RFC 6066 §4: enum { 2^9(1), 2^10(2), 2^11(3), 2^12(4), (255) } MaxFragmentLength.
    block = bytes.fromhex("0001 0001 01")
    [extension] = parse_extensions(block)
    assert extension == MaxFragmentLengthExtension(1)
    assert extension.length == 512
    assert serialize_extensions([extension]) == bytes.fromhex("0005") + block
    assert [MaxFragmentLengthExtension(code).length for code in range(6)] == [
        None,
        512,
        1024,
        2048,
        4096,
        None,
    ]


def test_record_size_limit_below_64_parses_for_the_connection_to_refuse() -> None:
    # RFC 8449 §4: such a value is an illegal_parameter, not a decode_error.
    [extension] = parse_extensions(bytes.fromhex("001c 0002 003f"))
    assert extension == RecordSizeLimitExtension(63)


@pytest.mark.parametrize(
    "block",
    [
        bytes.fromhex("0001 0000"),  # max_fragment_length: no byte
        bytes.fromhex("0001 0002 0102"),  # two bytes
        bytes.fromhex("001c 0001 40"),  # record_size_limit: one byte
    ],
)
def test_malformed_size_extensions_are_refused(block: bytes) -> None:
    with pytest.raises(HandshakeFormatError):
        parse_extensions(block)


def test_extension_values_out_of_range_cannot_be_made() -> None:
    with pytest.raises(HandshakeFormatError):
        MaxFragmentLengthExtension(256)
    with pytest.raises(HandshakeFormatError):
        RecordSizeLimitExtension(-1)


# --- host names --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "sent"),
    [
        ("lwm2m.example", b"lwm2m.example"),
        ("LwM2M.Example.", b"LwM2M.Example"),  # no trailing dot on the wire (RFC 6066 §3)
        ("bücher.example", b"xn--bcher-kva.example"),  # IDNA A-labels
        ("_dtls.node-1.example", b"_dtls.node-1.example"),
        ("192.0.2.1", None),  # RFC 6066 §3: literal addresses are not permitted
        ("2001:db8::1", None),
        ("[2001:db8::1]", None),
        (None, None),
    ],
)
def test_what_a_client_sends_for_a_name(name: str | None, sent: bytes | None) -> None:
    assert sni_host_name(name) == sent


@pytest.mark.parametrize("name", ["", "bad name", "-lead.example", "a..b", "x" * 64 + ".example", "a" * 254])
def test_a_client_name_that_is_no_host_name_is_a_configuration_error(name: str) -> None:
    with pytest.raises(DtlsError):
        sni_host_name(name)


def test_the_server_reads_names_in_lower_case_and_ignores_addresses() -> None:
    assert parse_host_name(b"LwM2M.Example") == "lwm2m.example"
    assert parse_host_name(b"192.0.2.1") is None
    assert parse_host_name(b"::1") is None


@pytest.mark.parametrize("raw", [b"bad name", b"lwm2m.example.", b"a\x00b", "bü".encode(), b"-x", b"." * 3])
def test_the_server_refuses_malformed_names(raw: bytes) -> None:
    with pytest.raises(HandshakeFormatError):
        parse_host_name(raw)


# --- negotiation ----------------------------------------------------------------------------


def test_configuration_limits() -> None:
    check_limits(64, 512)
    check_limits(None, None)
    for limit, length in ((63, None), (65536, None), (None, 1000), (None, 8192)):
        with pytest.raises(DtlsError):
            check_limits(limit, length)


def test_client_extensions_in_order() -> None:
    assert client_extensions(b"a.example", 256, 1024) == (
        ServerNameExtension(b"a.example"),
        MaxFragmentLengthExtension(2),
        RecordSizeLimitExtension(256),
    )
    assert client_extensions(None, None, None) == ()


def test_the_server_takes_record_size_limit_over_max_fragment_length() -> None:
    hello = _client_hello(MaxFragmentLengthExtension(1), RecordSizeLimitExtension(300))
    answer, limits = server_extensions(hello, 1000)
    assert answer == (RecordSizeLimitExtension(1000),)  # RFC 8449 §5: max_fragment_length ignored
    assert limits == SizeLimits(300, 1000)
    # A server without record_size_limit takes max_fragment_length, both ways.
    answer, limits = server_extensions(hello, None)
    assert answer == (MaxFragmentLengthExtension(1),)
    assert limits == SizeLimits(512, 512)
    # Defaults bound nothing: no check on receipt; a huge limit counts as 2^14 + 1.
    answer, limits = server_extensions(
        _client_hello(RecordSizeLimitExtension(0xFFFF)), DEFAULT_RECORD_SIZE_LIMIT
    )
    assert limits == SizeLimits(DEFAULT_RECORD_SIZE_LIMIT, None)
    assert server_extensions(_client_hello(), 256) == ((), SizeLimits())


@pytest.mark.parametrize(
    "extension", [RecordSizeLimitExtension(63), RecordSizeLimitExtension(0), MaxFragmentLengthExtension(5)]
)
def test_the_server_refuses_illegal_values(extension: object) -> None:
    with pytest.raises(HandshakeAborted) as caught:
        server_extensions(_client_hello(extension), 256)
    assert caught.value.alert == 47  # illegal_parameter


def test_the_client_takes_the_answers() -> None:
    assert client_limits(_server_hello(RecordSizeLimitExtension(128)), 256, None) == SizeLimits(128, 256)
    assert client_limits(_server_hello(MaxFragmentLengthExtension(3)), None, 2048) == SizeLimits(2048, 2048)
    assert client_limits(_server_hello(), 256, 2048) == SizeLimits()


@pytest.mark.parametrize(
    ("extensions", "limit", "length", "alert"),
    [
        ((RecordSizeLimitExtension(63),), 256, None, 47),
        ((MaxFragmentLengthExtension(1),), 256, None, 47),  # not asked for
        ((MaxFragmentLengthExtension(2),), None, 512, 47),  # another value
        ((MaxFragmentLengthExtension(1), RecordSizeLimitExtension(256)), 256, 512, 47),  # RFC 8449 §5
        ((RecordSizeLimitExtension(256),), None, None, 110),  # not offered
    ],
)
def test_the_client_refuses_answers(
    extensions: tuple[object, ...], limit: int | None, length: int | None, alert: int
) -> None:
    with pytest.raises(HandshakeAborted) as caught:
        client_limits(_server_hello(*extensions), limit, length)
    assert caught.value.alert == alert


# --- fuzzing: any bytes give a result or a ProtocolError ------------------------------------


@pytest.mark.parametrize(
    "extension_type",
    [MaxFragmentLengthExtension, RecordSizeLimitExtension],
    ids=["max_fragment_length", "record_size_limit"],
)
@given(data=st.binary(max_size=8))
def test_fuzz_size_extensions(
    extension_type: type[MaxFragmentLengthExtension] | type[RecordSizeLimitExtension], data: bytes
) -> None:
    try:
        extension = extension_type.parse_data(data)
    except ProtocolError:
        return
    assert extension.data() == data


@given(st.binary(max_size=300))
def test_fuzz_host_names(raw: bytes) -> None:
    try:
        name = parse_host_name(raw)
    except ProtocolError:
        return
    if name is not None:
        # Whatever the server takes, a client would send the same way.
        assert sni_host_name(name) == name.encode()


@given(
    st.from_regex(
        r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?){0,4}", fullmatch=True
    )
)
def test_fuzz_names_round_trip(name: str) -> None:
    sent = sni_host_name(name)
    if sent is None:  # all digits and dots can read as an address
        return
    assert (
        parse_host_name(ServerNameExtension.parse_data(ServerNameExtension(sent).data()).host_name or b"")
        == name
    )


@given(
    st.lists(
        st.one_of(
            st.builds(RecordSizeLimitExtension, st.integers(0, 0xFFFF)),
            st.builds(MaxFragmentLengthExtension, st.integers(0, 255)),
        ),
        max_size=2,
        unique_by=lambda e: e.extension_type,
    ),
    st.none() | st.integers(64, 0xFFFF),
)
def test_fuzz_server_negotiation(extensions: list[object], own: int | None) -> None:
    try:
        answer, limits = server_extensions(_client_hello(*extensions), own)
    except HandshakeAborted as error:
        assert error.alert == 47
        return
    assert len(answer) <= 1
    assert 64 <= limits.send <= DEFAULT_RECORD_SIZE_LIMIT
