"""Webhooks and their outbox in Redis (:mod:`lwm2m.storage.webhooks` says what they are).

Keys. Every key carries the hash tag ``{webhooks}``, so that each change (a batch written, a
batch claimed, entries removed) is one script in one Redis Cluster slot:

====================================  ======  ===========================================================
``lwm2m:{webhooks}:hooks``            hash    hook ID -> ``Webhook.to_json()``
``lwm2m:{webhooks}:data``             hash    entry number -> ``OutboxEntry.to_json()``
``lwm2m:{webhooks}:attempts``         hash    entry number -> attempts made
``lwm2m:{webhooks}:owner``            hash    entry number -> hook ID
``lwm2m:{webhooks}:due``              zset    entry number by the time it may be posted (claiming moves it)
``lwm2m:{webhooks}:order``            zset    entry number by itself: the oldest for the total bound
``lwm2m:{webhooks}:hook:<id>``        zset    one hook's entries by number: the per-hook bound
``lwm2m:{webhooks}:seq``              string  the entry counter
====================================  ======  ===========================================================

The outbox is bounded (``OutboxLimits``: per hook and in all, the oldest dropped at each
write), so the slot holds at most ``total`` entries.
"""

from __future__ import annotations

from collections.abc import Sequence

from lwm2m.storage.redis_link import PREFIX, RedisLink, guarded, raw, text
from lwm2m.storage.webhooks import OutboxEntry, OutboxLimits, Retry, Webhook

TAG = "{webhooks}"
_KEYS = [f"{PREFIX}{TAG}:{name}" for name in ("data", "attempts", "owner", "due", "order", "seq", "hooks")]
HOOK_PREFIX = f"{PREFIX}{TAG}:hook:"

# Every script: KEYS as _KEYS, ARGV[1] the per-hook key prefix.
_REMOVE = """
local function remove(seq)
  local hook = redis.call('HGET', KEYS[3], seq)
  if not hook then return 0 end
  redis.call('HDEL', KEYS[1], seq)
  redis.call('HDEL', KEYS[2], seq)
  redis.call('HDEL', KEYS[3], seq)
  redis.call('ZREM', KEYS[4], seq)
  redis.call('ZREM', KEYS[5], seq)
  redis.call('ZREM', ARGV[1] .. hook, seq)
  return 1
end
"""

# ARGV: prefix, per-hook bound, total bound, then (hook, entry JSON, next time) per entry.
# The number of entries dropped by the bounds.
_ENQUEUE = (
    _REMOVE
    + """
local touched = {}
for i = 4, #ARGV, 3 do
  local hook = ARGV[i]
  local seq = redis.call('INCR', KEYS[6])
  redis.call('HSET', KEYS[1], seq, ARGV[i + 1])
  redis.call('HSET', KEYS[2], seq, 0)
  redis.call('HSET', KEYS[3], seq, hook)
  redis.call('ZADD', KEYS[4], ARGV[i + 2], seq)
  redis.call('ZADD', KEYS[5], seq, seq)
  redis.call('ZADD', ARGV[1] .. hook, seq, seq)
  touched[hook] = true
end
local dropped = 0
for hook in pairs(touched) do
  local over = redis.call('ZCARD', ARGV[1] .. hook) - tonumber(ARGV[2])
  if over > 0 then
    for _, seq in ipairs(redis.call('ZRANGE', ARGV[1] .. hook, 0, over - 1)) do
      dropped = dropped + remove(seq)
    end
  end
end
local over = redis.call('ZCARD', KEYS[5]) - tonumber(ARGV[3])
if over > 0 then
  for _, seq in ipairs(redis.call('ZRANGE', KEYS[5], 0, over - 1)) do dropped = dropped + remove(seq) end
end
return dropped
"""
)

# ARGV: prefix, now, limit, lease end. Flat (number, JSON, attempts) of the entries claimed.
_CLAIM = """
local out = {}
for _, seq in ipairs(redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))) do
  redis.call('ZADD', KEYS[4], ARGV[4], seq)
  out[#out + 1] = seq
  out[#out + 1] = redis.call('HGET', KEYS[1], seq)
  out[#out + 1] = redis.call('HGET', KEYS[2], seq) or '0'
end
return out
"""

# ARGV: prefix, entry numbers.
_DELIVERED = (
    _REMOVE
    + """
for i = 2, #ARGV do remove(ARGV[i]) end
return 0
"""
)

# ARGV: prefix, then (number, attempts, next time) per entry; one removed meanwhile stays removed.
_RETRY = """
for i = 2, #ARGV, 3 do
  if redis.call('HEXISTS', KEYS[3], ARGV[i]) == 1 then
    redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
    redis.call('ZADD', KEYS[4], ARGV[i + 2], ARGV[i])
  end
end
return 0
"""

# ARGV: prefix, hook ID. 1 when the hook was there; its entries go with it.
_DELETE_HOOK = (
    _REMOVE
    + """
local gone = redis.call('HDEL', KEYS[7], ARGV[2])
for _, seq in ipairs(redis.call('ZRANGE', ARGV[1] .. ARGV[2], 0, -1)) do remove(seq) end
redis.call('DEL', ARGV[1] .. ARGV[2])
return gone
"""
)


class RedisWebhookStore:
    """Webhooks and their outbox under the hash tag ``{webhooks}`` (see the module's key table)."""

    def __init__(self, link: RedisLink, limits: OutboxLimits | None = None) -> None:
        self.link = link
        self.limits = limits or OutboxLimits()

    async def _run(self, script: str, args: list[object]) -> object:
        return await self.link.run(script, list(_KEYS), [HOOK_PREFIX, *args])

    @guarded
    async def put_hook(self, hook: Webhook) -> None:
        await self.link.client().hset(_KEYS[6], hook.hook_id, hook.to_json())

    @guarded
    async def get_hook(self, hook_id: str) -> Webhook | None:
        found = await self.link.client().hget(_KEYS[6], hook_id)
        return None if found is None else Webhook.from_json(raw(found))

    @guarded
    async def hooks(self) -> list[Webhook]:
        found = await self.link.client().hgetall(_KEYS[6])  # at most OutboxLimits.hooks
        return sorted(
            (Webhook.from_json(raw(v)) for v in found.values()), key=lambda h: (h.created_at, h.hook_id)
        )

    @guarded
    async def delete_hook(self, hook_id: str) -> bool:
        return bool(await self._run(_DELETE_HOOK, [hook_id]))

    @guarded
    async def enqueue(self, entries: Sequence[OutboxEntry]) -> int:
        if not entries:
            return 0
        args: list[object] = [self.limits.per_hook, self.limits.total]
        for e in entries:
            args += [e.hook_id, e.to_json(), repr(e.next_at)]
        dropped = await self._run(_ENQUEUE, args)
        assert isinstance(dropped, int)
        return dropped

    @guarded
    async def claim(self, now: float, limit: int, lease: float) -> list[OutboxEntry]:
        flat = await self._run(_CLAIM, [repr(now), limit, repr(now + lease)])
        assert isinstance(flat, list)
        out = [
            OutboxEntry.from_json(raw(flat[i + 1]), int(text(flat[i])), int(text(flat[i + 2])), now + lease)
            for i in range(0, len(flat), 3)
            if flat[i + 1] is not None
        ]
        out.sort(key=lambda e: e.seq)
        return out

    @guarded
    async def delivered(self, seqs: Sequence[int]) -> None:
        if seqs:
            await self._run(_DELIVERED, list(seqs))

    @guarded
    async def retry(self, retries: Sequence[Retry]) -> None:
        if retries:
            args: list[object] = []
            for r in retries:
                args += [r.seq, r.attempts, repr(r.next_at)]
            await self._run(_RETRY, args)

    @guarded
    async def size(self) -> int:
        return int(await self.link.client().hlen(_KEYS[0]))
