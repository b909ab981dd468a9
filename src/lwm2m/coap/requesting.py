"""The client side of the endpoint: our requests, from sending (NSTART queue) through
Block1/Block2 follow-ups to their responses and notifications (RFC 7252 §5.3, RFC 7959, RFC 7641 §3).
"""

from __future__ import annotations

from typing import Any

from lwm2m.coap.blockwise import (
    strip,
    with_options,
)
from lwm2m.coap.events import (
    NotificationReceived,
    ObservationCancelled,
    RequestFailed,
    RequestTimedOut,
    ResetReceived,
    ResponseReceived,
)
from lwm2m.coap.exchange import EMPTY_ACK, EMPTY_RST, OutgoingRequest, PeerState, empty
from lwm2m.coap.message import Message, encode_parts
from lwm2m.coap.numbers import Code, OptionNumber, Type
from lwm2m.coap.observe import Relation, is_fresh
from lwm2m.coap.option import BlockOption, encode_uint

_CON, _NON = Type.CON, Type.NON
_OBSERVE = OptionNumber.OBSERVE
_BLOCK1 = OptionNumber.BLOCK1
_BLOCK2 = OptionNumber.BLOCK2
_SIZE1 = OptionNumber.SIZE1
_INF = float("inf")


class ClientSide:
    """Mixin of :class:`~lwm2m.coap.endpoint.Endpoint`: it works on the state the endpoint holds."""

    # --- sending a request (API) --------------------------------------------------------------

    def request(self, message: Message, addr: Any, now: float) -> bytes:
        """Send a request (see the module docstring); returns its token."""
        self._now = now
        token = message.token
        if not token:
            token = self._new_token(addr)
        key = (addr, token)
        old = self._requests.get(key)
        if old is not None:
            self._drop_request(old)
        if message.type is not _CON and message.type is not _NON:
            message = Message(_CON, message.code, 0, token, message.options, message.payload)
        elif message.token != token:
            message = Message(
                message.type, message.code, message.mid, token, message.options, message.payload
            )
        req = OutgoingRequest(addr, token, message)
        self._requests[key] = req
        if req.con:
            peer = self._peers.get(addr)
            if peer is None:
                peer = self._peers[addr] = PeerState()
            if peer.inflight >= self.config.nstart:
                if len(peer.queue) >= self.config.max_queued_requests_per_peer:
                    del self._requests[key]
                    req.live = False
                    self._events.append(RequestFailed(addr, token, message, "too many queued requests"))
                    return token
                peer.queue.append(req)
                return token
        self._start(req, now)
        return token

    # --- responses, client side ------------------------------------------------------------------

    def _on_piggybacked(self, msg: Message, addr: Any, now: float) -> None:
        tx = self._tx.get((addr, msg.mid))
        if tx is None or tx.token != msg.token or not isinstance(tx.owner, OutgoingRequest):
            return  # a late or duplicate ACK, or one not matching our token (§5.3.2): ignored
        req = tx.owner
        self._kill_tx(tx)
        req.tx = None
        self._on_response(req, msg, now)

    def _on_empty_ack(self, addr: Any, mid: int, now: float) -> None:
        tx = self._tx.pop((addr, mid), None)
        if tx is None:
            return
        tx.live = False
        owner = tx.owner
        if isinstance(owner, OutgoingRequest):
            # §5.2.2: the response comes separately; the exchange no longer counts for NSTART.
            owner.tx = None
            self._release(owner, now)
            if not owner.observing:
                owner.deadline = now + self.config.response_timeout
                self._push(owner.deadline, owner)
        elif isinstance(owner, Relation) and owner.tx is tx:
            owner.tx = None

    def _on_reset(self, addr: Any, mid: int) -> None:
        key = (addr, mid)
        tx = self._tx.pop(key, None)
        if tx is not None:
            tx.live = False
            owner, token = tx.owner, tx.token
        else:
            entry = self._non_sent.pop(key, None)
            if entry is None:
                return
            owner = entry[1]
            token = owner.token
        if isinstance(owner, Relation):
            # RFC 7641 §3.6: an RST to a notification cancels the observation.
            if self._relations.get((owner.addr, owner.token)) is owner:
                self._remove_relation(owner)
                self._events.append(ObservationCancelled(addr, owner.token, "reset"))
            return
        if isinstance(owner, OutgoingRequest):
            if not owner.live:
                return
            self._drop_request(owner)
            if owner.parent is not None:
                parent = owner.parent
                if parent.live:
                    self._events.append(
                        RequestFailed(addr, parent.token, parent.request, "block fetch reset")
                    )
                return
        self._events.append(ResetReceived(addr, token, mid))

    def _on_separate_response(self, msg: Message, addr: Any, seen: list, now: float) -> None:
        req = self._requests.get((addr, msg.token))
        if req is None or not req.live or (req.tx is None and req.deadline == _INF and not req.observing):
            # §5.3.2 / RFC 7641 §3.6: a response or notification nobody waits for gets RST.
            rst = empty(EMPTY_RST, msg.mid)
            seen[1] = rst
            self._out.append((rst, addr))
            return
        if msg.type is _CON:
            seen[1] = ack = empty(EMPTY_ACK, msg.mid)
            self._out.append((ack, addr))
        if req.tx is not None:
            # A separate response can overtake the (lost) empty ACK: it acknowledges too.
            self._kill_tx(req.tx)
            req.tx = None
        self._on_response(req, msg, now)

    def _on_response(self, req: OutgoingRequest, msg: Message, now: float) -> None:
        if req.observing:
            self._on_notification(req, msg, now)
            return
        code = msg.code
        try:
            if req.b1_sent and code == Code.CONTINUE:
                self._next_block1(req, msg, now)
                return
            req.b1_sent = 0
            if req.observe and code >> 5 == 2 and msg.has_option(_OBSERVE):
                # RFC 7641 §3.1: the registration is accepted; the token stays open.
                self._release(req, now)
                req.observing = True
                req.deadline = _INF
                req.obs_seq = msg.observe or 0
                req.obs_time = now
                b2 = msg.block2
                if b2 is not None and b2.more:
                    self._spawn_fetch(req, msg, None, now)
                else:
                    self._events.append(ResponseReceived(req.addr, req.token, req.request, msg))
                return
            b2 = msg.block2 if code >> 5 == 2 else None
        except ValueError:
            self._fail(req, "malformed Block or Observe option in the response")
            return
        if b2 is not None and (b2.more or req.b2_buf is not None):
            msg = self._on_block2(req, msg, b2, now)  # type: ignore[assignment]
            if msg is None:
                return
        self._finish(req, msg, now)

    def _next_block1(self, req: OutgoingRequest, msg: Message, now: float) -> None:
        b1 = msg.block1
        body = req.request.payload
        nxt = req.b1_offset + req.b1_sent
        if b1 is None or nxt >= len(body):
            self._fail(req, "2.31 Continue that does not fit the Block1 transfer")
            return
        req.b1_offset = nxt
        req.b1_szx = min(req.b1_szx, b1.szx)  # §2.5: follow the server's smaller size
        options, payload = self._block1_part(req)
        self._send(req, options, payload, now)

    def _block1_part(self, req: OutgoingRequest) -> tuple[Any, bytes]:
        body = req.request.payload
        size = 1 << (req.b1_szx + 4)
        off = req.b1_offset
        chunk = body[off : off + size]
        req.b1_sent = len(chunk)
        num = off // size
        extra = [(_BLOCK1, BlockOption(num, off + size < len(body), req.b1_szx).encode())]
        if num == 0:
            extra.append((_SIZE1, encode_uint(len(body))))
        return with_options(strip(req.request.options), *extra), chunk

    def _on_block2(self, req: OutgoingRequest, msg: Message, b2: BlockOption, now: float) -> Message | None:
        """Collect one Block2 block; ask for the next, or return the whole response."""
        etag = msg.option(OptionNumber.ETAG)
        buf = req.b2_buf
        if buf is None:
            if b2.num != 0:
                self._fail(req, "Block2 response does not start at block 0")
                return None
            buf = req.b2_buf = bytearray()
            req.b2_first = msg
            req.b2_etag = etag
        elif b2.num * b2.size != len(buf):
            self._fail(req, "Block2 block out of sequence")
            return None
        elif etag != req.b2_etag:
            self._fail(req, "representation changed during the Block2 transfer")  # §2.4
            return None
        if len(buf) + len(msg.payload) > self.config.max_body_size:
            self._fail(req, "Block2 body larger than max_body_size")
            return None
        if self._block_bytes + len(msg.payload) > self._max_block_bytes:
            self._fail(req, "block-wise memory exhausted (max_block_bytes)")
            return None
        buf += msg.payload
        self._block_bytes += len(msg.payload)
        if b2.more:
            self._send(req, *self._block2_next(req, b2.szx), now)
            return None
        first = req.b2_first or msg
        self._free_block2(req)
        options = tuple(strip(first.options))
        return Message(first.type, first.code, first.mid, first.token, options, bytes(buf))

    def _block2_next(self, req: OutgoingRequest, szx: int) -> tuple[Any, bytes]:
        assert req.b2_buf is not None
        num = len(req.b2_buf) >> (szx + 4)
        base = strip(req.request.options, frozenset((_BLOCK1, _BLOCK2, _SIZE1, OptionNumber.SIZE2, _OBSERVE)))
        options = with_options(base, (_BLOCK2, BlockOption(num, False, szx).encode()))
        # The request body is sent again only where it identifies the resource (FETCH, RFC 8132).
        payload = req.request.payload if req.request.code == Code.FETCH else b""
        return options, payload

    def _spawn_fetch(self, parent: OutgoingRequest, first: Message, seq: int | None, now: float) -> None:
        """Fetch the rest of a Block2 notification or registration response with a new token (§2.6)."""
        token = self._new_token(parent.addr)
        base = Message(_CON, parent.request.code, 0, token, parent.request.options, parent.request.payload)
        child = OutgoingRequest(parent.addr, token, base)
        child.observe = False
        child.parent = parent
        child.parent_seq = seq
        child.b2_buf = bytearray(first.payload)
        self._block_bytes += len(first.payload)
        child.b2_first = first
        child.b2_etag = first.option(OptionNumber.ETAG)
        self._requests[(parent.addr, token)] = child
        b2 = first.block2
        assert b2 is not None
        child.b2_szx = b2.szx
        self._enqueue(child, now)

    def _on_notification(self, req: OutgoingRequest, msg: Message, now: float) -> None:
        code = msg.code
        try:
            seq = msg.observe if code >> 5 == 2 else None
            b2 = msg.block2 if seq is not None else None
        except ValueError:
            return
        if seq is None:
            # RFC 7641 §3.2: an error or a response without Observe ends the observation.
            self._drop_request(req)
            self._events.append(NotificationReceived(req.addr, req.token, msg, None))
            return
        if not is_fresh(req.obs_seq, req.obs_time, seq, now):
            return  # reordered: older than what we already have (§3.4)
        req.obs_seq = seq
        req.obs_time = now
        if b2 is not None and b2.more:
            if req.request.code:
                self._spawn_fetch(req, msg, seq, now)
                return
            # A resumed observation without its registration: nothing to fetch the rest with.
        elif b2 is not None:
            msg = Message(msg.type, code, msg.mid, msg.token, tuple(strip(msg.options)), msg.payload)
        self._events.append(NotificationReceived(req.addr, req.token, msg, seq))

    def _finish(self, req: OutgoingRequest, msg: Message, now: float) -> None:
        self._drop_request(req, now)
        parent = req.parent
        if parent is None:
            self._events.append(ResponseReceived(req.addr, req.token, req.request, msg))
        elif parent.live:
            if req.parent_seq is None:
                self._events.append(ResponseReceived(parent.addr, parent.token, parent.request, msg))
            else:
                self._events.append(NotificationReceived(parent.addr, parent.token, msg, req.parent_seq))

    def _fail(self, req: OutgoingRequest, reason: str) -> None:
        self._drop_request(req)
        target = req.parent if req.parent is not None else req
        if target.live or target is req:
            self._events.append(RequestFailed(req.addr, target.token, target.request, reason))

    def _request_expired(self, req: OutgoingRequest) -> None:
        if req.observing:
            return
        self._drop_request(req)
        if req.parent is None:
            self._events.append(RequestTimedOut(req.addr, req.token, req.request))
        elif req.parent.live:
            parent = req.parent
            self._events.append(
                RequestFailed(req.addr, parent.token, parent.request, "block fetch timed out")
            )

    # --- NSTART queue and the request's life ----------------------------------------------------

    def _enqueue(self, req: OutgoingRequest, now: float) -> None:
        if req.con:
            peer = self._peers.get(req.addr)
            if peer is None:
                peer = self._peers[req.addr] = PeerState()
            if peer.inflight >= self.config.nstart:
                peer.queue.append(req)
                return
        self._start(req, now)

    def _start(self, req: OutgoingRequest, now: float) -> None:
        if req.b2_buf is not None:
            options, payload = self._block2_next(req, req.b2_szx)
        elif len(req.request.payload) > self._block_size:
            req.b1_szx = self._szx
            options, payload = self._block1_part(req)
        else:
            options, payload = req.request.options, req.request.payload
        mid = self._send(req, options, payload, now)
        r = req.request
        req.request = Message(r.type, r.code, mid, r.token, r.options, r.payload)

    def _send(self, req: OutgoingRequest, options: Any, payload: bytes, now: float) -> int:
        mid = self._alloc_mid()
        addr = req.addr
        r = req.request
        data = encode_parts(r.type, r.code, mid, req.token, options, payload)
        if req.con:
            req.tx = self._add_tx(addr, mid, req.token, data, req, now)
            if not req.counted:
                req.counted = True
                peer = self._peers.get(addr)
                if peer is None:
                    peer = self._peers[addr] = PeerState()
                peer.inflight += 1
        else:
            req.deadline = now + self.config.response_timeout
            self._push(req.deadline, req)
            self._remember_non(addr, mid, req, now)
        self._out.append((data, addr))
        return mid

    def _release(self, req: OutgoingRequest, now: float | None = None) -> None:
        """Give back the request's NSTART slot and start queued requests (§4.7)."""
        if not req.counted:
            return
        req.counted = False
        peer = self._peers.get(req.addr)
        if peer is None:
            return
        peer.inflight -= 1
        if now is None:
            now = max(self._now, self._rx_at)
        nstart = self.config.nstart
        while peer.queue and peer.inflight < nstart:
            nxt = peer.queue.popleft()
            if nxt.live:
                self._start(nxt, now)
        if peer.inflight <= 0 and not peer.queue:
            del self._peers[req.addr]

    def _free_block2(self, req: OutgoingRequest) -> None:
        """Give back the bytes of the Block2 body ``req`` was collecting."""
        buf = req.b2_buf
        if buf is not None:
            self._block_bytes -= len(buf)
            req.b2_buf = None
            req.b2_first = None

    def _drop_request(self, req: OutgoingRequest, now: float | None = None) -> None:
        req.live = False
        if req.b2_buf is not None:
            self._free_block2(req)
        key = (req.addr, req.token)
        if self._requests.get(key) is req:
            del self._requests[key]
        if req.tx is not None:
            self._kill_tx(req.tx)
            req.tx = None
        if req.counted:
            self._release(req, now)
        else:
            peer = self._peers.get(req.addr)
            if peer is not None and req in peer.queue:
                peer.queue.remove(req)
                if peer.inflight <= 0 and not peer.queue:
                    del self._peers[req.addr]
