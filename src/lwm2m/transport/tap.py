"""A tap on the CoAP messages of some peers: what a per-device message trace sees.

A :class:`MessageSink` names the peer addresses it wants (``addresses``, a container it owns and
changes as devices move) and takes a copy of each datagram to or from one of them (``seen``).
The tap is put in only while a sink is given (``UdpDriver.tap``, ``CoapUdpEndpoint.tap``): with
none, the path from the socket to the endpoint is what it was, no check per datagram; with one,
each datagram costs one look-up of its address. Over DTLS the tap sits inside the DTLS layer,
where the messages are plaintext (as :mod:`lwm2m.transport.wire` does for the DEBUG log).
"""

from __future__ import annotations

from collections.abc import Callable, Container
from typing import Any, Protocol

__all__ = ["MessageSink", "Receive", "TappedSide", "ToSend", "tapped_receive", "tapped_send"]

Receive = Callable[[bytes, Any, float], None]
ToSend = Callable[[float], list[tuple[bytes, Any]]]


class MessageSink(Protocol):
    """Where tapped datagrams go: ``seen(incoming, data, addr)`` for a peer in ``addresses``."""

    @property
    def addresses(self) -> Container[Any]: ...

    def seen(self, incoming: bool, data: bytes, addr: Any) -> None: ...


def tapped_receive(receive: Receive, sink: MessageSink) -> Receive:
    """``receive`` with the datagrams from the sink's peers copied to it first."""
    addresses = sink.addresses
    seen = sink.seen

    def receive_tapped(data: bytes, addr: Any, now: float) -> None:
        if addr in addresses:
            seen(True, data, addr)
        receive(data, addr, now)

    return receive_tapped


def tapped_send(to_send: ToSend, sink: MessageSink) -> ToSend:
    """``to_send`` with the datagrams to the sink's peers copied to it."""
    addresses = sink.addresses
    seen = sink.seen

    def to_send_tapped(now: float) -> list[tuple[bytes, Any]]:
        out = to_send(now)
        for data, addr in out:
            if addr in addresses:
                seen(False, data, addr)
        return out

    return to_send_tapped


class TappedSide:
    """The CoAP side of a DTLS layer with its plaintext datagrams tapped; ``untapped`` is the
    side it stands for, which the layer gets back when the tap is taken out."""

    def __init__(self, inner: Any, sink: MessageSink) -> None:
        self.untapped = inner
        self.receive_datagram = tapped_receive(inner.receive_datagram, sink)
        self.datagrams_to_send = tapped_send(inner.datagrams_to_send, sink)

    def __getattr__(self, name: str) -> Any:
        # Everything else (timers, events, the application side) is the endpoint's own.
        return getattr(self.untapped, name)
