"""A listening TCP socket for the HTTP server (the REST API), opened here as every socket is.

Binding it before the HTTP server starts turns a port in use into an ``OSError`` whose
``filename`` is the address (``host:port``), as :func:`lwm2m.transport.reader.bind_udp` does,
instead of a failure deep inside the server's start-up.
"""

from __future__ import annotations

import socket

__all__ = ["bind_tcp"]


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
