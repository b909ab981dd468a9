"""One DEBUG line per CoAP message in and out (logger ``lwm2m.transport.wire``).

The driver asks once, when it is made, whether the logger takes DEBUG; only then does it
put a ``WireTrace`` between itself and the CoAP endpoint (inside the DTLS layer, where the
messages are plaintext). With DEBUG off the hot path is exactly what it was: no check per
datagram, no formatting.
"""

from __future__ import annotations

import logging
from typing import Any

from lwm2m.coap.message import decode_message
from lwm2m.coap.numbers import Code, Type, code_text
from lwm2m.errors import MessageError

__all__ = ["WireTrace", "describe", "log", "traced"]

log = logging.getLogger(__name__)


def _where(addr: Any) -> str:
    try:
        host, port = addr[0], addr[1]
    except (TypeError, IndexError, KeyError):
        return repr(addr)
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


def describe(data: bytes) -> str:
    """A CoAP datagram as one line: type, code, Message ID, token, path, content format, payload size."""
    try:
        msg, _ = decode_message(data)
    except MessageError:
        return f"undecodable datagram of {len(data)} bytes"
    code = msg.code
    if code == 0:
        what = "empty"
    elif 1 <= code <= 31:
        what = Code(code).name if code in _METHODS else code_text(code)
    else:
        what = code_text(code)
    parts = [Type(msg.type).name, what, f"mid={msg.mid}", f"token={msg.token.hex() or '-'}"]
    try:
        if msg.uri_path:
            parts.append(msg.uri_path_str)
        fmt = msg.content_format
        if fmt is not None:
            parts.append(f"ct={int(fmt)}")
    except ValueError:  # an option value that does not read (UnicodeDecodeError is one)
        parts.append("(unreadable options)")
    parts.append(f"{len(msg.payload)} B")
    return " ".join(parts)


_METHODS = frozenset(int(c) for c in Code if c.is_request)


class WireTrace:
    """The driver's side of a sans-IO endpoint, logging each datagram it passes on."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self._receive = inner.receive_datagram
        self._to_send = inner.datagrams_to_send

    def receive_datagram(self, data: bytes, addr: Any, now: float) -> None:
        log.debug("in  %s %s", _where(addr), describe(data))
        self._receive(data, addr, now)

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Any]]:
        out: list[tuple[bytes, Any]] = self._to_send(now)
        for data, addr in out:
            log.debug("out %s %s", _where(addr), describe(data))
        return out

    def __getattr__(self, name: str) -> Any:
        # Everything else (timers, events, the application side) is the endpoint's own.
        return getattr(self._inner, name)


def traced(endpoint: Any) -> Any:
    """``endpoint`` with its CoAP messages logged: a DTLS layer (which has an ``inner`` CoAP
    endpoint) is traced inside, where messages are not yet encrypted."""
    inner = getattr(endpoint, "inner", None)
    if inner is not None and hasattr(inner, "receive_datagram"):
        endpoint.inner = WireTrace(inner)
        return endpoint
    return WireTrace(endpoint)
