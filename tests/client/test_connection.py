"""The server name a client's DTLS configuration carries: the host of the Security object's URI
when it is a DNS name (RFC 6066 §3: never an IP address), and it reaches the ClientHello's
server_name extension through the transport's engine backend."""

from __future__ import annotations

import pytest

from lwm2m.client.connection import dtls_for
from lwm2m.client.core.security import Security, SecurityMode
from lwm2m.tls.messages import ClientHello, ExtensionType, ServerNameExtension, split_handshake_fragments
from lwm2m.tls.record import parse_datagram
from lwm2m.transport.dtls.engine_backend import EngineBackend

KEY = bytes(range(16))


def psk_account(uri: str) -> Security:
    return Security(0, uri=uri, mode=SecurityMode.PSK, identity=b"dev-1", secret_key=KEY)


@pytest.mark.parametrize(
    ("uri", "name"),
    [
        ("coaps://lwm2m.example.com:5684", "lwm2m.example.com"),
        ("coaps://LwM2M.Example.com", "lwm2m.example.com"),  # urlsplit gives the host in lower case
        ("coaps://127.0.0.1:5684", None),
        ("coaps://[::1]:5684", None),
        ("coaps://bad..name:5684", None),  # no host name a handshake can carry
    ],
)
def test_the_server_name_is_the_uri_host_when_it_is_a_dns_name(uri: str, name: str | None) -> None:
    config = dtls_for(psk_account(uri))
    assert config is not None and config.server_name == name


def test_the_client_hello_names_the_server() -> None:
    config = dtls_for(psk_account("coaps://lwm2m.example.com:5684"))
    assert config is not None
    connection = EngineBackend().client(config).connect(0.0)
    connection.handshake(0.0)
    [datagram] = connection.outgoing()
    [(_, body)] = split_handshake_fragments(parse_datagram(datagram)[0].fragment)
    extension = ClientHello.parse(body).extension(ExtensionType.SERVER_NAME)
    assert extension == ServerNameExtension(b"lwm2m.example.com")
