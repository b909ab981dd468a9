"""The CBC suites of LwM2M 1.1 in the DTLS connection, our client against our server in memory:
TLS_PSK_WITH_AES_128_CBC_SHA256 (RFC 5487), TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA256 (RFC 5489) and
TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256 (RFC 5289); off unless configured; flights lost and
reordered; records with bad padding or a bad MAC dropped silently (RFC 6347 §4.1.2.7); hostile
ECDHE_PSK key exchanges; resumption and export of a CBC session."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.helpers.certificates import CertificateAuthority
from tests.helpers.dtls_engine import Filter, counter_random, drop_flight, events, exchange, run

from lwm2m.errors import DtlsError
from lwm2m.tls.connection import (
    LWM2M_CBC_SUITES,
    TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256,
    TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA256,
    TLS_PSK_WITH_AES_128_CBC_SHA256,
    TLS_PSK_WITH_AES_128_CCM_8,
    ApplicationData,
    ConnectionConfig,
    DtlsConnection,
    DtlsRole,
    HandshakeComplete,
    HandshakeFailure,
)
from lwm2m.tls.cookies import CookieChecker
from lwm2m.tls.keyexchange import EcdhClientKeyExchange, ServerEcdhParams
from lwm2m.tls.messages import (
    ClientHello,
    ClientKeyExchange,
    ExtensionType,
    HandshakeType,
    ServerHello,
    ServerKeyExchange,
    UnknownExtension,
    encode_handshake,
    split_handshake_fragments,
)
from lwm2m.tls.prf import key_block
from lwm2m.tls.record import (
    ALERT,
    APPLICATION_DATA,
    DTLS_1_2,
    HANDSHAKE,
    DtlsRecord,
    encode_record,
    parse_datagram,
)
from lwm2m.tls.tickets import TicketKeys

PSK_CBC, ECDHE_PSK_CBC, ECDSA_CBC = (
    TLS_PSK_WITH_AES_128_CBC_SHA256,
    TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA256,
    TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256,
)
ALL = pytest.mark.parametrize("suite", [PSK_CBC, ECDHE_PSK_CBC, ECDSA_CBC], ids=["PSK", "ECDHE_PSK", "ECDSA"])
PSK_SUITES = pytest.mark.parametrize("suite", [PSK_CBC, ECDHE_PSK_CBC], ids=["PSK", "ECDHE_PSK"])
PSK = bytes(range(1, 17))
IDENTITY = b"urn:imei:490154203237518"
ADDRESS = b"192.0.2.7:5684"
HOST = "lwm2m.example"
CID_LENGTH = 6  # both sides ask for CIDs of the default length
ENCRYPT_THEN_MAC = 22  # RFC 7366 §2: never offered nor answered by us
CA = CertificateAuthority("CBC test CA")
SERVER_CERTIFICATE = CA.issue(HOST, dns_names=(HOST,), usage="server")
CLIENT_CERTIFICATE = CA.issue(IDENTITY.decode())


def _cbc_only(config: ConnectionConfig) -> ConnectionConfig:
    """A client configuration offering its CBC suites alone, as an LwM2M 1.1 device configured
    with one of them in its Security object (/0/x/16) does: no AEAD suite of either kind."""
    return replace(config, psk_suites=(), ecdsa_suites=())


def _configs(suite: int, **options: Any) -> tuple[ConnectionConfig, ConnectionConfig]:
    """(client, server) configurations for ``suite``; ``options`` go to both."""
    cookies = CookieChecker(b"a cookie secret of 32 bytes ....")
    if suite == ECDSA_CBC:
        client_credentials = CLIENT_CERTIFICATE.credentials(
            trust_anchors=(CA.certificate,), expected_name=HOST
        )
        server_credentials = SERVER_CERTIFICATE.credentials(trust_anchors=(CA.certificate,))
        client = ConnectionConfig(certificate=client_credentials, random=counter_random(1), **options)
        server = ConnectionConfig(
            certificate=server_credentials, cookie_checker=cookies, random=counter_random(100), **options
        )
        return client, server
    client = ConnectionConfig(psk_identity=IDENTITY, psk=PSK, random=counter_random(1), **options)
    server = ConnectionConfig(
        psk_lookup={IDENTITY: PSK}.get, cookie_checker=cookies, random=counter_random(100), **options
    )
    return client, server


def _pair(suite: int, **options: Any) -> tuple[DtlsConnection, DtlsConnection]:
    options.setdefault("cbc_suites", (suite,))
    client_config, server_config = _configs(suite, **options)
    client = DtlsConnection(DtlsRole.CLIENT, _cbc_only(client_config), 0.0)
    server = DtlsConnection(DtlsRole.SERVER, server_config, 0.0, address=ADDRESS)
    return client, server


def _established(suite: int, **options: Any) -> tuple[DtlsConnection, DtlsConnection]:
    client, server = _pair(suite, **options)
    run(client, server)
    assert client.established and server.established
    events(client)
    events(server)
    return client, server


def _handshakes(datagram: bytes) -> list[tuple[int, bytes]]:
    out = []
    for record in parse_datagram(datagram, CID_LENGTH):
        if record.content_type == HANDSHAKE and record.epoch == 0:
            out += [(header.msg_type, body) for header, body in split_handshake_fragments(record.fragment)]
    return out


# --- configuration ---------------------------------------------------------------------------------


def test_the_cbc_suites_are_off_by_default() -> None:
    client = DtlsConnection(DtlsRole.CLIENT, ConnectionConfig(psk_identity=IDENTITY, psk=PSK), 0.0)
    [(_, body)] = _handshakes(client.datagrams_to_send(0.0)[0])
    assert not set(ClientHello.parse(body).cipher_suites) & set(LWM2M_CBC_SUITES)
    # A server without them refuses a client that offers nothing else.
    client, server = _pair(PSK_CBC)
    server = DtlsConnection(DtlsRole.SERVER, _configs(PSK_CBC)[1], 0.0, address=ADDRESS)
    run(client, server)
    [event] = events(server)
    assert isinstance(event, HandshakeFailure) and "no cipher suite in common" in event.reason
    assert events(client) == [HandshakeFailure("the peer ended the handshake with alert 40")]


def test_an_enabled_client_offers_them_after_the_aead_suites_and_the_server_prefers_aead() -> None:
    client_config, server_config = _configs(PSK_CBC, cbc_suites=LWM2M_CBC_SUITES)
    client = DtlsConnection(DtlsRole.CLIENT, client_config, 0.0)
    [(_, body)] = _handshakes(client.datagrams_to_send(0.0)[0])
    hello = ClientHello.parse(body)
    # No certificate: no ECDHE_ECDSA suite; ECDHE_PSK brings the curve and point format.
    assert hello.cipher_suites[:3] == (TLS_PSK_WITH_AES_128_CCM_8, ECDHE_PSK_CBC, PSK_CBC)
    assert hello.extension(ExtensionType.SUPPORTED_GROUPS) is not None
    assert hello.extension(ExtensionType.EC_POINT_FORMATS) is not None
    assert hello.extension(ENCRYPT_THEN_MAC) is None  # RFC 7366 is not offered
    server = DtlsConnection(DtlsRole.SERVER, server_config, 0.0, address=ADDRESS)
    client = DtlsConnection(DtlsRole.CLIENT, client_config, 0.0)
    run(client, server)
    assert client.cipher_suite == server.cipher_suite == TLS_PSK_WITH_AES_128_CCM_8


def test_the_server_takes_the_first_of_its_cbc_suites_the_client_offers() -> None:
    client_config, _ = _configs(PSK_CBC, cbc_suites=(PSK_CBC, ECDHE_PSK_CBC))
    _, server_config = _configs(PSK_CBC, cbc_suites=(ECDHE_PSK_CBC, PSK_CBC))
    client = DtlsConnection(DtlsRole.CLIENT, _cbc_only(client_config), 0.0)
    server = DtlsConnection(DtlsRole.SERVER, server_config, 0.0, address=ADDRESS)
    run(client, server)
    assert client.cipher_suite == server.cipher_suite == ECDHE_PSK_CBC


def test_cbc_suites_are_checked() -> None:
    with pytest.raises(DtlsError, match="cbc_suites"):
        DtlsConnection(DtlsRole.SERVER, ConnectionConfig(psk_lookup={}.get, cbc_suites=(0xC0A8,)), 0.0)


# --- whole handshakes ------------------------------------------------------------------------------


@ALL
@pytest.mark.parametrize("cid", [True, False], ids=["cid", "no-cid"])
def test_handshake_and_application_data_both_ways(suite: int, cid: bool) -> None:
    client, server = _pair(suite, connection_id=cid)
    assert run(client, server) == 0.0
    assert client.cipher_suite == server.cipher_suite == suite
    [client_event], [server_event] = events(client), events(server)
    assert isinstance(client_event, HandshakeComplete) and isinstance(server_event, HandshakeComplete)
    if suite != ECDSA_CBC:
        assert server_event.identity == IDENTITY
    assert client.cid_negotiated is cid
    client.send_application_data(b"POST /rd?ep=cbc")
    [datagram] = client.datagrams_to_send(0.0)
    [record] = parse_datagram(datagram, len(server.own_cid))
    # IV, then whole AES blocks holding content, the 32-byte MAC and the padding.
    assert len(record.fragment) % 16 == 0 and len(record.fragment) >= 16 + 48
    assert b"POST" not in record.fragment
    server.receive_datagram(datagram, 0.0)
    assert events(server) == [ApplicationData(b"POST /rd?ep=cbc")]
    for size in (0, 14, 15, 16, 1000):
        server.send_application_data(bytes(size))
        for datagram in server.datagrams_to_send(0.0):
            client.receive_datagram(datagram, 0.0)
        assert events(client) == [ApplicationData(bytes(size))]


@PSK_SUITES
def test_the_ecdhe_psk_server_key_exchange_carries_the_hint_and_unsigned_params(suite: int) -> None:
    client, server = _pair(suite)
    _, server_config = _configs(suite, cbc_suites=(suite,), psk_identity_hint=b"lwm2m")
    server = DtlsConnection(DtlsRole.SERVER, server_config, 0.0, address=ADDRESS)
    flights: list[list[tuple[int, bytes]]] = []

    def watch(name: str, datagrams: list[bytes]) -> list[bytes]:
        flights.append([m for d in datagrams for m in _handshakes(d)])
        return datagrams

    run(client, server, watch)
    assert client.established and client.psk_identity_hint == b"lwm2m"
    server_exchange = next(
        body for flight in flights for t, body in flight if t == HandshakeType.SERVER_KEY_EXCHANGE
    )
    key_exchange = ServerKeyExchange.parse(server_exchange)
    assert key_exchange.psk_identity_hint == b"lwm2m"
    client_exchange = next(
        body for flight in flights for t, body in flight if t == HandshakeType.CLIENT_KEY_EXCHANGE
    )
    parsed = ClientKeyExchange.parse(client_exchange)
    assert parsed.psk_identity == IDENTITY
    if suite == ECDHE_PSK_CBC:
        params = ServerEcdhParams.parse(key_exchange.params)
        assert params.named_curve == 23 and len(params.point) == 65
        assert len(EcdhClientKeyExchange.parse(parsed.exchange_keys).point) == 65
    else:
        assert key_exchange.params == b"" and parsed.exchange_keys == b""


def test_an_ecdhe_psk_server_without_hint_sends_an_empty_one() -> None:
    client, server = _pair(ECDHE_PSK_CBC)
    exchanges: list[bytes] = []

    def watch(name: str, datagrams: list[bytes]) -> list[bytes]:
        exchanges.extend(
            b for d in datagrams for t, b in _handshakes(d) if t == HandshakeType.SERVER_KEY_EXCHANGE
        )
        return datagrams

    run(client, server, watch)
    assert client.established
    assert ServerKeyExchange.parse(exchanges[0]).psk_identity_hint == b""


FLIGHTS = [
    "ClientHello",
    "HelloVerifyRequest",
    "ClientHello+cookie",
    "server flight",
    "client flight",
    "Finished",
]


@ALL
@pytest.mark.parametrize("lost", range(len(FLIGHTS)), ids=FLIGHTS)
def test_every_flight_lost_once_is_recovered_by_the_timer(suite: int, lost: int) -> None:
    client, server = _pair(suite)
    finished_at = run(client, server, drop_flight(lost))
    assert client.established and server.established
    assert 1.0 <= finished_at <= 2.0
    client.send_application_data(b"after recovery")
    exchange(client, server, finished_at)
    assert [e for e in events(server) if isinstance(e, ApplicationData)] == [
        ApplicationData(b"after recovery")
    ]


@ALL
def test_reordered_and_duplicated_datagrams_complete_the_handshake(suite: int) -> None:
    # Small datagrams: the later flights come in several, delivered last first and twice.
    client, server = _pair(suite, max_datagram_size=200)
    finished_at = run(client, server, lambda name, datagrams: [d for d in datagrams[::-1] for _ in range(2)])
    assert client.established and server.established and finished_at == 0.0


@ALL
def test_a_wrong_key_fails_the_handshake(suite: int) -> None:
    client, server = _pair(suite)
    if suite == ECDSA_CBC:
        # A client whose own certificate comes from another CA.
        other = CertificateAuthority("Another CA").issue(IDENTITY.decode())
        config = ConnectionConfig(
            certificate=other.credentials(trust_anchors=(CA.certificate,), expected_name=HOST),
            cbc_suites=(suite,),
        )
    else:
        config = ConnectionConfig(psk_identity=IDENTITY, psk=bytes(16), cbc_suites=(suite,))
    client = DtlsConnection(DtlsRole.CLIENT, _cbc_only(config), 0.0)
    run(client, server)
    assert client.closed and server.closed
    assert any(isinstance(e, HandshakeFailure) for e in events(server))


# --- hostile records -------------------------------------------------------------------------------


def _client_keys(client: DtlsConnection) -> tuple[bytes, bytes]:
    """The client's write MAC key and write key, from its master secret (RFC 5246 §6.3)."""
    keys = key_block(
        client._master, client._client_random, client._server_random, iv_length=0, mac_key_length=32
    )
    return keys.client_write_mac_key, keys.client_write_key


def _forge(client: DtlsConnection, sequence: int, content: bytes, *, mac_ok: bool, padding: bytes) -> bytes:
    """A record of application data under the client's keys with a MAC that is right or not and
    the padding given (its last byte is the padding length byte)."""
    mac_key, key = _client_keys(client)
    seq_num = (1 << 48) | sequence
    header = seq_num.to_bytes(8, "big") + bytes((APPLICATION_DATA,)) + DTLS_1_2.to_bytes(2, "big")
    mac = hmac.new(mac_key, header + len(content).to_bytes(2, "big") + content, hashlib.sha256).digest()
    if not mac_ok:
        mac = bytes((mac[0] ^ 1,)) + mac[1:]
    iv = bytes(range(16))
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    fragment = iv + encryptor.update(content + mac + padding) + encryptor.finalize()
    return encode_record(APPLICATION_DATA, DTLS_1_2, 1, sequence, fragment)


GOOD_PADDING = b"\x0f" * 16  # 16 + 32 + 16 bytes: 4 blocks


@ALL
@pytest.mark.parametrize(
    ("mac_ok", "padding"),
    [
        (False, GOOD_PADDING),
        (True, b"\x0e" + b"\x0f" * 15),  # one padding byte wrong
        (True, b"\x00" * 15 + b"\x0f"),  # only the length byte right
        (True, b"\x0f" * 15 + b"\xff"),  # a padding length longer than the record
        (True, b"\x0f" * 15 + b"\x2f"),  # a length reaching into the MAC
    ],
    ids=["bad-mac", "one-bad-padding-byte", "zero-padding", "huge-padding", "padding-into-mac"],
)
def test_bad_padding_and_bad_macs_are_dropped_silently(suite: int, mac_ok: bool, padding: bytes) -> None:
    client, server = _established(suite, connection_id=False)
    content = b"write /3/0/13 !!"  # 16 bytes
    genuine = _forge(client, 7, content, mac_ok=True, padding=GOOD_PADDING)
    server.receive_datagram(_forge(client, 5, content, mac_ok=mac_ok, padding=padding), 0.0)
    assert events(server) == []
    assert server.datagrams_to_send(0.0) == []  # no alert: RFC 6347 §4.1.2.7
    assert server.established
    server.receive_datagram(genuine, 0.0)  # the forged record is right where it must be
    assert events(server) == [ApplicationData(content)]


@ALL
@pytest.mark.parametrize("where", [0, 13, 13 + 15, 13 + 16, -17, -1], ids=lambda w: f"byte{w}")
def test_a_record_with_a_flipped_bit_is_dropped_silently(suite: int, where: int) -> None:
    client, server = _established(suite)
    client.send_application_data(b"write /3/0/13")
    [datagram] = client.datagrams_to_send(0.0)
    header = 13 + len(server.own_cid)
    index = where if where < 0 else (where if where < 13 else header + where - 13)
    spoiled = bytearray(datagram)
    spoiled[index] ^= 0x01
    server.receive_datagram(bytes(spoiled), 0.0)
    assert events(server) == [] and server.datagrams_to_send(0.0) == []
    server.receive_datagram(datagram, 0.0)
    assert events(server) == [ApplicationData(b"write /3/0/13")]


@ALL
@pytest.mark.parametrize("length", [0, 15, 16, 47, 48, 63, 65, 80])
def test_fragments_of_impossible_lengths_are_dropped(suite: int, length: int) -> None:
    _client, server = _established(suite, connection_id=False)
    server.receive_datagram(encode_record(APPLICATION_DATA, DTLS_1_2, 1, 9, bytes(length)), 0.0)
    assert events(server) == [] and server.datagrams_to_send(0.0) == [] and server.established


@ALL
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fragment=st.binary(max_size=200), sequence=st.integers(0, 2**48 - 1), cid=st.booleans())
def test_any_protected_record_is_processed_or_dropped(
    suite: int, fragment: bytes, sequence: int, cid: bool
) -> None:
    _client, server = _ESTABLISHED[suite]
    content_type = 25 if cid else APPLICATION_DATA
    record = DtlsRecord(content_type, DTLS_1_2, 1, sequence, fragment, server.own_cid if cid else b"")
    server.receive_datagram(record.encode(), 0.0)
    assert server.datagrams_to_send(0.0) == [] and server.established
    assert events(server) == []


_ESTABLISHED = {suite: _established(suite) for suite in (PSK_CBC, ECDHE_PSK_CBC, ECDSA_CBC)}


# --- hostile ECDHE_PSK key exchanges ---------------------------------------------------------------


def _rewrite_messages(edit: Callable[[int, int, bytes], bytes]) -> Filter:
    """A filter that replaces each unprotected handshake message (type, message_seq, body) by
    the encoded messages ``edit`` returns for it (none, to drop it)."""

    def keep(name: str, datagrams: list[bytes]) -> list[bytes]:
        out = []
        for datagram in datagrams:
            records = []
            for record in parse_datagram(datagram, CID_LENGTH):
                if record.content_type == HANDSHAKE and record.epoch == 0:
                    pieces = b""
                    for header, body in split_handshake_fragments(record.fragment):
                        pieces += edit(header.msg_type, header.message_seq, body)
                    record = DtlsRecord(HANDSHAKE, DTLS_1_2, 0, record.sequence, pieces)
                records.append(record.encode())
            out.append(b"".join(records))
        return out

    return keep


def _rewrite(msg_type: int, change: Callable[[bytes], bytes]) -> Filter:
    """A filter that passes the body of each ``msg_type`` message through ``change``."""

    def edit(this_type: int, message_seq: int, body: bytes) -> bytes:
        return encode_handshake(this_type, message_seq, change(body) if this_type == msg_type else body)

    return _rewrite_messages(edit)


def _alerts(client: DtlsConnection, server: DtlsConnection, keep: Filter) -> list[tuple[str, int]]:
    alerts: list[tuple[str, int]] = []

    def watch(name: str, datagrams: list[bytes]) -> list[bytes]:
        datagrams = keep(name, datagrams)
        for datagram in datagrams:
            alerts.extend(
                (name, r.fragment[1]) for r in parse_datagram(datagram, CID_LENGTH) if r.content_type == ALERT
            )
        return datagrams

    run(client, server, watch)
    return alerts


OFF_CURVE = b"\x04" + bytes(31) + b"\x01" + bytes(31) + b"\x01"


def test_a_server_point_off_the_curve_is_an_illegal_parameter() -> None:
    def change(body: bytes) -> bytes:
        exchange = ServerKeyExchange.parse(body)
        return ServerKeyExchange(
            exchange.psk_identity_hint, ServerEcdhParams(23, OFF_CURVE).to_bytes()
        ).to_bytes()

    client, server = _pair(ECDHE_PSK_CBC)
    assert _alerts(client, server, _rewrite(HandshakeType.SERVER_KEY_EXCHANGE, change)) == [("client", 47)]
    assert client.closed and server.closed


def test_another_curve_in_the_server_params_is_an_illegal_parameter() -> None:
    def change(body: bytes) -> bytes:
        exchange = ServerKeyExchange.parse(body)
        params = ServerEcdhParams.parse(exchange.params)
        return ServerKeyExchange(b"", ServerEcdhParams(24, params.point).to_bytes()).to_bytes()

    client, server = _pair(ECDHE_PSK_CBC)
    assert _alerts(client, server, _rewrite(HandshakeType.SERVER_KEY_EXCHANGE, change)) == [("client", 47)]


def test_a_client_point_off_the_curve_is_an_illegal_parameter() -> None:
    def change(body: bytes) -> bytes:
        exchange = ClientKeyExchange.parse(body)
        return ClientKeyExchange(
            exchange.psk_identity, EcdhClientKeyExchange(OFF_CURVE).to_bytes()
        ).to_bytes()

    client, server = _pair(ECDHE_PSK_CBC)
    assert _alerts(client, server, _rewrite(HandshakeType.CLIENT_KEY_EXCHANGE, change)) == [("server", 47)]


@pytest.mark.parametrize(
    ("suite", "msg_type", "change"),
    [
        (PSK_CBC, HandshakeType.CLIENT_KEY_EXCHANGE, lambda body: body + b"\x01\x04"),
        (ECDHE_PSK_CBC, HandshakeType.CLIENT_KEY_EXCHANGE, lambda body: body[:-1]),
        (ECDHE_PSK_CBC, HandshakeType.SERVER_KEY_EXCHANGE, lambda body: body + b"\x00"),
    ],
    ids=["psk-trailing-bytes", "ecdhe-psk-short-point", "ecdhe-psk-trailing-bytes"],
)
def test_malformed_key_exchanges_are_decode_errors(
    suite: int, msg_type: int, change: Callable[[bytes], bytes]
) -> None:
    client, server = _pair(suite)
    sender = "client" if msg_type == HandshakeType.SERVER_KEY_EXCHANGE else "server"
    assert _alerts(client, server, _rewrite(msg_type, change)) == [(sender, 50)]


def test_an_ecdhe_psk_flight_without_server_key_exchange_is_unexpected() -> None:
    # The ServerKeyExchange turned into a ServerHelloDone (same message_seq), the real one dropped.
    def edit(msg_type: int, message_seq: int, body: bytes) -> bytes:
        if msg_type == HandshakeType.SERVER_KEY_EXCHANGE:
            return encode_handshake(HandshakeType.SERVER_HELLO_DONE, message_seq, b"")
        if msg_type == HandshakeType.SERVER_HELLO_DONE:
            return b""
        return encode_handshake(msg_type, message_seq, body)

    client, server = _pair(ECDHE_PSK_CBC)
    assert _alerts(client, server, _rewrite_messages(edit)) == [("client", 10)]
    assert client.closed


@settings(max_examples=150, deadline=None)
@given(body=st.binary(max_size=120))
def test_any_ecdhe_psk_server_key_exchange_is_processed_or_refused(body: bytes) -> None:
    client, server = _pair(ECDHE_PSK_CBC)
    run(client, server, _rewrite(HandshakeType.SERVER_KEY_EXCHANGE, lambda _: body))
    assert client.established or client.closed


@settings(max_examples=150, deadline=None)
@given(body=st.binary(max_size=120))
def test_any_ecdhe_psk_client_key_exchange_is_processed_or_refused(body: bytes) -> None:
    client, server = _pair(ECDHE_PSK_CBC)
    run(client, server, _rewrite(HandshakeType.CLIENT_KEY_EXCHANGE, lambda _: body))
    assert not server.established or server.closed or client.established


def test_the_server_hello_answers_ec_point_formats_for_ecdhe_psk() -> None:
    client, server = _pair(ECDHE_PSK_CBC)
    hellos: list[bytes] = []

    def watch(name: str, datagrams: list[bytes]) -> list[bytes]:
        hellos.extend(b for d in datagrams for t, b in _handshakes(d) if t == HandshakeType.SERVER_HELLO)
        return datagrams

    run(client, server, watch)
    hello = ServerHello.parse(hellos[0])
    assert hello.extension(ExtensionType.EC_POINT_FORMATS) is not None
    assert hello.extension(ENCRYPT_THEN_MAC) is None


# --- resumption and export -------------------------------------------------------------------------


@PSK_SUITES
def test_a_cbc_psk_session_resumes_with_a_ticket_under_the_same_suite(suite: int) -> None:
    keys = TicketKeys(bytes(range(32)))
    client, server = _established(suite, ticket_keys=keys)
    session = client.session
    assert session is not None and session.cipher_suite == suite and session.ticket
    client_config, server_config = _configs(suite, cbc_suites=(suite,), ticket_keys=keys)
    client = DtlsConnection(DtlsRole.CLIENT, _cbc_only(client_config), 1.0, session=session)
    server = DtlsConnection(DtlsRole.SERVER, server_config, 1.0, address=ADDRESS)
    run(client, server)
    assert client.resumed and server.resumed and client.cipher_suite == server.cipher_suite == suite
    client.send_application_data(b"resumed")
    exchange(client, server, 1.0)
    assert ApplicationData(b"resumed") in events(server)


def test_a_server_that_dropped_the_cbc_suite_does_not_resume_its_session() -> None:
    keys = TicketKeys(bytes(range(32)))
    client, server = _established(PSK_CBC, ticket_keys=keys)
    session = client.session
    client_config, _ = _configs(PSK_CBC, cbc_suites=(PSK_CBC,), ticket_keys=keys)
    server_config = ConnectionConfig(
        psk_lookup={IDENTITY: PSK}.get, ticket_keys=keys, cbc_suites=(), random=counter_random(5)
    )
    client = DtlsConnection(DtlsRole.CLIENT, client_config, 1.0, session=session)
    server = DtlsConnection(DtlsRole.SERVER, server_config, 1.0, address=ADDRESS)
    run(client, server)
    assert client.established and not client.resumed and client.cipher_suite == TLS_PSK_WITH_AES_128_CCM_8


@PSK_SUITES
def test_a_cbc_connection_exports_and_imports(suite: int) -> None:
    client, server = _established(suite)
    config = _configs(suite, cbc_suites=(suite,))[1]
    moved = DtlsConnection.import_state(server.export_state(), config, 2.0, address=ADDRESS)
    assert moved.established and moved.cipher_suite == suite
    client.send_application_data(b"to the new node")
    for datagram in client.datagrams_to_send(2.0):
        moved.receive_datagram(datagram, 2.0)
    assert events(moved) == [ApplicationData(b"to the new node")]
    moved.send_application_data(b"from the new node")
    for datagram in moved.datagrams_to_send(2.0):
        client.receive_datagram(datagram, 2.0)
    assert events(client) == [ApplicationData(b"from the new node")]


@ALL
def test_the_ephemeral_key_and_transcript_go_once_established(suite: int) -> None:
    client, server = _established(suite)
    for side in (client, server):
        assert side._ecdhe is None and side._transcript == []


def test_a_server_answering_encrypt_then_mac_unasked_is_refused() -> None:
    def change(body: bytes) -> bytes:
        hello = ServerHello.parse(body)
        extensions = (*hello.extensions, UnknownExtension(ENCRYPT_THEN_MAC, b""))
        answer = ServerHello(hello.random, hello.cipher_suite, hello.session_id, extensions=extensions)
        return answer.to_bytes()

    client, server = _pair(PSK_CBC)
    assert _alerts(client, server, _rewrite(HandshakeType.SERVER_HELLO, change)) == [("client", 110)]
    [event] = events(client)
    assert isinstance(event, HandshakeFailure) and "encrypt_then_mac" in event.reason


def test_psk_suites_leave_ccm_8_out_and_take_nothing_else() -> None:
    """``psk_suites=()``: CCM_8 neither offered nor taken; a server with CCM_8 alone refuses a
    client offering CBC alone; ``psk_suites`` holds CCM_8 only; a client offering nothing fails
    at once."""
    client_config, server_config = _configs(PSK_CBC, cbc_suites=(PSK_CBC,))
    client = DtlsConnection(DtlsRole.CLIENT, _cbc_only(client_config), 0.0)
    [hello] = _handshakes(client.datagrams_to_send(0.0)[0])
    assert [s for s in ClientHello.parse(hello[1]).cipher_suites if s != 0x00FF] == [PSK_CBC]
    ccm_only = DtlsConnection(DtlsRole.SERVER, replace(server_config, cbc_suites=()), 0.0, address=ADDRESS)
    run(client, ccm_only)
    assert not client.established and not ccm_only.established
    with pytest.raises(DtlsError):
        DtlsConnection(DtlsRole.CLIENT, replace(client_config, psk_suites=(PSK_CBC,)), 0.0)
    with pytest.raises(DtlsError):
        DtlsConnection(DtlsRole.CLIENT, replace(client_config, psk_suites=(), cbc_suites=()), 0.0)
