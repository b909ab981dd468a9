"""The PROXY protocol header of a UDP balancer (lwm2m.transport.proxy): parsed (and fuzzed),
believed only from trusted networks, and applied both ways, with a CoAP endpoint on real
loopback sockets behind a stand-in balancer that sends the header nginx sends."""

from __future__ import annotations

import asyncio
import logging
import re
import socket

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lwm2m.coap.events import RequestReceived
from lwm2m.coap.message import Message
from lwm2m.coap.numbers import Code, Type
from lwm2m.errors import ConfigError
from lwm2m.transport.proxy import ProxyConfig, ProxySessions, parse_proxy_header
from lwm2m.transport.udp import open_udp_endpoint

BALANCER = ("127.0.0.1", 40001)


def header(host: str, port: int, family: str = "TCP4") -> bytes:
    # As nginx's stream module writes it for a UDP session (it names TCP).
    return f"PROXY {family} {host} 127.0.0.1 {port} 5683\r\n".encode()


def test_the_header_names_the_device_and_leaves_the_datagram() -> None:
    assert parse_proxy_header(header("192.0.2.7", 56830) + b"\x40\x01") == (("192.0.2.7", 56830), b"\x40\x01")
    v6 = b"PROXY TCP6 2001:db8::5 ::1 4000 5683\r\nx"
    assert parse_proxy_header(v6) == (("2001:db8::5", 4000), b"x")
    assert parse_proxy_header(b"PROXY UNKNOWN\r\nrest") == (None, b"rest")


@pytest.mark.parametrize(
    "bad",
    [
        b"PROXY TCP4 192.0.2.7 127.0.0.1 56830 5683",  # no CRLF
        b"PROXY TCP4 192.0.2.7 127.0.0.1 56830\r\n",  # a field short
        b"PROXY TCP4 2001:db8::5 127.0.0.1 1 2\r\n",  # a v6 address for TCP4
        b"PROXY TCP6 192.0.2.7 ::1 1 2\r\n",
        b"PROXY TCP4 192.0.2.7 127.0.0.1 0 5683\r\n",  # port 0
        b"PROXY TCP4 192.0.2.7 127.0.0.1 65536 5683\r\n",
        b"PROXY TCP4 192.0.2.7 127.0.0.1 +80 5683\r\n",
        b"PROXY TCP4 192.0.2.7 127.0.0.1 080 5683\r\n",
        b"PROXY SCTP 192.0.2.7 127.0.0.1 80 5683\r\n",
        b"PROXY TCP4 192.0.2.999 127.0.0.1 80 5683\r\n",
        b"PROXY TCP4 " + b"1" * 120 + b"\r\n",  # longer than a header may be
    ],
)
def test_a_malformed_header_is_refused_naming_why(bad: bytes) -> None:
    with pytest.raises(ValueError):
        parse_proxy_header(bad)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=160))
def test_fuzzed_headers_parse_or_raise_value_error(tail: bytes) -> None:
    try:
        device, rest = parse_proxy_header(b"PROXY " + tail)
    except ValueError:
        return
    assert device is None or 0 < device[1] < 65536
    assert len(rest) < len(tail) + 6


def test_config_names_the_bad_network() -> None:
    with pytest.raises(ConfigError, match=re.escape("'10.0.0.300'")):
        ProxyConfig(("10.0.0.300",))
    with pytest.raises(ConfigError, match="at least one"):
        ProxyConfig(())
    with pytest.raises(ConfigError, match="sessions"):
        ProxyConfig(("127.0.0.1",), sessions=0)


def test_sessions_translate_both_ways_and_follow_a_reused_port() -> None:
    sessions = ProxySessions(ProxyConfig(("127.0.0.0/8",)))
    seen: list[tuple[bytes, object]] = []
    receive = sessions.receive(lambda data, addr, now: seen.append((data, addr)))
    out: list[tuple[bytes, object]] = []
    to_send = sessions.to_send(lambda now: list(out))
    receive(header("192.0.2.7", 1000) + b"first", BALANCER, 0.0)
    receive(b"second", BALANCER, 0.0)  # no header after the first datagram
    assert seen == [(b"first", ("192.0.2.7", 1000)), (b"second", ("192.0.2.7", 1000))]
    out[:] = [(b"answer", ("192.0.2.7", 1000)), (b"other", ("198.51.100.1", 9))]
    assert to_send(0.0) == [(b"answer", BALANCER), (b"other", ("198.51.100.1", 9))]
    # The balancer gives the same port to another device's new session: its header says so.
    receive(header("192.0.2.8", 2000) + b"third", BALANCER, 0.0)
    assert seen[-1] == (b"third", ("192.0.2.8", 2000))
    assert sessions.session(("192.0.2.7", 1000)) is None and sessions.origin(BALANCER) == ("192.0.2.8", 2000)
    # A header alone (no datagram after it) only teaches; a session never introduced stays as it is.
    receive(header("192.0.2.9", 3000), ("127.0.0.1", 40002), 0.0)
    receive(b"plain", ("127.0.0.1", 40003), 0.0)
    assert seen[-1] == (b"plain", ("127.0.0.1", 40003)) and len(seen) == 4
    assert sessions.session(("192.0.2.9", 3000)) == ("127.0.0.1", 40002)


def test_a_header_from_outside_the_trusted_networks_is_dropped(caplog: pytest.LogCaptureFixture) -> None:
    sessions = ProxySessions(ProxyConfig(("10.0.0.0/24",)))
    seen: list[object] = []
    receive = sessions.receive(lambda data, addr, now: seen.append(addr))
    with caplog.at_level(logging.WARNING, logger="lwm2m.transport.proxy"):
        # A device claiming another's address, then a trusted balancer's malformed header.
        receive(header("192.0.2.7", 1000) + b"x", ("192.0.2.66", 5000), 0.0)
        receive(b"PROXY garbage" + b"x" * 200, ("10.0.0.5", 5000), 0.0)
    assert seen == [] and sessions.refused == 2 and len(sessions) == 0
    assert "not a trusted balancer" in caplog.text and "no CRLF" in caplog.text
    receive(header("192.0.2.7", 1000) + b"y", ("10.0.0.5", 5000), 0.0)
    assert seen == [("192.0.2.7", 1000)]


def test_sessions_are_bounded_the_oldest_forgotten() -> None:
    sessions = ProxySessions(ProxyConfig(("127.0.0.1",), sessions=3))
    receive = sessions.receive(lambda data, addr, now: None)
    for i in range(10):
        receive(header("192.0.2.1", 1000 + i), ("127.0.0.1", 30000 + i), 0.0)
    assert len(sessions) == 3
    assert sessions.origin(("127.0.0.1", 30000)) is None and sessions.session(("192.0.2.1", 1000)) is None
    assert sessions.origin(("127.0.0.1", 30009)) == ("192.0.2.1", 1009)


async def test_an_endpoint_behind_the_balancer_sees_and_answers_the_device() -> None:
    seen: list[object] = []

    def handler(event: RequestReceived) -> Message:
        seen.append(event.addr)
        return Message.build(Type.ACK, Code.CONTENT, payload=b"22.5")

    proxy = ProxySessions(ProxyConfig(("127.0.0.1",)))
    async with open_udp_endpoint("127.0.0.1", 0, handler=handler, proxy=proxy) as server:
        balancer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        balancer.bind(("127.0.0.1", 0))
        balancer.setblocking(False)
        loop = asyncio.get_running_loop()
        try:
            request = Message.build(Type.CON, Code.GET, mid=7, token=b"\x01", uri_path=["t"]).encode()
            await loop.sock_sendto(balancer, header("192.0.2.7", 56830) + request, ("127.0.0.1", server.port))
            async with asyncio.timeout(5):
                answer = Message.decode(await loop.sock_recv(balancer, 2048))
            assert seen == [("192.0.2.7", 56830)]  # the device, not the balancer's socket
            assert (answer.code, answer.mid, answer.payload) == (Code.CONTENT, 7, b"22.5")
            # The server's own request to the device goes out through the session.
            asking = asyncio.ensure_future(
                server.request(Message.build(Type.CON, Code.GET, uri_path=["3", "0"]), ("192.0.2.7", 56830))
            )
            async with asyncio.timeout(5):
                asked = Message.decode(await loop.sock_recv(balancer, 2048))
            assert asked.uri_path == ("3", "0")
            reply = Message.build(Type.ACK, Code.CONTENT, mid=asked.mid, token=asked.token, payload=b"ok")
            await loop.sock_sendto(balancer, reply.encode(), ("127.0.0.1", server.port))
            assert (await asyncio.wait_for(asking, 5)).payload == b"ok"
        finally:
            balancer.close()
