"""Free loopback ports for tests (never 5683 or 8080).

A port is chosen at random below the kernel's ephemeral range and checked free. A port the
kernel hands out (``bind`` to port 0, the source port of an outgoing connection) comes from
that range, so another test's sockets cannot take one of ours in the moment between our
choice and the bind of the process we start with it (a server in a child process, a peer
program). Two tests choosing the same port is left to chance: one in ~12,000 per pair.
"""

from __future__ import annotations

import random
import socket
from collections.abc import Callable
from pathlib import Path

LOWEST = 20000
RESERVED = frozenset({5683, 5684, 8080, 8443})
ATTEMPTS = 200


def ephemeral_start() -> int:
    """Where the kernel's range for automatic ports begins (32768 unless configured)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


_random = random.Random()


def _choose(fits: Callable[[int], bool], fallback: Callable[[], int]) -> int:
    top = ephemeral_start() - 1
    if top - LOWEST < 1000:  # a configured range that leaves little below it: the kernel's choice
        return fallback()
    for _ in range(ATTEMPTS):
        port = _random.randint(LOWEST, top)
        if port not in RESERVED and fits(port):
            return port
    return fallback()


def _binds(kind: int, family: int, host: str, port: int) -> bool:
    with socket.socket(family, kind) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def _kernel_port(kind: int, family: int, host: str) -> int:
    with socket.socket(family, kind) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def free_udp_port(host: str = "127.0.0.1") -> int:
    """A UDP port free now (never 5683: a user may run a server there). For 127.0.0.1 the port
    is asked on every IPv4 address at once: some peers (gnutls-serv, openssl s_server) listen on
    all of them, and a port that another test's sockets hold on 127.0.0.2 or 127.64.x.x would be
    free on 127.0.0.1 but refused to them."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    where = "" if host == "127.0.0.1" else host
    return _choose(
        lambda port: _binds(socket.SOCK_DGRAM, family, where, port),
        lambda: _kernel_port(socket.SOCK_DGRAM, family, where),
    )


def free_tcp_port() -> int:
    """A TCP port free on every IPv4 address (see :func:`free_udp_port`)."""
    return _choose(
        lambda port: _binds(socket.SOCK_STREAM, socket.AF_INET, "", port),
        lambda: _kernel_port(socket.SOCK_STREAM, socket.AF_INET, ""),
    )
