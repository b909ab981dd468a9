"""The Redis store's connection: one redis-py asyncio client per event loop, its Lua scripts, the
key names, and the translation of Redis failures into :class:`~lwm2m.errors.StoreError`.

An asyncio client belongs to the loop it first connected on. A store opened in plain code and
used by several ``asyncio.run()`` calls in turn (the CLI does that) gets a fresh client on each
new loop; the old one's sockets are closed without waiting when its loop is gone. On a Redis
Cluster the new client (and the blocking one of ``close()``) learns the cluster from the nodes
the old one knew before the URL's node, which a failover may have taken away.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

import msgspec
import redis as redis_sync
from redis.asyncio import Redis, RedisCluster
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from lwm2m.errors import StoreError
from lwm2m.storage.redisconn import (
    RedisClient,
    cluster_nodes,
    connect,
    endpoint_tag,
    is_cluster_url,
    shown_url,
)

PREFIX = "lwm2m:"
CHUNK = 500  # entries an index walk reads (and records a pipeline fetches) per round trip


def key(kind: str, endpoint: str) -> str:
    """The key of ``kind`` (``reg``, ``obs``, ``hist``, ``sec``, ``bs``) for one endpoint: under its
    hash tag, so that every script on one endpoint's keys runs in one Redis Cluster slot."""
    return f"{PREFIX}{kind}:{endpoint_tag(endpoint)}"


def index(kind: str, name: str | None = None) -> str:
    """A global index key: one for the whole store (``index("expiry")``), or one per name
    (``index("regid", rid)``), in whatever slot its name hashes to."""
    return f"{PREFIX}{kind}" if name is None else f"{PREFIX}{kind}:{name}"


def text(value: Any) -> str:
    """A reply as text (the client answers bytes; redis-py's types say bytes or str)."""
    return value.decode() if isinstance(value, bytes) else str(value)


def raw(value: Any) -> bytes:
    """A reply as bytes."""
    return value.encode() if isinstance(value, str) else bytes(value)


# --- scripts: each touches the keys of one endpoint (or one key), so one slot ------------------

# Delete KEYS[1] only while it still names ARGV[1]: an index entry that a newer write took over
# stays.
CAS_DELETE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# A hash read and deleted in one step (the endpoint's observations; the saved DTLS sessions).
HASH_TAKE = """
local all = redis.call('HGETALL', KEYS[1])
redis.call('DEL', KEYS[1])
return all
"""


def sync_client(
    url: str, known: Sequence[tuple[str, int]] = ()
) -> redis_sync.Redis | redis_sync.RedisCluster:
    """A blocking client for ``url`` (a store URL of :mod:`~lwm2m.storage.redisconn`): for the
    writes ``close()`` makes from plain code, where no event loop runs. A Redis Cluster is
    learned from the ``known`` nodes (host, port) first, then from the URL's node. Unlike the
    asyncio client, this one connects at once."""
    if is_cluster_url(url):
        plain, named = cluster_nodes(url)
        nodes = [redis_sync.cluster.ClusterNode(h, p) for h, p in [*known, *named[1:]]]  # type: ignore[no-untyped-call]
        return redis_sync.RedisCluster.from_url(plain, startup_nodes=nodes or None)
    return redis_sync.Redis.from_url(url)


class RedisLink:
    """The client of the running event loop, and the scripts registered on it."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.shown = shown_url(url)
        self._client: RedisClient = connect(url)  # ConfigError for a bad URL, at open
        self._loop: asyncio.AbstractEventLoop | None = None
        self._scripts: dict[str, AsyncScript] = {}
        self._closing: set[asyncio.Task[None]] = set()
        self.closed = False

    @property
    def cluster(self) -> bool:
        return isinstance(self._client, RedisCluster)

    def client(self) -> RedisClient:
        if self.closed:
            raise StoreError(f"the Redis store {self.shown} is closed")
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            if self._loop is not None:
                known = self.known_nodes()
                self._release()
                self._client = connect(self.url, known=known)
                self._scripts = {}
            self._loop = loop
        return self._client

    def known_nodes(self) -> list[tuple[str, int]]:
        """The Redis Cluster nodes (host, port) the client has learned, for a new client to
        start from: after a failover the URL's node may be gone, the others are not. Empty for
        one Redis."""
        if isinstance(self._client, RedisCluster):
            return [(node.host, int(node.port)) for node in self._client.get_nodes()]
        return []

    def script(self, source: str) -> AsyncScript:
        client = self.client()
        found = self._scripts.get(source)
        if found is None:
            found = self._scripts[source] = client.register_script(source)
        return found

    async def run(self, source: str, keys: list[str], args: list[Any]) -> Any:
        return await self.script(source)(keys=keys, args=args)

    def close(self) -> None:
        """Release the client: awaited by a task when its loop runs, else its sockets closed now."""
        if self.closed:
            return
        self.closed = True
        self._release()

    def _release(self) -> None:
        loop, client = self._loop, self._client
        if loop is None:
            return
        if not loop.is_closed() and loop.is_running():
            task = loop.create_task(_aclose(client))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
        elif not loop.is_closed():
            loop.run_until_complete(_aclose(client))
        else:
            _drop_sockets(client)


async def _aclose(client: RedisClient) -> None:
    with contextlib.suppress(RedisError, OSError, RuntimeError):  # a connection that already failed
        await client.aclose()


def _drop_sockets(client: RedisClient) -> None:
    """Forget the connections of a client whose event loop is gone: no coroutine can run for
    them. The transports are marked closing (the loop cannot take their last callback, so
    their sockets close when they are collected)."""
    if isinstance(client, Redis):
        pool = client.connection_pool
        connections = [*pool._available_connections, *pool._in_use_connections]
    else:
        connections = [c for node in client.get_nodes() for c in node._connections]
    for connection in connections:
        # "Event loop is closed" comes after the transport stopped reading: nothing more to do.
        with contextlib.suppress(RuntimeError):
            connection._close()  # type: ignore[no-untyped-call]


# --- failures -------------------------------------------------------------------------------------


class UsesLink(Protocol):
    link: RedisLink


S = TypeVar("S", bound=UsesLink)
P = ParamSpec("P")
T = TypeVar("T")


def guarded(
    method: Callable[Concatenate[S, P], Coroutine[Any, Any, T]],
) -> Callable[Concatenate[S, P], Coroutine[Any, Any, T]]:
    """A store method whose Redis failures (unreachable, timed out, refused) and unreadable values
    come out as :class:`~lwm2m.errors.StoreError` naming the store's URL."""

    async def call(self: S, /, *args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await method(self, *args, **kwargs)
        except (RedisError, OSError) as exc:
            raise StoreError(f"the Redis store {self.link.shown}: {exc}") from exc
        except msgspec.DecodeError as exc:
            raise StoreError(f"the Redis store {self.link.shown}: an unreadable value: {exc}") from exc

    functools.update_wrapper(call, method)
    return call


async def walk_lex(
    link: RedisLink, name: str, start: str = "", upper: str | None = None
) -> AsyncIterator[list[str]]:
    """The members of the lexicographic index ``name`` from ``start`` on (below ``upper``), in
    byte order (UTF-8's order is code-point order), ``CHUNK`` at a time."""
    low = f"[{start}" if start else "-"
    high = "+" if upper is None else f"({upper}"
    while True:
        got = await link.client().zrange(name, low, high, bylex=True, offset=0, num=CHUNK)
        names = [text(m) for m in got]
        if names:
            yield names
        if len(names) < CHUNK:
            return
        low = f"({names[-1]}"


async def fetch_all(link: RedisLink, commands: list[tuple[str, tuple[Any, ...]]]) -> list[Any]:
    """Run ``(command, args)`` pairs in pipelines of ``CHUNK`` (not transactions: the keys may live
    in several slots) and answer their replies in order."""
    replies: list[Any] = []
    for i in range(0, len(commands), CHUNK):
        pipe = link.client().pipeline(transaction=False)
        for command, args in commands[i : i + CHUNK]:
            pipe.execute_command(command, *args)
        replies += await pipe.execute()
    return replies
