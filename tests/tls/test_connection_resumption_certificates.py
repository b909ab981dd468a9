"""Resumption and export of ECDHE_ECDSA sessions in the DTLS connection, X.509 and raw public
keys (RFC 7250), our client against our server in memory: the abbreviated handshake of RFC 5246
§7.3 by session id and by an RFC 5077 ticket gives the peer the full handshake authenticated
(RFC 5077 §3.4), and a session is resumed only with the credentials it was made with."""

from __future__ import annotations

from typing import Any

import pytest
from tests.helpers.certificates import CertificateAuthority, p256, rpk_credentials
from tests.helpers.dtls_engine import (
    ADDRESS,
    connect_recording,
    counter_random,
    events,
    exchange,
)

from lwm2m.tls.certificates import CertificateCredentials, CertificateType, PeerCredentials, spki_der
from lwm2m.tls.connection import (
    ApplicationData,
    ConnectionConfig,
    DtlsConnection,
    DtlsRole,
    HandshakeComplete,
)
from lwm2m.tls.cookies import CookieChecker
from lwm2m.tls.messages import HandshakeType
from lwm2m.tls.state import PEER_RPK, PEER_X509, ResumableSession
from lwm2m.tls.tickets import SessionCache, TicketKeys

HOST = "lwm2m.example"
ENDPOINT = "urn:imei:490154203237518"
CA = CertificateAuthority("LwM2M test CA")
SERVER = CA.issue(HOST, dns_names=(HOST,), usage="server")
CLIENT = CA.issue(ENDPOINT)
SERVER_KEY, CLIENT_KEY, OTHER_KEY = p256(), p256(), p256()
SERVER_SPKI, CLIENT_SPKI = spki_der(SERVER_KEY.public_key()), spki_der(CLIENT_KEY.public_key())
TICKET_SECRET = b"a ticket secret of 32 bytes ...."
X509 = CertificateType.X509
RPK = CertificateType.RAW_PUBLIC_KEY


def _credentials(kind: str, side: str, key: Any = None) -> CertificateCredentials:
    if kind == "x509":
        issued = SERVER if side == "server" else CLIENT
        options: dict[str, Any] = {"trust_anchors": (CA.certificate,)}
        if side == "client":
            options["expected_name"] = HOST
        return issued.credentials(**options)
    if side == "server":
        return rpk_credentials(key or SERVER_KEY, peer_public_keys=frozenset({CLIENT_SPKI}))
    return rpk_credentials(
        key or CLIENT_KEY,
        peer_public_keys=frozenset({SERVER_SPKI, spki_der(OTHER_KEY.public_key())}),
    )


def _server_config(kind: str, key: Any = None, **options: Any) -> ConnectionConfig:
    options.setdefault("cookie_checker", CookieChecker(b"a cookie secret of 32 bytes ....", previous=None))
    options.setdefault("random", counter_random(100))
    return ConnectionConfig(certificate=_credentials(kind, "server", key), **options)


def _client_config(kind: str, key: Any = None) -> ConnectionConfig:
    return ConnectionConfig(certificate=_credentials(kind, "client", key), random=counter_random(1))


def _connect(
    server_cfg: ConnectionConfig,
    client_cfg: ConnectionConfig,
    session: ResumableSession | None = None,
    now: float = 0.0,
) -> tuple[DtlsConnection, DtlsConnection, list[int]]:
    # A handshake offering ``session``; also the handshake types that went over the wire.
    client, server, seen = connect_recording(server_cfg, client_cfg, session, now)
    assert client.established and server.established
    return client, server, [t for types in seen for t in types]


def _expected_peers(kind: str) -> tuple[PeerCredentials, PeerCredentials]:
    """What the server and the client know of their peer after resuming: the full handshake's
    key, name and subject, without the certificates."""
    if kind == "rpk":
        return PeerCredentials(RPK, CLIENT_SPKI), PeerCredentials(RPK, SERVER_SPKI)
    return (
        PeerCredentials(X509, CLIENT.spki, ENDPOINT, subject=CLIENT.certificate.subject.rfc4514_string()),
        PeerCredentials(X509, SERVER.spki, HOST, subject=SERVER.certificate.subject.rfc4514_string()),
    )


def _talk(client: DtlsConnection, server: DtlsConnection, now: float) -> None:
    client.send_application_data(b"POST /rd?ep=resumed")
    server.send_application_data(b"2.05 Content")
    exchange(client, server, now)
    assert events(server)[-1:] == [ApplicationData(b"POST /rd?ep=resumed")]
    assert events(client)[-1:] == [ApplicationData(b"2.05 Content")]


@pytest.mark.parametrize("kind", ["x509", "rpk"])
def test_a_certificate_session_resumes_by_session_id(kind: str) -> None:
    config = _server_config(kind, session_cache=SessionCache())
    first, server, _ = _connect(config, _client_config(kind))
    full_server_event = events(server)[0]
    assert isinstance(full_server_event, HandshakeComplete)
    session = first.session
    assert session is not None and len(session.session_id) == 32 and session.ticket == b""
    assert session.peer_kind == (PEER_X509 if kind == "x509" else PEER_RPK)

    client, server, types = _connect(config, _client_config(kind), session, now=10.0)
    assert client.resumed and server.resumed
    # RFC 5246 §7.3: no certificates, key exchange or signatures in an abbreviated handshake.
    assert HandshakeType.CERTIFICATE not in types and HandshakeType.CERTIFICATE_VERIFY not in types
    assert HandshakeType.SERVER_KEY_EXCHANGE not in types and HandshakeType.CLIENT_KEY_EXCHANGE not in types
    server_peer, client_peer = _expected_peers(kind)
    # The server names the client as the full handshake did (RFC 5077 §3.4).
    assert events(server) == [HandshakeComplete(full_server_event.identity, resumed=True, peer=server_peer)]
    assert events(client) == [HandshakeComplete(b"", resumed=True, peer=client_peer)]
    assert server.peer_credentials == server_peer and client.peer_credentials == client_peer
    _talk(client, server, 11.0)


@pytest.mark.parametrize("kind", ["x509", "rpk"])
def test_a_certificate_session_resumes_by_ticket_on_a_restarted_server(kind: str) -> None:
    first, _, _ = _connect(_server_config(kind, ticket_keys=TicketKeys(TICKET_SECRET)), _client_config(kind))
    session = first.session
    assert session is not None and session.ticket
    # A server made afresh with the same ticket key and no cache (a restart, another node).
    restarted = _server_config(kind, ticket_keys=TicketKeys(TICKET_SECRET), random=counter_random(500))
    client, server, types = _connect(restarted, _client_config(kind), session, now=10.0)
    assert client.resumed and server.resumed and HandshakeType.CERTIFICATE not in types
    server_peer, client_peer = _expected_peers(kind)
    [server_event] = events(server)
    assert isinstance(server_event, HandshakeComplete) and server_event.peer == server_peer
    assert server_event.identity == (ENDPOINT.encode() if kind == "x509" else CLIENT_SPKI)
    assert client.peer_credentials == client_peer
    _talk(client, server, 11.0)


def test_a_server_with_another_key_makes_a_full_handshake() -> None:
    # The session is bound to the server's own key: a server whose key was replaced since
    # proves its new key in a full handshake (the client trusts both keys here).
    cache = SessionCache()
    first, _, _ = _connect(_server_config("rpk", session_cache=cache), _client_config("rpk"))
    assert first.session is not None
    replaced = _server_config("rpk", OTHER_KEY, session_cache=cache, random=counter_random(500))
    client, server, types = _connect(replaced, _client_config("rpk"), first.session, now=10.0)
    assert not server.resumed and not client.resumed and HandshakeType.CERTIFICATE in types
    assert client.peer_credentials == PeerCredentials(RPK, spki_der(OTHER_KEY.public_key()))


def test_a_client_with_another_key_or_trust_does_not_offer_the_session() -> None:
    config = _server_config("rpk", session_cache=SessionCache())
    first, _, _ = _connect(config, _client_config("rpk"))
    session = first.session
    assert session is not None
    other = DtlsConnection(DtlsRole.CLIENT, _client_config("rpk", OTHER_KEY), 10.0, session=session)
    [hello] = other.datagrams_to_send(10.0)
    assert session.session_id not in hello
    # The same key trusting other server keys: the session's server was accepted under other
    # settings, and is checked again in a full handshake.
    trusting = ConnectionConfig(
        certificate=rpk_credentials(CLIENT_KEY, peer_public_keys=frozenset({SERVER_SPKI})),
        random=counter_random(1),
    )
    other = DtlsConnection(DtlsRole.CLIENT, trusting, 10.0, session=session)
    [hello] = other.datagrams_to_send(10.0)
    assert session.session_id not in hello
    same = DtlsConnection(DtlsRole.CLIENT, _client_config("rpk"), 10.0, session=session)
    [hello] = same.datagrams_to_send(10.0)
    assert session.session_id in hello


def test_a_psk_server_does_not_resume_a_certificate_session() -> None:
    # The same cache behind a server that has no certificate credentials any more: a client
    # offering the session with PSK as well gets a PSK handshake, not the certificate session.
    cache = SessionCache()
    first, _, _ = _connect(_server_config("rpk", session_cache=cache), _client_config("rpk"))
    session = first.session
    assert session is not None
    psk = bytes(range(1, 17))
    server_cfg = ConnectionConfig(
        psk_lookup={b"ep": psk}.get,
        session_cache=cache,
        random=counter_random(500),
        cookie_checker=CookieChecker(b"a cookie secret of 32 bytes ....", previous=None),
    )
    client_cfg = ConnectionConfig(
        certificate=_credentials("rpk", "client"), psk_identity=b"ep", psk=psk, random=counter_random(1)
    )
    client, server, _ = _connect(server_cfg, client_cfg, session, now=10.0)
    assert not server.resumed and not client.resumed
    assert events(server) == [HandshakeComplete(b"ep")]


@pytest.mark.parametrize("kind", ["x509", "rpk"])
def test_an_exported_certificate_connection_keeps_its_peer(kind: str) -> None:
    client, server, _ = _connect(_server_config(kind), _client_config(kind))
    server_peer, _ = _expected_peers(kind)
    restored = DtlsConnection.import_state(server.export_state(), _server_config(kind), 1.0, address=ADDRESS)
    assert restored.established and restored.peer_credentials == server_peer
    client.send_application_data(b"after the restart")
    for datagram in client.datagrams_to_send(1.0):
        restored.receive_datagram(datagram, 1.0)
    assert events(restored) == [ApplicationData(b"after the restart")]
