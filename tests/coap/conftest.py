"""Two sans-IO endpoints wired together in memory, with a clock the test advances."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest

from lwm2m.coap.endpoint import Endpoint, EndpointConfig
from lwm2m.coap.events import Event
from lwm2m.coap.message import Message

C, S = ("10.0.0.1", 5683), ("10.0.0.2", 5683)

Drop = Callable[[Any, Message], bool]  # (sender address, message) -> drop it?


class Net:
    """Client endpoint ``c`` at address C, server endpoint ``s`` at S; ``now`` moves forward only."""

    def __init__(self, client: EndpointConfig | None = None, server: EndpointConfig | None = None) -> None:
        self.c = Endpoint(client or EndpointConfig(), rng=random.Random(1))
        self.s = Endpoint(server or EndpointConfig(), rng=random.Random(2))
        self.now = 0.0
        self.log: list[tuple[Any, Message, float]] = []  # (sender, message, time) of every datagram
        self.drop: Drop | None = None

    def ep(self, addr: Any) -> Endpoint:
        return self.c if addr == C else self.s

    def deliver(self) -> int:
        """Move datagrams both ways until none are left; returns how many moved."""
        moved = 0
        while True:
            batch = [(C, d, a) for d, a in self.c.datagrams_to_send(self.now)]
            batch += [(S, d, a) for d, a in self.s.datagrams_to_send(self.now)]
            if not batch:
                return moved
            for sender, data, dest in batch:
                msg = Message.decode(data)
                self.log.append((sender, msg, self.now))
                moved += 1
                if self.drop is not None and self.drop(sender, msg):
                    continue
                self.ep(dest).receive_datagram(data, sender, self.now)

    def advance(self, until: float) -> None:
        """Run every timer of both endpoints due up to ``until``, delivering as we go."""
        self.deliver()
        while True:
            timers = [t for t in (self.c.get_timer(), self.s.get_timer()) if t is not None and t <= until]
            if not timers:
                break
            self.now = max(self.now, min(timers))
            self.c.handle_timer(self.now)
            self.s.handle_timer(self.now)
            self.deliver()
        self.now = max(self.now, until)

    def idle(self, ep: Endpoint) -> bool:
        """No timer of ``ep`` but the expiry of state it holds (duplicate detection, a span
        after the latest datagram): nothing to retransmit, acknowledge or time out."""
        timer = ep.get_timer()
        return timer is None or timer >= self.now + min(ep.config.exchange_lifetime, ep.config.non_lifetime)

    def sent_by(self, addr: Any) -> list[Message]:
        return [m for sender, m, _ in self.log if sender == addr]

    @staticmethod
    def events(ep: Endpoint) -> list[Event]:
        out = []
        while (e := ep.next_event()) is not None:
            out.append(e)
        return out


@pytest.fixture
def net() -> Net:
    return Net()


@pytest.fixture
def make_net() -> Callable[..., Net]:
    return Net
