"""server_name, record_size_limit and max_fragment_length in tls/connection.py: our client
against our server in memory, the bytes on the wire checked against the limits (record
plaintext lengths, handshake fragments, the blocks of a large CoAP payload), and hostile hellos
answered with the alerts of RFC 6066 and RFC 8449."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.helpers.certificates import CertificateAuthority
from tests.helpers.dtls_engine import ADDRESS, client_config, counter_random, events, pair, run, server_config

from lwm2m.coap.blockwise import block_slice
from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, Type
from lwm2m.coap.option import BlockOption
from lwm2m.errors import DtlsError
from lwm2m.tls.connection import (
    ApplicationData,
    ConnectionClosed,
    ConnectionConfig,
    DtlsConnection,
    DtlsRole,
    HandshakeComplete,
    HandshakeFailure,
)
from lwm2m.tls.messages import (
    ClientHello,
    Extension,
    ExtensionType,
    MaxFragmentLengthExtension,
    RecordSizeLimitExtension,
    ServerHello,
    ServerNameExtension,
    UnknownExtension,
    encode_handshake,
    split_handshake_fragments,
)
from lwm2m.tls.negotiation import SizeLimits
from lwm2m.tls.record import ALERT, DTLS_1_2, HANDSHAKE, DtlsRecord, parse_datagram
from lwm2m.tls.tickets import SessionCache

HOST = "lwm2m.example"
CCM_8_OVERHEAD = 8 + 8  # explicit nonce and tag around the plaintext (RFC 6655 §3)
RECORD_OVERFLOW, ILLEGAL_PARAMETER, BAD_CERTIFICATE, DECODE_ERROR, UNSUPPORTED_EXTENSION = 22, 47, 42, 50, 110


class Wire:
    """A filter for :func:`run` that keeps what each side sent: its records, the plaintext
    length of each protected one, the hellos, and the alerts."""

    def __init__(self, change: Callable[[str, bytes], bytes] | None = None) -> None:
        self.records: dict[str, list[DtlsRecord]] = {"client": [], "server": []}
        self.hellos: dict[str, ClientHello | ServerHello] = {}
        self.change = change

    def __call__(self, name: str, datagrams: list[bytes]) -> list[bytes]:
        out = []
        for datagram in datagrams:
            if self.change is not None:
                datagram = self.change(name, datagram)
            # The receiver's CID is 6 bytes (the default) once in use.
            for record in parse_datagram(datagram, 6):
                self.records[name].append(record)
                if record.content_type == HANDSHAKE and record.epoch == 0:
                    for header, body in split_handshake_fragments(record.fragment):
                        if header.msg_type in (1, 2) and header.fragment_length == header.length:
                            parse = ClientHello.parse if header.msg_type == 1 else ServerHello.parse
                            self.hellos[name] = parse(body)
            out.append(datagram)
        return out

    def plaintext_sizes(self, name: str) -> list[int]:
        # Protected records: the inner plaintext (content and, with a CID, its type byte).
        return [len(r.fragment) - CCM_8_OVERHEAD for r in self.records[name] if r.epoch == 1]

    def handshake_fragment_sizes(self, name: str) -> list[int]:
        return [len(r.fragment) for r in self.records[name] if r.epoch == 0 and r.content_type == HANDSHAKE]

    def alerts(self, name: str) -> list[int]:
        return [r.fragment[1] for r in self.records[name] if r.content_type == ALERT and r.epoch == 0]


def _hello_with(hello_type: int, change: Callable[[Any], Any]) -> Callable[[str, bytes], bytes]:
    """Rewrites the (whole, first-fragment) hello of ``hello_type`` with ``change``."""

    def rewrite(name: str, datagram: bytes) -> bytes:
        records = []
        for record in parse_datagram(datagram, 6):
            if record.content_type == HANDSHAKE and record.epoch == 0:
                [(header, body)] = split_handshake_fragments(record.fragment)
                if header.msg_type == hello_type:
                    parse = ClientHello.parse if hello_type == 1 else ServerHello.parse
                    body = change(parse(body)).to_bytes()
                    message = encode_handshake(hello_type, header.message_seq, body)
                    record = DtlsRecord(HANDSHAKE, DTLS_1_2, 0, record.sequence, message)
            records.append(record.encode())
        return b"".join(records)

    return rewrite


def _extensions(hello: Any, *, drop: tuple[int, ...] = (), add: tuple[Extension, ...] = ()) -> Any:
    kept = tuple(e for e in hello.extensions if e.extension_type not in drop)
    return replace(hello, extensions=kept + add)


def _failed(connection: DtlsConnection) -> str:
    [event] = events(connection)
    assert isinstance(event, HandshakeFailure)
    assert connection.closed
    return event.reason


# --- server_name (RFC 6066 §3) -------------------------------------------------------------


def test_the_client_names_the_server_and_the_server_answers_empty() -> None:
    wire = Wire()
    client, server = pair(server_config(), client_config(server_name="LwM2M.Example."))
    run(client, server, wire)
    assert client.established and server.established
    assert wire.hellos["client"].extension(ExtensionType.SERVER_NAME) == ServerNameExtension(b"LwM2M.Example")
    assert wire.hellos["server"].extension(ExtensionType.SERVER_NAME) == ServerNameExtension(None)
    assert client.server_name == "LwM2M.Example"
    assert server.server_name == "lwm2m.example"


@pytest.mark.parametrize("address", ["192.0.2.1", "2001:db8::1", None])
def test_no_server_name_for_an_address_or_none(address: str | None) -> None:
    wire = Wire()
    client, server = pair(server_config(), client_config(server_name=address))
    run(client, server, wire)
    assert client.established
    assert wire.hellos["client"].extension(ExtensionType.SERVER_NAME) is None
    assert wire.hellos["server"].extension(ExtensionType.SERVER_NAME) is None
    assert client.server_name is None and server.server_name is None


def test_a_client_name_that_is_no_host_name_fails_at_once() -> None:
    with pytest.raises(DtlsError):
        DtlsConnection(DtlsRole.CLIENT, client_config(server_name="not a host"), 0.0)


@pytest.mark.parametrize(
    "extension",
    [
        ServerNameExtension(b"bad name"),
        ServerNameExtension(b"lwm2m.example."),
        ServerNameExtension("lwm2m.bücher".encode()),
        ServerNameExtension(None),  # an empty server_name in a ClientHello
    ],
)
def test_the_server_refuses_a_malformed_name(extension: ServerNameExtension) -> None:
    wire = Wire(_hello_with(1, lambda hello: _extensions(hello, add=(extension,))))
    client, server = pair(server_config(cookie_checker=None), client_config())
    run(client, server, wire)
    assert wire.alerts("server") == [DECODE_ERROR]
    assert "server_name" in _failed(server)
    assert not client.established


def test_a_hello_whose_server_name_does_not_parse_is_dropped_statelessly() -> None:
    # Bytes that are no server_name list fail the hello's own parse: before the cookie the
    # server keeps nothing and answers nothing (RFC 6347 §4.2.1, §4.1.2.7).
    hostile = UnknownExtension(0, bytes.fromhex("0003 0001 00"))  # a name_type with no name
    change = _hello_with(1, lambda hello: _extensions(hello, add=(hostile,)))
    client, server = pair(server_config(), client_config())
    [datagram] = client.datagrams_to_send(0.0)
    server.receive_datagram(change("client", datagram), 0.0)
    assert server.datagrams_to_send(0.0) == []
    assert server.awaiting_hello and events(server) == []


def test_an_address_in_server_name_is_ignored() -> None:
    wire = Wire(_hello_with(1, lambda hello: _extensions(hello, add=(ServerNameExtension(b"192.0.2.1"),))))
    client, server = pair(server_config(cookie_checker=None), client_config())
    run(client, server, wire)
    assert server.server_name is None
    assert wire.hellos["server"].extension(ExtensionType.SERVER_NAME) is None


@pytest.mark.parametrize(
    ("server_name", "answer", "alert"),
    [
        (HOST, ServerNameExtension(b"other.example"), DECODE_ERROR),  # RFC 6066 §3: empty
        (None, ServerNameExtension(None), UNSUPPORTED_EXTENSION),  # not asked for
    ],
)
def test_the_client_refuses_a_wrong_server_name_answer(
    server_name: str | None, answer: ServerNameExtension, alert: int
) -> None:
    wire = Wire(_hello_with(2, lambda hello: _extensions(hello, drop=(0,), add=(answer,))))
    client, server = pair(server_config(), client_config(server_name=server_name))
    run(client, server, wire)
    assert wire.alerts("client") == [alert]
    _failed(client)


def test_no_server_name_answer_on_resumption() -> None:
    cache = SessionCache()
    client, server = pair(server_config(session_cache=cache), client_config(server_name=HOST))
    run(client, server)
    session = client.session
    wire = Wire()
    client = DtlsConnection(DtlsRole.CLIENT, client_config(server_name=HOST), 1.0, session=session)
    server = DtlsConnection(DtlsRole.SERVER, server_config(session_cache=cache), 1.0, address=ADDRESS)
    run(client, server, wire, start=1.0)
    assert client.resumed and server.resumed
    assert wire.hellos["server"].extension(ExtensionType.SERVER_NAME) is None
    assert server.server_name == HOST


@pytest.mark.parametrize("other", ["other.example", None])
def test_a_server_resumes_a_session_only_under_its_server_name(other: str | None) -> None:
    # RFC 6066 §3: a hello naming another server (or none) gets a full handshake instead.
    cache = SessionCache()
    client, server = pair(server_config(session_cache=cache), client_config(server_name=HOST))
    run(client, server)
    session = client.session
    assert session is not None and session.server_name == HOST
    assert server.session is not None and server.session.server_name == HOST
    # A client that would offer it anyway: the session relabelled with the new name.
    offered = replace(session, server_name=other or "")
    client = DtlsConnection(DtlsRole.CLIENT, client_config(server_name=other), 1.0, session=offered)
    # Other randoms: the new session id must not happen to be the old one.
    fresh = server_config(session_cache=cache, random=counter_random(500))
    server = DtlsConnection(DtlsRole.SERVER, fresh, 1.0, address=ADDRESS)
    wire = Wire()
    run(client, server, wire, start=1.0)
    assert wire.hellos["client"].session_id == session.session_id  # it was offered
    assert client.established and server.established
    assert not client.resumed and not server.resumed
    assert server.server_name == other


def test_a_client_does_not_offer_a_session_of_another_server_name() -> None:
    cache = SessionCache()
    client, server = pair(server_config(session_cache=cache), client_config(server_name=HOST))
    run(client, server)
    wire = Wire()
    client = DtlsConnection(
        DtlsRole.CLIENT, client_config(server_name="other.example"), 1.0, session=client.session
    )
    server = DtlsConnection(DtlsRole.SERVER, server_config(session_cache=cache), 1.0, address=ADDRESS)
    run(client, server, wire, start=1.0)
    assert client.established and not client.resumed
    assert wire.hellos["client"].session_id == b""  # nothing offered


CA = CertificateAuthority("Names test CA")
SERVER_CERT = CA.issue(HOST, dns_names=(HOST,), usage="server")
CLIENT_CERT = CA.issue("urn:imei:490154203237518")


@pytest.mark.parametrize(("name", "ok"), [(HOST, True), ("other.example", False)])
def test_an_ecdsa_client_checks_the_certificate_against_the_server_name(name: str, ok: bool) -> None:
    # No expected_name in the certificate configuration: the server name stands for it.
    server = ConnectionConfig(certificate=SERVER_CERT.credentials(trust_anchors=(CA.certificate,)))
    client = ConnectionConfig(
        certificate=CLIENT_CERT.credentials(trust_anchors=(CA.certificate,)), server_name=name
    )
    wire = Wire()
    client_connection, server_connection = pair(server, client)
    run(client_connection, server_connection, wire)
    assert client_connection.established is ok
    if not ok:
        assert wire.alerts("client") == [BAD_CERTIFICATE]


# --- record_size_limit (RFC 8449) ------------------------------------------------------------


def test_record_size_limit_bounds_every_record_to_the_device() -> None:
    wire = Wire()
    client, server = pair(server_config(), client_config(record_size_limit=256))
    run(client, server, wire)
    assert client.established and server.established
    assert wire.hellos["client"].extension(ExtensionType.RECORD_SIZE_LIMIT) == RecordSizeLimitExtension(256)
    assert wire.hellos["server"].extension(ExtensionType.RECORD_SIZE_LIMIT) == RecordSizeLimitExtension(
        2**14 + 1
    )
    # With a CID the inner plaintext holds the content type: 255 bytes of data fit.
    assert server.max_application_data == 255
    assert client.max_application_data == 2**14
    server.send_application_data(bytes(255))
    with pytest.raises(DtlsError, match="at most 255"):
        server.send_application_data(bytes(256))
    client.send_application_data(bytes(1000))  # the server set no limit
    run(client, server, wire)
    assert [e for e in events(client) if isinstance(e, ApplicationData)] == [ApplicationData(bytes(255))]
    assert max(wire.plaintext_sizes("server")) == 256
    assert max(wire.plaintext_sizes("client")) == 1001


def test_a_large_coap_payload_goes_in_blocks_within_the_limit() -> None:
    # A 2 KB Read response to a device with a 256-byte limit: Block2 (RFC 7959) of 128 bytes
    # so that each CoAP message fits what the connection says one record may carry.
    wire = Wire()
    client, server = pair(server_config(), client_config(record_size_limit=256))
    run(client, server, wire)
    events(client)
    payload = bytes(range(256)) * 8
    szx = 3
    num = 0
    while (block := block_slice(payload, num, szx)) is not None:
        chunk, more = block
        message = Message.build(
            Type.ACK, Code.CONTENT, num, b"t", block2=BlockOption(num, more, szx), payload=chunk
        )
        data = message.encode()
        assert len(data) <= server.max_application_data
        server.send_application_data(data)
        num += 1
    run(client, server, wire)
    received = [Message.decode(e.data) for e in events(client) if isinstance(e, ApplicationData)]
    assert b"".join(m.payload for m in received) == payload
    assert len(received) == 16
    assert all(size <= 256 for size in wire.plaintext_sizes("server"))


@pytest.mark.parametrize("limit", [64, 128])
def test_handshake_fragments_follow_the_limit(limit: int) -> None:
    # An X.509 flight is larger than 256 bytes: the server fragments it for the device
    # (the limit is known from the ClientHello; RFC 8449 §4 would allow it only for epoch 1).
    server = ConnectionConfig(certificate=SERVER_CERT.credentials(trust_anchors=(CA.certificate,)))
    client = ConnectionConfig(
        certificate=CLIENT_CERT.credentials(trust_anchors=(CA.certificate,), expected_name=HOST),
        record_size_limit=limit,
    )
    wire = Wire()
    client_connection, server_connection = pair(server, client)
    run(client_connection, server_connection, wire)
    assert client_connection.established and server_connection.established
    sizes = wire.handshake_fragment_sizes("server")
    assert max(sizes) <= limit and len(sizes) > 5
    assert all(size <= limit for size in wire.plaintext_sizes("server"))
    # The client's own flight is not bound by a limit the server did not set.
    assert max(wire.handshake_fragment_sizes("client")) > limit


@pytest.mark.parametrize("side", [1, 2])
def test_a_limit_below_64_is_an_illegal_parameter(side: int) -> None:
    def change(hello: Any) -> Any:
        return _extensions(hello, drop=(28,), add=(RecordSizeLimitExtension(63),))

    wire = Wire(_hello_with(side, change))
    client, server = pair(server_config(cookie_checker=None), client_config())
    run(client, server, wire)
    assert wire.alerts("server" if side == 1 else "client") == [ILLEGAL_PARAMETER]
    _failed(server if side == 1 else client)


def test_limits_that_cannot_be_sent_are_refused() -> None:
    for options in ({"record_size_limit": 63}, {"record_size_limit": 1 << 16}, {"max_fragment_length": 1000}):
        with pytest.raises(DtlsError):
            DtlsConnection(DtlsRole.CLIENT, client_config(**options), 0.0)


def test_a_client_without_the_extension_refuses_an_answer() -> None:
    wire = Wire(_hello_with(2, lambda hello: _extensions(hello, add=(RecordSizeLimitExtension(256),))))
    client, server = pair(server_config(record_size_limit=None), client_config(record_size_limit=None))
    run(client, server, wire)
    assert wire.alerts("client") == [UNSUPPORTED_EXTENSION]


def test_without_the_extension_nothing_is_answered_nor_bounded() -> None:
    wire = Wire()
    client, server = pair(server_config(record_size_limit=None), client_config(record_size_limit=256))
    run(client, server, wire)
    assert wire.hellos["server"].extension(ExtensionType.RECORD_SIZE_LIMIT) is None
    assert server.max_application_data == 2**14


def test_a_record_over_our_limit_is_a_record_overflow() -> None:
    client, server = pair(server_config(), client_config(record_size_limit=256))
    run(client, server)
    events(client)
    # A server that disregards the limit (here forced to): the client ends the connection.
    server._limits = SizeLimits()
    server.send_application_data(bytes(300))
    wire = Wire()
    run(client, server, wire)
    assert events(client) == [ConnectionClosed("a record of 300 bytes from the peer, over the limit of 256")]
    assert client.closed and client.session is None
    [alert] = [r for r in wire.records["client"] if r.epoch == 1]
    assert alert.content_type == 25  # tls12_cid; the alert inside is protected


def test_a_record_within_the_limit_after_a_cid_type_byte_is_taken() -> None:
    client, server = pair(server_config(), client_config(record_size_limit=256))
    run(client, server)
    events(client)
    server.send_application_data(bytes(255))
    run(client, server)
    assert events(client) == [ApplicationData(bytes(255))]


# --- max_fragment_length (RFC 6066 §4) ---------------------------------------------------------


@pytest.mark.parametrize("length", [512, 1024, 2048, 4096])
def test_max_fragment_length_both_ways(length: int) -> None:
    wire = Wire()
    client, server = pair(server_config(), client_config(max_fragment_length=length, record_size_limit=None))
    run(client, server, wire)
    assert client.established and server.established
    code = length.bit_length() - 9
    assert wire.hellos["server"].extension(ExtensionType.MAX_FRAGMENT_LENGTH) == MaxFragmentLengthExtension(
        code
    )
    assert client.max_application_data == server.max_application_data == length - 1
    client.send_application_data(bytes(length - 1))
    server.send_application_data(bytes(length - 1))
    run(client, server, wire)
    for side in ("client", "server"):
        assert max(wire.plaintext_sizes(side)) == length


def test_record_size_limit_wins_over_max_fragment_length() -> None:
    wire = Wire()
    client, server = pair(server_config(), client_config(max_fragment_length=512, record_size_limit=1024))
    run(client, server, wire)
    answer = wire.hellos["server"]
    assert answer.extension(ExtensionType.MAX_FRAGMENT_LENGTH) is None
    assert answer.extension(ExtensionType.RECORD_SIZE_LIMIT) == RecordSizeLimitExtension(2**14 + 1)
    assert server.max_application_data == 1023
    assert client.max_application_data == 2**14


@pytest.mark.parametrize(
    ("asked", "answer"),
    [
        (None, (MaxFragmentLengthExtension(1),)),  # not asked for
        (512, (MaxFragmentLengthExtension(2),)),  # another value than asked
        (512, (MaxFragmentLengthExtension(1), RecordSizeLimitExtension(512))),  # both (RFC 8449 §5)
    ],
)
def test_the_client_refuses_a_wrong_max_fragment_length_answer(
    asked: int | None, answer: tuple[Extension, ...]
) -> None:
    wire = Wire(_hello_with(2, lambda hello: _extensions(hello, drop=(1, 28), add=answer)))
    client, server = pair(
        server_config(record_size_limit=None), client_config(max_fragment_length=asked, record_size_limit=512)
    )
    run(client, server, wire)
    assert wire.alerts("client") == [ILLEGAL_PARAMETER]
    _failed(client)


def test_the_server_refuses_an_undefined_max_fragment_length() -> None:
    wire = Wire(_hello_with(1, lambda hello: _extensions(hello, add=(MaxFragmentLengthExtension(5),))))
    client, server = pair(server_config(cookie_checker=None), client_config(record_size_limit=None))
    run(client, server, wire)
    assert wire.alerts("server") == [ILLEGAL_PARAMETER]


# --- fuzzing: hostile extension bytes in a ClientHello -----------------------------------------


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from([0, 1, 28]), st.binary(max_size=24))
def test_fuzz_the_server_with_extension_bytes(extension_type: int, data: bytes) -> None:
    # Any bytes: the hello is dropped (malformed), refused with an alert, or answered.
    server = DtlsConnection(DtlsRole.SERVER, server_config(cookie_checker=None), 0.0, address=ADDRESS)
    client = DtlsConnection(DtlsRole.CLIENT, client_config(record_size_limit=None), 0.0)
    [datagram] = client.datagrams_to_send(0.0)
    change = _hello_with(
        1,
        lambda hello: _extensions(
            hello, drop=(extension_type,), add=(UnknownExtension(extension_type, data),)
        ),
    )
    server.receive_datagram(change("client", datagram), 0.0)
    for event in events(server):
        assert isinstance(event, HandshakeFailure | HandshakeComplete)
    for out in server.datagrams_to_send(0.0):
        for record in parse_datagram(out):
            if record.content_type == ALERT:
                assert record.fragment[1] in (DECODE_ERROR, ILLEGAL_PARAMETER)
