"""A listening TCP socket for the HTTP server (the REST API), opened here as every socket is.

Binding it before the HTTP server starts turns a port in use into an ``OSError`` whose
``filename`` is the address (``host:port``), as :func:`lwm2m.transport.reader.bind_udp` does,
instead of a failure deep inside the server's start-up.
"""

from __future__ import annotations

import socket

from lwm2m.errors import ConfigError
from lwm2m.transport.dtls.config import RpkCredentials, X509Credentials

__all__ = ["bind_tcp", "check_listener", "check_port"]


def check_port(name: str, value: object) -> None:
    """A ConfigError naming ``name`` unless ``value`` is a port number (0: any free port)."""
    if type(value) is not int or not 0 <= value <= 65535:
        raise ConfigError(f"{name} must be a port number 0..65535 (0: any free port), got {value!r}")


def check_listener(
    host: object, port: object, coaps_port: object, certificate: object, rpk: object = None
) -> None:
    """The checks of a role that listens on ``host``: CoAP on ``port``, CoAP over DTLS on
    ``coaps_port`` if given, with an X.509 ``certificate`` and a raw public key pair ``rpk``
    (each needs DTLS) if given."""
    if not isinstance(host, str) or not host:
        raise ConfigError(f"host must be an address or host name, got {host!r}")
    check_port("port", port)
    if coaps_port is not None:
        check_port("coaps_port", coaps_port)
    if certificate is not None:
        if not isinstance(certificate, X509Credentials):
            raise ConfigError(f"certificate must be X509Credentials, got {type(certificate).__name__}")
        if coaps_port is None:
            raise ConfigError("certificate needs coaps_port: X.509 clients come over DTLS")
    if rpk is not None:
        if not isinstance(rpk, RpkCredentials):
            raise ConfigError(f"rpk must be RpkCredentials, got {type(rpk).__name__}")
        if coaps_port is None:
            raise ConfigError("rpk needs coaps_port: raw public key clients come over DTLS")


def bind_tcp(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port``, not yet listening (the server calls ``listen``)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, _, proto, _, sockaddr = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM, proto)
    try:
        # A restarted server takes its port back while old connections linger in TIME_WAIT
        # (on POSIX this never lets two servers listen on one port).
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(sockaddr)
    except OSError as exc:
        sock.close()
        shown = f"[{host}]" if ":" in host else host
        raise OSError(exc.errno, exc.strerror, f"{shown}:{port}") from None
    return sock
