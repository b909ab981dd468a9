"""TLS 1.2 over a byte stream (RFC 5246) through the DTLS engine's handshake: the stream record
reader and handshake splitter (fuzzed), our client against our server in memory with any
chunking of the bytes, and hostile input ending the connection with an alert, memory bounded."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lwm2m.errors import HandshakeFormatError, RecordError, RecordOverflow
from lwm2m.tls.connection import (
    ApplicationData,
    ConnectionClosed,
    ConnectionConfig,
    DtlsConnection,
    DtlsRole,
    HandshakeComplete,
    HandshakeFailure,
)
from lwm2m.tls.record import MAX_CIPHERTEXT
from lwm2m.tls.stream import (
    MAX_HANDSHAKE_MESSAGE,
    HandshakeStream,
    StreamRecordReader,
    encode_stream_record,
    tls_handshake_bytes,
    tls_transcript,
)

IDENTITY = b"device-1"
PSK = bytes(range(16))
ALERT, HANDSHAKE, APPLICATION_DATA = 21, 22, 23


def _events(connection: DtlsConnection) -> list[object]:
    out = []
    while (event := connection.next_event()) is not None:
        out.append(event)
    return out


def _pair(chunk: int = 1 << 20) -> tuple[DtlsConnection, DtlsConnection]:
    client = DtlsConnection(
        DtlsRole.CLIENT, ConnectionConfig(psk_identity=IDENTITY, psk=PSK), 0.0, stream=True
    )
    server = DtlsConnection(
        DtlsRole.SERVER, ConnectionConfig(psk_lookup={IDENTITY: PSK}.get), 0.0, stream=True
    )
    _pump(client, server, chunk)
    return client, server


def _pump(a: DtlsConnection, b: DtlsConnection, chunk: int) -> None:
    for _ in range(10):
        moved = False
        for sender, receiver in ((a, b), (b, a)):
            data = sender.data_to_send()
            moved = moved or bool(data)
            for at in range(0, len(data), chunk):
                receiver.receive_data(data[at : at + chunk])
        if not moved:
            return


# --- the stream decoders -----------------------------------------------------------------------


@given(st.lists(st.tuples(st.sampled_from([20, 21, 22, 23]), st.binary(max_size=300)), max_size=6), st.data())
def test_reader_takes_any_chunking(records: list[tuple[int, bytes]], data: st.DataObject) -> None:
    stream = b"".join(encode_stream_record(t, 0x0303, f) for t, f in records)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    reader = StreamRecordReader()
    got: list[tuple[int, int, bytes]] = []
    for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        got += reader.feed(stream[start:end])
    assert got == [(t, 0x0303, f) for t, f in records]
    assert reader.buffered == 0


@settings(max_examples=300)
@given(st.lists(st.binary(max_size=64), max_size=8))
def test_reader_fuzz_bounded(chunks: list[bytes]) -> None:
    reader = StreamRecordReader()
    for chunk in chunks:
        try:
            reader.feed(chunk)
        except RecordError:
            reader = StreamRecordReader()
        assert reader.buffered <= 5 + MAX_CIPHERTEXT


@settings(max_examples=300)
@given(st.lists(st.binary(max_size=64), max_size=8))
def test_handshake_stream_fuzz(chunks: list[bytes]) -> None:
    splitter = HandshakeStream()
    for chunk in chunks:
        try:
            for msg_type, body in splitter.feed(chunk):
                assert 0 <= msg_type <= 255 and len(body) <= MAX_HANDSHAKE_MESSAGE
        except HandshakeFormatError:
            splitter = HandshakeStream()
        assert splitter.buffered <= 4 + MAX_HANDSHAKE_MESSAGE


def test_handshake_messages_span_and_share_records() -> None:
    one, two = tls_handshake_bytes(1, b"a" * 10), tls_handshake_bytes(2, b"")
    splitter = HandshakeStream()
    assert splitter.feed(one[:3]) == []
    assert splitter.feed(one[3:] + two) == [(1, b"a" * 10), (2, b"")]


@pytest.mark.parametrize(
    ("head", "error"),
    [
        (bytes((22, 3, 3)) + (MAX_CIPHERTEXT + 1).to_bytes(2, "big"), RecordOverflow),
        (bytes((22, 0xFE, 0xFD, 0, 1)), RecordError),  # a DTLS version
        (b"GET / HTTP/1.1\r\n", RecordError),  # garbage
        (bytes((25, 3, 3, 0, 1)), RecordError),  # tls12_cid is DTLS's
    ],
    ids=["oversize", "dtls-version", "garbage", "cid-type"],
)
def test_reader_refuses(head: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        StreamRecordReader().feed(head)


def test_transcript_has_tls_headers() -> None:
    dtls = bytes((1, 0, 0, 2, 0, 5, 0, 0, 0, 0, 0, 2)) + b"ab"
    assert tls_transcript([dtls]) == bytes((1, 0, 0, 2)) + b"ab"


# --- our client against our server ---------------------------------------------------------------


@pytest.mark.parametrize("chunk", [1, 5, 1 << 20])
def test_handshake_and_data_in_any_chunking(chunk: int) -> None:
    client, server = _pair(chunk)
    assert client.established and server.established and client.stream
    assert _events(server) == [HandshakeComplete(IDENTITY)]
    assert server.peer_identity == IDENTITY
    assert _events(client) == [HandshakeComplete(IDENTITY)]
    big = bytes(range(256)) * 200  # 51,200 bytes: four records at most 2^14 each
    client.send_application_data(big)
    data = client.data_to_send()
    assert data.count(bytes((APPLICATION_DATA, 3, 3))) >= 4
    server.receive_data(data)
    assert b"".join(e.data for e in _events(server) if isinstance(e, ApplicationData)) == big
    server.send_application_data(b"back")
    client.receive_data(server.data_to_send())
    assert _events(client) == [ApplicationData(b"back")]
    assert client.get_timer() is None and server.get_timer() is None  # nothing is ever resent


def test_close_notify_is_answered() -> None:
    client, server = _pair()
    _events(client), _events(server)
    client.close()
    server.receive_data(client.data_to_send())
    assert _events(server) == [ConnectionClosed("close_notify")]
    assert server.closed and server.data_to_send()  # its own close_notify


def test_wrong_psk_fails_both_sides() -> None:
    client = DtlsConnection(
        DtlsRole.CLIENT, ConnectionConfig(psk_identity=IDENTITY, psk=bytes(16)), 0.0, stream=True
    )
    server = DtlsConnection(
        DtlsRole.SERVER, ConnectionConfig(psk_lookup={IDENTITY: PSK}.get), 0.0, stream=True
    )
    _pump(client, server, 1 << 20)
    assert server.closed and not server.established
    assert any(isinstance(e, HandshakeFailure) for e in _events(server))
    assert any(isinstance(e, HandshakeFailure) for e in _events(client))


# --- hostile input ------------------------------------------------------------------------------


def _fatal_alert(data: bytes) -> bool:
    # An unprotected alert during the handshake: type 21, TLS 1.2, two bytes, level 2.
    return data[:5] == bytes((ALERT, 3, 3, 0, 2)) and data[5] == 2


@pytest.mark.parametrize(
    "data",
    [
        bytes((22, 3, 3)) + (MAX_CIPHERTEXT + 1).to_bytes(2, "big"),
        bytes((22, 3, 3, 0x40, 0x01)) + bytes(0x4001),  # a plaintext over 2^14
        bytes((22, 0xFE, 0xFD, 0, 1, 0)),
        b"\x00" * 64,
        encode_stream_record(APPLICATION_DATA, 0x0303, b"early"),
        encode_stream_record(20, 0x0303, b"\x01"),  # ChangeCipherSpec before any key
        encode_stream_record(HANDSHAKE, 0x0303, tls_handshake_bytes(16, b"\x00\x01x")),  # not a hello
        encode_stream_record(HANDSHAKE, 0x0303, tls_handshake_bytes(1, b"junk")),  # a bad hello
        encode_stream_record(HANDSHAKE, 0x0303, bytes((1, 2, 0, 0))),  # over the message limit
    ],
    ids=[
        "oversize",
        "plaintext-over-2^14",
        "bad-version",
        "garbage",
        "data",
        "ccs",
        "not-hello",
        "bad-hello",
        "huge-message",
    ],
)
def test_hostile_input_to_a_server_ends_it_with_an_alert(data: bytes) -> None:
    server = DtlsConnection(
        DtlsRole.SERVER, ConnectionConfig(psk_lookup={IDENTITY: PSK}.get), 0.0, stream=True
    )
    server.receive_data(data)
    assert server.closed
    assert [type(e) for e in _events(server)] == [HandshakeFailure]
    assert _fatal_alert(server.data_to_send())
    server.receive_data(b"more")  # a closed connection takes nothing more
    assert server.buffered_bytes == 0 and not server.data_to_send()


def test_stream_cut_mid_record_holds_at_most_one_record() -> None:
    server = DtlsConnection(
        DtlsRole.SERVER, ConnectionConfig(psk_lookup={IDENTITY: PSK}.get), 0.0, stream=True
    )
    server.receive_data(bytes((22, 3, 3, 0x40, 0x00)) + bytes(1000))
    assert not server.closed and server.buffered_bytes == 1005 and _events(server) == []


def test_tampered_record_after_the_handshake_closes_with_bad_record_mac() -> None:
    client, server = _pair()
    _events(client), _events(server)
    client.send_application_data(b"hello")
    record = bytearray(client.data_to_send())
    record[-1] ^= 1
    server.receive_data(bytes(record))
    assert [type(e) for e in _events(server)] == [ConnectionClosed]
    answer = server.data_to_send()
    assert answer[:5] == bytes((ALERT, 3, 3, 0, 2 + 8 + 8))  # a protected alert
    assert server.closed


def test_renegotiation_is_refused() -> None:
    client, server = _pair()
    _events(client), _events(server)
    # A HelloRequest (RFC 5246 §7.4.1.1) from the server, under its keys.
    server._outbox.append(server._record(1, HANDSHAKE, tls_handshake_bytes(0, b"")))
    client.receive_data(server.data_to_send())
    assert client.established and _events(client) == []
    server.receive_data(client.data_to_send())  # a warning no_renegotiation; the link stays up
    assert server.established


def test_a_dtls_connection_takes_no_stream() -> None:
    client = DtlsConnection(DtlsRole.CLIENT, ConnectionConfig(psk_identity=IDENTITY, psk=PSK), 0.0)
    with pytest.raises(Exception, match="stream"):
        client.receive_data(b"")
