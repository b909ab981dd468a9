"""The server side of the endpoint: answering requests, Block1 reassembly and Block2 serving
(RFC 7959 §2.3, §2.4), and observe relations with their notifications (RFC 7641 §4).
"""

from __future__ import annotations

import logging
from typing import Any

from lwm2m.coap.blockwise import (
    Reassembly,
    Served,
    block1_key,
    block2_options,
    block_slice,
    request_key,
    strip,
    with_options,
)
from lwm2m.coap.events import (
    ObservationCancelled,
    RequestReceived,
)
from lwm2m.coap.exchange import EMPTY_ACK, SeenMessages, empty
from lwm2m.coap.message import Message, encode_parts
from lwm2m.coap.numbers import Code, OptionNumber, Type, code_text
from lwm2m.coap.observe import Relation
from lwm2m.coap.option import BlockOption, decode_uint, encode_uint

_CON, _NON, _ACK = Type.CON, Type.NON, Type.ACK
_OBSERVE = OptionNumber.OBSERVE
_BLOCK1 = OptionNumber.BLOCK1
_BLOCK2 = OptionNumber.BLOCK2
_SIZE1 = OptionNumber.SIZE1
_CONTENT_FORMAT = OptionNumber.CONTENT_FORMAT

log = logging.getLogger(__name__)
# Why the endpoint refused a request, for the codes it answers without a diagnostic payload.
_REASONS = {
    Code.BAD_OPTION: "an unrecognized critical option (RFC 7252 §5.4.1)",
    Code.REQUEST_ENTITY_INCOMPLETE: "a Block1 block out of order or of an unknown transfer (RFC 7959 §2.9.2)",
    Code.REQUEST_ENTITY_TOO_LARGE: "a body larger than the endpoint takes (RFC 7959 §2.9.3)",
    Code.SERVICE_UNAVAILABLE: "no room for another Block1 transfer from this peer",
}


class ServerSide:
    """Mixin of :class:`~lwm2m.coap.endpoint.Endpoint`: it works on the state the endpoint holds."""

    def respond(self, event: RequestReceived, response: Message, now: float) -> None:
        """Answer ``event``; type, message ID and token of ``response`` are filled in here."""
        req = event.message
        addr = event.addr
        code = response.code
        options = response.options
        payload = response.payload
        if (
            event.block1 is not None
            or event.observe is not None
            or event.block2 is not None
            or len(payload) > self._block_size
        ):
            code, options, payload = self._shape_response(event, code, options, payload, now)
        mid = req.mid
        key = (addr, mid)
        seen = self._fresh.pop(key, None)
        unacked = self._unacked
        if seen is not None or (unacked and unacked.pop(key, None) is not None):
            # The common case: piggybacked in the ACK, which is also cached for duplicates (§4.5).
            data = encode_parts(_ACK, code, mid, req.token, options, payload)
            if seen is not None:
                seen.replies[mid] = data
            else:
                self._cache_reply(addr, mid, data)
            self._out.append((data, addr))
            return
        mid = self._alloc_mid()
        if req.type is _CON:
            # §5.2.2: the ACK went out empty already; the response is a CON of its own.
            data = encode_parts(_CON, code, mid, req.token, options, payload)
            self._add_tx(addr, mid, req.token, data, None, now)
        else:
            data = encode_parts(_NON, code, mid, req.token, options, payload)
            self._remember_non(addr, mid, None, now)
        self._out.append((data, addr))

    def _shape_response(
        self, event: RequestReceived, code: int, options: Any, payload: bytes, now: float
    ) -> tuple[int, Any, bytes]:
        """Block1 echo, Observe registration and Block2 slicing of a response."""
        if event.block1 is not None:
            # RFC 7959 §2.3: the final response to a Block1 transfer echoes the last block.
            options = with_options(strip(options, frozenset((_BLOCK1,))), (_BLOCK1, event.block1.encode()))
        if event.observe is not None:
            options = self._observe_on_respond(event, code, options, now)
        b2 = event.block2
        if len(payload) > self._block_size or (b2 is not None and (b2.num or b2.szx < self._szx)):
            sliced = self._block2_respond(event, code, options, payload, now)
            if sliced is None:
                return Code.BAD_OPTION, (), b"block number past the end"
            options, payload = sliced
        return code, options, payload

    def notify(
        self, relation: tuple[Any, bytes], message: Message, now: float, *, confirmable: bool = False
    ) -> bool:
        """Send a notification on ``relation``; False if that observation has ended."""
        rel = self._relations.get(relation)
        if rel is None:
            return False
        addr = rel.addr
        code = message.code
        options: Any = strip(message.options, frozenset((_OBSERVE,)))
        payload = message.payload
        final = code >> 5 != 2
        if final:
            # RFC 7641 §3.2, §4.2: an error ends the observation; it carries no Observe option.
            self._remove_relation(rel)
        else:
            options.append((_OBSERVE, encode_uint(rel.next_seq())))
            options.sort(key=lambda o: o[0])
        if len(payload) > self._block_size:
            # RFC 7959 §2.6: the notification carries the first block; the client GETs the rest.
            total = len(payload)
            base = strip(options, frozenset((_OBSERVE, _BLOCK2, OptionNumber.SIZE2)))
            self._cache_served((addr, *rel.cache_key), code, base, payload, now)
            options = block2_options(options, 0, True, self._szx, total)
            payload = payload[: self._block_size]
        else:
            options = tuple(options)
        if message.type is _CON or now - rel.last_con >= self.config.notification_con_interval:
            confirmable = True
        mid = self._alloc_mid()
        if confirmable:
            rel.last_con = now
            data = encode_parts(_CON, code, mid, rel.token, options, payload)
            old = rel.tx
            tx = self._add_tx(addr, mid, rel.token, data, None if final else rel, now)
            if old is not None and old.live:
                # RFC 7641 §4.5.2: the new state replaces the one still being retransmitted,
                # keeping its retransmission counter and timeout.
                self._kill_tx(old)
                self._remember_non(addr, old.mid, rel, now)  # an RST to it still cancels (§3.6)
                tx.retries = old.retries
                tx.timeout = old.timeout
                tx.deadline = now + old.timeout
                self._push(tx.deadline, tx)
            if not final:
                rel.tx = tx
        else:
            data = encode_parts(_NON, code, mid, rel.token, options, payload)
            self._remember_non(addr, mid, None if final else rel, now)
        self._out.append((data, addr))
        return True

    def _on_request(self, msg: Message, addr: Any, peer: SeenMessages, seen: list, now: float) -> None:
        """A request off the plain path, recorded in ``peer``; ``seen[1]`` gets the reply to replay
        for duplicates."""
        known = self._critical_known
        special = False
        for number, _ in msg.options:
            if number & 1 and number not in known:
                # §5.4.1: an unrecognized critical option in a request is answered with 4.02.
                self._answer(msg, addr, seen, Code.BAD_OPTION, (), b"", now)
                return
            if number == 6 or number == 23 or number == 27:
                special = True
        observe = block1 = block2 = None
        if special:
            try:
                raw = msg.option(_OBSERVE)
                if raw is not None and msg.code in (Code.GET, Code.FETCH):
                    observe = decode_uint(raw)
                    if observe > 0xFFFFFF:
                        raise ValueError("observe value too large")
                block1 = msg.block1
                block2 = msg.block2
            except ValueError:
                self._answer(msg, addr, seen, Code.BAD_REQUEST, (), b"bad Block or Observe option", now)
                return
            if observe == 1:
                rel = self._relations.get((addr, msg.token))
                if rel is not None:
                    # RFC 7641 §3.6: a GET with Observe=1 deregisters, then is served as usual.
                    self._remove_relation(rel)
                    self._events.append(ObservationCancelled(addr, msg.token, "deregistered"))
            if block1 is not None:
                msg = self._on_block1(msg, addr, block1, seen, now)  # type: ignore[assignment]
                if msg is None:
                    return
            if block2 is not None and block2.num and self._serve_block2(msg, addr, block2, seen, now):
                return
        if msg.type is _CON:
            fresh = self._fresh
            if now != self._fresh_at or len(fresh) >= self._fresh_room:
                fresh = self._make_room(now)
            fresh[(addr, msg.mid)] = peer
        self._events.append(RequestReceived(addr, msg, observe, block1, block2))

    def _answer(
        self, msg: Message, addr: Any, seen: list, code: int, options: Any, payload: bytes, now: float
    ) -> None:
        """A response made by the endpoint itself: piggybacked for CON, a NON for a NON."""
        if code >= 128:  # a refusal (4.xx, 5.xx): not on the request path of a good request
            self._log_refusal(msg, addr, code, payload, now)
        if msg.type is _CON:
            data = encode_parts(_ACK, code, msg.mid, msg.token, tuple(options), payload)
            seen[1] = data
        else:
            data = encode_parts(_NON, code, self._alloc_mid(), msg.token, tuple(options), payload)
        self._out.append((data, addr))

    def _log_refusal(self, msg: Message, addr: Any, code: int, payload: bytes, now: float) -> None:
        """One line per refusal, within the endpoint's budget: a sender that floods the endpoint
        with bad requests gets a count, not a line per datagram."""
        budget = self._refusal_log
        if not budget.log(
            _category(code),
            now,
            logging.INFO,
            "%s %s refused from %s: %s: %s",
            Code(msg.code).name if 1 <= msg.code <= 7 else code_text(msg.code),
            msg.uri_path_str or "/",
            _where(addr),
            code_text(code),
            payload.decode("utf-8", "replace") if payload else _REASONS.get(code, ""),  # type: ignore[call-overload]
        ):
            due = budget.next_due()
            if due is not None and due < self._sweep_at:
                self._sweep_at = due  # the count is told from handle_timer once the window ends

    def _send_empty_ack(self, key: tuple[Any, int]) -> None:
        data = empty(EMPTY_ACK, key[1])
        self._cache_reply(key[0], key[1], data)
        self._out.append((data, key[0]))

    # --- Block1, server side (RFC 7959 §2.3) -----------------------------------------------------

    def _on_block1(self, msg: Message, addr: Any, b1: BlockOption, seen: list, now: float) -> Message | None:
        limit = self.config.max_body_size
        rkey = (addr, *block1_key(msg))
        payload = msg.payload
        fmt = msg.option(_CONTENT_FORMAT)
        szx = min(b1.szx, self._szx)  # the server may ask for smaller blocks (§2.5)
        if b1.num == 0:
            self._drop_reassembly(rkey)
            size1 = msg.size1
            if (size1 is not None and size1 > limit) or len(payload) > limit:
                self._too_large(msg, addr, seen, now)
                return None
            if not b1.more:
                return self._reassembled(msg, payload, fmt)
            if len(payload) != b1.size:
                self._answer(msg, addr, seen, Code.BAD_REQUEST, (), b"block size mismatch", now)
                return None
            if not self._reassembly_room(addr) or self._block_bytes + max(len(payload), size1 or 0) > (
                self._max_block_bytes
            ):
                # Too many transfers, or the bytes of all of them at the budget: refused for now
                # (RFC 7252 §5.9.3.4); transfers in progress keep their room.
                busy = b"too many block-wise transfers"
                self._answer(msg, addr, seen, Code.SERVICE_UNAVAILABLE, (), busy, now)
                return None
            expires = now + self._reasm_lifetime
            self._reassembly[rkey] = Reassembly(payload, expires, fmt)
            self._block_bytes += len(payload)
            self._reasm_per_peer[addr] = self._reasm_per_peer.get(addr, 0) + 1
            if expires < self._sweep_at:
                self._sweep_at = expires
            self._continue(msg, addr, seen, BlockOption(0, True, szx), now)
            return None
        r = self._reassembly.get(rkey)
        if r is None or r.expires <= now or b1.num * b1.size != r.size:
            # §2.9.2: a block out of sequence, or a transfer we do not (any longer) know.
            self._drop_reassembly(rkey)
            self._answer(msg, addr, seen, Code.REQUEST_ENTITY_INCOMPLETE, (), b"", now)
            return None
        if fmt is not None:
            if r.fmt is None:
                r.fmt = fmt  # the format may first appear on a later block
            elif decode_uint(fmt) != decode_uint(r.fmt):
                self._drop_reassembly(rkey)
                self._answer(
                    msg, addr, seen, Code.REQUEST_ENTITY_INCOMPLETE, (), b"Content-Format changed", now
                )
                return None
        if b1.more and len(payload) != b1.size:
            self._drop_reassembly(rkey)
            self._answer(msg, addr, seen, Code.BAD_REQUEST, (), b"block size mismatch", now)
            return None
        if r.size + len(payload) > limit:
            self._drop_reassembly(rkey)
            self._too_large(msg, addr, seen, now)
            return None
        if self._block_bytes + len(payload) > self._max_block_bytes:
            # Over the budget of all block-wise bodies: this transfer ends (the client may try
            # again later); the others keep what they have.
            self._drop_reassembly(rkey)
            self._answer(msg, addr, seen, Code.SERVICE_UNAVAILABLE, (), b"block-wise memory exhausted", now)
            return None
        r.add(payload)
        self._block_bytes += len(payload)
        if b1.more:
            # Touched: move to the end so that expiry order stays insertion order.
            r.expires = now + self._reasm_lifetime
            self._reassembly.move_to_end(rkey)
            self._continue(msg, addr, seen, BlockOption(b1.num, True, szx), now)
            return None
        body = r.body()
        fmt = r.fmt
        self._drop_reassembly(rkey)
        return self._reassembled(msg, body, fmt)

    @staticmethod
    def _reassembled(msg: Message, body: bytes, fmt: bytes | None) -> Message:
        options = tuple(o for o in msg.options if o[0] != _BLOCK1 and o[0] != _SIZE1)
        if fmt is not None and not any(o[0] == _CONTENT_FORMAT for o in options):
            options = with_options(options, (_CONTENT_FORMAT, fmt))
        return Message(msg.type, msg.code, msg.mid, msg.token, options, body)

    def _continue(self, msg: Message, addr: Any, seen: list, b1: BlockOption, now: float) -> None:
        self._answer(msg, addr, seen, Code.CONTINUE, ((_BLOCK1, b1.encode()),), b"", now)

    def _too_large(self, msg: Message, addr: Any, seen: list, now: float) -> None:
        # §2.9.3: 4.13 with Size1 telling the largest body we take.
        size1 = ((_SIZE1, encode_uint(self.config.max_body_size)),)
        self._answer(msg, addr, seen, Code.REQUEST_ENTITY_TOO_LARGE, size1, b"", now)

    def _reassembly_room(self, addr: Any) -> bool:
        cfg = self.config
        per_peer = self._reasm_per_peer.get(addr, 0)
        if per_peer >= cfg.max_reassembly_per_peer:
            return False
        if per_peer == 0 and len(self._reasm_per_peer) >= cfg.max_peers:
            return False
        if len(self._reassembly) >= cfg.max_reassembly_buffers:
            self._drop_reassembly(next(iter(self._reassembly)))
        return True

    def _drop_reassembly(self, rkey: tuple) -> None:
        r = self._reassembly.pop(rkey, None)
        if r is not None:
            self._block_bytes -= r.size
            addr = rkey[0]
            n = self._reasm_per_peer[addr] - 1
            if n:
                self._reasm_per_peer[addr] = n
            else:
                del self._reasm_per_peer[addr]

    # --- Block2, server side (RFC 7959 §2.4) -----------------------------------------------------

    def _serve_block2(self, msg: Message, addr: Any, b2: BlockOption, seen: list, now: float) -> bool:
        """Answer a later Block2 request from the kept representation; False if there is none."""
        served = self._served.get((addr, *request_key(msg)))
        if served is None or served.expires <= now:
            return False
        szx = min(b2.szx, self._szx)
        num = b2.num << (b2.szx - szx)
        part = block_slice(served.payload, num, szx)
        if part is None:
            self._answer(msg, addr, seen, Code.BAD_OPTION, (), b"block number past the end", now)
            return True
        chunk, more = part
        options = block2_options(served.base, num, more, szx, len(served.payload))
        self._answer(msg, addr, seen, served.code, options, chunk, now)
        return True

    def _block2_respond(
        self, event: RequestReceived, code: int, options: Any, payload: bytes, now: float
    ) -> tuple[Any, bytes] | None:
        b2 = event.block2
        if b2 is None:
            szx, num = self._szx, 0
        else:
            szx = min(b2.szx, self._szx)
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
            self._cache_served((event.addr, *request_key(event.message)), code, kept, payload, now)
        return block2_options(base, num, more, szx, len(payload)), chunk

    def _cache_served(self, key: tuple, code: int, base: list, payload: bytes, now: float) -> None:
        served = self._served
        old = served.pop(key, None)
        if old is not None:
            self._block_bytes -= len(old.payload)
        elif len(served) >= self.config.max_block_cache:
            self._block_bytes -= len(served.popitem(last=False)[1].payload)
        size = len(payload)
        budget = self._max_block_bytes
        while served and self._block_bytes + size > budget:
            # Over the budget: the oldest bodies go first (a later block of theirs is asked
            # of the application again).
            self._block_bytes -= len(served.popitem(last=False)[1].payload)
        if self._block_bytes + size > budget:
            return  # not kept: later blocks are made from the application's answer again
        expires = now + self._lifetime
        served[key] = Served(code, base, payload, expires)
        self._block_bytes += size
        if expires < self._sweep_at:
            self._sweep_at = expires

    # --- observe, server side (RFC 7641 §4) ------------------------------------------------------

    def _observe_on_respond(self, event: RequestReceived, code: int, options: Any, now: float) -> Any:
        addr, token = event.addr, event.message.token
        key = (addr, token)
        rest = strip(options, frozenset((_OBSERVE,)))
        wants = len(rest) != len(options)
        rel = self._relations.get(key)
        if event.observe == 0 and wants and code >> 5 == 2:
            if rel is None:
                if not self._observation_room(addr):
                    return tuple(rest)  # not registered: the client sees no Observe option (§4.1)
                rel = Relation(addr, token, request_key(event.message), now)
                self._relations[key] = rel
                self._obs_per_peer[addr] = self._obs_per_peer.get(addr, 0) + 1
            return with_options(rest, (_OBSERVE, encode_uint(rel.next_seq())))
        if event.observe == 0 and rel is not None:
            self._remove_relation(rel)  # a refused re-registration ends the old one (§4.1)
        return tuple(rest)

    def _observation_room(self, addr: Any) -> bool:
        cfg = self.config
        per_peer = self._obs_per_peer.get(addr, 0)
        if per_peer >= cfg.max_observations_per_peer:
            return False
        if per_peer == 0 and len(self._obs_per_peer) >= cfg.max_peers:
            return False
        if len(self._relations) >= cfg.max_observations:
            oldest = next(iter(self._relations.values()))
            self._remove_relation(oldest)
            self._events.append(ObservationCancelled(oldest.addr, oldest.token, "evicted"))
        return True

    def _remove_relation(self, rel: Relation) -> None:
        key = (rel.addr, rel.token)
        if self._relations.get(key) is not rel:
            return
        del self._relations[key]
        n = self._obs_per_peer[rel.addr] - 1
        if n:
            self._obs_per_peer[rel.addr] = n
        else:
            del self._obs_per_peer[rel.addr]
        if rel.tx is not None and rel.tx.live:
            self._kill_tx(rel.tx)
        rel.tx = None


_CATEGORIES: dict[int, str] = {}


def _category(code: int) -> str:
    """The log budget's category of a refusal: one per response code."""
    category = _CATEGORIES.get(code)
    if category is None:
        category = _CATEGORIES[code] = f"CoAP requests refused with {code_text(code)}"
    return category


def _where(addr: Any) -> str:
    try:
        host, port = addr[0], addr[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    except (TypeError, IndexError, KeyError):  # any hashable names a peer in the sans-IO API
        return repr(addr)
