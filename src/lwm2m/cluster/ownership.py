"""Endpoint ownership: one owner node per endpoint at a time, with a fencing epoch and a lease.

The node that receives an endpoint's Register or Update claims it (the balancer decides where
a device lands, DESIGN.md "Where its users outgrow one machine"): a claim always succeeds and
increments the endpoint's epoch, so the previous owner, whose epoch is now stale, fails its
next ``renew`` or ``check`` and stops acting for the device. The epoch is a fencing token in
the sense of Kleppmann's "How to do distributed locking": whoever writes for the endpoint
shows it, and a write with an older epoch is refused.

The lease says how long the owner is presumed alive: the device's traffic renews it, and
``owner()`` answers None once it has run out (nobody is known to be serving the device; a
request for it waits for its next message). A lapsed lease fences nothing by itself: only a
claim does, so the owner's epoch stays good (``renew`` and ``check`` succeed) until another
node claims the endpoint. ``release`` gives the endpoint up and keeps the epoch.

One hash per endpoint, ``lwm2m:owner:{ep}`` (fields ``node``, ``epoch``, ``expires`` in ms
of the injected clock), under the endpoint's hash tag (:func:`endpoint_tag`) like every other
key of the endpoint, so a store's script can read the epoch beside the data it fences. Every
operation is one Lua script, one round trip. The hash expires ``retention`` seconds after the
lease (bounded memory for endpoints that are gone); only then does the epoch start again.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

from redis.exceptions import NoScriptError

from lwm2m.cluster.encoding import Clock, check_node_id, text
from lwm2m.errors import ConfigError
from lwm2m.storage.redisconn import RedisClient, endpoint_tag

RENEW_CHUNK = 256  # leases per pipeline of renew_many


def owner_key(endpoint: str) -> str:
    """The endpoint's ownership hash, in the endpoint's hash slot."""
    return "lwm2m:owner:" + endpoint_tag(endpoint)


@dataclass(frozen=True)
class OwnershipConfig:
    """``lease``: seconds a claim or renewal keeps the node the endpoint's owner.
    ``retention``: seconds the record (and its epoch) outlives the last lease."""

    lease: float = 120.0
    retention: float = 7 * 86400.0

    def __post_init__(self) -> None:
        if not self.lease > 0:
            raise ConfigError(f"lease {self.lease!r}: give a positive number of seconds")
        if not self.retention >= self.lease:
            raise ConfigError(f"retention {self.retention!r}: give at least the lease ({self.lease})")


class Owner(NamedTuple):
    """An endpoint's owner: the node, its fencing epoch, and when its lease runs out (seconds,
    on the clock of the node that claimed or renewed)."""

    node: str
    epoch: int
    lease_expires: float


# ARGV: node, lease expiry (ms), key TTL (ms). Answers the new epoch.
_CLAIM = """
local epoch = redis.call('HINCRBY', KEYS[1], 'epoch', 1)
redis.call('HSET', KEYS[1], 'node', ARGV[1], 'expires', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return epoch
"""

# ARGV: node, epoch, lease expiry (ms), key TTL (ms). 1 when the epoch is still this node's.
_RENEW = """
local cur = redis.call('HMGET', KEYS[1], 'node', 'epoch')
if cur[1] ~= ARGV[1] or cur[2] ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'expires', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
"""

# ARGV: now (ms). The owner {node, epoch, expires} while its lease runs, else nil.
_OWNER = """
local cur = redis.call('HMGET', KEYS[1], 'node', 'epoch', 'expires')
if not cur[1] or cur[1] == '' or tonumber(cur[3]) <= tonumber(ARGV[1]) then return false end
return cur
"""

# ARGV: node, epoch. 1 when the epoch was this node's; the epoch stays, the node goes.
_RELEASE = """
local cur = redis.call('HMGET', KEYS[1], 'node', 'epoch')
if cur[1] ~= ARGV[1] or cur[2] ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'node', '', 'expires', 0)
return 1
"""

# ARGV: node, epoch. 1 when the epoch is still this node's.
_CHECK = """
local cur = redis.call('HMGET', KEYS[1], 'node', 'epoch')
if cur[1] ~= ARGV[1] or cur[2] ~= ARGV[2] then return 0 end
return 1
"""


class Ownership:
    """Claims, renewals and fencing checks of endpoints by one node (``node_id``)."""

    def __init__(
        self,
        redis: RedisClient,
        node_id: str,
        config: OwnershipConfig | None = None,
        clock: Clock = time.time,
    ) -> None:
        self.node_id = check_node_id(node_id)
        self.config = config or OwnershipConfig()
        self._redis = redis
        self._clock = clock
        self._claim = redis.register_script(_CLAIM)
        self._renew = redis.register_script(_RENEW)
        self._owner = redis.register_script(_OWNER)
        self._release = redis.register_script(_RELEASE)
        self._check = redis.register_script(_CHECK)

    def _lease_args(self) -> tuple[int, int]:
        """(lease expiry in ms of the clock, the hash's TTL in ms)."""
        lease_ms = round(self.config.lease * 1000)
        return round(self._clock() * 1000) + lease_ms, lease_ms + round(self.config.retention * 1000)

    async def claim(self, endpoint: str) -> int:
        """Take ``endpoint`` (always succeeds): the epoch goes up by one and is returned; the
        previous owner is fenced off."""
        expires, ttl = self._lease_args()
        return int(await self._claim(keys=[owner_key(endpoint)], args=[self.node_id, expires, ttl]))

    async def renew(self, endpoint: str, epoch: int) -> bool:
        """Extend the lease by ``lease`` from now if ``epoch`` is still this node's."""
        expires, ttl = self._lease_args()
        args: list[str | int] = [self.node_id, epoch, expires, ttl]
        return bool(await self._renew(keys=[owner_key(endpoint)], args=args))

    async def renew_many(self, leases: Iterable[tuple[str, int]]) -> list[bool]:
        """Renew many (endpoint, epoch) leases, a pipeline (one round trip per Redis node) per
        :data:`RENEW_CHUNK`: one answer per lease, in order, as :meth:`renew`'s. In chunks,
        since the client packs a pipeline's commands and reads its answers without letting the
        event loop run: 10,000 leases in one pipeline held the loop for 64 ms at a time on this
        machine, in pipelines of 256 for 6 ms."""
        leases = list(leases)
        answers: list[bool] = []
        for start in range(0, len(leases), RENEW_CHUNK):
            answers += await self._renew_chunk(leases[start : start + RENEW_CHUNK])
        return answers

    async def _renew_chunk(self, leases: list[tuple[str, int]]) -> list[bool]:
        expires, ttl = self._lease_args()
        for attempt in range(2):
            pipe = self._redis.pipeline(transaction=False)
            for endpoint, epoch in leases:
                # redis-py's annotation names clients only; a pipeline queues the script (documented)
                await self._renew(
                    keys=[owner_key(endpoint)],
                    args=[self.node_id, epoch, expires, ttl],
                    client=pipe,  # type: ignore[arg-type]
                )
            try:
                return [bool(r) for r in await pipe.execute()]
            except NoScriptError:
                # A cluster pipeline sends EVALSHA without loading the script first (a plain
                # pipeline loads it); after a Redis restart the script cache is empty.
                if attempt:
                    raise
                await self._redis.script_load(_RENEW)
        raise AssertionError("unreachable")  # pragma: no cover

    async def owner(self, endpoint: str) -> Owner | None:
        """The endpoint's owner while its lease runs; None when nobody holds it, it was
        released, or the lease ran out."""
        now = round(self._clock() * 1000)
        found = await self._owner(keys=[owner_key(endpoint)], args=[now])
        if not found:
            return None
        node, epoch, expires = found
        return Owner(text(node), int(epoch), int(expires) / 1000)

    async def holder(self, endpoint: str) -> Owner | None:
        """The node that last claimed the endpoint and has not released it, lease run out or
        not (a quiet device's lease lapses while its node still holds its session); None
        when nobody does. Whether that node is alive is the node table's to say."""
        node, epoch, expires = await self._redis.hmget(owner_key(endpoint), ["node", "epoch", "expires"])
        if not node or epoch is None:
            return None
        return Owner(text(node), int(epoch), int(expires or 0) / 1000)

    async def release(self, endpoint: str, epoch: int) -> bool:
        """Give ``endpoint`` up if ``epoch`` is still this node's (the epoch is kept, so a
        later claim still fences this one)."""
        return bool(await self._release(keys=[owner_key(endpoint)], args=[self.node_id, epoch]))

    async def check(self, endpoint: str, epoch: int) -> bool:
        """True while ``epoch`` is this node's: no other node has claimed the endpoint since
        (and this node has not released it). A write on the owner's behalf asks first; a store
        that must make the check and the write one step reads ``epoch`` from
        :func:`owner_key` in its own script, which shares the endpoint's slot."""
        return bool(await self._check(keys=[owner_key(endpoint)], args=[self.node_id, epoch]))
