"""The devices' own addresses behind a UDP balancer that speaks the PROXY protocol.

A balancer such as nginx's stream module opens a UDP session per device address and sends the
device's datagrams to a node from a socket of its own: the node sees the balancer's address and
an ephemeral port, a new one whenever a session ends and the device's next datagram opens
another (after ``proxy_timeout``, or at another node after a failover). With
``proxy_protocol on;`` nginx puts a PROXY protocol version 1 header in front of the first
datagram of each session (``PROXY TCP4 <device> <balancer> <device port> <balancer port>\\r\\n``;
haproxy.org's "The PROXY protocol" §2.1, where the header names TCP although the session is
UDP). :class:`ProxySessions` reads that header from the balancers it trusts, remembers which
device each session carries, and translates: datagrams from a session reach the CoAP endpoint
as from the device's own address, and what the endpoint sends to that address leaves through
the session. The server then registers the device under the address that does not change
with the balancer's sessions, and a node that has never seen the session finds the device by
it (a Send, which names no endpoint, as the first datagram after a failover).

Sans-IO beside the driver: :meth:`ProxySessions.receive` and :meth:`ProxySessions.to_send` wrap
the endpoint's ``receive_datagram`` and ``datagrams_to_send`` (as :mod:`lwm2m.transport.tap`
does), so without a configuration nothing stands between the sockets and the endpoint.

What a header from elsewhere gets: a datagram that starts with ``PROXY `` from an address
outside the trusted networks is dropped (counted, logged within bounds): a device cannot claim
another one's address. A session whose header the node never saw (the node restarted while the
balancer kept the session) is served under the balancer's address, as without the protocol.
Sessions remembered are bounded (``ProxyConfig.sessions``; the oldest forgotten beyond).
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lwm2m.errors import ConfigError

__all__ = ["ProxyConfig", "ProxySessions", "parse_proxy_header"]

log = logging.getLogger(__name__)

Addr = Any
Receive = Callable[[bytes, Addr, float], None]
ToSend = Callable[[float], list[tuple[bytes, Addr]]]

SIGNATURE = b"PROXY "
MAX_HEADER = 107  # bytes of a version 1 header at most, its CRLF included (the protocol's §2.1)
LOGGED_REFUSALS = 20  # refused headers logged one by one; beyond, one line every 1,000


@dataclass(frozen=True, slots=True)
class ProxyConfig:
    """``trusted``: the networks (``127.0.0.1``, ``10.0.0.0/24``, ``::1``) of the balancers whose
    PROXY headers are believed; ``sessions``: balancer sessions remembered at most."""

    trusted: tuple[str, ...]
    sessions: int = 262_144

    def __post_init__(self) -> None:
        if not self.trusted:
            raise ConfigError("PROXY protocol: name at least one trusted balancer network")
        for network in self.trusted:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError as exc:
                raise ConfigError(f"PROXY protocol: trusted network {network!r}: {exc}") from None
        if self.sessions < 1:
            raise ConfigError(f"PROXY protocol: sessions {self.sessions}: at least 1")


def parse_proxy_header(data: bytes) -> tuple[tuple[str, int] | None, bytes]:
    """A version 1 header at the start of ``data``: the source address it names (None for
    ``UNKNOWN``), and the datagram after it. A malformed header is a ValueError naming what is
    wrong."""
    end = data.find(b"\r\n", 0, MAX_HEADER)
    if end < 0:
        raise ValueError(f"no CRLF within the first {MAX_HEADER} bytes")
    fields = data[:end].split(b" ")
    rest = data[end + 2 :]
    if len(fields) >= 2 and fields[1] == b"UNKNOWN":
        return None, rest
    if len(fields) != 6:
        raise ValueError(f"{len(fields)} fields, where PROXY, the family, two addresses and two ports are 6")
    family, source, _, port, _ = fields[1:]
    try:
        text = source.decode("ascii")
        parsed = ipaddress.ip_address(text)
        number = int(port)
    except (UnicodeDecodeError, ValueError):
        raise ValueError(f"source {source!r} port {port!r}") from None
    if family not in (b"TCP4", b"TCP6", b"UDP4", b"UDP6"):
        raise ValueError(f"family {family!r}")
    if (
        (parsed.version == 4) != family.endswith(b"4")
        or not 0 < number < 65536
        or port != str(number).encode()
    ):
        raise ValueError(f"source {text} port {port!r} for {family.decode()}")
    return (text, number), rest


class ProxySessions:
    """The balancer's sessions, each with the device it carries (see the module's text)."""

    __slots__ = ("_networks", "_origin", "_upstream", "limit", "refused")

    def __init__(self, config: ProxyConfig) -> None:
        self._networks = tuple(ipaddress.ip_network(n, strict=False) for n in config.trusted)
        self._origin: dict[Addr, tuple[str, int]] = {}  # the balancer's side -> the device
        self._upstream: dict[tuple[str, int], Addr] = {}  # the device -> its latest session
        self.limit = config.sessions
        self.refused = 0

    def __len__(self) -> int:
        return len(self._origin)

    def origin(self, addr: Addr) -> tuple[str, int] | None:
        """The device a session of the balancer carries, if its header was seen."""
        return self._origin.get(addr)

    def session(self, device: tuple[str, int]) -> Addr | None:
        """The balancer's latest session carrying ``device``."""
        return self._upstream.get(device)

    def _trusted(self, addr: Addr) -> bool:
        try:
            host = ipaddress.ip_address(addr[0].partition("%")[0])
        except ValueError:
            return False
        return any(host in network for network in self._networks)

    def _refuse(self, addr: Addr, why: str) -> None:
        self.refused += 1
        if self.refused <= LOGGED_REFUSALS or self.refused % 1000 == 0:
            log.warning("PROXY header from %s refused (%s; %d so far)", addr, why, self.refused)

    def _learn(self, addr: Addr, device: tuple[str, int]) -> None:
        origin = self._origin
        upstream = self._upstream
        before = origin.pop(addr, None)  # a port the balancer used before for another device
        if before is not None and upstream.get(before) == addr:
            del upstream[before]
        while len(origin) >= self.limit:
            oldest = next(iter(origin))
            gone = origin.pop(oldest)
            if upstream.get(gone) == oldest:
                del upstream[gone]
        origin[addr] = device
        upstream[device] = addr

    def receive(self, receive: Receive) -> Receive:
        """``receive`` (an endpoint's ``receive_datagram``) behind the balancer's sessions."""
        origin = self._origin

        def receive_proxied(data: bytes, addr: Addr, now: float) -> None:
            if data[:6] == SIGNATURE:
                if not self._trusted(addr):
                    self._refuse(addr, "not a trusted balancer")
                    return
                try:
                    device, data = parse_proxy_header(data)
                except ValueError as exc:
                    self._refuse(addr, str(exc))
                    return
                if device is not None:
                    self._learn(addr, device)
                if not data:
                    return
            receive(data, origin.get(addr, addr), now)

        return receive_proxied

    def to_send(self, to_send: ToSend) -> ToSend:
        """``to_send`` (an endpoint's ``datagrams_to_send``) with each device's address replaced
        by the session that carries it."""
        upstream = self._upstream

        def to_send_proxied(now: float) -> list[tuple[bytes, Addr]]:
            out = to_send(now)
            if out:
                get = upstream.get
                out = [(data, get(addr, addr)) for data, addr in out]
            return out

        return to_send_proxied
