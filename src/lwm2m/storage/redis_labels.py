"""Device labels in Redis (:mod:`lwm2m.storage.labels` says what they are).

Keys:

==================================  ======  ===================================================
``lwm2m:lbl:{ep}``                  hash    the endpoint's labels, key -> value
``lwm2m:lblx:<n>:<key>=<value>``    set     the endpoints with that label (``n``: the key's
                                            length, so that no key and value read as another)
==================================  ======  ===================================================

A record and its index sets live in different slots, so no transaction covers them on a Redis
Cluster. As for the other indexes of the store, index entries are added before the record is
written and removed after; a look-up through the index checks each endpoint's record, so an
entry a crash left between two writes is never answered.
"""

from __future__ import annotations

from collections.abc import Mapping

from lwm2m.storage.redis_link import RedisLink, fetch_all, guarded, index, key, text

__all__ = ["RedisLabelStore"]

# KEYS: the record. ARGV: key, value, key, value, ... The record replaced in one step.
_REPLACE = """
redis.call('DEL', KEYS[1])
if #ARGV > 0 then redis.call('HSET', KEYS[1], unpack(ARGV)) end
return 1
"""


def _index(label: str, value: str) -> str:
    return index("lblx", f"{len(label)}:{label}={value}")


class RedisLabelStore:
    """Labels in the Redis store of ``link``."""

    def __init__(self, link: RedisLink) -> None:
        self.link = link

    @guarded
    async def get(self, endpoint: str) -> dict[str, str]:
        found = await self.link.client().hgetall(key("lbl", endpoint))
        return {text(k): text(v) for k, v in found.items()}

    @guarded
    async def put(self, endpoint: str, labels: Mapping[str, str]) -> None:
        client = self.link.client()
        old = {text(k): text(v) for k, v in (await client.hgetall(key("lbl", endpoint))).items()}
        new = dict(labels)
        added = [(k, v) for k, v in new.items() if old.get(k) != v]
        gone = [(k, v) for k, v in old.items() if new.get(k) != v]
        if added:
            await fetch_all(self.link, [("SADD", (_index(k, v), endpoint)) for k, v in added])
        args = [x for pair in new.items() for x in pair]
        await self.link.run(_REPLACE, [key("lbl", endpoint)], args)
        if gone:
            await fetch_all(self.link, [("SREM", (_index(k, v), endpoint)) for k, v in gone])

    @guarded
    async def matching(self, selector: Mapping[str, str]) -> set[str]:
        if not selector:
            raise ValueError("a label selector names at least one label")
        pairs = list(selector.items())
        members = await fetch_all(self.link, [("SMEMBERS", (_index(k, v),)) for k, v in pairs])
        candidates = set.intersection(*({text(m) for m in found} for found in members))
        if not candidates:
            return set()
        # Through the index, then the records: an entry left by a crash is not an answer.
        ordered = sorted(candidates)
        wanted = [k for k, _ in pairs]
        records = await fetch_all(self.link, [("HMGET", (key("lbl", ep), *wanted)) for ep in ordered])
        return {
            ep
            for ep, values in zip(ordered, records, strict=True)
            if all(v is not None and text(v) == want for v, (_, want) in zip(values, pairs, strict=True))
        }
