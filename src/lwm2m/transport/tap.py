"""A tap on the CoAP messages of some peers: what a per-device message trace sees.

A :class:`MessageSink` names the peer addresses it wants (``addresses``, a container it owns and
changes as devices move) and takes a copy of each datagram to or from one of them (``seen``).
The tap is put in only while a sink is given (``UdpDriver.tap``, ``CoapUdpEndpoint.tap``): with
none, the path from the socket to the endpoint is what it was, no check per datagram; with one,
each datagram costs one look-up of its address. Over DTLS the tap sits inside the DTLS layer,
where the messages are plaintext (as :mod:`lwm2m.transport.wire` does for the DEBUG log).
Over TCP and TLS (RFC 8323) there are no datagrams: a :class:`ConnectionSink` takes each message
of a traced peer's connection as the connection decoded it or was given it (``seen_message``).
"""

from __future__ import annotations

from collections.abc import Callable, Container
from typing import Any, Protocol

from lwm2m.coap.message import Message

__all__ = [
    "ConnectionSink",
    "MessageSink",
    "Receive",
    "TappedPlain",
    "ToSend",
    "tapped_receive",
    "tapped_send",
]

Receive = Callable[[bytes, Any, float], None]
ToSend = Callable[[float], list[tuple[bytes, Any]]]


class MessageSink(Protocol):
    """Where tapped datagrams go: ``seen(incoming, data, addr)`` for a peer in ``addresses``."""

    @property
    def addresses(self) -> Container[Any]: ...

    def seen(self, incoming: bool, data: bytes, addr: Any) -> None: ...


class ConnectionSink(MessageSink, Protocol):
    """A sink that also takes the messages of CoAP over TCP and TLS connections: ``seen_message``
    for a peer in ``addresses`` (an RFC 8323 message has no type nor Message ID)."""

    def seen_message(self, incoming: bool, message: Message, addr: Any) -> None: ...


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


class TappedPlain:
    """The two calls through which a DTLS layer hands plaintext to its CoAP endpoint and takes
    it back, with the datagrams of the sink's peers copied to the sink (``DtlsLayer.tap``)."""

    __slots__ = ("datagrams_to_send", "receive_datagram")

    def __init__(self, endpoint: Any, sink: MessageSink) -> None:
        self.receive_datagram: Receive = tapped_receive(endpoint.receive_datagram, sink)
        self.datagrams_to_send: ToSend = tapped_send(endpoint.datagrams_to_send, sink)
