"""Requests and configurations for the server's security tests."""

from __future__ import annotations

from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, Type
from lwm2m.server.role import Server
from lwm2m.transport.dtls import DtlsClientConfig, PskCredentials


def update(location: tuple[str, ...]) -> Message:
    return Message.build(Type.CON, Code.POST, uri_path=list(location), uri_query=["lt=600"])


def deregister(location: tuple[str, ...]) -> Message:
    return Message.build(Type.CON, Code.DELETE, uri_path=list(location))


def psk(identity: str, key: bytes) -> DtlsClientConfig:
    return DtlsClientConfig(psk=PskCredentials(identity, key))


def coaps(server: Server) -> tuple[str, int]:
    assert server.coaps_port
    return ("127.0.0.1", server.coaps_port)
