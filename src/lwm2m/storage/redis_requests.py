"""Requests queued for sleeping clients in Redis (:mod:`lwm2m.storage.requests` says what they are).

Keys. A request's record and its endpoint's queue live under the endpoint's hash tag, so that
queueing and taking run as one script in one Redis Cluster slot; the ID index and the global
bound are keys of their own:

====================================  ======  =========================================================
``lwm2m:rq:{ep}:<id>``                hash    ``call`` (the API call, JSON), ``state``, ``runner``,
                                              ``result`` (JSON), ``finished``; expires ``max_age``
                                              after queueing, ``keep`` after finishing
``lwm2m:rqq:{ep}``                    zset    the endpoint's requests nobody took, by queueing number
``lwm2m:rqn:{ep}``                    string  the endpoint's queueing counter
``lwm2m:rqid:<id>``                   string  request ID -> endpoint (same expiry as the record)
``lwm2m:requests``                    zset    every request kept, by expiry time: the total bound
``lwm2m:rqrun:<node>``                set     the requests a node took and has not finished
====================================  ======  =========================================================

Taking is a script on the record that changes ``state`` from ``queued`` to ``running`` only if it
is still ``queued``: of nodes racing for one request, exactly one gets it. The ID index and the
global set are written before the record (and their entries outlive it by at most the record's
expiry); a read through them checks the record.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from lwm2m.errors import RequestQueueFull
from lwm2m.storage.redis_link import RedisLink, guarded, index, key, text
from lwm2m.storage.requests import (
    RequestQueueLimits,
    RequestState,
    StoredRequest,
    check_finish,
    outcome_from_json,
    outcome_json,
)

# KEYS: record, queue, counter. ARGV: id, call, per-endpoint bound, seconds to live.
_ADD = """
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[3]) then return 0 end
local seq = redis.call('INCR', KEYS[3])
redis.call('EXPIRE', KEYS[3], ARGV[4])
redis.call('HSET', KEYS[1], 'call', ARGV[2], 'state', 'queued', 'runner', '')
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('ZADD', KEYS[2], seq, ARGV[1])
redis.call('EXPIRE', KEYS[2], ARGV[4])
return 1
"""

# KEYS: record, queue. ARGV: id, runner. The call, or nil when the request is not queued.
_TAKE = """
redis.call('ZREM', KEYS[2], ARGV[1])
if redis.call('HGET', KEYS[1], 'state') ~= 'queued' then return false end
redis.call('HSET', KEYS[1], 'state', 'running', 'runner', ARGV[2])
return redis.call('HGET', KEYS[1], 'call')
"""

# KEYS: record, queue. ARGV: id, state, result, finished time, seconds to keep. The node that
# ran it ('' if none), or nil for an unknown request.
_FINISH = """
redis.call('ZREM', KEYS[2], ARGV[1])
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
redis.call('HSET', KEYS[1], 'state', ARGV[2], 'result', ARGV[3], 'finished', ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[5])
return redis.call('HGET', KEYS[1], 'runner') or ''
"""


def record_key(endpoint: str, request_id: str) -> str:
    return f"{key('rq', endpoint)}:{request_id}"


def _request(fields: Mapping[Any, Any]) -> StoredRequest | None:
    got = {text(k): v for k, v in fields.items()}
    if "call" not in got:
        return None
    finished = got.get("finished")
    state = text(got.get("state", b"queued"))
    return replace(
        StoredRequest.from_call_json(got["call"]),
        state=state if state in ("queued", "running", "done", "failed") else "queued",  # type: ignore[arg-type]
        runner=text(got.get("runner", b"")),
        result=outcome_from_json(got.get("result")),
        finished_at=None if finished is None else float(text(finished)),
    )


class RedisQueuedRequestStore:
    """Queued requests under their endpoint's hash tag (see the module's key table)."""

    def __init__(
        self,
        link: RedisLink,
        limits: RequestQueueLimits | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.link = link
        self.limits = limits or RequestQueueLimits()
        self._clock = clock

    @guarded
    async def add(self, request: StoredRequest) -> None:
        c = self.link.client()
        now = self._clock()
        ttl = max(1, int(self.limits.max_age))
        everything = index("requests")
        await c.zremrangebyscore(everything, "-inf", now)
        total = await c.zcard(everything)
        if total >= self.limits.total:
            raise RequestQueueFull(f"{total} queued requests are kept already")
        await c.set(index("rqid", request.request_id), request.endpoint, ex=ttl)
        await c.zadd(everything, {request.request_id: now + ttl})
        keys = [
            record_key(request.endpoint, request.request_id),
            key("rqq", request.endpoint),
            key("rqn", request.endpoint),
        ]
        added = await self.link.run(
            _ADD, keys, [request.request_id, request.call_json(), self.limits.per_endpoint, ttl]
        )
        if not added:
            await c.zrem(everything, request.request_id)
            await c.delete(index("rqid", request.request_id))
            raise RequestQueueFull(
                f"{self.limits.per_endpoint} requests wait for {request.endpoint!r} already"
            )

    @guarded
    async def get(self, request_id: str) -> StoredRequest | None:
        c = self.link.client()
        endpoint = await c.get(index("rqid", request_id))
        if endpoint is None:
            return None
        found = _request(await c.hgetall(record_key(text(endpoint), request_id)))
        return found if found is not None and found.request_id == request_id else None

    @guarded
    async def pending(self, endpoint: str) -> list[StoredRequest]:
        c = self.link.client()
        queue = key("rqq", endpoint)
        ids = [text(m) for m in await c.zrange(queue, 0, self.limits.per_endpoint - 1)]
        if not ids:
            return []
        pipe = c.pipeline(transaction=False)
        for request_id in ids:
            pipe.hgetall(record_key(endpoint, request_id))
        out, gone = [], []
        for request_id, fields in zip(ids, await pipe.execute(), strict=True):
            found = _request(fields)
            if found is None or found.state != "queued":
                gone.append(request_id)  # expired, or taken by a script that has not unlisted it
            else:
                out.append(found)
        if gone:
            await c.zrem(queue, *gone)
        return out

    @guarded
    async def take(self, request_id: str, runner: str) -> StoredRequest | None:
        endpoint = await self.link.client().get(index("rqid", request_id))
        if endpoint is None:
            return None
        ep = text(endpoint)
        c = self.link.client()
        running = index("rqrun", runner)
        # Listed before the take (another slot): a node that dies in between leaves an entry that
        # ``abandon`` finds not running, and passes over.
        await c.sadd(running, request_id)
        await c.expire(running, max(1, int(self.limits.max_age)))
        call = await self.link.run(_TAKE, [record_key(ep, request_id), key("rqq", ep)], [request_id, runner])
        if call is None:
            await c.srem(running, request_id)
            return None
        return replace(StoredRequest.from_call_json(call), state="running", runner=runner)

    @guarded
    async def finish(
        self,
        request_id: str,
        state: RequestState,
        result: Mapping[str, Any],
        finished_at: float,
        *,
        keep: float | None = None,
    ) -> bool:
        check_finish(state)
        c = self.link.client()
        endpoint = await c.get(index("rqid", request_id))
        if endpoint is None:
            return False
        ep = text(endpoint)
        keep_for = max(1, int(self.limits.keep if keep is None else keep))
        runner = await self.link.run(
            _FINISH,
            [record_key(ep, request_id), key("rqq", ep)],
            [request_id, state, outcome_json(result), repr(finished_at), keep_for],
        )
        if runner is None:
            return False
        if text(runner):
            await c.srem(index("rqrun", text(runner)), request_id)
        await c.expire(index("rqid", request_id), keep_for)
        await c.zadd(index("requests"), {request_id: finished_at + keep_for})
        return True

    @guarded
    async def abandon(self, runner: str, result: Mapping[str, Any], finished_at: float) -> list[str]:
        c = self.link.client()
        running = index("rqrun", runner)
        failed = []
        for member in await c.smembers(running):
            request_id = text(member)
            found = await self.get(request_id)
            ours = found is not None and found.state == "running" and found.runner == runner
            if ours and await self.finish(request_id, "failed", result, finished_at):
                failed.append(request_id)
            await c.srem(running, request_id)
        return failed

    @guarded
    async def waiting(self) -> int:
        """An upper bound: the requests kept in all, finished ones included (no walk of the
        endpoints' queues). Zero means none waits."""
        c = self.link.client()
        everything = index("requests")
        await c.zremrangebyscore(everything, "-inf", self._clock())
        return int(await c.zcard(everything))
