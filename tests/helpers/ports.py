"""Free loopback ports for tests (never 5683 or 8080)."""

from __future__ import annotations

import socket


def free_udp_port(host: str = "127.0.0.1") -> int:
    """A UDP port the OS says is free now (never 5683: a user may run a server there). For
    127.0.0.1 the port is asked on every IPv4 address at once: some peers (gnutls-serv, openssl
    s_server) listen on all of them, and a port that another test's sockets hold on 127.0.0.2
    or 127.64.x.x would be free on 127.0.0.1 but refused to them."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.bind(("" if host == "127.0.0.1" else host, 0))
        return s.getsockname()[1]


def free_tcp_port() -> int:
    """A TCP port free on every IPv4 address (see :func:`free_udp_port`)."""
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]
