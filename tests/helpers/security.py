"""Requests and configurations for the server's security tests."""

from __future__ import annotations

from typing import Any

from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, Type
from lwm2m.server.role import Server
from lwm2m.transport.dtls import CoapDtlsEndpoint, DtlsClientConfig, PskCredentials
from lwm2m.transport.dtls.records import is_client_hello


def update(location: tuple[str, ...]) -> Message:
    return Message.build(Type.CON, Code.POST, uri_path=list(location), uri_query=["lt=600"])


def deregister(location: tuple[str, ...]) -> Message:
    return Message.build(Type.CON, Code.DELETE, uri_path=list(location))


def psk(identity: str, key: bytes) -> DtlsClientConfig:
    return DtlsClientConfig(psk=PskCredentials(identity, key))


def coaps(server: Server) -> tuple[str, int]:
    assert server.coaps_port
    return ("127.0.0.1", server.coaps_port)


def count_hellos(client: CoapDtlsEndpoint) -> list[bytes]:
    """The ClientHellos ``client`` sends from now on (its layer's output, seen on the way out)."""
    hellos: list[bytes] = []
    send = client.dtls.datagrams_to_send

    def watched(now: float) -> list[tuple[bytes, Any]]:
        out = send(now)
        hellos.extend(d for d, _ in out if is_client_hello(d))
        return out

    client.dtls.datagrams_to_send = watched  # type: ignore[method-assign]
    return hellos
