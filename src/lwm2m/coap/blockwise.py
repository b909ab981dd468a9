"""RFC 7959 block-wise transfers: request identity, slicing a body, and the bodies held (Block1
reassembly, Block2 bodies served and fetched) within one byte budget."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

from lwm2m.coap.message import Message, Options
from lwm2m.coap.numbers import Code, OptionNumber
from lwm2m.coap.option import BlockOption, decode_uint, encode_uint

_INF = float("inf")
_BLOCK1 = OptionNumber.BLOCK1
_BLOCK2 = OptionNumber.BLOCK2
_SIZE1 = OptionNumber.SIZE1
_OBSERVE = OptionNumber.OBSERVE
_CONTENT_FORMAT = OptionNumber.CONTENT_FORMAT

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


def request_key(message: Message) -> tuple[Any, ...]:
    """The identity of a request for matching its blocks: method and identifying options."""
    return (int(message.code), tuple(o for o in message.options if o[0] not in _NOT_IDENTITY))


def block1_key(message: Message) -> tuple[Any, ...]:
    """``request_key`` for matching the blocks of a Block1 transfer: Content-Format left out."""
    return (int(message.code), tuple(o for o in message.options if o[0] not in _NOT_BLOCK1_IDENTITY))


def strip(
    options: Iterable[tuple[int, bytes]], numbers: frozenset[int] = _BLOCK_AND_SIZE
) -> list[tuple[int, bytes]]:
    return [o for o in options if o[0] not in numbers]


def with_options(options: Options | list[tuple[int, bytes]], *extra: tuple[int, bytes]) -> Options:
    """``options`` plus ``extra``, in option-number order (the sort is stable for repeats)."""
    out = list(options)
    out += extra
    out.sort(key=lambda o: o[0])
    return tuple(out)


# What a block-wise message carries beside its block (RFC 7252 §3, RFC 7959 §2): the 4-byte
# header, a token of up to 8 bytes, the payload marker, and the options of a response or a
# notification (Block2 and Size2, Content-Format, ETag, Observe, Max-Age) with room to spare.
BLOCK_MESSAGE_RESERVE = 64


def szx_within(max_message: int, szx: int) -> int:
    """The largest size exponent up to ``szx`` whose block, with :data:`BLOCK_MESSAGE_RESERVE`
    around it, fits in a message of ``max_message`` bytes (e.g. what one DTLS record may carry
    to the peer, RFC 8449 §4); 0 (16-byte blocks) when none does."""
    while szx > 0 and (1 << (szx + 4)) + BLOCK_MESSAGE_RESERVE > max_message:
        szx -= 1
    return szx


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


# An answer the endpoint makes itself to a block of a request: (code, options, payload).
Answer = tuple[int, Options, bytes]


class BlockTransfers:
    """Every block-wise body an endpoint holds, against one byte budget (``max_bytes``).

    Server side: Block1 transfers being reassembled (RFC 7959 §2.3), keyed by peer and
    request identity, each kept ``reassembly_lifetime`` after its latest block; large
    representations served block by block (§2.4), kept ``served_lifetime``. Client side:
    the Block2 bodies our requests are collecting (``reserve``/``release``).

    Over the budget a new Block1 transfer is refused with 5.03, a block that would pass it
    ends its transfer with 5.03 (transfers in progress keep their bytes rather than being
    evicted by newcomers), and the oldest served bodies give way to a new one.
    """

    def __init__(
        self,
        *,
        szx: int = 6,
        max_body_size: int = 1 << 20,
        max_bytes: int = 32 << 20,
        reassembly_lifetime: float = 247.0,
        served_lifetime: float = 247.0,
        max_reassembly_buffers: int = 1_000,
        max_reassembly_per_peer: int = 4,
        max_peers: int = 10_000,
        max_served: int = 1_000,
    ) -> None:
        self.szx = szx
        self.block_size = 1 << (szx + 4)
        self.max_body_size = max_body_size
        self.max_bytes = max_bytes
        self._reassembly_lifetime = reassembly_lifetime
        self._served_lifetime = served_lifetime
        self._max_reassembly = max_reassembly_buffers
        self._max_reassembly_per_peer = max_reassembly_per_peer
        self._max_peers = max_peers
        self._max_served = max_served
        self.bytes = 0  # of every body held
        self.reassembly: OrderedDict[tuple[Any, ...], Reassembly] = OrderedDict()
        self._per_peer: dict[Any, int] = {}
        self.served: OrderedDict[tuple[Any, ...], Served] = OrderedDict()

    # --- Block1, server side (RFC 7959 §2.3) -----------------------------------------------------

    def receive_block1(self, msg: Message, addr: Any, b1: BlockOption, now: float) -> Message | Answer:
        """Take one Block1 block of ``msg``: the request with its whole body once the last block
        is in, else the answer to send (2.31 Continue, or the error that ends the transfer)."""
        limit = self.max_body_size
        rkey = (addr, *block1_key(msg))
        payload = msg.payload
        fmt = msg.option(_CONTENT_FORMAT)
        szx = min(b1.szx, self.szx)  # the server may ask for smaller blocks (§2.5)
        if b1.num == 0:
            self.drop_reassembly(rkey)
            size1 = msg.size1
            if (size1 is not None and size1 > limit) or len(payload) > limit:
                return self._too_large()
            if not b1.more:
                return _reassembled(msg, payload, fmt)
            if len(payload) != b1.size:
                return Code.BAD_REQUEST, (), b"block size mismatch"
            if not self._reassembly_room(addr) or self.bytes + max(len(payload), size1 or 0) > self.max_bytes:
                # Too many transfers, or the bytes of all of them at the budget: refused for now
                # (RFC 7252 §5.9.3.4); transfers in progress keep their room.
                return Code.SERVICE_UNAVAILABLE, (), b"too many block-wise transfers"
            self.reassembly[rkey] = Reassembly(payload, now + self._reassembly_lifetime, fmt)
            self.bytes += len(payload)
            self._per_peer[addr] = self._per_peer.get(addr, 0) + 1
            return _continue(BlockOption(0, True, szx))
        r = self.reassembly.get(rkey)
        if r is None or r.expires <= now or b1.num * b1.size != r.size:
            # §2.9.2: a block out of sequence, or a transfer we do not (any longer) know.
            self.drop_reassembly(rkey)
            return Code.REQUEST_ENTITY_INCOMPLETE, (), b""
        if fmt is not None:
            if r.fmt is None:
                r.fmt = fmt  # the format may first appear on a later block
            elif decode_uint(fmt) != decode_uint(r.fmt):
                self.drop_reassembly(rkey)
                return Code.REQUEST_ENTITY_INCOMPLETE, (), b"Content-Format changed"
        if b1.more and len(payload) != b1.size:
            self.drop_reassembly(rkey)
            return Code.BAD_REQUEST, (), b"block size mismatch"
        if r.size + len(payload) > limit:
            self.drop_reassembly(rkey)
            return self._too_large()
        if self.bytes + len(payload) > self.max_bytes:
            # Over the budget of all block-wise bodies: this transfer ends (the client may try
            # again later); the others keep what they have.
            self.drop_reassembly(rkey)
            return Code.SERVICE_UNAVAILABLE, (), b"block-wise memory exhausted"
        r.add(payload)
        self.bytes += len(payload)
        if b1.more:
            # Touched: move to the end so that expiry order stays insertion order.
            r.expires = now + self._reassembly_lifetime
            self.reassembly.move_to_end(rkey)
            return _continue(BlockOption(b1.num, True, szx))
        body = r.body()
        fmt = r.fmt
        self.drop_reassembly(rkey)
        return _reassembled(msg, body, fmt)

    def _too_large(self) -> Answer:
        # §2.9.3: 4.13 with Size1 telling the largest body we take.
        return Code.REQUEST_ENTITY_TOO_LARGE, ((_SIZE1, encode_uint(self.max_body_size)),), b""

    def _reassembly_room(self, addr: Any) -> bool:
        per_peer = self._per_peer.get(addr, 0)
        if per_peer >= self._max_reassembly_per_peer:
            return False
        if per_peer == 0 and len(self._per_peer) >= self._max_peers:
            return False
        if len(self.reassembly) >= self._max_reassembly:
            self.drop_reassembly(next(iter(self.reassembly)))
        return True

    def drop_reassembly(self, rkey: tuple[Any, ...]) -> None:
        r = self.reassembly.pop(rkey, None)
        if r is not None:
            self.bytes -= r.size
            addr = rkey[0]
            n = self._per_peer[addr] - 1
            if n:
                self._per_peer[addr] = n
            else:
                del self._per_peer[addr]

    # --- Block2, server side (RFC 7959 §2.4) -----------------------------------------------------

    def serve_block2(
        self, msg: Message, addr: Any, b2: BlockOption, now: float, ceiling: int | None = None
    ) -> Answer | None:
        """The answer to a later Block2 request from the kept representation; None if none is kept.
        ``ceiling``: the peer's largest size exponent, if smaller than ours (see :func:`szx_within`)."""
        served = self.served.get((addr, *request_key(msg)))
        if served is None or served.expires <= now:
            return None
        szx = min(b2.szx, self.szx if ceiling is None else ceiling)
        num = b2.num << (b2.szx - szx)
        part = block_slice(served.payload, num, szx)
        if part is None:
            return Code.BAD_OPTION, (), b"block number past the end"
        chunk, more = part
        return served.code, block2_options(served.base, num, more, szx, len(served.payload)), chunk

    def slice_response(
        self,
        addr: Any,
        request: Message,
        b2: BlockOption | None,
        code: int,
        options: Options | list[tuple[int, bytes]],
        payload: bytes,
        now: float,
        ceiling: int | None = None,
    ) -> tuple[Options | list[tuple[int, bytes]], bytes] | None:
        """The block of a response the request asked for (block 0 unless ``b2`` says otherwise),
        the whole body kept for the later blocks; None if the block is past the end.
        ``ceiling``: the peer's largest size exponent, if smaller than ours."""
        top = self.szx if ceiling is None else ceiling
        if b2 is None:
            szx, num = top, 0
        else:
            szx = min(b2.szx, top)
            num = b2.num << (b2.szx - szx)
        if num == 0 and len(payload) <= 1 << (szx + 4):
            return options, payload
        part = block_slice(payload, num, szx)
        if part is None:
            return None
        chunk, more = part
        base = strip(options, frozenset((_BLOCK2, OptionNumber.SIZE2)))
        if more or num:
            kept = [o for o in base if o[0] != _OBSERVE]
            self.keep_served((addr, *request_key(request)), code, kept, payload, now)
        return block2_options(base, num, more, szx, len(payload)), chunk

    def keep_served(
        self, key: tuple[Any, ...], code: int, base: list[tuple[int, bytes]], payload: bytes, now: float
    ) -> None:
        """Keep a representation for its later blocks (not kept when over the budget alone)."""
        served = self.served
        old = served.pop(key, None)
        if old is not None:
            self.bytes -= len(old.payload)
        elif len(served) >= self._max_served:
            self.bytes -= len(served.popitem(last=False)[1].payload)
        size = len(payload)
        budget = self.max_bytes
        while served and self.bytes + size > budget:
            # Over the budget: the oldest bodies go first (a later block of theirs is asked
            # of the application again).
            self.bytes -= len(served.popitem(last=False)[1].payload)
        if self.bytes + size > budget:
            return  # not kept: later blocks are made from the application's answer again
        served[key] = Served(code, base, payload, now + self._served_lifetime)
        self.bytes += size

    # --- Block2 bodies we fetch (client side) ---------------------------------------------------

    def reserve(self, size: int) -> bool:
        """Count ``size`` more bytes of a body being fetched; False (nothing counted) over the budget."""
        if self.bytes + size > self.max_bytes:
            return False
        self.bytes += size
        return True

    def hold(self, size: int) -> None:
        """Count ``size`` bytes already in hand (a first block received), whatever the budget."""
        self.bytes += size

    def release(self, size: int) -> None:
        self.bytes -= size

    # --- expiry ------------------------------------------------------------------------------------

    def expire(self, now: float) -> None:
        """Forget transfers and served bodies whose time is over."""
        reassembly = self.reassembly
        while reassembly:
            rkey = next(iter(reassembly))
            if reassembly[rkey].expires > now:
                break
            self.drop_reassembly(rkey)
        served = self.served
        while served:
            key, entry = served.popitem(last=False)
            if entry.expires > now:
                served[key] = entry
                served.move_to_end(key, last=False)
                break
            self.bytes -= len(entry.payload)

    def next_expiry(self) -> float:
        """When ``expire`` next has something to forget (inf: nothing held)."""
        at = _INF
        if self.reassembly:
            at = next(iter(self.reassembly.values())).expires
        if self.served:
            at = min(at, next(iter(self.served.values())).expires)
        return at


def _reassembled(msg: Message, body: bytes, fmt: bytes | None) -> Message:
    options = tuple(o for o in msg.options if o[0] != _BLOCK1 and o[0] != _SIZE1)
    if fmt is not None and not any(o[0] == _CONTENT_FORMAT for o in options):
        options = with_options(options, (_CONTENT_FORMAT, fmt))
    return Message(msg.type, msg.code, msg.mid, msg.token, options, body)


def _continue(b1: BlockOption) -> Answer:
    return Code.CONTINUE, ((_BLOCK1, b1.encode()),), b""
