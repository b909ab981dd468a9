"""Resumption in the DTLS connection: the abbreviated handshake of RFC 5246 §7.3 by session id
and by a ticket of RFC 5077, both roles, our client against our server in memory; the rules of
RFC 7627 §5.3 on the extended master secret; lost and repeated flights of the abbreviated
handshake (RFC 6347 §4.2.4: there the client's flight is the last one); and Mbed TLS as a peer
that takes our NewSessionTicket, and as a server that knows nothing of our offer."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.helpers.dtls_engine import (
    ADDRESS,
    IDENTITY,
    PSK,
    client_config,
    connect_recording,
    counter_random,
    events,
    exchange,
    handshake_types,
    run,
    server_config,
)
from tests.helpers.mbedtls import (
    connect_to_mbedtls_server,
    drive,
    psk_client,
    psk_server,
    serve_mbedtls_client,
)

from lwm2m.tls.connection import (
    ApplicationData,
    ConnectionConfig,
    DtlsConnection,
    DtlsRole,
    HandshakeComplete,
    HandshakeFailure,
)
from lwm2m.tls.messages import (
    ClientHello,
    ExtendedMasterSecretExtension,
    Extension,
    HandshakeType,
    ServerHello,
    SessionTicketExtension,
    encode_handshake,
)
from lwm2m.tls.record import DTLS_1_2, HANDSHAKE, DtlsRecord, parse_datagram
from lwm2m.tls.state import ResumableSession
from lwm2m.tls.tickets import SessionCache, TicketKeys

TICKET_SECRET = b"a ticket secret of 32 bytes ...."
OTHER_SECRET = b"another ticket secret, 32 bytes."
SUITE = 0xC0A8
NEW_PSK = bytes(range(101, 133))
NO_CID = {"connection_id": False}  # plain records, so that the test can read the flights


def _full(server_cfg: ConnectionConfig, client_cfg: ConnectionConfig | None = None) -> DtlsConnection:
    # One full handshake; the client that made it (its .session is what to resume).
    client = DtlsConnection(DtlsRole.CLIENT, client_cfg or client_config(), 0.0)
    server = DtlsConnection(DtlsRole.SERVER, server_cfg, 0.0, address=ADDRESS)
    run(client, server)
    assert events(client) == [HandshakeComplete(IDENTITY)]
    assert events(server) == [HandshakeComplete(IDENTITY)]
    return client


def _again(
    session: ResumableSession | None,
    server_cfg: ConnectionConfig,
    now: float = 10.0,
    client_cfg: ConnectionConfig | None = None,
) -> tuple[DtlsConnection, DtlsConnection, list[list[int]]]:
    # A second connection offering ``session``; also the handshake types each datagram carried.
    return connect_recording(server_cfg, client_cfg or client_config(), session, now)


def _talk(client: DtlsConnection, server: DtlsConnection, now: float) -> None:
    client.send_application_data(b"POST /rd?ep=resumed")
    server.send_application_data(b"2.05 Content")
    exchange(client, server, now)
    # (after the handshake's own events, if the test did not take them)
    assert events(server)[-1:] == [ApplicationData(b"POST /rd?ep=resumed")]
    assert events(client)[-1:] == [ApplicationData(b"2.05 Content")]


def test_resumption_by_session_id_is_an_abbreviated_handshake() -> None:
    cache = SessionCache()
    config = server_config(session_cache=cache)
    first = _full(config)
    session = first.session
    assert session is not None and len(session.session_id) == 32 and session.extended_master_secret
    assert len(cache) == 1 and session.ticket == b""  # no ticket keys: no ticket

    client, server, seen = _again(session, config)
    assert events(client) == [HandshakeComplete(IDENTITY, resumed=True)]
    assert events(server) == [HandshakeComplete(IDENTITY, resumed=True)]
    assert client.resumed and server.resumed and server.peer_identity == IDENTITY
    flat = [t for types in seen for t in types]
    # Hello, verify, hello, then ServerHello and Finished: no key exchange at all.
    assert HandshakeType.CLIENT_KEY_EXCHANGE not in flat and HandshakeType.SERVER_HELLO_DONE not in flat
    assert flat.count(HandshakeType.SERVER_HELLO) == 1
    _talk(client, server, 11.0)
    # The resumed session is the same session: same id, same master secret, new keys.
    assert client.session is not None and client.session.session_id == session.session_id
    assert client.session.master_secret == session.master_secret


def test_resumption_by_ticket_keeps_no_state_on_the_server() -> None:
    keys = TicketKeys(TICKET_SECRET)
    first = _full(server_config(ticket_keys=keys))
    session = first.session
    assert session is not None and session.session_id == b"" and len(session.ticket) > 0
    assert session.ticket_lifetime == 24 * 3600
    # A server made afresh (a restart, another node) with the same key resumes it.
    restarted = server_config(ticket_keys=TicketKeys(TICKET_SECRET), random=counter_random(500))
    client, server, _ = _again(session, restarted)
    assert server.resumed and client.resumed
    _talk(client, server, 11.0)
    # The server sent a new ticket in the abbreviated handshake (RFC 5077 §3.1, figure 2).
    renewed = client.session
    assert renewed is not None and renewed.ticket and renewed.ticket != session.ticket
    assert renewed.created == session.created  # resuming does not extend the session's life
    client, server, _ = _again(renewed, restarted, now=20.0)
    assert server.resumed


def test_a_rotated_ticket_key_still_opens_until_the_next_rotation() -> None:
    keys = TicketKeys(TICKET_SECRET)
    config = server_config(ticket_keys=keys)
    session = _full(config).session
    assert session is not None
    keys.rotate(OTHER_SECRET)
    _, server, _ = _again(session, config)
    assert server.resumed
    keys.rotate(b"a third ticket secret of 32 bytes")
    client, server, _ = _again(session, config)
    assert not server.resumed and server.established and client.established
    assert events(client) == [HandshakeComplete(IDENTITY)]


@pytest.mark.parametrize("change", ["expired", "forged", "unknown-key", "truncated"])
def test_a_ticket_that_does_not_open_gives_a_full_handshake(change: str) -> None:
    keys = TicketKeys(TICKET_SECRET, lifetime=3600.0)
    session = _full(server_config(ticket_keys=keys)).session
    assert session is not None
    now = 10.0
    config = server_config(ticket_keys=keys)
    if change == "expired":
        now = 3601.0
    elif change == "forged":
        ticket = bytearray(session.ticket)
        ticket[40] ^= 1
        session = ResumableSession(**{**_fields(session), "ticket": bytes(ticket)})
    elif change == "unknown-key":
        config = server_config(ticket_keys=TicketKeys(OTHER_SECRET))
    else:
        session = ResumableSession(**{**_fields(session), "ticket": session.ticket[:20]})
    client, server, _ = _again(session, config, now)
    assert client.established and server.established
    assert not client.resumed and not server.resumed
    assert events(server) == [HandshakeComplete(IDENTITY)]
    _talk(client, server, now + 1)
    # The full handshake gave a fresh ticket.
    assert client.session is not None and client.session.ticket != session.ticket


def _fields(session: ResumableSession) -> dict[str, object]:
    return {name: getattr(session, name) for name in ResumableSession.__dataclass_fields__}


def test_an_unknown_or_expired_session_id_gives_a_full_handshake_with_a_new_id() -> None:
    config = server_config(session_cache=SessionCache(lifetime=60.0))
    session = _full(config).session
    assert session is not None
    fresh = server_config(session_cache=SessionCache(), random=counter_random(500))
    for server_cfg, now in ((fresh, 10.0), (config, 61.0)):
        client, server, _ = _again(session, server_cfg, now)
        assert client.established and not client.resumed and not server.resumed
        assert client.session is not None and client.session.session_id not in (b"", session.session_id)


def test_a_session_of_a_removed_identity_is_not_resumed() -> None:
    psks = {IDENTITY: PSK}
    config = server_config(psks, session_cache=SessionCache())
    session = _full(config).session
    del psks[IDENTITY]
    _, server, _ = _again(session, config)
    # Without resumption the full handshake meets the unknown identity (RFC 4279 §2).
    assert not server.resumed
    [failure] = events(server)
    assert isinstance(failure, HandshakeFailure) and "unknown PSK identity" in failure.reason


@pytest.mark.parametrize("cache", [True, False], ids=["session-id", "ticket"])
def test_a_session_of_a_replaced_psk_is_not_resumed(cache: bool) -> None:
    # The bootstrap server gave the device a new PSK under the same identity: a session of the
    # old one (whose master secret anyone holding the old PSK could derive) is not resumed.
    psks = {IDENTITY: PSK}
    options: dict[str, object] = {"ticket_keys": TicketKeys(TICKET_SECRET)}
    if cache:
        options = {"session_cache": SessionCache()}
    config = server_config(psks, **options)
    session = _full(config).session
    assert session is not None and session.bound_to(PSK)
    psks[IDENTITY] = NEW_PSK
    # A client that still has the old PSK offers the session; the server does not resume it,
    # and the full handshake then fails on the PSK.
    client, server, _ = _again(session, config)
    assert client.datagrams_to_send(20.0) == [] and not server.resumed and not server.established
    assert any(isinstance(event, HandshakeFailure) for event in events(server))
    # Our client with the new PSK does not offer the old session at all.
    assert not session.bound_to(NEW_PSK)
    client, server, _ = _again(session, config, client_cfg=client_config(psk=NEW_PSK))
    assert client.established and server.established and not client.resumed


def test_the_client_offers_only_a_session_of_its_own_identity() -> None:
    config = server_config({IDENTITY: PSK, b"other": PSK}, session_cache=SessionCache())
    session = _full(config).session
    other = client_config(identity=b"other")
    client, server, _ = _again(session, config, client_cfg=other)
    assert client.established and not client.resumed and server.peer_identity == b"other"


def test_both_cache_and_tickets_resume_by_ticket_first() -> None:
    cache = SessionCache()
    config = server_config(session_cache=cache, ticket_keys=TicketKeys(TICKET_SECRET))
    session = _full(config).session
    assert session is not None and session.session_id and session.ticket
    # The cache forgot it; the ticket is enough.
    cache.remove(session.session_id)
    _, server, _ = _again(session, config)
    assert server.resumed


def test_without_session_tickets_the_client_asks_for_none() -> None:
    config = server_config(ticket_keys=TicketKeys(TICKET_SECRET), session_cache=SessionCache())
    session = _full(config, client_config(session_tickets=False)).session
    assert session is not None and session.ticket == b"" and session.session_id
    _, server, _ = _again(session, config, client_cfg=client_config(session_tickets=False))
    assert server.resumed


# --- RFC 7627 §5.3 ---------------------------------------------------------------------------


def _hello_to_server(server: DtlsConnection, hello: ClientHello) -> list[bytes]:
    message = encode_handshake(HandshakeType.CLIENT_HELLO, 0, hello.to_bytes())
    server.receive_datagram(DtlsRecord(HANDSHAKE, DTLS_1_2, 0, 0, message).encode(), 1.0)
    return server.datagrams_to_send(1.0)


def _cached(ems: bool) -> tuple[SessionCache, ResumableSession]:
    cache = SessionCache()
    session = ResumableSession(b"\x11" * 32, SUITE, b"\x22" * 48, IDENTITY, ems, 0.0)
    cache.store(session)
    return cache, session


def test_a_session_with_ems_offered_without_ems_aborts_the_handshake() -> None:
    cache, session = _cached(ems=True)
    server = DtlsConnection(
        DtlsRole.SERVER, server_config(session_cache=cache, cookie_checker=None), 0.0, address=ADDRESS
    )
    hello = ClientHello(bytes(32), (SUITE,), session_id=session.session_id)
    _hello_to_server(server, hello)
    [failure] = events(server)
    assert isinstance(failure, HandshakeFailure) and "extended master secret" in failure.reason


def test_a_session_without_ems_is_not_resumed_but_renegotiated_in_full() -> None:
    cache, session = _cached(ems=False)
    server = DtlsConnection(
        DtlsRole.SERVER, server_config(session_cache=cache, cookie_checker=None), 0.0, address=ADDRESS
    )
    for extensions in ((ExtendedMasterSecretExtension(),), ()):
        hello = ClientHello(bytes(32), (SUITE,), session_id=session.session_id, extensions=extensions)
        [flight] = _hello_to_server(server, hello)
        assert HandshakeType.SERVER_HELLO_DONE in handshake_types(flight)
        assert not server.resumed
        server = DtlsConnection(
            DtlsRole.SERVER, server_config(session_cache=cache, cookie_checker=None), 0.0, address=ADDRESS
        )


def test_the_client_does_not_offer_a_session_without_ems() -> None:
    legacy = ResumableSession(b"\x11" * 32, SUITE, b"\x22" * 48, IDENTITY, False, 0.0)
    assert not legacy.resumable
    client = DtlsConnection(DtlsRole.CLIENT, client_config(), 0.0, session=legacy)
    [datagram] = client.datagrams_to_send(0.0)
    [record] = parse_datagram(datagram)
    assert ClientHello.parse(record.fragment[12:]).session_id == b""


def test_the_client_aborts_a_resumption_without_ems() -> None:
    _, session = _cached(ems=True)
    client = DtlsConnection(DtlsRole.CLIENT, client_config(**NO_CID), 0.0, session=session)
    client.datagrams_to_send(0.0)
    hello = ServerHello(bytes(32), SUITE, session.session_id)  # echoes the id, no EMS
    message = encode_handshake(HandshakeType.SERVER_HELLO, 0, hello.to_bytes())
    client.receive_datagram(DtlsRecord(HANDSHAKE, DTLS_1_2, 0, 0, message).encode(), 1.0)
    [failure] = events(client)
    assert isinstance(failure, HandshakeFailure) and "extended_master_secret" in failure.reason


def test_a_ticket_the_client_did_not_ask_for_is_refused() -> None:
    client = DtlsConnection(DtlsRole.CLIENT, client_config(session_tickets=False, **NO_CID), 0.0)
    client.datagrams_to_send(0.0)
    extensions = (ExtendedMasterSecretExtension(), SessionTicketExtension())
    hello = ServerHello(bytes(32), SUITE, extensions=extensions)
    message = encode_handshake(HandshakeType.SERVER_HELLO, 0, hello.to_bytes())
    client.receive_datagram(DtlsRecord(HANDSHAKE, DTLS_1_2, 0, 0, message).encode(), 1.0)
    [failure] = events(client)
    assert isinstance(failure, HandshakeFailure) and "session_ticket" in failure.reason


# --- lost and repeated flights of the abbreviated handshake ---------------------------------


def _resumable() -> tuple[ConnectionConfig, ResumableSession]:
    config = server_config(session_cache=SessionCache(), ticket_keys=TicketKeys(TICKET_SECRET), **NO_CID)
    session = _full(config, client_config(**NO_CID)).session
    assert session is not None
    return config, session


def _dropping(side: str, index: int) -> tuple[list[bytes], object]:
    # Drops the index-th datagram that ``side`` sends; returns what was dropped.
    dropped: list[bytes] = []
    count = [0]

    def keep(name: str, datagrams: list[bytes]) -> list[bytes]:
        out = []
        for datagram in datagrams:
            if name == side:
                count[0] += 1
                if count[0] == index:
                    dropped.append(datagram)
                    continue
            out.append(datagram)
        return out

    return dropped, keep


@pytest.mark.parametrize(
    ("side", "index", "what"),
    [
        ("client", 1, "first hello"),
        ("server", 1, "HelloVerifyRequest"),
        ("client", 2, "hello with cookie"),
        ("server", 2, "ServerHello..Finished"),
        ("client", 3, "client Finished"),
    ],
)
def test_every_flight_of_the_abbreviated_handshake_lost_once_is_recovered(
    side: str, index: int, what: str
) -> None:
    config, session = _resumable()
    client = DtlsConnection(DtlsRole.CLIENT, client_config(**NO_CID), 10.0, session=session)
    server = DtlsConnection(DtlsRole.SERVER, config, 10.0, address=ADDRESS)
    dropped, keep = _dropping(side, index)
    ended = run(client, server, keep, start=10.0)  # type: ignore[arg-type]
    assert dropped, what
    assert client.established and server.established and client.resumed and server.resumed
    assert ended <= 10.0 + 1.0  # one retransmission at the first timeout
    _talk(client, server, ended + 1)


def test_the_last_flight_of_the_abbreviated_handshake_is_the_clients_and_has_no_timer() -> None:
    config, session = _resumable()
    client = DtlsConnection(DtlsRole.CLIENT, client_config(**NO_CID), 10.0, session=session)
    server = DtlsConnection(DtlsRole.SERVER, config, 10.0, address=ADDRESS)
    held: list[bytes] = []

    def hold_client_finished(name: str, datagrams: list[bytes]) -> list[bytes]:
        if name == "client" and client.established:
            held.extend(datagrams)
            return []
        return datagrams

    exchange(client, server, 10.0, hold_client_finished)
    assert client.established and not server.established and held
    assert client.get_timer() is None  # the client's last flight waits for the server's repeat
    timer = server.get_timer()
    assert timer is not None  # the server's flight is not the last one here: it has a timer
    server.handle_timer(timer)
    repeat = server.datagrams_to_send(timer)
    assert handshake_types(repeat[0]) == [HandshakeType.SERVER_HELLO, HandshakeType.NEW_SESSION_TICKET]
    for datagram in repeat:
        client.receive_datagram(datagram, timer)
    again = client.datagrams_to_send(timer)
    assert again  # the client answered the repeat with its last flight
    for datagram in again:
        server.receive_datagram(datagram, timer)
    assert server.established and server.get_timer() is None
    # The held original arrives late: a duplicate, dropped quietly.
    for datagram in held:
        server.receive_datagram(datagram, timer)
    assert server.datagrams_to_send(timer) == []
    assert events(server) == [HandshakeComplete(IDENTITY, resumed=True)]


def test_duplicated_datagrams_of_the_abbreviated_handshake_change_nothing() -> None:
    config, session = _resumable()
    client = DtlsConnection(DtlsRole.CLIENT, client_config(**NO_CID), 10.0, session=session)
    server = DtlsConnection(DtlsRole.SERVER, config, 10.0, address=ADDRESS)
    run(client, server, lambda name, datagrams: datagrams + datagrams, start=10.0)
    assert client.resumed and server.resumed
    assert events(client) == [HandshakeComplete(IDENTITY, resumed=True)]
    assert events(server) == [HandshakeComplete(IDENTITY, resumed=True)]


def test_a_fatal_alert_makes_the_session_unresumable() -> None:
    config = server_config(session_cache=SessionCache())
    client = DtlsConnection(DtlsRole.CLIENT, client_config(), 0.0)
    server = DtlsConnection(DtlsRole.SERVER, config, 0.0, address=ADDRESS)
    run(client, server)
    assert server.session is not None and len(config.session_cache or ()) == 1
    # A fatal alert (internal_error) from the client, protected, ends the session for good.
    client._send_alert(2, 80)
    exchange(client, server, 1.0)
    assert server.closed and server.session is None
    assert len(config.session_cache or ()) == 0


# --- Mbed TLS ---------------------------------------------------------------------------------


def test_mbedtls_client_takes_our_new_session_ticket() -> None:
    tls = pytest.importorskip("mbedtls.tls")
    buf = psk_client(IDENTITY.decode(), PSK)
    keys = TicketKeys(TICKET_SECRET)
    config = server_config(ticket_keys=keys, session_cache=SessionCache())
    server = DtlsConnection(DtlsRole.SERVER, config, 0.0, address=ADDRESS)
    flights = []

    def watch(sender: str, datagram: bytes) -> None:
        if sender == "server":
            flights.append(handshake_types(datagram))

    serve_mbedtls_client(buf, server, rounds=6, watch=watch)
    # Mbed TLS asked for a ticket (an empty SessionTicket extension); our last flight carried
    # one, and its Finished, computed over it, verified.
    assert [HandshakeType.NEW_SESSION_TICKET] in flights
    assert buf._handshake_state is tls.HandshakeStep.HANDSHAKE_OVER
    assert events(server) == [HandshakeComplete(IDENTITY)]
    assert server.session is not None and server.session.session_id
    buf.write(b"POST /rd?ep=mbedtls")
    server.receive_datagram(drive(buf), 1.0)
    assert events(server) == [ApplicationData(b"POST /rd?ep=mbedtls")]


def test_our_client_offering_a_session_to_mbedtls_falls_back_to_a_full_handshake() -> None:
    tls = pytest.importorskip("mbedtls.tls")
    # A session from our own server: Mbed TLS has never seen its id or its ticket.
    ours = server_config(ticket_keys=TicketKeys(TICKET_SECRET), session_cache=SessionCache())
    session = _full(ours).session
    buf = psk_server({IDENTITY.decode(): PSK}, anti_replay=True)
    client = DtlsConnection(DtlsRole.CLIENT, client_config(), 0.0, session=session)
    connect_to_mbedtls_server(buf, client, ADDRESS, rounds=4)
    assert buf._handshake_state is tls.HandshakeStep.HANDSHAKE_OVER
    assert events(client) == [HandshakeComplete(IDENTITY)]
    assert not client.resumed


@given(session_id=st.binary(max_size=32), ticket=st.binary(max_size=300), ems=st.booleans())
@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
def test_any_offered_session_id_and_ticket_give_a_full_handshake_or_a_clean_failure(
    session_id: bytes, ticket: bytes, ems: bool
) -> None:
    keys = TicketKeys(TICKET_SECRET)
    config = server_config(session_cache=SessionCache(), ticket_keys=keys, cookie_checker=None)
    server = DtlsConnection(DtlsRole.SERVER, config, 0.0, address=ADDRESS)
    extensions: tuple[Extension, ...] = (SessionTicketExtension(ticket),)
    if ems:
        extensions += (ExtendedMasterSecretExtension(),)
    hello = ClientHello(bytes(32), (SUITE,), session_id=session_id, extensions=extensions)
    [flight] = _hello_to_server(server, hello)
    assert not server.resumed
    assert HandshakeType.SERVER_HELLO_DONE in handshake_types(flight)


def test_the_servers_abbreviated_flight_in_several_datagrams_reversed_completes() -> None:
    # Small datagrams split ServerHello, NewSessionTicket and Finished; they arrive backwards,
    # so the Finished waits for the keys that the ServerHello brings.
    config, session = _resumable()
    small = server_config(
        session_cache=config.session_cache, ticket_keys=config.ticket_keys, max_datagram_size=120, **NO_CID
    )
    client = DtlsConnection(DtlsRole.CLIENT, client_config(**NO_CID), 10.0, session=session)
    server = DtlsConnection(DtlsRole.SERVER, small, 10.0, address=ADDRESS)
    split: list[int] = []

    def reverse_server(name: str, datagrams: list[bytes]) -> list[bytes]:
        if name == "server":
            split.append(len(datagrams))
            return datagrams[::-1]
        return datagrams

    run(client, server, reverse_server, start=10.0)
    assert max(split) >= 3
    assert client.resumed and server.resumed
    assert events(client) == [HandshakeComplete(IDENTITY, resumed=True)]
    _talk(client, server, 11.0)


@pytest.mark.parametrize(("side", "index"), [(side, n) for n in (1, 2, 3) for side in ("client", "server")])
def test_a_full_handshake_that_issues_a_ticket_recovers_every_lost_flight(side: str, index: int) -> None:
    keys = TicketKeys(TICKET_SECRET)
    config = server_config(ticket_keys=keys, session_cache=SessionCache(), max_datagram_size=160, **NO_CID)
    client = DtlsConnection(DtlsRole.CLIENT, client_config(**NO_CID), 0.0)
    server = DtlsConnection(DtlsRole.SERVER, config, 0.0, address=ADDRESS)
    dropped, keep = _dropping(side, index)

    def backwards(name: str, datagrams: list[bytes]) -> list[bytes]:
        return keep(name, datagrams)[::-1]  # type: ignore[operator, no-any-return]

    run(client, server, backwards)
    assert dropped
    assert client.established and server.established
    session = client.session
    assert session is not None and session.ticket and session.session_id
    _, again, _ = _again(session, config)
    assert again.resumed
