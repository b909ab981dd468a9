"""The server's table of DTLS connections (RFC 6347 §4.2.1 cookies, RFC 9146 §6 address changes):
our clients against it in memory, from addresses the test chooses, then python-mbedtls."""

from __future__ import annotations

from collections.abc import Callable, Hashable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.helpers.mbedtls import drive, mbedtls_tls, psk_client

from lwm2m.errors import DtlsError, SessionClosed
from lwm2m.tls.connection import (
    ApplicationData,
    ConnectionClosed,
    ConnectionConfig,
    CookieChecker,
    DtlsConnection,
    DtlsRole,
    HandshakeComplete,
)
from lwm2m.tls.messages import HandshakeType, split_handshake_fragments
from lwm2m.tls.record import HANDSHAKE, parse_datagram
from lwm2m.tls.sessions import AddressChanged, DtlsServerSessions, DtlsSessionEvent, SessionKey

PSK = bytes(range(1, 17))
IDENTITY = b"urn:imei:490154203237518"
A = ("192.0.2.7", 5684)
B = ("198.51.100.9", 40000)
C = ("203.0.113.1", 1234)


def _random(seed: int) -> Callable[[int], bytes]:
    counter = [seed]

    def take(n: int) -> bytes:
        counter[0] += 1
        return bytes((counter[0] * 7 + i) & 0xFF for i in range(n))

    return take


def _table(**kwargs: object) -> DtlsServerSessions:
    connection_id = bool(kwargs.pop("connection_id", True))
    config = ConnectionConfig(
        psk_lookup={IDENTITY: PSK}.get, random=_random(500), node_id=7, connection_id=connection_id
    )
    return DtlsServerSessions(config, CookieChecker(b"a cookie secret of 32 bytes ...."), **kwargs)  # type: ignore[arg-type]


def _client(seed: int = 1, **kwargs: object) -> DtlsConnection:
    config = ConnectionConfig(psk_identity=IDENTITY, psk=PSK, random=_random(seed), **kwargs)  # type: ignore[arg-type]
    return DtlsConnection(DtlsRole.CLIENT, config, 0.0)


def _pump(
    table: DtlsServerSessions, clients: dict[Hashable, DtlsConnection], now: float = 0.0
) -> list[bytes]:
    # Carry datagrams until quiet; ``clients`` maps the address each client sends from. Returns
    # everything the clients sent.
    sent: list[bytes] = []
    for _ in range(50):
        moved = False
        for address, client in clients.items():
            for datagram in client.datagrams_to_send(now):
                moved = True
                sent.append(datagram)
                table.receive_datagram(datagram, address, now)
        for datagram, address in table.datagrams_to_send(now):
            moved = True
            if address in clients:
                clients[address].receive_datagram(datagram, now)
        if not moved:
            break
    return sent


def _events(table: DtlsServerSessions) -> list[DtlsSessionEvent | AddressChanged]:
    out = []
    while (event := table.next_event()) is not None:
        out.append(event)
    return out


def _is_client_hello(datagram: bytes) -> bool:
    record = parse_datagram(datagram, 6)[0]
    if record.content_type != HANDSHAKE or record.epoch != 0:
        return False
    return split_handshake_fragments(record.fragment)[0][0].msg_type == HandshakeType.CLIENT_HELLO


def _established(**kwargs: object) -> tuple[DtlsServerSessions, DtlsConnection, SessionKey]:
    table = _table(**kwargs)
    client = _client()
    _pump(table, {A: client})
    [event] = _events(table)
    assert isinstance(event, DtlsSessionEvent) and event.event == HandshakeComplete(IDENTITY)
    assert client.established
    client.next_event()
    return table, client, event.session


def test_a_client_completes_its_handshake_after_the_cookie_exchange() -> None:
    table = _table()
    client = _client()
    [hello] = client.datagrams_to_send(0.0)
    table.receive_datagram(hello, A, 0.0)
    [(verify, to)] = table.datagrams_to_send(0.0)
    assert to == A and len(table) == 0  # RFC 6347 §4.2.1: nothing kept before the cookie
    client.receive_datagram(verify, 0.0)
    _pump(table, {A: client})
    [event] = _events(table)
    assert isinstance(event, DtlsSessionEvent)
    assert (event.address, event.event) == (A, HandshakeComplete(IDENTITY))
    assert len(table) == 1 and table.handshakes_in_progress == 0
    assert table.session_at(A) == event.session and table.address_of(event.session) == A
    connection = table.connection(event.session)
    assert connection is not None and connection.own_cid[0] == 7 and len(connection.own_cid) == 6


def test_application_data_both_ways_by_key_and_by_address() -> None:
    table, client, key = _established()
    client.send_application_data(b"POST /rd")
    _pump(table, {A: client}, 1.0)
    assert _events(table) == [DtlsSessionEvent(key, A, ApplicationData(b"POST /rd"))]
    table.send(key, b"2.01 Created")
    table.send(A, b"again")
    _pump(table, {A: client}, 1.0)
    assert [client.next_event(), client.next_event()] == [
        ApplicationData(b"2.01 Created"),
        ApplicationData(b"again"),
    ]
    with pytest.raises(SessionClosed):
        table.send(B, b"nobody")
    with pytest.raises(SessionClosed):
        table.send(SessionKey(99), b"nobody")


def test_the_session_follows_the_client_to_a_new_address() -> None:
    table, client, key = _established()
    client.send_application_data(b"after NAT rebinding")
    [datagram] = client.datagrams_to_send(1.0)
    assert datagram[0] == 25  # a tls12_cid record (RFC 9146 §4)
    table.receive_datagram(datagram, B, 1.0)
    assert _events(table) == [
        AddressChanged(key, A, B),
        DtlsSessionEvent(key, B, ApplicationData(b"after NAT rebinding")),
    ]
    assert table.address_of(key) == B and table.session_at(B) == key and table.session_at(A) is None
    table.send(key, b"2.04 Changed")
    [(answer, to)] = table.datagrams_to_send(1.0)
    assert to == B
    client.receive_datagram(answer, 1.0)
    assert client.next_event() == ApplicationData(b"2.04 Changed")
    # Data keeps flowing from the new address, and no new handshake was needed.
    client.send_application_data(b"more")
    sent = _pump(table, {B: client}, 2.0)
    assert not any(_is_client_hello(d) for d in sent)
    assert _events(table) == [DtlsSessionEvent(key, B, ApplicationData(b"more"))]
    assert len(table) == 1


def test_a_replayed_cid_record_from_a_new_address_does_not_move_the_session() -> None:
    table, client, key = _established()
    client.send_application_data(b"one")
    [datagram] = client.datagrams_to_send(1.0)
    table.receive_datagram(datagram, A, 1.0)
    _events(table)
    table.receive_datagram(datagram, C, 2.0)  # an attacker replays it from elsewhere
    assert _events(table) == [] and table.address_of(key) == A


def test_an_older_cid_record_from_a_new_address_does_not_move_the_session() -> None:
    table, client, key = _established()
    client.send_application_data(b"older")
    client.send_application_data(b"newer")
    older, newer = client.datagrams_to_send(1.0)
    table.receive_datagram(newer, A, 1.0)
    _events(table)
    # Authentic and never seen, but not newer than the highest accepted (RFC 9146 §6): its data
    # is taken, the address is not.
    table.receive_datagram(older, C, 1.0)
    assert _events(table) == [DtlsSessionEvent(key, A, ApplicationData(b"older"))]
    assert table.address_of(key) == A


def test_an_unknown_or_forged_cid_is_dropped() -> None:
    table, client, key = _established()
    client.send_application_data(b"x")
    [datagram] = client.datagrams_to_send(1.0)
    unknown = bytearray(datagram)
    unknown[12] ^= 0x55  # inside the CID
    table.receive_datagram(bytes(unknown), C, 1.0)
    forged = bytearray(datagram)
    forged[-1] ^= 1  # the tag
    table.receive_datagram(bytes(forged), C, 1.0)
    table.receive_datagram(datagram[:14], C, 1.0)  # shorter than its CID
    assert _events(table) == [] and table.datagrams_to_send(1.0) == []
    assert table.address_of(key) == A


def test_without_connection_id_records_are_plain_and_routed_by_address() -> None:
    table, client, key = _established(connection_id=False)
    assert not client.cid_negotiated
    client.send_application_data(b"plain")
    [datagram] = client.datagrams_to_send(1.0)
    assert datagram[0] == 23
    table.receive_datagram(datagram, B, 1.0)  # another address: another (unknown) peer
    assert _events(table) == []
    table.receive_datagram(datagram, A, 1.0)
    assert _events(table) == [DtlsSessionEvent(key, A, ApplicationData(b"plain"))]


def test_a_client_without_connection_id_gets_plain_records() -> None:
    table = _table()
    client = _client(connection_id=False)
    _pump(table, {A: client})
    [event] = _events(table)
    assert isinstance(event, DtlsSessionEvent)
    table.send(event.session, b"plain")
    [(datagram, _)] = table.datagrams_to_send(1.0)
    assert datagram[0] == 23


def test_handshakes_in_progress_are_capped_oldest_dropped_first() -> None:
    table = _table(max_handshakes=2)
    clients = {address: _client(seed) for seed, address in enumerate((A, B, C), start=1)}
    # Each client gets through the cookie exchange; the server's flight is never delivered.
    for address, client in clients.items():
        table.receive_datagram(client.datagrams_to_send(0.0)[0], address, 0.0)
        [(verify, _)] = table.datagrams_to_send(0.0)
        client.receive_datagram(verify, 0.0)
        table.receive_datagram(client.datagrams_to_send(0.0)[0], address, 0.0)
        table.datagrams_to_send(0.0)
    assert table.handshakes_in_progress == 2 and len(table) == 2
    assert table.session_at(A) is None and table.session_at(B) is not None
    assert table.session_at(C) is not None


def test_sessions_are_capped() -> None:
    table = _table(max_sessions=1, max_handshakes=1)
    first = _client(1)
    _pump(table, {A: first})
    second = _client(2)
    _pump(table, {B: second})
    assert len(table) == 1 and first.established and not second.established


def test_a_session_moving_onto_the_address_of_another_ends_that_one() -> None:
    table, _, first_key = _established()
    second = _client(5)
    _pump(table, {B: second})
    [event] = _events(table)
    assert isinstance(event, DtlsSessionEvent)
    second.next_event()
    # The NAT gives A's port to the second client.
    second.send_application_data(b"moved")
    _pump(table, {A: second}, 1.0)
    assert _events(table) == [
        DtlsSessionEvent(first_key, A, ConnectionClosed("its address was taken by another session")),
        AddressChanged(event.session, B, A),
        DtlsSessionEvent(event.session, A, ApplicationData(b"moved")),
    ]
    assert len(table) == 1 and table.session_at(A) == event.session
    with pytest.raises(DtlsError):
        _table(max_sessions=1, max_handshakes=2)


def test_a_restarted_client_replaces_its_old_session_after_the_cookie_exchange() -> None:
    table, _old_client, key = _established()
    new_client = _client(9)
    [hello] = new_client.datagrams_to_send(0.0)
    table.receive_datagram(hello, A, 0.0)
    assert len(table) == 1 and table.address_of(key) == A  # kept until the cookie checks out
    [(verify, _)] = table.datagrams_to_send(0.0)
    new_client.receive_datagram(verify, 0.0)
    _pump(table, {A: new_client})
    closed, event = _events(table)
    assert closed == DtlsSessionEvent(key, A, ConnectionClosed("the client started a new handshake"))
    assert isinstance(event, DtlsSessionEvent) and event.event == HandshakeComplete(IDENTITY)
    assert event.session != key and len(table) == 1 and table.address_of(key) is None


def test_timers_retransmit_and_closed_sessions_are_forgotten() -> None:
    table = _table()
    client = _client()
    table.receive_datagram(client.datagrams_to_send(0.0)[0], A, 0.0)
    client.receive_datagram(table.datagrams_to_send(0.0)[0][0], 0.0)
    table.receive_datagram(client.datagrams_to_send(0.0)[0], A, 0.0)
    first = table.datagrams_to_send(0.0)  # the server's flight: lost
    timer = table.get_timer()
    assert first and timer is not None and timer > 0.0
    table.handle_timer(timer)
    again = table.datagrams_to_send(timer)
    assert len(again) == len(first)
    for datagram, _ in again:
        client.receive_datagram(datagram, timer)
    _pump(table, {A: client}, timer)
    [event] = _events(table)
    assert isinstance(event, DtlsSessionEvent) and event.event == HandshakeComplete(IDENTITY)
    client.next_event()
    client.close()
    _pump(table, {A: client}, timer)
    assert _events(table) == [DtlsSessionEvent(event.session, A, ConnectionClosed("close_notify"))]
    assert len(table) == 0 and table.get_timer() is None


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=200), prefix=st.sampled_from([b"", b"\x19\xfe\xfd\x00\x01", b"\x16\xfe\xfd"]))
def test_any_datagram_from_anywhere_is_routed_or_dropped(data: bytes, prefix: bytes) -> None:
    table, _, _ = _established()
    table.receive_datagram(prefix + data, A, 1.0)
    table.receive_datagram(prefix + data, C, 1.0)
    table.datagrams_to_send(1.0)
    _events(table)


# --- against python-mbedtls ------------------------------------------------------------------


def test_mbedtls_client_against_the_table() -> None:
    tls = mbedtls_tls()
    buf = psk_client(IDENTITY.decode(), PSK)
    table = _table()
    for _ in range(6):
        sent = drive(buf)
        if sent:
            table.receive_datagram(sent, A, 0.0)
        for datagram, to in table.datagrams_to_send(0.0):
            assert to == A
            buf.receive_from_network(datagram)
    assert buf._handshake_state is tls.HandshakeStep.HANDSHAKE_OVER
    [event] = _events(table)
    assert isinstance(event, DtlsSessionEvent) and event.event == HandshakeComplete(IDENTITY)
    connection = table.connection(event.session)
    assert connection is not None and not connection.cid_negotiated  # Mbed TLS offered no CID
    buf.write(b"POST /rd?ep=mbedtls")
    table.receive_datagram(drive(buf), A, 1.0)
    assert _events(table) == [DtlsSessionEvent(event.session, A, ApplicationData(b"POST /rd?ep=mbedtls"))]
    table.send(event.session, b"2.01 Created")
    [(datagram, _)] = table.datagrams_to_send(1.0)
    assert datagram[0] == 23
    buf.receive_from_network(datagram)
    assert buf.read(100) == b"2.01 Created"
