"""Opening a Redis connection from a store URL (DESIGN.md, scale-out).

``redis://HOST:PORT/DB`` and ``rediss://…`` (TLS) name one Redis server;
``redis+cluster://HOST:PORT[,HOST:PORT…]`` and ``rediss+cluster://…`` name a Redis Cluster
through one or more of its nodes (the client learns the others from the first that answers, so a
URL naming several still opens when one of them is down). The client is redis-py's asyncio one; it connects
lazily, on the first command, so opening never blocks and a wrong host shows on first use.

Everything the Redis store and the cluster layer keep about one endpoint is under keys that
share the hash tag ``{ep}`` (:func:`endpoint_tag`), so every multi-key command and script on
one endpoint works on Redis Cluster, where all keys of one call must live in one slot.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, TypeAlias
from urllib.parse import urlsplit, urlunsplit

from lwm2m.errors import ConfigError

if TYPE_CHECKING:  # redis-py is imported by connect(): a server on SQLite starts without it
    from redis.asyncio import Redis, RedisCluster

POOL_CONNECTIONS = 256  # connections of one client to one Redis server, at most
POOL_WAIT = 20.0  # seconds a call waits for a free one before it fails
CLUSTER_CONNECTIONS = 1024  # connections of one client to each node of a Redis Cluster

RedisClient: TypeAlias = "Redis | RedisCluster"

REDIS_SCHEMES = ("redis", "rediss", "redis+cluster", "rediss+cluster")


def is_cluster_url(url: str) -> bool:
    return url.partition("://")[0].lower().endswith("+cluster")


def shown_url(url: str) -> str:
    """``url`` without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


def cluster_nodes(url: str) -> tuple[str, list[tuple[str, int]]]:
    """A ``redis+cluster://`` URL's first node as a plain ``redis://`` (``rediss://``) URL, with
    its user, password and query; and every node it names, (host, port), in its order. IPv6
    hosts are in brackets. A node without a port, or with one that is not a number, is a
    :class:`~lwm2m.errors.ConfigError` naming it."""
    shown = shown_url(url)
    scheme, _, rest = url.partition("://")
    plain = "rediss" if scheme.lower().startswith("rediss") else "redis"
    netloc, slash, tail = rest.partition("/")
    if "?" in netloc:  # a query straight after the hosts
        netloc, mark, query = netloc.partition("?")
        tail, slash = mark + query + slash + tail, ""
    user, at, hosts = netloc.rpartition("@")
    nodes: list[tuple[str, int]] = []
    for part in hosts.split(","):
        try:
            parsed = urlsplit(f"{plain}://{part}")
            host, port = parsed.hostname, parsed.port
        except ValueError as exc:
            raise ConfigError(f"Redis URL {shown!r}: node {part!r}: {exc}") from exc
        if not host or port is None:
            raise ConfigError(f"Redis URL {shown!r}: node {part!r}: give HOST:PORT")
        nodes.append((host, port))
    first = hosts.split(",")[0]
    return f"{plain}://{user}{at}{first}{slash}{tail}", nodes


def connect(url: str, *, known: Sequence[tuple[str, int]] = ()) -> RedisClient:
    """A client for ``url``, not yet connected. A URL that is not one of :data:`REDIS_SCHEMES`,
    or one without a host, is a :class:`~lwm2m.errors.ConfigError` naming it; so is a missing
    redis-py (``pip install 'lwm2m[cluster]'``). For a Redis Cluster, ``known`` are nodes
    (host, port) to learn the cluster from before the URL's: those an earlier client of the
    same cluster knew, since the URL's node may be the master that a failover removed."""
    shown = shown_url(url)
    scheme = url.partition("://")[0].lower()
    if scheme not in REDIS_SCHEMES:
        raise ConfigError(f"Redis URL {shown!r}: give one of {', '.join(s + '://' for s in REDIS_SCHEMES)}")
    try:  # the ``cluster`` extra
        from redis.asyncio import BlockingConnectionPool, Redis, RedisCluster
        from redis.asyncio.cluster import ClusterNode
    except ImportError as exc:
        raise ConfigError(
            f"Redis URL {shown!r}: redis-py is not installed; pip install 'lwm2m[cluster]'"
        ) from exc
    if scheme.endswith("+cluster"):
        plain, named = cluster_nodes(url)
        if urlsplit(plain).path.strip("/") not in ("", "0"):
            raise ConfigError(f"Redis URL {shown!r}: a Redis Cluster has database 0 only")
        # A failover needs no setting of its own: redis-py retries a command that failed with a
        # connection error, a timeout or CLUSTERDOWN (10 times, backoff up to 1 s), re-reading
        # the slot map from a node still up first, and follows MOVED; so once a replica has
        # been promoted the same client reaches it (tests/storage/test_redis_cluster_failover).
        # A call made while the master is down and not yet replaced (about cluster-node-timeout
        # and an election) fails as a StoreError when those retries run out. Its connections to
        # one node are bounded, and beyond them a call fails at once (it cannot wait for one):
        # room for a burst of a node's work.
        # The nodes learned before first, then those the URL names after its first (which
        # redis-py adds from the URL itself): any one that answers gives the slot map.
        return RedisCluster.from_url(
            plain,
            startup_nodes=[ClusterNode(h, p) for h, p in [*known, *named[1:]]] or None,
            max_connections=CLUSTER_CONNECTIONS,
        )
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - a port that is not a number raises here
    except ValueError as exc:
        raise ConfigError(f"Redis URL {shown!r}: {exc}") from exc
    if not parts.hostname:
        raise ConfigError(f"Redis URL {shown!r}: no host")
    db = parts.path.strip("/")
    if db and not db.isdigit():
        raise ConfigError(f"Redis URL {shown!r}: the database {db!r} is not a number")
    # A burst (a registration storm) waits for a free connection rather than failing at once,
    # as the plain pool would beyond its size.
    pool = BlockingConnectionPool.from_url(url, max_connections=POOL_CONNECTIONS, timeout=POOL_WAIT)
    return Redis.from_pool(pool)


def endpoint_tag(endpoint: str) -> str:
    """The hash tag of ``endpoint``'s keys: ``{ep}``, with braces in the name replaced so that
    the tag ends where it should (Redis hashes what lies between the first ``{`` and the next
    ``}``); ``%`` is escaped too, so that no two endpoints share a tag."""
    return "{" + endpoint.replace("%", "%25").replace("{", "%7B").replace("}", "%7D") + "}"
