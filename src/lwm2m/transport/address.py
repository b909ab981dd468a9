"""Socket addresses in the one form the endpoint keys its state on.

The sans-IO endpoint matches responses, duplicates and observations by address
equality, so the address a user passes to ``request`` must compare equal to
what ``recvfrom`` later reports for the same peer: ``(host, port)`` for IPv4
and ``(host, port, flowinfo, scope_id)`` for IPv6, with the host in the
canonical text form the kernel returns (``::1``, not ``0::1``).
"""

from __future__ import annotations

import asyncio
import socket
from functools import lru_cache

Addr = tuple  # (host, port) or (host, port, flowinfo, scope_id), as recvfrom returns it


def is_ipv6(addr: Addr) -> bool:
    return len(addr) == 4


@lru_cache(maxsize=4096)
def _numeric(host: str, port: int) -> Addr | None:
    try:
        infos = socket.getaddrinfo(
            host, port, type=socket.SOCK_DGRAM, flags=socket.AI_NUMERICHOST | socket.AI_NUMERICSERV
        )
    except socket.gaierror:
        return None
    return infos[0][4]


def normalize(addr: Addr) -> Addr | None:
    """The canonical form of an address whose host is an IP literal; None for names.

    An IPv4 address already in that form (as ``recvfrom`` reported it: a server's requests go
    to the address a client registered from) is handed back as it is, not resolved into a copy:
    a server at a million clients keeps one tuple per client, and the cache of resolved
    literals holds only so many."""
    if type(addr) is tuple and len(addr) == 2:
        host, port = addr
        if type(host) is str and type(port) is int and 0 <= port <= 0xFFFF:
            try:
                if socket.inet_ntoa(socket.inet_aton(host)) == host:
                    return addr
            except OSError:  # not an IPv4 literal: a name, IPv6 or nonsense
                pass
    if len(addr) == 4:
        host, port, flowinfo, scope_id = addr
        base = _numeric(host, int(port))
        if base is None:
            return None
        return (base[0], base[1], flowinfo, scope_id or base[3])
    host, port = addr
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return _numeric(host, int(port))


# One int object per port number (a port above 256 read from a socket is an object of its own
# each time): a server keeps the address of every client, a million of them at most.
_PORTS: dict[int, int] = {}


def interned(addr: Addr) -> Addr:
    """``addr``, or an equal address whose port is the process's one int object of that value:
    for an address kept as long as a client is registered."""
    if type(addr) is tuple and len(addr) == 2:
        host, port = addr
        if type(port) is int:
            held = _PORTS.setdefault(port, port)
            if held is not port:
                return (host, held)
    return addr


async def resolve(addr: Addr, family: int = socket.AF_UNSPEC) -> Addr:
    """``normalize`` for literals; a name goes through the loop's resolver (first answer wins)."""
    found = normalize(addr)
    if found is not None:
        return found
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(addr[0], addr[1], family=family, type=socket.SOCK_DGRAM)
    if not infos:
        raise OSError(f"cannot resolve {addr[0]!r}")
    return infos[0][4]


def format_addr(addr: Addr) -> str:
    host, port = addr[0], addr[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
