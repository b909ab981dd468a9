"""server_name and max_fragment_length against Mbed TLS 2.28 (python-mbedtls, driven sans-IO):
its client names the server (``server_hostname``) and asks for 512-byte fragments
(``max_fragmentation_length``); its server answers our request (python-mbedtls does not
implement its ``sni_callback``, so the name it reads cannot be seen). Mbed TLS 2.28 has no
record_size_limit."""

from __future__ import annotations

import pytest
from tests.helpers.dtls_engine import ADDRESS, IDENTITY, PSK, client_config, events, server_config
from tests.helpers.mbedtls import (
    connect_to_mbedtls_server,
    drive,
    mbedtls_tls,
    psk_configuration,
    serve_mbedtls_client,
)

from lwm2m.errors import DtlsError
from lwm2m.tls.connection import ApplicationData, DtlsConnection, DtlsRole, HandshakeComplete
from lwm2m.tls.record import parse_datagram

HOST = "lwm2m.example"
CCM_8_OVERHEAD = 16


def _plaintext_sizes(datagrams: list[bytes]) -> list[int]:
    return [len(r.fragment) - CCM_8_OVERHEAD for d in datagrams for r in parse_datagram(d) if r.epoch == 1]


def test_mbedtls_client_names_the_server_and_asks_for_512_byte_fragments() -> None:
    tls = mbedtls_tls()
    configuration = psk_configuration(
        pre_shared_key=(IDENTITY.decode(), PSK), max_fragmentation_length=tls.MaxFragmentLength.MFL_512K
    )
    buf = tls.ClientContext(configuration).wrap_buffers(HOST)
    server = DtlsConnection(DtlsRole.SERVER, server_config(), 0.0, address=ADDRESS)
    serve_mbedtls_client(buf, server, rounds=6)
    assert buf._handshake_state is tls.HandshakeStep.HANDSHAKE_OVER
    assert events(server) == [HandshakeComplete(IDENTITY)]
    assert server.server_name == HOST
    assert server.max_application_data == 512
    buf.write(b"p" * 512)
    server.receive_datagram(drive(buf), 1.0)
    assert events(server) == [ApplicationData(b"p" * 512)]
    server.send_application_data(b"q" * 512)
    sent = server.datagrams_to_send(1.0)
    assert _plaintext_sizes(sent) == [512]
    for datagram in sent:
        buf.receive_from_network(datagram)
    assert buf.read(1000) == b"q" * 512


def test_our_client_names_the_mbedtls_server_and_asks_for_fragments() -> None:
    tls = mbedtls_tls()
    configuration = psk_configuration(pre_shared_key_store={IDENTITY.decode(): PSK})
    buf = tls.ServerContext(configuration).wrap_buffers()
    client = DtlsConnection(
        DtlsRole.CLIENT,
        client_config(server_name=HOST, max_fragment_length=1024, record_size_limit=None),
        0.0,
    )
    connect_to_mbedtls_server(buf, client, ADDRESS, rounds=4)
    assert buf._handshake_state is tls.HandshakeStep.HANDSHAKE_OVER
    assert events(client) == [HandshakeComplete(IDENTITY)]
    assert client.max_application_data == 1024
    client.send_application_data(b"r" * 1024)
    for datagram in client.datagrams_to_send(1.0):
        buf.receive_from_network(datagram)
    assert buf.read(2000) == b"r" * 1024
    buf.write(b"s" * 1024)
    sent = drive(buf)
    assert _plaintext_sizes([sent]) == [1024]
    client.receive_datagram(sent, 1.0)
    assert events(client) == [ApplicationData(b"s" * 1024)]
    with pytest.raises(DtlsError, match="at most 1024"):
        client.send_application_data(bytes(1025))
