"""A server node's identity in a cluster: its id, and a one-byte number for DTLS CIDs.

The node id is a short string, given (``--node-id``) or generated. The one-byte number
(1..255) names the node in the first byte of the DTLS Connection IDs it issues (RFC 9146 §3
leaves the CID's content to the issuer; Californium's cf-cluster puts the node there), so a
node that receives a record for another can forward it. Bytes are shared out in Redis:

- ``{lwm2m:nodes}``, a hash: node id -> byte, and
- ``{lwm2m:nodes}:alive:<node id>``, one heartbeat key per node with a TTL (``node_ttl``),
  whose value is the byte and, after a space, the node's link address (``host:port``, or
  nothing): where the other nodes send it the DTLS records of its Connection IDs
  (:mod:`lwm2m.transport.dtls.link`; the key in :mod:`lwm2m.cluster.link`).

A node that stops beating (killed, cut off) keeps its byte until its heartbeat key expires;
then the next node to join removes it from the hash and its byte can be given again. A node
restarted with the same id gets its own byte back while its entry is still there. The hash
is named with its own hash tag so that the hash and every heartbeat key share one slot: the
allocation is one Lua script over all of them, which Redis Cluster allows only in one slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from dataclasses import dataclass
from types import TracebackType

from lwm2m.cluster.encoding import check_node_id, honour_cancellation, text
from lwm2m.errors import ConfigError, NodeNotJoined, NoNodeByte
from lwm2m.storage.redisconn import RedisClient

log = logging.getLogger(__name__)

NODES_KEY = "{lwm2m:nodes}"
MAX_BYTE = 255


def heartbeat_key(node_id: str) -> str:
    return f"{NODES_KEY}:alive:{node_id}"


def generate_node_id() -> str:
    """A fresh node id: 8 hex digits (32 random bits)."""
    return secrets.token_hex(4)


@dataclass(frozen=True)
class ClusterConfig:
    """A node's settings. ``node_id``: None generates one. The heartbeat key lives
    ``node_ttl`` seconds and is refreshed every ``heartbeat_interval`` seconds; a node is taken
    for dead (its byte reusable) ``node_ttl`` seconds after its last beat."""

    node_id: str | None = None
    heartbeat_interval: float = 2.0
    node_ttl: float = 10.0

    def __post_init__(self) -> None:
        if self.node_id is not None:
            check_node_id(self.node_id)
        if not self.heartbeat_interval > 0:
            raise ConfigError(f"heartbeat_interval {self.heartbeat_interval!r}: give a positive number")
        if not self.node_ttl > self.heartbeat_interval:
            raise ConfigError(
                f"node_ttl {self.node_ttl!r}: give more than heartbeat_interval ({self.heartbeat_interval})"
            )


# KEYS[1] the hash, KEYS[2] this node's heartbeat key, KEYS[3..] the heartbeat keys of the other
# holders the caller saw; ARGV[1] node id, ARGV[2] TTL in ms, ARGV[3] the link address (or ''),
# ARGV[4..] those holders' ids (ARGV[i + 1] goes with KEYS[i]). Answers the byte, 0 when none is
# free, -1 when a holder joined since the caller looked (its heartbeat key is not among KEYS: the
# caller retries).
_JOIN = """
local given = {}
for i = 3, #KEYS do given[ARGV[i + 1]] = KEYS[i] end
local holders = redis.call('HGETALL', KEYS[1])
local used, mine = {}, nil
for i = 1, #holders, 2 do
  local id, b = holders[i], tonumber(holders[i + 1])
  if id == ARGV[1] then
    mine = b
  else
    local key = given[id]
    if key == nil then return -1 end
    if redis.call('EXISTS', key) == 1 then used[b] = true else redis.call('HDEL', KEYS[1], id) end
  end
end
if mine == nil then
  for b = 1, 255 do
    if not used[b] then mine = b break end
  end
  if mine == nil then return 0 end
  redis.call('HSET', KEYS[1], ARGV[1], mine)
end
redis.call('SET', KEYS[2], mine .. ' ' .. ARGV[3], 'PX', ARGV[2])
return mine
"""

# KEYS[1] the hash, KEYS[2] the heartbeat key; ARGV node id, byte, TTL in ms, link address (or
# ''). 0: the byte was given away (this node was taken for dead), the node must join again.
_BEAT = """
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('SET', KEYS[2], ARGV[2] .. ' ' .. ARGV[4], 'PX', ARGV[3])
return 1
"""

_LEAVE = """
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[2])
return 1
"""


@dataclass(frozen=True, slots=True)
class NodeEntry:
    """A live node as its heartbeat shows it: its byte, and its link address ('' if none)."""

    byte: int
    link: str


class NodeIdentity:
    """This node's id and byte, and the task that keeps its heartbeat.

    ``await join()`` (or ``async with``) takes a byte and starts beating; ``leave()`` stops and
    gives the byte back; ``stop()`` only stops beating (the byte lapses after ``node_ttl``).
    """

    def __init__(self, redis: RedisClient, config: ClusterConfig | None = None) -> None:
        self.config = config or ClusterConfig()
        self.node_id = self.config.node_id or generate_node_id()
        self._redis = redis
        self._byte: int | None = None
        # Where the other nodes reach this one's link (``host:port``), published with each beat.
        self.link = ""
        self._task: asyncio.Task[None] | None = None
        self._join = redis.register_script(_JOIN)
        self._beat = redis.register_script(_BEAT)
        self._leave = redis.register_script(_LEAVE)

    @property
    def ttl_ms(self) -> int:
        return max(1, round(self.config.node_ttl * 1000))

    @property
    def byte(self) -> int:
        """The node's number 1..255, the first byte of its DTLS Connection IDs."""
        if self._byte is None:
            raise NodeNotJoined(f"node {self.node_id!r} has not joined the cluster")
        return self._byte

    async def join(self) -> int:
        """Take a byte (this node's own, if it still holds one) and start the heartbeat."""
        self._byte = await self._take_byte()
        if self._task is None:
            self._task = asyncio.create_task(self._heartbeats(), name=f"lwm2m-node-{self.node_id}")
        return self._byte

    async def _take_byte(self) -> int:
        # A retry means another node joined meanwhile, which can happen at most once per byte.
        for _ in range(MAX_BYTE + 1):
            holders = [text(k) for k in await self._redis.hkeys(NODES_KEY)]
            others = [h for h in holders if h != self.node_id]
            keys = [NODES_KEY, heartbeat_key(self.node_id), *(heartbeat_key(h) for h in others)]
            args: list[str | int] = [self.node_id, self.ttl_ms, self.link, *others]
            answer = int(await self._join(keys=keys, args=args))
            if answer > 0:
                return answer
            if answer == 0:
                raise NoNodeByte(f"node {self.node_id!r}: all {MAX_BYTE} node bytes are held by live nodes")
        raise NoNodeByte(f"node {self.node_id!r}: nodes kept joining while this one tried; try again")

    async def heartbeat(self) -> int:
        """One beat; the heartbeat task calls it every ``heartbeat_interval``. A node taken for
        dead (its byte given to another) joins again and may get another byte: it is logged,
        and :attr:`byte` answers the new one. Returns the byte."""
        byte = self.byte
        if int(
            await self._beat(
                keys=[NODES_KEY, heartbeat_key(self.node_id)],
                args=[self.node_id, byte, self.ttl_ms, self.link],
            )
        ):
            return byte
        self._byte = await self._take_byte()
        log.warning(
            "node %s lost its byte %d (its heartbeat lapsed); it now has %d", self.node_id, byte, self._byte
        )
        return self._byte

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self.config.heartbeat_interval)
            try:
                await self.heartbeat()
                honour_cancellation()
            except Exception:  # Redis unreachable for a moment: keep beating, the TTL covers a few misses
                log.exception("node %s: heartbeat failed", self.node_id)

    async def stop(self) -> None:
        """Stop beating without giving the byte back (it lapses ``node_ttl`` seconds later)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def leave(self) -> None:
        """Stop beating and give the byte back at once."""
        await self.stop()
        if self._byte is not None:
            await self._leave(keys=[NODES_KEY, heartbeat_key(self.node_id)], args=[self.node_id, self._byte])
            self._byte = None

    async def alive_nodes(self) -> dict[str, int]:
        """Every node whose heartbeat key is alive: node id -> byte."""
        return {node_id: entry.byte for node_id, entry in (await self.alive_entries()).items()}

    async def alive_entries(self) -> dict[str, NodeEntry]:
        """Every node whose heartbeat key is alive: node id -> its byte and link address."""
        holders = {text(k): int(v) for k, v in (await self._redis.hgetall(NODES_KEY)).items()}
        if not holders:
            return {}
        ids = sorted(holders)
        beats = await self._redis.mget([heartbeat_key(i) for i in ids])
        return {
            i: NodeEntry(holders[i], text(beat).partition(" ")[2])
            for i, beat in zip(ids, beats, strict=True)
            if beat is not None
        }

    async def publish_link(self, address: str) -> None:
        """Publish ``address`` (``host:port``) as this node's link address: with the next
        beat, or at once when the node has joined."""
        self.link = address
        if self._byte is not None:
            await self.heartbeat()

    async def __aenter__(self) -> NodeIdentity:
        await self.join()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.leave()
