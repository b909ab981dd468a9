"""The Redis store: what several server nodes share (DESIGN.md, scale-out), through redis-py's
asyncio client, on one Redis (``redis://HOST:PORT/DB``, ``rediss://`` with TLS) or a Redis
Cluster (``redis+cluster://HOST:PORT``).

Key layout. Every key starts with ``lwm2m:``. What belongs to one endpoint lives under its hash
tag ``{ep}`` (:func:`~lwm2m.storage.redisconn.endpoint_tag`), so each script on an endpoint
runs in one Redis Cluster slot:

=================================  ==========  ==================================================
key                                type        holds
=================================  ==========  ==================================================
``lwm2m:reg:{ep}``                 hash        the registration: ``id``, ``exp`` (expiry time),
                                               ``data`` (a positional MessagePack array)
``lwm2m:obs:{ep}``                 hash        token (hex) -> creation number and observation
                                               (a positional MessagePack array)
``lwm2m:hist:{ep}``                list        history values in arrival order, capped
``lwm2m:sec:{ep}``                 string      ``SecurityInfo.to_dict(with_key=True)`` as JSON
``lwm2m:bs:{ep}``                  string      ``BootstrapConfig.to_json()`` as JSON
``lwm2m:rq:{ep}:<id>``, ``rqq``…    hash, …     requests queued for a sleeping client
                                               (:mod:`~lwm2m.storage.redis_requests`)
=================================  ==========  ==================================================

Global indexes, each its own key (in whatever slot its name hashes to):

=================================  ==========  ==================================================
``lwm2m:regid:<id>``               string      registration ID -> endpoint
``lwm2m:endpoints``                zset        every registered endpoint, score 0: ``page``
                                               walks it by ``ZRANGE … BYLEX`` (byte order, which
                                               for UTF-8 is the code-point order of the others)
``lwm2m:expiry``                   zset        endpoint by expiry time: the sweep's index
``lwm2m:at:<host>|<port>``          string      a registration's address -> endpoint, expiring
                                               an hour after the registration would: a node
                                               finds a device by its address (a Send first)
``lwm2m:token:<hex>``              string      observation token -> endpoint: any node
                                               recognises a notification
``lwm2m:observations``             zset        token by creation number (``all()``, oldest first)
``lwm2m:seq:observations``         string      the creation counter
``lwm2m:history``                  zset        endpoint with history by (at most) its oldest
                                               value's arrival: age retention's index
``lwm2m:psk:<identity>``           string      PSK identity -> endpoint
``lwm2m:rpk:<sha256 hex>``         string      raw public key (its SHA-256) -> endpoint
``lwm2m:osc:<identity>``           string      OSCORE identity (``[ctx hex:]kid hex``) -> endpoint
``lwm2m:security``                 zset        endpoints with security information, by name
``lwm2m:bootstrap``                zset        endpoints with a bootstrap configuration, by name
``lwm2m:dtls:sessions``            hash        peer address (JSON) -> [CID, state] (MessagePack)
``lwm2m:dtls:tickets``             string      the ticket keys
``lwm2m:dtls:s:<key>``             hash        a DTLS session the nodes share (CID hex, or
                                               peer address): ``s`` saved state, ``b`` base
                                               write sequence, ``t`` takeovers, ``h`` holder;
                                               a TTL (the idle timeout), refreshed by its holder
=================================  ==========  ==================================================

Firmware packages and their bytes: :mod:`lwm2m.storage.redis_firmware`. Device labels:
:mod:`lwm2m.storage.redis_labels`. Webhooks and their
outbox (one hash tag, ``{webhooks}``, bounded): :mod:`lwm2m.storage.redis_webhooks`.

Write order. A record and its index entries are in different slots, so no transaction can
cover them on a Redis Cluster. Index entries are written before the record and removed after
it; a read through an index checks the record, so an entry left by a crash between two writes
(or by a write racing on another node) is ignored and, where it cannot be a write in flight,
cleaned. The expiry index never holds a time later than the record's: ``remove_expired`` takes
a registration with a script on its own hash that checks the stored expiry time, so two nodes
sweeping at once never both take it and an Update that raced in wins.

Bounds: the history is capped per endpoint (``max_records`` at each write, ``max_age`` at
``prune``); registrations go at expiry, observations with their endpoint; events are not here.

Writes are durable as far as the Redis server's persistence makes them (AOF with
``appendfsync always`` keeps every acknowledged one); ``history.add`` is held back until the
next ``flush()``, as in the SQLite store.
"""

from __future__ import annotations

from lwm2m.storage.base import HistoryRetention
from lwm2m.storage.redis_campaigns import RedisCampaignStore
from lwm2m.storage.redis_firmware import RedisPackageStore
from lwm2m.storage.redis_labels import RedisLabelStore
from lwm2m.storage.redis_link import RedisLink
from lwm2m.storage.redis_registrations import RedisObservationStore, RedisRegistrationStore
from lwm2m.storage.redis_requests import RedisQueuedRequestStore
from lwm2m.storage.redis_roles import (
    RedisBootstrapConfigStore,
    RedisDtlsSessionStore,
    RedisHistoryStore,
    RedisSecurityStore,
)
from lwm2m.storage.redis_webhooks import RedisWebhookStore


class RedisStore:
    """The Redis stores of one URL: ``.registrations``, ``.observations``, ``.history``,
    ``.security``, ``.bootstrap_configs``, ``.dtls_sessions``, ``.queued_requests``. Opening does
    not connect: a Redis that cannot be reached shows at the first call, as a StoreError naming
    the URL."""

    def __init__(self, url: str, *, history_retention: HistoryRetention | None = None) -> None:
        self.link = RedisLink(url)
        self.url = url
        self.registrations: RedisRegistrationStore = RedisRegistrationStore(self.link)
        self.observations: RedisObservationStore = RedisObservationStore(self.link)
        self.history: RedisHistoryStore = RedisHistoryStore(self.link, history_retention)
        self.security: RedisSecurityStore = RedisSecurityStore(self.link)
        self.bootstrap_configs: RedisBootstrapConfigStore = RedisBootstrapConfigStore(self.link)
        self.dtls_sessions: RedisDtlsSessionStore = RedisDtlsSessionStore(self.link)
        self.queued_requests: RedisQueuedRequestStore = RedisQueuedRequestStore(self.link)
        self.firmware: RedisPackageStore = RedisPackageStore(self.link)  # see redis_firmware
        self.labels: RedisLabelStore = RedisLabelStore(self.link)  # see redis_labels
        self.webhooks: RedisWebhookStore = RedisWebhookStore(self.link)  # see redis_webhooks
        self.campaigns: RedisCampaignStore = RedisCampaignStore(self.link)  # see redis_campaigns

    def close(self) -> None:
        """Write what ``history.add`` kept back (a blocking client, so that this works from
        plain code and inside a running loop alike) and release the client."""
        if self.link.closed:
            return
        try:
            self.history.flush_blocking()
        finally:
            self.link.close()

    def __enter__(self) -> RedisStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
