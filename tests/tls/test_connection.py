"""The DTLS 1.2 PSK connection (RFC 6347, RFC 4279, RFC 7627): our client against our server in
memory, deterministic (time is a number the test advances), then against python-mbedtls."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.helpers.dtls_engine import (
    ADDRESS,
    IDENTITY,
    PSK,
    client_config,
    counter_random,
    drop_flight,
    events,
    exchange,
    handshake_types,
    pair,
    run,
    server_config,
)
from tests.helpers.mbedtls import (
    answer_of_mbedtls_server,
    connect_to_mbedtls_server,
    drive,
    psk_client,
    psk_server,
    serve_mbedtls_client,
)

from lwm2m.errors import DtlsError, SessionClosed
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
    DTLS_1_2,
    ClientHello,
    ConnectionIdExtension,
    ExtendedMasterSecretExtension,
    HandshakeType,
    HelloVerifyRequest,
    ServerHello,
    UnknownExtension,
    encode_handshake,
    split_handshake_fragments,
)
from lwm2m.tls.record import ALERT, HANDSHAKE, DtlsRecord, parse_datagram

# --- a whole connection ------------------------------------------------------------------


@pytest.mark.parametrize("hint", [None, b"lwm2m-server"], ids=["no-hint", "identity-hint"])
def test_handshake_application_data_both_ways_and_close_notify(hint: bytes | None) -> None:
    client, server = pair(server_config(psk_identity_hint=hint))
    run(client, server)
    assert client.psk_identity_hint == (hint or b"")
    assert events(client) == [HandshakeComplete(IDENTITY)]
    assert events(server) == [HandshakeComplete(IDENTITY)]
    assert server.peer_identity == IDENTITY
    assert client.get_timer() is None and server.get_timer() is None

    client.send_application_data(b"POST /rd")
    server.send_application_data(b"2.01 Created")
    exchange(client, server, 1.0)
    assert events(server) == [ApplicationData(b"POST /rd")]
    assert events(client) == [ApplicationData(b"2.01 Created")]

    client.close()
    exchange(client, server, 2.0)
    assert events(server) == [ConnectionClosed("close_notify")]
    assert not server.established and not client.established
    with pytest.raises(SessionClosed):
        server.send_application_data(b"late")
    with pytest.raises(SessionClosed):
        client.send_application_data(b"late")


def test_the_server_answers_a_first_hello_statelessly_with_a_cookie() -> None:
    client, server = pair()
    [hello] = client.datagrams_to_send(0.0)
    server.receive_datagram(hello, 0.0)
    [verify] = server.datagrams_to_send(0.0)
    [record] = parse_datagram(verify)
    [(header, body)] = split_handshake_fragments(record.fragment)
    assert header.msg_type == HandshakeType.HELLO_VERIFY_REQUEST
    # RFC 6347 §4.2.1: the HelloVerifyRequest repeats the hello's record sequence number.
    assert record.sequence == parse_datagram(hello)[0].sequence
    cookie = HelloVerifyRequest.parse(body).cookie
    assert len(cookie) == 32
    # The same hello gets the same cookie: nothing was kept between the two.
    server.receive_datagram(hello, 0.0)
    assert server.get_timer() is None
    client.receive_datagram(verify, 0.0)
    [second] = client.datagrams_to_send(0.0)
    [(_, second_body)] = split_handshake_fragments(parse_datagram(second)[0].fragment)
    parsed = ClientHello.parse(second_body)
    assert parsed.cookie == cookie
    assert parsed.extension(ExtendedMasterSecretExtension.extension_type) == ExtendedMasterSecretExtension()


def test_a_server_without_cookie_checker_answers_at_once() -> None:
    config = ConnectionConfig(psk_lookup={IDENTITY: PSK}.get, random=counter_random(5))
    client, server = pair(config)
    [hello] = client.datagrams_to_send(0.0)
    server.receive_datagram(hello, 0.0)
    [flight] = server.datagrams_to_send(0.0)
    assert handshake_types(flight) == [HandshakeType.SERVER_HELLO, HandshakeType.SERVER_HELLO_DONE]
    client.receive_datagram(flight, 0.0)
    run(client, server)
    assert client.established and server.established


def test_configuration_is_checked() -> None:
    with pytest.raises(DtlsError):
        DtlsConnection(DtlsRole.CLIENT, ConnectionConfig(psk_identity=IDENTITY), 0.0)
    with pytest.raises(DtlsError):
        DtlsConnection(DtlsRole.SERVER, ConnectionConfig(), 0.0)
    with pytest.raises(DtlsError):
        DtlsConnection(DtlsRole.CLIENT, client_config(identity=b"i" * 129), 0.0)
    with pytest.raises(DtlsError):
        DtlsConnection(DtlsRole.CLIENT, client_config(psk=bytes(65)), 0.0)
    client = DtlsConnection(DtlsRole.CLIENT, client_config(), 0.0)
    with pytest.raises(DtlsError):
        client.send_application_data(b"too early")


# --- loss, duplication, reordering -------------------------------------------------------

FLIGHTS = [
    "ClientHello",
    "HelloVerifyRequest",
    "ClientHello+cookie",
    "ServerHello..Done",
    "CKE+CCS+Finished",
    "CCS+Finished",
]


@pytest.mark.parametrize("lost", range(len(FLIGHTS)), ids=FLIGHTS)
def test_every_flight_lost_once_is_recovered_by_the_timer(lost: int) -> None:
    client, server = pair()
    finished_at = run(client, server, drop_flight(lost))
    assert client.established and server.established
    assert 1.0 <= finished_at <= 2.0  # one retransmission, after the initial 1 s timeout
    assert events(client) == [HandshakeComplete(IDENTITY)]
    assert events(server) == [HandshakeComplete(IDENTITY)]
    client.send_application_data(b"after recovery")
    exchange(client, server, finished_at)
    assert events(server) == [ApplicationData(b"after recovery")]


def test_duplicated_datagrams_change_nothing() -> None:
    client, server = pair()
    run(client, server, lambda name, datagrams: [d for d in datagrams for _ in range(2)])
    assert events(client) == [HandshakeComplete(IDENTITY)]
    assert events(server) == [HandshakeComplete(IDENTITY)]
    client.send_application_data(b"once")
    [datagram] = client.datagrams_to_send(0.0)
    server.receive_datagram(datagram, 0.0)
    server.receive_datagram(datagram, 0.0)
    assert events(server) == [ApplicationData(b"once")]


def test_reordered_records_and_fragments_complete_the_handshake() -> None:
    # Small datagrams: the flights after the hellos are several datagrams, delivered last
    # first; the server's ServerKeyExchange comes in fragments, and the client's Finished
    # (epoch 1) before the ClientKeyExchange that gives the keys to read it.
    client, server = pair(
        server_config(psk_identity_hint=b"h" * 60, max_datagram_size=96), client_config(max_datagram_size=146)
    )
    sizes: list[int] = []

    def reverse(name: str, datagrams: list[bytes]) -> list[bytes]:
        sizes.append(len(datagrams))
        return datagrams[::-1]

    finished_at = run(client, server, reverse)
    assert client.established and server.established
    assert finished_at == 0.0  # no timer needed: everything was buffered and put in order
    assert max(sizes) >= 3


def test_retransmission_timeouts_double_up_to_60_s_then_the_handshake_fails() -> None:
    client = DtlsConnection(DtlsRole.CLIENT, client_config(), 0.0)
    client.datagrams_to_send(0.0)
    deadlines = []
    while (deadline := client.get_timer()) is not None:
        deadlines.append(deadline)
        client.handle_timer(deadline - 0.001)  # too early: nothing happens
        assert client.get_timer() == deadline
        client.handle_timer(deadline)
        if client.get_timer() is not None:
            assert len(client.datagrams_to_send(deadline)) == 1  # the ClientHello again
    gaps = [b - a for a, b in zip([0.0, *deadlines], deadlines, strict=False)]
    assert gaps == [1, 2, 4, 8, 16, 32, 60]
    assert events(client) == [HandshakeFailure("the handshake timed out: no answer from the peer")]


# --- refusals ----------------------------------------------------------------------------


def test_a_wrong_psk_fails_the_handshake_on_both_sides() -> None:
    client, server = pair(client=client_config(psk=bytes(16)))
    run(client, server)
    [server_event] = events(server)
    [client_event] = events(client)
    assert isinstance(server_event, HandshakeFailure) and "PSK" in server_event.reason
    assert isinstance(client_event, HandshakeFailure)
    assert not client.established and not server.established
    with pytest.raises(SessionClosed):
        client.send_application_data(b"secret")
    assert client.get_timer() is None and server.get_timer() is None


def test_an_unknown_identity_fails_with_an_alert() -> None:
    client, server = pair(client=client_config(identity=b"stranger"))
    run(client, server)
    [server_event] = events(server)
    assert isinstance(server_event, HandshakeFailure) and "unknown PSK identity" in server_event.reason
    [client_event] = events(client)
    assert client_event == HandshakeFailure("the peer ended the handshake with alert 115")


def test_a_client_without_our_cipher_suite_is_refused() -> None:
    server = DtlsConnection(
        DtlsRole.SERVER, ConnectionConfig(psk_lookup={}.get, random=counter_random(3)), 0.0, address=ADDRESS
    )
    hello = ClientHello(bytes(32), (0xC02B,))
    record = DtlsRecord(
        HANDSHAKE, DTLS_1_2, 0, 0, encode_handshake(HandshakeType.CLIENT_HELLO, 0, hello.to_bytes())
    )
    server.receive_datagram(record.encode(), 0.0)
    [event] = events(server)
    assert isinstance(event, HandshakeFailure)
    [alert] = server.datagrams_to_send(0.0)
    [sent] = parse_datagram(alert)
    assert (sent.content_type, sent.fragment) == (ALERT, bytes((2, 40)))


def _established() -> tuple[DtlsConnection, DtlsConnection]:
    client, server = pair()
    run(client, server)
    events(client)
    events(server)
    return client, server


def test_a_replayed_application_record_is_dropped() -> None:
    client, server = _established()
    client.send_application_data(b"reboot")
    [datagram] = client.datagrams_to_send(0.0)
    server.receive_datagram(datagram, 0.0)
    server.receive_datagram(datagram, 5.0)
    assert events(server) == [ApplicationData(b"reboot")]


@pytest.mark.parametrize("epoch", [0, 2, 0xFFFF])
def test_a_record_of_another_epoch_is_dropped(epoch: int) -> None:
    """RFC 6347 §4.1: records of an epoch other than the current one (an unprotected copy, or a
    future epoch no ChangeCipherSpec opened) are dropped, on the general and the direct path;
    the connection and its replay window are untouched, so the genuine record still passes."""
    client, server = _established()
    client.send_application_data(b"read /3/0")
    [datagram] = client.datagrams_to_send(0.0)
    [record] = parse_datagram(datagram, len(server.own_cid))
    moved = DtlsRecord(
        record.content_type, record.version, epoch, record.sequence, record.fragment, record.cid
    )
    server.receive_datagram(moved.encode(), 1.0)
    assert server.receive_application_data(moved.encode(), 1.0) is None
    assert events(server) == [] and server.established
    assert server.receive_application_data(datagram, 2.0) == b"read /3/0"


def test_an_established_connection_lets_go_of_the_handshake_state() -> None:
    # Memory per session (issue 14): the transcript goes once both Finished are computed, and
    # the server's last flight once the client's data shows it has our Finished (RFC 6347
    # §4.2.4); until then that flight is kept, to be sent again.
    client, server = _established()
    assert client._transcript == [] and server._transcript == []
    assert client._flight == [] and server._flight != []
    client.send_application_data(b"register")
    for datagram in client.datagrams_to_send(0.0):
        server.receive_datagram(datagram, 0.0)
    assert events(server) == [ApplicationData(b"register")]
    assert server._flight == []
    assert not hasattr(server, "__dict__") or not server.__dict__  # every attribute in a slot


@pytest.mark.parametrize("bit", [0, 7, 13 * 8 + 3, -1])
def test_a_record_with_a_flipped_bit_is_dropped_silently(bit: int) -> None:
    client, server = _established()
    client.send_application_data(b"write /3/0/13")
    [datagram] = client.datagrams_to_send(0.0)
    spoiled = bytearray(datagram)
    index = bit // 8 if bit >= 0 else len(spoiled) - 1
    spoiled[index] ^= 1 << (bit % 8 if bit >= 0 else 0)
    server.receive_datagram(bytes(spoiled), 0.0)
    assert events(server) == []
    assert server.datagrams_to_send(0.0) == []  # no alert: RFC 6347 §4.1.2.7
    server.receive_datagram(datagram, 0.0)  # the genuine record still gets through
    assert events(server) == [ApplicationData(b"write /3/0/13")]


def test_renegotiation_is_refused_with_a_warning() -> None:
    client, server = _established()
    hello = ClientHello(bytes(32), (0xC0A8,))
    # A ClientHello inside the protected epoch: what a renegotiating client sends.
    client._outbox.append(
        client._record(1, HANDSHAKE, encode_handshake(HandshakeType.CLIENT_HELLO, 3, hello.to_bytes()))
    )
    [datagram] = client.datagrams_to_send(0.0)
    server.receive_datagram(datagram, 0.0)
    [answer] = server.datagrams_to_send(0.0)
    [record] = parse_datagram(answer, len(client.own_cid))
    assert client._read_protection is not None
    assert (client._read_protection.decrypt(record).content_type, record.epoch) == (ALERT, 1)
    client.receive_datagram(answer, 0.0)  # a warning: the client stays connected
    assert server.established and client.established
    assert events(server) == [] and events(client) == []


def test_an_unprotected_alert_cannot_end_an_established_connection() -> None:
    _client, server = _established()
    forged = DtlsRecord(ALERT, DTLS_1_2, 0, 99, bytes((2, 40))).encode()
    server.receive_datagram(forged, 0.0)
    assert server.established and events(server) == []


# --- hostile bytes -------------------------------------------------------------------------


def _client_waiting_for_finished() -> tuple[DtlsConnection, DtlsConnection]:
    client, server = pair()
    # Through the server's ServerHelloDone flight, without the server's last flight.
    for _ in range(2):
        for datagram in client.datagrams_to_send(0.0):
            server.receive_datagram(datagram, 0.0)
        for datagram in server.datagrams_to_send(0.0):
            client.receive_datagram(datagram, 0.0)
    return client, server


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=300), stage=st.sampled_from(["new", "middle", "established"]))
def test_any_datagram_is_processed_or_dropped_never_raised(data: bytes, stage: str) -> None:
    if stage == "new":
        client, server = pair()
    elif stage == "middle":
        client, server = _client_waiting_for_finished()
    else:
        client, server = _established()
    server.receive_datagram(data, 0.0)
    client.receive_datagram(data, 0.0)
    server.datagrams_to_send(0.0)
    client.datagrams_to_send(0.0)


@settings(max_examples=200, deadline=None)
@given(
    content_type=st.sampled_from([20, 21, 22, 23]),
    epoch=st.sampled_from([0, 1]),
    sequence=st.integers(0, 2**48 - 1),
    fragment=st.binary(max_size=200),
)
def test_any_well_framed_record_is_processed_or_dropped(
    content_type: int, epoch: int, sequence: int, fragment: bytes
) -> None:
    client, server = pair()
    datagram = DtlsRecord(content_type, DTLS_1_2, epoch, sequence, fragment).encode()
    server.receive_datagram(datagram, 0.0)
    client.receive_datagram(datagram, 0.0)


# --- Connection ID (RFC 9146) --------------------------------------------------------------


def test_connection_id_is_negotiated_both_ways_by_default() -> None:
    client, server = pair(server_config(node_id=0x2A))
    run(client, server)
    assert client.cid_negotiated and server.cid_negotiated
    # The server's CID: 6 bytes led by the node id; the client's: what it offered.
    assert len(server.own_cid) == 6 and server.own_cid[0] == 0x2A
    assert client.peer_cid == server.own_cid
    assert len(client.own_cid) == 6 and server.peer_cid == client.own_cid


def _cid_header(datagram: bytes, cid: bytes) -> tuple[int, int, int, int, bytes, int]:
    # RFC 9146 §4, written out by hand: ContentType (1) ‖ version (2) ‖ epoch (2) ‖
    # sequence_number (6) ‖ cid (the receiver's length) ‖ length (2) ‖ encrypted_record.
    at = 11 + len(cid)
    return (
        datagram[0],
        int.from_bytes(datagram[1:3], "big"),
        int.from_bytes(datagram[3:5], "big"),
        int.from_bytes(datagram[5:11], "big"),
        datagram[11:at],
        int.from_bytes(datagram[at : at + 2], "big"),
    )


def test_records_after_the_handshake_are_tls12_cid_with_the_cid_after_the_sequence_number() -> None:
    client, server = _established()
    client.send_application_data(b"POST /rd")
    [datagram] = client.datagrams_to_send(1.0)
    content_type, version, epoch, sequence, cid, length = _cid_header(datagram, server.own_cid)
    assert (content_type, version, epoch, cid) == (25, DTLS_1_2, 1, server.own_cid)
    assert sequence >= 1  # the Finished was 0
    # 8-byte explicit nonce, the DTLSInnerPlaintext (content ‖ real type 23), the 8-byte tag.
    assert length == len(datagram) - 13 - len(cid) == 8 + len(b"POST /rd") + 1 + 8
    assert server.receive_datagram(datagram, 1.0) is True
    assert events(server) == [ApplicationData(b"POST /rd")]
    # The server's records carry the client's CID.
    server.send_application_data(b"2.01")
    [answer] = server.datagrams_to_send(1.0)
    assert _cid_header(answer, client.own_cid)[4] == client.own_cid
    client.receive_datagram(answer, 1.0)
    assert events(client) == [ApplicationData(b"2.01")]
    # The same record again: dropped, and not "newer" (RFC 9146 §6).
    assert server.receive_datagram(datagram, 2.0) is False
    assert events(server) == []


def test_a_record_with_another_cid_is_dropped() -> None:
    client, server = _established()
    client.send_application_data(b"x")
    [datagram] = client.datagrams_to_send(1.0)
    other = bytearray(datagram)
    other[12] ^= 0xFF  # inside the CID
    assert server.receive_datagram(bytes(other), 1.0) is False
    assert events(server) == [] and server.established


@pytest.mark.parametrize("side", ["client", "server", "both"])
def test_connection_id_off_gives_plain_records(side: str) -> None:
    client_off = side in ("client", "both")
    server_off = side in ("server", "both")
    client, server = pair(
        server_config(connection_id=not server_off), client_config(connection_id=not client_off)
    )
    run(client, server)
    assert client.established and server.established
    assert not client.cid_negotiated and not server.cid_negotiated
    assert client.own_cid == client.peer_cid == server.own_cid == server.peer_cid == b""
    client.send_application_data(b"plain")
    [datagram] = client.datagrams_to_send(1.0)
    assert datagram[0] == 23  # application_data, RFC 6347 §4.1
    server.receive_datagram(datagram, 1.0)
    assert events(server)[-1] == ApplicationData(b"plain")


def test_an_empty_client_cid_means_plain_records_to_the_client_only() -> None:
    client, server = pair(client=client_config(cid_length=0))
    run(client, server)
    assert client.cid_negotiated and client.own_cid == b"" and server.peer_cid == b""
    server.send_application_data(b"to client")
    client.send_application_data(b"to server")
    [down] = server.datagrams_to_send(1.0)
    [up] = client.datagrams_to_send(1.0)
    assert down[0] == 23 and up[0] == 25
    client.receive_datagram(down, 1.0)
    server.receive_datagram(up, 1.0)
    assert events(client)[-1] == ApplicationData(b"to client")
    assert events(server)[-1] == ApplicationData(b"to server")


def test_connection_id_configuration_is_checked() -> None:
    with pytest.raises(DtlsError):
        pair(server_config(cid_length=33))
    with pytest.raises(DtlsError):
        pair(server_config(node_id=256))


# --- against python-mbedtls ------------------------------------------------------------------


def _mbedtls_client(psk: bytes) -> object:
    return psk_client(IDENTITY.decode(), psk)


_drive_mbedtls = drive


@pytest.mark.parametrize("hint", [None, b"lwm2m-server"], ids=["no-hint", "identity-hint"])
def test_mbedtls_client_against_our_server(hint: bytes | None) -> None:
    tls = pytest.importorskip("mbedtls.tls")
    buf = _mbedtls_client(PSK)
    server = DtlsConnection(DtlsRole.SERVER, server_config(psk_identity_hint=hint), 0.0, address=ADDRESS)
    answered = []
    for _ in range(6):
        sent = _drive_mbedtls(buf)
        if sent:
            server.receive_datagram(sent, 0.0)
        datagrams = server.datagrams_to_send(0.0)
        answered.append([handshake_types(d) for d in datagrams])
        for datagram in datagrams:
            buf.receive_from_network(datagram)  # type: ignore[attr-defined]
    assert buf._handshake_state is tls.HandshakeStep.HANDSHAKE_OVER  # type: ignore[attr-defined]
    assert answered[0] == [[HandshakeType.HELLO_VERIFY_REQUEST]]  # the cookie exchange came first
    assert events(server) == [HandshakeComplete(IDENTITY)]

    buf.write(b"POST /rd?ep=mbedtls")  # type: ignore[attr-defined]
    server.receive_datagram(_drive_mbedtls(buf), 1.0)
    assert events(server) == [ApplicationData(b"POST /rd?ep=mbedtls")]
    server.send_application_data(b"2.01 Created")
    for datagram in server.datagrams_to_send(1.0):
        buf.receive_from_network(datagram)  # type: ignore[attr-defined]
    assert buf.read(100) == b"2.01 Created"  # type: ignore[attr-defined]


def test_mbedtls_client_with_a_wrong_psk_fails_against_our_server() -> None:
    exceptions = pytest.importorskip("mbedtls.exceptions")
    buf = _mbedtls_client(bytes(16))
    server = DtlsConnection(DtlsRole.SERVER, server_config(), 0.0, address=ADDRESS)
    serve_mbedtls_client(buf, server, rounds=3)
    [event] = events(server)
    assert isinstance(event, HandshakeFailure) and "PSK" in event.reason
    # Our fatal alert ends Mbed TLS's handshake too.
    with pytest.raises(exceptions.TLSError, match="fatal alert"):
        _drive_mbedtls(buf)


def _mbedtls_server() -> object:
    return psk_server({IDENTITY.decode(): PSK}, anti_replay=True)


def test_our_client_against_the_mbedtls_server() -> None:
    tls = pytest.importorskip("mbedtls.tls")
    buf = _mbedtls_server()
    client = DtlsConnection(DtlsRole.CLIENT, client_config(), 0.0)
    answers = connect_to_mbedtls_server(buf, client, ADDRESS, rounds=4)
    assert handshake_types(answers[0]) == [HandshakeType.HELLO_VERIFY_REQUEST]
    assert buf._handshake_state is tls.HandshakeStep.HANDSHAKE_OVER  # type: ignore[attr-defined]
    assert events(client) == [HandshakeComplete(IDENTITY)]
    assert client.get_timer() is None

    client.send_application_data(b"POST /rd?ep=ours")
    for datagram in client.datagrams_to_send(1.0):
        buf.receive_from_network(datagram)  # type: ignore[attr-defined]
    assert buf.read(100) == b"POST /rd?ep=ours"  # type: ignore[attr-defined]
    buf.write(b"2.01 Created")  # type: ignore[attr-defined]
    client.receive_datagram(_drive_mbedtls(buf), 1.0)
    assert events(client) == [ApplicationData(b"2.01 Created")]


def test_the_mbedtls_server_refuses_an_unknown_identity_of_our_client() -> None:
    exceptions = pytest.importorskip("mbedtls.exceptions")
    buf = _mbedtls_server()
    client = DtlsConnection(DtlsRole.CLIENT, client_config(identity=b"stranger"), 0.0)
    for _ in range(2):
        client.receive_datagram(answer_of_mbedtls_server(buf, client, ADDRESS), 0.0)
    with pytest.raises(exceptions.TLSError):
        answer_of_mbedtls_server(buf, client, ADDRESS)
    # Its alert is still in its output: the unknown_psk_identity alert of RFC 4279 §2.
    n = len(buf._output_buffer)  # type: ignore[attr-defined]
    client.receive_datagram(buf.peek_outgoing(n), 0.0)  # type: ignore[attr-defined]
    assert events(client) == [HandshakeFailure("the peer ended the handshake with alert 115")]
    assert client.get_timer() is None


def test_application_data_ahead_of_the_servers_finished_waits_for_it() -> None:
    client, server = pair()
    held: list[bytes] = []

    def hold_last_server_flight(name: str, datagrams: list[bytes]) -> list[bytes]:
        if name == "server" and server.established and not held:
            held.extend(datagrams)
            return []
        return datagrams

    exchange(client, server, 0.0, hold_last_server_flight)
    assert server.established and not client.established
    server.send_application_data(b"first")
    for datagram in server.datagrams_to_send(0.0) + held:
        client.receive_datagram(datagram, 0.0)
    assert events(client) == [HandshakeComplete(IDENTITY), ApplicationData(b"first")]


def test_extended_master_secret_is_used_when_the_client_offers_it() -> None:
    def server_hello_for(hello: ClientHello) -> object:
        server = DtlsConnection(
            DtlsRole.SERVER,
            ConnectionConfig(psk_lookup={}.get, random=counter_random(9)),
            0.0,
            address=ADDRESS,
        )
        message = encode_handshake(HandshakeType.CLIENT_HELLO, 0, hello.to_bytes())
        server.receive_datagram(DtlsRecord(HANDSHAKE, DTLS_1_2, 0, 0, message).encode(), 0.0)
        [flight] = server.datagrams_to_send(0.0)
        [first, *_] = split_handshake_fragments(parse_datagram(flight)[0].fragment)
        return ServerHello.parse(first[1]).extension(ExtendedMasterSecretExtension.extension_type)

    offered = ClientHello(bytes(32), (0xC0A8,), extensions=(ExtendedMasterSecretExtension(),))
    assert server_hello_for(offered) == ExtendedMasterSecretExtension()
    assert server_hello_for(ClientHello(bytes(32), (0xC0A8,))) is None


def test_a_fatal_alert_from_the_peer_closes_an_established_connection() -> None:
    client, server = _established()
    server._send_alert(2, 80)  # internal_error, protected in epoch 1
    for datagram in server.datagrams_to_send(0.0):
        client.receive_datagram(datagram, 0.0)
    assert events(client) == [ConnectionClosed("fatal alert 80 from the peer")]
    assert not client.established


def test_a_late_final_flight_and_its_retransmission_end_quietly() -> None:
    # The server's last flight is late: the client's timer sends its flight again, the server
    # answers with its last flight again, then both copies arrive. Nothing more is sent.
    client, server = pair()
    held: list[bytes] = []

    def hold_last_server_flight(name: str, datagrams: list[bytes]) -> list[bytes]:
        if name == "server" and server.established and not held:
            held.extend(datagrams)
            return []
        return datagrams

    exchange(client, server, 0.0, hold_last_server_flight)
    client.handle_timer(1.0)
    [again] = client.datagrams_to_send(1.0)
    server.receive_datagram(again, 1.0)
    answers = server.datagrams_to_send(1.0)
    assert len(answers) == 1
    for datagram in held + answers:
        client.receive_datagram(datagram, 1.0)
    assert client.established
    assert client.datagrams_to_send(1.0) == [] and client.get_timer() is None
    assert events(client) == [HandshakeComplete(IDENTITY)]


def test_a_repeat_of_the_peers_current_flight_is_not_answered_with_our_previous_one() -> None:
    # The server waits for the client's Finished; the client's ClientKeyExchange seen twice is
    # part of that flight, not a sign that the server's flight was lost.
    client, server = pair()
    for _ in range(2):
        for datagram in client.datagrams_to_send(0.0):
            server.receive_datagram(datagram, 0.0)
        for datagram in server.datagrams_to_send(0.0):
            client.receive_datagram(datagram, 0.0)
    [flight] = client.datagrams_to_send(0.0)
    key_exchange = parse_datagram(flight, len(server.own_cid))[0]
    assert handshake_types(key_exchange.encode()) == [HandshakeType.CLIENT_KEY_EXCHANGE]
    server.receive_datagram(key_exchange.encode(), 0.0)
    repeated = DtlsRecord(HANDSHAKE, DTLS_1_2, 0, key_exchange.sequence + 10, key_exchange.fragment)
    server.receive_datagram(repeated.encode(), 0.0)
    assert server.datagrams_to_send(0.0) == []
    assert not server.established


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    msg_type=st.sampled_from([int(t) for t in HandshakeType] + [99]),
    message_seq=st.integers(0, 6),
    body=st.binary(max_size=120),
    stage=st.sampled_from(["new", "middle"]),
    to_server=st.booleans(),
)
def test_any_handshake_message_is_processed_or_refused(
    msg_type: int, message_seq: int, body: bytes, stage: str, to_server: bool
) -> None:
    # Well-formed handshake framing around any body reaches the message parsers and the state
    # machine: the outcome is an event or nothing, never an exception.
    client, server = pair() if stage == "new" else _client_waiting_for_finished()
    target = server if to_server else client
    message = encode_handshake(msg_type, message_seq, body)
    target.receive_datagram(DtlsRecord(HANDSHAKE, DTLS_1_2, 0, 1000 + message_seq, message).encode(), 0.0)
    target.datagrams_to_send(0.0)
    for event in events(target):
        assert isinstance(event, HandshakeFailure | HandshakeComplete)


def test_a_connection_id_the_client_did_not_offer_fails_its_handshake() -> None:
    # RFC 5246 §7.4.1.4: a ServerHello may answer only the extensions the client offered.
    client = DtlsConnection(DtlsRole.CLIENT, client_config(connection_id=False), 0.0)
    client.datagrams_to_send(0.0)
    hello = ServerHello(bytes(32), 0xC0A8, extensions=(ConnectionIdExtension(b"\x07abcde"),))
    message = encode_handshake(HandshakeType.SERVER_HELLO, 0, hello.to_bytes())
    client.receive_datagram(DtlsRecord(HANDSHAKE, DTLS_1_2, 0, 0, message).encode(), 0.0)
    [event] = events(client)
    assert isinstance(event, HandshakeFailure) and "connection_id" in event.reason
    [alert] = client.datagrams_to_send(0.0)
    assert parse_datagram(alert)[0].fragment == bytes((2, 110))  # fatal unsupported_extension


def test_the_server_answers_connection_id_only_when_offered() -> None:
    def answer(hello: ClientHello, **kwargs: object) -> object:
        config = ConnectionConfig(psk_lookup={}.get, random=counter_random(9), **kwargs)  # type: ignore[arg-type]
        server = DtlsConnection(DtlsRole.SERVER, config, 0.0, address=ADDRESS)
        message = encode_handshake(HandshakeType.CLIENT_HELLO, 0, hello.to_bytes())
        server.receive_datagram(DtlsRecord(HANDSHAKE, DTLS_1_2, 0, 0, message).encode(), 0.0)
        [flight] = server.datagrams_to_send(0.0)
        [first, *_] = split_handshake_fragments(parse_datagram(flight)[0].fragment)
        return ServerHello.parse(first[1]).extension(ConnectionIdExtension.extension_type)

    offered = ClientHello(bytes(32), (0xC0A8,), extensions=(ConnectionIdExtension(b""),))
    given = answer(offered, node_id=0xA5, cid_length=4)
    assert isinstance(given, ConnectionIdExtension) and len(given.cid) == 4 and given.cid[0] == 0xA5
    assert answer(offered, cid_length=0) == ConnectionIdExtension(b"")
    assert answer(offered, connection_id=False) is None
    assert answer(ClientHello(bytes(32), (0xC0A8,))) is None


# --- secure renegotiation indication (RFC 5746) ---------------------------------------------


def _server_hello_extensions(hello: ClientHello) -> tuple[HandshakeFailure | None, dict[int, bytes]]:
    """What a cookie-less server answers to ``hello``: its failure, or its ServerHello's extensions."""
    server = DtlsConnection(
        DtlsRole.SERVER, ConnectionConfig(psk_lookup={}.get, random=counter_random(3)), 0.0, address=ADDRESS
    )
    record = DtlsRecord(
        HANDSHAKE, DTLS_1_2, 0, 0, encode_handshake(HandshakeType.CLIENT_HELLO, 0, hello.to_bytes())
    )
    server.receive_datagram(record.encode(), 0.0)
    failures = [e for e in events(server) if isinstance(e, HandshakeFailure)]
    if failures:
        return failures[0], {}
    [datagram] = server.datagrams_to_send(0.0)
    [(header, body)] = split_handshake_fragments(parse_datagram(datagram)[0].fragment)[:1]
    assert header.msg_type == HandshakeType.SERVER_HELLO
    return None, {e.extension_type: e.data() for e in ServerHello.parse(body).extensions}


def test_the_client_signals_secure_renegotiation_and_the_server_answers() -> None:
    client, _ = pair()
    [datagram] = client.datagrams_to_send(0.0)
    hello = ClientHello.parse(split_handshake_fragments(parse_datagram(datagram)[0].fragment)[0][1])
    assert 0x00FF in hello.cipher_suites  # TLS_EMPTY_RENEGOTIATION_INFO_SCSV, RFC 5746 §3.3
    # Signalled by the SCSV or by an empty extension, the server answers an empty extension.
    for signal in (
        ClientHello(bytes(32), (0xC0A8, 0x00FF)),
        ClientHello(bytes(32), (0xC0A8,), extensions=(UnknownExtension(0xFF01, b"\x00"),)),
    ):
        failure, extensions = _server_hello_extensions(signal)
        assert failure is None and extensions[0xFF01] == b"\x00"
    failure, extensions = _server_hello_extensions(ClientHello(bytes(32), (0xC0A8,)))
    assert failure is None and 0xFF01 not in extensions  # not offered, not answered
    # A renegotiated_connection on a first handshake is refused (RFC 5746 §3.6).
    failure, _ = _server_hello_extensions(
        ClientHello(bytes(32), (0xC0A8,), extensions=(UnknownExtension(0xFF01, b"\x0c" + bytes(12)),))
    )
    assert failure is not None and "renegotiation_info" in failure.reason


def test_a_server_claiming_a_renegotiated_connection_is_refused() -> None:
    client, server = pair()

    def forge(name: str, datagrams: list[bytes]) -> list[bytes]:
        if (
            name != "server"
            or not datagrams
            or HandshakeType.SERVER_HELLO not in handshake_types(datagrams[0])
        ):
            return datagrams
        records = parse_datagram(datagrams[0])
        header, body = split_handshake_fragments(records[0].fragment)[0]  # the client refuses at it
        hello = ServerHello.parse(body)
        forged = ServerHello(
            hello.random,
            hello.cipher_suite,
            session_id=hello.session_id,
            extensions=(
                *[e for e in hello.extensions if e.extension_type != 0xFF01],
                UnknownExtension(0xFF01, b"\x01\x00"),
            ),
        )
        message = encode_handshake(HandshakeType.SERVER_HELLO, header.message_seq, forged.to_bytes())
        first = DtlsRecord(HANDSHAKE, DTLS_1_2, 0, records[0].sequence, message).encode()
        return [first + b"".join(r.encode() for r in records[1:]), *datagrams[1:]]

    run(client, server, keep=forge, limit=5.0)
    assert not client.established
    assert any(isinstance(e, HandshakeFailure) and "renegotiation_info" in e.reason for e in events(client))
