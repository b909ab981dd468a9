"""The write sequence ranges of a DTLS session taken over between the nodes of a cluster.

A record's AEAD nonce is made of its epoch and sequence number (RFC 6347 §4.1.2.1, RFC 6655
§3 for CCM); two nodes that send records under the same keys with the same sequence number
repeat a nonce, which breaks AES-CCM and AES-GCM. So each holder of a session gets a range of
write sequence numbers of its own, decided atomically by the shared store:

- The node that made the session publishes it with ``base``, the write sequence number its
  saved state carries (the next one it sends plus the engine's export margin).
- The store counts the takeovers of the session; the ``n``-th taker (n = 1, 2, ...) sends from
  ``base + n * 2^36`` and stays below ``base + (n + 1) * 2^36`` (``taker_range``). The node
  that made the session stays below ``base + 2^36``: its range holds every number below the
  first taker's.
- A takeover whose range would not fit in the 48 bits of the sequence number is refused
  (``TakeoverRefused``): the device makes a new handshake, with new keys.

2^36 records (68 billion) are more than a device sends in a session's life; a holder never
reaches its range's end in practice, and ``base`` never moves for a session, so the ranges of
all its holders are disjoint whatever order they take it in.
"""

from __future__ import annotations

import dataclasses
from typing import Final

from lwm2m.errors import SessionStateError, TakeoverRefused
from lwm2m.transport.dtls.saved import decode_saved, encode_saved

__all__ = ["MAX_SEQUENCE", "TAKER_STRIDE", "rebase", "taker_range", "write_base"]

TAKER_STRIDE: Final = 1 << 36
MAX_SEQUENCE: Final = (1 << 48) - 1  # RFC 6347 §4.1: a 48-bit sequence number


def taker_range(base: int, n: int) -> range:
    """The write sequence numbers of the ``n``-th taker of a session published with ``base``
    (n = 0: the node that made it, from 0). Raises TakeoverRefused when the range does not fit."""
    if n < 0 or base < 0:
        raise ValueError("a takeover count and a base are not negative")
    end = base + (n + 1) * TAKER_STRIDE
    if end - 1 > MAX_SEQUENCE:
        raise TakeoverRefused(f"takeover {n} of a session based at {base} leaves the 48-bit sequence space")
    return range(0 if n == 0 else base + n * TAKER_STRIDE, end)


def write_base(saved: bytes) -> int:
    """The write sequence number a saved server session (``encode_saved`` bytes of our engine's
    state) starts from when taken up."""
    from lwm2m.tls.state import ConnectionState  # the dtls extra: only where sessions exist

    return ConnectionState.from_bytes(decode_saved(saved).state).write_sequence


def rebase(saved: bytes, write_sequence: int) -> bytes:
    """``saved`` with its write sequence number set to ``write_sequence`` (a taker's range start)."""
    from lwm2m.tls.state import ConnectionState

    entry = decode_saved(saved)
    if entry.role != "server":
        raise TakeoverRefused("only a server session is taken over")
    try:
        state = ConnectionState.from_bytes(entry.state)
        moved = dataclasses.replace(state, write_sequence=write_sequence)
    except SessionStateError as exc:
        raise TakeoverRefused(f"saved session state: {exc}") from None
    return encode_saved(dataclasses.replace(entry, state=moved.to_bytes()))
