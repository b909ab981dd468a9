"""tests/helpers/ports.py: the ports tests give to the processes they start."""

from __future__ import annotations

import random
import socket

import pytest
from tests.helpers import ports
from tests.helpers.ports import RESERVED, ephemeral_start, free_tcp_port, free_udp_port


def test_free_ports_lie_below_the_kernels_automatic_range_and_can_be_bound() -> None:
    udp = {free_udp_port() for _ in range(50)}
    tcp = {free_tcp_port() for _ in range(50)}
    for port in udp | tcp:
        assert port < ephemeral_start() and port not in RESERVED
    assert len(udp) > 40 and len(tcp) > 40  # chosen at random, not one port again and again
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", udp.pop()))
    with socket.socket() as s:
        s.bind(("127.0.0.1", tcp.pop()))
        s.listen()


def test_a_port_bound_by_another_socket_is_not_handed_out(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as held:
        held.bind(("", free_udp_port()))
        port = held.getsockname()[1]
        draws = iter([port, port, 5683])  # the held port twice, a reserved one: all passed over

        def randint(low: int, high: int) -> int:
            return next(draws, random.randint(low, high))

        monkeypatch.setattr(ports._random, "randint", randint)
        chosen = free_udp_port()
        assert chosen != port and chosen != 5683
        assert next(draws, None) is None  # all three were drawn
