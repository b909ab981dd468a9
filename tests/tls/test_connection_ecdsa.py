"""ECDHE_ECDSA in the DTLS connection (RFC 8422, RFC 5246 §7.4, RFC 7250): our client against our
server in memory with X.509 and raw public keys for CCM_8 and GCM, each failure ending in a fatal
alert and a HandshakeFailure, hostile input, then python-mbedtls as client and as server."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.helpers.certificates import CertificateAuthority, Issued, p256, rpk_credentials
from tests.helpers.dtls_engine import Filter, events
from tests.helpers.mbedtls import (
    connect_to_mbedtls_server,
    data_both_ways,
    drive,
    handshake_over,
    mbedtls_tls,
    serve_mbedtls_client,
)

from lwm2m.tls import connection as connection_module
from lwm2m.tls.certificates import CertificateCredentials, CertificateType, PeerCredentials, spki_der
from lwm2m.tls.connection import (
    TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8,
    TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    TLS_PSK_WITH_AES_128_CCM_8,
    ApplicationData,
    ConnectionClosed,
    ConnectionConfig,
    DtlsConnection,
    DtlsRole,
    HandshakeComplete,
    HandshakeFailure,
)
from lwm2m.tls.cookies import CookieChecker
from lwm2m.tls.messages import (
    ClientHello,
    HandshakeType,
    ServerHello,
    SignatureAlgorithmsExtension,
    SupportedGroupsExtension,
    UnknownExtension,
    encode_handshake,
    split_handshake_fragments,
)
from lwm2m.tls.record import ALERT, DTLS_1_2, HANDSHAKE, DtlsRecord, parse_datagram

CCM_8, GCM = TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8, TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
SUITES = pytest.mark.parametrize("suite", [CCM_8, GCM], ids=["CCM_8", "GCM"])
ADDRESS = b"192.0.2.7:5684"
HOST = "lwm2m.example"
RPK = CertificateType.RAW_PUBLIC_KEY
ENDPOINT = "urn:imei:490154203237518"

CA = CertificateAuthority("LwM2M test CA")
OTHER_CA = CertificateAuthority("Another CA")
SERVER = CA.issue(HOST, dns_names=(HOST,), usage="server")
CLIENT = CA.issue(ENDPOINT)
SERVER_KEY, CLIENT_KEY = p256(), p256()
SERVER_SPKI, CLIENT_SPKI = spki_der(SERVER_KEY.public_key()), spki_der(CLIENT_KEY.public_key())

# --- configurations ----------------------------------------------------------------------------


def _x509_server(issued: Issued = SERVER, **options: Any) -> CertificateCredentials:
    options.setdefault("trust_anchors", (CA.certificate,))
    return issued.credentials(**options)


def _x509_client(issued: Issued = CLIENT, **options: Any) -> CertificateCredentials:
    options.setdefault("trust_anchors", (CA.certificate,))
    options.setdefault("expected_name", HOST)
    return issued.credentials(**options)


def _rpk_server(**options: Any) -> CertificateCredentials:
    options.setdefault("peer_public_keys", frozenset({CLIENT_SPKI}))
    return rpk_credentials(SERVER_KEY, **options)


def _rpk_client(**options: Any) -> CertificateCredentials:
    options.setdefault("peer_public_keys", frozenset({SERVER_SPKI}))
    return rpk_credentials(CLIENT_KEY, **options)


def _server_config(certificate: CertificateCredentials, **options: Any) -> ConnectionConfig:
    options.setdefault("cookie_checker", CookieChecker(b"a cookie secret of 32 bytes ...."))
    return ConnectionConfig(certificate=certificate, **options)


def _pair(
    server: CertificateCredentials, client: CertificateCredentials, **options: Any
) -> tuple[DtlsConnection, DtlsConnection]:
    client_connection = DtlsConnection(DtlsRole.CLIENT, ConnectionConfig(certificate=client, **options), 0.0)
    server_connection = DtlsConnection(
        DtlsRole.SERVER, _server_config(server, **options), 0.0, address=ADDRESS
    )
    return client_connection, server_connection


def _run(client: DtlsConnection, server: DtlsConnection, keep: Filter | None = None) -> list[int]:
    """Carry datagrams (through ``keep``) and fire timers until both sides rest; the alerts
    seen on the wire, as (sender 0 client / 1 server) * 1000 + description."""
    alerts: list[int] = []
    now = 0.0
    for _ in range(30):
        for _ in range(50):
            moved = False
            sides = (("client", client, server), ("server", server, client))
            for index, (name, source, sink) in enumerate(sides):
                datagrams = source.datagrams_to_send(now)
                if keep is not None:
                    datagrams = keep(name, datagrams)
                for datagram in datagrams:
                    moved = True
                    with contextlib.suppress(Exception):
                        alerts += [
                            index * 1000 + r.fragment[1]
                            for r in parse_datagram(datagram)
                            if r.content_type == ALERT and r.epoch == 0
                        ]
                    sink.receive_datagram(datagram, now)
            if not moved:
                break
        if client.established and server.established:
            break
        timers = [t for t in (client.get_timer(), server.get_timer()) if t is not None]
        if not timers:
            break
        now = min(timers)
        client.handle_timer(now)
        server.handle_timer(now)
    return alerts


def _rewrite(msg_type: int, change: Callable[[bytes], bytes]) -> Filter:
    """A man in the middle that changes one whole handshake message of epoch 0 (the header's
    lengths stay: ``change`` keeps the length)."""

    def keep(name: str, datagrams: list[bytes]) -> list[bytes]:
        out = []
        for datagram in datagrams:
            records = []
            for record in parse_datagram(datagram):
                if record.content_type == HANDSHAKE and record.epoch == 0:
                    [(header, body)] = split_handshake_fragments(record.fragment)
                    if header.msg_type == msg_type and header.fragment_length == header.length:
                        body = change(body)
                        message = encode_handshake(msg_type, header.message_seq, body)
                        record = DtlsRecord(HANDSHAKE, DTLS_1_2, 0, record.sequence, message)
                records.append(record.encode())
            out.append(b"".join(records))
        return out

    return keep


def _flip_last(body: bytes) -> bytes:
    # The last byte of a DER ECDSA signature is the last byte of s: still DER, never valid.
    return body[:-1] + bytes([body[-1] ^ 0x01])


def _assert_failed(client: DtlsConnection, server: DtlsConnection, alerts: list[int], expected: int) -> None:
    assert alerts == [expected], alerts
    failing, other = (server, client) if expected >= 1000 else (client, server)
    [event] = events(failing)
    assert isinstance(event, HandshakeFailure)
    assert events(other) == [HandshakeFailure(f"the peer ended the handshake with alert {expected % 1000}")]
    assert client.closed and server.closed


# --- whole handshakes --------------------------------------------------------------------------


@SUITES
def test_x509_mutual_authentication_and_data_both_ways(suite: int) -> None:
    client, server = _pair(_x509_server(), _x509_client(), ecdsa_suites=(suite,))
    assert _run(client, server) == []
    assert client.established and server.established
    assert client.cipher_suite == server.cipher_suite == suite
    [server_event] = events(server)
    assert isinstance(server_event, HandshakeComplete)
    # The server names the client by its certificate's subject CN.
    assert server_event.identity == ENDPOINT.encode() == server.peer_identity
    assert server_event.peer is not None and server_event.peer.certificate_type is CertificateType.X509
    assert server_event.peer.name == ENDPOINT and server_event.peer.public_key == CLIENT.spki
    [client_event] = events(client)
    assert isinstance(client_event, HandshakeComplete) and client_event.identity == b""
    assert client.peer_credentials == client_event.peer
    assert client_event.peer is not None and client_event.peer.name == HOST
    assert client.cid_negotiated and server.cid_negotiated

    client.send_application_data(b"POST /rd?ep=" + ENDPOINT.encode())
    for datagram in client.datagrams_to_send(1.0):
        server.receive_datagram(datagram, 1.0)
    assert events(server) == [ApplicationData(b"POST /rd?ep=" + ENDPOINT.encode())]
    server.send_application_data(b"2.01 Created")
    for datagram in server.datagrams_to_send(1.0):
        client.receive_datagram(datagram, 1.0)
    assert events(client) == [ApplicationData(b"2.01 Created")]


@SUITES
def test_raw_public_keys_both_ways(suite: int) -> None:
    client, server = _pair(_rpk_server(), _rpk_client(), ecdsa_suites=(suite,))
    assert _run(client, server) == []
    [server_event] = events(server)
    # RFC 7250: the client is known by its SubjectPublicKeyInfo, as the security store keeps it.
    assert server_event == HandshakeComplete(CLIENT_SPKI, peer=PeerCredentials(RPK, CLIENT_SPKI))
    [client_event] = events(client)
    assert client_event == HandshakeComplete(b"", peer=PeerCredentials(RPK, SERVER_SPKI))
    assert client.cipher_suite == suite
    client.send_application_data(b"ping")
    for datagram in client.datagrams_to_send(1.0):
        server.receive_datagram(datagram, 1.0)
    assert events(server) == [ApplicationData(b"ping")]


def test_the_hellos_carry_ems_cid_and_the_ecc_extensions() -> None:
    seen: dict[str, object] = {}

    def record_hellos(name: str, datagrams: list[bytes]) -> list[bytes]:
        for datagram in datagrams:
            for record in parse_datagram(datagram, 6):
                if record.content_type == HANDSHAKE and record.epoch == 0:
                    for header, body in split_handshake_fragments(record.fragment):
                        if header.msg_type == HandshakeType.CLIENT_HELLO:
                            seen["client"] = ClientHello.parse(body)
                        elif header.msg_type == HandshakeType.SERVER_HELLO:
                            seen["server"] = ServerHello.parse(body)
        return datagrams

    client, server = _pair(_rpk_server(), _rpk_client())
    _run(client, server, record_hellos)
    assert client.established
    hello, answer = seen["client"], seen["server"]
    assert isinstance(hello, ClientHello) and isinstance(answer, ServerHello)
    assert hello.cipher_suites == (CCM_8, GCM, 0x00FF)  # no PSK suite without a PSK; RFC 5746 SCSV
    # record_size_limit (RFC 8449) is always sent, answered by our server; session_ticket asks
    # for a ticket (RFC 5077 §3.2), as certificate sessions resume too (a server without ticket
    # keys does not answer it).
    assert [e.extension_type for e in hello.extensions] == [23, 54, 35, 10, 11, 13, 19, 20, 28]
    assert hello.extension(10) == SupportedGroupsExtension((23,))
    assert hello.extension(13) == SignatureAlgorithmsExtension((0x0403,))
    # RFC 7627 and RFC 9146 answered as for PSK; ec_point_formats answered (RFC 8422 §5.2).
    assert [e.extension_type for e in answer.extensions] == [23, 54, 0xFF01, 28, 11, 19, 20]


def test_the_server_looks_a_raw_public_key_client_up_with_its_policy() -> None:
    store = {CLIENT_SPKI.hex(): "endpoint-1"}
    server_credentials = rpk_credentials(SERVER_KEY, accept=lambda peer: peer.public_key.hex() in store)
    client, server = _pair(server_credentials, _rpk_client())
    assert _run(client, server) == []
    assert store[server.peer_identity.hex()] == "endpoint-1"  # type: ignore[union-attr]


def test_the_client_prefers_the_first_suite_the_server_takes() -> None:
    client, server = _pair(_x509_server(), _x509_client(), ecdsa_suites=(GCM, CCM_8))
    _run(client, server)
    assert server.cipher_suite == GCM  # the server's order: the same list here


def test_a_server_with_psk_and_certificate_serves_both_kinds_of_client() -> None:
    psk = bytes(range(16))
    config = _server_config(_x509_server(), psk_lookup={b"psk-client": psk}.get)
    psk_client = DtlsConnection(DtlsRole.CLIENT, ConnectionConfig(psk_identity=b"psk-client", psk=psk), 0.0)
    server = DtlsConnection(DtlsRole.SERVER, config, 0.0, address=ADDRESS)
    _run(psk_client, server)
    assert server.established and server.cipher_suite == TLS_PSK_WITH_AES_128_CCM_8
    assert server.peer_identity == b"psk-client" and server.peer_credentials is None
    cert_client = DtlsConnection(DtlsRole.CLIENT, ConnectionConfig(certificate=_x509_client()), 0.0)
    server = DtlsConnection(DtlsRole.SERVER, config, 0.0, address=ADDRESS)
    _run(cert_client, server)
    assert server.established and server.cipher_suite == CCM_8


def test_certificates_larger_than_a_datagram_are_fragmented_and_a_lost_flight_is_resent() -> None:
    intermediate = CertificateAuthority("Intermediate", parent=CA)
    issued = intermediate.issue(ENDPOINT)
    lost = {"server": 1}

    def drop_first_server_datagram(name: str, datagrams: list[bytes]) -> list[bytes]:
        if name == "server" and lost["server"] and datagrams:
            lost["server"] -= 1
            return datagrams[1:]
        assert all(len(d) <= 256 for d in datagrams)
        return datagrams

    client, server = _pair(_x509_server(), _x509_client(issued), max_datagram_size=256)
    assert _run(client, server, drop_first_server_datagram) == []
    assert client.established and server.established
    assert server.peer_identity == ENDPOINT.encode()


def test_the_client_without_certificate_type_support_gets_x509_from_a_server_that_prefers_rpk() -> None:
    both = SERVER.credentials(raw_public_key=True, trust_anchors=(CA.certificate,))
    client, server = _pair(both, _x509_client())
    assert _run(client, server) == []
    assert client.peer_credentials is not None
    assert client.peer_credentials.certificate_type is CertificateType.X509


# --- failures: a fatal alert and HandshakeFailure on both sides ---------------------------------


@SUITES
def test_a_wrong_server_key_exchange_signature_is_a_decrypt_error(suite: int) -> None:
    client, server = _pair(_x509_server(), _x509_client(), ecdsa_suites=(suite,))
    alerts = _run(client, server, _rewrite(HandshakeType.SERVER_KEY_EXCHANGE, _flip_last))
    _assert_failed(client, server, alerts, 51)


@SUITES
def test_a_wrong_certificate_verify_is_a_decrypt_error(suite: int) -> None:
    # Without CID, so that the man in the middle can parse the Finished record beside it.
    client, server = _pair(_rpk_server(), _rpk_client(), ecdsa_suites=(suite,), connection_id=False)
    alerts = _run(client, server, _rewrite(HandshakeType.CERTIFICATE_VERIFY, _flip_last))
    _assert_failed(client, server, alerts, 1051)


def test_an_unknown_client_raw_public_key_is_an_unknown_ca() -> None:
    client, server = _pair(_rpk_server(peer_public_keys=frozenset({SERVER_SPKI})), _rpk_client())
    _assert_failed(client, server, _run(client, server), 1048)


def test_an_unknown_server_raw_public_key_is_an_unknown_ca() -> None:
    client, server = _pair(_rpk_server(), _rpk_client(peer_public_keys=frozenset({CLIENT_SPKI})))
    _assert_failed(client, server, _run(client, server), 48)


def test_an_untrusted_client_chain_is_an_unknown_ca() -> None:
    client, server = _pair(_x509_server(), _x509_client(OTHER_CA.issue(ENDPOINT)))
    _assert_failed(client, server, _run(client, server), 1048)


def test_an_untrusted_server_chain_is_an_unknown_ca() -> None:
    stranger = OTHER_CA.issue(HOST, dns_names=(HOST,), usage="server")
    client, server = _pair(_x509_server(stranger), _x509_client())
    _assert_failed(client, server, _run(client, server), 48)


def test_a_server_certificate_for_another_name_is_refused() -> None:
    client, server = _pair(_x509_server(), _x509_client(expected_name="other.example"))
    _assert_failed(client, server, _run(client, server), 42)


def test_certificate_usage_3_takes_the_pinned_server_certificate_only() -> None:
    self_signed = OTHER_CA.issue("bootstrap.example", usage="server")
    pinned = _x509_client(trust_anchors=(), certificate_usage=3, server_certificate=self_signed.certificate)
    client, server = _pair(_x509_server(self_signed), pinned)
    assert _run(client, server) == [] and client.established
    client, server = _pair(_x509_server(), pinned)
    _assert_failed(client, server, _run(client, server), 42)


def test_a_client_refused_by_the_policy_is_a_bad_certificate() -> None:
    client, server = _pair(_x509_server(accept=lambda peer: peer.name == "someone else"), _x509_client())
    _assert_failed(client, server, _run(client, server), 1042)


def test_a_malformed_certificate_is_a_bad_certificate() -> None:
    def garble(body: bytes) -> bytes:
        return body[:10] + bytes(len(body) - 10)

    client, server = _pair(_x509_server(), _x509_client(), connection_id=False)
    _assert_failed(client, server, _run(client, server, _rewrite(HandshakeType.CERTIFICATE, garble)), 42)


def test_no_certificate_type_in_common_is_unsupported_certificate() -> None:
    # The client presents only a raw key; the server checks X.509 chains only.
    client, server = _pair(_x509_server(), _rpk_client())
    _assert_failed(client, server, _run(client, server), 1043)


@pytest.mark.parametrize(("label", "alert"), [(b"client finished", 1051), (b"server finished", 51)])
def test_a_forged_finished_is_a_decrypt_error(
    label: bytes, alert: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = connection_module.verify_data

    def forged(master: bytes, which: bytes, handshake_hash: bytes) -> bytes:
        value = real(master, which, handshake_hash)
        return bytes([value[0] ^ 0x80]) + value[1:] if which == label else value

    monkeypatch.setattr(connection_module, "verify_data", forged)
    client, server = _pair(_x509_server(), _x509_client(), connection_id=False)
    alerts = _run(client, server)
    if alert == 1051:
        _assert_failed(client, server, alerts, alert)  # the server had not sent its Finished
        return
    # The server sent its Finished and took the handshake as complete; the client's alert is
    # protected (epoch 1), and ends the server's connection.
    assert alerts == []
    [event] = events(client)
    assert isinstance(event, HandshakeFailure) and "verify" in event.reason.lower()
    assert [type(e) for e in events(server)] == [HandshakeComplete, ConnectionClosed]
    assert client.closed and server.closed


# --- hostile input ---------------------------------------------------------------------------


def _client_waiting_for_server_flight() -> tuple[DtlsConnection, DtlsConnection]:
    client, server = _pair(_x509_server(), _x509_client())
    for datagram in client.datagrams_to_send(0.0):
        server.receive_datagram(datagram, 0.0)  # hello -> HelloVerifyRequest
    for datagram in server.datagrams_to_send(0.0):
        client.receive_datagram(datagram, 0.0)
    for datagram in client.datagrams_to_send(0.0):
        server.receive_datagram(datagram, 0.0)  # hello with cookie -> the server's flight, held
    server.datagrams_to_send(0.0)
    return client, server


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    msg_type=st.sampled_from([11, 12, 13, 14, 15, 16, 20]),
    message_seq=st.integers(0, 5),
    body=st.binary(max_size=160),
    to_server=st.booleans(),
)
def test_any_certificate_or_key_exchange_message_is_processed_or_refused(
    msg_type: int, message_seq: int, body: bytes, to_server: bool
) -> None:
    client, server = _client_waiting_for_server_flight()
    target = server if to_server else client
    message = encode_handshake(msg_type, message_seq, body)
    target.receive_datagram(DtlsRecord(HANDSHAKE, DTLS_1_2, 0, 1000 + message_seq, message).encode(), 0.0)
    target.datagrams_to_send(0.0)
    for event in events(target):
        assert isinstance(event, HandshakeFailure)


def _only(datagrams: list[bytes], msg_types: set[int]) -> list[bytes]:
    # The epoch-0 handshake records of those message types, one datagram each.
    out = []
    for datagram in datagrams:
        for record in parse_datagram(datagram):
            if record.content_type == HANDSHAKE and record.epoch == 0:
                [(header, _)] = split_handshake_fragments(record.fragment)
                if header.msg_type in msg_types:
                    out.append(record.encode())
    return out


def _to_server_flight() -> tuple[DtlsConnection, DtlsConnection, list[bytes]]:
    client, server = _pair(_x509_server(), _x509_client(), connection_id=False)
    for datagram in client.datagrams_to_send(0.0):
        server.receive_datagram(datagram, 0.0)
    for datagram in server.datagrams_to_send(0.0):
        client.receive_datagram(datagram, 0.0)
    for datagram in client.datagrams_to_send(0.0):
        server.receive_datagram(datagram, 0.0)
    return client, server, server.datagrams_to_send(0.0)


def _client_after_the_server_certificate() -> DtlsConnection:
    """A client holding the server's ServerHello and Certificate: next, message_seq 3."""
    client, _, server_flight = _to_server_flight()
    for datagram in _only(server_flight, {HandshakeType.SERVER_HELLO, HandshakeType.CERTIFICATE}):
        client.receive_datagram(datagram, 0.0)
    return client


def _server_before_certificate_verify() -> DtlsConnection:
    """A server holding the client's Certificate and ClientKeyExchange: next, message_seq 4."""
    client, server, server_flight = _to_server_flight()
    for datagram in server_flight:
        client.receive_datagram(datagram, 0.0)
    client_flight = client.datagrams_to_send(0.0)
    for datagram in _only(client_flight, {HandshakeType.CERTIFICATE, HandshakeType.CLIENT_KEY_EXCHANGE}):
        server.receive_datagram(datagram, 0.0)
    return server


def _processed_or_refused(connection: DtlsConnection, message: bytes) -> None:
    # The message in a record of epoch 0: either taken, or the handshake fails (no exception).
    connection.receive_datagram(DtlsRecord(HANDSHAKE, DTLS_1_2, 0, 50, message).encode(), 0.0)
    connection.datagrams_to_send(0.0)
    for event in events(connection):
        assert isinstance(event, HandshakeFailure)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=st.binary(max_size=200), msg_type=st.sampled_from([12, 13, 14]))
def test_any_server_message_after_the_certificate_is_processed_or_refused(body: bytes, msg_type: int) -> None:
    _processed_or_refused(_client_after_the_server_certificate(), encode_handshake(msg_type, 3, body))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=st.binary(max_size=120), msg_type=st.sampled_from([15, 20]))
def test_any_certificate_verify_is_processed_or_refused(body: bytes, msg_type: int) -> None:
    _processed_or_refused(_server_before_certificate_verify(), encode_handshake(msg_type, 4, body))


def test_the_part_way_stages_are_where_they_claim() -> None:
    # A valid message completes each stage, so the fuzzing above reaches the parsers.
    client = _client_after_the_server_certificate()
    assert client._peer is not None and not client._peer_point
    server = _server_before_certificate_verify()
    assert server._state.name == "WAIT_CERTIFICATE_VERIFY"
    message = encode_handshake(HandshakeType.CERTIFICATE_VERIFY, 4, b"\x04\x03\x00\x00")
    server.receive_datagram(DtlsRecord(HANDSHAKE, DTLS_1_2, 0, 50, message).encode(), 0.0)
    [event] = events(server)
    assert isinstance(event, HandshakeFailure) and "signature" in event.reason


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=300))
def test_any_datagram_in_the_middle_of_an_ecdsa_handshake_is_processed_or_dropped(data: bytes) -> None:
    client, server = _client_waiting_for_server_flight()
    client.receive_datagram(data, 0.0)
    server.receive_datagram(data, 0.0)
    client.datagrams_to_send(0.0)
    server.datagrams_to_send(0.0)


# --- against python-mbedtls -----------------------------------------------------------------------

MBEDTLS_CCM_8 = "TLS-ECDHE-ECDSA-WITH-AES-128-CCM-8"
MBEDTLS_SUITES = pytest.mark.parametrize(
    ("suite", "name"),
    [(CCM_8, MBEDTLS_CCM_8), (GCM, "TLS-ECDHE-ECDSA-WITH-AES-128-GCM-SHA256")],
    ids=["CCM_8", "GCM"],
)


def _mbedtls_configuration(suite_name: str, issued: Issued, anchor: CertificateAuthority = CA) -> Any:
    tls = mbedtls_tls()
    from mbedtls import pk
    from mbedtls import x509 as mbedtls_x509

    der = serialization.Encoding.DER
    chain = tuple(mbedtls_x509.CRT.from_DER(c.public_bytes(der)) for c in issued.chain)
    key = pk.ECC.from_DER(
        issued.key.private_bytes(der, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    store = tls.TrustStore([mbedtls_x509.CRT.from_DER(anchor.certificate.public_bytes(der))])
    return tls.DTLSConfiguration(
        ciphers=(suite_name,),
        lowest_supported_version=tls.DTLSVersion.DTLSv1_2,
        highest_supported_version=tls.DTLSVersion.DTLSv1_2,
        certificate_chain=(chain, key),
        trust_store=store,
        validate_certificates=True,
    )


@MBEDTLS_SUITES
def test_mbedtls_client_with_x509_against_our_server(suite: int, name: str) -> None:
    tls = mbedtls_tls()
    buf = tls.ClientContext(_mbedtls_configuration(name, CLIENT)).wrap_buffers(HOST)
    server = DtlsConnection(DtlsRole.SERVER, _server_config(_x509_server()), 0.0, address=ADDRESS)
    serve_mbedtls_client(buf, server)
    assert handshake_over(buf) and server.established and server.cipher_suite == suite
    [event] = events(server)
    assert isinstance(event, HandshakeComplete) and event.identity == ENDPOINT.encode()
    data_both_ways(buf, server)


@MBEDTLS_SUITES
def test_our_client_with_x509_against_the_mbedtls_server(suite: int, name: str) -> None:
    tls = mbedtls_tls()
    buf = tls.ServerContext(_mbedtls_configuration(name, SERVER)).wrap_buffers()
    client = DtlsConnection(DtlsRole.CLIENT, ConnectionConfig(certificate=_x509_client()), 0.0)
    connect_to_mbedtls_server(buf, client, ADDRESS)
    assert handshake_over(buf) and client.established and client.cipher_suite == suite
    [event] = events(client)
    assert isinstance(event, HandshakeComplete) and event.peer is not None and event.peer.name == HOST
    client.send_application_data(b"POST /rd?ep=ours")
    for datagram in client.datagrams_to_send(1.0):
        buf.receive_from_network(datagram)
    assert buf.read(100) == b"POST /rd?ep=ours"
    buf.write(b"2.01 Created")
    client.receive_datagram(drive(buf), 1.0)
    assert events(client) == [ApplicationData(b"2.01 Created")]


def test_an_mbedtls_client_from_another_ca_gets_unknown_ca() -> None:
    tls = mbedtls_tls()
    exceptions = pytest.importorskip("mbedtls.exceptions")
    stranger = OTHER_CA.issue(ENDPOINT)
    buf = tls.ClientContext(_mbedtls_configuration(MBEDTLS_CCM_8, stranger)).wrap_buffers(HOST)
    server = DtlsConnection(DtlsRole.SERVER, _server_config(_x509_server()), 0.0, address=ADDRESS)
    with pytest.raises(exceptions.TLSError, match="fatal alert"):
        serve_mbedtls_client(buf, server)
    [event] = events(server)
    assert isinstance(event, HandshakeFailure) and "does not validate" in event.reason


def test_our_client_refuses_an_mbedtls_server_from_another_ca() -> None:
    tls = mbedtls_tls()
    stranger = OTHER_CA.issue(HOST, dns_names=(HOST,), usage="server")
    buf = tls.ServerContext(_mbedtls_configuration(MBEDTLS_CCM_8, stranger)).wrap_buffers()
    client = DtlsConnection(DtlsRole.CLIENT, ConnectionConfig(certificate=_x509_client()), 0.0)
    with contextlib.suppress(pytest.importorskip("mbedtls.exceptions").TLSError):
        connect_to_mbedtls_server(buf, client, ADDRESS)
    [event] = events(client)
    assert isinstance(event, HandshakeFailure) and "does not validate" in event.reason
    assert not handshake_over(buf)


# --- renegotiation_info (RFC 5746), which OpenSSL clients require -----------------------------


def _server_hello_for(hello: ClientHello) -> ServerHello | HandshakeFailure:
    server = DtlsConnection(
        DtlsRole.SERVER, ConnectionConfig(certificate=_x509_server()), 0.0, address=ADDRESS
    )
    message = encode_handshake(HandshakeType.CLIENT_HELLO, 0, hello.to_bytes())
    server.receive_datagram(DtlsRecord(HANDSHAKE, DTLS_1_2, 0, 0, message).encode(), 0.0)
    for event in events(server):
        assert isinstance(event, HandshakeFailure)
        return event
    [datagram] = server.datagrams_to_send(0.0)[:1]
    record = parse_datagram(datagram)[0]
    [(header, body)] = split_handshake_fragments(record.fragment)
    assert header.msg_type == HandshakeType.SERVER_HELLO
    return ServerHello.parse(body)


ECDSA_HELLO_EXTENSIONS = (
    SupportedGroupsExtension((23,)),
    SignatureAlgorithmsExtension((0x0403,)),
)


def test_renegotiation_info_is_answered_empty_when_the_client_signals_it() -> None:
    for hello in (
        ClientHello(bytes(32), (CCM_8, 0x00FF), extensions=ECDSA_HELLO_EXTENSIONS),
        ClientHello(
            bytes(32), (CCM_8,), extensions=(*ECDSA_HELLO_EXTENSIONS, UnknownExtension(0xFF01, b"\x00"))
        ),
    ):
        answer = _server_hello_for(hello)
        assert isinstance(answer, ServerHello)
        assert answer.extension(0xFF01) == UnknownExtension(0xFF01, b"\x00")
    silent = _server_hello_for(ClientHello(bytes(32), (CCM_8,), extensions=ECDSA_HELLO_EXTENSIONS))
    assert isinstance(silent, ServerHello) and silent.extension(0xFF01) is None


def test_a_renegotiation_info_of_a_renegotiation_is_refused() -> None:
    extensions = (*ECDSA_HELLO_EXTENSIONS, UnknownExtension(0xFF01, b"\x0c" + bytes(12)))
    failure = _server_hello_for(ClientHello(bytes(32), (CCM_8,), extensions=extensions))
    assert isinstance(failure, HandshakeFailure) and "renegotiation" in failure.reason


def test_a_client_without_signature_algorithms_gets_no_ecdsa_suite() -> None:
    # RFC 5246 §7.4.1.4.1: it would expect SHA-1 signatures, which the server does not make.
    failure = _server_hello_for(
        ClientHello(bytes(32), (CCM_8,), extensions=(SupportedGroupsExtension((23,)),))
    )
    assert isinstance(failure, HandshakeFailure) and "no cipher suite in common" in failure.reason
    failure = _server_hello_for(
        ClientHello(bytes(32), (CCM_8,), extensions=(SupportedGroupsExtension((24,)),))
    )
    assert isinstance(failure, HandshakeFailure)
