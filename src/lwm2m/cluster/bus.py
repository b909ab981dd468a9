"""The request bus between nodes, on Redis Streams (DESIGN.md, "Where its users outgrow one
machine"): a node asks the owner of a device to do something and gets its answer, or a
timeout; never a fire-and-forget message.

Requests: one stream per node, ``lwm2m:bus:{node}``, read by that node's consumer group
``node`` with XREADGROUP and acknowledged (XACK) once the answer is on its way. Each entry
carries the request id, the sender's node id, a deadline (seconds on the sender's clock) and
the payload, in one field (``m``: a line of the first three and the payload's kind, then the
payload), since the parsing of every further field of each entry costs both ends CPU on the
path of every routed request. A node restarted under the same id first reclaims (XAUTOCLAIM)
what its previous incarnation read and never acknowledged, handles it, then reads new
requests. A request whose deadline has passed when it is taken is acknowledged without being
handled: its caller has given up already. Delivery is at least once: a node that dies after
answering and before acknowledging handles that request again after its restart.

Replies: one reply stream per sending node, ``lwm2m:reply:{node}``, which one task of the
sender reads with XREAD and routes to the waiting caller by request id (the field ``m`` again:
a line of the request id, the answering node, ``1`` or ``0`` for an answer or an error and the
payload's kind or the error's name, then the payload or the error's text). One reply key per
request would need one blocking read (one connection) per waiting request; the per-node
stream needs one, however many requests are in flight. Replies nobody waits for any more
(after a timeout) are dropped on arrival.

Bounded: both streams are trimmed to about ``maxlen`` entries (XADD MAXLEN ~), and each
expires ``stream_ttl`` seconds after its last entry (the XADD and the PEXPIRE are one script:
one command, one answer); a running node also refreshes its request stream's TTL while it
waits for requests. So a node that is gone for good (a generated id is new at every start)
leaves nothing behind. Payloads are bytes or a dict that encodes as JSON.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeAlias

from redis.exceptions import RedisError, ResponseError
from redis.typing import EncodableT

from lwm2m.cluster.encoding import (
    Clock,
    Payload,
    check_node_id,
    decode_payload,
    encode_payload,
    honour_cancellation,
    newest_id,
    stream_entries,
    text,
)
from lwm2m.errors import BusClosed, BusTimeout, ClusterPayloadError, ConfigError, RemoteHandlerError
from lwm2m.storage.redisconn import RedisClient

log = logging.getLogger(__name__)

Handler: TypeAlias = Callable[[Payload], Awaitable[Payload]]
"""The owner side: takes a request's payload, answers the reply's. What it raises goes back
to the caller as :class:`~lwm2m.errors.RemoteHandlerError`."""

GROUP = "node"
FIELD = b"m"

# KEYS[1] the stream; ARGV maxlen, TTL in ms, the entry's one field value. Answers the entry id.
_APPEND = """
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'm', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return id
"""


def _message(head: str, data: bytes) -> bytes:
    return head.encode() + b"\n" + data


def _parts(fields: dict[bytes, bytes], count: int) -> tuple[list[str], bytes]:
    """The head's ``count`` words and the payload of an entry's one field; ValueError for an
    entry that is not one."""
    head, newline, data = fields[FIELD].partition(b"\n")
    words = head.decode().split(" ")
    if not newline or len(words) != count:
        raise ValueError("not a bus entry")
    return words, data


def request_stream(node_id: str) -> str:
    return f"lwm2m:bus:{{{node_id}}}"


def reply_stream(node_id: str) -> str:
    return f"lwm2m:reply:{{{node_id}}}"


@dataclass(frozen=True)
class BusConfig:
    """``maxlen``: about how many entries a request or reply stream keeps. ``stream_ttl``:
    seconds a stream outlives its last entry (and its node). ``block``: seconds one blocking read waits
    before it is issued again. ``batch``: entries taken per read. ``concurrency``: requests
    handled at once by this node."""

    maxlen: int = 10_000
    stream_ttl: float = 86_400.0
    block: float = 1.0
    batch: int = 100
    concurrency: int = 64

    def __post_init__(self) -> None:
        for name, count in (
            ("maxlen", self.maxlen),
            ("batch", self.batch),
            ("concurrency", self.concurrency),
        ):
            if not (isinstance(count, int) and count > 0):
                raise ConfigError(f"{name} {count!r}: give a positive integer")
        for name, seconds in (("stream_ttl", self.stream_ttl), ("block", self.block)):
            if not seconds > 0:
                raise ConfigError(f"{name} {seconds!r}: give a positive number of seconds")


class RequestBus:
    """One node's end of the bus: ``request()`` asks another node (or itself); the handler
    given to ``start()`` answers the requests addressed to this node."""

    def __init__(
        self,
        redis: RedisClient,
        node_id: str,
        config: BusConfig | None = None,
        clock: Clock = time.time,
    ) -> None:
        self.node_id = check_node_id(node_id)
        self.config = config or BusConfig()
        self._redis = redis
        self._clock = clock
        # One consumer per incarnation, so that the group shows which one read an entry.
        self.consumer = f"{self.node_id}.{secrets.token_hex(4)}"
        self._waiting: dict[str, asyncio.Future[Payload]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._handling: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(self.config.concurrency)
        self._handler: Handler | None = None
        self._started = False
        self._append_script = redis.register_script(_APPEND)

    @property
    def _block_ms(self) -> int:
        return max(1, round(self.config.block * 1000))

    async def _append(self, key: str, message: bytes) -> None:
        """XADD, trimmed, and the stream's TTL refreshed: one command (one key, one slot)."""
        args: list[EncodableT] = [self.config.maxlen, round(self.config.stream_ttl * 1000), message]
        await self._append_script(keys=[key], args=args)

    async def start(self, handler: Handler | None = None) -> None:
        """Start reading replies, and, with a ``handler``, serving this node's requests:
        the group is made if missing, pending entries of earlier incarnations are reclaimed
        and handled first."""
        if self._started:
            return
        last = await newest_id(self._redis, reply_stream(self.node_id))
        self._tasks.append(asyncio.create_task(self._read_replies(last)))
        self._started = True
        if handler is not None:
            self._handler = handler
            await self._make_group()
            await self._reclaim()
            self._tasks.append(asyncio.create_task(self._serve()))

    async def _make_group(self) -> None:
        # From id 0: requests sent before this node ever started are served too (unless late).
        try:
            await self._redis.xgroup_create(request_stream(self.node_id), GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def close(self) -> None:
        """Stop reading and serving. Requests being handled are abandoned unacknowledged (the
        next incarnation reclaims them); callers still waiting get :class:`BusClosed`."""
        self._started = False
        tasks = [*self._tasks, *self._handling]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)  # a handler's error is logged already
        self._tasks.clear()
        self._handling.clear()
        for rid, future in list(self._waiting.items()):
            if not future.done():
                future.set_exception(
                    BusClosed(f"node {self.node_id!r}: the bus closed before request {rid} was answered")
                )

    async def request(self, node: str, payload: Payload, timeout: float) -> Payload:
        """Send ``payload`` to ``node`` and return its handler's answer; :class:`BusTimeout`
        when none comes within ``timeout`` seconds, :class:`RemoteHandlerError` when the
        handler failed."""
        if not self._started:
            raise BusClosed(f"node {self.node_id!r}: the bus is not started")
        kind, data = encode_payload(payload)
        rid = secrets.token_hex(8)
        future: asyncio.Future[Payload] = asyncio.get_running_loop().create_future()
        self._waiting[rid] = future
        message = _message(f"{rid} {self.node_id} {self._clock() + timeout!r} {kind}", data)
        try:
            async with asyncio.timeout(timeout):
                await self._append(request_stream(check_node_id(node)), message)
                honour_cancellation()  # a timeout that redis-py swallowed still ends the wait
                return await future
        except TimeoutError:
            raise BusTimeout(f"node {node!r} did not answer request {rid} within {timeout} s") from None
        finally:
            del self._waiting[rid]

    async def _read_replies(self, last: str) -> None:
        key = reply_stream(self.node_id)
        while True:
            try:
                response = await self._redis.xread({key: last}, count=self.config.batch, block=self._block_ms)
            except RedisError as exc:  # Redis away for a moment: retry shortly
                honour_cancellation()
                log.warning("node %s: reading replies failed: %s", self.node_id, exc)
                await asyncio.sleep(self.config.block)
                continue
            honour_cancellation()
            entries = stream_entries(response)
            for entry_id, fields in entries:
                last = text(entry_id)
                self._answer(fields)
            if entries:
                # The callers answered run first: the next read's command is not on their path.
                await asyncio.sleep(0)

    def _answer(self, fields: dict[bytes, bytes]) -> None:
        try:
            (rid, node, ok, kind), data = _parts(fields, 4)
        except (KeyError, ValueError):
            log.warning("node %s: dropped a malformed bus reply", self.node_id)
            return
        future = self._waiting.get(rid)
        if future is None or future.done():
            return  # its caller gave up
        if ok != "1":
            future.set_exception(RemoteHandlerError(node, kind, data.decode(errors="replace")))
            return
        try:
            future.set_result(decode_payload(kind, data))
        except ClusterPayloadError as exc:
            future.set_exception(ClusterPayloadError(f"a reply that cannot be read: {exc}"))

    async def _reclaim(self) -> None:
        """Take over, and handle, every entry an earlier incarnation read and never acknowledged
        (only this node reads its stream, so everything pending is an earlier incarnation's);
        then drop the consumers left with nothing pending."""
        key = request_stream(self.node_id)
        start = "0-0"
        while True:
            cursor, entries, *_ = await self._redis.xautoclaim(
                key, GROUP, self.consumer, min_idle_time=0, start_id=start, count=self.config.batch
            )
            for entry_id, fields in entries:
                await self._dispatch(entry_id, fields)
            start = text(cursor)
            if start == "0-0":
                break
        for consumer in await self._redis.xinfo_consumers(key, GROUP):
            name = text(consumer["name"])
            if name != self.consumer and int(consumer["pending"]) == 0:
                await self._redis.xgroup_delconsumer(key, GROUP, name)

    async def _serve(self) -> None:
        key = request_stream(self.node_id)
        refresh_at = 0.0
        while True:
            if time.monotonic() >= refresh_at:  # keep this node's stream while it runs
                refresh_at = time.monotonic() + self.config.stream_ttl / 4
                with contextlib.suppress(RedisError):
                    await self._redis.pexpire(key, round(self.config.stream_ttl * 1000))
            try:
                response = await self._redis.xreadgroup(
                    GROUP, self.consumer, {key: ">"}, count=self.config.batch, block=self._block_ms
                )
            except RedisError as exc:
                honour_cancellation()
                log.warning("node %s: reading requests failed: %s", self.node_id, exc)
                await asyncio.sleep(self.config.block)
                if isinstance(exc, ResponseError) and "NOGROUP" in str(exc):
                    await self._make_group()  # the stream was lost (a Redis restart without AOF)
                continue
            honour_cancellation()
            entries = stream_entries(response)
            for entry_id, fields in entries:
                await self._dispatch(entry_id, fields)
            if entries:
                # The handlers just started run first: the next read's command is not on the
                # path of the requests they answer.
                await asyncio.sleep(0)

    async def _dispatch(self, entry_id: bytes, fields: dict[bytes, bytes]) -> None:
        await self._slots.acquire()
        task = asyncio.create_task(self._handle(entry_id, fields))
        self._handling.add(task)
        task.add_done_callback(self._handled)

    def _handled(self, task: asyncio.Task[None]) -> None:
        self._handling.discard(task)
        self._slots.release()
        if not task.cancelled() and task.exception() is not None:
            log.error("node %s: a bus request failed", self.node_id, exc_info=task.exception())

    async def _handle(self, entry_id: bytes, fields: dict[bytes, bytes]) -> None:
        assert self._handler is not None
        try:
            (rid, sender, deadline_text, kind), data = _parts(fields, 4)
            deadline = float(deadline_text)
            check_node_id(sender)
        except (KeyError, ValueError, ConfigError):  # UnicodeDecodeError is a ValueError
            log.warning("node %s: dropped a malformed bus entry %s", self.node_id, text(entry_id))
            await self._redis.xack(request_stream(self.node_id), GROUP, entry_id)
            return
        if self._clock() < deadline:
            try:
                answer_kind, answer = encode_payload(await self._handler(decode_payload(kind, data)))
                reply = _message(f"{rid} {self.node_id} 1 {answer_kind}", answer)
            except Exception as exc:  # the caller gets it as RemoteHandlerError
                reply = _message(f"{rid} {self.node_id} 0 {type(exc).__name__}", str(exc).encode())
            await self._append(reply_stream(sender), reply)
        await self._redis.xack(request_stream(self.node_id), GROUP, entry_id)
