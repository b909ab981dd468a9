"""RFC 7959 block-wise helpers: request identity, slicing a body, reassembly state."""

from __future__ import annotations

from lwm2m.coap.message import Message, Options
from lwm2m.coap.numbers import OptionNumber
from lwm2m.coap.option import BlockOption, encode_uint

# Options that do not change which resource and representation a request is about:
# two requests differing only in these belong to one block-wise transfer (RFC 7959 §2.4, §2.5).
_NOT_IDENTITY = frozenset(
    (
        OptionNumber.BLOCK1,
        OptionNumber.BLOCK2,
        OptionNumber.SIZE1,
        OptionNumber.SIZE2,
        OptionNumber.OBSERVE,
        OptionNumber.NO_RESPONSE,
    )
)
_BLOCK_AND_SIZE = frozenset(
    (OptionNumber.BLOCK1, OptionNumber.BLOCK2, OptionNumber.SIZE1, OptionNumber.SIZE2)
)


# A Block1 transfer's blocks are matched without Content-Format too: some clients (Wakaama's
# block-wise Updates) put it on a later block only; the format is checked on its own.
_NOT_BLOCK1_IDENTITY = _NOT_IDENTITY | {OptionNumber.CONTENT_FORMAT}


def request_key(message: Message) -> tuple:
    """The identity of a request for matching its blocks: method and identifying options."""
    return (int(message.code), tuple(o for o in message.options if o[0] not in _NOT_IDENTITY))


def block1_key(message: Message) -> tuple:
    """``request_key`` for matching the blocks of a Block1 transfer: Content-Format left out."""
    return (int(message.code), tuple(o for o in message.options if o[0] not in _NOT_BLOCK1_IDENTITY))


def strip(options: Options, numbers: frozenset[int] = _BLOCK_AND_SIZE) -> list[tuple[int, bytes]]:
    return [o for o in options if o[0] not in numbers]


def with_options(options: Options | list[tuple[int, bytes]], *extra: tuple[int, bytes]) -> Options:
    """``options`` plus ``extra``, in option-number order (the sort is stable for repeats)."""
    out = list(options)
    out += extra
    out.sort(key=lambda o: o[0])
    return tuple(out)


def block_slice(payload: bytes, num: int, szx: int) -> tuple[bytes, bool] | None:
    """Block ``num`` of ``payload`` at size exponent ``szx`` and whether more follow; None if past the end."""
    size = 1 << (szx + 4)
    start = num * size
    if start >= len(payload) and not (start == 0 and not payload):
        return None
    end = start + size
    return payload[start:end], end < len(payload)


def block2_options(
    base: Options | list[tuple[int, bytes]], num: int, more: bool, szx: int, total: int
) -> Options:
    """Response options for one Block2 block; Size2 on the first block tells the whole size (§4)."""
    extra = [(OptionNumber.BLOCK2, BlockOption(num, more, szx).encode())]
    if num == 0:
        extra.append((OptionNumber.SIZE2, encode_uint(total)))
    return with_options(base, *extra)


class Reassembly:
    """A Block1 transfer being received (server side).

    The blocks are kept as they came and joined at the end: a buffer grown block by block
    would be copied at every growth and leave the C heap fragmented (measured: RSS at about
    twice the bytes held during a flood of transfers). ``fmt`` is the Content-Format option
    value of the first block that carried one.
    """

    __slots__ = ("expires", "fmt", "parts", "size")

    def __init__(self, first: bytes, expires: float, fmt: bytes | None = None) -> None:
        self.parts = [bytes(first)]
        self.size = len(first)
        self.expires = expires
        self.fmt = fmt

    def add(self, block: bytes) -> None:
        self.parts.append(bytes(block))
        self.size += len(block)

    def body(self) -> bytes:
        return b"".join(self.parts)


class Served:
    """A large representation kept so that later Block2 requests get consistent blocks (§2.4)."""

    __slots__ = ("base", "code", "expires", "payload")

    def __init__(self, code: int, base: list[tuple[int, bytes]], payload: bytes, expires: float) -> None:
        self.code = code
        self.base = base  # the response options without Block2/Size2/Observe
        self.payload = payload
        self.expires = expires
